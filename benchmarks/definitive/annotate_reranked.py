"""Complete the reranked evals' records written before `ctrldial eval --record` named a decoding's reranker and code.

rerank.sh ran from a clean checkout of commit 65ef158, whose `eval --record` kept the run's `reranker` (none) and
did not record the eval's own commit. This fills both, as the fixed `eval --record` writes them: ``reranker`` from
``check_reranker`` on the recorded ``generate.rerank_classifier`` and judge (what the eval itself checked before it
decoded), ``eval.git`` with the checkout's commit, marked as added afterwards. A record that has them is left alone.

    python benchmarks/definitive/annotate_reranked.py WORK/runs/*-reranked/seed*
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ctrldial.record import write_json
from ctrldial.rerank import check_reranker

COMMIT = "65ef1583dc88f100f48973de12d59365cb261b7c"

for folder in map(Path, sys.argv[1:]):
    rec = json.loads((folder / "record.json").read_text())
    if rec.get("reranker") is None and rec["config"]["generate"].get("rerank_classifier"):
        rec["reranker"] = check_reranker(rec["config"]["generate"]["rerank_classifier"], rec["config"]["classifier"]["path"])
    rec["eval"].setdefault("git", {"commit": COMMIT, "dirty": False, "added_by": "benchmarks/definitive/annotate_reranked.py"})
    write_json(folder / "record.json", rec)
    print(folder, rec["reranker"]["path"], rec["eval"]["git"]["commit"][:7])
