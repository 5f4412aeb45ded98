"""Reranking by a discriminator, never by the judge: N candidates per request, the one the discriminator finds
most likely of the requested label is kept (ties: the model's likelihood); with ``generate.rerank_min_prob`` the most
fluent of those the discriminator is sure enough of; with ``generate.rerank_avoid_repeats`` a candidate that loops (a
repeated word 3-gram) only when every candidate does.

The judge that reports control must not choose the outputs it scores, or control measures the judge's own
errors twice. ``check_reranker`` refuses a reranker that is the judge's folder, has the judge's training-data
fingerprint, or learned from the same dialogues (the same split, unless the two took disjoint halves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrldial.errors import UserError
from ctrldial.metrics import repeats_ngram


def _train_data(path: Path) -> dict[str, Any]:
    from ctrldial.classifier import read_metadata

    data = read_metadata(path).get("train_data") or {}
    return data if isinstance(data, dict) else {}


def _halves_overlap(a: str, b: str) -> bool:
    return a == "all" or b == "all" or a == b


def check_reranker(reranker: str | Path, judge: str | Path | None) -> dict[str, Any]:
    """What the record says of the reranker; a reranker that shares the judge's data is a one-line error."""
    reranker = Path(reranker)
    if not reranker.is_dir():
        raise UserError(f"generate.rerank_classifier={reranker}: no such classifier folder (train one with `ctrldial classifier train`)")
    mine = _train_data(reranker)
    info: dict[str, Any] = {"path": str(reranker), "train_data": {k: mine.get(k) for k in ("split", "dialogues", "fingerprint", "utterances")}}
    if not judge:
        return info
    judge = Path(judge)
    theirs = _train_data(judge)
    info["judge_train_data"] = {k: theirs.get(k) for k in ("split", "dialogues", "fingerprint", "utterances")}
    fix = "train the reranker on other dialogues (classifier.train_split=validation, or the other classifier.train_dialogues half)"
    # the judge's own folder is refused by the config check (config/schema.py) and, failing that, by its fingerprint
    if mine.get("fingerprint") and mine.get("fingerprint") == theirs.get("fingerprint"):
        raise UserError(f"generate.rerank_classifier {reranker} has the judge's training-data fingerprint ({judge}); {fix}")
    same_split = mine.get("split", "train") == theirs.get("split", "train")
    if same_split and _halves_overlap(mine.get("dialogues", "all"), theirs.get("dialogues", "all")):
        raise UserError(
            f"generate.rerank_classifier {reranker} learned from the judge's dialogues ({judge}: {theirs.get('split', 'train')} split, "
            f"{theirs.get('dialogues', 'all')}; reranker: {mine.get('dialogues', 'all')}); {fix}"
        )
    return info


def rerank(m, requests: list[tuple], reranker, progress: bool = False) -> list[str]:
    """The chosen response per request: ``num_candidates`` sampled candidates each, scored by ``reranker``."""
    n = m.cfg.generate.num_candidates
    expanded = [req for req in requests for _ in range(n)]
    logprobs: list[float] = []
    lengths: list[int] = []
    texts = m.decode_requests(expanded, progress, logprobs, lengths)
    probs = reranker.predict_proba(texts, [list(ctx) for ctx, _ in expanded]).tolist()
    cols = [reranker.labels.index(label) for _, label in requests]
    g = m.cfg.generate
    return [texts[choose(texts, probs, logprobs, lengths, range(i * n, (i + 1) * n), col, g.rerank_min_prob, g.rerank_avoid_repeats)]
            for i, col in enumerate(cols)]


def choose(texts, probs, logprobs, lengths, cands, col: int, min_prob: float | None, avoid_repeats: bool = False) -> int:
    """The kept candidate: the most probable of the label (ties: likelihood), or with ``min_prob`` the most fluent
    (mean log-likelihood per token, eos counted) of those at least that probable. An empty candidate has no act: it
    is chosen only when every candidate is empty; with ``avoid_repeats``, one that repeats a word 3-gram only when
    every non-empty candidate does."""
    cands = [j for j in cands if texts[j].strip()] or list(cands)
    if avoid_repeats:
        cands = [j for j in cands if not repeats_ngram(texts[j])] or cands
    sure = [j for j in cands if min_prob is not None and probs[j][col] >= min_prob]
    if sure:
        return max(sure, key=lambda j: logprobs[j] / (lengths[j] + 1))
    return max(cands, key=lambda j: (probs[j][col], logprobs[j]))
