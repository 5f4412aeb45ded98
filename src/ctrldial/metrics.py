"""Control accuracy, BLEU, distinct-n and friends, computed from generation rows."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any


def control_metrics(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Control accuracy: share of responses whose predicted label is the requested one.

    Every context is asked for every label, and the headline is the mean over requested labels, so a
    model that ignores the label cannot score by echoing the corpus prior (45% inform). The first
    experiments' measure — requested = the reference's own label — is reported beside it as `_gold`.

    Rows judged with a threshold carry ``unsure`` (scoring.score_rows). Then ``control_accuracy`` counts an
    unsure verdict as not following the request (conservative: only verdicts the judge is sure of are hits),
    and the result adds ``unsure_rate`` (share of non-empty responses judged unsure) and
    ``control_accuracy_sure`` / ``per_label_accuracy_sure`` (the same measure over sure verdicts only; an
    empty response is a sure miss). Rows without ``unsure`` give exactly the keys and values they always did.
    """
    hits: dict[str, list[bool]] = defaultdict(list)
    sure: dict[str, list[bool]] = defaultdict(list)
    gold, other = [], []
    for r in rows:
        ok = r["predicted"] == r["requested"] and not r.get("unsure", False)
        hits[r["requested"]].append(ok)
        (gold if r["requested"] == r["reference_label"] else other).append(ok)
        if not r.get("unsure", False):
            sure[r["requested"]].append(ok)
    per_label = _per_label(hits, labels)
    out = {
        "control_accuracy": _mean_known(per_label),
        "control_accuracy_gold": sum(gold) / len(gold) if gold else None,
        "control_accuracy_other": sum(other) / len(other) if other else None,
        "per_label_accuracy": per_label,
    }
    if any("unsure" in r for r in rows):
        judged = [r for r in rows if r["predicted"] is not None]
        per_sure = _per_label(sure, labels)
        out["unsure_rate"] = sum(bool(r["unsure"]) for r in judged) / len(judged) if judged else None
        out["control_accuracy_sure"] = _mean_known(per_sure)
        out["per_label_accuracy_sure"] = per_sure
    return out


def _per_label(hits: dict[str, list[bool]], labels: list[str]) -> dict[str, float | None]:
    return {lab: (sum(hits[lab]) / len(hits[lab]) if hits[lab] else None) for lab in labels}


def _mean_known(per_label: dict[str, float | None]) -> float | None:
    known = [v for v in per_label.values() if v is not None]
    return sum(known) / len(known) if known else None


def _context_key(r: dict[str, Any]) -> tuple:
    return (r.get("dialogue_id"), r.get("turn"), tuple(r["context"]))


def control_ci(rows: list[dict[str, Any]], labels: list[str], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals over *contexts* for control accuracy (all acts, gold, per act; and
    ``control_accuracy_sure`` when rows carry ``unsure``, which counts as a miss as in ``control_metrics``).

    A context's responses (one per requested act) are resampled together: they share the context, so
    treating the 4 × N responses as independent would make the intervals too narrow.
    """
    import warnings

    import numpy as np

    keys: dict[tuple, int] = {}
    for r in rows:
        keys.setdefault(_context_key(r), len(keys))
    n = len(keys)
    if n == 0:
        return {}
    hits = np.full((n, len(labels)), np.nan)
    sure = np.full((n, len(labels)), np.nan)  # as hits, nan where the verdict is unsure
    gold = np.full(n, np.nan)
    for r in rows:
        if r["requested"] not in labels:
            continue
        unsure = bool(r.get("unsure", False))
        i, ok = keys[_context_key(r)], float(r["predicted"] == r["requested"] and not unsure)
        hits[i, labels.index(r["requested"])] = ok
        if not unsure:
            sure[i, labels.index(r["requested"])] = ok
        if r["requested"] == r["reference_label"]:
            gold[i] = ok
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(values: np.ndarray) -> list[float] | None:
        # values: (resamples,) statistics; nan where a resample held none of the needed responses
        values = values[~np.isnan(values)]
        return [float(np.percentile(values, lo_q)), float(np.percentile(values, hi_q))] if values.size else None

    with np.errstate(invalid="ignore", divide="ignore"):
        sampled = hits[idx]  # (resamples, n, labels)
        per_label = np.nanmean(sampled, axis=1)  # (resamples, labels)
        out = {
            "control_accuracy": interval(np.nanmean(per_label, axis=1)),
            "control_accuracy_gold": interval(np.nanmean(gold[idx], axis=1)),
            "per_label_accuracy": {lab: interval(per_label[:, j]) for j, lab in enumerate(labels)},
        }
        if any("unsure" in r for r in rows):
            with warnings.catch_warnings():  # a resample whose act has no sure verdict: nan, dropped by interval()
                warnings.simplefilter("ignore", RuntimeWarning)
                out["control_accuracy_sure"] = interval(np.nanmean(np.nanmean(sure[idx], axis=1), axis=1))
    return {**out, "level": level, "resamples": resamples, "unit": "context"}


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
    """BLEU and distinct-n on the responses asked for the reference's own label; length, emptiness and repetition on all."""
    gold = [r for r in rows if r["requested"] == r["reference_label"]]
    hyps = [r["generation"] for r in gold]
    every = [r["generation"] for r in rows]
    return {
        "bleu": bleu(hyps, [r["reference"] for r in gold]),
        "distinct_1": distinct_n(hyps, 1),
        "distinct_2": distinct_n(hyps, 2),
        "mean_length": sum(len(t.split()) for t in every) / len(every) if every else 0.0,
        "empty_rate": sum(not t.strip() for t in every) / len(every) if every else 0.0,
        "repetition_rate": repetition_rate(every),
    }


_WORD = re.compile(r"\w+(?:'\w+)*")  # words, contractions kept whole ("don't"); punctuation dropped


def repeats_ngram(text: str, n: int = 3) -> bool:
    """Whether some word n-gram occurs at least twice in ``text`` (lower-cased words, punctuation ignored)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


def repetition_rate(texts: list[str], n: int = 3) -> float | None:
    """Share of non-empty responses that repeat a word 3-gram (``repeats_ngram``): the loops of degenerate decoding.

    Tokens are the lower-cased words of the response, ``\\w+`` runs with contractions kept whole and punctuation
    dropped, so "I know. I know." has no repeated 3-gram and "a b c, a b c" has one. None without a non-empty response.
    """
    said = [t for t in texts if t.strip()]
    return sum(repeats_ngram(t, n) for t in said) / len(said) if said else None
