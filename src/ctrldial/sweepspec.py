"""The sweep file: its shape (``SweepSpec``) and its points, each a validated Config with a folder name.

A sweep file::

    name: my-sweep
    base: {data: {path: sample}, train: {max_steps: 50}}   # a nested config, like a --config file
    grid: {model.name: [a, b], method.name: [lora, prefix], train.seed: [0, 1]}   # Cartesian product
    grids: [{...}, {...}]                                  # more grids (optional)
    points: [{model.name: c, method.name: qlora}]          # explicit extra points (optional)
    classifier: {train: true, set: {classifier.epochs: 2}}  # the shared judge (optional)
    launcher: accelerate launch                             # one launch per point (optional)
    resources: {gpus: 1, cpus: 4}                           # what one point needs on Ray or Slurm (optional)
    ray: {address: auto, max_retries: 1}                    # --backend ray (optional)
    slurm: {partition: gpu, time: "4:00:00"}                # --backend slurm (optional)

A grid or a point may hold its own ``resources:`` (a mapping, not a list), which overrides the file's for
its points. Running on Ray or Slurm is ``ctrldial.backends``.

Precedence per point: defaults ← base ← --config files ← --set ← the point's own values. Every point is
built and validated before anything runs (``expand``); running them is ``ctrldial.sweep``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ctrldial.config import Config, Layers, flatten, read_yaml_mapping, valid_keys
from ctrldial.errors import UserError
from ctrldial.naming import point_names

SWEEP_KEYS = ("name", "base", "grid", "grids", "points", "classifier", "launcher", "resources", "ray", "slurm")
CLASSIFIER_KEYS = ("train", "set")
RESOURCE_KEYS = ("gpus", "cpus")
RAY_KEYS = ("address", "max_retries")
SLURM_KEYS = ("partition", "gpus_per_node", "cpus_per_task", "time", "array_parallelism", "mem_gb", "cluster", "wait")


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
    resources: dict[str, Any] = field(default_factory=dict)
    """What one point needs on Ray or Slurm: gpus, cpus (the local backend ignores it)."""
    grid_resources: list[dict[str, Any]] = field(default_factory=list)
    """Per grid (same order as ``grids``): its own ``resources:``, over the file's."""
    point_resources: list[dict[str, Any]] = field(default_factory=list)
    """Per explicit point: its own ``resources:``."""
    ray: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)


@dataclass
class Point:
    name: str
    origin: str
    """Where it came from in the sweep file: `grid 1`, `points[3]`."""
    values: dict[str, Any]
    """The keys this point sets itself."""
    cfg: Config
    resources: dict[str, Any] = field(default_factory=dict)
    """gpus, cpus for one Ray task or Slurm array task: the file's, then its grid's or its own."""


# -- loading ------------------------------------------------------------------------------------------
def spec_from_dict(tree: dict[str, Any], source: str) -> SweepSpec:
    """Check the sweep file's shape (not the config keys: ``expand`` does that for every point at once)."""
    unknown = sorted(set(tree) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; a sweep file has {', '.join(SWEEP_KEYS)}")
    grids = ([tree["grid"]] if tree.get("grid") is not None else []) + list(tree.get("grids") or [])
    grids, grid_resources = _split_resources(grids, "grid", source, start=1)
    for i, grid in enumerate(grids, 1):
        if not isinstance(grid, dict) or not grid:
            raise UserError(f"{source}: grid {i} must be a mapping of dotted keys to lists, e.g. method.name: [lora, prefix]")
        for key, values in flatten(grid).items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{source}: grid {i} key {key}: expected a non-empty list of values, got {values!r}")
    points = tree.get("points") or []
    if not isinstance(points, list) or not all(isinstance(p, dict) and p for p in points):
        raise UserError(f"{source}: points must be a list of mappings of dotted keys to values")
    points, point_resources = _split_resources(points, "points", source, start=0)
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
        base=flatten(base),
        grids=[flatten(g) for g in grids],
        points=[flatten(p) for p in points],
        train_classifier=clf.get("train", True),
        classifier_set=flatten(clf.get("set") or {}),
        launcher=tree.get("launcher") or None,
        resources=_section(tree, "resources", RESOURCE_KEYS, source),
        grid_resources=grid_resources,
        point_resources=point_resources,
        ray=_section(tree, "ray", RAY_KEYS, source),
        slurm=_section(tree, "slurm", SLURM_KEYS, source),
    )


def _section(tree: dict[str, Any], key: str, known: tuple[str, ...], source: str) -> dict[str, Any]:
    """A small mapping section (resources, ray, slurm): known keys only; values are checked where they are used."""
    value = tree.get(key) or {}
    bad = sorted(set(value) - set(known)) if isinstance(value, dict) else ["(not a mapping)"]
    if bad:
        raise UserError(f"{source}: {key}: unknown key(s) {', '.join(bad)}; it takes {', '.join(known)}")
    if key == "resources":
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "gpus" and v != int(v)):
                raise UserError(f"{source}: resources.{k}: expected a number >= 0 (gpus a whole number), got {v!r}")
    return dict(value)


def _split_resources(items: list[Any], what: str, source: str, start: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """Take each grid's or point's own ``resources:`` mapping out of its config keys."""
    kept, resources = [], []
    for i, item in enumerate(items, start):
        if isinstance(item, dict) and "resources" in item:
            item = dict(item)
            resources.append(_section(item, "resources", RESOURCE_KEYS, f"{source}: {what} {i}"))
            del item["resources"]
            if not item:
                raise UserError(f"{source}: {what} {i} holds only resources:; give it config keys too")
        else:
            resources.append({})
        kept.append(item)
    return kept, resources


def load_sweep(path: Path) -> SweepSpec:
    return spec_from_dict(read_yaml_mapping(path), str(path))


# -- expansion ----------------------------------------------------------------------------------------
def _raw_points(spec: SweepSpec) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(origin, the point's own values, its resources)."""
    for i, grid in enumerate(spec.grids, 1):
        keys = list(grid)
        own = spec.grid_resources[i - 1] if i <= len(spec.grid_resources) else {}
        for combo in itertools.product(*(grid[k] for k in keys)):
            yield f"grid {i}", dict(zip(keys, combo)), {**spec.resources, **own}
    for i, values in enumerate(spec.points):
        own = spec.point_resources[i] if i < len(spec.point_resources) else {}
        yield f"points[{i}]", dict(values), {**spec.resources, **own}


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
    layers = Layers().add(spec.base, "base").add_files(config_files).add_overrides(overrides)
    _check_keys(spec, layers.origin)
    built: list[tuple[str, dict[str, Any], Config]] = []
    resources: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for where, values, needs in _raw_points(spec):
        try:
            cfg = layers.copy().add(values, where).build()
        except UserError as e:
            msg = f"{where} {_short_values(values)}: {e}"
            if msg not in problems:
                problems.append(msg)
            continue
        built.append((where, values, cfg))
        resources.setdefault(cfg.fingerprint(), needs)
    if problems:
        raise UserError(f"{spec.source}: {len(problems)} invalid point(s), nothing was run — " + " | ".join(problems))
    unique: dict[str, tuple[str, dict[str, Any], Config]] = {}
    for item in built:
        unique.setdefault(item[2].fingerprint(), item)  # the same resolved config twice runs once
    kept = list(unique.values())
    names = point_names([(v, c) for _, v, c in kept])
    return [Point(n, where, values, cfg, resources[cfg.fingerprint()]) for n, (where, values, cfg) in zip(names, kept)]


def _short_values(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in values.items()) + "}" if values else "{}"

