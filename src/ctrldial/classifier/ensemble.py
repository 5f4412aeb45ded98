"""`ctrldial classifier ensemble`: several trained classifiers of one attribute saved as one judge folder.

An ensemble folder holds its members (copied, so the folder is self-contained) under ``members/`` and a
``ctrldial_classifier.json`` whose ``members`` key lists them; ``Scorer.load`` returns an ``Ensemble``
(scorer.py) for it, which judges by the mean of the members' softmax probabilities.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ctrldial.classifier.folder import METADATA_FILE, check_out, context_turns, read_metadata
from ctrldial.errors import UserError
from ctrldial.record import write_json

MEMBERS_DIR = "members"


def make_ensemble(members: list[Path], out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Copy trained classifiers into ``out`` as one ensemble judge; the metadata file is written last."""
    if len(members) < 2:
        raise UserError(f"an ensemble needs at least 2 classifier folders, got {len(members)}")
    metas = [read_metadata(m) for m in members]
    for m, meta in zip(members, metas):
        if "members" in meta:
            raise UserError(f"{m} is already an ensemble; pass its members ({m}/{MEMBERS_DIR}/*) instead")
        if (meta["attribute"], meta["labels"]) != (metas[0]["attribute"], metas[0]["labels"]):
            raise UserError(
                f"{m} judges {meta['attribute']!r} {meta['labels']}, but {members[0]} judges "
                f"{metas[0]['attribute']!r} {metas[0]['labels']}: an ensemble's members judge the same labels"
            )
    check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA_FILE).unlink(missing_ok=True)  # an overwritten folder is no classifier until complete
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        names = []
        for i, m in enumerate(members):
            shutil.copytree(m, staging / str(i), ignore=shutil.ignore_patterns(".partial-*", "eval*", "confusion*"))
            names.append(f"{MEMBERS_DIR}/{i}")
        shutil.rmtree(out / MEMBERS_DIR, ignore_errors=True)
        os.replace(staging, out / MEMBERS_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    turns = [context_turns(meta) for meta in metas]
    meta = {
        "format_version": 1,
        "attribute": metas[0]["attribute"],
        "labels": metas[0]["labels"],
        "input": "previous" if max(turns) else "none",
        "context_turns": max(turns),
        "max_length": max(meta["max_length"] for meta in metas),
        "members": names,
        "member_sources": [str(m.resolve()) for m in members],
        "member_inputs": [{"input": meta["input"], "context_turns": t} for meta, t in zip(metas, turns)],
        "member_validation_metrics": [meta.get("validation_metrics") for meta in metas],
    }
    write_json(out / METADATA_FILE, meta)
    print(f"ensemble of {len(members)} classifiers saved to {out}")
    return meta
