"""Two hand-labelled draws of the same rows, labelled again as one shuffled pool by the same annotators.

Two draws labelled at different times by different annotators could differ by who read them; pooling both
configurations' responses (shuffled, blind to which configuration wrote them) removes that:

    python benchmarks/control/pooled.py make hand/A hand/B --out hand/pooled-A-B     # label blind-1/2.jsonl
    python benchmarks/control/pooled.py score --out hand/pooled-A-B                  # -> pooled.json

The annotators' files are ``labels-1.jsonl`` and ``labels-2.jsonl`` (id, label, note per line).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from ctrldial.record import write_jsonl
from draw import ACTS, read, versus_counts


def make(a: Path, b: Path, out: Path, seed: int) -> None:
    rows = [(str(src), r) for src in (a, b) for r in read(src / "blind.jsonl")]
    random.Random(seed).shuffle(rows)
    ids = [f"p{i:03d}" for i in range(len(rows))]
    write_jsonl(out / "key.jsonl", [{"id": i, "source": src, "item": r["id"]} for i, (src, r) in zip(ids, rows)])
    blind = [{"id": i, "context": r["context"], "response": r["response"]} for i, (_, r) in zip(ids, rows)]
    half = len(blind) // 2
    write_jsonl(out / "blind-1.jsonl", blind[:half])
    write_jsonl(out / "blind-2.jsonl", blind[half:])
    print(f"{out}: {len(rows)} responses in two blind parts (seed {seed})")


def score(out: Path) -> dict:
    key = read(out / "key.jsonl")
    labels = {h["id"]: h["label"] for part in (1, 2) for h in read(out / f"labels-{part}.jsonl")}
    assert set(labels) == {k["id"] for k in key}, "every pooled response needs one hand label"
    first = {}  # the draws' own labels, and what was requested
    for src in {k["source"] for k in key}:
        req = {k["id"]: k for k in read(Path(src) / "key.jsonl")}
        own = {h["id"]: h["label"] for h in read(Path(src) / "hand-labels.jsonl")}
        first.update({(src, i): (req[i], own[i]) for i in req})
    per: dict = defaultdict(lambda: defaultdict(list))
    same_as_first: dict = defaultdict(list)
    paired: dict = defaultdict(dict)
    for k in key:
        (req, own), h = first[(k["source"], k["item"])], labels[k["id"]]
        per[k["source"]][req["requested"]].append(h == req["requested"])
        same_as_first[k["source"]].append(h == own)
        paired[(req["row"], req["requested"])][k["source"]] = h == req["requested"]
    result = {"n": len(key), "configurations": {}}
    for src, d in per.items():
        every = [x for v in d.values() for x in v]
        result["configurations"][src] = {
            "agree_with_requested": sum(every) / len(every),
            "per_requested_act": {a: {"n": len(d[a]), "agree": sum(d[a]) / len(d[a])} for a in ACTS if d[a]},
            "same_label_as_the_draws_own": sum(same_as_first[src]) / len(same_as_first[src]),
        }
    a, b = sorted(per)
    result["paired"] = {"a": a, "b": b, **versus_counts({k: v[a] for k, v in paired.items()}, {k: v[b] for k, v in paired.items()})}
    (out / "pooled.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("score")
    p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.a, args.b, args.out, args.seed)
    else:
        print(json.dumps(score(args.out), indent=2))


if __name__ == "__main__":
    main()
