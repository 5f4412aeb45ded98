"""`ctrldial bench`: ctrldial's training loop, generation and scoring against plain Hugging Face code.

One process, one model, one data sample, one batch size. Each comparison runs ctrldial and its baseline
alternately (A B A B …, the cheap side once more at the end), because this machine is shared and its
speed drifts; the ratio of medians is reported. Peak memory per method is measured in a fresh
subprocess per method, so one method's peak never hides another's.

    ctrldial bench --quick                      # small sizes, a few minutes on 2 CPU cores
    ctrldial bench --out benchmarks/speed       # the committed sizes
    ctrldial bench --set data.path=/path/to/dailydialog --set bench.threads=1

Besides config keys, ``--set`` takes ``bench.*`` keys (``BENCH_DEFAULTS``).

ctrldial's side of every comparison calls the stages of `ctrldial run` (``load_splits``, ``prepare``,
``train_method``, ``ready_to_generate``, ``load_judge`` …); the Hugging Face baselines are written out
as a user would write them. The parts: train.py, generate.py, score.py, memory.py; the table: table.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ctrldial.bench.score import _score_both  # noqa: F401  (tests/test_classifier.py checks its ensemble error)
from ctrldial.bench.options import BENCH_DEFAULTS, COMMON, SIZES, bench_config, bench_splits, method_model
from ctrldial.bench.table import format_table
from ctrldial.config import Config

__all__ = ["BENCH_DEFAULTS", "COMMON", "SIZES", "bench", "bench_config", "format_table"]


def bench(quick: bool, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Run the parts chosen by ``bench.parts``, write ``out/bench.json``, print the tables; returns bench.json."""
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
    from accelerate.utils import set_seed

    from ctrldial.bench.generate import bench_generate
    from ctrldial.bench.memory import bench_memory
    from ctrldial.bench.score import bench_score
    from ctrldial.bench.timing import ratio
    from ctrldial.bench.train import bench_train
    from ctrldial.loaded import prepare
    from ctrldial.pipeline import eval_prompts
    from ctrldial.record import environment, git_state, package_versions, write_json
    from ctrldial.train import cpu_has_bf16

    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    parts = opts["parts"]
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full", "overrides": overrides, "bench": opts, "config": cfg.to_dict(),
        "environment": {**environment(), "cpu": _cpu_name(), "load_average_start": os.getloadavg()},
        "cpu_bf16": cpu_has_bf16(),
        "packages": package_versions(), "git": git_state(),
    }
    splits = bench_splits(cfg)
    seconds: dict[str, float] = {}
    result["seconds"] = seconds
    clock = time.perf_counter()
    m = None
    if "train" in parts or "generate" in parts:
        setup = prepare(cfg, device)  # the tokenizer and template: the sequences and prompts both sides get
        train_enc, _ = setup.encode(splits.train)
        prompts = eval_prompts(setup, splits.test)
        nulls = [[setup.template.prompt_ids(ex.context, None)] for ex in splits.test for _ in setup.labels]  # guidance's negatives
        del setup
    ratios: dict[str, Any] = {}
    result["ratios"] = ratios  # each: median, min, max and every run's ratio; the top-level figure is the median
    if "train" in parts:
        m, result["train"] = bench_train(cfg, train_enc, device, opts["repeats"], opts["baseline_bf16"])
        ratios["train_speedup"] = ratio(result["train"], "tokens_per_s", "ctrldial", "hf_trainer")
        ratios["train_speedup_auto"] = ratio(result["train"], "tokens_per_s", "ctrldial_auto" if "ctrldial_auto" in result["train"] else "ctrldial", "hf_trainer")
        seconds["train"], clock = time.perf_counter() - clock, time.perf_counter()
    if "generate" in parts:
        if m is None:  # training skipped: an untrained adapter
            set_seed(cfg.train.seed)
            m = method_model(cfg, device, len(train_enc))
        result["generate"] = bench_generate(m, prompts, opts["repeats"], opts["variants"], nulls)
        ratios["guidance_overhead"] = result["generate"]["guidance"]["overhead"]
        ratios["generate_speedup"] = ratio(result["generate"], "responses_per_s", "ctrldial", "hf_per_example")
        result["generate_identical_share"] = result["generate"]["identical_share"]
        seconds["generate"], clock = time.perf_counter() - clock, time.perf_counter()
    del m
    if "score" in parts:
        result["score"] = bench_score(cfg, splits.corpus, opts["score_texts"], opts["repeats"])
        ratios["score_speedup"] = ratio(result["score"], "utterances_per_s", "ctrldial", "hf_pipeline")
        seconds["score"], clock = time.perf_counter() - clock, time.perf_counter()
    if "memory" in parts:
        result["memory"] = bench_memory(cfg, opts["methods"], opts["memory_steps"], opts["threads"])
        seconds["memory"] = time.perf_counter() - clock
    result.update({name: r["median"] for name, r in ratios.items()})
    result["environment"]["load_average_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - started
    write_json(out / "bench.json", result)
    print(format_table(result))
    print(f"bench: {out / 'bench.json'} ({result['wall_seconds']:.0f} s)")
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
