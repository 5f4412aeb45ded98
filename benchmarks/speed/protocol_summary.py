"""Summarise a protocol.sh folder: each side's wall, training and generation seconds, and after / before, as JSON.

    python benchmarks/speed/protocol_summary.py OUT benchmarks/speed/results/protocol-runN.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def side(out: Path, name: str) -> dict:
    r = json.loads((out / name / "record.json").read_text())
    return {
        "commit": r["git"]["commit"], "wall_seconds": float((out / f"{name}.wall").read_text()), "cost": r["cost"],
        "environment": r["environment"], "packed": r["train"].get("packed", False),
        "perplexity": r["metrics"]["perplexity"], "generation_perplexity": r["metrics"]["generation_perplexity"],
        "best_val_loss": r["train"]["best_val_loss"],
        "final_train_loss": [h for h in r["train"]["history"] if "loss" in h][-1]["loss"],
    }


def main() -> None:
    out, dest = Path(sys.argv[1]), Path(sys.argv[2])
    b, a = side(out, "before"), side(out, "after")
    res = {
        "command": "bash benchmarks/speed/protocol.sh BEFORE AFTER OUT", "config": "benchmarks/speed/protocol.yaml",
        "sides": {"before": b, "after": a},
        "after_over_before_wall": a["wall_seconds"] / b["wall_seconds"],
        "after_over_before_train": a["cost"]["train_seconds"] / b["cost"]["train_seconds"],
        "after_over_before_generate": a["cost"]["generate_seconds"] / b["cost"]["generate_seconds"],
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(res, indent=1))
    for name, s in res["sides"].items():
        print(f"{name}: {s['commit'][:7]} wall {s['wall_seconds']:.0f} s, train {s['cost']['train_seconds']:.0f} s, "
              f"generate {s['cost']['generate_seconds']:.0f} s, perplexity {s['perplexity']:.3f}, best val loss {s['best_val_loss']:.4f}")
    print(f"after / before: wall {res['after_over_before_wall']:.3f}, train {res['after_over_before_train']:.3f}, "
          f"generate {res['after_over_before_generate']:.3f}")


if __name__ == "__main__":
    main()
