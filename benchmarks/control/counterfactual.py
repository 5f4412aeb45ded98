"""Counterfactual training examples: train contexts answered with an act their own reply did not have.

The 1,000-step LoRA, guided and reranked (null γ 3 + rerank 8, T 0.7, reranker-valid), is asked for a directive
or a commissive on train contexts (`ctrldial eval ... --labels`); the responses that the *reranker* (never the
judge: the judge's verdicts in the eval files are dropped unread) gives the requested act with probability
≥ --min-prob are kept, at most --max-repeats copies of one response, and written (--copies times) as a
`data.extra_train` file.

    python benchmarks/control/counterfactual.py contexts --data ../shared/data/dailydialog --out WORK/cf
    ctrldial eval RUN --contexts WORK/cf/train-a.jsonl --labels commissive --out WORK/cf/gen-a-commissive ...
    python benchmarks/control/counterfactual.py select WORK/cf/gen-* --reranker RERANKER --out WORK/cf/extra.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import yaml

from ctrldial.config import build_config
from ctrldial.data.corpus import load_corpus
from ctrldial.data.examples import build_examples, sample_examples
from ctrldial.handlabels import read_jsonl
from ctrldial.record import write_jsonl
from ctrldial.scoring import load_judge
from contexts import write

BASE = Path(__file__).with_name("base.yaml")


def contexts(args) -> None:
    """Two files of train contexts (seeded, --n each), in `ctrldial eval`'s contexts format."""
    base = yaml.safe_load(BASE.read_text())
    cfg = build_config(None, [f"data.path={args.data}"], base={"data": base["data"]})
    corpus = load_corpus(cfg.data.path, cfg.data.on_error, cfg.data.dedup)
    used = {r["id"] for f in args.exclude for r in read_jsonl(Path(f))}  # an earlier round's contexts
    pool = [ex for ex in build_examples(corpus, "train", cfg.data) if f"{ex.dialogue_id}:{ex.turn}" not in used]
    examples = sample_examples(pool, 2 * args.n, args.seed)
    write(Path(args.out) / "train-a.jsonl", examples[: args.n])
    write(Path(args.out) / "train-b.jsonl", examples[args.n :])


def select(args) -> None:
    rows = [r for g in args.generations for r in read_jsonl(Path(g) / "generations.jsonl")]
    rows = [r for r in rows if r["generation"].strip()]
    reranker = load_judge(args.reranker, "act")
    probs = reranker.predict_proba([r["generation"] for r in rows], [r["context"] for r in rows]).tolist()
    seen: Counter = Counter()
    kept = []
    for r, p in zip(rows, probs):
        col = reranker.labels.index(r["requested"])
        key = " ".join(r["generation"].lower().split())
        if max(range(len(p)), key=p.__getitem__) != col or p[col] < args.min_prob or seen[key] >= args.max_repeats:
            continue
        seen[key] += 1
        kept.append({"context": r["context"], "response": r["generation"].strip(), "act": r["requested"],
                     "reranker_prob": round(p[col], 4), "source": r["dialogue_id"]})
    write_jsonl(Path(args.out), kept * args.copies)  # copies: the few counterfactuals weigh more among 8,000 examples
    by_act = Counter(k["act"] for k in kept)
    asked = Counter(r["requested"] for r in rows)
    summary = {act: {"asked": asked[act], "kept": by_act[act]} for act in sorted(asked)}
    print(json.dumps({"out": args.out, "kept": len(kept), "by_act": summary, "min_prob": args.min_prob,
                      "max_repeats": args.max_repeats, "copies": args.copies}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("contexts", help="write train contexts files")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--exclude", nargs="*", default=[], help="contexts files whose contexts are not drawn again")
    p.set_defaults(fn=contexts)
    p = sub.add_parser("select", help="keep the responses the reranker gives the requested act")
    p.add_argument("generations", nargs="+", help="`ctrldial eval` output folders")
    p.add_argument("--reranker", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-prob", type=float, default=0.5)
    p.add_argument("--max-repeats", type=int, default=3, help="at most this many copies of one response (generic replies)")
    p.add_argument("--copies", type=int, default=1, help="write every kept example this many times")
    p.set_defaults(fn=select)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
