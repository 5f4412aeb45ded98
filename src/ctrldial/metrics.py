"""Control accuracy, BLEU, distinct-n and friends, computed from generation rows."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def control_metrics(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Control accuracy: share of responses whose predicted label is the requested one.

    Every context is asked for every label, and the headline is the mean over requested labels, so a
    model that ignores the label cannot score by echoing the corpus prior (45% inform). The first
    experiments' measure — requested = the reference's own label — is reported beside it as `_gold`.
    """
    hits: dict[str, list[bool]] = defaultdict(list)
    gold, other = [], []
    for r in rows:
        ok = r["predicted"] == r["requested"]
        hits[r["requested"]].append(ok)
        (gold if r["requested"] == r["reference_label"] else other).append(ok)
    per_label = {lab: (sum(hits[lab]) / len(hits[lab]) if hits[lab] else None) for lab in labels}
    known = [v for v in per_label.values() if v is not None]
    return {
        "control_accuracy": sum(known) / len(known) if known else None,
        "control_accuracy_gold": sum(gold) / len(gold) if gold else None,
        "control_accuracy_other": sum(other) / len(other) if other else None,
        "per_label_accuracy": per_label,
    }


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the whole set of responses (Li et al., 2016)."""
    total, seen = 0, set()
    for t in texts:
        toks = t.split()
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def text_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """BLEU and distinct-n on the responses asked for the reference's own label; length and emptiness on all."""
    gold = [r for r in rows if r["requested"] == r["reference_label"]]
    hyps = [r["generation"] for r in gold]
    every = [r["generation"] for r in rows]
    return {
        "bleu": bleu(hyps, [r["reference"] for r in gold]),
        "distinct_1": distinct_n(hyps, 1),
        "distinct_2": distinct_n(hyps, 2),
        "mean_length": sum(len(t.split()) for t in every) / len(every) if every else 0.0,
        "empty_rate": sum(not t.strip() for t in every) / len(every) if every else 0.0,
    }
