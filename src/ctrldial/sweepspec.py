"""The sweep file: its shape (``SweepSpec``) and its points, each a validated Config with a folder name.

A sweep file::

    name: my-sweep
    base: {data: {path: sample}, train: {max_steps: 50}}   # a nested config, like a --config file
    grid: {model.name: [a, b], method.name: [lora, prefix], train.seed: [0, 1]}   # Cartesian product
    grids: [{...}, {...}]                                  # more grids (optional)
    points: [{model.name: c, method.name: qlora}]          # explicit extra points (optional)
    classifier: {train: true, set: {classifier.epochs: 2}}  # the shared judge (optional)
    launcher: accelerate launch                             # one launch per point (optional)

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

SWEEP_KEYS = ("name", "base", "grid", "grids", "points", "classifier", "launcher")
CLASSIFIER_KEYS = ("train", "set")


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
def spec_from_dict(tree: dict[str, Any], source: str) -> SweepSpec:
    """Check the sweep file's shape (not the config keys: ``expand`` does that for every point at once)."""
    unknown = sorted(set(tree) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; a sweep file has {', '.join(SWEEP_KEYS)}")
    grids = ([tree["grid"]] if tree.get("grid") is not None else []) + list(tree.get("grids") or [])
    for i, grid in enumerate(grids, 1):
        if not isinstance(grid, dict) or not grid:
            raise UserError(f"{source}: grid {i} must be a mapping of dotted keys to lists, e.g. method.name: [lora, prefix]")
        for key, values in flatten(grid).items():
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
        base=flatten(base),
        grids=[flatten(g) for g in grids],
        points=[flatten(p) for p in points],
        train_classifier=clf.get("train", True),
        classifier_set=flatten(clf.get("set") or {}),
        launcher=tree.get("launcher") or None,
    )


def load_sweep(path: Path) -> SweepSpec:
    return spec_from_dict(read_yaml_mapping(path), str(path))


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
    layers = Layers().add(spec.base, "base").add_files(config_files).add_overrides(overrides)
    _check_keys(spec, layers.origin)
    built: list[tuple[str, dict[str, Any], Config]] = []
    problems: list[str] = []
    for where, values in _raw_points(spec):
        try:
            cfg = layers.copy().add(values, where).build()
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

