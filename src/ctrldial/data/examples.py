"""Dialogues → examples: every utterance at position ≥ 1 is a target, with its previous turns as context."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ctrldial.config import DataConfig
from ctrldial.data.corpus import ACTS, EMOTIONS, Corpus, Dialogue, load_corpus
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError
from ctrldial.record import jsonl_objects


@dataclass(frozen=True)
class Example:
    dialogue_id: str
    turn: int
    context: tuple[str, ...]  # oldest first, at most max_context_turns
    response: str
    act: int
    emotion: int


def label_names(attribute: str) -> list[str]:
    """Labels a response can be asked for, in a fixed order."""
    if attribute == "act":
        return list(ACTS)
    if attribute == "emotion":
        return list(EMOTIONS)
    if attribute == "act+emotion":
        return [f"{a}+{e}" for a in ACTS for e in EMOTIONS]
    raise ValueError(f"unknown attribute {attribute!r}")


def label_of(ex: Example, attribute: str) -> str:
    if attribute == "act":
        return ACTS[ex.act]
    if attribute == "emotion":
        return EMOTIONS[ex.emotion]
    return f"{ACTS[ex.act]}+{EMOTIONS[ex.emotion]}"


def dialogue_examples(d: Dialogue, max_context_turns: int, normalize: bool) -> list[Example]:
    utts = [normalize_text(u) for u in d.utterances] if normalize else list(d.utterances)
    out = []
    for t in range(1, len(utts)):
        ctx = tuple(utts[max(0, t - max_context_turns) : t]) if max_context_turns > 0 else ()
        out.append(Example(d.id, t, ctx, utts[t], d.acts[t], d.emotions[t]))
    return out


def build_examples(corpus: Corpus, split: str, cfg: DataConfig) -> list[Example]:
    return [ex for d in corpus.splits[split] for ex in dialogue_examples(d, cfg.max_context_turns, cfg.normalize)]


def sample_examples(
    examples: list[Example], n: int | None, seed: int, balance_by: str | None = None
) -> list[Example]:
    """A fixed, seeded sample of ``n`` examples; with ``balance_by`` an equal share per label where possible."""
    rng = random.Random(seed)
    if n is None or n >= len(examples):
        out = list(examples)
        rng.shuffle(out)
        return out
    if not balance_by:
        return rng.sample(examples, n)
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[label_of(ex, balance_by)].append(ex)
    for g in groups.values():
        rng.shuffle(g)
    # round-robin over labels: small classes are used up first, the rest fill the budget
    out, keys, i = [], sorted(groups), 0
    while len(out) < n:
        progressed = False
        for k in keys:
            if i < len(groups[k]) and len(out) < n:
                out.append(groups[k][i])
                progressed = True
        if not progressed:
            break
        i += 1
    rng.shuffle(out)
    return out


def fingerprint(examples: list[Example]) -> str:
    """Content hash of examples: a record names exactly the data that produced it."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.dialogue_id, ex.turn, ex.context, ex.response, ex.act, ex.emotion]).encode())
    return h.hexdigest()[:16]


EXTRA_EXAMPLE = '{"context": ["Shall we go?"], "response": "Sure, I\'ll get my coat.", "act": "commissive"}'


def read_extra(path: Path, attribute: str, max_context_turns: int) -> list[Example]:
    """``data.extra_train``: examples written by the user (e.g. counterfactual responses), one JSON object per line.

    Each names the labels its attribute needs (``act``, ``emotion`` or both, by name); a missing or unknown one,
    an empty response or a context that is not a list of strings stops with ``FILE:LINE`` and the fix."""
    if not path.is_file():
        raise UserError(f"data.extra_train={path}: no such file; give a JSONL file of examples, e.g. {EXTRA_EXAMPLE}")
    need = {"act": ("act",), "emotion": ("emotion",), "act+emotion": ("act", "emotion")}[attribute]
    names = {"act": ACTS, "emotion": EMOTIONS}
    out = []
    for where, item in jsonl_objects(path, EXTRA_EXAMPLE):
        ctx, resp = item.get("context"), item.get("response")
        if not isinstance(ctx, list) or not all(isinstance(t, str) for t in ctx):
            raise UserError(f"{where}: \"context\" must be a list of turns (strings), oldest first; e.g. {EXTRA_EXAMPLE}")
        if not isinstance(resp, str) or not resp.strip():
            raise UserError(f"{where}: \"response\" must be a non-empty string; e.g. {EXTRA_EXAMPLE}")
        ids = {}
        for key in need:
            value = item.get(key)
            if value not in names[key]:
                raise UserError(f"{where}: \"{key}\" must be one of {', '.join(names[key])} (data.attribute={attribute}), got {value!r}")
            ids[key] = names[key].index(value)
        turns = tuple(ctx[-max_context_turns:]) if max_context_turns > 0 else ()
        out.append(Example(f"extra:{path.name}", int(where.rsplit(":", 1)[1]), turns, resp.strip(), ids.get("act", -1), ids.get("emotion", -1)))
    if not out:
        raise UserError(f"data.extra_train={path}: no examples in the file; write one per line, e.g. {EXTRA_EXAMPLE}")
    return out


@dataclass
class Splits:
    """What one run reads: the corpus and its seeded samples of training, validation and evaluation examples."""

    corpus: Corpus
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    """The contexts generated for and scored: test examples, or validation ones when ``eval_split`` says so."""
    eval_split: str = "test"


def load_splits(cfg: DataConfig, max_train_examples: int | None = None, eval_split: str = "test") -> Splits:
    """The corpus of ``cfg.path`` and the run's samples (training balanced over the label when ``cfg.balance``).

    ``max_train_examples`` overrides ``cfg.max_train_examples`` (the speed bench takes exactly steps × batch).
    ``eval_split`` (``eval.split``): ``validation`` evaluates a seeded sample of validation contexts and never
    reads a test example (``ctrldial tune``).
    """
    corpus = load_corpus(cfg.path, cfg.on_error, cfg.dedup)
    n_train = max_train_examples if max_train_examples is not None else cfg.max_train_examples
    train = sample_examples(build_examples(corpus, "train", cfg), n_train, cfg.seed, cfg.attribute if cfg.balance else None)
    if cfg.extra_train:
        train += read_extra(Path(cfg.extra_train), cfg.attribute, cfg.max_context_turns)
    valid = sample_examples(build_examples(corpus, "validation", cfg), cfg.max_valid_examples, cfg.seed)
    test = sample_examples(build_examples(corpus, eval_split, cfg), cfg.max_eval_examples, cfg.seed)
    return Splits(corpus, train, valid, test, eval_split)
