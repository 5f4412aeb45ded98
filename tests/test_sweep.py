"""`ctrldial sweep`: grid expansion and names, validation before anything runs, skip/resume/failure, --only, dry runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ctrldial.config import build_config
from ctrldial.errors import UserError
from ctrldial.naming import format_value
from ctrldial.sweep import launch_command, lock, run_sweep, select, sweep
from ctrldial.sweepspec import expand, load_sweep, spec_from_dict

FIXTURES = Path(__file__).parent / "fixtures"


def fast_base(dd: Path) -> dict:
    """A run of a few seconds: tiny random GPT-2, fixture dialogues, 2 steps, 2 test contexts, 4 new tokens."""
    return {
        "data": {"path": str(dd), "max_eval_examples": 2, "max_valid_examples": 4},
        "model": {"name": "tiny-gpt2"},
        "train": {"max_steps": 2, "eval_every": 2, "batch_size": 4, "tracker": "none", "mixed_precision": "no"},
        "generate": {"max_new_tokens": 4},
        "eval": {"sanity_prompts": 2},
    }


def write_sweep(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (folder / "record.json", folder / "generations.jsonl") if p.is_file()}


# -- expansion and names (no runs) --------------------------------------------------------------------
def test_grid_expands_to_the_cartesian_product_with_short_unique_names(dd_dir):
    spec = spec_from_dict(
        {
            "base": fast_base(dd_dir),
            "grids": [
                {"model.name": ["tiny-gpt2", "org/Some-Model"], "method.name": ["lora", "prefix"], "train.seed": [0, 1]},
                {"method.name": ["lora"], "data.separator": ["eos", "\\n"], "data.seed": [0, 1]},
            ],
            "points": [{"method.name": "lora", "model.name": "tiny-gpt2", "train.seed": 0}],  # a duplicate: runs once
        },
        "test.yaml",
    )
    points = expand(spec)
    names = [p.name for p in points]
    assert len(points) == 8 + 3  # 2×2×2, then 1×2×2 minus the one equal to the base (eos, seed 0); the point is a duplicate
    assert len(set(names)) == len(names)
    assert names[0] == "method=lora,model=tiny-gpt2,train.seed=0"  # seed keys clash when shortened: full keys
    assert "method=prefix,model=Some-Model,train.seed=1" in names  # a Hub id is named by its last part
    assert "data.seed=1,method=lora,separator=newline" in names
    assert [p.name for p in expand(spec)] == names  # deterministic
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,=+-_") for n in names)


def test_format_value_is_filesystem_safe():
    assert format_value(["q_proj", "v_proj"]) == "q_proj+v_proj"
    assert format_value(1e-4) == "0.0001"
    assert format_value(None) == "none" and format_value(True) == "true"
    assert format_value("/models/my model/") == "my_model"
    assert format_value(" | ") == "_"


def test_only_takes_a_glob_or_a_substring(dd_dir):
    points = expand(spec_from_dict({"base": fast_base(dd_dir), "grid": {"method.name": ["lora", "prefix", "prompt"]}}, "t.yaml"))
    assert [p.name for p in select(points, "pr")] == ["method=prefix", "method=prompt"]
    assert [p.name for p in select(points, "*=p*x")] == ["method=prefix"]
    with pytest.raises(UserError, match="matches none"):
        select(points, "ia3")


def test_bad_keys_anywhere_fail_before_anything_runs(tmp_path, dd_dir):
    points = [{"method.name": "lora"} for _ in range(17)] + [{"method.name": "lora", "train.lrr": 1e-3}]
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "grid": {"method.name": ["lora"], "data.seperator": ["eos"]},
                                          "points": points})
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        sweep(f, tmp_path / "out")
    msg = str(e.value)
    assert "points[17]: train.lrr" in msg and "grid 1: data.seperator" in msg and "valid keys" in msg.lower()
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - started < 10


def test_bad_values_name_their_point_and_nothing_runs(tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "grid": {"method.name": ["lora", "nosuch"]},
                                          "points": [{"train.batch_size": 0}]})
    with pytest.raises(UserError) as e:
        sweep(f, tmp_path / "out", overrides=["train.max_steps=3"])
    assert "grid 1 {method.name=nosuch}" in str(e.value) and "points[0]" in str(e.value) and "batch_size" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_sweep_file_shape_errors_are_one_line(tmp_path):
    for tree, needle in [({"grid": {"method.name": "lora"}}, "non-empty list"), ({"gird": {}}, "unknown top-level"),
                         ({"classifier": {"path": "x"}}, "goes under base")]:
        with pytest.raises(UserError, match=needle):
            load_sweep(write_sweep(tmp_path / "s.yaml", tree))


def test_dry_run_runs_and_trains_nothing(tmp_path, dd_dir, capsys):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "grid": {"method.name": ["lora", "prompt"]}})
    sweep(f, tmp_path / "out", dry_run=True, launcher="python")
    out = capsys.readouterr().out
    assert "run   method=lora  (new)" in out and "to train on first use" in out
    assert "-m ctrldial run --out" in out  # the launch command each point would get
    assert not (tmp_path / "out").exists()


def test_launched_points_rebuild_the_same_config(tmp_path, dd_dir):
    """A launched run reads the point's config back from YAML: its fingerprint must not change, or it never skips."""
    spec = spec_from_dict({"base": fast_base(dd_dir), "grid": {"method.name": ["lora", "prefix"], "data.separator": ["eos", "\\n"]},
                           "points": [{"data.label_words": {"question": "Ask:"}, "train.lr": 1e-4, "method.target_modules": ["c_attn"]}]},
                          "t.yaml")
    for p in expand(spec):
        cmd = launch_command("accelerate launch --multi_gpu", p, tmp_path)
        assert cmd[:6] == ["accelerate", "launch", "--multi_gpu", "-m", "ctrldial", "run"]
        file = Path(cmd[cmd.index("--config") + 1])
        file.parent.mkdir(exist_ok=True)
        file.write_text(yaml.safe_dump(p.cfg.to_dict(), sort_keys=False, allow_unicode=True))  # as _run_point writes it
        assert build_config([file]).fingerprint() == p.cfg.fingerprint()


def test_refuses_to_run_under_a_multi_process_launch(tmp_path, dd_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="launcher"):
        sweep(write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir)}), tmp_path / "out")


def test_a_point_another_sweep_is_running_is_left_to_it(tmp_path, dd_dir, capsys):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "classifier": {"train": False}})
    with lock(tmp_path / "out" / ".locks" / "base.lock") as held:
        assert held is not None
        summary = run_sweep(load_sweep(f), tmp_path / "out")
    assert summary.busy == ["base"] and not summary.ran and not (tmp_path / "out" / "base").exists()
    assert "1 running in another sweep" in capsys.readouterr().out


# -- a real sweep: shared classifier, a failing point, skip on rerun ----------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from ctrldial.models import resolve_model

    dd = FIXTURES / "dd"
    root = tmp_path_factory.mktemp("sweep")
    base = fast_base(dd)
    # the judge: the tiny GPT-2 as a sequence classifier, 2 steps (fast; its accuracy does not matter here)
    base["classifier"] = {"model": resolve_model("tiny-gpt2"), "max_steps": 2, "eval_every": 2, "batch_size": 8, "max_length": 32}
    f = write_sweep(root / "s.yaml", {
        "name": "t",
        "base": base,
        "grids": [
            {"method.name": ["lora"], "data.label_words": [{"nolabel": "x"}]},  # fails at once: the first point
            {"method.name": ["lora", "zero_shot"]},
        ],
    })
    out = root / "out"
    with pytest.raises(UserError, match="1 sweep point"):
        sweep(f, out)
    return f, out


def test_points_share_one_trained_classifier(finished):
    _, out = finished
    assert (out / "classifier" / "ctrldial_classifier.json").is_file()
    for name in ("method=lora", "method=zero_shot"):
        rec = json.loads((out / name / "record.json").read_text())
        assert rec["status"] == "ok"
        assert rec["config"]["classifier"]["path"] == str((out / "classifier").resolve())
        assert rec["metrics"]["control_accuracy"] is not None


def test_a_failed_point_is_recorded_and_the_sweep_goes_on(finished):
    _, out = finished
    failed = json.loads((out / "label_words=nolabel-x,method=lora" / "record.json").read_text())
    assert failed["status"] == "failed" and "nolabel" in failed["error"]
    state = json.loads((out / "sweep.json").read_text())
    assert [(p["name"], p["status"]) for p in state["points"]] == [
        ("label_words=nolabel-x,method=lora", "failed"), ("method=lora", "ok"), ("method=zero_shot", "ok")]


def test_second_invocation_skips_finished_points_byte_for_byte(finished, capsys):
    f, out = finished
    before = {n: snapshot(out / n) for n in ("method=lora", "method=zero_shot")}
    clf = (out / "classifier" / "ctrldial_classifier.json").read_bytes()
    with pytest.raises(UserError):  # the failed point is retried, and fails again
        sweep(f, out)
    assert "0 ran ok, 2 skipped (already done), 1 failed" in capsys.readouterr().out
    assert {n: snapshot(out / n) for n in before} == before
    assert (out / "classifier" / "ctrldial_classifier.json").read_bytes() == clf


def test_changed_config_or_interrupted_record_runs_again(finished, capsys):
    f, out = finished
    sweep(f, out, dry_run=True, only="zero_shot", overrides=["generate.max_new_tokens=3"])
    assert "run   method=zero_shot  (config changed" in capsys.readouterr().out
    summary = run_sweep(load_sweep(f), out, dry_run=True, only="method=lora")
    assert summary.skipped == ["method=lora"]


def test_report_of_a_real_sweep(finished):
    from ctrldial.reporting import report

    _, out = finished
    page = report(out)
    text = page.read_text()
    assert "nolabel" in text and text.count("data:image/png;base64,") >= 2
    assert (out / "report" / "results.csv").read_text().count("\n") == 3  # header + lora + zero_shot


# -- SIGKILL in the middle of a sweep -----------------------------------------------------------------
def test_sigkill_mid_sweep_then_resume(tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {
        "base": fast_base(dd_dir),
        "points": [{"method.name": "lora"}, {"method.name": "prompt", "train.max_steps": 6}],
        "classifier": {"train": False},
    })
    out = tmp_path / "out"
    first, second = out / "method=lora" / "record.json", out / "max_steps=6,method=prompt" / "record.json"
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ctrldial", "sweep", str(f), "--out", str(out)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(first.read_text())["status"] == "ok" and json.loads(second.read_text())["status"] == "running":
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        else:
            pytest.fail(f"never saw point 1 ok with point 2 running: {(tmp_path / 'sweep.log').read_text()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    done = first.read_bytes()
    sweep(f, out)  # the lock died with the killed process; point 1 is skipped, point 2 reruns from scratch
    assert first.read_bytes() == done
    assert json.loads(second.read_text())["status"] == "ok"


@pytest.mark.slow
def test_launcher_runs_each_point_in_its_own_process(tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "grid": {"method.name": ["lora", "prompt"]},
                                          "classifier": {"train": False}, "launcher": sys.executable})
    sweep(f, tmp_path / "out")
    assert all(json.loads((tmp_path / "out" / n / "record.json").read_text())["status"] == "ok" for n in ("method=lora", "method=prompt"))
    summary = run_sweep(load_sweep(f), tmp_path / "out")  # the launched runs' configs hash the same: nothing reruns
    assert summary.skipped == ["method=lora", "method=prompt"] and not summary.ran
