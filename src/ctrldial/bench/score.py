"""Scoring speed: ctrldial's judge (``load_judge``) against ``pipeline("text-classification")`` on one classifier."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ctrldial.bench.timing import alternate, summary
from ctrldial.config import Config
from ctrldial.data.corpus import Corpus
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError
from ctrldial.scoring import load_judge


def score_texts(corpus: Corpus, n: int) -> list[str]:
    """``n`` test and validation utterances (cycled when the corpus has fewer), normalized as examples are."""
    utts = [normalize_text(u) for split in ("test", "validation") for d in corpus.splits[split] for u in d.utterances]
    if not utts:
        raise UserError("data.path: no test or validation utterances to score")
    return [utts[i % len(utts)] for i in range(n)]


def bench_score(cfg: Config, corpus: Corpus, n_texts: int, repeats: int) -> dict[str, Any]:
    """ctrldial's Scorer vs ``pipeline("text-classification")`` with its defaults, on the same classifier.

    Without ``classifier.path`` a small classifier is trained first (``classifier.max_steps``), in a
    temporary folder: its speed, not its accuracy, is measured.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(cfg.classifier.path) if cfg.classifier.path else Path(tmp) / "classifier"
        if not cfg.classifier.path:
            from ctrldial.classifier import train_classifier

            train_classifier(cfg, path)
        result = _score_both(path, cfg.data.attribute, score_texts(corpus, n_texts), repeats)
    trained = f"{cfg.classifier.model} trained {cfg.classifier.max_steps} steps here"
    return result | {"classifier": cfg.classifier.path or trained, "trained_here": not cfg.classifier.path}


def _score_both(path: Path, attribute: str, texts: list[str], repeats: int) -> dict[str, Any]:
    from transformers import pipeline

    from ctrldial.classifier import Ensemble

    scorer = load_judge(path, attribute)
    if isinstance(scorer, Ensemble):
        raise UserError(
            f"classifier.path={path} is an ensemble; the scoring bench compares one classifier with transformers' "
            f"pipeline: pass one of its members ({path}/members/0)"
        )
    pipe = pipeline("text-classification", model=str(path))
    labels: dict[str, list] = {}

    def scorer_run() -> float:
        t = time.perf_counter()
        labels["ctrldial"] = scorer.score(texts)[0]
        return len(texts) / (time.perf_counter() - t)

    def pipeline_run() -> float:
        t = time.perf_counter()
        labels["pipeline"] = [r["label"] for r in pipe(texts)]
        return len(texts) / (time.perf_counter() - t)

    ours, base = alternate(scorer_run, pipeline_run, repeats, extra_a=True)
    same = sum(a == b for a, b in zip(labels["ctrldial"], labels["pipeline"])) / len(texts)
    return {
        "texts": len(texts),
        "ctrldial": summary(ours, "utterances_per_s"), "hf_pipeline": summary(base, "utterances_per_s"),
        "same_label_share": same,
    }
