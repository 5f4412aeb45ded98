"""A classifier folder on disk: its metadata file, reading it, and refusing to overwrite one by accident.

A classifier folder is a standard Hugging Face sequence-classification model (safetensors + tokenizer)
plus ``ctrldial_classifier.json``, written last, so a folder with that file is a complete classifier. An
ensemble folder holds its members under ``members/`` and lists them in the same file (ensemble.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctrldial.errors import UserError

METADATA_FILE = "ctrldial_classifier.json"


def read_metadata(folder: Path) -> dict[str, Any]:
    """The classifier's metadata, or UserError if ``folder`` is not a ctrldial classifier.

    Three kinds: a Hugging Face sequence classifier (config.json), an ensemble (``members``) and the hashed
    n-gram judge (``"kind": "ngram"``, weights in ngram.safetensors; classifier/ngram.py).
    """
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise UserError(
            f"not a ctrldial classifier: {folder} has no {METADATA_FILE}; train one with `ctrldial classifier train --out DIR`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        own_format = "members" in meta or "kind" in meta  # no Hugging Face config.json to read
        config = {} if own_format else json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"not a ctrldial classifier: {folder}: unreadable metadata or config.json ({e})") from None
    if "kind" in meta:
        if meta["kind"] != "ngram":
            raise UserError(f"not a ctrldial classifier: {folder}/{METADATA_FILE} names kind {meta['kind']!r}; known: ngram")
        if not (folder / "ngram.safetensors").is_file():  # = ngram.WEIGHTS_FILE (ngram.py imports this module)
            raise UserError(f"not a ctrldial classifier: {folder} has no ngram.safetensors beside its {METADATA_FILE}")
    elif "members" not in meta and not any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        raise UserError(
            f"not a ctrldial classifier: {folder}/config.json describes {config.get('architectures')}, not a sequence classifier"
        )
    missing = [k for k in ("attribute", "labels", "input", "max_length") if k not in meta]
    if missing:
        raise UserError(f"not a ctrldial classifier: {folder}/{METADATA_FILE} lacks {', '.join(missing)}")
    return meta


def context_turns(meta: dict[str, Any]) -> int:
    """How many earlier turns a classifier reads: 0 for the utterance alone; 1 for folders saved before the key."""
    return meta.get("context_turns", 1 if meta["input"] == "previous" else 0)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to clobber a classifier (or an unrelated non-empty folder) unless asked to: checked before training."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the classifier")
    if overwrite or not out.is_dir():
        return
    if (out / METADATA_FILE).is_file():
        raise UserError(f"--out {out} already holds a classifier; pass --overwrite to replace it, or choose another folder")
    if any(out.iterdir()):
        raise UserError(f"--out {out} is not empty and holds no classifier; choose a new folder (or --overwrite to write into it)")
