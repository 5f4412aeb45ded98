"""Scoring generations: the judge's verdict per response, control metrics, reference perplexity, rescoring."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ctrldial.errors import UserError
from ctrldial.metrics import TEXT_CI_KEYS, control_ci, control_metrics
from ctrldial.data.examples import label_names
from ctrldial.record import EVAL_METRICS, GENERATIONS, RECORD, load_record, write_json, write_jsonl
from ctrldial.greedy import is_prompt_learning
from ctrldial.packed import packed_linears
from ctrldial.train import batcher, token_losses

NO_JUDGE = {"control_accuracy": None, "control_accuracy_gold": None, "control_accuracy_other": None, "per_label_accuracy": {}}
"""Control metrics of a run without a classifier: not measured."""


def load_judge(path: str | Path | None, attribute: str, unsure_below: float = 0.0):
    """The classifier (or ensemble) that judges generations, or None when no ``classifier.path`` is set.

    The judge carries ``unsure_below`` (``classifier.unsure_below``): ``score_rows`` marks a verdict whose
    confidence is below it ``unsure``.
    """
    if not path:
        return None
    from ctrldial.classifier import Scorer

    judge = Scorer.load(Path(path), attribute)
    judge.unsure_below = unsure_below
    return judge


UNSURE_KEYS = ("unsure_below", "unsure_rate", "control_accuracy_sure", "per_label_accuracy_sure")
"""The metrics a judge with a threshold adds (``score_rows``); absent without one."""

VALIDATION = "agreement.json"
"""In a judge's folder: its agreement with held-out hand labels (`ctrldial judge agreement LABELS --classifier J --out J`)."""


def score_rows(judge, rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Judge every generation (in place: ``predicted``, ``confidence``) and compute the control metrics.

    Besides control accuracy: 95% bootstrap intervals over contexts (``ci``), and, when the judge folder holds
    its validation on hand labels (``agreement.json``), the human-corrected control (ctrldial/correction.py).
    When the judge carries a threshold (``load_judge(..., unsure_below)``), every row also gets ``unsure``
    and the metrics ``unsure_rate`` and ``control_accuracy_sure`` (metrics.control_metrics).
    """
    threshold = getattr(judge, "unsure_below", 0.0) or 0.0
    pred, conf = judge.score([r["generation"] for r in rows], [r["context"] for r in rows])
    for r, p, c in zip(rows, pred, conf):
        # an empty reply has no act: it never counts as following the request
        r["predicted"], r["confidence"] = (p, c) if r["generation"].strip() else (None, None)
        r.pop("unsure", None)  # a verdict of an earlier judge or threshold
        if threshold > 0:
            r["unsure"] = r["confidence"] is not None and r["confidence"] < threshold
    metrics = {**control_metrics(rows, labels), "ci": control_ci(rows, labels)}
    if threshold > 0:
        metrics["unsure_below"] = threshold
    metrics.update(corrected_metrics(judge, rows, labels))
    return metrics


def corrected_metrics(judge, rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """``corrected_control_accuracy`` (+ per label, + the file it rests on) when the judge was validated, else nothing."""
    from ctrldial.correction import corrected_control, precision_table

    validation = Path(getattr(judge, "path", "")) / VALIDATION
    if not validation.is_file():
        return {}
    agreement = json.loads(validation.read_text(encoding="utf-8"))
    # the table covers every verdict the judge can give, not only the requested labels (`eval --labels`)
    c = corrected_control(rows, labels, precision_table(agreement["verdicts"], list(judge.labels)))
    return {"corrected_control_accuracy": c["control_accuracy"], "corrected_per_label_accuracy": c["per_label_accuracy"],
            "corrected_by": {"validation": str(validation), "labels": agreement.get("labels_file"), "n": agreement.get("n")}}


@torch.inference_mode()
def perplexity(model, encoded: list, pad_id: int, batch_size: int, row_tokens: int = 256) -> float | None:
    """exp(mean token loss) of the reference responses; virtual tokens take part as in training.

    Packed rows of up to ``row_tokens`` (logits only at the targets), as in training, where the model has no
    virtual tokens and a check on the first batch shows packed examples stay apart; padded batches otherwise.
    """
    if not encoded:
        return None
    device = next(model.parameters()).device
    s = n = 0.0
    data = sorted(encoded, key=lambda e: len(e.input_ids))
    _, to_batch = batcher(model, data[-8:], pad_id, row_tokens, packable=not is_prompt_learning(model))
    with packed_linears(model):
        for i in range(0, len(data), batch_size):
            batch = {k: v.to(device) for k, v in to_batch(data[i : i + batch_size]).items()}
            ls, nt = token_losses(model, batch)
            s, n = s + ls.item(), n + nt.item()
    return float(torch.exp(torch.tensor(s / max(n, 1))))


def read_generations(path: Path) -> list[dict[str, Any]]:
    """``generations.jsonl`` rows; a damaged line is a one-line error naming the file and line."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); the run folder is damaged, rerun the run") from None
    return rows


def _scored(run_dir: Path) -> tuple[Path, dict[str, Any], list[str], str]:
    """What a rescore rewrites: a run's record, or an eval folder's metrics.json (`ctrldial eval` without --record);
    with the labels asked for and the attribute judged."""
    if (run_dir / RECORD).is_file() or not (run_dir / EVAL_METRICS).is_file():
        record = load_record(run_dir)
        return run_dir / RECORD, record, list(record["data"]["labels"]), record["config"]["data"]["attribute"]
    path = run_dir / EVAL_METRICS
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        labels = list(result["labels"])
        metrics = result["metrics"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a `ctrldial eval` result ({type(e).__name__}: {e}); run the eval again") from None
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: not a `ctrldial eval` result (metrics is not an object); run the eval again")
    # evals written before they named their attribute: the one whose labels they asked for
    attribute = result.get("attribute") or next(
        (a for a in ("act", "emotion", "act+emotion") if set(labels) <= set(label_names(a))), None)
    if attribute is None:
        raise UserError(f"{path}: labels {labels} belong to no attribute (act, emotion, act+emotion); run the eval again")
    return path, result, labels, attribute


def rescore(run_dir: Path, classifier: Path, name: str | None = None, unsure_below: float = 0.0) -> dict[str, Any]:
    """Score a finished run's (or an eval folder's) generations again with another classifier; it says which judged it.

    With ``name``, the classifier is an additional judge: its figures go to ``["judges"][name]`` and the primary
    judge's metrics and verdicts stay as they are. ``unsure_below``: as ``classifier.unsure_below``. Returns the
    record (or the eval's result) as written.
    """
    run_dir = Path(run_dir)
    path, doc, labels, attribute = _scored(run_dir)
    gens = run_dir / GENERATIONS
    if not gens.is_file():
        raise UserError(f"{gens}: missing; a finished run writes it — rerun the run")
    if not 0 <= unsure_below < 1:
        raise UserError(f"--unsure-below must be in [0, 1) (0 = off), not {unsure_below}")
    judge = load_judge(classifier, attribute, unsure_below)
    rows = read_generations(gens)
    entry = {"classifier": str(classifier), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if unsure_below:
        entry["unsure_below"] = unsure_below
    if name:
        copies = [dict(r) for r in rows]  # the primary verdicts in generations.jsonl stay
        doc.setdefault("judges", {})[name] = {"path": str(classifier), "metrics": score_rows(judge, copies, labels)}
        entry["as"] = name
    else:
        for key in UNSURE_KEYS:  # an earlier threshold's figures must not outlive a rescore without one
            doc["metrics"].pop(key, None)
        text = {k: v for k, v in (doc["metrics"].get("ci") or {}).items() if k in TEXT_CI_KEYS}  # no judge changes BLEU
        doc["metrics"].update(score_rows(judge, rows, labels))
        doc["metrics"]["ci"] = {**doc["metrics"]["ci"], **text}
        doc["judge"] = str(classifier)
        write_jsonl(gens, rows)
    doc.setdefault("rescored", []).append(entry)
    write_json(path, doc)
    return doc
