"""Smoke test of `ctrldial bench` on tiny models: it runs, writes bench.json, reports positive ratios.

No timing thresholds here: speed is measured by the benchmark itself (benchmarks/speed/).
"""

import json
import os
from pathlib import Path

import pytest

from ctrldial.bench import bench, bench_config, format_table
from ctrldial.errors import UserError
from ctrldial.models import resolve_encoder


@pytest.fixture
def tiny_encoder(tmp_path):
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer: a classifier base that trains in a second."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(resolve_encoder("minilm-l6"))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    folder = tmp_path / "tiny-bert"
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_bench_smoke(tmp_path, dd_dir, tiny_encoder):
    out = tmp_path / "bench"
    result = bench(quick=True, out=out, overrides=[
        "model.name=tiny-gpt2", f"data.path={dd_dir}", "train.max_steps=3", "train.batch_size=2",
        "data.max_eval_examples=2", "generate.max_new_tokens=4", f"classifier.model={tiny_encoder}",
        "classifier.max_steps=2", "bench.score_texts=16", "bench.methods=lora", "bench.threads=1", "bench.variants=true", "bench.repeats=3",
    ])
    on_disk = json.loads((out / "bench.json").read_text())
    for key in ("train_speedup", "train_speedup_auto", "generate_speedup", "score_speedup", "guidance_overhead"):
        assert isinstance(on_disk[key], float) and on_disk[key] > 0, key
        q = on_disk["ratios"][key]  # the median over side-by-side pairs of runs, with min and max
        assert q["median"] == on_disk[key] and q["min"] <= q["median"] <= q["max"] and len(q["runs"]) == 3, key
    assert isinstance(on_disk["cpu_bf16"], bool)
    tr = on_disk["train"]
    assert tr["precision"]["ctrldial"] == tr["precision"]["hf_trainer"] == "fp32"  # like with like
    assert ("ctrldial_auto" in tr) == on_disk["cpu_bf16"]  # ctrldial's default precision, where it differs
    assert tr["ctrldial"]["packed"] and tr["ctrldial"]["padding_share"] < tr["hf_trainer"]["padding_share"]
    assert tr["ctrldial"]["runs"][0] / tr["hf_trainer"]["runs"][0] == on_disk["ratios"]["train_speedup"]["runs"][0]
    assert 0 <= on_disk["generate_identical_share"] <= 1
    assert on_disk["train"]["ctrldial"]["tokens_per_s"] > 0 and on_disk["train"]["hf_trainer"]["tokens_per_s"] > 0
    assert on_disk["train"]["examples"] == 3 * 2  # exactly steps × batch: each loop sees every example once
    assert on_disk["generate"]["prompts"] == 2 * 4 and on_disk["generate"]["greedy_loop"]
    assert set(on_disk["generate"]["variants"]) == {"hf_generate_batched", "ctrldial_bf16_autocast"}
    assert on_disk["score"]["texts"] == 16 and on_disk["score"]["trained_here"]
    lora = on_disk["memory"]["lora"]
    assert 0 < lora["trainable_params"] < lora["total_params"] and lora["peak_rss_mb"] >= lora["rss_after_load_mb"] > 0
    assert {"environment", "packages", "config", "wall_seconds"} <= set(on_disk)
    assert result["train_speedup"] == on_disk["train_speedup"]
    g = on_disk["generate"]["guidance"]
    pairs = sorted(u / v for u, v in zip(g["unguided"]["runs"], g["guided"]["runs"]))  # guided s / unguided s, run by run
    assert g["guidance_overhead"] == pairs[1]
    # head, 3 parts (+ training at the default precision), 2 variants, guidance; the machine line; head and 1
    # method of the memory table
    train_rows = 2 if on_disk["cpu_bf16"] else 1
    assert len(format_table(on_disk).splitlines()) == (2 + train_rows + 2 + 2 + 1) + 2 + 2 + 1 + (2 + 1)
    lim = on_disk["generate"]["limit"]  # the compute-bound limit beside the measurement
    assert lim["limit_responses_per_s"] > 0 and 0 < lim["share_of_limit"] <= lim["share_of_decode_shaped_limit"] * 50


def test_committed_bench_files_still_format():
    """The committed benchmarks/speed/*/bench.json files stay readable by format_table."""
    files = sorted((Path(__file__).resolve().parents[1] / "benchmarks/speed").glob("*/bench.json"))
    assert files
    for f in files:
        table = format_table(json.loads(f.read_text()))
        assert "| training (non-pad tokens/s)" in table and "| lora |" in table, f


def test_memory_probe_runs_as_a_module(tmp_path, dd_dir):
    """`python -m ctrldial.bench probe JSON` (the memory subprocess) prints one PROBE line."""
    import subprocess
    import sys

    cfg, _ = bench_config(True, ["model.name=tiny-gpt2", f"data.path={dd_dir}", "train.batch_size=2"])
    spec = {"config": cfg.to_dict() | {"method": {**cfg.to_dict()["method"], "name": "zero_shot"}}, "steps": 1, "threads": 1}
    res = subprocess.run([sys.executable, "-m", "ctrldial.bench", "probe", json.dumps(spec)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    probe = json.loads([l for l in res.stdout.splitlines() if l.startswith("PROBE ")][-1][len("PROBE "):])
    assert probe["trainable_params"] == 0 and probe["steps"] == 0 and probe["peak_rss_mb"] > 0
    usage = subprocess.run([sys.executable, "-m", "ctrldial.bench"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 1 and "usage: python -m ctrldial.bench probe JSON" in usage.stderr


def test_bench_options_are_checked():
    cfg, opts = bench_config(True, ["bench.methods=lora,ia3", "bench.repeats=2", "train.batch_size=4"])
    assert opts["methods"] == ["lora", "ia3"] and opts["repeats"] == 2 and cfg.train.batch_size == 4
    with pytest.raises(UserError, match="bench.repeat"):
        bench_config(True, ["bench.repeat=2"])
    with pytest.raises(UserError, match="expected int"):
        bench_config(True, ["bench.repeats=two"])
    with pytest.raises(UserError, match="unknown key"):
        bench_config(True, ["train.no_such_key=1"])


def test_gpu_script_smoke(tmp_path):
    """The prepared GPU script runs end to end (tiny shape, CPU here) and writes what its README promises."""
    import subprocess
    import sys

    out = tmp_path / "gpu.json"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "benchmarks/gpu/gpu_bench.py"), "--smoke", "--out", str(out)], check=True,
                   capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    r = json.loads(out.read_text())
    assert r["full"]["tokens_per_s"] > 0 and r["lora"]["tokens_per_s"] > 0
    assert r["lora"]["model_flops_per_token"] < r["full"]["model_flops_per_token"]  # no frozen-weight gradients
    assert "skipped" in r["qlora"] or r["qlora"]["peak_memory_mb"] > 0


def test_generation_limit_counts_shared_prefixes_once_and_only_matrix_weights():
    from ctrldial.bench.limit import distinct_prefix_tokens, matmul_params
    from ctrldial.config import ModelConfig
    from ctrldial.models import load_model

    assert distinct_prefix_tokens([[1, 2, 3], [1, 2, 4], [5], [1, 2, 3]]) == 5  # 1 2 3, 4 after 1 2, 5
    model = load_model(ModelConfig(name="tiny-gpt2"))
    c = model.config
    # per layer: qkv (d × 3d), attention output (d × d), MLP (d × inner, inner × d); then the tied vocabulary
    # projection (counted, though it is the embedding table); the position table is not
    d = c.n_embd
    assert matmul_params(model) == c.n_layer * (4 * d * d + 2 * d * c.n_inner) + c.vocab_size * d
