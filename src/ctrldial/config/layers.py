"""Layering: defaults ← files ← ``--set`` ← a sweep point, as flat ``section.key`` values, then one typed Config.

The public API used by the CLI, runs, sweeps and reports:

- ``flatten(tree)``: a nested config (``{"data": {"path": x}}``) as flat keys (``{"data.path": x}``);
- ``parse_override("data.path=x")``: one ``--set`` item as (key, value);
- ``Layers``: flat values with where each came from; later layers win; ``build()`` validates;
- ``build_config(files, overrides, base)``: the usual stack in one call.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from ctrldial.config.schema import Config, validate
from ctrldial.errors import UserError


def _section_types() -> dict[str, dict[str, Any]]:
    out = {}
    hints = typing.get_type_hints(Config)
    for name, cls in hints.items():
        out[name] = typing.get_type_hints(cls)
    return out


def valid_keys() -> list[str]:
    return [f"{s}.{k}" for s, fields_ in _section_types().items() for k in fields_]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a --set string) to ``tp``; raise ValueError with a reason."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"expected {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and ("yes" if value else "no") in choices:
            value = "yes" if value else "no"  # YAML 1.1 reads a bare `no` as False
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is list:
        (item,) = get_args(tp)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [_coerce(v, item, key) for v in value]
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    raise ValueError(f"unsupported type {tp}")


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set data.max_context_turns=4")
    key, raw = item.split("=", 1)
    key = key.strip()
    # YAML gives `3` → int, `1e-3` → str in YAML 1.1, `[a, b]` → list, `null` → None; coercion finishes the job.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # keep YAML's reading only for structures and null; scalars stay strings and are coerced by type
    # (YAML 1.1 would read `no` as False, which is a valid value of train.mixed_precision)
    if not isinstance(value, (dict, list)) and value is not None:
        value = raw.strip()
    return key, value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"data": {"path": x}} → {"data.path": x}; dict-valued fields stay whole."""
    out: dict[str, Any] = {}
    types_ = _section_types()
    for k, v in (tree or {}).items():
        key = f"{prefix}{k}"
        section = key.split(".")[0]
        is_dict_field = "." in key and get_origin(types_.get(section, {}).get(key.split(".", 1)[1])) is dict
        if isinstance(v, dict) and not is_dict_field and "." not in key:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_yaml_mapping(path: Path, what: str = "expected a mapping at the top level") -> dict[str, Any]:
    """A YAML file whose top level is a mapping; errors name the file (and line) and what was expected."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass an existing YAML file")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: {what}")
    return tree


@dataclass
class Layers:
    """Flat config values and the layer each came from (``base``, a file path, ``--set``, a sweep point).

    Each ``add_*`` call is a layer over the ones before: its keys win. ``build()`` turns the stack into a
    validated Config; errors name the layer a bad key came from.
    """

    flat: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def add(self, values: dict[str, Any], origin: str) -> "Layers":
        for k, v in values.items():
            self.flat[k], self.origin[k] = v, origin
        return self

    def add_tree(self, tree: dict[str, Any] | None, origin: str) -> "Layers":
        """A nested config (a YAML file's or a record's), flattened."""
        return self.add(flatten(tree), origin)

    def add_files(self, files: list[str | Path] | None) -> "Layers":
        """YAML config files in order (later files win)."""
        for f in files or []:
            p = Path(f)
            if not p.is_file():
                raise UserError(f"config file {p} not found: pass an existing YAML file to --config")
            self.add_tree(read_yaml_mapping(p, "expected a mapping of sections (data:, model:, ...) at the top level"), str(p))
        return self

    def add_overrides(self, items: list[str] | None, origin: str = "--set") -> "Layers":
        """``--set KEY=VALUE`` items."""
        return self.add(dict(parse_override(item) for item in items or []), origin)

    def copy(self) -> "Layers":
        return Layers(dict(self.flat), dict(self.origin))

    def build(self) -> Config:
        return config_from_flat(self.flat, self.origin)


def build_config(
    files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults ← ``base`` (nested dict) ← YAML files in order ← ``--set`` overrides; then validate."""
    return Layers().add_tree(base, "base").add_files(files).add_overrides(overrides).build()


def config_from_flat(flat: dict[str, Any], origin: dict[str, str] | None = None) -> Config:
    origin = origin or {}
    types_ = _section_types()
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {s: {} for s in types_}
    for key, raw in flat.items():
        where = f" (from {origin[key]})" if key in origin else ""
        parts = key.split(".", 1)
        if len(parts) != 2 or parts[0] not in types_ or parts[1] not in types_[parts[0]]:
            problems.append(f"unknown key {key!r}{where}")
            continue
        try:
            values[parts[0]][parts[1]] = _coerce(raw, types_[parts[0]][parts[1]], key)
        except ValueError as e:
            problems.append(f"{key}: {e}{where}")
    if problems:
        hint = "valid keys: " + ", ".join(valid_keys()) if any(p.startswith("unknown key") for p in problems) else ""
        raise UserError("config: " + "; ".join(problems) + (f". {hint}" if hint else ""))
    hints = typing.get_type_hints(Config)
    cfg = Config(**{s: hints[s](**v) for s, v in values.items()})
    validate(cfg)
    return cfg


def load_config_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from a record's resolved ``config`` (nested dict)."""
    return config_from_flat(flatten(d))


def flat_config(cfg: Config) -> dict[str, Any]:
    """A Config as flat ``section.key`` values."""
    return flatten(cfg.to_dict())
