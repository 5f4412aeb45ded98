"""`ctrldial judge agreement`: how often a judge agrees with hand labels of generated responses.

A labels file has one JSON object per line, ``{"context": ["turn", ...], "response": "...", "label": "directive"}``;
other keys (``method``, ``requested``, ``draw`` …) are kept and returned with each verdict.

An ``unsure`` threshold T (``classifier.unsure_below``) sets aside verdicts whose confidence is below T. The
result always holds ``thresholds``: for each T of ``THRESHOLDS``, the coverage (share of verdicts that are
sure) and accuracy and per-class precision / recall on the sure ones, so a threshold can be chosen on a
development file; ``recall_all`` counts an unsure verdict as not found (what a run's control accuracy does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrldial.classifier.data import read_labelled
from ctrldial.classifier.metrics import classification_metrics, format_table
from ctrldial.errors import UserError
from ctrldial.record import write_json
from ctrldial.scoring import VALIDATION, load_judge

THRESHOLDS = (0.0, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""The thresholds every agreement lists (a max-softmax confidence over 4 acts is at least 0.25)."""


def sure_metrics(gold: list[int], pred: list[int], conf: list[float], labels: list[str], threshold: float) -> dict[str, Any]:
    """Coverage, and accuracy / per-class precision, recall (+ ``recall_all``) on the verdicts with confidence >= ``threshold``."""
    keep = [i for i, c in enumerate(conf) if c >= threshold]
    m = classification_metrics([gold[i] for i in keep], [pred[i] for i in keep], labels)
    per_class = {}
    for c, name in enumerate(labels):
        support_all = sum(g == c for g in gold)
        found = m["confusion"][c][c]
        per_class[name] = {**m["per_class"][name], "predicted": sum(row[c] for row in m["confusion"]),
                           "recall_all": found / support_all if support_all else 0.0, "support_all": support_all}
    return {"threshold": threshold, "coverage": len(keep) / len(gold) if gold else 0.0, "n_sure": len(keep),
            "accuracy": m["accuracy"] if keep else None, "macro_f1": m["macro_f1"], "per_class": per_class, "confusion": m["confusion"]}


def agreement(labels_file: Path, classifier: Path, out: Path | None = None, unsure_below: float = 0.0) -> dict[str, Any]:
    """Score every labelled response with ``classifier``; accuracy, per-class precision/recall, confusion, verdicts.

    With ``unsure_below`` > 0 the result adds ``coverage`` and ``sure`` (``sure_metrics`` at that threshold) and
    each verdict says whether it is ``unsure``; ``thresholds`` is always there.
    """
    if not 0 <= unsure_below < 1:
        raise UserError(f"--unsure-below must be in [0, 1) (0 = off), not {unsure_below}")
    from ctrldial.classifier import read_metadata

    meta = read_metadata(Path(classifier))
    judge = load_judge(classifier, meta["attribute"])
    items = read_labelled(labels_file, judge.labels)
    pred, conf = judge.score([it["response"] for it in items], [it["context"] for it in items])
    index = {lab: i for i, lab in enumerate(judge.labels)}
    gold, guess = [index[it["label"]] for it in items], [index[p] for p in pred]
    result = classification_metrics(gold, guess, judge.labels)
    result = {"labels_file": str(labels_file), "classifier": str(classifier), **result}
    if unsure_below:
        sure = sure_metrics(gold, guess, conf, judge.labels, unsure_below)
        result.update(unsure_below=unsure_below, coverage=sure["coverage"], sure=sure)
    result["thresholds"] = [sure_metrics(gold, guess, conf, judge.labels, t) for t in THRESHOLDS]
    result["verdicts"] = [{**it, "judge": p, "confidence": c, "agrees": p == it["label"],
                           **({"unsure": c < unsure_below} if unsure_below else {})} for it, p, c in zip(items, pred, conf)]
    if out is not None:
        write_json(Path(out) / VALIDATION, result)
    return result


def format_agreement(result: dict[str, Any]) -> str:
    """The per-class table (precision: of the responses the judge gives an act, how many are; recall: of those that are)."""
    head = f"{result['labels_file']} judged by {result['classifier']}: agreement {result['accuracy']:.3f} on {result['n']} responses"
    text = head + "\n" + format_table(result)
    if "sure" in result:
        s = result["sure"]
        acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
        text += (f"\n\nsure verdicts (confidence >= {result['unsure_below']}): coverage {s['coverage']:.3f} ({s['n_sure']}/{result['n']}), "
                 f"agreement {acc}\n" + format_table({**s, "n": s["n_sure"], "accuracy": s["accuracy"] or 0.0, "labels": result["labels"]}))
    rows = ["threshold  coverage  agreement  " + "  ".join(f"{lab[:11]:>11}" for lab in result["labels"])]
    for t in result["thresholds"]:
        acc = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}"
        rows.append(f"{t['threshold']:>9.2f}  {t['coverage']:>8.3f}  {acc:>9}  "
                    + "  ".join(f"{t['per_class'][lab]['precision']:>6.2f}/{t['per_class'][lab]['recall']:.2f}" for lab in result["labels"]))
    return text + "\n\non the sure verdicts at each threshold (precision / recall):\n" + "\n".join(rows)
