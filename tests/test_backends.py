"""`ctrldial sweep --backend ray|slurm`: points as Ray tasks (2 at a time on a 2-CPU cluster the test starts), a killed
worker retried from a clean folder, submitit's local executor running a job array; settings and dry runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_sweep import fast_base, write_sweep

from ctrldial.backends import make_dispatcher
from ctrldial.backends.slurm import minutes
from ctrldial.errors import UserError
from ctrldial.sweep import run_sweep, sweep
from ctrldial.sweepspec import expand, load_sweep, spec_from_dict

FIXTURES = Path(__file__).parent / "fixtures"


def judged_base(dd: Path) -> dict:
    """fast_base plus a 2-step tiny-GPT-2 judge: trained once, before any point is dispatched."""
    from ctrldial.models import resolve_model

    base = fast_base(dd)
    base["classifier"] = {"model": resolve_model("tiny-gpt2"), "max_steps": 2, "eval_every": 2, "batch_size": 8, "max_length": 32}
    return base


def records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/record.json")}


def spans(out: Path) -> dict[str, tuple[datetime, datetime]]:
    rows = json.loads((out / "sweep.json").read_text())["points"]
    parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z")  # noqa: E731
    return {r["name"]: (parse(r["started"]), parse(r["finished"])) for r in rows if "started" in r}


# -- settings, dry runs (no cluster) ----------------------------------------------------------------------------
def test_resources_come_from_the_file_then_the_grid_or_point(dd_dir):
    spec = spec_from_dict({"base": fast_base(dd_dir), "resources": {"cpus": 2},
                           "grids": [{"method.name": ["lora", "prompt"], "resources": {"gpus": 2}}],
                           "points": [{"method.name": "ia3", "resources": {"cpus": 4}}]}, "t.yaml")
    assert {p.name: p.resources for p in expand(spec)} == {
        "method=lora": {"cpus": 2, "gpus": 2}, "method=prompt": {"cpus": 2, "gpus": 2}, "method=ia3": {"cpus": 4}}
    for tree, needle in [({"resources": {"gpu": 1}}, "unknown key"), ({"resources": {"gpus": 1.5}}, "whole number"),
                         ({"slurm": {"partion": "gpu"}}, "partition"), ({"ray": {"adress": "auto"}}, "address")]:
        with pytest.raises(UserError, match=needle):
            spec_from_dict({"base": fast_base(dd_dir), **tree}, "t.yaml")


def test_slurm_times_and_backend_flags():
    assert [minutes(v) for v in (90, "30:00", "4:00:00", "1-12", "1-00:30:00")] == [90, 30, 240, 2160, 1470]
    with pytest.raises(UserError, match="H:MM:SS"):
        minutes("four hours")
    with pytest.raises(UserError, match="--slurm applies only with --backend slurm"):
        make_dispatcher("ray", slurm=["partition=gpu"])
    with pytest.raises(UserError, match="--ray-address applies only"):
        make_dispatcher("local", ray_address="auto")
    assert make_dispatcher("local") is None


def test_dry_runs_say_what_would_be_dispatched_or_submitted(tmp_path, dd_dir, capsys):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "classifier": {"train": False},
                                          "grids": [{"method.name": ["lora"]}, {"method.name": ["full"], "resources": {"gpus": 4, "cpus": 8}}],
                                          "slurm": {"partition": "gpu", "time": "2:00:00", "array_parallelism": 8}})
    sweep(f, tmp_path / "out", dry_run=True, dispatch=make_dispatcher("ray", max_retries=2))
    text = capsys.readouterr().out
    assert "max_retries=2" in text and "method=full: cpus=8 gpus=4: " in text
    assert "accelerate.commands.launch --multi_gpu --num_processes 4" in text  # a multi-GPU point is one accelerate launch
    sweep(f, tmp_path / "out", dry_run=True, dispatch=make_dispatcher("slurm", slurm=["time=30"]))
    text = capsys.readouterr().out
    assert "a job array of 1 task(s): partition=gpu, gpus_per_node=0, cpus_per_task=1, time=30 min, array_parallelism=8" in text
    assert "gpus_per_node=4, cpus_per_task=8" in text  # another kind of point: its own array
    assert not (tmp_path / "out").exists()


# -- Ray: a 2-CPU cluster started by the test -----------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_runs_points_two_at_a_time_and_skips_them_after(ray_cluster, tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {"base": judged_base(dd_dir), "grid": {"method.name": ["lora", "prompt"], "train.seed": [0, 1]},
                                          "resources": {"cpus": 1}})
    out = tmp_path / "out"
    summary = run_sweep(load_sweep(f), out, dispatch=make_dispatcher("ray"))
    recs = records(out)
    assert len(summary.ran) == 4 and not summary.failed
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    assert {r["config"]["classifier"]["path"] for r in recs.values()} == {str((out / "classifier").resolve())}  # one judge, shared
    assert all(r["metrics"]["control_accuracy"] is not None for r in recs.values())
    times = spans(out)
    assert len(times) == 4
    overlapping = [(a, b) for a in times for b in times if a < b and times[a][0] < times[b][1] and times[b][0] < times[a][1]]
    assert overlapping, f"no two points ran at the same time: {times}"
    again = run_sweep(load_sweep(f), out, dispatch=make_dispatcher("ray"))
    assert sorted(again.skipped) == sorted(recs) and not again.ran
    assert spans(out) == times  # the skipped points keep their times in sweep.json


def test_ray_retries_a_point_whose_worker_was_killed(ray_cluster, tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "classifier": {"train": False},
                                          "points": [{"method.name": "prompt", "train.max_steps": 40, "train.eval_every": 40},
                                                     {"method.name": "lora"}]})
    out = tmp_path / "out"
    victim = "eval_every=40,max_steps=40,method=prompt"
    log, record = out / ".logs" / f"{victim}.log", out / victim / "record.json"
    result: dict = {}
    driver = threading.Thread(target=lambda: result.update(s=run_sweep(load_sweep(f), out, dispatch=make_dispatcher("ray"))))
    driver.start()
    deadline, pid = time.time() + 180, None
    while time.time() < deadline and driver.is_alive():
        try:
            if json.loads(record.read_text())["status"] == "running":  # the run is under way in its own process
                pid = int(re.search(r"worker pid (\d+)", log.read_text()).group(1))
                break
        except (OSError, ValueError, KeyError, AttributeError):
            pass
        time.sleep(0.1)
    assert pid, f"never saw {victim} running"
    os.kill(pid, signal.SIGKILL)
    driver.join(900)  # about 40 s on an idle 2-core machine; generous for a loaded one
    assert not driver.is_alive()
    recs = records(out)
    assert {n: r["status"] for n, r in recs.items()} == {victim: "ok", "method=lora": "ok"}
    assert not result["s"].failed
    assert len(re.findall(r"worker pid (\d+)", log.read_text())) == 2  # the first attempt, then the retry in a new worker
    assert int(re.findall(r"worker pid (\d+)", log.read_text())[1]) != pid


def test_ray_refuses_points_larger_than_a_local_cluster(ray_cluster, tmp_path, dd_dir):
    f = write_sweep(tmp_path / "s.yaml", {"base": fast_base(dd_dir), "classifier": {"train": False}, "resources": {"gpus": 1}})
    with pytest.raises(UserError, match="ask for more"):
        run_sweep(load_sweep(f), tmp_path / "out", dispatch=make_dispatcher("ray"))


# -- Slurm through submitit's local executor ------------------------------------------------------------------
def test_submitit_local_executor_runs_the_points_as_a_job_array(tmp_path, dd_dir):
    pytest.importorskip("submitit")
    f = write_sweep(tmp_path / "s.yaml", {"base": judged_base(dd_dir), "grid": {"method.name": ["lora", "zero_shot"]},
                                          "slurm": {"cluster": "local", "time": 10}})
    out = tmp_path / "out"
    summary = run_sweep(load_sweep(f), out, dispatch=make_dispatcher("slurm"))
    assert sorted(summary.ran) == ["method=lora", "method=zero_shot"] and not summary.failed
    assert all(r["status"] == "ok" and r["metrics"]["control_accuracy"] is not None for r in records(out).values())
    jobs = json.loads((out / ".slurm" / "jobs.json").read_text())
    assert sorted(jobs) == ["method=lora", "method=zero_shot"]
    again = run_sweep(load_sweep(f), out, dispatch=make_dispatcher("slurm"))  # nothing unfinished: nothing submitted
    assert sorted(again.skipped) == ["method=lora", "method=zero_shot"]
    assert json.loads((out / ".slurm" / "jobs.json").read_text()) == jobs


# -- the command itself ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_ray_sweep_on_sample_then_report(tmp_path):
    pytest.importorskip("ray")
    base = {**fast_base(FIXTURES / "dd"), "data": {"path": "sample", "max_eval_examples": 2, "max_valid_examples": 4}}
    base["classifier"] = {"max_steps": 2, "eval_every": 2, "batch_size": 8, "max_length": 32}
    f = write_sweep(tmp_path / "s.yaml", {"name": "tiny", "base": base, "grid": {"method.name": ["lora", "prompt"], "train.seed": [0, 1]}})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ctrldial", "sweep", str(f), "--out", str(out), "--backend", "ray"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 ran ok" in first.stdout and all(r["status"] == "ok" for r in records(out).values()) and len(records(out)) == 4
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "0 ran ok, 4 skipped" in second.stdout
    rep = subprocess.run([sys.executable, "-m", "ctrldial", "report", str(out)], capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0 and (out / "report" / "report.html").is_file()
