"""Where padding-free training's speed comes from: forward + backward of one LoRA model on the bench's sample,
batched six ways, fp32, alternating (A B C … A B C …), median of the repeats.

    python benchmarks/speed/packing.py --data ../shared/data/dailydialog --out benchmarks/speed/results/packing.json

The batch contents are the loop's own (ctrldial's sampler, seed 0, batch 8); only their layout and the logits
computed differ: padded with every position's logits (the loop before packing), padded with logits only where a
target is predicted, packed in one row, packed in rows of at most 128 or 256 tokens, and the same for random
(not length-grouped) batches, the Hugging Face baseline's batching.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from ctrldial.batching import length_grouped_batches
from ctrldial.bench.options import bench_config, bench_splits, method_model
from ctrldial.data.template import IGNORE
from ctrldial.record import environment, git_state, write_json
from ctrldial.train import collate, cpu_has_bf16, pack, token_losses


def padded_target_logits(model, batch):
    """A padded batch with logits only at positions that predict a target (what packing does), for comparison."""
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, use_cache=False)
    targets = labels[:, 1:][keep[:, :-1]]
    return torch.nn.functional.cross_entropy(out.logits.float(), targets, reduction="sum"), targets.numel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cfg, _ = bench_config(True, [f"data.path={a.data}", f"train.max_steps={a.examples // 8}"])
    m = method_model(cfg, torch.device("cpu"), a.examples)
    enc, _ = m.encode(bench_splits(cfg).train)
    lengths = [len(e.input_ids) for e in enc]
    grouped = length_grouped_batches(lengths, 8, 0, True)
    shuffled = length_grouped_batches(lengths, 8, 0, False)
    layouts = {
        "grouped, padded, all logits": (grouped, lambda ex: collate(ex, m.pad_id), token_losses),
        "grouped, padded, target logits": (grouped, lambda ex: collate(ex, m.pad_id), padded_target_logits),
        "grouped, packed, one row": (grouped, lambda ex: pack(ex, m.pad_id, 10**6), token_losses),
        "grouped, packed, rows <= 128": (grouped, lambda ex: pack(ex, m.pad_id, 128), token_losses),
        "grouped, packed, rows <= 256": (grouped, lambda ex: pack(ex, m.pad_id, 256), token_losses),
        "random, padded, all logits": (shuffled, lambda ex: collate(ex, m.pad_id), token_losses),
        "random, packed, rows <= 128": (shuffled, lambda ex: pack(ex, m.pad_id, 128), token_losses),
    }
    model = m.model.train()
    rates: dict[str, list[float]] = {k: [] for k in layouts}
    padding: dict[str, float] = {}
    for _ in range(a.repeats):
        for name, (batches, make, loss_fn) in layouts.items():
            seconds, computed = 0.0, 0
            for b in batches:
                batch = make([enc[i] for i in b])
                computed += batch["input_ids"].numel()
                t = time.perf_counter()
                s, n = loss_fn(model, batch)
                (s / n).backward()
                seconds += time.perf_counter() - t
                model.zero_grad(set_to_none=True)
            rates[name].append(sum(lengths) / seconds)
            padding[name] = 1 - sum(lengths) / computed
    targets = sum(sum(t != IGNORE for t in e.labels[1:]) for e in enc)
    result = {
        "command": "python benchmarks/speed/packing.py --data DATA --out OUT", "examples": len(enc),
        "mean_length": sum(lengths) / len(lengths), "target_share": targets / sum(lengths), "repeats": a.repeats,
        "layouts": {k: {"tokens_per_s": statistics.median(v), "runs": v, "padding_share": padding[k]} for k, v in rates.items()},
        "environment": {**environment(), "cpu_bf16": cpu_has_bf16(), "load_average": os.getloadavg()}, "git": git_state(),
    }
    write_json(a.out, result)
    print("| batches | tokens/s (fp32, forward + backward) | padding computed |\n|---|---:|---:|")
    for k, v in result["layouts"].items():
        print(f"| {k} | {v['tokens_per_s']:.0f} | {100 * v['padding_share']:.0f}% |")


if __name__ == "__main__":
    main()
