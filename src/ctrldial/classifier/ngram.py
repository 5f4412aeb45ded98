"""A second judge of another architecture: hashed n-gram features → one linear layer → softmax, in plain torch.

``classifier.model=ngram`` trains it (``train_classifier`` dispatches here) and ``Scorer.load`` returns an
``NgramScorer`` for its folder, so every control figure can be reported under two judges that share no
weights or tokenizer (they do share the training utterances).

Features of an utterance: lower-cased word unigrams and bigrams, character 3–5-grams inside each word
(with ``<`` ``>`` boundary marks), whether it ends with "?" and its first word; with
``classifier.context=previous`` also the previous utterance's word unigrams (prefixed, so they hash
apart from the utterance's own), whether it ended with "?" and whether there was none (the first turn
of a dialogue). Each feature counts once (a binary bag) and is hashed with blake2b, not Python's
per-process randomised ``hash()``, into ``BUCKETS`` rows of an ``EmbeddingBag(mode="sum")`` whose width
is the number of labels: the sum of a text's rows plus a bias are its logits.

Keys it reads: classifier.lr / batch_size / epochs (where left at the MiniLM defaults, the n-gram
values in ``DEFAULTS`` stand in), max_steps, seed, class_weights, label_smoothing, train_dialogues,
extra_train / extra_repeats, data.max_train_examples, data.normalize. A linear model has no use for
max_length, warmup_ratio, eval_every or mixed_precision (it validates after every epoch, on the CPU).
The folder holds ``ngram.safetensors`` and ``ctrldial_classifier.json`` (``"kind": "ngram"``); never a pickle.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ctrldial.batching import shuffled_batches
from ctrldial.classifier.data import UtteranceExample, check_attribute, check_contexts, class_weights, step_budget, training_data
from ctrldial.classifier.folder import METADATA_FILE, check_out
from ctrldial.classifier.metrics import classification_metrics
from ctrldial.config import ClassifierConfig, Config
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError
from ctrldial.record import write_json

KIND = "ngram"
WEIGHTS_FILE = "ngram.safetensors"  # read_metadata (folder.py) checks for this name too; a test ties the two
BUCKETS = 2**20
"""Hash buckets: 1M rows × 4 acts is 16 MB of float32; collisions cost little at ~1.5M distinct n-grams."""
FEATURE_VERSION = 1
"""Bumped whenever the features below change: a folder saved with other features is refused, not misread."""
FEATURES = {
    "version": FEATURE_VERSION, "buckets": BUCKETS, "hash": "blake2b-64 mod buckets", "lowercase": True,
    "word_ngrams": [1, 2], "char_ngrams": [3, 5], "char_boundary": "<>", "ends_with_question": True, "first_word": True,
    "previous": ["word unigrams", "ends with ?", "no previous utterance"], "bag": "binary",
}
DEFAULTS = {"lr": 0.002, "batch_size": 256, "epochs": 5.0}
"""Used where classifier.lr / batch_size / epochs are left at the MiniLM defaults. Chosen on validation
(2,000 utterances, acts, context=previous, whole train split): lr 2e-3 or 3e-3 gave 80.0–80.3% accuracy and
macro-F1 0.746–0.750 at their best epoch (the 3rd of 5); 1e-3 reached as much one epoch later; 1e-2 lost
1.5 points, 5e-2 4.5 points (a sum over ~200 active features makes large steps overshoot); batch 64 no better."""
WEIGHT_DECAY = 0.0  # 0.01 made no difference (validation macro-F1 0.741 vs 0.740 at lr 1e-2)

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
"""Words (with inner apostrophes: don't, I'm) and single punctuation marks, which carry acts ("?", "!")."""
_WORD = re.compile(r"\w")


def _bucket(feature: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little") % buckets


@functools.lru_cache(maxsize=1 << 18)
def _word_ids(word: str, buckets: int) -> tuple[int, ...]:
    """A word's unigram and its character n-grams: the bulk of the hashing, cached since words repeat."""
    grams = [f"w:{word}"]
    if _WORD.match(word):  # punctuation marks get no character n-grams
        marked = f"<{word}>"
        grams += [f"c:{marked[i:i + n]}" for n in range(3, 6) for i in range(len(marked) - n + 1)]
    return tuple(_bucket(g, buckets) for g in grams)


def utterance_features(text: str, previous: str | None = None, buckets: int = BUCKETS) -> list[int]:
    """The sorted, distinct bucket ids of ``text``; ``previous`` is None without context ("" before a first turn)."""
    words = _TOKEN.findall(text.lower())
    ids = {i for w in words for i in _word_ids(w, buckets)}
    ids.update(_bucket(f"b:{a} {b}", buckets) for a, b in zip(words, words[1:]))
    if text.rstrip().endswith("?"):
        ids.add(_bucket("q:", buckets))
    if words:
        ids.add(_bucket(f"f:{words[0]}", buckets))
    if previous is not None:
        before = _TOKEN.findall(previous.lower())
        ids.update(_bucket(f"p:{w}", buckets) for w in before)
        if not before:
            ids.add(_bucket("p0:", buckets))
        if previous.rstrip().endswith("?"):
            ids.add(_bucket("pq:", buckets))
    return sorted(ids)


def pack(rows: list[list[int]]):
    """``EmbeddingBag`` inputs for rows of bucket ids: the ids laid end to end and each row's offset."""
    import torch

    offsets = torch.tensor([0, *[len(r) for r in rows[:-1]]], dtype=torch.long).cumsum(0) if rows else torch.zeros(0, dtype=torch.long)
    return torch.tensor([i for r in rows for i in r], dtype=torch.long), offsets


def new_model(buckets: int, n_labels: int):
    """The linear classifier: ``bag`` (buckets × labels, summed per text) and ``bias``; zero-initialised, so seed-free."""
    import torch

    model = torch.nn.Module()
    model.bag = torch.nn.EmbeddingBag(buckets, n_labels, mode="sum")
    torch.nn.init.zeros_(model.bag.weight)
    model.bias = torch.nn.Parameter(torch.zeros(n_labels))
    return model


def logits(model, rows: list[list[int]]):
    return model.bag(*pack(rows)) + model.bias


def batched_probs(model, rows: list[list[int]], batch_size: int = 1024):
    """Softmax probabilities per row of bucket ids, in order, without gradient."""
    import torch

    with torch.inference_mode():
        parts = [logits(model, rows[s : s + batch_size]).softmax(-1) for s in range(0, len(rows), batch_size)]
    return torch.cat(parts) if parts else torch.empty((0, model.bias.numel()))


class NgramScorer:
    """Judge texts with a saved n-gram classifier; the interface of ``Scorer`` (labels, score, predict_proba)."""

    def __init__(self, model, meta: dict[str, Any], path: Path):
        self.model = model
        self.meta = meta
        self.path = path
        self.labels: list[str] = list(meta["labels"])
        self.attribute: str = meta["attribute"]
        self.input: str = meta["input"]
        self.context_turns: int = meta["context_turns"]
        self.max_length: int = meta["max_length"]
        self.buckets: int = meta["features"]["buckets"]

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> NgramScorer:
        """The model of a folder whose metadata (already read and checked by ``Scorer.load``) says kind=ngram."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        features = meta.get("features") or {}
        if features.get("version") != FEATURE_VERSION:
            raise UserError(
                f"classifier {path}: n-gram features version {features.get('version')}, this ctrldial computes "
                f"version {FEATURE_VERSION}; retrain it with `ctrldial classifier train --set classifier.model=ngram`"
            )
        try:
            state = load_file(str(path / WEIGHTS_FILE))
        except (OSError, SafetensorError) as e:
            raise UserError(f"classifier {path}: unreadable {WEIGHTS_FILE} ({e})") from None
        model = new_model(features["buckets"], len(meta["labels"]))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != expected:
            raise UserError(f"classifier {path}: {WEIGHTS_FILE} holds {sorted(state)}, expected shapes {expected}")
        model.load_state_dict(state)
        return cls(model.eval(), meta, path)

    def predict_proba(self, texts: list[str], contexts: list[str | list[str]] | None = None, batch_size: int = 1024):
        """Softmax probabilities, one row per text (a CPU float tensor); ``contexts`` as for ``Scorer.predict_proba``."""
        previous: list[str | None] = [None] * len(texts)
        if self.input == "previous":
            check_contexts(self.path, texts, contexts)
            previous = [c if isinstance(c, str) else (c[-1] if c else "") for c in contexts]
        if self.meta.get("normalize", False):  # trained on normalised text; normalising is idempotent
            texts = [normalize_text(t) for t in texts]
            previous = [None if p is None else normalize_text(p) for p in previous]
        rows = [utterance_features(t, p, self.buckets) for t, p in zip(texts, previous)]
        return batched_probs(self.model, rows, batch_size)

    def score(
        self, texts: list[str], contexts: list[str | list[str]] | None = None, batch_size: int = 1024
    ) -> tuple[list[str], list[float]]:
        """Predicted label names and their softmax confidences, in the order of ``texts``."""
        conf, pred = self.predict_proba(texts, contexts, batch_size).max(-1)
        return [self.labels[i] for i in pred.tolist()], conf.tolist()


def hyperparameters(c: ClassifierConfig) -> dict[str, Any]:
    """classifier.lr / batch_size / epochs as given, or ``DEFAULTS`` where they still hold the MiniLM defaults."""
    minilm = ClassifierConfig()
    return {k: v if getattr(c, k) == getattr(minilm, k) else getattr(c, k) for k, v in DEFAULTS.items()}


def _save(model, meta: dict[str, Any], out: Path) -> None:
    """Weights first (staged, then moved in), the metadata last: a folder with it is a complete classifier."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / WEIGHTS_FILE), {"kind": KIND})
        (staging / WEIGHTS_FILE).chmod(0o644)  # the folder is shared
        (out / METADATA_FILE).unlink(missing_ok=True)  # an overwritten folder is no classifier until complete
        os.replace(staging / WEIGHTS_FILE, out / WEIGHTS_FILE)
        write_json(out / METADATA_FILE, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_ngram(cfg: Config, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Train the hashed n-gram classifier on every training utterance (or a seeded budget); keep the best epoch."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    c = cfg.classifier
    labels = check_attribute(cfg.data.attribute)
    if c.context == "previous" and c.context_turns != 1:
        raise UserError(
            f"classifier.context_turns={c.context_turns}: classifier.model=ngram reads only the previous utterance; "
            "leave classifier.context_turns at 1"
        )
    check_out(out, overwrite)
    hp = hyperparameters(c)

    # -- data ---------------------------------------------------------------------------------------
    # the same examples train.py builds for MiniLM, so the two judges learn from the same utterances
    data = training_data(cfg, labels)
    train, valid = data.train, data.valid
    with_previous = c.context == "previous"

    def features(examples: list[UtteranceExample]) -> list[list[int]]:
        return [utterance_features(ex.text, ex.previous if with_previous else None) for ex in examples]

    train_rows, valid_rows = features(train), features(valid)
    train_gold = torch.tensor([ex.label for ex in train])
    valid_gold = [ex.label for ex in valid]
    weights = torch.tensor(class_weights(train, len(labels), c.class_weight_power)) if c.class_weights else None

    # -- model --------------------------------------------------------------------------------------
    model = new_model(BUCKETS, len(labels))
    steps_per_epoch, total_steps = step_budget(len(train), hp["batch_size"], hp["epochs"], c.max_steps)
    # dense AdamW over all 1M rows: ~10 ms a step on one core, simpler than SparseAdam and fast enough
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps))

    def batches():
        rng = random.Random(c.seed)
        while True:  # epochs follow each other; a fractional `epochs` (or max_steps) stops mid-epoch
            yield from shuffled_batches([0] * len(train), hp["batch_size"], rng, group_batches=None)

    # -- loop: validate after every epoch (and the last step), keep the best macro-F1 -----------------
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"macro_f1": -1.0}
    best_state: dict[str, torch.Tensor] = {}
    losses: list[float] = []
    for step, idx in enumerate(batches(), start=1):
        loss = F.cross_entropy(
            logits(model, [train_rows[i] for i in idx]), train_gold[idx], weight=weights, label_smoothing=c.label_smoothing
        )
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % steps_per_epoch == 0 or step == total_steps:
            m = classification_metrics(valid_gold, batched_probs(model, valid_rows).argmax(-1).tolist(), labels)
            history.append({
                "step": step, "epoch": round(step / steps_per_epoch, 3), "train_loss": sum(losses) / len(losses),
                "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"], "elapsed_s": round(time.perf_counter() - started, 1),
            })
            losses = []
            h = history[-1]
            print(f"epoch {h['epoch']}: loss {h['train_loss']:.4f}  val acc {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
            if m["macro_f1"] > best["macro_f1"]:
                best = {**m, "step": step, "epoch": history[-1]["epoch"]}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step == total_steps:
            break
    model.load_state_dict(best_state)

    # -- save: the keys a MiniLM folder has, plus kind and the feature settings -----------------------
    meta = {
        "format_version": 1,
        "kind": KIND,
        "attribute": cfg.data.attribute,
        "labels": labels,
        "input": c.context,
        "context_turns": 1 if with_previous else 0,
        "max_length": c.max_length,  # unused (no truncation); kept because every folder states it
        "normalize": cfg.data.normalize,
        "base_model": KIND,
        "base_model_path": None,
        "features": FEATURES,
        "hyperparameters": {**hp, "weight_decay": WEIGHT_DECAY, "schedule": "linear decay to 0, no warmup"},
        **data.describe(cfg, labels, 1),
        "steps": total_steps,
        "class_weights": None if weights is None else weights.tolist(),
        "validation_metrics": best,
        "history": history,
        "device": "cpu",
        "mixed_precision": "no",
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    _save(model, meta, out)
    print(
        f"n-gram classifier saved to {out}: best epoch {best['epoch']}, validation accuracy {best['accuracy']:.4f}, "
        f"macro-F1 {best['macro_f1']:.4f}, {meta['wall_time_s']:.0f} s"
    )
    return {"out": str(out), **meta}
