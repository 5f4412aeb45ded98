"""Data-parallel training on CPU: two torchrun ranks joined by accelerate (gloo)."""

import json
import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_ranks_one_record(tmp_path, dd_dir):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ctrldial", "run", "--out", str(out),
        "--set", "model.name=tiny-gpt2", "--set", f"data.path={dd_dir}", "--set", "method.name=lora",
        "--set", "train.max_steps=4", "--set", "train.eval_every=2", "--set", "train.batch_size=2",
        "--set", "data.max_eval_examples=2", "--set", "train.tracker=none", "--set", "generate.max_new_tokens=4",
        "--set", "train.mixed_precision=no", "--set", "train.lr=0.01",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".json") == ["record.json"]  # one record
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "ok" and rec["cost"]["processes"] == 2
    digests, sums = rec["train"]["rank_batch_digests"], rec["train"]["rank_weight_checksums"]
    assert len(digests) == 2 and digests[0] != digests[1]  # each rank trained on its own batches
    assert sums[0] == pytest.approx(sums[1], rel=0, abs=1e-9)  # synchronised gradients: identical weights
    assert len((out / "generations.jsonl").read_text().splitlines()) == 2 * 4
