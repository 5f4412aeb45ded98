"""Hand labels of generated responses: draw them blind, then join the labels with the key.

``ctrldial judge draw RUNS --out DIR`` takes every ``generations.jsonl`` under RUNS (runs, evals, sweeps) and
draws, without repeats, ``--random`` responses uniformly and ``--per-verdict`` more within each verdict the judge
gave (so rare verdicts are covered), seeded. It writes

- ``DIR/blind.jsonl``: ``{id, context, response}`` in shuffled order: all the labeller reads (no method, no
  requested label, no verdict);
- ``DIR/key.jsonl``: ``{id, source, method?, requested, judge, draw, part?}``; ``source`` is
  ``<folder relative to RUNS>:<line>``, ``part`` (``dev`` / ``heldout``) is a seeded coin per item when
  ``--heldout-share`` is given.

The labeller writes ``DIR/hand-labels.jsonl`` (``{id, label, note}``, one per drawn item) from ``blind.jsonl``
alone; ``ctrldial judge join DIR --out LABELS.jsonl`` joins it with the key into the ``ctrldial judge agreement``
format (``context``, ``response``, ``label`` and the key's fields).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable

from ctrldial.errors import UserError
from ctrldial.record import jsonl_objects, write_jsonl

def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line of a JSONL file; a line that is not a JSON object is one error naming FILE:LINE."""
    return [item for _, item in jsonl_objects(Path(path), '{"id": "d000", "label": "inform", "note": "..."}')]


def pool(root: Path, folders: Iterable[Path] | None = None, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The responses that can be drawn: every non-empty generation of every ``generations.jsonl`` under ``root``
    (or under ``folders``, named relative to ``root``), minus the ``source`` values in ``exclude``."""
    skip = set(exclude)
    files = sorted(Path(root).rglob("generations.jsonl")) if folders is None else [Path(f) / "generations.jsonl" for f in folders]
    if not files:
        raise UserError(f"{root}: no generations.jsonl below it; pass a run, eval or sweep folder")
    rows = []
    for gens in files:
        for i, r in enumerate(read_jsonl(gens)):
            source = f"{gens.parent.relative_to(root).as_posix()}:{i}"
            if str(r.get("generation", "")).strip() and source not in skip:
                rows.append({"source": source, **r})
    return rows


def draw(rows: list[dict[str, Any]], n_random: int, per_verdict: int, verdicts: Iterable[str], seed: int = 0,
         prefix: str = "d", heldout_share: float | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(blind, key) pairs: ``n_random`` rows uniformly, then up to ``per_verdict`` of the rest for each verdict of
    ``verdicts`` (in that order) that the judge gave, shuffled; the part coin follows, item by item."""
    if n_random > len(rows):
        raise UserError(f"--random {n_random}: only {len(rows)} non-empty responses to draw from")
    rng = random.Random(seed)
    picked = {i: "random" for i in rng.sample(range(len(rows)), n_random)}
    for v in verdicts:
        rest = [i for i, r in enumerate(rows) if r.get("predicted") == v and i not in picked]
        picked.update((i, "stratified") for i in rng.sample(rest, min(per_verdict, len(rest))))
    items = list(picked)
    rng.shuffle(items)
    out = []
    for n, i in enumerate(items):
        r, item = rows[i], f"{prefix}{n:03d}"
        key = {"id": item, "source": r["source"], **({"method": r["method"]} if r.get("method") is not None else {}),
               "requested": r.get("requested"), "judge": r.get("predicted"), "draw": picked[i]}
        if heldout_share is not None:
            key["part"] = "heldout" if rng.random() < heldout_share else "dev"
        out.append(({"id": item, "context": r["context"], "response": r["generation"]}, key))
    return out


def write_draw(out: Path, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """``blind.jsonl`` and ``key.jsonl`` under ``out``; an existing draw is never overwritten (its labels depend on it)."""
    out = Path(out)
    if (out / "blind.jsonl").exists():
        raise UserError(f"{out}/blind.jsonl exists: a drawn set may already be labelled; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "blind.jsonl", [b for b, _ in pairs])
    write_jsonl(out / "key.jsonl", [k for _, k in pairs])


def join(folder: Path, labels: Iterable[str]) -> list[dict[str, Any]]:
    """The labelled set: each drawn item's context, response and hand label, with its key's fields and the note."""
    folder, allowed = Path(folder), list(labels)
    blind, key = ({r["id"]: r for r in read_jsonl(folder / f"{name}.jsonl")} for name in ("blind", "key"))
    path = folder / "hand-labels.jsonl"
    if not path.exists():
        raise UserError(f"{path}: missing; write one {{\"id\", \"label\", \"note\"}} per line of blind.jsonl")
    hand: dict[str, dict[str, Any]] = {}
    for n, lab in enumerate(read_jsonl(path), 1):
        if lab.get("id") not in blind:
            raise UserError(f"{path}:{n}: id {lab.get('id')!r} is not in blind.jsonl")
        if lab.get("label") not in allowed:
            raise UserError(f"{path}:{n}: label {lab.get('label')!r} is not one of {', '.join(allowed)}")
        if lab["id"] in hand:
            raise UserError(f"{path}:{n}: a second label for {lab['id']}; keep one")
        hand[lab["id"]] = lab
    missing = sorted(set(blind) - set(hand))
    if missing:
        raise UserError(f"{path}: {len(missing)} drawn items have no label (first: {missing[0]}); label every line of blind.jsonl")
    lines = []
    for item in sorted(blind):
        k = {f: v for f, v in key[item].items() if f != "id"}
        if "judge" in k:
            k["judge_at_draw"] = k.pop("judge")
        lines.append({"context": blind[item]["context"], "response": blind[item]["response"], "label": hand[item]["label"],
                      "id": item, **k, "note": hand[item].get("note", "")})
    return lines
