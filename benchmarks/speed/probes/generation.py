"""Probes of the greedy loop on the quick bench's prompts (benchmarks/speed README, "Where generation's time goes").

    python benchmarks/speed/probes/generation.py products  --out products.json   # packed vs plain fp32 products per shape, hot and cold weights
    python benchmarks/speed/probes/generation.py phases    --out phases.json     # prefill body, decode body, output projection
    python benchmarks/speed/probes/generation.py attention --out attention.json  # decode attention: SDPA vs written out
    python benchmarks/speed/probes/generation.py drop      --out drop.json       # needs lazy-drop.patch applied (git apply)

One torch thread unless --threads. Model and prompts: `ctrldial bench --quick`'s (SmolLM2-135M, 40 prompts, LoRA
merged, untrained: the probes time the loop, not the adapter). --data is the DailyDialog folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def timed(fn, calls: int, repeats: int = 5) -> float:
    """Median milliseconds per call over ``repeats`` runs of ``calls`` calls, after a warm-up."""
    for _ in range(3):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t) / calls * 1e3)
    return statistics.median(runs)


def products(args) -> dict:
    """SmolLM2-135M's product shapes at decode-like row counts: torch's plain product against oneDNN's on a packed weight."""
    out = []
    for rows in (8, 24, 48, 64):
        for o, i in ((576, 576), (192, 576), (1536, 576), (576, 1536), (49152, 576)):
            w, x = torch.randn(o, i), torch.randn(rows, i)
            packed = torch.ops.mkldnn._reorder_linear_weight(w, 64)
            calls = 3 if o > 10000 else 40
            plain = timed(lambda: F.linear(x, w), calls)
            pk = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""), calls)
            # cold: as in a decode step, each call reads another weight (copies cycled through ~400 MB, more than the caches)
            copies = [torch.ops.mkldnn._reorder_linear_weight(torch.randn(o, i), 64) for _ in range(max(2, 100_000_000 // (o * i)))]
            cycle = itertools.cycle(copies)
            cold = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, next(cycle), None, "none", [], ""), len(copies))
            out.append({"rows": rows, "out": o, "in": i, "plain_ms": plain, "packed_ms": pk, "packed_over_plain": pk / plain,
                        "packed_gflops": 2 * rows * o * i / pk / 1e6, "packed_cold_ms": cold,
                        "packed_cold_gflops": 2 * rows * o * i / cold / 1e6, "cold_weight_gb_per_s": o * i * 4 / cold / 1e6})
            del copies
    return {"products": out}


def attention(args) -> dict:
    """One decode step's attention of one layer (3 key heads x 3 query heads, head 64, 10 masked positions)."""
    out = []
    for rows, length in ((40, 100), (20, 130), (40, 200)):
        q = torch.randn(rows, 3, 3, 64)
        k, v = (torch.randn(rows, 3, length + 16, 64)[:, :, :length] for _ in range(2))
        mask = torch.zeros(rows, 1, 1, length)
        mask[..., :10] = float("-inf")

        def written_out():
            s = torch.matmul(q, k.transpose(-1, -2)).mul_(0.125).add_(mask)
            return torch.matmul(s.softmax(-1), v)

        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.125)
        out.append({"rows": rows, "length": length, "sdpa_float_mask_ms": timed(sdpa, 50),
                    "sdpa_bool_mask_ms": timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask == 0, scale=0.125), 50),
                    "written_out_ms": timed(written_out, 50), "max_abs_diff": (sdpa() - written_out()).abs().max().item()})
    return {"attention": out}


def _quick_model(data: str):
    from accelerate.utils import set_seed

    from ctrldial.bench.options import bench_config, bench_splits, method_model
    from ctrldial.loaded import prepare, ready_to_generate
    from ctrldial.pipeline import eval_prompts

    cfg, _ = bench_config(True, [f"data.path={data}"])
    splits = bench_splits(cfg)
    prompts = eval_prompts(prepare(cfg, torch.device("cpu")), splits.test)
    set_seed(cfg.train.seed)
    m = method_model(cfg, torch.device("cpu"), 100)
    ready_to_generate(m)
    return m, prompts, cfg.generate


def phases(args) -> dict:
    """Wall time of a pass split into the backbone's prefill calls, its decode calls, and the output projection."""
    from ctrldial.generate import generate_ids

    m, prompts, g = _quick_model(args.data)
    model = m.model.eval()
    body, head = model.model, model.get_output_embeddings()
    acc: dict = {}

    def pre(_, args_, kwargs):
        ids = kwargs.get("input_ids")
        acc["kind"] = "prefill" if ids.shape[1] > 1 else "decode"
        acc[acc["kind"] + "_positions"] = acc.get(acc["kind"] + "_positions", 0) + ids.numel()
        acc["t"] = time.perf_counter()

    def post(_, args_, kwargs, out):
        acc[acc["kind"] + "_s"] = acc.get(acc["kind"] + "_s", 0.0) + time.perf_counter() - acc["t"]

    def head_pre(_, args_):
        acc["h"] = time.perf_counter()

    def head_post(_, args_, out):
        acc["head_s"] = acc.get("head_s", 0.0) + time.perf_counter() - acc["h"]
        acc.setdefault("head_rows", []).append(args_[0].shape[0] * args_[0].shape[1])

    generate_ids(model, prompts, g, m.eos_id, m.pad_id)  # warm-up
    body.register_forward_pre_hook(pre, with_kwargs=True)
    body.register_forward_hook(post, with_kwargs=True)
    head.register_forward_pre_hook(head_pre)
    head.register_forward_hook(head_post)
    passes = []
    for _ in range(args.passes):
        acc.clear()
        t = time.perf_counter()
        generate_ids(model, prompts, g, m.eos_id, m.pad_id)
        passes.append({"pass_s": time.perf_counter() - t, **{k: v for k, v in acc.items() if k not in ("kind", "t", "h")}})
    return {"prompts": len(prompts), "batch_size": g.batch_size, "max_new_tokens": g.max_new_tokens, "passes": passes}


def drop(args) -> dict:
    """Passes with DROP_AFTER at each value, alternately (lazy-drop.patch); every pass's tokens equal the first's."""
    import ctrldial.greedy as greedy
    from ctrldial.generate import generate_ids

    if not hasattr(greedy, "DROP_AFTER"):
        raise SystemExit("drop: apply benchmarks/speed/probes/lazy-drop.patch first (git apply)")
    m, prompts, g = _quick_model(args.data)
    model = m.model.eval()
    values = (0.0, 0.5, 1.0, 2.0, 1e9)
    ref = generate_ids(model, prompts, g, m.eos_id, m.pad_id)
    seconds: dict[float, list[float]] = {v: [] for v in values}
    for _ in range(args.passes):
        for v in values:
            greedy.DROP_AFTER = v
            t = time.perf_counter()
            assert generate_ids(model, prompts, g, m.eos_id, m.pad_id) == ref
            seconds[v].append(time.perf_counter() - t)
    base = statistics.median(seconds[0.0])
    return {"drop_after": [{"value": v, "seconds": s, "speed_vs_immediate": base / statistics.median(s)} for v, s in seconds.items()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=["products", "attention", "phases", "drop"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", default="../shared/data/dailydialog")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"products": products, "attention": attention, "phases": phases, "drop": drop}[args.probe](args)
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    result["machine"] = {"cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))), "threads": args.threads,
                         "load_average": os.getloadavg(), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1)[:3000])


if __name__ == "__main__":
    main()
