"""`ctrldial tune`'s search space: ``--space KEY=DIST`` items, each one config key and its Optuna distribution.

    --space 'train.lr=loguniform(1e-5,1e-1)'   a float, log-uniform in [a, b]
    --space 'train.warmup_ratio=uniform(0,0.2)' a float, uniform in [a, b]
    --space 'method.r=int(4,64)'               an integer in [a, b]
    --space 'method.name=choice(lora,ia3)'      one of the values, each read like a --set value

Every item is checked against the base config before anything runs (``check_space``): an unknown key, a
float distribution on an integer key, or a bound the config rejects is one line naming the flag.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from ctrldial.config import Config, config_from_flat, flat_config, parse_override, valid_keys
from ctrldial.errors import UserError

DISTRIBUTIONS = {
    "loguniform": "loguniform(a,b): a float, log-uniform, 0 < a < b",
    "uniform": "uniform(a,b): a float, a < b",
    "int": "int(a,b): an integer, a < b",
    "choice": "choice(x,y,...): one of the values",
}
EXAMPLE = "e.g. --space 'train.lr=loguniform(1e-5,1e-1)'"
FIXED = {"eval.split": "tuning always evaluates validation contexts"}
"""Keys a trial never varies."""
_ITEM = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Dimension:
    """One searched key: ``train.lr`` ~ ``loguniform(1e-05, 0.1)``."""

    key: str
    kind: str
    args: tuple[Any, ...]
    text: str
    """The --space item as given (for messages and the study's record of its space)."""

    def suggest(self, trial) -> Any:
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, self.args[0], self.args[1], log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, self.args[0], self.args[1])
        if self.kind == "int":
            return trial.suggest_int(self.key, self.args[0], self.args[1])
        return trial.suggest_categorical(self.key, list(self.args))

    def probes(self) -> list[Any]:
        """Values that show whether the key takes this distribution: both bounds, a non-integer inside, every choice."""
        if self.kind == "choice":
            return list(self.args)
        lo, hi = self.args
        if self.kind == "int":
            return [lo, hi]
        return [lo, hi, lo + (hi - lo) * 0.381966 if self.kind == "uniform" else lo * (hi / lo) ** 0.381966]


def _bad(item: str, why: str) -> UserError:
    return UserError(f"--space {item!r}: {why}; {EXAMPLE} (distributions: {'; '.join(DISTRIBUTIONS.values())})")


def _number(text: str, item: str, integer: bool) -> float | int:
    try:
        return int(text.replace("_", "")) if integer else float(text)
    except ValueError:
        raise _bad(item, f"{text.strip()!r} is not {'an integer' if integer else 'a number'}") from None


def parse_dimension(item: str) -> Dimension:
    m = _ITEM.match(item)
    if not m:
        raise _bad(item, "expected KEY=DIST(ARGS)")
    key, kind, raw = m.group(1), m.group(2), m.group(3)
    if kind not in DISTRIBUTIONS:
        raise _bad(item, f"unknown distribution {kind!r}")
    known = valid_keys()
    if key not in known:
        close = difflib.get_close_matches(key, known, n=3)
        raise _bad(item, f"unknown config key {key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if key in FIXED:
        raise _bad(item, f"{key} cannot be searched: {FIXED[key]}")
    parts = [p.strip() for p in raw.split(",")]
    if kind == "choice":
        if not raw.strip() or not all(parts):
            raise _bad(item, "choice needs values separated by commas, e.g. choice(lora,ia3)")
        return Dimension(key, kind, tuple(_choice_value(p) for p in parts), item.strip())
    if len(parts) != 2:
        raise _bad(item, f"{kind} takes two bounds, got {len(parts)}")
    lo, hi = (_number(p, item, kind == "int") for p in parts)
    if not lo < hi or (kind == "loguniform" and lo <= 0):
        raise _bad(item, f"{kind} needs {'0 < ' if kind == 'loguniform' else ''}a < b, got a={lo:g}, b={hi:g}")
    return Dimension(key, kind, (lo, hi), item.strip())


def _choice_value(text: str) -> Any:
    """A choice as a --set value would read it; Optuna stores only None, bool, int, float and str."""
    value = parse_override(f"x={text}")[1]
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        raise UserError(f"--space choice value {text!r}: only scalars can be chosen (a string, number, true/false or null)")
    return value


def parse_space(items: list[str] | None) -> list[Dimension]:
    """Every --space item, parsed; a key given twice or no item at all is an error."""
    if not items:
        raise UserError(f"ctrldial tune: give the search space with --space KEY=DIST (repeatable), {EXAMPLE}")
    dims = [parse_dimension(item) for item in items]
    seen: set[str] = set()
    for d in dims:
        if d.key in seen:
            raise _bad(d.text, f"{d.key} is searched twice; give each key one --space")
        seen.add(d.key)
    return dims


def with_params(base: Config, params: dict[str, Any], fixed: dict[str, Any] | None = None) -> Config:
    """``base`` with a trial's ``params`` and the ``fixed`` dotted keys applied; validated."""
    flat = {**flat_config(base), **params, **(fixed or {})}
    return config_from_flat(flat, {k: "--space" for k in params})


def check_space(dims: list[Dimension], base: Config) -> None:
    """Build the base config at every probe value of every dimension: types and value rules fail here, before a trial."""
    for d in dims:
        for value in d.probes():
            try:
                with_params(base, {d.key: value})
            except UserError as e:
                hint = "; use int(a,b) for an integer key" if d.kind in ("uniform", "loguniform") and "integer" in str(e) else ""
                raise _bad(d.text, f"{d.key}={value!r} is rejected ({str(e).removeprefix('config: ')}){hint}") from None
