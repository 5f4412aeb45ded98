"""A second development draw, aimed at the validated judge's weak verdicts (directive, commissive).

From the quality benchmark's responses as judge-gen judges them (quality-rescored/), not drawn before:
120 that judge-gen calls directive and 120 it calls commissive (seed 11). All go to the development part
(labels-dev2.jsonl, after labelling and ``assemble`` below); the held-out part stays as it was.

    python benchmarks/judge/draw2.py --out benchmarks/judge/draw2          # blind.jsonl + key.jsonl
    python benchmarks/judge/draw2.py --out benchmarks/judge/draw2 --assemble   # + hand-labels.jsonl → labels-dev2.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pool() -> list[dict]:
    drawn = {json.loads(line)["source"] for line in (HERE / "draw" / "key.jsonl").read_text().splitlines()}
    rows = []
    for gens in sorted((HERE / "quality-rescored").glob("method=*/generations.jsonl")):
        method = gens.parent.name
        for i, line in enumerate(gens.read_text(encoding="utf-8").splitlines()):
            r = json.loads(line)
            if r["generation"].strip() and f"{method}:{i}" not in drawn:
                rows.append({"source": f"{method}:{i}", "method": method, **r})
    return rows


def draw(out: Path) -> None:
    rng = random.Random(11)
    rows = pool()
    items = [r for v in ("directive", "commissive") for r in rng.sample([r for r in rows if r["predicted"] == v], 120)]
    rng.shuffle(items)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "blind.jsonl", "w", encoding="utf-8") as b, open(out / "key.jsonl", "w", encoding="utf-8") as k:
        for n, r in enumerate(items):
            b.write(json.dumps({"id": f"h{n:03d}", "context": r["context"], "response": r["generation"]}, ensure_ascii=False) + "\n")
            k.write(json.dumps({"id": f"h{n:03d}", "source": r["source"], "method": r["method"], "requested": r["requested"],
                                "judge": r["predicted"], "draw": "stratified-judge-gen", "part": "dev"}) + "\n")


def assemble(out: Path) -> None:
    read = lambda name: {r["id"]: r for r in map(json.loads, (out / name).read_text(encoding="utf-8").splitlines())}  # noqa: E731
    blind, labels, key = read("blind.jsonl"), read("hand-labels.jsonl"), read("key.jsonl")
    assert set(blind) == set(labels) == set(key)
    with open(HERE / "labels-dev2.jsonl", "w", encoding="utf-8") as f:
        for i in sorted(blind):
            b, lab, k = blind[i], labels[i], key[i]
            f.write(json.dumps({"context": b["context"], "response": b["response"], "label": lab["label"], "id": i, "method": k["method"],
                                "requested": k["requested"], "judge_at_draw": k["judge"], "draw": k["draw"], "source": k["source"],
                                "note": lab.get("note", "")}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--assemble", action="store_true")
    a = ap.parse_args()
    assemble(a.out) if a.assemble else draw(a.out)
