"""Dialogues → classifier examples → token ids → dynamically padded batches (grouped by length in ctrldial.batching).

Every utterance of a split is one example, the first of each dialogue included (its previous utterance
is empty). The same ``encode`` serves training and scoring, so the judge always sees its inputs in the
form it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ctrldial.data.corpus import Corpus
from ctrldial.data.examples import label_names
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError

ATTRIBUTES = ("act", "emotion")
"""Attributes one classifier can judge; `act+emotion` takes one classifier per attribute."""


@dataclass(frozen=True)
class UtteranceExample:
    text: str
    history: tuple[str, ...]  # every earlier utterance of the dialogue, oldest first; () for the first
    label: int  # index into label_names(attribute)

    @property
    def previous(self) -> str:
        """The utterance just before this one ("" for the first of a dialogue)."""
        return self.history[-1] if self.history else ""


def check_attribute(attribute: str) -> list[str]:
    """The attribute's label names, or a UserError saying what a classifier can be trained for."""
    if attribute == "act+emotion":
        raise UserError(
            "data.attribute=act+emotion: a classifier judges one attribute; train one with --set data.attribute=act "
            "and one with --set data.attribute=emotion"
        )
    if attribute not in ATTRIBUTES:
        raise UserError(f"data.attribute={attribute!r}: unknown attribute; a classifier is trained for one of {', '.join(ATTRIBUTES)}")
    return label_names(attribute)


def dialogue_half(dialogues: list, which: str) -> list:
    """``all``, or the ``first_half`` / ``second_half`` of the dialogues in corpus order (disjoint, together all)."""
    if which == "all":
        return list(dialogues)
    cut = (len(dialogues) + 1) // 2
    return list(dialogues[:cut] if which == "first_half" else dialogues[cut:])


def utterance_examples(corpus: Corpus, split: str, attribute: str, normalize: bool, dialogues: str = "all") -> list[UtteranceExample]:
    """Every utterance of ``split`` (of ``dialogues``: all, first_half, second_half) with its history and label, in corpus order."""
    out = []
    for d in dialogue_half(corpus.splits[split], dialogues):
        utts = [normalize_text(u) for u in d.utterances] if normalize else d.utterances
        labels = d.acts if attribute == "act" else d.emotions
        for i, (text, label) in enumerate(zip(utts, labels)):
            out.append(UtteranceExample(text, tuple(utts[:i]), label))
    return out


def seeded_subset(examples: list[UtteranceExample], n: int | None, seed: int) -> list[UtteranceExample]:
    """At most ``n`` examples drawn with ``seed``, kept in corpus order (so the fingerprint names the set, not a shuffle)."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def fingerprint(examples: list[UtteranceExample], labels: list[str], turns: int = 1) -> str:
    """sha256 of the texts, their last ``turns`` previous utterances and label names: the exact data a classifier saw.

    ``turns=1`` hashes (previous utterance, text, label), as every classifier before ``context_turns`` did.
    """
    h = hashlib.sha256()
    for ex in examples:
        context = ex.previous if turns == 1 else list(ex.history[-turns:])
        h.update(json.dumps([context, ex.text, labels[ex.label]]).encode())
        h.update(b"\n")
    return h.hexdigest()


def encode(
    tokenizer, texts: list[str], contexts: list[list[str]] | None, max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids (and token type ids) per input, unpadded: the utterance alone, or (context, utterance) as a pair.

    ``contexts[i]`` holds the turns before ``texts[i]``, oldest first (already cut to the classifier's
    ``context_turns``). One turn is the first segment as it is; several are joined by the tokenizer's
    separator token, and when the pair would pass ``max_length`` the oldest turns are dropped first (the
    utterance just before the response is the one that decides most acts). What still does not fit is
    trimmed by ``longest_first`` truncation.
    """
    if contexts is None:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(_fit_contexts(tokenizer, contexts, texts, max_length), texts, truncation="longest_first", max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def _fit_contexts(tokenizer, contexts: list[list[str]], texts: list[str], max_length: int) -> list[str]:
    """The first segment of each pair: the most recent turns that fit beside the utterance (at least one)."""
    first = [c[0] if len(c) == 1 else "" for c in contexts]
    multi = [i for i, c in enumerate(contexts) if len(c) > 1]
    if not multi:
        return first
    strings = sorted({s for i in multi for s in (*contexts[i], texts[i])})
    length = dict(zip(strings, map(len, tokenizer(strings, add_special_tokens=False)["input_ids"])))
    sep = f" {tokenizer.sep_token or tokenizer.eos_token} "
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    for i in multi:
        turns = contexts[i]
        budget = max_length - length[texts[i]] - specials
        keep, used = 1, length[turns[-1]]
        while keep < len(turns) and used + 1 + length[turns[-1 - keep]] <= budget:  # +1: the separator
            used += 1 + length[turns[-1 - keep]]
            keep += 1
        first[i] = sep.join(turns[-keep:])
    return first


def pad_batch(features: list[dict[str, list[int]]], pad_id: int) -> dict:
    """Dynamic padding: pad to the longest input of this batch, not to max_length."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": torch.full((len(features), width), pad_id, dtype=torch.long)}
    batch["attention_mask"] = torch.zeros((len(features), width), dtype=torch.long)
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        batch["input_ids"][row, :n] = torch.tensor(f["input_ids"])
        batch["attention_mask"][row, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][row, :n] = torch.tensor(f["token_type_ids"])
    return batch


def read_labelled(path: Path, labels: list[str]) -> list[dict]:
    """Hand-labelled responses, ``{"context": [...], "response": "...", "label": "..."}`` per line (other keys kept).

    A bad line is a one-line error ``FILE:LINE: what is wrong``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass a JSONL file of {{context, response, label}} lines")
    from ctrldial.record import jsonl_objects

    items = []
    for where, item in jsonl_objects(path, '{"context": [...], "response": "...", "label": "inform"}'):
        context = item.get("context", [])
        if isinstance(context, str):
            context = [context]
        if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
            raise UserError(f"{where}: `context` must be a list of turns (strings), oldest first")
        if not isinstance(item.get("response"), str):
            raise UserError(f"{where}: `response` must be a string (the generated reply)")
        if item.get("label") not in labels:
            raise UserError(f"{where}: `label` {item.get('label')!r} is not one of {', '.join(labels)}")
        items.append({**item, "context": context})
    if not items:
        raise UserError(f"{path}: no labelled lines")
    return items


def labelled_examples(path: Path, labels: list[str], repeats: int = 1) -> list[UtteranceExample]:
    """``read_labelled`` items as training examples, each ``repeats`` times (generated text is not normalised: it is natural already)."""
    items = read_labelled(path, labels)
    return [UtteranceExample(it["response"], tuple(it["context"]), labels.index(it["label"])) for it in items for _ in range(repeats)]


MAX_VALID_UTTERANCES = 2000  # validation utterances checked during training (a seeded sample of the split)


@dataclass
class TrainingData:
    """What a classifier learns from: the corpus, all candidate training utterances, the sample (+ hand labels), validation."""

    corpus: Corpus
    available: list[UtteranceExample]
    train: list[UtteranceExample]
    extra: list[UtteranceExample]
    valid: list[UtteranceExample]

    def describe(self, cfg, labels: list[str], turns: int) -> dict:
        """The metadata blocks every saved classifier carries: its training and validation data, and the config that chose them."""
        import dataclasses
        from collections import Counter

        c = cfg.classifier
        return {
            "train_data": {
                "source": self.corpus.source,
                "utterances": len(self.train),
                "available": len(self.available),
                "split": c.train_split,
                "dialogues": c.train_dialogues,
                "extra_train": {"path": c.extra_train, "examples": len(self.extra) // c.extra_repeats, "repeats": c.extra_repeats}
                if self.extra else None,
                "label_counts": {labels[k]: v for k, v in sorted(Counter(ex.label for ex in self.train).items())},
                "fingerprint": fingerprint(self.train, labels, turns),
            },
            "validation_data": {"split": "train" if c.train_split == "validation" else "validation", "utterances": len(self.valid), "dedup": cfg.data.dedup, "fingerprint": fingerprint(self.valid, labels, turns)},
            "train_config": {
                "classifier": dataclasses.asdict(c),
                "data": {k: getattr(cfg.data, k) for k in ("path", "attribute", "max_train_examples", "dedup", "normalize", "on_error")},
            },
        }


def training_data(cfg, labels: list[str]) -> TrainingData:
    """The examples every classifier kind trains on, from ``cfg.data`` and ``cfg.classifier`` (one definition for all kinds)."""
    from ctrldial.data.corpus import load_corpus

    c = cfg.classifier
    corpus = load_corpus(cfg.data.path, cfg.data.on_error, dedup=cfg.data.dedup)
    # a classifier learning from the validation split (a reranker beside a train-split judge) checks itself on train
    check_split = "train" if c.train_split == "validation" else "validation"
    available = utterance_examples(corpus, c.train_split, cfg.data.attribute, cfg.data.normalize, c.train_dialogues)
    extra = labelled_examples(Path(c.extra_train), labels, c.extra_repeats) if c.extra_train else []
    train = seeded_subset(available, cfg.data.max_train_examples, c.seed) + extra
    if not train:
        raise UserError(f"data.path={cfg.data.path}: the {c.train_split} split has no utterances to train the classifier on")
    valid = seeded_subset(utterance_examples(corpus, check_split, cfg.data.attribute, cfg.data.normalize), MAX_VALID_UTTERANCES, c.seed)
    if not valid:
        raise UserError(f"data.path={cfg.data.path}: the {check_split} split has no utterances (after data.dedup)")
    return TrainingData(corpus, available, train, extra, valid)


def check_contexts(path, texts: list[str], contexts) -> None:
    """A classifier trained with context=previous needs one context per text."""
    if contexts is None:
        raise UserError(f"classifier {path} was trained with classifier.context=previous: pass contexts (the earlier turns of each text, [] for none)")
    if len(contexts) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")


def class_weights(examples: list[UtteranceExample], n_labels: int, power: float = 1.0) -> list[float]:
    """Inverse class frequency, (N / (K · n_c)) ** power: at power 1 each class contributes equally to the loss
    (classifier.class_weights, classifier.class_weight_power)."""
    from collections import Counter

    counts = Counter(ex.label for ex in examples)
    return [(len(examples) / (n_labels * max(counts[c], 1))) ** power for c in range(n_labels)]


def step_budget(n_examples: int, batch_size: int, epochs: float, max_steps: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps) of a classifier's training: ``max_steps`` if set, else ``epochs`` epochs."""
    import math

    per_epoch = math.ceil(n_examples / batch_size)
    return per_epoch, max_steps or max(1, math.ceil(epochs * per_epoch))
