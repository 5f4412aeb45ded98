"""Hand labels for the emotion judge: draw generated responses blind, then join the labels with the key.

    python benchmarks/definitive/emotion_labels.py draw RUNS_DIR --out benchmarks/definitive/emotion-draw
    python benchmarks/definitive/emotion_labels.py assemble --out benchmarks/definitive/labels-emotion.jsonl

``draw``: from every ``generations.jsonl`` under RUNS_DIR (the emotion runs, guided and unguided, all seeds),
half uniformly at random and half stratified by the judge's verdict (equal counts per verdict the judge gives,
as many as a rare verdict has), without repeats, seed 0. ``blind.jsonl`` (id, context, response; what the labeller reads) and
``key.jsonl`` (id → run, requested emotion, verdict, draw). Every item is held out: nothing trains on these.
``assemble`` joins the labeller's ``hand-labels.jsonl`` ({id, label, note}) with the key into the
``ctrldial judge agreement`` format.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

EMOTIONS = ("no_emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")  # ctrldial's label names


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def draw(runs: Path, out: Path, n_random: int, n_stratified: int, seed: int) -> None:
    rows = [{"source": f"{g.parent.relative_to(runs)}:{i}", **r}
            for g in sorted(runs.rglob("generations.jsonl")) for i, r in enumerate(read_jsonl(g)) if r["generation"].strip()]
    rng = random.Random(seed)
    picked = {i: "random" for i in rng.sample(range(len(rows)), n_random)}
    verdicts = [emo for emo in EMOTIONS if any(r["predicted"] == emo for r in rows)]  # a verdict never given has no stratum
    per = n_stratified // len(verdicts)
    for emo in verdicts:
        pool = [i for i, r in enumerate(rows) if r["predicted"] == emo and i not in picked]
        picked.update((i, "stratified") for i in rng.sample(pool, min(per, len(pool))))
    items = list(picked)
    rng.shuffle(items)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "blind.jsonl", "w", encoding="utf-8") as b, open(out / "key.jsonl", "w", encoding="utf-8") as k:
        for n, i in enumerate(items):
            r, item_id = rows[i], f"e{n:03d}"
            b.write(json.dumps({"id": item_id, "context": r["context"], "response": r["generation"]}, ensure_ascii=False) + "\n")
            k.write(json.dumps({"id": item_id, "source": r["source"], "requested": r["requested"], "judge": r["predicted"],
                                "draw": picked[i]}, ensure_ascii=False) + "\n")
    print(f"{len(items)} items ({n_random} random) from {len(rows)} responses → {out}")


def assemble(folder: Path, out: Path) -> None:
    blind, key = ({r["id"]: r for r in read_jsonl(folder / f"{n}.jsonl")} for n in ("blind", "key"))
    labels = {r["id"]: r for r in read_jsonl(folder / "hand-labels.jsonl")}
    assert set(blind) == set(labels) == set(key), "every drawn item has exactly one label and one key"
    lines = []
    for item_id in sorted(blind):
        lab, k = labels[item_id], key[item_id]
        assert lab["label"] in EMOTIONS, (item_id, lab["label"])
        lines.append({"context": blind[item_id]["context"], "response": blind[item_id]["response"], "label": lab["label"],
                      "id": item_id, "requested": k["requested"], "judge_at_draw": k["judge"], "draw": k["draw"],
                      "source": k["source"], "note": lab.get("note", "")})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    print(f"{out}: {len(lines)} ({sum(r['draw'] == 'random' for r in lines)} random)")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("draw")
    d.add_argument("runs", type=Path)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--random", type=int, default=50)
    d.add_argument("--stratified", type=int, default=50)
    d.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("assemble")
    a.add_argument("--draw", type=Path, default=Path(__file__).resolve().parent / "emotion-draw")
    a.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "draw":
        draw(args.runs, args.out, args.random, args.stratified, args.seed)
    else:
        assemble(args.draw, args.out)


if __name__ == "__main__":
    main()
