"""Control metrics of the committed quality runs next to the same generations judged again.

    cp -r benchmarks/quality/results runs/q && ctrldial rescore runs/q/method=* --classifier JUDGE
    python benchmarks/quality/rescored.py runs/q --name judge_ens4 --about "JUDGE (what it is)" --out rescored-judge-ens4.json

Reads each run's record.json in results/ (the judge it was scored with) and in the rescored copy, and
writes both judges' control accuracy (all acts, gold act, other acts, per act) per run, then prints the
README table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("control_accuracy", "control_accuracy_gold", "control_accuracy_other", "per_label_accuracy")


def control(record: Path) -> dict:
    metrics = json.loads(record.read_text())["metrics"]
    return {k: metrics[k] for k in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rescored", help="the folder of rescored run copies")
    ap.add_argument("--name", required=True, help="key for the new judge, e.g. judge_ens4")
    ap.add_argument("--about", required=True, help="what the new judge is (folder, test accuracy)")
    ap.add_argument("--out", required=True, help="file name under benchmarks/quality/")
    args = ap.parse_args()
    runs = sorted(p.parent.name for p in (HERE / "results").glob("*/record.json"))
    original = json.loads((HERE / "results" / runs[0] / "record.json").read_text())["judge"]
    result = {
        "what": f"control metrics of benchmarks/quality/results rescored with {args.name}; generations unchanged",
        "command": "cp -r benchmarks/quality/results runs/q && ctrldial rescore runs/q/method=* --classifier JUDGE",
        "judges": {"judge_act_ctx": f"{original} (the records' judge)", args.name: args.about},
        "runs": {r: {"judge_act_ctx": control(HERE / "results" / r / "record.json"),
                     args.name: control(Path(args.rescored) / r / "record.json")} for r in runs},
    }
    (HERE / args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"| run | control acc., act-ctx judge | control acc., {args.name} | per act ({args.name}) |\n|---|---|---|---|")
    for r, row in result["runs"].items():
        per = " / ".join(f"{v:.2f}" for v in row[args.name]["per_label_accuracy"].values())
        print(f"| `{r}` | {row['judge_act_ctx']['control_accuracy']:.3f} | **{row[args.name]['control_accuracy']:.3f}** | {per} |")


if __name__ == "__main__":
    main()
