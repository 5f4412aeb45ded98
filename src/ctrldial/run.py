"""`ctrldial run`: dialogues → examples → trained method → generations → scores → record.json."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctrldial.config import Config, load_config_dict
from ctrldial.data.corpus import load_corpus
from ctrldial.data.examples import Example, build_examples, fingerprint, label_names, label_of, sample_examples
from ctrldial.data.template import Template
from ctrldial.errors import UserError
from ctrldial.generate import decode, generate_ids
from ctrldial.methods import Method, get_method
from ctrldial.metrics import control_metrics, text_metrics
from ctrldial.models import load_model, load_tokenizer, max_positions, resolve_model
from ctrldial.record import RECORD, base_record, peak_memory_mb, read_record, write_json, write_jsonl
from ctrldial.train import TrainingFailed, collate, resolve_mixed_precision, token_losses, train

MODEL_DIR = "model"  # the adapter (PEFT methods) or the whole model (full fine-tuning)


@dataclass
class Generator:
    """A model ready to generate: base + method weights, its tokenizer and template."""

    cfg: Config
    method: Method
    tokenizer: Any
    model: Any
    template: Template
    labels: list[str]


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


def add_label_tokens(model, tokenizer, template: Template) -> None:
    """Make room for added label tokens; each starts as the mean embedding of its label word.

    Deterministic from the base weights, so a saved adapter reloads onto exactly the same embeddings.
    """
    if not template.special_tokens:
        return
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for tok, label in zip(template.special_tokens, template.labels):
            word = tokenizer(label.replace("_", " ").replace("+", " "), add_special_tokens=False)["input_ids"]
            emb[tokenizer.convert_tokens_to_ids(tok)] = emb[word].mean(0)


def prepare(cfg: Config, device, num_train_steps: int = 100) -> Generator:
    """Base model + tokenizer + template, with the method applied (not trained yet)."""
    method = get_method(cfg.method.name)
    labels = cfg.eval.labels or label_names(cfg.data.attribute)
    unknown = [lab for lab in labels if lab not in label_names(cfg.data.attribute)]
    if unknown:
        raise UserError(f"eval.labels: unknown label(s) {unknown} for data.attribute={cfg.data.attribute}")
    quant = method.quantization(cfg.model) if method.quantization else None
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, device.type, quant)
    template = Template(
        tokenizer,
        cfg.data,
        labels,
        max_positions(model.config, cfg.model.max_positions),
        method.virtual_tokens(cfg.method),
        cfg.generate.max_new_tokens,
    )
    add_label_tokens(model, tokenizer, template)
    if quant is None:
        model.to(device)
    return Generator(cfg, method, tokenizer, model, template, labels)


def apply_method(g: Generator, total_steps: int) -> None:
    ctx = {"tokenizer_path": resolve_model(g.cfg.model.name), "tokenizer": g.tokenizer, "total_steps": total_steps}
    g.model = g.method.build(g.model, g.cfg.method, ctx)


def encode(template: Template, examples: list[Example], attribute: str) -> tuple[list, int]:
    encoded = [template.train_ids(ex.context, label_of(ex, attribute), ex.response) for ex in examples]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


def param_counts(model) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total, "trainable_percent": 100 * trainable / total if total else 0.0}


@torch.inference_mode()
def perplexity(model, encoded: list, pad_id: int, batch_size: int) -> float | None:
    """exp(mean token loss) of the reference responses; virtual tokens take part as in training."""
    if not encoded:
        return None
    device = next(model.parameters()).device
    s = n = 0.0
    data = sorted(encoded, key=lambda e: len(e.input_ids))
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate(data[i : i + batch_size], pad_id).items()}
        ls, nt = token_losses(model, batch)
        s, n = s + ls.item(), n + nt.item()
    return float(torch.exp(torch.tensor(s / max(n, 1))))


def run(cfg: Config, out: Path, overwrite: bool = False) -> dict[str, Any] | None:
    """Train, generate, score; write ``out/record.json``. Returns the record on the main process."""
    out = Path(out)
    existing = read_record(out)
    if existing and existing.get("status") == "ok" and not overwrite:
        raise UserError(f"{out / RECORD}: this run already finished; pass --overwrite to replace it, or choose another --out")
    accelerator = make_accelerator(cfg, out)
    record = base_record(cfg.to_dict(), cfg.fingerprint())
    if accelerator.is_main_process:
        # an interrupted or replaced run starts from a clean folder
        for name in (MODEL_DIR, "generations.jsonl", RECORD, "tb"):
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        write_json(out / RECORD, record)
    try:
        result = _run(cfg, out, accelerator, record)
    except KeyboardInterrupt:
        # Ctrl-C: say so in the record; the same command (or the sweep) re-runs this folder from scratch
        if accelerator.is_main_process:
            record.update(status="interrupted", error="interrupted by the user (Ctrl-C); run the same command again to redo it")
            write_json(out / RECORD, record)
        raise
    except Exception as e:
        if accelerator.is_main_process:
            record.update(status="failed", error=f"{type(e).__name__}: {e}", peak_memory_mb=peak_memory_mb())
            if isinstance(e, TrainingFailed):
                record["failed_step"] = e.step
                if e.model is not None:
                    e.model.save_pretrained(out / MODEL_DIR, safe_serialization=True)
                    record["kept_weights"] = str(out / MODEL_DIR)
            write_json(out / RECORD, record)
        if isinstance(e, TrainingFailed):
            raise UserError(f"run failed: {e} (record: {out / RECORD})") from None
        raise
    finally:
        accelerator.end_training()
    return result


def _run(cfg: Config, out: Path, accelerator, record: dict[str, Any]) -> dict[str, Any] | None:
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)
    attr = cfg.data.attribute
    corpus = load_corpus(cfg.data.path, cfg.data.on_error, cfg.data.dedup)
    train_ex = sample_examples(
        build_examples(corpus, "train", cfg.data), cfg.data.max_train_examples, cfg.data.seed, attr if cfg.data.balance else None
    )
    valid_ex = sample_examples(build_examples(corpus, "validation", cfg.data), cfg.data.max_valid_examples, cfg.data.seed)
    eval_ex = sample_examples(build_examples(corpus, "test", cfg.data), cfg.data.max_eval_examples, cfg.data.seed)

    scorer = None
    if cfg.classifier.path:
        from ctrldial.classifier import Scorer

        scorer = Scorer.load(Path(cfg.classifier.path), attr)  # fail fast, before any training

    g = prepare(cfg, accelerator.device)
    train_enc, dropped = encode(g.template, train_ex, attr)
    valid_enc, _ = encode(g.template, valid_ex, attr)
    per_epoch = max(len(train_enc) // (cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes), 1)
    total_steps = cfg.train.max_steps or int(per_epoch * cfg.train.epochs)

    prompts = [g.template.prompt_ids(ex.context, lab) for ex in eval_ex for lab in g.labels]
    sanity_prompts = prompts[: cfg.eval.sanity_prompts * len(g.labels) : len(g.labels) + 1][: cfg.eval.sanity_prompts]
    pad_id, eos_id = g.tokenizer.pad_token_id, g.tokenizer.eos_token_id
    base_sanity = generate_ids(g.model, sanity_prompts, cfg.generate, eos_id, pad_id) if g.method.trains and sanity_prompts else None

    set_seed(cfg.train.seed)  # adapter init depends on the seed alone, not on what ran before (model downloads, caches)
    apply_method(g, total_steps)
    counts = param_counts(g.model)
    tr = None
    if g.method.trains:
        lr = cfg.train.lr or g.method.default_lr
        if accelerator.is_main_process:
            accelerator.init_trackers("ctrldial", config={k: str(v) for k, v in _flat(cfg.to_dict()).items()})
        g.model, tr = train(g.model, train_enc, valid_enc, cfg.train, lr, pad_id, accelerator, g.method.after_step)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None  # evaluation and files belong to the main process

    if g.method.trains:
        g.model.save_pretrained(out / MODEL_DIR, safe_serialization=True)
        g.tokenizer.save_pretrained(out / MODEL_DIR)
    if g.method.mergeable:
        g.model = g.model.merge_and_unload()  # same outputs, no adapter overhead per generated token
    g.model.eval()

    sanity = None
    if base_sanity is not None:
        tuned = generate_ids(g.model, sanity_prompts, cfg.generate, eos_id, pad_id)
        differ = sum(a != b for a, b in zip(base_sanity, tuned))
        sanity = {"prompts": len(tuned), "differ": differ, "changed": differ > 0}

    gold_enc = [g.template.train_ids(ex.context, label_of(ex, attr), ex.response) for ex in eval_ex]
    ppl = perplexity(g.model, [e for e in gold_enc if e is not None], pad_id, cfg.generate.batch_size) if cfg.eval.perplexity else None

    t0 = time.perf_counter()
    gen_ids = generate_ids(g.model, prompts, cfg.generate, eos_id, pad_id, progress=True)
    gen_seconds = time.perf_counter() - t0
    texts = decode(g.tokenizer, gen_ids)

    rows = []
    for i, ex in enumerate(eval_ex):
        for j, lab in enumerate(g.labels):
            rows.append({
                "dialogue_id": ex.dialogue_id,
                "turn": ex.turn,
                "context": list(ex.context),
                "requested": lab,
                "reference": ex.response,
                "reference_label": label_of(ex, attr),
                "generation": texts[i * len(g.labels) + j],
            })
    warnings = []
    if scorer is not None:
        metrics = score_rows(scorer, rows, g.labels)
    else:
        warnings.append("no classifier: set classifier.path to a trained classifier to measure control accuracy")
        metrics = {"control_accuracy": None, "control_accuracy_gold": None, "control_accuracy_other": None, "per_label_accuracy": {}}
    if sanity is not None and not sanity["changed"]:
        warnings.append("tuned generations are identical to the base model's on the sanity prompts: the method had no effect")
    metrics.update(text_metrics(rows))
    metrics["perplexity"] = ppl
    write_jsonl(out / "generations.jsonl", rows)

    record.update(
        status="ok",
        metrics=metrics,
        cost={
            **counts,
            "train_seconds": tr.train_seconds if tr else 0.0,
            "train_tokens_per_second": tr.tokens_per_second if tr else None,
            "generate_seconds": gen_seconds,
            "responses_per_second": len(rows) / gen_seconds if gen_seconds else None,
            "peak_memory_mb": peak_memory_mb(),
            "processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
        },
        train=None if tr is None else {
            "steps": tr.steps, "best_step": tr.best_step, "best_val_loss": tr.best_val_loss,
            "stopped_early": tr.stopped_early, "lr": cfg.train.lr or g.method.default_lr, "history": tr.history,
            "rank_batch_digests": tr.rank_batch_digests, "rank_weight_checksums": tr.rank_weight_checksums,
        },
        data={
            "train_examples": len(train_enc), "train_dropped_too_long": dropped, "valid_examples": len(valid_enc),
            "eval_contexts": len(eval_ex), "labels": g.labels, "removed_duplicates": corpus.removed_duplicates,
            "skipped_malformed": corpus.skipped, "train_fingerprint": fingerprint(train_ex), "eval_fingerprint": fingerprint(eval_ex),
        },
        sanity=sanity,
        warnings=warnings,
        judge=cfg.classifier.path,
    )
    write_json(out / RECORD, record)
    print(f"record: {out / RECORD}  control_accuracy={_fmt(metrics['control_accuracy'])}  empty_rate={metrics['empty_rate']:.3f}")
    return record


def score_rows(scorer, rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Judge every generation (in place: `predicted`, `confidence`) and compute the control metrics."""
    pred, conf = scorer.score([r["generation"] for r in rows], [r["context"] for r in rows])
    for r, p, c in zip(rows, pred, conf):
        # an empty reply has no act: it never counts as following the request
        r["predicted"], r["confidence"] = (p, c) if r["generation"].strip() else (None, None)
    return control_metrics(rows, labels)


def rescore(run_dir: Path, classifier: Path) -> dict[str, Any]:
    """Score a finished run's generations again with another classifier; the record says which judged it."""
    import json

    from ctrldial.classifier import Scorer

    record = read_record(run_dir)
    gens = run_dir / "generations.jsonl"
    if not record or record.get("status") != "ok" or not gens.is_file():
        raise UserError(f"{run_dir}: no finished run with generations.jsonl here")
    scorer = Scorer.load(classifier, record["config"]["data"]["attribute"])
    rows = [json.loads(line) for line in gens.read_text(encoding="utf-8").splitlines()]
    record["metrics"].update(score_rows(scorer, rows, record["data"]["labels"]))
    record["judge"] = str(classifier)
    record.setdefault("rescored", []).append({"classifier": str(classifier), "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_jsonl(gens, rows)
    write_json(run_dir / RECORD, record)
    return record


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "model", "method", "train", "generate", "eval", "classifier") and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_run(run_dir: Path, overrides: list[str] | None = None) -> Generator:
    """A finished run, ready to generate: base model + saved adapter (or the saved full model)."""
    from ctrldial.config import _flatten, _parse_set, config_from_flat

    record = read_record(run_dir)
    if not record or record.get("status") != "ok":
        raise UserError(f"{run_dir}: no finished run here (record.json missing or not ok); run `ctrldial run --out {run_dir}` first")
    flat = _flatten(record["config"])
    for item in overrides or []:
        k, v = _parse_set(item)
        flat[k] = v
    cfg = config_from_flat(flat)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    method = get_method(cfg.method.name)
    saved = run_dir / MODEL_DIR
    if method.trains and not (saved / "adapter_config.json").is_file():
        # full fine-tuning saved the whole model: load it as the base
        cfg.model.name = str(saved)
        g = prepare(cfg, device)
        g.method = get_method("zero_shot")
        return g
    g = prepare(cfg, device)
    if method.trains:
        from peft import PeftModel

        g.model = PeftModel.from_pretrained(g.model, str(saved))
        if method.mergeable:
            g.model = g.model.merge_and_unload()
    g.model.eval()
    return g


def generate_from_run(run_dir: Path, label: str, context: list[str], overrides: list[str] | None = None) -> str:
    g = load_run(run_dir, overrides)
    if label not in g.labels:
        raise UserError(f"--label {label!r}: not one of {', '.join(g.labels)}")
    ids = generate_ids(g.model, [g.template.prompt_ids(tuple(context), label)], g.cfg.generate, g.tokenizer.eos_token_id, g.tokenizer.pad_token_id)
    return decode(g.tokenizer, ids)[0]
