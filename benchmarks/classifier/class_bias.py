"""Does a per-class bias on the logits lift the weak classes (commissive) without retraining?

    python benchmarks/classifier/class_bias.py /work/clf-act-utt --name act-utt --data /work/shared/data/dailydialog

Scores the validation and test splits once, fits one additive bias per class on the validation split by
coordinate ascent on macro-F1 (a prior shift, which is what class-weighted training does in effect),
and reports test per-class F1 before and after in results/<name>-bias.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ctrldial.classifier import Scorer, classification_metrics
from ctrldial.classifier.data import utterance_examples
from ctrldial.data.corpus import load_corpus

HERE = Path(__file__).resolve().parent
GRID = [v / 10 for v in range(-20, 31)]  # bias values tried per class


def split_log_probs(scorer: Scorer, corpus, split: str) -> tuple[torch.Tensor, list[int]]:
    examples = utterance_examples(corpus, split, scorer.attribute, normalize=False)
    probs = scorer.predict_proba([ex.text for ex in examples], [list(ex.history) for ex in examples])
    return probs.clamp_min(1e-12).log(), [ex.label for ex in examples]


def fit_bias(log_probs: torch.Tensor, gold: list[int], labels: list[str], rounds: int = 3) -> torch.Tensor:
    bias = torch.zeros(len(labels))

    def macro_f1(b: torch.Tensor) -> float:
        return classification_metrics(gold, (log_probs + b).argmax(-1).tolist(), labels)["macro_f1"]

    for _ in range(rounds):
        for c in range(1, len(labels)):  # class 0 stays the reference: only differences between biases matter
            trials = []
            for v in GRID:
                b = bias.clone()
                b[c] = v
                trials.append((macro_f1(b), -abs(v), v))  # ties: the smaller shift
            bias[c] = max(trials)[2]
    return bias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    scorer = Scorer.load(args.dir, attribute="act")
    corpus = load_corpus(args.data)
    val_lp, val_gold = split_log_probs(scorer, corpus, "validation")
    test_lp, test_gold = split_log_probs(scorer, corpus, "test")
    bias = fit_bias(val_lp, val_gold, scorer.labels)
    before = classification_metrics(test_gold, test_lp.argmax(-1).tolist(), scorer.labels)
    after = classification_metrics(test_gold, (test_lp + bias).argmax(-1).tolist(), scorer.labels)
    result = {
        "classifier": str(args.dir),
        "bias": {c: round(v, 3) for c, v in zip(scorer.labels, bias.tolist())},  # float32 → the grid's decimals
        "validation_utterances": len(val_gold),
        "test": {
            name: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "f1": {c: m["per_class"][c]["f1"] for c in scorer.labels}}
            for name, m in (("before", before), ("after", after))
        },
    }
    (HERE / "results" / f"{args.name}-bias.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
