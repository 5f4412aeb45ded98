"""What every part of the bench runs on: the config and ``bench.*`` options, the data sample, a fresh model."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from ctrldial.config import Config, build_config
from ctrldial.data.examples import Splits, load_splits
from ctrldial.errors import UserError
from ctrldial.loaded import Loaded, apply_method, prepare
from ctrldial.train import train_steps

SIZES = {
    # quick: 6–8 minutes on 2 cores with AVX-512, 16 on an AVX2-only CPU (benchmarks/speed); 3 repeats, so two quick runs on one idle machine agree
    "quick": {
        "config": {"train": {"max_steps": 6}, "data": {"max_eval_examples": 10}, "classifier": {"max_steps": 8}},
        "bench": {"repeats": 3, "score_texts": 256, "memory_steps": 1, "variants": False},
    },
    "full": {
        "config": {"train": {"max_steps": 30}, "data": {"max_eval_examples": 50}, "classifier": {"max_steps": 40}},
        "bench": {"repeats": 3, "score_texts": 2000, "memory_steps": 3, "variants": True},
    },
}
BENCH_DEFAULTS: dict[str, Any] = {
    "repeats": 1,
    "threads": 0,  # torch threads; 0 = torch's default
    "score_texts": 256,  # utterances the classifiers score
    "memory_steps": 2,  # training steps per method in the memory probe
    "variants": False,  # also time naive batched HF generate and ctrldial under bf16 autocast
    "baseline_bf16": False,  # give the Trainer baseline bf16=True (then train_speedup compares bf16 with bf16)
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


def bench_splits(cfg: Config) -> Splits:
    """The run's samples, with exactly steps × batch training examples, so both loops see each one once."""
    return load_splits(cfg.data, max_train_examples=cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum)


def method_model(cfg: Config, device, num_train: int) -> Loaded:
    """Base model with the method applied, as `ctrldial run` builds it (one process)."""
    m = prepare(cfg, device)
    apply_method(m, train_steps(num_train, cfg.train, 1))
    return m
