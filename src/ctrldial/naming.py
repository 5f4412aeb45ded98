"""Short, filesystem-safe names for configs: a sweep's run folders and a report's row variants.

A name says only what varies: `method=lora,model=dialogpt-small,seed=0`. Both the sweep (folder names)
and the report (a row's `label_position=first`) use these, so a folder and its row read alike.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ctrldial.config import Config, flat_config

MAX_NAME = 120
"""Longest folder name; a longer one is cut and given a hash suffix."""


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
    flats = [flat_config(c) for _, c in points]
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
