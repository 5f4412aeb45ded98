"""A second development draw, aimed at the validated judge's weak verdicts (directive, commissive).

From the quality benchmark's responses as judge-gen judges them (quality-rescored/), not drawn before:
120 that judge-gen calls directive and 120 it calls commissive (seed 11). All go to the development part
(labels-dev2.jsonl, after labelling and ``assemble`` below); the held-out part stays as it was.

quality-rescored/ was re-judged by judge-gen2 afterwards (commit 4ecc716), so drawing again reproduces the
committed draw2/ only on the tree of commit 9623ffc, where it still holds judge-gen's verdicts.

    python benchmarks/judge/draw2.py --out benchmarks/judge/draw2          # blind.jsonl + key.jsonl
    python benchmarks/judge/draw2.py --out benchmarks/judge/draw2 --assemble   # + hand-labels.jsonl → labels-dev2.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctrldial.data.corpus import ACTS
from ctrldial.handlabels import draw, join, pool, read_jsonl, write_draw
from ctrldial.record import write_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE / "quality-rescored"


def main(out: Path, assemble: bool) -> None:
    if assemble:
        write_jsonl(HERE / "labels-dev2.jsonl", [{k: v for k, v in x.items() if k != "part"} for x in join(out, ACTS)])
        return
    drawn = [k["source"] for k in read_jsonl(HERE / "draw" / "key.jsonl")]
    rows = [{**r, "method": r["source"].split(":")[0]}
            for r in pool(ROOT, sorted(p.parent for p in ROOT.glob("method=*/generations.jsonl")), exclude=drawn)]
    pairs = draw(rows, 0, 120, ("directive", "commissive"), seed=11, prefix="h")
    write_draw(out, [(b, {**k, "draw": "stratified-judge-gen", "part": "dev"}) for b, k in pairs])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--assemble", action="store_true")
    a = ap.parse_args()
    main(a.out, a.assemble)
