"""Draw the generated responses to hand-label (issue: a judge validated on generated text).

From every method's generations in benchmarks/quality/results: half drawn uniformly at random, half
stratified by the judge's verdict (equal counts per predicted act), without repeats. Then each item goes,
by a seeded coin, to the development part or the held-out part (``ctrldial.handlabels``, the draw that
``ctrldial judge draw`` makes). Writes

- ``blind.jsonl``: id, context, response only, shuffled: what the labeller reads (no method, no requested
  act, no verdict);
- ``key.jsonl``: id → method, requested act, judge verdict, draw (random / stratified), part.

    python benchmarks/judge/draw.py --out benchmarks/judge/draw   # seed 0, 240 + 240
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctrldial.data.corpus import ACTS
from ctrldial.handlabels import draw, pool, write_draw

ROOT = Path(__file__).resolve().parents[1] / "quality" / "results"


def load() -> list[dict]:
    """Every method's non-empty responses, each with its method (the folder's name)."""
    return [{**r, "method": r["source"].split(":")[0]} for r in pool(ROOT, sorted(p.parent for p in ROOT.glob("*/generations.jsonl")))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--random", type=int, default=240)
    ap.add_argument("--per-verdict", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    pairs = draw(load(), a.random, a.per_verdict, ACTS, a.seed, prefix="g", heldout_share=0.5)
    write_draw(a.out, pairs)
    print(f"{len(pairs)} items → {a.out}")


if __name__ == "__main__":
    main()
