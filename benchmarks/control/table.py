"""The control table: one row per `ctrldial eval` output folder (metrics.json), as markdown.

    python benchmarks/control/table.py results/test/* > results/test.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ACTS = ["inform", "question", "directive", "commissive"]


def f(v, digits=3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def row(folder: Path) -> str:
    r = json.loads((folder / "metrics.json").read_text())
    m = r["metrics"]
    lo, hi = (m.get("ci") or {}).get("control_accuracy") or (None, None)
    per = m.get("per_label_accuracy") or {}
    cells = [
        folder.name, f"{f(m.get('control_accuracy'))} [{f(lo)}, {f(hi)}]", *[f(per.get(a), 2) for a in ACTS],
        f(m.get("control_accuracy_gold")), f(m.get("corrected_control_accuracy")), f(m.get("bleu"), 2), f(m.get("distinct_2")),
        f(m.get("generation_perplexity"), 1), f(m.get("repetition_rate")), f(m.get("empty_rate")), f"{r['generate_seconds']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main(folders: list[str]) -> None:
    head = ["configuration", "control (95% CI)", *ACTS, "gold", "corrected", "BLEU", "distinct-2", "gen. ppl", "repetition",
            "empty", "generate s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for d in folders:
        if (Path(d) / "metrics.json").is_file():
            print(row(Path(d)))


if __name__ == "__main__":
    main(sys.argv[1:])
