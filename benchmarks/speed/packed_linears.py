"""Packed inference products (ctrldial/packed.py) against the plain ones, side by side in one process.

    python benchmarks/speed/packed_linears.py --data ../shared/data/dailydialog --judge JUDGE --out benchmarks/speed/results/packed-linears.json

Generation: ctrldial's greedy loop on the bench's quick prompts (SmolLM2-135M, untrained LoRA merged, 10 test
contexts × 4 acts), with and without packed weights, alternately (A B A B …); the share of identical responses.
Scoring: the judge on 256 test utterances, the same way; the share of equal verdicts. One thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import ctrldial.greedy as greedy_module
import ctrldial.packed as packed_module
from ctrldial.bench.options import bench_config, bench_splits, method_model
from ctrldial.bench.score import score_texts
from ctrldial.generate import generate_ids
from ctrldial.loaded import prepare, ready_to_generate
from ctrldial.packed import packed_linears
from ctrldial.pipeline import eval_prompts
from ctrldial.scoring import load_judge


def plain(model, enabled=True):
    return nullcontext()


def side_by_side(run, repeats: int) -> dict:
    """``run(packed: bool)`` → (seconds, outputs); packed and plain alternately, ratio per pair."""
    times = {True: [], False: []}
    outs = {}
    for _ in range(repeats):
        for packed in (True, False):
            seconds, outs[packed] = run(packed)
            times[packed].append(seconds)
    ratios = [p / q for q, p in zip(times[True], times[False])]  # plain seconds / packed seconds
    same = sum(a == b for a, b in zip(outs[True], outs[False])) / len(outs[True])
    return {"speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "packed_seconds": times[True], "plain_seconds": times[False], "identical_share": same}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--judge", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg, _ = bench_config(True, [f"data.path={a.data}"])
    splits = bench_splits(cfg)
    device = torch.device("cpu")
    setup = prepare(cfg, device)
    prompts = eval_prompts(setup, splits.test)
    del setup
    m = method_model(cfg, device, cfg.train.max_steps * cfg.train.batch_size)
    ready_to_generate(m)
    model = m.model.eval()

    def generation(packed: bool):
        greedy_module.packed_linears = packed_linears if packed else plain
        t = time.perf_counter()
        out = generate_ids(model, prompts, cfg.generate, m.eos_id, m.pad_id)
        return time.perf_counter() - t, out

    judge = load_judge(a.judge, "act")
    texts = score_texts(splits.corpus, 256)
    contexts = [["How are you?"]] * len(texts) if judge.input == "previous" else None

    def scoring(packed: bool):
        packed_module.packed_linears = packed_linears if packed else plain  # the scorer imports it at call time
        t = time.perf_counter()
        labels = judge.score(texts, contexts)[0]
        return time.perf_counter() - t, labels

    generation(True)  # warm-up
    result = {"command": "python benchmarks/speed/packed_linears.py --data DATA --judge JUDGE --out OUT",
              "prompts": len(prompts), "threads": 1, "cpu_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
              "generation": side_by_side(generation, a.repeats), "scoring": side_by_side(scoring, a.repeats),
              "judge": a.judge, "texts": len(texts), "load_average_after": os.getloadavg()}
    greedy_module.packed_linears = packed_module.packed_linears = packed_linears
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if "seconds" not in kk} if isinstance(v, dict) else v
                      for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
