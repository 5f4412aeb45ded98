"""`ctrldial sweep --backend slurm`: the pending points as a Slurm job array (submitit), one `ctrldial run` per task.

    ctrldial sweep FILE --out DIR --backend slurm --slurm partition=gpu --slurm time=4:00:00
    ctrldial sweep FILE --out DIR --backend slurm --dry-run        # what would be submitted

Settings come from the sweep file's ``slurm:`` section, then ``--slurm KEY=VALUE``: ``partition``,
``gpus_per_node`` and ``cpus_per_task`` (default: each point's ``resources:``, else 0 GPUs and 1 CPU),
``time`` (minutes, or Slurm's ``H:MM:SS`` / ``D-HH:MM:SS``; default 4:00:00), ``array_parallelism``,
``mem_gb``, ``wait`` (default true: wait for the array and report each point; false: submit and return)
and ``cluster: local`` (submitit's local executor: the same array on this machine, for tests). Points
that ask for different resources go in one array per kind. Submitted jobs are listed in
``OUT/.slurm/jobs.json``: rerunning re-attaches to those still queued or running and resubmits only the
other unfinished points.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from ctrldial.backends.common import check_judges, claim_points, execute_point, judges_to_train, point_launcher, resources, settle
from ctrldial.errors import UserError
from ctrldial.record import write_json
from ctrldial.sweep import SweepRun, ensure_classifier, launch_command, now
from ctrldial.sweepspec import SLURM_KEYS, Point

FOLDER = ".slurm"
JOBS = "jobs.json"
DEFAULT_TIME = "4:00:00"
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


def minutes(value: Any) -> int:
    """Slurm's time formats (`90`, `30:00` = minutes:seconds, `4:00:00`, `1-12`, `1-12:00:00`) as whole minutes."""
    text = str(value).strip()
    try:
        days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [int(x) for x in rest.split(":")]
        if "-" in text:  # days-hours[:minutes[:seconds]]
            h, m, s = (parts + [0, 0])[:3]
        else:  # minutes | minutes:seconds | hours:minutes:seconds
            h, m, s = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        total = int(days) * 1440 + h * 60 + m + (1 if s else 0)
    except (ValueError, KeyError, TypeError):
        raise UserError(f"slurm time {value!r}: give minutes (240) or H:MM:SS (4:00:00) or D-HH:MM:SS") from None
    if total < 1:
        raise UserError(f"slurm time {value!r}: at least one minute")
    return total


class SlurmDispatcher:
    """Points as Slurm array tasks; ``overrides`` are ``--slurm KEY=VALUE`` items over the file's ``slurm:``."""

    def __init__(self, overrides: list[str] | None = None):
        self.overrides = list(overrides or [])

    def _settings(self, run: SweepRun) -> dict[str, Any]:
        settings = dict(run.spec.slurm)
        for item in self.overrides:
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in SLURM_KEYS:
                raise UserError(f"--slurm {item!r}: expected KEY=VALUE with KEY one of {', '.join(SLURM_KEYS)}")
            settings[key.strip()] = yaml.safe_load(value) if value.strip() else None
        settings["minutes"] = minutes(settings.get("time") or DEFAULT_TIME)
        if settings.get("cluster") not in (None, "slurm", "local"):
            raise UserError(f"slurm cluster {settings['cluster']!r}: slurm (the default) or local (submitit's local executor)")
        return settings

    def _groups(self, points: list[Point], s: dict[str, Any]) -> dict[tuple[float, int], list[Point]]:
        """One array per (cpus_per_task, gpus_per_node): the settings', else each point's resources."""
        groups: dict[tuple[float, int], list[Point]] = {}
        for p in points:
            cpus, gpus = resources(p, 0)
            key = (float(s.get("cpus_per_task") or cpus), int(s["gpus_per_node"] if s.get("gpus_per_node") is not None else gpus))
            groups.setdefault(key, []).append(p)
        return groups

    def _describe_group(self, s: dict[str, Any], cpus: float, gpus: int, n: int) -> str:
        shown = {"partition": s.get("partition") or "(the cluster's default)", "gpus_per_node": gpus, "cpus_per_task": f"{cpus:g}",
                 "time": f"{s['minutes']} min", "array_parallelism": s.get("array_parallelism") or "(no limit)"}
        shown.update({"mem_gb": s["mem_gb"]} if s.get("mem_gb") else {})
        return f"slurm: a job array of {n} task(s): " + ", ".join(f"{k}={v}" for k, v in shown.items())

    def describe(self, run: SweepRun) -> list[str]:
        s = self._settings(run)
        lines = [f"slurm: would submit to {'this machine (submitit local executor)' if s.get('cluster') == 'local' else 'Slurm'}; "
                 "each task runs one point:"]
        for (cpus, gpus), points in self._groups(run.todo, s).items():
            lines.append(self._describe_group(s, cpus, gpus, len(points)))
            lines += [f"  {p.name}: {shlex.join(launch_command(point_launcher(gpus), p, run.out))}" for p in points]
        return lines

    def _executor(self, run: SweepRun, s: dict[str, Any]) -> Any:
        try:
            import submitit
        except ImportError:
            raise UserError('--backend slurm needs submitit: pip install -e ".[slurm]" (or pip install "submitit>=1.5")') from None
        try:
            return submitit.AutoExecutor(folder=run.out / FOLDER / "%j", cluster=s.get("cluster") or "slurm")
        except RuntimeError as e:  # no sbatch/srun here
            raise UserError(f"--backend slurm: {e}; run it on a Slurm login node, or --slurm cluster=local to try the array here") from None

    def _params(self, run: SweepRun, s: dict[str, Any], cpus: float, gpus: int) -> dict[str, Any]:
        params = {"name": f"ctrldial-{run.spec.name}", "timeout_min": s["minutes"], "nodes": 1, "tasks_per_node": 1,
                  "cpus_per_task": max(1, int(cpus)), "gpus_per_node": gpus}
        params.update({"mem_gb": s["mem_gb"]} if s.get("mem_gb") else {})
        params.update({"slurm_partition": s["partition"]} if s.get("partition") else {})
        params.update({"slurm_array_parallelism": int(s["array_parallelism"])} if s.get("array_parallelism") else {})
        return params

    def execute(self, run: SweepRun) -> None:
        s = self._settings(run)
        executor = self._executor(run, s)
        out, cwd = run.out.resolve(), os.getcwd()
        jobs_file = run.out / FOLDER / JOBS
        known = json.loads(jobs_file.read_text()) if jobs_file.is_file() else {}
        with contextlib.ExitStack() as stack:
            points, held = claim_points(run, stack)
            groups = self._groups(points, s)
            judges = judges_to_train(run, points)
            if judges:  # one job per judge, before the array: every point scores with it
                cpus, gpus = next(k for k, g in groups.items() if judges[0] in g)
                executor.update_parameters(**self._params(run, s, cpus, gpus))
                for job in [executor.submit(ensure_classifier, run.spec, p, run.folders) for p in judges]:
                    print(f"slurm: judge job {job.job_id}; waiting for it", flush=True)
                    job.result()
            check_judges(run, points)
            jobs: dict[str, Any] = {}
            for (cpus, gpus), group in groups.items():
                attached = {p.name: j for p in group if (j := self._still_active(run, s, known.get(p.name), p))}
                jobs.update(attached)
                fresh = [p for p in group if p.name not in attached]
                if attached:
                    print(f"slurm: {len(attached)} point(s) still queued or running from an earlier submission: not resubmitted")
                if not fresh:
                    continue
                executor.update_parameters(**self._params(run, s, cpus, gpus))
                print(self._describe_group(s, cpus, gpus, len(fresh)), flush=True)
                submitted = executor.map_array(execute_point, fresh, [str(out)] * len(fresh), [gpus] * len(fresh), [cwd] * len(fresh))
                for p, job in zip(fresh, submitted):
                    jobs[p.name] = job
                    known[p.name] = {"job_id": job.job_id, "config_hash": p.cfg.fingerprint(), "submitted": now()}
                print(f"slurm: submitted job array {submitted[0].job_id.split('_')[0]} → {run.out / FOLDER}", flush=True)
            write_json(jobs_file, known)
            for name in jobs:
                run.actions[name] = "submitted"
            run.save_state()
            if not s.get("wait", True):
                run.summary.submitted += list(jobs)
                return
            self._wait(run, jobs, {p.name: p for p in points}, held)

    def _still_active(self, run: SweepRun, s: dict[str, Any], entry: dict[str, Any] | None, p: Point) -> Any:
        """The job an earlier invocation submitted for ``p``, if it is still queued or running on Slurm (same config)."""
        if not entry or entry.get("config_hash") != p.cfg.fingerprint() or s.get("cluster") == "local":
            return None  # local jobs died with the driver that started them
        import submitit

        job = submitit.SlurmJob(folder=run.out / FOLDER / "%j", job_id=entry["job_id"])
        try:
            return job if job.state in ACTIVE else None
        except Exception:  # noqa: BLE001 — sacct unavailable: resubmit (a duplicate finds the point done, or waits for it)
            return None

    def _wait(self, run: SweepRun, jobs: dict[str, Any], points: dict[str, Point], held: dict[str, contextlib.ExitStack]) -> None:
        import submitit
        from tqdm.auto import tqdm

        names = {id(job): name for name, job in jobs.items()}
        bar = tqdm(total=len(jobs), unit="point", desc=f"sweep {run.spec.name}", dynamic_ncols=True)
        for job in submitit.helpers.as_completed(list(jobs.values()), poll_frequency=5):
            name = names[id(job)]
            try:
                result, error = job.result(), None
            except Exception as e:  # noqa: BLE001 — the job failed, timed out or was cancelled
                last = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                result, error = None, f"Slurm job {job.job_id} failed: {last}; its log: {Path(job.paths.stderr)}"
            settle(run, points[name], result, error, write=bar.write)
            held.pop(name).close()
            bar.update()
        bar.close()
