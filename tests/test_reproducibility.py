"""Same config and seed on CPU → identical metrics; the record traces a result to its inputs."""

import json

from ctrldial.config import build_config
from ctrldial.pipeline import run


def _cfg(dd_dir, seed):
    return build_config(None, [
        "model.name=tiny-gpt2", f"data.path={dd_dir}", "method.name=lora", "train.max_steps=6", "train.eval_every=3",
        "train.tracker=none", "data.max_eval_examples=3", "generate.max_new_tokens=6", "train.lr=0.05",
        f"train.seed={seed}", "data.max_train_examples=30",
    ])


def test_same_seed_same_metrics(tmp_path, dd_dir):
    a = run(_cfg(dd_dir, 0), tmp_path / "a")
    b = run(_cfg(dd_dir, 0), tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    assert (tmp_path / "a" / "generations.jsonl").read_text() == (tmp_path / "b" / "generations.jsonl").read_text()
    assert a["train"]["history"] == b["train"]["history"]
    c = run(_cfg(dd_dir, 1), tmp_path / "c")
    assert c["train"]["history"] != a["train"]["history"]  # the seed matters


def test_record_traces_its_inputs(tmp_path, dd_dir):
    rec = run(_cfg(dd_dir, 0), tmp_path / "r")
    on_disk = json.loads((tmp_path / "r" / "record.json").read_text())
    for key in ("status", "config", "config_hash", "metrics", "cost", "packages", "git", "data", "sanity"):
        assert key in on_disk
    assert on_disk["config"]["method"]["name"] == "lora"
    assert on_disk["packages"]["transformers"].startswith("5.23")
    assert len(on_disk["data"]["train_fingerprint"]) == 16 and on_disk["config_hash"] == rec["config_hash"]
    for k in ("control_accuracy", "control_accuracy_gold", "per_label_accuracy", "bleu", "distinct_1", "distinct_2",
              "perplexity", "empty_rate", "mean_length"):
        assert k in on_disk["metrics"]
    for k in ("trainable_params", "total_params", "train_seconds", "train_tokens_per_second", "generate_seconds", "peak_memory_mb"):
        assert k in on_disk["cost"]
