"""The training loop: batching, early stopping with the best weights restored, faults recorded."""

import json

import pytest
import torch

import ctrldial.train as T
from ctrldial.config import build_config
from ctrldial.data.template import IGNORE, Encoded
from ctrldial.errors import UserError
from ctrldial.pipeline import run


def test_length_grouped_batches_cover_everything_once():
    lengths = [5, 50, 6, 49, 7, 48, 8, 47, 9, 46] * 3
    batches = T.length_grouped_batches(lengths, 4, seed=0, group=True)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches if len(b) == 4]
    assert sum(s >= 10 for s in spread) <= 1  # similar lengths share a batch (one batch straddles the two groups)
    assert T.length_grouped_batches(lengths, 4, seed=0, group=True) == batches
    assert T.length_grouped_batches(lengths, 4, seed=1, group=True) != batches


def test_batching_sorts_longest_first_and_shuffles_from_its_seed():
    import random

    from ctrldial.batching import length_sorted_batches, shuffled_batches

    lengths = [3, 9, 3, 1, 9, 5, 3]
    assert length_sorted_batches(lengths, 3) == [[1, 4, 5], [0, 2, 6], [3]]  # equal lengths keep their order
    assert length_sorted_batches([], 3) == []
    assert T.length_grouped_batches(lengths, 2, seed=7, group=True) == shuffled_batches(lengths, 2, random.Random(7))
    plain = T.length_grouped_batches(lengths, 2, seed=7, group=False)
    assert plain == shuffled_batches(lengths, 2, random.Random(7), group_batches=None)
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    # the classifier keeps one rng across epochs and sorts shortest first inside a group
    rng = random.Random(0)
    assert [lengths[i] for i in shuffled_batches(lengths, 7, rng, longest_first=False)[0]] == sorted(lengths)
    assert shuffled_batches(list(range(40)), 4, rng, group_batches=1) != shuffled_batches(list(range(40)), 4, rng, group_batches=1)


def test_train_steps_is_what_the_loop_runs():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from ctrldial.config import TrainConfig

    cfg = TrainConfig(batch_size=8, max_steps=None, epochs=1.0, mixed_precision="no", tracker="none")
    assert T.train_steps(100, cfg, 1) == 13  # 12 full batches and a short one
    assert T.train_steps(100, TrainConfig(batch_size=8, max_steps=None, epochs=2.5, grad_accum=2), 2) == 8  # 13 batches // (2 x 2) = 3 steps an epoch
    assert T.train_steps(100, TrainConfig(batch_size=8, max_steps=None, epochs=1.0, grad_accum=64), 1) == 1
    assert T.train_steps(100, TrainConfig(max_steps=5), 4) == 5

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.out = torch.nn.Embedding(16, 4), torch.nn.Linear(4, 16)

        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": self.out(self.emb(input_ids))})

    AcceleratorState._reset_state(reset_partial_state=True)
    data = [Encoded([1, 2, 3 + i % 5], [IGNORE, 2, 3 + i % 5]) for i in range(100)]
    steps = []
    _, result = T.train(TinyLM(), data, [], cfg, 1e-3, 0, Accelerator(cpu=True, mixed_precision="no"), lambda m, s: steps.append(s))
    assert result.steps == len(steps) == T.train_steps(len(data), cfg, 1)


def test_collate_masks_padding_not_eos():
    eos = 50256
    batch = T.collate([Encoded([1, 2, eos], [IGNORE, 2, eos]), Encoded([3, eos], [IGNORE, eos])], pad_id=eos)
    assert batch["input_ids"].tolist() == [[1, 2, eos], [3, eos, eos]]
    assert batch["labels"].tolist() == [[IGNORE, 2, eos], [IGNORE, eos, IGNORE]]  # the real eos keeps its loss
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def _cfg(dd_dir, *extra):
    return build_config(None, [
        "model.name=tiny-gpt2", f"data.path={dd_dir}", "method.name=lora", "train.tracker=none", "data.max_eval_examples=2",
        "generate.max_new_tokens=4", "train.batch_size=4", "train.lr=0.05", *extra,
    ])


def test_early_stopping_restores_best_weights(tmp_path, dd_dir, monkeypatch):
    seen = []

    def rising_val_loss(model, loader, accelerator):
        seen.append(T.trainable_state(accelerator.unwrap_model(model)))
        return float(len(seen))  # gets worse at every validation after the first

    monkeypatch.setattr(T, "mean_loss", rising_val_loss)
    rec = run(_cfg(dd_dir, "train.max_steps=40", "train.eval_every=2", "train.patience=3"), tmp_path / "r")
    tr = rec["train"]
    assert tr["stopped_early"] and tr["best_step"] == 2 and tr["steps"] == 8  # 1 best + 3 worse evaluations
    # the saved adapter holds the weights of the best validation (step 2), not the last ones
    from peft import PeftModel

    from ctrldial.config import load_config_dict
    from ctrldial.loaded import prepare

    g = prepare(load_config_dict(rec["config"]), torch.device("cpu"))
    loaded = {n: p for n, p in PeftModel.from_pretrained(g.model, str(tmp_path / "r" / "model")).named_parameters() if "lora_" in n}
    assert len(loaded) == len(seen[0]) > 0
    for name, best in seen[0].items():
        assert torch.equal(loaded[name], best), name
    assert any(not torch.equal(seen[0][n], seen[-1][n]) for n in seen[0])  # and training did move on after it


def test_nan_loss_fails_the_run_with_a_hint(tmp_path, dd_dir, monkeypatch, capsys):
    real = T.token_losses
    calls = {"n": 0}

    def poisoned(model, batch):
        s, n = real(model, batch)
        calls["n"] += model.training  # training steps only: validation and the packing check run in eval mode
        return (s * float("nan"), n) if calls["n"] >= 3 and model.training else (s, n)

    monkeypatch.setattr(T, "token_losses", poisoned)
    with pytest.raises(UserError, match=r"loss became nan at step 3: lower train.lr"):
        run(_cfg(dd_dir, "train.max_steps=10", "train.eval_every=2"), tmp_path / "r")
    rec = json.loads((tmp_path / "r" / "record.json").read_text())
    assert rec["status"] == "failed" and rec["failed_step"] == 3 and "train.lr" in rec["error"]
    assert (tmp_path / "r" / "model" / "adapter_config.json").is_file()  # the last good weights are kept


def test_interrupted_run_is_marked_and_can_be_rerun(tmp_path, dd_dir, monkeypatch):
    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("ctrldial.pipeline.train", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(dd_dir, "train.max_steps=2"), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "record.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    assert run(_cfg(dd_dir, "train.max_steps=2"), tmp_path / "r")["status"] == "ok"  # no --overwrite needed


def test_sigterm_marks_the_run_interrupted(tmp_path, dd_dir):
    """A scheduler's SIGTERM (or `kill`) ends a run as Ctrl-C does: exit 130, record `interrupted`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    argv = [sys.executable, "-m", "ctrldial", "run", "--out", str(out), "--set", "model.name=tiny-gpt2", "--set", f"data.path={dd_dir}",
            "--set", "method.name=lora", "--set", "train.tracker=none", "--set", "train.max_steps=100000", "--set", "train.eval_every=100000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads((out / "record.json").read_text())["status"] == "running":
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        time.sleep(1.0)  # inside the training loop
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert json.loads((out / "record.json").read_text())["status"] == "interrupted"


def test_generate_command(tmp_path, dd_dir, capsys):
    from ctrldial.cli import main

    run(_cfg(dd_dir, "train.max_steps=2"), tmp_path / "r")
    capsys.readouterr()
    main(["generate", str(tmp_path / "r"), "--label", "question", "--context", "Hello!", "--context", "Hi, how are you?"])
    out = capsys.readouterr().out
    assert out.endswith("\n") and len(out.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["generate", str(tmp_path / "r"), "--label", "shout", "--context", "Hi"])
    assert "not one of inform, question, directive, commissive" in capsys.readouterr().err
