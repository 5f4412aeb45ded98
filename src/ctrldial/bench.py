"""`ctrldial bench`: ctrldial's training loop, generation and scoring against plain Hugging Face code.

One process, one model, one data sample, one batch size. Each comparison runs ctrldial and its baseline
alternately (A B A B …, the cheap side once more at the end), because this machine is shared and its
speed drifts; the ratio of medians is reported. Peak memory per method is measured in a fresh
subprocess per method, so one method's peak never hides another's.

    ctrldial bench --quick                      # small sizes, a few minutes on 2 CPU cores
    ctrldial bench --out benchmarks/speed       # the committed sizes
    ctrldial bench --set data.path=/path/to/dailydialog --set bench.threads=1

Besides config keys, ``--set`` takes ``bench.*`` keys (``BENCH_DEFAULTS``).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ctrldial.config import Config, build_config, load_config_dict
from ctrldial.errors import UserError

SIZES = {
    # quick: under 5 minutes on 2 cores
    "quick": {
        "config": {"train": {"max_steps": 6}, "data": {"max_eval_examples": 10}, "classifier": {"max_steps": 8}},
        "bench": {"repeats": 1, "score_texts": 256, "memory_steps": 1, "variants": False},
    },
    "full": {
        "config": {"train": {"max_steps": 30}, "data": {"max_eval_examples": 50}, "classifier": {"max_steps": 40}},
        "bench": {"repeats": 2, "score_texts": 2000, "memory_steps": 3, "variants": True},
    },
}
BENCH_DEFAULTS: dict[str, Any] = {
    "repeats": 1,
    "threads": 0,  # torch threads; 0 = torch's default
    "score_texts": 256,  # utterances the classifiers score
    "memory_steps": 2,  # training steps per method in the memory probe
    "variants": False,  # also time naive batched HF generate and ctrldial under bf16 autocast
    "methods": ["zero_shot", "full", "lora", "prefix", "prompt", "p_tuning", "ia3"],
    "parts": ["train", "generate", "score", "memory"],
}
COMMON = {
    "model": {"name": "smollm2-135m"},
    "method": {"name": "lora"},
    "train": {"tracker": "none", "batch_size": 8},
    # 64 rows decode ~9% faster than 32 here (200 prompts, 1 thread): the per-step cost is mostly reading
    # the weights, shared by more rows (the proposed generate.batch_size default; see benchmarks/speed)
    "generate": {"batch_size": 64},
}


# -- config ---------------------------------------------------------------------------------------------
def bench_config(quick: bool, overrides: list[str]) -> tuple[Config, dict[str, Any]]:
    """The run config (common settings ← size ← --set) and the bench options (``bench.*`` keys)."""
    size = SIZES["quick" if quick else "full"]
    opts = {**BENCH_DEFAULTS, **size["bench"]}
    rest = []
    for item in overrides:
        key, _, raw = item.partition("=")
        if not key.startswith("bench."):
            rest.append(item)
            continue
        name = key[len("bench.") :]
        if name not in BENCH_DEFAULTS:
            raise UserError(f"--set {key}: unknown bench option; bench options are {', '.join('bench.' + k for k in BENCH_DEFAULTS)}")
        value = yaml.safe_load(raw)
        want = type(BENCH_DEFAULTS[name])
        if want is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise UserError(f"--set {key}={raw}: expected {want.__name__}")
        opts[name] = value
    base = copy.deepcopy(COMMON)
    for section, values in size["config"].items():
        base.setdefault(section, {}).update(values)
    cfg = build_config(None, rest, base=base)
    if not cfg.train.max_steps:
        raise UserError("train.max_steps: the bench needs a step budget (e.g. --set train.max_steps=6)")
    unknown = sorted(set(opts["parts"]) - set(BENCH_DEFAULTS["parts"]))
    if unknown:
        raise UserError(f"bench.parts: unknown part(s) {unknown}; choose from {', '.join(BENCH_DEFAULTS['parts'])}")
    return cfg, opts


def alternate(a: Callable[[], float], b: Callable[[], float], repeats: int, extra_a: bool = False) -> tuple[list[float], list[float]]:
    """Rates of ``a`` and ``b`` measured alternately; ``extra_a`` runs the cheap side once more at the end."""
    ra, rb = [], []
    for _ in range(repeats):
        ra.append(a())
        rb.append(b())
    if extra_a:
        ra.append(a())
    return ra, rb


def _summary(rates: list[float], unit: str) -> dict[str, Any]:
    return {unit: statistics.median(rates), "runs": rates}


# -- shared setup -----------------------------------------------------------------------------------------
def load_data(cfg: Config):
    """Training examples (exactly steps × batch, so both loops see each once), eval prompts, texts to score."""
    from ctrldial.data.corpus import load_corpus
    from ctrldial.data.examples import build_examples, sample_examples

    corpus = load_corpus(cfg.data.path, cfg.data.on_error, cfg.data.dedup)
    n_train = cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum
    attr = cfg.data.attribute if cfg.data.balance else None
    train_ex = sample_examples(build_examples(corpus, "train", cfg.data), n_train, cfg.data.seed, attr)
    eval_ex = sample_examples(build_examples(corpus, "test", cfg.data), cfg.data.max_eval_examples, cfg.data.seed)
    return corpus, train_ex, eval_ex


def fresh_model(cfg: Config, device):
    """Base model with the method applied, as `ctrldial run` builds it."""
    from ctrldial.run import apply_method, prepare

    g = prepare(cfg, device)
    apply_method(g, cfg.train.max_steps)
    return g


# -- 1. training ----------------------------------------------------------------------------------------
def ctrldial_train(cfg: Config, train_enc, device) -> tuple[Any, dict[str, Any]]:
    """ctrldial's loop (length-grouped batches, mixed precision `auto`); steady-state non-pad tokens/s."""
    from accelerate.utils import set_seed

    from ctrldial.run import make_accelerator
    from ctrldial.train import length_grouped_batches, train

    set_seed(cfg.train.seed)
    g = fresh_model(cfg, device)
    accelerator = make_accelerator(cfg, None)
    ends: list[float] = []
    lr = cfg.train.lr or g.method.default_lr
    model, _ = train(g.model, train_enc, [], cfg.train, lr, g.tokenizer.pad_token_id, accelerator, lambda m, s: ends.append(time.perf_counter()))
    # the loop's own batches (one process): same sampler, same seed, epoch 0
    batches = length_grouped_batches([len(e.input_ids) for e in train_enc], cfg.train.batch_size, cfg.train.seed, cfg.train.group_by_length)
    tokens = [sum(len(train_enc[i].input_ids) for i in b) for b in batches]
    per_step = [sum(tokens[s * cfg.train.grad_accum : (s + 1) * cfg.train.grad_accum]) for s in range(len(ends))]
    g.model = model
    return g, {"tokens_per_s": steady_rate(ends, per_step), "mixed_precision": accelerator.mixed_precision}


def steady_rate(ends: list[float], tokens: list[int]) -> float:
    """Tokens/s from the end of the first step to the end of the last: one-off warm-up excluded for both loops."""
    if len(ends) < 2:
        raise UserError("train.max_steps: the bench needs at least 2 steps")
    return sum(tokens[1 : len(ends)]) / (ends[-1] - ends[0])


def hf_trainer_baseline(cfg: Config, train_enc, tokenizer, lr: float, workdir: Path) -> dict[str, Any]:
    """A plain Hugging Face Trainer + PEFT LoRA script with default TrainingArguments, written as a user would."""
    from accelerate.state import AcceleratorState
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from ctrldial.methods.entries import arch
    from ctrldial.models import resolve_model

    AcceleratorState._reset_state(reset_partial_state=True)  # ctrldial's bf16 state must not leak into the baseline
    model = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model.name))
    m = cfg.method
    lora = LoraConfig(r=m.r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=m.target_modules or arch(model).get("lora") or "all-linear",
                      fan_in_fan_out=arch(model).get("fan_in_fan_out", False))
    model = get_peft_model(model, lora)
    data = Dataset.from_dict({
        "input_ids": [e.input_ids for e in train_enc],
        "attention_mask": [[1] * len(e.input_ids) for e in train_enc],
        "labels": [e.labels for e in train_enc],
    })
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    tokens: list[int] = []
    ends: list[float] = []

    def counting_collator(features):
        batch = collator(features)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class StepEnds(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
        learning_rate=lr, gradient_accumulation_steps=cfg.train.grad_accum,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=counting_collator, callbacks=[StepEnds()])
    trainer.train()
    per_step = [sum(tokens[s * cfg.train.grad_accum : (s + 1) * cfg.train.grad_accum]) for s in range(len(ends))]
    AcceleratorState._reset_state(reset_partial_state=True)
    return {"tokens_per_s": steady_rate(ends, per_step)}


# -- 2. generation --------------------------------------------------------------------------------------
def hf_per_example(model, prompts: list[list[int]], cfg: Config, eos_id: int, pad_id: int) -> list[list[int]]:
    """The first experiments' evaluation: ``model.generate`` once per example on the unmerged PEFT model."""
    import torch

    out = []
    for p in prompts:
        ids = torch.tensor([p])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.generate.max_new_tokens,
                             do_sample=False, num_beams=1, eos_token_id=eos_id, pad_token_id=pad_id,
                             repetition_penalty=cfg.generate.repetition_penalty)
        seq = gen[0, len(p) :].tolist()
        out.append(seq[: seq.index(eos_id)] if eos_id in seq else seq)
    return out


def bench_generate(g, cfg: Config, prompts: list[list[int]], repeats: int, variants: bool) -> dict[str, Any]:
    """ctrldial's generation on the merged model vs the per-example loop; ``variants`` also times, once
    each, Hugging Face ``generate`` on left-padded batches (the naive batched way) and ctrldial under
    bf16 autocast, with their share of outputs identical to the baseline's."""
    import torch

    from ctrldial.generate import generate_ids, hf_generate_batch, length_sorted_batches, uses_greedy_loop

    eos_id, pad_id = g.tokenizer.eos_token_id, g.tokenizer.pad_token_id
    unmerged = g.model.eval()
    merged = copy.deepcopy(unmerged).merge_and_unload().eval() if g.method.mergeable else unmerged
    outputs: dict[str, list] = {}

    def timed(name, fn):
        def run() -> float:
            t = time.perf_counter()
            outputs[name] = fn()
            return len(prompts) / (time.perf_counter() - t)
        return run

    ours, base = alternate(
        timed("ctrldial", lambda: generate_ids(merged, prompts, cfg.generate, eos_id, pad_id)),
        timed("baseline", lambda: hf_per_example(unmerged, prompts, cfg, eos_id, pad_id)),
        repeats, extra_a=True,
    )
    def identical(name: str) -> float:
        return sum(a == b for a, b in zip(outputs[name], outputs["baseline"])) / len(prompts)

    def hf_batched() -> list[list[int]]:
        out: list[list[int]] = [[] for _ in prompts]
        for batch in length_sorted_batches(prompts, cfg.generate.batch_size):
            for i, seq in zip(batch, hf_generate_batch(merged, [prompts[i] for i in batch], cfg.generate, eos_id, pad_id)):
                out[i] = seq
        return out

    def bf16_autocast() -> list[list[int]]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return generate_ids(merged, prompts, cfg.generate, eos_id, pad_id)

    extra = {}
    if variants:
        for name, fn in (("hf_generate_batched", hf_batched), ("ctrldial_bf16_autocast", bf16_autocast)):
            extra[name] = {"responses_per_s": timed(name, fn)(), "identical_share": identical(name)}
    return {
        "prompts": len(prompts),
        "max_new_tokens": cfg.generate.max_new_tokens,
        "batch_size": cfg.generate.batch_size,
        "greedy_loop": uses_greedy_loop(merged, cfg.generate),
        "mean_new_tokens": sum(map(len, outputs["baseline"])) / len(prompts),
        "ctrldial": _summary(ours, "responses_per_s"),
        "hf_per_example": _summary(base, "responses_per_s"),
        "identical_share": identical("ctrldial"),
        "variants": extra,
    }


# -- 3. scoring -----------------------------------------------------------------------------------------
def score_texts(corpus, n: int) -> list[str]:
    from ctrldial.data.normalize import normalize_text

    utts = [normalize_text(u) for split in ("test", "validation") for d in corpus.splits[split] for u in d.utterances]
    if not utts:
        raise UserError("data.path: no test or validation utterances to score")
    return [utts[i % len(utts)] for i in range(n)]


def bench_score(cfg: Config, corpus, n_texts: int, repeats: int) -> dict[str, Any]:
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

    from ctrldial.classifier import Ensemble, Scorer

    scorer = Scorer.load(path, attribute)
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
        "ctrldial": _summary(ours, "utterances_per_s"), "hf_pipeline": _summary(base, "utterances_per_s"),
        "same_label_share": same,
    }


# -- 4. memory and parameters ------------------------------------------------------------------------------
def memory_probe(cfg_dict: dict[str, Any], steps: int, threads: int) -> dict[str, Any]:
    """In a fresh process: build the method, count parameters, run ``steps`` training steps, read peak RSS."""
    import torch

    from ctrldial.run import encode, make_accelerator, param_counts
    from ctrldial.train import collate, token_losses, train

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config_dict(cfg_dict)
    cfg.train.max_steps = steps
    _, train_ex, _ = load_data(cfg)
    device = torch.device("cpu")
    g = fresh_model(cfg, device)
    loaded_mb = _status_mb("VmRSS")
    counts = param_counts(g.model)
    enc, _ = encode(g.template, train_ex, cfg.data.attribute)
    if g.method.trains:
        train(g.model, enc, [], cfg.train, cfg.train.lr or g.method.default_lr, g.tokenizer.pad_token_id, make_accelerator(cfg, None))
    else:  # zero-shot only evaluates: forward passes without gradients
        with torch.inference_mode():
            for s in range(steps):
                token_losses(g.model, collate(enc[s * cfg.train.batch_size : (s + 1) * cfg.train.batch_size], g.tokenizer.pad_token_id))
    # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss starts from the parent's resident size
    peak = _status_mb("VmHWM")
    return {**counts, "rss_after_load_mb": loaded_mb, "peak_rss_mb": peak, "steps": steps if g.method.trains else 0}


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise UserError(f"/proc/self/status has no {field}: the memory part of the bench needs Linux")


def bench_memory(cfg: Config, methods: list[str], steps: int, threads: int) -> dict[str, Any]:
    """One subprocess per method, two at a time (timing is not measured here, only memory)."""
    from ctrldial.methods import get_method

    procs: dict[str, subprocess.Popen] = {}
    results: dict[str, Any] = {}
    pending = list(methods)
    for name in pending:
        get_method(name)  # unknown names fail before any process starts
    while pending or procs:
        while pending and len(procs) < 2:
            name = pending.pop(0)
            c = cfg.to_dict()
            c["method"]["name"] = name
            arg = json.dumps({"config": c, "steps": steps, "threads": threads})
            procs[name] = subprocess.Popen([sys.executable, "-m", "ctrldial.bench", "probe", arg],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        name, proc = next(iter(procs.items()))
        stdout, stderr = proc.communicate()
        del procs[name]
        lines = [l for l in stdout.splitlines() if l.startswith("PROBE ")]
        if proc.returncode != 0 or not lines:
            results[name] = {"error": (stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            results[name] = json.loads(lines[-1][len("PROBE ") :])
    return results


# -- the command ------------------------------------------------------------------------------------------
def bench(quick: bool, out: Path, overrides: list[str]) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    cfg, opts = bench_config(quick, overrides)
    threads = torch.get_num_threads()
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    try:
        result = _bench(cfg, opts, quick, Path(out), overrides, started)
    finally:
        torch.set_num_threads(threads)
    return result


def _bench(cfg: Config, opts: dict[str, Any], quick: bool, out: Path, overrides: list[str], started: float) -> dict[str, Any]:
    import torch

    from ctrldial.record import environment, git_state, package_versions, write_json
    from ctrldial.run import encode

    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full", "overrides": overrides, "bench": opts, "config": cfg.to_dict(),
        "environment": {**environment(), "cpu": _cpu_name(), "load_average_start": os.getloadavg()},
        "packages": package_versions(), "git": git_state(),
    }
    corpus, train_ex, eval_ex = load_data(cfg)
    seconds: dict[str, float] = {}
    result["seconds"] = seconds
    clock = time.perf_counter()
    g = None
    if "train" in opts["parts"] or "generate" in opts["parts"]:
        setup = fresh_model(cfg, device)
        train_enc, _ = encode(setup.template, train_ex, cfg.data.attribute)
        prompts = [setup.template.prompt_ids(ex.context, lab) for ex in eval_ex for lab in setup.labels]
        del setup
    if "train" in opts["parts"]:
        ours, base = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(opts["repeats"]):
                g, r = ctrldial_train(cfg, train_enc, device)
                ours.append(r["tokens_per_s"])
                lr = cfg.train.lr or g.method.default_lr
                base.append(hf_trainer_baseline(cfg, train_enc, g.tokenizer, lr, Path(tmp))["tokens_per_s"])
        result["train"] = {
            "steps": cfg.train.max_steps, "batch_size": cfg.train.batch_size, "examples": len(train_enc),
            "non_pad_tokens": sum(len(e.input_ids) for e in train_enc), "mixed_precision": r["mixed_precision"],
            "ctrldial": _summary(ours, "tokens_per_s"), "hf_trainer": _summary(base, "tokens_per_s"),
        }
        result["train_speedup"] = _ratio(result["train"], "tokens_per_s", "ctrldial", "hf_trainer")
        seconds["train"], clock = time.perf_counter() - clock, time.perf_counter()
    if "generate" in opts["parts"]:
        g = g or fresh_model(cfg, device)  # untrained adapter when training was skipped
        result["generate"] = bench_generate(g, cfg, prompts, opts["repeats"], opts["variants"])
        result["generate_speedup"] = _ratio(result["generate"], "responses_per_s", "ctrldial", "hf_per_example")
        result["generate_identical_share"] = result["generate"]["identical_share"]
        seconds["generate"], clock = time.perf_counter() - clock, time.perf_counter()
    del g
    if "score" in opts["parts"]:
        result["score"] = bench_score(cfg, corpus, opts["score_texts"], opts["repeats"])
        result["score_speedup"] = _ratio(result["score"], "utterances_per_s", "ctrldial", "hf_pipeline")
        seconds["score"], clock = time.perf_counter() - clock, time.perf_counter()
    if "memory" in opts["parts"]:
        result["memory"] = bench_memory(cfg, opts["methods"], opts["memory_steps"], opts["threads"])
        seconds["memory"] = time.perf_counter() - clock
    result["environment"]["load_average_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - started
    write_json(out / "bench.json", result)
    print(format_table(result))
    print(f"bench: {out / 'bench.json'} ({result['wall_seconds']:.0f} s)")
    return result


def _ratio(part: dict[str, Any], unit: str, ours: str, base: str) -> float:
    return part[ours][unit] / part[base][unit]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def format_table(r: dict[str, Any]) -> str:
    """The results as Markdown tables (printed, and pasted into benchmarks/speed/README.md)."""
    rows = ["| part | ctrldial | Hugging Face baseline | speedup | agreement |", "|---|---:|---:|---:|---:|"]
    parts = [
        ("train", "training (non-pad tokens/s)", "tokens_per_s", "hf_trainer", "train_speedup", None),
        ("generate", "generation (responses/s)", "responses_per_s", "hf_per_example", "generate_speedup", "identical_share"),
        ("score", "scoring (utterances/s)", "utterances_per_s", "hf_pipeline", "score_speedup", "same_label_share"),
    ]
    for key, title, unit, base, ratio, agree in parts:
        if key in r:
            p = r[key]
            rows.append(f"| {title} | {p['ctrldial'][unit]:.1f} | {p[base][unit]:.1f} | {r[ratio]:.2f}× | "
                        f"{'' if agree is None else f'{100 * p[agree]:.1f}% identical'} |")
    variants = {
        "hf_generate_batched": "generation: Hugging Face `generate` on left-padded batches",
        "ctrldial_bf16_autocast": "generation: ctrldial under bf16 autocast",
    }
    for name, v in r.get("generate", {}).get("variants", {}).items():
        base = r["generate"]["hf_per_example"]["responses_per_s"]
        rows.append(f"| {variants.get(name, name)} | {v['responses_per_s']:.1f} | {base:.1f} | "
                    f"{v['responses_per_s'] / base:.2f}× | {100 * v['identical_share']:.1f}% identical |")
    text = "\n".join(rows)
    if "memory" in r:
        mem = ["| method | trainable params | trainable % | peak RSS (MB) | RSS after load (MB) |", "|---|---:|---:|---:|---:|"]
        for name, m in r["memory"].items():
            if "error" in m:
                mem.append(f"| {name} | failed: {m['error']} | | | |")
            else:
                mem.append(f"| {name} | {m['trainable_params']:,} | {m['trainable_percent']:.3f} | {m['peak_rss_mb']:.0f} | {m['rss_after_load_mb']:.0f} |")
        text += "\n\n" + "\n".join(mem)
    return text


def _probe_main(arg: str) -> None:
    spec = json.loads(arg)
    res = memory_probe(spec["config"], spec["steps"], spec["threads"])
    print("PROBE " + json.dumps(res), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        _probe_main(sys.argv[2])
    else:
        sys.exit("usage: python -m ctrldial.bench probe JSON (internal; use `ctrldial bench`)")
