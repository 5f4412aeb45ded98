"""`ctrldial sweep --backend ray`: every pending point is one Ray task with the resources the sweep declares.

    ctrldial sweep FILE --out DIR --backend ray                        # a local Ray cluster, started for the sweep
    ctrldial sweep FILE --out DIR --backend ray --ray-address auto     # the cluster `ray start` runs here

Each task runs the point as its own process (``common.execute_point``); Ray gives it ``resources.gpus``
GPUs (CUDA_VISIBLE_DEVICES) and ``resources.cpus`` CPUs (default: 1 CPU, and 1 GPU when the cluster has
any). A task whose worker dies is retried (``max_retries``, default 1) from a clean folder; a point whose
run fails is recorded as failed and the others go on. ``--out`` must be a filesystem every node sees.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from typing import Any

from ctrldial.backends.common import (DEFAULT_RETRIES, check_judges, claim_points, execute_point, judges_to_train, point_launcher,
                                      resources, settle)
from ctrldial.errors import UserError
from ctrldial.sweep import SweepRun, ensure_classifier, launch_command


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError('--backend ray needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")') from None
    return ray


class RayDispatcher:
    """Points as Ray tasks on the cluster at ``address`` (None: the file's ``ray.address``, else $RAY_ADDRESS, else a
    local cluster started for the sweep)."""

    def __init__(self, address: str | None = None, max_retries: int | None = None):
        self.address, self.max_retries = address, max_retries

    def _settings(self, run: SweepRun) -> tuple[str | None, int]:
        address = self.address or run.spec.ray.get("address") or os.environ.get("RAY_ADDRESS") or None
        retries = self.max_retries if self.max_retries is not None else run.spec.ray.get("max_retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UserError(f"{run.spec.source}: ray.max_retries (or --max-retries): expected a whole number >= 0, got {retries!r}")
        return address, retries

    def describe(self, run: SweepRun) -> list[str]:
        address, retries = self._settings(run)
        lines = [f"ray: {len(run.todo)} task(s) on {address or 'a local Ray cluster started for the sweep'}, max_retries={retries}"]
        for p in run.todo:
            cpus, gpus = resources(p, 0)
            shown = gpus if "gpus" in p.resources else "1 if the cluster has GPUs, else 0"
            lines.append(f"  {p.name}: cpus={cpus:g} gpus={shown}: {shlex.join(launch_command(point_launcher(gpus), p, run.out))}")
        return lines

    def execute(self, run: SweepRun) -> None:
        ray = import_ray()
        address, retries = self._settings(run)
        started_here = not ray.is_initialized()  # a caller (a test, a notebook) may have connected already
        if started_here:
            # workers' output goes to OUT/.logs/NAME.log; the driver prints one line per point instead
            # "local": a fresh cluster even when another one runs here (ray.init() alone would join that one)
            ray.init(address=address or "local", log_to_driver=False, **({} if address else {"include_dashboard": False}))
        try:
            self._run(ray, run, retries, local=not address)  # no address: a cluster on this machine, which never grows
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, run: SweepRun, retries: int, local: bool) -> None:
        from tqdm.auto import tqdm

        cluster = ray.cluster_resources()
        default_gpus = 1 if cluster.get("GPU", 0) > 0 else 0
        out, cwd = run.out.resolve(), os.getcwd()
        need = {p.name: resources(p, default_gpus) for p in run.todo}
        too_big = [f"{n} (cpus={c:g}, gpus={g})" for n, (c, g) in need.items() if c > cluster.get("CPU", 0) or g > cluster.get("GPU", 0)]
        if too_big and local:  # an autoscaling cluster may grow; a local one never will, and Ray would wait forever
            raise UserError(f"the local Ray cluster has {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs; these points ask "
                            f"for more: {', '.join(too_big)}. Lower resources: in {run.spec.source}, or give --ray-address")
        if too_big:
            print(f"ray: waiting for a node large enough for {', '.join(too_big)}", flush=True)
        task = ray.remote(execute_point)
        pending: dict[Any, Any] = {}
        with contextlib.ExitStack() as stack:
            points, held = claim_points(run, stack)
            judges = [ray.remote(ensure_classifier).options(num_cpus=need[p.name][0], num_gpus=need[p.name][1]).remote(run.spec, p, run.folders)
                      for p in judges_to_train(run, points)]
            ray.get(judges)
            check_judges(run, points)
            try:
                for p in points:
                    cpus, gpus = need[p.name]
                    ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries, name=p.name).remote(p, str(out), gpus, cwd)
                    pending[ref] = p
                    run.actions[p.name] = "dispatched"
                run.save_state()
                bar = tqdm(total=len(pending), unit="point", desc=f"sweep {run.spec.name}", dynamic_ncols=True)
                while pending:
                    [ref], _ = ray.wait(list(pending), num_returns=1)
                    p = pending.pop(ref)
                    try:
                        result, error = ray.get(ref), None
                    except Exception as e:  # noqa: BLE001 — the worker died more often than max_retries, or the task broke
                        result, error = None, f"the Ray task failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
                    settle(run, p, result, error, write=bar.write)
                    held.pop(p.name).close()  # another sweep may take the point again (e.g. after a failure)
                    bar.update()
                bar.close()
            finally:
                for ref in pending:  # interrupted: stop what this driver started (a local cluster ends with it anyway)
                    ray.cancel(ref, force=True)
