"""Which trained classifiers make the best ensemble judge? Chosen on the validation split, reported on test.

    python benchmarks/classifier/select_ensemble.py ctx1=/work/clf-act-ctx utt2=/work/clf2/act-utt ... \
        --data /work/shared/data/dailydialog --cache /tmp/ens-probs

Scores each classifier once on the validation split (deduplicated, as in training) and on the whole test
split (7,740 utterances), averages the probabilities of every subset of two or more, ranks the subsets by
validation accuracy, and writes results/ensemble-selection.json: every subset's validation accuracy and,
beside it, its test accuracy. Only validation picks; the test column is there to show how much the
choice matters, not to choose.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch

from ctrldial.classifier import Scorer
from ctrldial.classifier.data import utterance_examples
from ctrldial.data.corpus import load_corpus

HERE = Path(__file__).resolve().parent


def probs(name: str, folder: str, splits: dict, cache: Path) -> dict[str, torch.Tensor]:
    out, scorer = {}, None
    for split, examples in splits.items():
        f = cache / f"{name}.{split}.pt"
        if not f.is_file():
            scorer = scorer or Scorer.load(folder, "act")
            p = scorer.predict_proba([ex.text for ex in examples], [list(ex.history) for ex in examples])
            torch.save({"probs": p, "gold": torch.tensor([ex.label for ex in examples])}, f)
        out[split] = torch.load(f)["probs"]
    return out


def spread(rows: list[dict]) -> dict:
    """How much the choice of members matters: the test accuracies of every ensemble of a size, summarised."""
    test = sorted(r["test_accuracy"] for r in rows)
    return {"count": len(test), "test_min": test[0], "test_median": round(statistics.median(test), 3), "test_max": test[-1],
            "share_test_at_least_86": round(sum(t >= 86 for t in test) / len(test), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=DIR")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", default="ensemble-probs", help="folder for the per-classifier probabilities")
    ap.add_argument("--out", default="ensemble-selection.json", help="file name under results/")
    ap.add_argument("--keep", type=int, default=0, help="subsets written in full, best first (0 = all)")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    splits = {
        "validation": utterance_examples(load_corpus(args.data, dedup=True), "validation", "act", normalize=False),
        "test": utterance_examples(load_corpus(args.data, dedup=False), "test", "act", normalize=False),
    }
    gold = {s: torch.tensor([ex.label for ex in ex_]) for s, ex_ in splits.items()}
    runs = dict(item.split("=", 1) for item in args.runs)
    p = {name: probs(name, folder, splits, cache) for name, folder in runs.items()}

    def accuracy(members: tuple[str, ...], split: str) -> float:
        mean = sum(p[m][split] for m in members) / len(members)
        return round(100 * (mean.argmax(-1) == gold[split]).float().mean().item(), 2)

    rows = [
        {"members": list(c), "validation_accuracy": accuracy(c, "validation"), "test_accuracy": accuracy(c, "test")}
        for r in range(1, len(runs) + 1) for c in itertools.combinations(runs, r)
    ]
    rows.sort(key=lambda r: (-r["validation_accuracy"], len(r["members"])))  # ties: fewer members
    chosen = next(r for r in rows if len(r["members"]) >= 2)
    result = {
        "classifiers": runs,
        "validation_utterances": len(gold["validation"]),
        "test_utterances": len(gold["test"]),
        "chosen_on_validation": chosen,
        "best_single_on_validation": next(r for r in rows if len(r["members"]) == 1),
        "all_members": next(r for r in rows if len(r["members"]) == len(runs)),
        "ensembles_of_3_or_more": spread([r for r in rows if len(r["members"]) >= 3]),
        "subsets": rows[: args.keep or None],
    }
    (HERE / "results" / args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| members | validation acc | test acc (all 7,740) |\n|---|---|---|")
    for r in rows[:10]:
        print(f"| {' + '.join(r['members'])} | {r['validation_accuracy']:.2f}% | {r['test_accuracy']:.2f}% |")
    print(f"chosen on validation: {' + '.join(chosen['members'])}: test {chosen['test_accuracy']:.2f}%")


if __name__ == "__main__":
    main()
