"""`ctrldial sweep`: run a sweep file's points, one run folder each; finished points are skipped, the rest resumed.

The file and its points (``SweepSpec``, ``expand``) are ``ctrldial.sweepspec``; their folder names are
``ctrldial.naming``. A point is done when its record says ``ok`` and its ``config_hash`` equals the point's
resolved fingerprint; anything else (missing, ``running`` after a kill, ``failed``, or a changed config)
runs again from a clean folder.

Points run here, one after another (the local backend), or through a ``Dispatcher`` that sends them to a
cluster engine (``ctrldial.backends``: Ray, Slurm); planning, skipping and the state file are the same.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import yaml

from ctrldial.classifier.scorer import METADATA_FILE
from ctrldial.config import config_from_flat, flat_config
from ctrldial.errors import UserError
from ctrldial.record import RunRecord, read_record, write_atomic, write_json, write_record
from ctrldial.sweepspec import Point, SweepSpec, expand, load_sweep

CLASSIFIER_DIR = "classifier"
STATE = "sweep.json"
LOCKS = ".locks"
TIMING = ("started", "finished", "host", "log")
"""What sweep.json says about where and when a point last ran."""


# -- choosing -----------------------------------------------------------------------------------------
def select(points: list[Point], only: str | None) -> list[Point]:
    """`--only`: a glob (with * ? [) or a substring of the folder name."""
    if not only:
        return points
    glob = any(ch in only for ch in "*?[")
    chosen = [p for p in points if (fnmatch.fnmatchcase(p.name, only) if glob else only in p.name)]
    if not chosen:
        raise UserError(f"--only {only!r} matches none of the {len(points)} points: {', '.join(p.name for p in points)}")
    return chosen


# -- state --------------------------------------------------------------------------------------------
def point_state(point: Point, out: Path) -> tuple[str, str]:
    """(plan, reason): plan is `skip` or `run`."""
    rec = read_record(out / point.name)
    if rec is None:
        return "run", "new"
    status = rec.get("status")
    if status == "ok" and rec.get("config_hash") == point.cfg.fingerprint():
        return "skip", "done"
    if status == "ok":
        return "run", "config changed since it finished"
    if status == "failed":
        return "run", f"failed before: {str(rec.get('error', ''))[:120]}"
    return "run", "interrupted"


def write_state(out: Path, spec: SweepSpec, points: list[Point], actions: dict[str, str], classifier: str | None,
                extra: dict[str, dict[str, Any]] | None = None) -> None:
    """DIR/sweep.json: every point's folder, resolved config, record status and what this invocation did.

    ``extra``: per point, what its execution reported (started, finished, host, log); a finished point that did not
    run this time keeps what the file said about it."""
    try:
        before = {r["name"]: r for r in json.loads((out / STATE).read_text())["points"]}
    except (OSError, ValueError, KeyError, TypeError):
        before = {}
    rows = []
    for p in points:
        rec = read_record(out / p.name) or {}
        old = before.get(p.name, {})
        kept = {k: old[k] for k in TIMING if k in old} if rec.get("status") == "ok" and old.get("config_hash") == p.cfg.fingerprint() else {}
        rows.append({
            "name": p.name, "origin": p.origin, "values": p.values, "config_hash": p.cfg.fingerprint(),
            "status": rec.get("status", "pending"), "action": actions.get(p.name, "not selected"),
            **({"error": rec["error"]} if rec.get("error") else {}), **(extra or {}).get(p.name, kept), "config": p.cfg.to_dict(),
        })
    write_json(out / STATE, {"name": spec.name, "source": spec.source, "classifier": classifier, "points": rows})


@contextlib.contextmanager
def lock(path: Path, wait: bool = False) -> Iterator[Any]:
    """An advisory lock file: yields the open file, or None when another process holds it (and ``wait`` is off).

    The lock dies with the processes holding it, so a killed sweep leaves none behind; launched runs inherit
    it, so a run orphaned by a killed sweep still keeps other sweeps off its point."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except ImportError:  # Windows: no advisory locks; run one sweep per folder
            pass
        except BlockingIOError:
            yield None
            return
        yield f


# -- the classifier every point shares ----------------------------------------------------------------
def assign_classifier(spec: SweepSpec, points: list[Point], out: Path) -> dict[str, Path]:
    """Point every point without classifier.path at the sweep's own classifier (one per attribute)."""
    if not spec.train_classifier:
        return {}
    need = [p for p in points if not p.cfg.classifier.path]
    attrs = sorted({p.cfg.data.attribute for p in need})
    folders = {a: out / (CLASSIFIER_DIR if len(attrs) == 1 else f"{CLASSIFIER_DIR}-{a.replace('+', '-')}") for a in attrs}
    for p in need:
        p.cfg.classifier.path = str(folders[p.cfg.data.attribute].resolve())
    return folders


def ensure_classifier(spec: SweepSpec, point: Point, folders: dict[str, Path]) -> None:
    """Train the sweep's classifier on first use; a complete one (its metadata file exists) is reused."""
    from ctrldial.classifier import train_classifier

    folder = folders.get(point.cfg.data.attribute)
    if folder is None or Path(point.cfg.classifier.path or "") != folder.resolve() or (folder / METADATA_FILE).is_file():
        return
    with lock(folder.parent / LOCKS / f"{folder.name}.lock", wait=True):  # parallel sweeps: one trains, the others wait
        if (folder / METADATA_FILE).is_file():
            return
        print(f"sweep: training the shared classifier into {folder}", flush=True)
        flat = {**flat_config(point.cfg), **spec.classifier_set, "classifier.path": None}
        train_classifier(config_from_flat(flat, {k: "classifier.set" for k in spec.classifier_set}), folder, overwrite=True)


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    """Points another sweep in the same folder was running."""
    submitted: list[str] = field(default_factory=list)
    """Points left queued or running on a cluster (Slurm without waiting)."""


@dataclass
class SweepRun:
    """One invocation's points and bookkeeping, handed to whatever executes them."""

    spec: SweepSpec
    out: Path
    points: list[Point]
    todo: list[Point]
    plan: dict[str, tuple[str, str]]
    folders: dict[str, Path]
    summary: Summary
    actions: dict[str, str] = field(default_factory=dict)
    timing: dict[str, dict[str, Any]] = field(default_factory=dict)
    classifier: str | None = None

    def save_state(self) -> None:
        write_state(self.out, self.spec, self.points, self.actions, self.classifier, self.timing)

    def finished(self, point: Point, error: str | None) -> None:
        """Count a point that ran (ok, or failed with ``error``)."""
        self.actions[point.name] = "failed" if error else "ran"
        if error:
            self.summary.failed.append((point.name, error))
        else:
            self.summary.ran.append(point.name)


class Dispatcher(Protocol):
    """Runs a sweep's pending points somewhere else (``ctrldial.backends``)."""

    def describe(self, run: SweepRun) -> list[str]:
        """--dry-run: what would be started or submitted."""

    def execute(self, run: SweepRun) -> None:
        """Run ``run.todo``; report each point through ``run.finished`` and ``run.save_state``."""


class LaunchFailed(Exception):
    """A launched point exited without an ok record."""


def point_config_file(out: Path, point: Point) -> Path:
    return out / ".points" / f"{point.name}.yaml"


def write_point_config(out: Path, point: Point) -> Path:
    """DIR/.points/NAME.yaml: the point's resolved config, for a launched `ctrldial run --config` (same fingerprint)."""
    path = point_config_file(out, point)
    write_atomic(path, yaml.safe_dump(point.cfg.to_dict(), sort_keys=False, allow_unicode=True))
    return path


def launch_command(launcher: str, point: Point, out: Path) -> list[str]:
    """`LAUNCHER -m ctrldial run …` for one point, reading its resolved config from DIR/.points/NAME.yaml."""
    return [*shlex.split(launcher), "-m", "ctrldial", "run", "--out", str(out / point.name),
            "--config", str(point_config_file(out, point)), "--overwrite"]


def _run_point(point: Point, out: Path, launcher: str | None, held: Any) -> str | None:
    """Run one point (in this process, or launched); the error line if it failed (its record then says so)."""
    folder = out / point.name
    try:
        if not launcher:
            from ctrldial.pipeline import run

            run(point.cfg, folder, overwrite=True)
            return None
        cmd = launch_command(launcher, point, out)
        write_point_config(out, point)
        # the launched processes inherit the point's lock: one orphaned by a killed sweep still holds it
        rc = subprocess.run(cmd, pass_fds=(held.fileno(),) if held else ()).returncode
        rec = read_record(folder) or {}
        if rc != 0 or rec.get("status") != "ok":
            raise LaunchFailed(rec.get("error") or f"`{shlex.join(cmd)}` exited with status {rc}")
        return None
    except Exception as e:  # noqa: BLE001 — one failed point must not stop the sweep
        if not isinstance(e, (UserError, LaunchFailed)):
            traceback.print_exc()  # not a user mistake: show where it happened
        error = str(e) if isinstance(e, LaunchFailed) else f"{type(e).__name__}: {e}"
        mark_failed(point, out, error)
        return error
    finally:
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()


def mark_failed(point: Point, out: Path, error: str) -> None:
    """A point that failed before its run wrote a failed record (or whose process was killed): record it, so the report lists it."""
    rec = read_record(out / point.name)
    if rec is None or rec.get("status") != "failed":
        write_record(out / point.name, RunRecord(point.cfg.to_dict(), point.cfg.fingerprint(), status="failed"), error=error)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_sweep(
    spec: SweepSpec,
    out: Path,
    dry_run: bool = False,
    only: str | None = None,
    overrides: list[str] | None = None,
    config_files: list[str | Path] | None = None,
    launcher: str | None = None,
    dispatch: Dispatcher | None = None,
) -> Summary:
    """Expand and validate every point, then run the selected ones that are not done (here, or through ``dispatch``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("ctrldial sweep: do not start the sweep itself under accelerate launch/torchrun; give the launcher to the "
                        "sweep instead (`launcher: accelerate launch` in the sweep file), which launches every point")
    launcher = spec.launcher if launcher is None else (launcher or None)
    points = expand(spec, overrides, config_files)
    chosen = select(points, only)
    folders = assign_classifier(spec, points, out)
    plan = {p.name: point_state(p, out) for p in chosen}
    todo = [p for p in chosen if plan[p.name][0] == "run"]
    summary = Summary(skipped=[p.name for p in chosen if plan[p.name][0] == "skip"])
    clf = ", ".join(f"{f} ({'trained' if (f / METADATA_FILE).is_file() else 'to train on first use'})"
                    for f in folders.values()) or ("from the config" if any(p.cfg.classifier.path for p in chosen) else "none")
    print(f"sweep {spec.name}: {len(points)} points, {len(chosen)} selected, {len(todo)} to run → {out}  (classifier: {clf})")
    if dry_run:
        for p in chosen:
            print(f"  {plan[p.name][0]:4}  {p.name}  ({plan[p.name][1]})")
            if launcher and plan[p.name][0] == "run" and dispatch is None:
                print(f"        {shlex.join(launch_command(launcher, p, out))}")
        if dispatch is not None and todo:
            print("\n".join(dispatch.describe(SweepRun(spec, out, points, todo, plan, folders, summary))))
        return summary
    run = SweepRun(spec, out, points, todo, plan, folders, summary, actions={n: "skipped" for n in summary.skipped},
                   classifier=", ".join(str(f.resolve()) for f in folders.values()) or None)
    try:
        if dispatch is None:
            _run_here(run, launcher)
        elif todo:
            dispatch.execute(run)
    finally:
        run.save_state()
    print(format_summary(summary, out))
    return summary


def claim(run: SweepRun, p: Point, held: Any) -> bool:
    """Whether this invocation runs ``p``, holding its lock ``held``; a point busy elsewhere or finished meanwhile is counted."""
    if held is not None and point_state(p, run.out)[0] == "run":
        return True
    (run.summary.busy if held is None else run.summary.skipped).append(p.name)
    run.actions[p.name] = "busy" if held is None else "skipped"
    print(f"sweep: {p.name}: {'running in another sweep' if held is None else 'finished by another sweep'}")
    return False


def _run_here(run: SweepRun, launcher: str | None) -> None:
    """The local backend: the points one after another, in this process or each in its own launch."""
    for i, p in enumerate(run.todo, 1):
        run.save_state()
        # one lock per point: sweeps started in parallel on the same folder share out the points
        with lock(run.out / LOCKS / f"{p.name}.lock") as held:
            if not claim(run, p, held):
                continue
            print(f"\n=== sweep [{i}/{len(run.todo)}] {p.name} ({run.plan[p.name][1]}) ===", flush=True)
            ensure_classifier(run.spec, p, run.folders)
            started = now()
            error = _run_point(p, run.out, launcher, held)
        run.timing[p.name] = {"started": started, "finished": now()}
        run.finished(p, error)
        if error:
            print(f"sweep: {p.name} failed: {error.splitlines()[0][:300]}", flush=True)


def format_summary(s: Summary, out: Path) -> str:
    busy = f", {len(s.busy)} running in another sweep" if s.busy else ""
    busy += f", {len(s.submitted)} submitted and not finished yet" if s.submitted else ""
    lines = [f"\nsweep summary: {len(s.ran)} ran ok, {len(s.skipped)} skipped (already done), {len(s.failed)} failed{busy} — {out / STATE}"]
    lines += [f"  failed  {name}: {err.splitlines()[0][:300]}" for name, err in s.failed]
    return "\n".join(lines)


def sweep(
    path: Path, out: Path, dry_run: bool = False, only: str | None = None, overrides: list[str] | None = None, launcher: str | None = None,
    dispatch: Dispatcher | None = None,
) -> None:
    """`ctrldial sweep FILE --out DIR`: exits non-zero when a point failed (the others still ran).

    ``launcher`` (e.g. ``accelerate launch``; default: the sweep file's ``launcher:``; "" = none) runs each
    point as ``LAUNCHER -m ctrldial run …`` in its own processes; without one, points run in this process.
    ``dispatch`` (``ctrldial.backends.make_dispatcher``) sends them to Ray or Slurm instead."""
    summary = run_sweep(load_sweep(Path(path)), Path(out), dry_run, only, overrides, launcher=launcher, dispatch=dispatch)
    if summary.failed:
        raise UserError(f"{len(summary.failed)} sweep point(s) failed: {', '.join(n for n, _ in summary.failed)}; "
                        f"errors in their record.json under {out}, and in {Path(out) / STATE}")
    if summary.submitted:
        print(f"next: run the same command again to wait for the submitted points, then ctrldial report {out}")
    elif not dry_run:
        print(f"next: ctrldial report {out}")
