"""Does `ctrldial generate RUN --label L --context ...` repeat what the run recorded? (issue: one clear run path)

    python benchmarks/refactor/regenerate_check.py RUN_DIR [RUN_DIR ...] --contexts 2 > result.json

For the first N contexts of each run's generations.jsonl, every requested label: one CLI call each (a fresh
process, the public reload path), compared with the recorded generation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--contexts", type=int, default=2)
    a = ap.parse_args()
    report = {}
    for run in a.runs:
        rows = [json.loads(line) for line in (run / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
        labels = json.loads((run / "record.json").read_text())["data"]["labels"]
        checked = []
        for row in rows[: a.contexts * len(labels)]:
            cmd = ["ctrldial", "generate", str(run), "--label", row["requested"]] + [x for t in row["context"] for x in ("--context", t)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            got = out.stdout.rstrip("\n")
            checked.append({"requested": row["requested"], "recorded": row["generation"], "regenerated": got,
                            "same": got == row["generation"], "stderr_lines": len(out.stderr.splitlines())})
        report[str(run)] = {"checked": len(checked), "same": sum(c["same"] for c in checked), "rows": checked}
        print(f"{run}: {report[str(run)]['same']}/{len(checked)} identical", file=sys.stderr)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
