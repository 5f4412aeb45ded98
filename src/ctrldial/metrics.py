"""Control accuracy, BLEU, distinct-n and friends, computed from generation rows."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from ctrldial.errors import UserError


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


def _context_index(rows: list[dict[str, Any]]) -> dict[tuple, int]:
    """Each context's position, in order of first appearance: the bootstrap's unit."""
    keys: dict[tuple, int] = {}
    for r in rows:
        keys.setdefault(_context_key(r), len(keys))
    return keys


def _bootstrap_draws(n: int, resamples: int, seed: int):
    """(resamples, n) context indices drawn with replacement. The same seed and n give the same draws, and fewer
    resamples are the first rows of more (numpy fills the array in order): every interval of a record resamples
    the same contexts."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentile_interval(level: float):
    """``interval(values)``: the central ``level`` percentile interval of bootstrap statistics, nan dropped (a
    resample that held none of the needed responses); None when none is left."""
    import numpy as np

    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(values) -> list[float] | None:
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        return [float(np.percentile(values, lo_q)), float(np.percentile(values, hi_q))] if values.size else None

    return interval


def control_ci(rows: list[dict[str, Any]], labels: list[str], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals over *contexts* for control accuracy (all acts, gold, per act; and
    ``control_accuracy_sure`` when rows carry ``unsure``, which counts as a miss as in ``control_metrics``).

    A context's responses (one per requested act) are resampled together: they share the context, so
    treating the 4 × N responses as independent would make the intervals too narrow.
    """
    import warnings

    import numpy as np

    keys = _context_index(rows)
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
    idx = _bootstrap_draws(n, resamples, seed)
    interval = _percentile_interval(level)

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


def _hits(rows: list[dict[str, Any]], labels: list[str], keys: dict[tuple, int]):
    """(contexts, labels) array: 1 where the response followed the request (a sure verdict, as control_metrics),
    0 where not, nan where that context was not asked for that label or is not in ``keys``."""
    import numpy as np

    out = np.full((len(keys), len(labels)), np.nan)
    for r in rows:
        i = keys.get(_context_key(r))
        if i is not None and r["requested"] in labels:
            out[i, labels.index(r["requested"])] = float(r.get("predicted") == r["requested"] and not r.get("unsure", False))
    return out


def _control(hits, idx=None):
    """Control accuracy (the mean over labels of per-label accuracy) of a hits array, or of each resample ``idx``."""
    import numpy as np

    sampled = hits if idx is None else hits[idx]  # (contexts, labels) or (resamples, contexts, labels)
    return np.nanmean(np.nanmean(sampled, axis=-2), axis=-1)


def paired_bootstrap(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], labels: list[str], resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Control accuracy of ``rows_a`` minus that of ``rows_b`` (judged generation rows), with a paired bootstrap
    interval: responses are paired by (context, requested label), and only contexts both hold count."""
    return paired_bootstrap_seeds([(rows_a, rows_b)], labels, resamples, seed, level)


def paired_bootstrap_seeds(pairs: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]], labels: list[str],
                           resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """``paired_bootstrap`` pooled over seeds: ``pairs`` holds (rows of a, rows of b) per seed, and the difference
    is the mean over pairs of a − b, each on the (context, label) responses both of that pair hold.

    One draw resamples contexts for every pair at once (a context drawn counts in each pair that holds it), so
    pairs evaluated on the same contexts are resampled together. The interval is the percentile interval of
    the resampled differences; ``p_value`` is two-sided, twice the smaller share of resampled differences on
    either side of 0 ((count + 1) / (resamples + 1), capped at 1). It measures the uncertainty of the test
    contexts, not of training: the seeds' spread is not in it.
    """
    import warnings

    import numpy as np

    shared = []
    for n, (rows_a, rows_b) in enumerate(pairs):
        common = {_context_key(r) for r in rows_a} & {_context_key(r) for r in rows_b}
        if not common:
            where = f" (pair {n + 1} of {len(pairs)})" if len(pairs) > 1 else ""
            raise UserError(f"paired_bootstrap: the two sets of generations share no test context{where} — (dialogue_id, turn, "
                            "context) differ everywhere, so they were generated on different contexts and cannot be paired")
        shared.append(common)
    every = set().union(*shared)
    keys = _context_index([r for rows_a, _ in pairs for r in rows_a if _context_key(r) in every])
    matrices = []
    for (rows_a, rows_b), common in zip(pairs, shared):
        a, b = _hits(rows_a, labels, keys), _hits(rows_b, labels, keys)
        a[np.array([k not in common for k in keys])] = np.nan  # another pair's contexts
        a[np.isnan(b)] = np.nan  # a pair is a response both sides hold
        b[np.isnan(a)] = np.nan
        matrices.append((a, b))
    idx = _bootstrap_draws(len(keys), resamples, seed)
    with warnings.catch_warnings():  # a draw without any of a pair's contexts or acts: nan, dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        point = float(np.mean([_control(a) - _control(b) for a, b in matrices]))
        draws = np.nanmean(np.stack([_control(a, idx) - _control(b, idx) for a, b in matrices]), axis=0)
    draws = draws[~np.isnan(draws)]
    if np.isnan(point) or not draws.size:
        raise UserError("paired_bootstrap: no (context, requested label) response is held by both sets for the labels "
                        f"{', '.join(labels)}")
    below, above = int(np.sum(draws <= 0)), int(np.sum(draws >= 0))
    return {"difference": point, "ci": _percentile_interval(level)(draws),
            "p_value": min(1.0, 2 * (min(below, above) + 1) / (draws.size + 1)),
            "contexts": len(keys), "pairs": len(pairs), "resamples": resamples, "level": level, "unit": "context"}


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


TEXT_RESAMPLES = 200
"""Resamples of the BLEU and distinct-2 intervals (``text_ci``): each recomputes corpus BLEU, about 30 ms for 500
responses on a 2-core CPU, so 200 (about 6 s a run) instead of control_ci's 1000; the percentiles of 200 are
coarser, not biased."""


TEXT_CI_KEYS = ("bleu", "distinct_2", "text_resamples")
"""What ``text_ci`` adds to a record's ``metrics.ci``; a rescore (another judge) keeps them."""


def text_ci(rows: list[dict[str, Any]], resamples: int = TEXT_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals over contexts for corpus BLEU and distinct-2 of the responses asked for the
    reference's own label (as ``text_metrics``). Contexts are drawn as in ``control_ci`` (same order, same seed):
    its first ``resamples`` draws. ``{}`` without such responses.

    Distinct-2 is a share of a *set*: a resample repeats the responses of a context drawn twice, and with them
    their bigrams, so nearly every resample's distinct-2 is below the measured one (about 0.02 on 60 contexts).
    Its interval is therefore the resamples' percentile interval moved so that their median sits on the
    measured value (the spread is the bootstrap's, the bias is removed). BLEU, a ratio of n-gram counts,
    needs no such move."""
    import numpy as np

    keys = _context_index(rows)
    gold: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["requested"] == r["reference_label"]:
            gold.setdefault(keys[_context_key(r)], []).append(r)
    if not gold:
        return {}
    bleus, distinct = [], []
    for draw in _bootstrap_draws(len(keys), resamples, seed):
        picked = [r for i in draw for r in gold.get(int(i), ())]
        hyps = [r["generation"] for r in picked]
        bleus.append(bleu(hyps, [r["reference"] for r in picked]) if picked else float("nan"))
        distinct.append(distinct_n(hyps, 2) if picked else float("nan"))
    interval = _percentile_interval(level)
    measured = distinct_n([r["generation"] for group in gold.values() for r in group], 2)
    lo_hi = interval(distinct)
    shift = measured - float(np.nanmedian(distinct)) if lo_hi else 0.0
    return {"bleu": interval(bleus), "distinct_2": [lo_hi[0] + shift, lo_hi[1] + shift] if lo_hi else None,
            "text_resamples": resamples, "level": level, "unit": "context"}


def text_metrics(rows: list[dict[str, Any]], ci: dict[str, Any] | None = None) -> dict[str, Any]:
    """BLEU and distinct-n on the responses asked for the reference's own label; length, emptiness and repetition on all.

    With ``ci`` (a record's intervals so far, e.g. control_ci's, or ``{}``) the result also holds ``ci``: those
    and the BLEU and distinct-2 intervals (``text_ci``), so one ``metrics.update`` gives a record both."""
    gold = [r for r in rows if r["requested"] == r["reference_label"]]
    hyps = [r["generation"] for r in gold]
    every = [r["generation"] for r in rows]
    extra = {} if ci is None else {"ci": {**ci, **text_ci(rows)}}
    return {
        "bleu": bleu(hyps, [r["reference"] for r in gold]),
        "distinct_1": distinct_n(hyps, 1),
        "distinct_2": distinct_n(hyps, 2),
        "mean_length": sum(len(t.split()) for t in every) / len(every) if every else 0.0,
        "empty_rate": sum(not t.strip() for t in every) / len(every) if every else 0.0,
        "repetition_rate": repetition_rate(every),
        "label_word_rate": label_word_rate(rows),
        **extra,
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


def label_word_rate(rows: list[dict[str, Any]]) -> float | None:
    """Share of non-empty responses that say the name of the label they were asked for, as a word ("Sure,
    commissive."; ``no_emotion`` also as "no emotion"). Guidance contrasts a prompt that holds the label's name
    with one that does not, so it can raise control by making the model copy the name: a judge may take
    "question" for a question. None without a non-empty response."""
    said = [r for r in rows if r["generation"].strip()]
    if not said:
        return None

    def says(r: dict[str, Any]) -> bool:
        words = " ".join(_WORD.findall(r["generation"].lower()))
        name = " ".join(_WORD.findall(r["requested"].lower().replace("_", " ")))
        return f" {name} " in f" {words} "
    return sum(map(says, said)) / len(said)
