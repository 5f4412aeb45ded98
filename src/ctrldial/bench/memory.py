"""Memory and parameters per method: one fresh subprocess per method, so one method's peak never hides another's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ctrldial.bench.options import bench_splits, method_model
from ctrldial.config import Config, load_config_dict
from ctrldial.errors import UserError
from ctrldial.pipeline import make_accelerator, train_method
from ctrldial.train import collate, token_losses

PROBE = "PROBE "  # the line of the subprocess's stdout that carries its result


def memory_probe(cfg_dict: dict[str, Any], steps: int, threads: int) -> dict[str, Any]:
    """In a fresh process: build the method, count parameters, run ``steps`` training steps, read peak RSS."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config_dict(cfg_dict)
    cfg.train.max_steps = steps
    splits = bench_splits(cfg)
    m = method_model(cfg, torch.device("cpu"), len(splits.train))
    loaded_mb = _status_mb("VmRSS")
    counts = m.param_counts()
    enc, _ = m.encode(splits.train)
    if m.method.trains:
        train_method(m, enc, [], make_accelerator(cfg, None))
    else:  # zero-shot only evaluates: forward passes without gradients
        size = cfg.train.batch_size
        with torch.inference_mode():
            for s in range(steps):
                token_losses(m.model, collate(enc[s * size : (s + 1) * size], m.pad_id))
    # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss starts from the parent's resident size
    peak = _status_mb("VmHWM")
    return {**counts, "rss_after_load_mb": loaded_mb, "peak_rss_mb": peak, "steps": steps if m.method.trains else 0}


def probe_main(arg: str) -> None:
    """``python -m ctrldial.bench probe JSON``: one probe, its result on one stdout line."""
    spec = json.loads(arg)
    res = memory_probe(spec["config"], spec["steps"], spec["threads"])
    print(PROBE + json.dumps(res), flush=True)


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
        lines = [l for l in stdout.splitlines() if l.startswith(PROBE)]
        if proc.returncode != 0 or not lines:
            results[name] = {"error": (stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            results[name] = json.loads(lines[-1][len(PROBE) :])
    return results
