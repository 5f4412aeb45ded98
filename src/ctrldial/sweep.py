"""`ctrldial sweep`: a grid of configs → one run folder per point; finished points are skipped, the rest resumed.

A sweep file::

    name: my-sweep
    base: {data: {path: sample}, train: {max_steps: 50}}   # a nested config, like a --config file
    grid: {model.name: [a, b], method.name: [lora, prefix], train.seed: [0, 1]}   # Cartesian product
    grids: [{...}, {...}]                                  # more grids (optional)
    points: [{model.name: c, method.name: qlora}]          # explicit extra points (optional)
    classifier: {train: true, set: {classifier.epochs: 2}}  # the shared judge (optional)
    launcher: accelerate launch                             # one launch per point (optional)

Precedence per point: defaults ← base ← --config files ← --set ← the point's own values. Every point is
built and validated before anything runs. A point is done when its record says ``ok`` and its
``config_hash`` equals the point's resolved fingerprint; anything else (missing, ``running`` after a kill,
``failed``, or a changed config) runs again from a clean folder.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import itertools
import os
import re
import shlex
import subprocess
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from ctrldial.classifier.scorer import METADATA_FILE
from ctrldial.config import Config, _flatten, _parse_set, config_from_flat, read_yaml_mapping, valid_keys
from ctrldial.errors import UserError
from ctrldial.record import RECORD, base_record, read_record, write_atomic, write_json

SWEEP_KEYS = ("name", "base", "grid", "grids", "points", "classifier", "launcher")
CLASSIFIER_KEYS = ("train", "set")
CLASSIFIER_DIR = "classifier"
STATE = "sweep.json"
LOCKS = ".locks"
MAX_NAME = 120


@dataclass
class SweepSpec:
    """A parsed sweep file: flat base values, grids of dotted keys → value lists, explicit points."""

    name: str
    source: str
    base: dict[str, Any] = field(default_factory=dict)
    grids: list[dict[str, list[Any]]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    train_classifier: bool = True
    """Train a classifier into DIR/classifier when a point has no classifier.path (false: no control metrics)."""
    classifier_set: dict[str, Any] = field(default_factory=dict)
    """Dotted keys applied on top of a point's config to train that classifier (e.g. a larger data budget)."""
    launcher: str | None = None
    """Run each point as `LAUNCHER -m ctrldial run …` (e.g. `accelerate launch`); None: in this process."""


@dataclass
class Point:
    name: str
    origin: str
    """Where it came from in the sweep file: `grid 1`, `points[3]`."""
    values: dict[str, Any]
    """The keys this point sets itself."""
    cfg: Config


# -- loading ------------------------------------------------------------------------------------------
def read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path)


def spec_from_dict(tree: dict[str, Any], source: str) -> SweepSpec:
    """Check the sweep file's shape (not the config keys: ``expand`` does that for every point at once)."""
    unknown = sorted(set(tree) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; a sweep file has {', '.join(SWEEP_KEYS)}")
    grids = ([tree["grid"]] if tree.get("grid") is not None else []) + list(tree.get("grids") or [])
    for i, grid in enumerate(grids, 1):
        if not isinstance(grid, dict) or not grid:
            raise UserError(f"{source}: grid {i} must be a mapping of dotted keys to lists, e.g. method.name: [lora, prefix]")
        for key, values in _flatten(grid).items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{source}: grid {i} key {key}: expected a non-empty list of values, got {values!r}")
    points = tree.get("points") or []
    if not isinstance(points, list) or not all(isinstance(p, dict) and p for p in points):
        raise UserError(f"{source}: points must be a list of mappings of dotted keys to values")
    if not grids and not points:
        points = [{}]  # a sweep of one point: the base itself
    base = tree.get("base") or {}
    if not isinstance(base, dict):
        raise UserError(f"{source}: base must be a nested config mapping (data:, model:, ...)")
    clf = tree.get("classifier") or {}
    bad = sorted(set(clf) - set(CLASSIFIER_KEYS)) if isinstance(clf, dict) else ["(not a mapping)"]
    if bad:
        raise UserError(
            f"{source}: classifier: unknown key(s) {', '.join(bad)}; it takes train (true/false) and set (dotted keys); "
            "the config's classifier section goes under base:"
        )
    if not isinstance(clf.get("set") or {}, dict) or not isinstance(clf.get("train", True), bool):
        raise UserError(f"{source}: classifier: train must be true or false, set a mapping of dotted keys to values")
    if not isinstance(tree.get("launcher") or "", str):
        raise UserError(f"{source}: launcher must be a command line such as `accelerate launch`, or absent")
    return SweepSpec(
        name=str(tree.get("name") or Path(source).stem),
        source=source,
        base=_flatten(base),
        grids=[_flatten(g) for g in grids],
        points=[_flatten(p) for p in points],
        train_classifier=clf.get("train", True),
        classifier_set=_flatten(clf.get("set") or {}),
        launcher=tree.get("launcher") or None,
    )


def load_sweep(path: Path) -> SweepSpec:
    return spec_from_dict(read_yaml(path), str(path))


# -- expansion ----------------------------------------------------------------------------------------
def _raw_points(spec: SweepSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, grid in enumerate(spec.grids, 1):
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            yield f"grid {i}", dict(zip(keys, combo))
    for i, values in enumerate(spec.points):
        yield f"points[{i}]", dict(values)


def _check_keys(spec: SweepSpec, base_origin: dict[str, str]) -> None:
    """Every unknown key in the whole sweep, in one message."""
    known = set(valid_keys())
    where: dict[str, list[str]] = {}
    pairs = [(label, key) for key, label in base_origin.items()] + [("classifier.set", k) for k in spec.classifier_set]
    pairs += [(f"grid {i}", k) for i, g in enumerate(spec.grids, 1) for k in g]
    pairs += [(f"points[{i}]", k) for i, p in enumerate(spec.points) for k in p]
    for label, key in pairs:
        if key not in known:
            where.setdefault(label, []).append(key)
    if where:
        listed = "; ".join(f"{label}: {', '.join(keys)}" for label, keys in where.items())
        raise UserError(f"{spec.source}: unknown config key(s) — {listed}. Valid keys: {', '.join(sorted(known))}")


def expand(spec: SweepSpec, overrides: list[str] | None = None, config_files: list[str | Path] | None = None) -> list[Point]:
    """Every point's resolved, validated Config and its folder name; all problems are reported at once."""
    base, origin = dict(spec.base), {k: "base" for k in spec.base}
    for f in config_files or []:
        for k, v in _flatten(read_yaml(Path(f))).items():
            base[k], origin[k] = v, str(f)
    for item in overrides or []:
        k, v = _parse_set(item)
        base[k], origin[k] = v, "--set"
    _check_keys(spec, origin)
    built: list[tuple[str, dict[str, Any], Config]] = []
    problems: list[str] = []
    for where, values in _raw_points(spec):
        flat = {**base, **values}
        try:
            cfg = config_from_flat(flat, {**origin, **{k: where for k in values}})
        except UserError as e:
            msg = f"{where} {_short_values(values)}: {e}"
            if msg not in problems:
                problems.append(msg)
            continue
        built.append((where, values, cfg))
    if problems:
        raise UserError(f"{spec.source}: {len(problems)} invalid point(s), nothing was run — " + " | ".join(problems))
    unique: dict[str, tuple[str, dict[str, Any], Config]] = {}
    for item in built:
        unique.setdefault(item[2].fingerprint(), item)  # the same resolved config twice runs once
    kept = list(unique.values())
    names = point_names([(v, c) for _, v, c in kept])
    return [Point(n, where, values, cfg) for n, (where, values, cfg) in zip(names, kept)]


def _short_values(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in values.items()) + "}" if values else "{}"


def _flat_config(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, sec in cfg.to_dict().items() for k, v in sec.items()}


def short_key(key: str) -> str:
    """`method.name` → `method`, `train.lr` → `lr`."""
    section, name = key.split(".", 1)
    return section if name == "name" else name


def format_value(value: Any) -> str:
    """A value as a filesystem-safe piece of a folder name."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "none"
    elif isinstance(value, list):
        text = "+".join(format_value(v) for v in value) or "empty"
    elif isinstance(value, dict):
        text = "+".join(f"{k}-{format_value(v)}" for k, v in sorted(value.items())) or "empty"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
        if "/" in text.strip("/"):
            text = text.rstrip("/").rsplit("/", 1)[-1]  # Hub ids and paths: the last part names the model
    for char, word in (("\\n", "newline"), ("\n", "newline"), ("\\t", "tab"), ("\t", "tab")):
        text = text.replace(char, word)  # separators: `\n` reads better as a word than as `_`
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def point_names(points: list[tuple[dict[str, Any], Config]]) -> list[str]:
    """Folder names from the keys a point sets that also vary across the sweep; unique and deterministic.

    Two different configs differ in a key that at least one of them sets itself, so their names differ;
    the rare clash left by shortening or character cleaning gets a hash suffix.
    """
    flats = [_flat_config(c) for _, c in points]
    varying = {k for k in (flats[0] if flats else {}) if len({repr(f[k]) for f in flats}) > 1}
    used = sorted({k for values, _ in points for k in values if k in varying})
    shorts = Counter(short_key(k) for k in used)
    label = {k: short_key(k) if shorts[short_key(k)] == 1 else k for k in used}
    names = []
    for (values, cfg), flat in zip(points, flats):
        keys = sorted((k for k in values if k in varying), key=lambda k: label[k])
        name = ",".join(f"{label[k]}={format_value(flat[k])}" for k in keys) or "base"
        if len(name) > MAX_NAME:
            name = f"{name[: MAX_NAME - 20]}-{cfg.fingerprint()[:8]}"
        names.append(name)
    clashes = Counter(n.lower() for n in names)
    return [f"{n}-{c.fingerprint()[:8]}" if clashes[n.lower()] > 1 else n for n, (_, c) in zip(names, points)]


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


def write_state(out: Path, spec: SweepSpec, points: list[Point], actions: dict[str, str], classifier: str | None) -> None:
    """DIR/sweep.json: every point's folder, resolved config, record status and what this invocation did."""
    rows = []
    for p in points:
        rec = read_record(out / p.name) or {}
        rows.append({
            "name": p.name, "origin": p.origin, "values": p.values, "config_hash": p.cfg.fingerprint(),
            "status": rec.get("status", "pending"), "action": actions.get(p.name, "not selected"),
            **({"error": rec["error"]} if rec.get("error") else {}), "config": p.cfg.to_dict(),
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
        flat = {**_flat_config(point.cfg), **spec.classifier_set, "classifier.path": None}
        train_classifier(config_from_flat(flat, {k: "classifier.set" for k in spec.classifier_set}), folder, overwrite=True)


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    """Points another sweep in the same folder was running."""


class LaunchFailed(Exception):
    """A launched point exited without an ok record."""


def point_config_file(out: Path, point: Point) -> Path:
    return out / ".points" / f"{point.name}.yaml"


def launch_command(launcher: str, point: Point, out: Path) -> list[str]:
    """`LAUNCHER -m ctrldial run …` for one point, reading its resolved config from DIR/.points/NAME.yaml."""
    return [*shlex.split(launcher), "-m", "ctrldial", "run", "--out", str(out / point.name),
            "--config", str(point_config_file(out, point)), "--overwrite"]


def _run_point(point: Point, out: Path, launcher: str | None, held: Any) -> str | None:
    """Run one point (in this process, or launched); the error line if it failed (its record then says so)."""
    folder = out / point.name
    try:
        if not launcher:
            from ctrldial.run import run

            run(point.cfg, folder, overwrite=True)
            return None
        cmd = launch_command(launcher, point, out)
        write_atomic(point_config_file(out, point), yaml.safe_dump(point.cfg.to_dict(), sort_keys=False, allow_unicode=True))
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
        rec = read_record(folder)
        if rec is None or rec.get("status") != "failed":
            # failed before the run wrote its record (or its process was killed): record it, so the report lists it
            write_json(folder / RECORD, {**base_record(point.cfg.to_dict(), point.cfg.fingerprint()), "status": "failed", "error": error})
        return error
    finally:
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()


def run_sweep(
    spec: SweepSpec,
    out: Path,
    dry_run: bool = False,
    only: str | None = None,
    overrides: list[str] | None = None,
    config_files: list[str | Path] | None = None,
    launcher: str | None = None,
) -> Summary:
    """Expand and validate every point, then run the selected ones that are not done."""
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
            if launcher and plan[p.name][0] == "run":
                print(f"        {shlex.join(launch_command(launcher, p, out))}")
        return summary
    actions = {n: "skipped" for n in summary.skipped}
    classifier = ", ".join(str(f.resolve()) for f in folders.values()) or None
    try:
        for i, p in enumerate(todo, 1):
            write_state(out, spec, points, actions, classifier)
            # one lock per point: sweeps started in parallel on the same folder share out the points
            with lock(out / LOCKS / f"{p.name}.lock") as held:
                if held is None or point_state(p, out)[0] == "skip":
                    (summary.busy if held is None else summary.skipped).append(p.name)
                    actions[p.name] = "busy" if held is None else "skipped"
                    print(f"sweep: {p.name}: {'running in another sweep' if held is None else 'finished by another sweep'}")
                    continue
                print(f"\n=== sweep [{i}/{len(todo)}] {p.name} ({plan[p.name][1]}) ===", flush=True)
                ensure_classifier(spec, p, folders)
                error = _run_point(p, out, launcher, held)
            actions[p.name] = "failed" if error else "ran"
            if error:
                summary.failed.append((p.name, error))
                print(f"sweep: {p.name} failed: {error.splitlines()[0][:300]}", flush=True)
            else:
                summary.ran.append(p.name)
    finally:
        write_state(out, spec, points, actions, classifier)
    print(format_summary(summary, out))
    return summary


def format_summary(s: Summary, out: Path) -> str:
    busy = f", {len(s.busy)} running in another sweep" if s.busy else ""
    lines = [f"\nsweep summary: {len(s.ran)} ran ok, {len(s.skipped)} skipped (already done), {len(s.failed)} failed{busy} — {out / STATE}"]
    lines += [f"  failed  {name}: {err.splitlines()[0][:300]}" for name, err in s.failed]
    return "\n".join(lines)


def sweep(
    path: Path, out: Path, dry_run: bool = False, only: str | None = None, overrides: list[str] | None = None, launcher: str | None = None
) -> None:
    """`ctrldial sweep FILE --out DIR`: exits non-zero when a point failed (the others still ran).

    ``launcher`` (e.g. ``accelerate launch``; default: the sweep file's ``launcher:``; "" = none) runs each
    point as ``LAUNCHER -m ctrldial run …`` in its own processes; without one, points run in this process."""
    summary = run_sweep(load_sweep(Path(path)), Path(out), dry_run, only, overrides, launcher=launcher)
    if summary.failed:
        raise UserError(f"{len(summary.failed)} sweep point(s) failed: {', '.join(n for n, _ in summary.failed)}; "
                        f"errors in their record.json under {out}, and in {Path(out) / STATE}")
    if not dry_run:
        print(f"next: ctrldial report {out}")
