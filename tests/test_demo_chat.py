"""Shipped configs, the demo's sweep, and `ctrldial chat` (its conversation logic and a real run on piped stdin)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml

from ctrldial.chat import Conversation, chat
from ctrldial.config import build_config
from ctrldial.demo import DEMO_SWEEP
from ctrldial.sweepspec import expand, load_sweep, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


# -- shipped configs ----------------------------------------------------------------------------------
def test_configs_are_shipped():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    assert {"sweeps/dailydialog-dialogpt.yaml", "sweeps/offline-smollm2.yaml", "sweeps/demo.yaml", "runs/lora-smollm2.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_shipped_config_parses(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and "ctrldial" in first, "a config starts with the command line that uses it"
    if "sweeps" in path.parts:
        points = expand(load_sweep(path))  # every point's Config is built and validated
        assert points and len({p.name for p in points}) == len(points)
    else:
        build_config([path])


def test_dialogpt_sweep_has_the_planned_points():
    points = expand(load_sweep(ROOT / "configs/sweeps/dailydialog-dialogpt.yaml"))
    combos = {(p.cfg.model.name, p.cfg.method.name) for p in points}
    for model in ("dialogpt-small", "dialogpt-medium", "dialogpt-large"):
        assert {(model, m) for m in ("zero_shot", "full", "prefix", "prompt", "p_tuning", "lora", "ia3")} <= combos
    assert {m for m, meth in combos if meth == "qlora"} == {"dialogpt-large"}
    assert {(p.cfg.data.label_position, p.cfg.data.separator) for p in points} == {
        ("first", "eos"), ("first", "\\n"), ("before_response", "eos"), ("before_response", "\\n")}
    assert all(p.cfg.data.max_context_turns == 4 and p.cfg.method.num_virtual_tokens == 30 and p.cfg.train.patience == 5 for p in points)


def test_demo_sweep_is_the_shipped_demo_yaml():
    code, shipped = spec_from_dict(DEMO_SWEEP, "code"), load_sweep(ROOT / "configs/sweeps/demo.yaml")
    for attr in ("name", "base", "grids", "points", "train_classifier", "classifier_set", "launcher"):
        assert getattr(code, attr) == getattr(shipped, attr), attr
    points = expand(code)
    assert {p.cfg.method.name for p in points} == {"zero_shot", "lora", "prefix", "prompt"}
    assert all(p.cfg.model.name == "smollm2-135m" and p.cfg.data.path == "sample" for p in points)
    assert [p.cfg.data.template for p in points if p.cfg.method.name == "zero_shot"] == ["chat"]


# -- chat ---------------------------------------------------------------------------------------------
def echo_conversation(max_turns: int = 2) -> tuple[Conversation, list]:
    seen: list = []

    def reply(context, act):
        seen.append((context, act))
        return f"<{act}>"

    return Conversation(["inform", "question", "directive"], max_turns, reply), seen


def test_conversation_commands_and_history():
    conv, seen = echo_conversation(max_turns=2)
    assert conv.prompt == "[inform] you> "
    assert conv.handle("hi") == "[inform] bot> <inform>"
    assert conv.handle("/acts") == "acts: inform (current), question, directive"
    assert conv.handle("/act question") == "(act: question)" and conv.prompt == "[question] you> "
    assert conv.handle("/act shout").startswith("unknown act 'shout'")
    assert conv.handle("how are you") == "[question] bot> <question>"
    assert seen[-1] == (("<inform>", "how are you"), "question")  # at most max_turns turns of context
    assert conv.handle("/act directive close the door") == "[directive] bot> <directive>"
    assert seen[-1] == (("<question>", "close the door"), "directive")
    assert conv.handle("/reset") == "(history cleared)" and conv.history == []
    assert conv.handle("/nope").startswith("unknown command /nope")
    assert conv.handle("   ") is None
    conv.handle("/quit")
    assert conv.done


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from ctrldial.pipeline import run

    dd = Path(__file__).parent / "fixtures" / "dd"
    out = tmp_path_factory.mktemp("chat") / "lora"
    cfg = build_config(overrides=[f"data.path={dd}", "model.name=tiny-gpt2", "method.name=lora", "train.max_steps=2",
                                  "train.tracker=none", "train.mixed_precision=no", "data.max_eval_examples=2",
                                  "generate.max_new_tokens=4", "data.max_context_turns=2", "eval.sanity_prompts=0"])
    run(cfg, out)
    return out


def test_chat_on_piped_stdin(trained_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\n/act question\nwhere is it?\n/acts\n/quit\nnot answered\n"))
    chat(trained_run, overrides=["generate.max_new_tokens=3"])
    out = capsys.readouterr().out
    assert out.count("bot> ") == 2
    assert "[inform] bot> " in out and "[question] bot> " in out
    assert "acts: inform, question (current), directive, commissive" in out
    assert "not answered" not in out


def test_chat_ends_at_end_of_input(trained_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("/act commissive\nsure?"))
    chat(trained_run)
    assert capsys.readouterr().out.count("[commissive] bot> ") == 1


def test_demo_config_files_and_overrides_reach_every_point(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"train": {"max_steps": 7}}))
    points = expand(spec_from_dict(DEMO_SWEEP, "demo"), ["data.path=/data/dd"], [extra])
    assert {(p.cfg.train.max_steps, p.cfg.data.path) for p in points} == {(7, "/data/dd")}


@pytest.mark.slow
def test_demo_end_to_end_on_the_tiny_model(tmp_path, capsys):
    """The demo's wiring at test size; zero-shot fails here (tiny-gpt2 has no chat template) and is reported."""
    from ctrldial.demo import demo
    from ctrldial.errors import UserError
    from ctrldial.models import resolve_model

    dd = Path(__file__).parent / "fixtures" / "dd"
    overrides = [f"data.path={dd}", "model.name=tiny-gpt2", "train.max_steps=2", "train.mixed_precision=no",
                 "data.max_eval_examples=2", "generate.max_new_tokens=4", f"classifier.model={resolve_model('tiny-gpt2')}",
                 "classifier.max_steps=2", "classifier.max_length=32"]
    with pytest.raises(UserError, match="method=zero_shot,template=chat"):
        demo(tmp_path / "demo", [], overrides)
    out = capsys.readouterr().out
    assert "report: " in out and (tmp_path / "demo" / "report" / "report.html").is_file()
    assert "3 run(s), 0 reused, 1 failed" in out
