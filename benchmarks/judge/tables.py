"""The judges' agreement table from `ctrldial judge agreement` outputs, against the issue's targets.

    python benchmarks/judge/tables.py NAME=results/NAME-heldout.json [...] > agreement.md

Columns: agreement on the uniformly drawn held-out responses (the target's "randomly drawn"), agreement on
every held-out response, and per-class precision / recall over every held-out response (the stratified half
makes rare verdicts countable). Targets: random agreement >= 0.90, precision >= 0.85 and recall >= 0.80 per act.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ACTS = ("inform", "question", "directive", "commissive")


def row(name: str, path: Path) -> tuple[str, list[str]]:
    a = json.loads(path.read_text(encoding="utf-8"))
    rnd = [v for v in a["verdicts"] if v.get("draw") == "random"]
    rand_acc = sum(v["agrees"] for v in rnd) / len(rnd)
    cells = [f"{rand_acc:.3f} ({len(rnd)})", f"{a['accuracy']:.3f} ({a['n']})"]
    missed = [] if rand_acc >= 0.90 else ["random agreement"]
    for act in ACTS:
        c = a["per_class"][act]
        cells.append(f"{c['precision']:.2f} / {c['recall']:.2f} ({c['support']})")
        if c["precision"] < 0.85 or c["recall"] < 0.80:
            missed.append(act)
    return name, cells + [", ".join(missed) or "all met"]


def main() -> None:
    print("| judge | agreement, random draw (n) | agreement, all held-out (n) | "
          + " | ".join(f"{a} P / R (support)" for a in ACTS) + " | targets missed |")
    print("|---" * (4 + len(ACTS)) + "|")
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        n, cells = row(name, Path(path))
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
