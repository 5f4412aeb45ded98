"""`ctrldial run`: dialogues → examples → trained method → generations → scores → record.json.

``run`` wraps the stages in the record's life cycle (running → ok | failed | interrupted); ``_stages`` is
the pipeline itself, one named call per stage.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ctrldial.config import Config, flat_config
from ctrldial.data.examples import Example, Splits, fingerprint, label_of, load_splits
from ctrldial.errors import UserError
from ctrldial.fluency import generation_perplexity
from ctrldial.generate import generate_ids
from ctrldial.loaded import MODEL_DIR, Loaded, apply_method, learning_rate, prepare, ready_to_generate, save_method
from ctrldial.metrics import text_metrics
from ctrldial.record import GENERATIONS, RECORD, Cost, DataSummary, RunRecord, Sanity, TrainSummary, peak_memory_mb, read_record, write_jsonl, write_record
from ctrldial.scoring import NO_JUDGE, load_judge, perplexity, score_rows
from ctrldial.train import TrainingFailed, TrainResult, resolve_mixed_precision, train, train_steps

def make_accelerator(cfg: Config, out: Path | None):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # a fresh state per run, so runs with different precision can share one process (tests, sweeps)
        AcceleratorState._reset_state(reset_partial_state=True)
    use_cuda = torch.cuda.is_available()
    trackers = None if cfg.train.tracker == "none" or out is None else cfg.train.tracker
    return Accelerator(
        cpu=not use_cuda,
        mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision, use_cuda),
        gradient_accumulation_steps=1,  # accumulation is explicit in the loop
        log_with=trackers,
        project_dir=str(out) if out else None,
    )


def run(cfg: Config, out: Path, overwrite: bool = False) -> dict[str, Any] | None:
    """Train, generate, score; write ``out/record.json``. Returns the record on the main process."""
    out = Path(out)
    existing = read_record(out)
    if existing and existing.get("status") == "ok" and not overwrite:
        raise UserError(f"{out / RECORD}: this run already finished; pass --overwrite to replace it, or choose another --out")
    accelerator = make_accelerator(cfg, out)
    record = RunRecord(cfg.to_dict(), cfg.fingerprint())
    if accelerator.is_main_process:
        # an interrupted or replaced run starts from a clean folder
        for name in (MODEL_DIR, GENERATIONS, RECORD, "tb"):
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        write_record(out, record)
    try:
        result = _stages(cfg, out, accelerator, record)
    except KeyboardInterrupt:
        # Ctrl-C: say so in the record; the same command (or the sweep) re-runs this folder from scratch
        if accelerator.is_main_process:
            record.status = "interrupted"
            write_record(out, record, error="interrupted by the user (Ctrl-C); run the same command again to redo it")
        raise
    except Exception as e:
        if accelerator.is_main_process:
            _record_failure(out, record, e)
        if isinstance(e, TrainingFailed):
            raise UserError(f"run failed: {e} (record: {out / RECORD})") from None
        raise
    finally:
        accelerator.end_training()
    return result


def _record_failure(out: Path, record: RunRecord, e: Exception) -> None:
    record.status = "failed"
    extra: dict[str, Any] = {"error": f"{type(e).__name__}: {e}", "peak_memory_mb": peak_memory_mb()}
    if isinstance(e, TrainingFailed):
        extra["failed_step"] = e.step
        if e.kept_weights is not None:
            extra["kept_weights"] = str(e.kept_weights)
    write_record(out, record, **extra)


def _stages(cfg: Config, out: Path, accelerator, record: RunRecord) -> dict[str, Any] | None:
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)
    splits = load_splits(cfg.data, eval_split=cfg.eval.split)
    judge = load_judge(cfg.classifier.path, cfg.data.attribute, cfg.classifier.unsure_below)  # fail fast, before any training
    m = prepare(cfg, accelerator.device)
    if cfg.generate.num_candidates > 1:
        m.reranker()  # fail fast: a reranker that is the judge stops the run before training
    train_enc, dropped = m.encode(splits.train, cfg.data.label_dropout)
    valid_enc, _ = m.encode(splits.valid)
    sanity = SanityCheck(m, splits.test)

    set_seed(cfg.train.seed)  # adapter init depends on the seed alone, not on what ran before (model downloads, caches)
    apply_method(m, train_steps(len(train_enc), cfg.train, accelerator.num_processes))
    counts = m.param_counts()
    trained = train_method(m, train_enc, valid_enc, accelerator, keep=out / MODEL_DIR)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None  # evaluation and files belong to the main process

    if m.method.trains:
        save_method(m, out / MODEL_DIR)
    ready_to_generate(m)
    rows, gen_seconds = generate_rows(m, splits.test)
    metrics, warnings = score_generations(judge, rows, m.labels)
    metrics["perplexity"] = reference_perplexity(m, splits.test) if cfg.eval.perplexity else None
    peak_mb = peak_memory_mb()  # before the base model loads for generation_perplexity
    metrics["generation_perplexity"] = generation_perplexity(m, rows) if cfg.eval.generation_perplexity else None
    checked = sanity.after(m)
    if checked is not None and not checked.changed:
        warnings.append("tuned generations are identical to the base model's on the sanity prompts: the method had no effect")
    write_jsonl(out / GENERATIONS, rows)

    record.status = "ok"
    record.metrics = metrics
    record.cost = Cost(
        **counts,
        train_seconds=trained.train_seconds if trained else 0.0,
        train_tokens_per_second=trained.tokens_per_second if trained else None,
        generate_seconds=gen_seconds,
        responses_per_second=len(rows) / gen_seconds if gen_seconds else None,
        peak_memory_mb=peak_mb,
        processes=accelerator.num_processes,
        mixed_precision=accelerator.mixed_precision,
    )
    record.train = train_summary(trained, learning_rate(cfg, m.method))
    record.data = data_summary(splits, len(train_enc), dropped, len(valid_enc), m.labels)
    record.sanity, record.warnings, record.judge, record.reranker = checked, warnings, cfg.classifier.path, m.reranker_info
    write_record(out, record)
    print(f"record: {out / RECORD}  control_accuracy={_fmt(metrics['control_accuracy'])}  empty_rate={metrics['empty_rate']:.3f}")
    return record.to_dict()


# -- the stages ---------------------------------------------------------------------------------------------
def eval_prompts(m: Loaded, contexts: list[Example]) -> list[list[int]]:
    """Every context asked for every label, context-major: prompt ``i * len(labels) + j``."""
    return [m.template.prompt_ids(ex.context, lab) for ex in contexts for lab in m.labels]


class SanityCheck:
    """Base-model generations on a few fixed prompts, compared after training: did the method change anything?"""

    def __init__(self, m: Loaded, contexts: list[Example]):
        n, k = m.cfg.eval.sanity_prompts, len(m.labels)
        # every (k+1)-th of the context-major (context, label) requests: a fixed spread over contexts and labels
        picks = range(0, min(n, len(contexts)) * k, k + 1)
        self.prompts = [m.template.prompt_ids(contexts[t // k].context, m.labels[t % k]) for t in picks][:n]
        self.base = self._generate(m) if m.method.trains and self.prompts else None

    def _generate(self, m: Loaded) -> list[list[int]]:
        return generate_ids(m.model, self.prompts, m.cfg.generate, m.eos_id, m.pad_id)

    def after(self, m: Loaded) -> Sanity | None:
        if self.base is None:
            return None
        tuned = self._generate(m)
        differ = sum(a != b for a, b in zip(self.base, tuned))
        return Sanity(prompts=len(tuned), differ=differ, changed=differ > 0)


def train_method(m: Loaded, train_enc: list, valid_enc: list, accelerator, keep: Path | None = None) -> TrainResult | None:
    """Train the method's parameters (None for methods that do not train).

    A training fault keeps the last good weights in ``keep`` (saved the method's way) before it propagates.
    """
    if not m.method.trains:
        return None
    if accelerator.is_main_process:
        accelerator.init_trackers("ctrldial", config={k: str(v) for k, v in flat_config(m.cfg).items()})
    try:
        m.model, result = train(m.model, train_enc, valid_enc, m.cfg.train, learning_rate(m.cfg, m.method), m.pad_id, accelerator,
                                m.method.after_step, packable=m.method.virtual_tokens(m.cfg.method) == 0)
    except TrainingFailed as e:
        if e.model is not None and keep is not None and accelerator.is_main_process:
            m.method.save(e.model, keep)
            e.kept_weights = keep
        raise
    return result


def generate_rows(m: Loaded, contexts: list[Example]) -> tuple[list[dict[str, Any]], float]:
    """One row per (context, requested label) with the generated response, and the seconds generation took."""
    attr = m.cfg.data.attribute
    t0 = time.perf_counter()
    texts = m.respond([(ex.context, lab) for ex in contexts for lab in m.labels], progress=True)
    seconds = time.perf_counter() - t0
    rows = []
    for i, ex in enumerate(contexts):
        for j, lab in enumerate(m.labels):
            rows.append({
                "dialogue_id": ex.dialogue_id,
                "turn": ex.turn,
                "context": list(ex.context),
                "requested": lab,
                "reference": ex.response,
                "reference_label": label_of(ex, attr),
                "generation": texts[i * len(m.labels) + j],
            })
    return rows, seconds


def score_generations(judge, rows: list[dict[str, Any]], labels: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Control metrics (when there is a judge) and text metrics of the rows, with warnings for the record."""
    warnings = []
    if judge is not None:
        metrics = score_rows(judge, rows, labels)
    else:
        warnings.append("no classifier: set classifier.path to a trained classifier to measure control accuracy")
        metrics = dict(NO_JUDGE)
    metrics.update(text_metrics(rows, ci=metrics.get("ci", {})))  # BLEU and distinct-2 intervals join the control ones
    return metrics, warnings


def reference_perplexity(m: Loaded, contexts: list[Example]) -> float | None:
    """Perplexity of the references (requested with their own label) under the tuned model."""
    attr = m.cfg.data.attribute
    gold = [m.template.train_ids(ex.context, label_of(ex, attr), ex.response) for ex in contexts]
    return perplexity(m.model, [e for e in gold if e is not None], m.pad_id, m.cfg.generate.batch_size)


def train_summary(tr: TrainResult | None, lr: float) -> TrainSummary | None:
    if tr is None:
        return None
    return TrainSummary(
        steps=tr.steps, best_step=tr.best_step, best_val_loss=tr.best_val_loss, stopped_early=tr.stopped_early, lr=lr,
        history=tr.history, rank_batch_digests=tr.rank_batch_digests, rank_weight_checksums=tr.rank_weight_checksums,
        packed=tr.packed, padding_share=tr.padding_share,
    )


def data_summary(splits: Splits, n_train: int, dropped: int, n_valid: int, labels: list[str]) -> DataSummary:
    return DataSummary(
        train_examples=n_train, train_dropped_too_long=dropped, valid_examples=n_valid, eval_contexts=len(splits.test),
        labels=labels, removed_duplicates=splits.corpus.removed_duplicates, skipped_malformed=splits.corpus.skipped,
        train_fingerprint=fingerprint(splits.train), eval_fingerprint=fingerprint(splits.test), eval_split=splits.eval_split,
    )


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
