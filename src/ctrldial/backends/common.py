"""What the cluster backends share: one point as one process on a worker, and its outcome on the driver.

A worker (a Ray task, a Slurm array task) runs ``execute_point``: it waits for the point's run lock, starts
from a clean folder, and runs ``python -m ctrldial run`` (``accelerate launch --num_processes N`` for a point
with N > 1 GPUs) with its output in ``OUT/.logs/NAME.log``. The driver claims the points it dispatches
(the sweep's per-point locks, so parallel sweeps still share points out), trains the judge first, and
``settle``s each finished point: its times in ``sweep.json``, a failed record when it did not end ok.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ctrldial.classifier.scorer import METADATA_FILE
from ctrldial.errors import UserError
from ctrldial.record import read_record
from ctrldial.sweep import LOCKS, TIMING, SweepRun, claim, launch_command, lock, mark_failed, now, write_point_config
from ctrldial.sweepspec import Point

LOGS = ".logs"
DEFAULT_RETRIES = 1

try:  # Linux: a child can ask for a signal when the process that started it dies
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies (PR_SET_PDEATHSIG), so a SIGKILLed worker leaves
    no run writing into the folder its retry is about to clean. SIGTERM ends `ctrldial run` like Ctrl-C."""
    _PRCTL(1, signal.SIGTERM)


def resources(point: Point, default_gpus: int) -> tuple[float, int]:
    """(cpus, gpus) one point asks for: its ``resources:``, else 1 CPU and ``default_gpus``."""
    return float(point.resources.get("cpus", 1)), int(point.resources.get("gpus", default_gpus))


def point_launcher(gpus: int, port: int | str = "PORT") -> str:
    """`python` for one GPU or none; `accelerate launch` over the task's GPUs (CUDA_VISIBLE_DEVICES) for more."""
    python = shlex.quote(sys.executable)
    if gpus <= 1:
        return python
    # an explicit port: two multi-GPU points on one node would both take accelerate's default 29500
    return f"{python} -m accelerate.commands.launch --multi_gpu --num_processes {gpus} --main_process_port {port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def execute_point(point: Point, out: str, gpus: int, cwd: str | None = None) -> dict[str, Any]:
    """Run one point on this worker as its own process; what happened (status, error, started, finished, host, log).

    Runs inside a Ray task or a Slurm array task; ``out`` is on a filesystem the driver sees too."""
    root = Path(out)
    folder, log = root / point.name, root / LOGS / f"{point.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # a retried task waits here until the run its dead worker started has ended (see _end_with_parent)
    with lock(root / LOCKS / f"{point.name}.run.lock", wait=True) as held:
        rec = read_record(folder) or {}
        if rec.get("status") == "ok" and rec.get("config_hash") == point.cfg.fingerprint():
            return {"status": "ok", "reused": True, "host": socket.gethostname()}  # a duplicate submission: already done
        shutil.rmtree(folder, ignore_errors=True)  # a retried or resubmitted point starts from a clean folder
        write_point_config(root, point)
        cmd = launch_command(point_launcher(gpus, _free_port()), point, root)
        started = now()
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"=== {started} host {socket.gethostname()} worker pid {os.getpid()} "
                    f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}: {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd if cwd and Path(cwd).is_dir() else None,
                                pass_fds=(held.fileno(),) if held else (), preexec_fn=_end_with_parent if _PRCTL else None).returncode
    rec = read_record(folder) or {}
    status = rec.get("status") if rc == 0 else "failed"
    error = None if status == "ok" else (rec.get("error") or f"`{shlex.join(cmd)}` exited with status {rc}; its output: {log}")
    return {"status": status, "error": error, "started": started, "finished": now(), "host": socket.gethostname(), "log": str(log)}


# -- the driver's side -----------------------------------------------------------------------------------------
def claim_points(run: SweepRun, stack: contextlib.ExitStack) -> tuple[list[Point], dict[str, contextlib.ExitStack]]:
    """The points this driver dispatches, each holding its sweep lock (released by closing its stack in ``held``)."""
    chosen, held = [], {}
    for p in run.todo:
        one = contextlib.ExitStack()
        if claim(run, p, one.enter_context(lock(run.out / LOCKS / f"{p.name}.lock"))):
            chosen.append(p)
            held[p.name] = stack.enter_context(one)
        else:
            one.close()
    return chosen, held


def judges_to_train(run: SweepRun, points: list[Point]) -> list[Point]:
    """One point per shared judge that is not trained yet: the judge is trained once, before any point is dispatched."""
    need = {}
    for folder in run.folders.values():
        if (folder / METADATA_FILE).is_file():
            continue
        first = next((p for p in points if Path(p.cfg.classifier.path or "") == folder.resolve()), None)
        if first is not None:
            need[folder] = first
    for folder in need:
        print(f"sweep: training the shared classifier into {folder} before dispatching the points", flush=True)
    return list(need.values())


def check_judges(run: SweepRun, points: list[Point]) -> None:
    missing = [str(f) for f in run.folders.values() if any(Path(p.cfg.classifier.path or "") == f.resolve() for p in points)
               and not (f / METADATA_FILE).is_file()]
    if missing:
        raise UserError(f"the shared classifier was not trained into {', '.join(missing)}; no point was dispatched")


def settle(run: SweepRun, point: Point, result: dict[str, Any] | None, error: str | None, write=print) -> None:
    """Count one point the cluster has finished with: times in sweep.json, a failed record if it did not end ok, one line."""
    result = result or {}
    if result.get("reused"):
        run.summary.skipped.append(point.name)
        run.actions[point.name] = "skipped"
        write(f"sweep: {point.name}: already finished (by another submission)")
        return
    run.timing[point.name] = {k: result[k] for k in TIMING if k in result}
    error = error or (None if result.get("status") == "ok" else result.get("error") or "the task returned no result")
    if error:
        mark_failed(point, run.out, error)
    run.finished(point, error)
    run.save_state()
    where = f" on {result['host']}" if result.get("host") else ""
    write(f"sweep: {point.name}: " + (f"failed{where}: {error.splitlines()[0][:300]}" if error else f"ok{where}"))
