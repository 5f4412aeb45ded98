"""A saved classifier: its folder, its metadata, and the ``Scorer`` that judges generated responses.

A classifier folder is a standard Hugging Face sequence-classification model (safetensors + tokenizer)
plus ``ctrldial_classifier.json``, written last, so a folder with that file is a complete classifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctrldial.classifier.data import encode, pad_batch, sorted_batches
from ctrldial.data.examples import label_names
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError

METADATA_FILE = "ctrldial_classifier.json"


def read_metadata(folder: Path) -> dict[str, Any]:
    """The classifier's metadata, or UserError if ``folder`` is not a ctrldial classifier."""
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise UserError(
            f"not a ctrldial classifier: {folder} has no {METADATA_FILE}; train one with `ctrldial classifier train --out DIR`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = {} if "members" in meta else json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"not a ctrldial classifier: {folder}: unreadable metadata or config.json ({e})") from None
    if "members" not in meta and not any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
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


def batched_probs(model, features: list[dict[str, list[int]]], pad_id: int, batch_size: int):
    """Softmax probabilities for encoded inputs, in their order: length-sorted batches, no gradient."""
    import torch

    probs = torch.empty((len(features), model.config.num_labels))
    with torch.inference_mode():
        for idx in sorted_batches([len(f["input_ids"]) for f in features], batch_size):
            batch = pad_batch([features[i] for i in idx], pad_id)
            logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits
            probs[idx] = logits.float().softmax(-1).cpu()
    return probs


class Scorer:
    """Judge texts with a trained classifier: predicted label names and softmax confidences."""

    def __init__(self, model, tokenizer, meta: dict[str, Any], path: Path):
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.path = path
        self.labels: list[str] = list(meta["labels"])
        self.attribute: str = meta["attribute"]
        self.input: str = meta["input"]
        """`none`: the utterance alone; `previous`: (earlier turns, utterance) pairs."""
        self.context_turns: int = context_turns(meta)
        self.max_length: int = meta["max_length"]

    @classmethod
    def load(cls, path: str | Path, attribute: str | None = None, device: str | None = None) -> Scorer:
        """Load a classifier folder; with ``attribute``, refuse one trained for another attribute or label set."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta = read_metadata(path)
        if attribute is not None and attribute != meta["attribute"]:
            raise UserError(
                f"classifier {path} judges attribute {meta['attribute']!r}, but attribute {attribute!r} was asked for; "
                f"pass a classifier trained with --set data.attribute={attribute}"
            )
        try:
            expected = label_names(meta["attribute"])
        except ValueError:
            raise UserError(f"classifier {path}: unknown attribute {meta['attribute']!r} in {METADATA_FILE}") from None
        if meta["labels"] != expected:
            raise UserError(
                f"classifier {path}: labels {meta['labels']} do not match attribute {meta['attribute']!r} "
                f"({expected}); retrain it with this version of ctrldial"
            )
        if "members" in meta:  # an ensemble (classifier/ensemble.py): the members load themselves
            from ctrldial.classifier.ensemble import Ensemble

            return Ensemble.load_members(path, meta, device)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
        if model.config.num_labels != len(expected):
            raise UserError(f"classifier {path}: model has {model.config.num_labels} outputs for {len(expected)} labels")
        return cls(model, AutoTokenizer.from_pretrained(str(path)), meta, path)

    def predict_proba(self, texts: list[str], contexts: list[str | list[str]] | None = None, batch_size: int = 64):
        """Softmax probabilities, one row per text in the given order (a float tensor on the CPU).

        ``contexts[i]`` is what came before ``texts[i]``: the dialogue's earlier turns, oldest first (a list;
        the classifier reads its last ``context_turns``), or just the previous utterance (a string; "" or
        [] for none). A classifier trained on the utterance alone ignores contexts; one trained with
        context=previous requires them.
        """
        import torch

        turns = None
        if self.input == "previous":
            if contexts is None:
                raise UserError(
                    f"classifier {self.path} was trained with classifier.context=previous: pass contexts "
                    "(the earlier turns of each text, [] for none)"
                )
            if len(contexts) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
            as_lists = ((([c] if c else []) if isinstance(c, str) else list(c)) for c in contexts)
            turns = [c[-self.context_turns :] for c in as_lists]
        if self.meta.get("normalize", False):
            # the judge was trained on normalised text; normalising is idempotent, so natural text passes unchanged
            texts = [normalize_text(t) for t in texts]
            turns = None if turns is None else [[normalize_text(u) for u in c] for c in turns]
        if not texts:
            return torch.empty((0, len(self.labels)))
        features = encode(self.tokenizer, texts, turns, self.max_length)
        return batched_probs(self.model, features, self.tokenizer.pad_token_id, batch_size)

    def score(self, texts: list[str], contexts: list[str | list[str]] | None = None, batch_size: int = 64) -> tuple[list[str], list[float]]:
        """Predicted label names and their softmax confidences, in the order of ``texts``."""
        conf, pred = self.predict_proba(texts, contexts, batch_size).max(-1)
        return [self.labels[i] for i in pred.tolist()], conf.tolist()
