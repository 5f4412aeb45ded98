"""How far generation is from what this CPU could do: the compute-bound limit of batched greedy decoding.

Every generated or prefilled token costs about 2 FLOPs per weight it meets in a matrix product (the
vocabulary projection included, input embeddings and position tables excluded: they are lookups).
Attention over the cache adds 4 · length · width per layer and token: under 5% at DailyDialog's lengths, left
out, so the limit is a little optimistic. ctrldial prefills each distinct prompt prefix once (a context's
four prompts share their opening), so the prefill counted is the number of distinct prefixes.

Two peaks bound it: a large square fp32 matrix product (what the cores can do at best) and one of the shape
decoding runs (batch rows × hidden by hidden × MLP width), which reads its weights once per step and is
closer to what a step can reach.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def matmul_params(model) -> int:
    """Weights that tokens meet in matrix products: every 2-D weight but the embedding tables, plus the output
    projection when it is tied to the input embeddings."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = sum(p.numel() for p in model.parameters() if p.dim() == 2 and id(p) not in tables)
    out = model.get_output_embeddings()
    if out is not None and id(out.weight) in tables:
        n += out.weight.numel()
    return n


def distinct_prefix_tokens(prompts: list[list[int]]) -> int:
    """Tokens a prefill that computes each distinct prefix once must compute (the nodes of the prompts' trie)."""
    root: dict = {}
    count = 0
    for p in prompts:
        node = root
        for t in p:
            if t not in node:
                node[t] = {}
                count += 1
            node = node[t]
    return count


def matmul_gflops(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """Sustained fp32 GFLOP/s of an (m × k) @ (k × n) product on this machine's torch threads."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - start) / 1e9


def generation_limit(model, prompts: list[list[int]], outputs: list[list[int]], max_new_tokens: int, batch_rows: int,
                     measured_responses_per_s: float) -> dict[str, Any]:
    """The FLOPs generation needs, the two peaks, and the responses/s each would allow beside the measurement."""
    params = matmul_params(model)
    prefill = distinct_prefix_tokens(prompts)
    generated = sum(min(len(o) + 1, max_new_tokens) for o in outputs)  # each step until eos (or the cap) runs
    flops = 2 * params * (prefill + generated)
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd")
    width = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    square = matmul_gflops(1024, 1024, 1024)
    decode_shaped = matmul_gflops(batch_rows, hidden, width)
    per_response = flops / len(prompts)
    return {
        "matmul_params": params, "prefill_tokens": prefill, "generated_tokens": generated, "gflops_per_response": per_response / 1e9,
        "peak_gflops_square": square, "peak_gflops_decode_shaped": decode_shaped,
        "limit_responses_per_s": square * 1e9 / per_response, "limit_responses_per_s_decode_shaped": decode_shaped * 1e9 / per_response,
        "measured_responses_per_s": measured_responses_per_s,
        "share_of_limit": measured_responses_per_s * per_response / (square * 1e9),
        "share_of_decode_shaped_limit": measured_responses_per_s * per_response / (decode_shaped * 1e9),
    }
