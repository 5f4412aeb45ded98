"""`ctrldial judge agreement`: how often a judge agrees with hand labels of generated responses.

A labels file has one JSON object per line, ``{"context": ["turn", ...], "response": "...", "label": "directive"}``;
other keys (``method``, ``requested``, ``draw`` …) are kept and returned with each verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrldial.classifier.data import read_labelled
from ctrldial.classifier.metrics import classification_metrics, format_table
from ctrldial.record import write_json
from ctrldial.scoring import VALIDATION, load_judge


def agreement(labels_file: Path, classifier: Path, out: Path | None = None) -> dict[str, Any]:
    """Score every labelled response with ``classifier``; accuracy, per-class precision/recall, confusion, verdicts."""
    from ctrldial.classifier import read_metadata

    meta = read_metadata(Path(classifier))
    judge = load_judge(classifier, meta["attribute"])
    items = read_labelled(labels_file, judge.labels)
    pred, conf = judge.score([it["response"] for it in items], [it["context"] for it in items])
    index = {lab: i for i, lab in enumerate(judge.labels)}
    result = classification_metrics([index[it["label"]] for it in items], [index[p] for p in pred], judge.labels)
    result = {
        "labels_file": str(labels_file), "classifier": str(classifier), **result,
        "verdicts": [{**it, "judge": p, "confidence": c, "agrees": p == it["label"]} for it, p, c in zip(items, pred, conf)],
    }
    if out is not None:
        write_json(Path(out) / VALIDATION, result)
    return result


def format_agreement(result: dict[str, Any]) -> str:
    """The per-class table (precision: of the responses the judge gives an act, how many are; recall: of those that are)."""
    head = f"{result['labels_file']} judged by {result['classifier']}: agreement {result['accuracy']:.3f} on {result['n']} responses"
    return head + "\n" + format_table(result)
