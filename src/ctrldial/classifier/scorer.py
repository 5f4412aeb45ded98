"""The judges: a saved classifier (``Scorer``) or several of one attribute (``Ensemble``), loaded from a folder.

``Scorer.load`` reads a classifier folder (folder.py) and returns a ``Scorer``, or an ``Ensemble`` for an
ensemble folder (built by ensemble.py), so `classifier eval`, `run` and `rescore` take either. Both score
texts as predicted label names and softmax confidences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrldial.batching import length_sorted_batches
from ctrldial.classifier.data import check_contexts, encode, pad_batch
from ctrldial.classifier.folder import METADATA_FILE, context_turns, read_metadata
from ctrldial.classifier.ngram import KIND, NgramScorer
from ctrldial.data.examples import label_names
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError


def batched_probs(model, features: list[dict[str, list[int]]], pad_id: int, batch_size: int):
    """Softmax probabilities for encoded inputs, in their order: length-sorted batches, no gradient."""
    import torch

    from ctrldial.packed import packed_linears

    probs = torch.empty((len(features), model.config.num_labels))
    with torch.inference_mode(), packed_linears(model):
        for idx in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
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
    def load(cls, path: str | Path, attribute: str | None = None, device: str | None = None) -> Scorer | NgramScorer:
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
        if "members" in meta:  # an ensemble folder: the members load themselves
            return Ensemble.load_members(path, meta, device)
        if meta.get("kind") == KIND:  # the hashed n-gram judge: its own weights file, always on the CPU
            return NgramScorer.load(path, meta)
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
            check_contexts(self.path, texts, contexts)
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


class Ensemble(Scorer):
    """Several classifiers of one attribute judged as one: the mean of their softmax probabilities.

    Each member reads its own input shape (utterance alone, or its own number of earlier turns); ``score``
    and the attributes a caller reads are a Scorer's.
    """

    def __init__(self, members: list[Scorer], meta: dict[str, Any], path: Path):
        self.members = members
        self.meta = meta
        self.path = path
        self.labels = list(meta["labels"])
        self.attribute = meta["attribute"]
        self.input = meta["input"]
        self.context_turns = meta["context_turns"]
        self.max_length = meta["max_length"]

    @classmethod
    def load_members(cls, path: Path, meta: dict[str, Any], device: str | None = None) -> Ensemble:
        members = [Scorer.load(path / m, meta["attribute"], device) for m in meta["members"]]
        for m in members:
            if m.labels != meta["labels"]:
                raise UserError(f"ensemble {path}: member {m.path} has labels {m.labels}, the ensemble {meta['labels']}")
        return cls(members, meta, path)

    def predict_proba(self, texts, contexts=None, batch_size: int = 64):
        if self.input == "previous" and contexts is None:
            raise UserError(
                f"classifier {self.path} has members trained with classifier.context=previous: pass contexts "
                "(the earlier turns of each text, [] for none)"
            )
        return sum(m.predict_proba(texts, contexts, batch_size) for m in self.members) / len(self.members)
