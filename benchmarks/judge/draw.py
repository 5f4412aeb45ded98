"""Draw the generated responses to hand-label (issue: a judge validated on generated text).

From every method's generations in benchmarks/quality/results: half drawn uniformly at random, half
stratified by the judge's verdict (equal counts per predicted act), without repeats. Then each item goes,
by a seeded coin, to the development part or the held-out part. Writes

- ``blind.jsonl``: id, context, response only, shuffled: what the labeller reads (no method, no requested
  act, no verdict);
- ``key.jsonl``: id → method, requested act, judge verdict, draw (random / stratified), part.

    python benchmarks/judge/draw.py --out benchmarks/judge/draw   # seed 0, 240 + 240
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ACTS = ("inform", "question", "directive", "commissive")
ROOT = Path(__file__).resolve().parents[1] / "quality" / "results"


def load() -> list[dict]:
    rows = []
    for gens in sorted(ROOT.glob("*/generations.jsonl")):
        method = gens.parent.name
        for i, line in enumerate(gens.read_text(encoding="utf-8").splitlines()):
            r = json.loads(line)
            if r["generation"].strip():
                rows.append({"source": f"{method}:{i}", "method": method, **r})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--random", type=int, default=240)
    ap.add_argument("--per-verdict", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rows = load()
    picked = rng.sample(range(len(rows)), a.random)
    draw = {i: "random" for i in picked}
    for act in ACTS:
        pool = [i for i, r in enumerate(rows) if r["predicted"] == act and i not in draw]
        for i in rng.sample(pool, a.per_verdict):
            draw[i] = "stratified"
    items = list(draw)
    rng.shuffle(items)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "blind.jsonl", "w", encoding="utf-8") as b, open(a.out / "key.jsonl", "w", encoding="utf-8") as k:
        for n, i in enumerate(items):
            r, item_id = rows[i], f"g{n:03d}"
            b.write(json.dumps({"id": item_id, "context": r["context"], "response": r["generation"]}, ensure_ascii=False) + "\n")
            part = "heldout" if rng.random() < 0.5 else "dev"
            k.write(json.dumps({"id": item_id, "source": r["source"], "method": r["method"], "requested": r["requested"],
                                "judge": r["predicted"], "draw": draw[i], "part": part}) + "\n")
    print(f"{len(items)} items → {a.out}")


if __name__ == "__main__":
    main()
