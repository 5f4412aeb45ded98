"""The development pool of judge-gen4: every act hand label made so far, except the held-out parts.

    python benchmarks/judge/pool.py make --out /work/judge/judge4
    python benchmarks/judge/pool.py choose /work/judge/judge4/cv/*     # the recipe, from the dev split only

`make` writes OUT/dev-pool.jsonl (the labelled responses, `ctrldial judge agreement`'s format) and OUT/dev-A.jsonl /
OUT/dev-B.jsonl (a seeded half each, for choosing the recipe). A response identical (context and response) to one
of a held-out file is left out, so the held-out parts stay unseen. The sources are the development draws of
issue 14 and the blind draws read since (control, definitive): all from *test* contexts; the second held-out
part (labels-heldout2.jsonl) is drawn from *validation* contexts, which no development label comes from.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from ctrldial.data.corpus import ACTS
from ctrldial.handlabels import join, read_jsonl
from ctrldial.record import write_jsonl

ROOT = Path(__file__).parents[1]
SOURCES = {  # name: labelled file (context, response, label)
    "dev": "judge/labels-dev.jsonl",
    "dev2": "judge/labels-dev2.jsonl",
    "fresh": "judge/labels-fresh.jsonl",                        # = control/hand/s1000-g3-rerank8
    "cf": "control/hand/s1000-cf-g3-rerank8/labels.jsonl",
    "full-rr": "definitive/hand-full-reranked/labels.jsonl",
}
DRAWS = ("control/hand/unguided", "control/hand/null-g3")      # blind + key + hand-labels (`ctrldial judge join`)
HELD_OUT = ("judge/labels-heldout.jsonl", "judge/labels-heldout2.jsonl")


def _key(r) -> tuple:
    return tuple(r["context"]), r["response"].strip()


def make(args) -> None:
    parts = {name: read_jsonl(ROOT / f) for name, f in SOURCES.items()}
    parts.update({Path(d).name: join(ROOT / d, ACTS) for d in DRAWS})
    held = {_key(r) for f in HELD_OUT if (ROOT / f).exists() for r in read_jsonl(ROOT / f)}
    pool, dropped = [], Counter()
    for name, rows in parts.items():
        for r in rows:
            if _key(r) in held:
                dropped[name] += 1
                continue
            pool.append({"context": r["context"], "response": r["response"], "label": r["label"], "id": f"{name}:{r['id']}"})
    ids = [r["id"] for r in pool]
    random.Random(args.seed).shuffle(ids)
    a = set(ids[: len(ids) // 2])
    out = Path(args.out)
    write_jsonl(out / "dev-pool.jsonl", pool)
    write_jsonl(out / "dev-A.jsonl", [r for r in pool if r["id"] in a])
    write_jsonl(out / "dev-B.jsonl", [r for r in pool if r["id"] not in a])
    print(json.dumps({"pool": len(pool), "by_source": {n: len(r) for n, r in parts.items()},
                      "left_out_as_held_out": dict(dropped), "by_label": Counter(r["label"] for r in pool)}, indent=1))


MIN_HUMAN_VALIDATION = 0.83  # judge-gen2's recipe gave 0.823 and 84.1% on the human test split; the target is 85%


def choose(args) -> None:
    """The recipe with the best dev-B agreement among those at least MIN_HUMAN_VALIDATION on human validation
    utterances; ties (the first two candidates tied) go to the higher human validation accuracy. Each folder is
    named c<corpus utterances>-x<repeats> and holds agree-B/agreement.json; --with adds the candidates of an earlier
    choice (its JSON output), so a new encoder is weighed against recipes measured before."""
    rows = [dict(r, encoder=r.get("encoder", "minilm-l6")) for f in args.with_ for r in json.loads(Path(f).read_text())["candidates"]]
    for d in (Path(f) for f in args.folders if Path(f).is_dir()):  # a glob may also catch log files
        agree = json.loads((d / "agree-B" / "agreement.json").read_text())
        meta = json.loads((d / "ctrldial_classifier.json").read_text())
        corpus, repeats = d.name[1:].split("-x")
        rows.append({"folder": str(d), "encoder": args.encoder, "corpus": int(corpus), "repeats": int(repeats),
                     "dev_b_agreement": round(agree["accuracy"], 4),
                     "dev_b_per_class": {k: {m: round(v[m], 3) for m in ("precision", "recall")} for k, v in agree["per_class"].items()},
                     "human_validation_accuracy": meta["validation_metrics"]["accuracy"]})
    ok = [r for r in rows if r["human_validation_accuracy"] >= MIN_HUMAN_VALIDATION] or rows
    best = max(ok, key=lambda r: (r["dev_b_agreement"], r["human_validation_accuracy"]))
    print(json.dumps({"rule": f"highest dev-B agreement with human validation accuracy >= {MIN_HUMAN_VALIDATION}; "
                              "ties: the higher human validation accuracy",
                      "candidates": rows, "chosen": best}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make", help="write the development pool and its two halves")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(fn=make)
    p = sub.add_parser("choose", help="pick the recipe from the dev-split folders")
    p.add_argument("folders", nargs="+")
    p.add_argument("--encoder", default="minilm-l6", help="the base encoder of these folders (a label in the output)")
    p.add_argument("--with", dest="with_", nargs="*", default=[], metavar="JSON", help="earlier choices to weigh against")
    p.set_defaults(fn=choose)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
