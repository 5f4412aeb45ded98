"""Generation speed: ctrldial's ``generate_ids`` on the merged model against per-example ``model.generate``."""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from typing import Any

import torch

from ctrldial.batching import length_sorted_batches
from ctrldial.bench.limit import generation_limit
from ctrldial.bench.timing import alternate, ratio, summary
from ctrldial.config import GenerateConfig
from ctrldial.generate import generate_ids, hf_generate_batch, uses_greedy_loop
from ctrldial.loaded import Loaded, ready_to_generate


FAST_SIDE_RUNS = 3
"""ctrldial's side of each pair is the median of this many back-to-back runs: a run takes a few seconds, and single
runs of it varied by ±10% on an idle machine, more than the baseline's half-minute runs."""


def hf_per_example(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int) -> list[list[int]]:
    """The first experiments' evaluation: ``model.generate`` once per example on the unmerged PEFT model.

    Written out, not built from ctrldial's helpers: the baseline must not change when they do.
    """
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.max_new_tokens,
                             do_sample=False, num_beams=1, eos_token_id=eos_id, pad_token_id=pad_id,
                             repetition_penalty=cfg.repetition_penalty)
        seq = gen[0, len(p) :].tolist()
        out.append(seq[: seq.index(eos_id)] if eos_id in seq else seq)
    return out


def bench_guidance(model, prompts: list[list[int]], negatives: list[list[list[int]]], cfg: GenerateConfig, eos_id: int, pad_id: int,
                   repeats: int) -> dict[str, Any]:
    """Classifier-free guided generation (null-label negatives, scale 2) against unguided, same prompts and batch size,
    alternately: ``guidance_overhead`` = guided seconds / unguided seconds (median over the pairs of runs)."""
    guided_cfg = dataclasses.replace(cfg, guidance_scale=2.0)

    def rate(c, negs):
        def run() -> float:
            t = time.perf_counter()
            generate_ids(model, prompts, c, eos_id, pad_id, negatives=negs)
            return len(prompts) / (time.perf_counter() - t)
        return run

    plain, guided = alternate(rate(cfg, None), rate(guided_cfg, negatives), repeats)
    result = {"unguided": summary(plain, "responses_per_s"), "guided": summary(guided, "responses_per_s"), "guidance_scale": 2.0}
    result["overhead"] = ratio(result, "responses_per_s", "unguided", "guided")  # guided seconds / unguided seconds
    result["guidance_overhead"] = result["overhead"]["median"]
    return result


def bench_generate(m: Loaded, prompts: list[list[int]], repeats: int, variants: bool,
                   negatives: list[list[list[int]]] | None = None) -> dict[str, Any]:
    """ctrldial's generation on the merged model vs the per-example loop; ``variants`` also times, once
    each, Hugging Face ``generate`` on left-padded batches (the naive batched way) and ctrldial under
    bf16 autocast, with their share of outputs identical to the baseline's."""
    cfg, eos_id, pad_id = m.cfg.generate, m.eos_id, m.pad_id
    unmerged = m.model.eval()
    # the baseline keeps the unmerged adapter, so merging (``ready_to_generate``) works on a copy
    ready = dataclasses.replace(m, model=copy.deepcopy(unmerged)) if m.method.mergeable else m
    ready_to_generate(ready)
    merged = ready.model
    outputs: dict[str, list] = {}

    def timed(name, fn, times: int = 1):
        def run() -> float:
            rates = []
            for _ in range(times):
                t = time.perf_counter()
                outputs[name] = fn()
                rates.append(len(prompts) / (time.perf_counter() - t))
            return statistics.median(rates)
        return run

    ours, base = alternate(
        timed("ctrldial", lambda: generate_ids(merged, prompts, cfg, eos_id, pad_id), FAST_SIDE_RUNS),
        timed("baseline", lambda: hf_per_example(unmerged, prompts, cfg, eos_id, pad_id)),
        repeats, extra_a=True,
    )

    def identical(name: str) -> float:
        return sum(a == b for a, b in zip(outputs[name], outputs["baseline"])) / len(prompts)

    def hf_batched() -> list[list[int]]:
        # generate_ids' own non-greedy path (generate.py has no public name for it): length-sorted, left-padded batches
        out: list[list[int]] = [[] for _ in prompts]
        for batch in length_sorted_batches([len(p) for p in prompts], cfg.batch_size):
            for i, seq in zip(batch, hf_generate_batch(merged, [prompts[i] for i in batch], cfg, eos_id, pad_id)):
                out[i] = seq
        return out

    def bf16_autocast() -> list[list[int]]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return generate_ids(merged, prompts, cfg, eos_id, pad_id)

    guidance = bench_guidance(merged, prompts, negatives, cfg, eos_id, pad_id, repeats) if negatives else None
    extra = {}
    if variants:
        for name, fn in (("hf_generate_batched", hf_batched), ("ctrldial_bf16_autocast", bf16_autocast)):
            extra[name] = {"responses_per_s": timed(name, fn)(), "identical_share": identical(name)}
    limit = generation_limit(merged, prompts, outputs["ctrldial"], cfg.max_new_tokens, cfg.batch_size, statistics.median(ours))
    return {
        "limit": limit,
        "prompts": len(prompts),
        "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size,
        "greedy_loop": uses_greedy_loop(merged, cfg),
        "mean_new_tokens": sum(map(len, outputs["baseline"])) / len(prompts),
        "ctrldial": summary(ours, "responses_per_s"),
        "hf_per_example": summary(base, "responses_per_s"),
        "identical_share": identical("ctrldial"),
        "variants": extra,
        "guidance": guidance,
    }
