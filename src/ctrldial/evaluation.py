"""`ctrldial eval`: a trained run on contexts of your own — every context asked for every label, judged.

A contexts file has one JSON object per line: ``{"context": ["oldest turn", …, "last turn"]}``. Optional keys:
``id`` (names the context in the output), ``reference`` (a human reply) and ``reference_label`` (its act or
emotion) — with them, BLEU and gold-label control are measured as in a run; other keys are kept.

The output folder gets ``generations.jsonl`` (one row per context × label, as a run writes them) and
``metrics.json`` (the same control metrics as a run's record, with the run, the contexts file, the decoding
and the seconds it took). Decoding options (``generate.guidance_scale``, ``generate.num_candidates`` …) come
from ``--set`` on top of the run's own config.

A context line may also carry ``turn``: with ``id`` set to the run's ``dialogue_id``, the rows pair with the run's own
(``metrics.paired_bootstrap`` keys responses by dialogue id, turn and context). ``contexts_of_run`` writes such a
file from a run's generations. With ``record=True`` the folder also gets ``record.json``: the run's record with the
decoding of this eval in its config and this eval's metrics, so ``ctrldial report`` and ``ctrldial rescore`` read an
eval (one trained model decoded another way) as they read a run. It says where it came from (``eval.run``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ctrldial.config import flat_config
from ctrldial.errors import UserError, check_label
from ctrldial.fluency import generation_perplexity
from ctrldial.record import (EVAL_METRICS as METRICS_FILE, GENERATIONS, RECORD, environment, git_state, jsonl_objects, load_record,
                             recorded_labels, write_json, write_jsonl)


def read_contexts(path: Path, labels: list[str]) -> list[dict[str, Any]]:
    """The contexts of ``path``; a bad line is a one-line error naming ``FILE:LINE`` and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such contexts file (one JSON object per line: {{\"context\": [\"turn\", ...]}})")
    items = []
    for where, item in jsonl_objects(path, '{"context": ["Hi!"]}'):
        ctx = item.get("context")
        if not isinstance(ctx, list) or not ctx or not all(isinstance(t, str) and t.strip() for t in ctx):
            raise UserError(f"{where}: \"context\" must be a list of one or more non-empty turns (strings), oldest first")
        ref_label = item.get("reference_label")
        if ref_label is not None and ref_label not in labels:
            raise UserError(f"{where}: reference_label {ref_label!r} is not one of {', '.join(labels)}")
        items.append({**item, "id": item.get("id", f"{path.name}:{where.rsplit(':', 1)[1]}")})
    if not items:
        raise UserError(f"{path}: no contexts (one JSON object per line: {{\"context\": [\"turn\", ...]}})")
    return items


def contexts_of_run(run_dir: Path) -> list[dict[str, Any]]:
    """The distinct contexts a run generated for, as contexts-file lines that pair with the run's rows."""
    seen: dict[tuple, dict[str, Any]] = {}
    for _, row in jsonl_objects(Path(run_dir) / GENERATIONS, '{"context": ["Hi!"], "generation": "..."}'):
        key = (row.get("dialogue_id"), row.get("turn"), tuple(row["context"]))
        seen.setdefault(key, {"id": row.get("dialogue_id"), "turn": row.get("turn"), "context": row["context"],
                              "reference": row.get("reference"), "reference_label": row.get("reference_label")})
    return list(seen.values())


def evaluate(run_dir: Path, contexts_file: Path, out: Path, labels: list[str] | None = None,
             overrides: list[str] | None = None, record: bool = False) -> dict[str, Any]:
    """Generate for every (context, label) of ``contexts_file`` with the run of ``run_dir``, judge, write ``out``."""
    from ctrldial.loaded import reload
    from ctrldial.pipeline import score_generations
    from ctrldial.scoring import load_judge

    run_dir, out = Path(run_dir), Path(out)
    known = recorded_labels(run_dir)
    for lab in labels or []:
        check_label(lab, known, "--labels")
    items = read_contexts(contexts_file, known)  # before the model loads: a bad line costs a second, not a minute
    m = reload(run_dir, overrides)
    labels = labels or m.labels
    judge = load_judge(m.cfg.classifier.path, m.cfg.data.attribute)
    pairs = [(it, lab) for it in items for lab in labels]
    t0 = time.perf_counter()
    texts = m.respond([(tuple(it["context"]), lab) for it, lab in pairs], progress=True)
    seconds = time.perf_counter() - t0
    rows = [
        {**{k: v for k, v in it.items() if k not in ("id", "context")}, "dialogue_id": it["id"], "turn": it.get("turn"),
         "context": it["context"], "requested": lab, "reference": it.get("reference"), "reference_label": it.get("reference_label"),
         "generation": text}
        for (it, lab), text in zip(pairs, texts)
    ]
    write_jsonl(out / GENERATIONS, rows)  # before judging: a failure there keeps what took the minutes
    metrics, warnings = score_generations(judge, rows, labels)
    if not any(r["reference"] for r in rows):  # no human replies: nothing to compare with
        from ctrldial.metrics import distinct_n

        every = [r["generation"] for r in rows]
        metrics.update(bleu=None, distinct_1=distinct_n(every, 1), distinct_2=distinct_n(every, 2))
    if m.cfg.eval.generation_perplexity:
        metrics["generation_perplexity"] = generation_perplexity(m, rows)
    result = {
        "run": str(run_dir), "contexts_file": str(contexts_file), "contexts": len(items), "labels": labels,
        "attribute": m.cfg.data.attribute,
        "judge": m.cfg.classifier.path, "overrides": list(overrides or []),
        "generate": {k: v for k, v in flat_config(m.cfg).items() if k.startswith("generate.")},
        "generate_seconds": seconds, "responses_per_second": len(rows) / seconds if seconds else None,
        "metrics": metrics, "warnings": warnings, "reranker": m.reranker_info,
        "git": git_state(), "environment": environment(),
    }
    write_jsonl(out / GENERATIONS, rows)
    write_json(out / METRICS_FILE, result)
    if record:
        write_json(out / RECORD, _as_record(run_dir, m.cfg, result))
    return result


def _as_record(run_dir: Path, cfg, result: dict[str, Any]) -> dict[str, Any]:
    """The run's record, decoded as this eval decoded: its config with the overrides, this eval's metrics and speed.

    What the decoding does not change is kept: training, cost of training, and the reference perplexity (the
    same trained weights score the same references); ``git`` and ``environment`` stay the training's, and
    ``eval`` says with which code and where this decoding ran. ``reranker`` is this decoding's."""
    rec = load_record(run_dir)
    kept = {k: v for k, v in (rec.get("metrics") or {}).items() if k == "perplexity"}
    cost = {**(rec.get("cost") or {}), "generate_seconds": result["generate_seconds"],
            "responses_per_second": result["responses_per_second"]}
    rec.pop("judges", None)  # extra judges scored the run's generations, not these: `ctrldial rescore` them again
    return {**rec, "config": cfg.to_dict(), "config_hash": cfg.fingerprint(), "metrics": {**result["metrics"], **kept},
            "cost": cost, "warnings": result["warnings"], "judge": result["judge"], "reranker": result["reranker"],
            "eval": {"run": result["run"], "contexts_file": result["contexts_file"], "overrides": result["overrides"],
                     "git": result["git"], "environment": result["environment"]}}


def format_eval(result: dict[str, Any]) -> str:
    """A few lines: control with its interval, per label, emptiness, fluency, speed."""
    m = result["metrics"]

    def f(v) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    ci = (m.get("ci") or {}).get("control_accuracy") or [None, None]
    lines = [f"{result['contexts']} contexts × {len(result['labels'])} labels from {result['contexts_file']} ({result['generate_seconds']:.0f} s)",
             f"control_accuracy {f(m.get('control_accuracy'))} [{f(ci[0])}, {f(ci[1])}]  gold {f(m.get('control_accuracy_gold'))}"]
    per = m.get("per_label_accuracy") or {}
    if per:
        lines.append("per label: " + "  ".join(f"{k} {f(v)}" for k, v in per.items()))
    lines.append("  ".join(f"{k} {f(m.get(k))}" for k in ("empty_rate", "distinct_2", "generation_perplexity", "repetition_rate") if k in m))
    return "\n".join(lines + [f"warning: {w}" for w in result["warnings"]])
