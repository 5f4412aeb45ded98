"""The loaded model of a run: prepare (base + tokenizer + template), apply a method, reload a finished run."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctrldial.config import Config, Layers
from ctrldial.data.examples import Example, label_names, label_of
from ctrldial.data.template import Encoded, Template
from ctrldial.errors import UserError
from ctrldial.methods import Method, get_method
from ctrldial.models import load_model, load_tokenizer, max_positions, resolve_model
from ctrldial.record import load_record

MODEL_DIR = "model"  # in a run folder: what the method saved (an adapter, or the whole model)


@dataclass
class Loaded:
    """A model ready to train or generate: base + method, its tokenizer, template and labels."""

    cfg: Config
    method: Method
    tokenizer: Any
    model: Any
    template: Template
    labels: list[str]
    _reranker: Any = None
    reranker_info: dict[str, Any] | None = None

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def encode(self, examples: list[Example], label_dropout: float = 0.0) -> tuple[list[Encoded], int]:
        """Training sequences of ``examples`` and how many were dropped as too long.

        With ``label_dropout`` p, a seeded share p of the examples gets the null label (classifier-free guidance).
        """
        attr = self.cfg.data.attribute
        rng = random.Random(self.cfg.data.seed)
        labels = [None if label_dropout and rng.random() < label_dropout else label_of(ex, attr) for ex in examples]
        encoded = [self.template.train_ids(ex.context, lab, ex.response) for ex, lab in zip(examples, labels)]
        kept = [e for e in encoded if e is not None]
        return kept, len(encoded) - len(kept)

    def negatives(self, requests: list[tuple[tuple[str, ...] | list[str], str]]) -> list[list[list[int]]] | None:
        """Per (context, label) request its negative prompts for classifier-free guidance (guidance.py): the
        null-label prompt, or the prompts of every other label of the attribute; None without guidance."""
        g = self.cfg.generate
        if g.guidance_scale == 1:
            return None
        if g.guidance_negative == "null":
            return [[self.template.prompt_ids(ctx, None)] for ctx, _ in requests]
        every = label_names(self.cfg.data.attribute)
        return [[self.template.prompt_ids(ctx, other) for other in every if other != lab] for ctx, lab in requests]

    def respond(self, requests: list[tuple[tuple[str, ...] | list[str], str]], progress: bool = False) -> list[str]:
        """The response to each (context, label) request, decoded as ``generate`` says (guidance, reranking included)."""
        if self.cfg.generate.num_candidates > 1:
            from ctrldial.rerank import rerank

            return rerank(self, requests, self.reranker(), progress)
        return self.decode_requests(requests, progress)

    def decode_requests(self, requests: list[tuple[tuple[str, ...] | list[str], str]], progress: bool = False,
                        logprobs: list[float] | None = None, lengths: list[int] | None = None) -> list[str]:
        """One decoding of each request (guidance included, no reranking); ``logprobs`` as in ``generate_ids``;
        ``lengths`` receives each response's number of tokens."""
        from ctrldial.generate import decode, generate_ids

        prompts = [self.template.prompt_ids(ctx, lab) for ctx, lab in requests]
        ids = generate_ids(self.model, prompts, self.cfg.generate, self.eos_id, self.pad_id, progress, self.negatives(requests), logprobs)
        if lengths is not None:
            lengths.extend(len(x) for x in ids)
        return decode(self.tokenizer, ids)

    def reranker(self):
        """The discriminator of generate.rerank_classifier, loaded once (and checked against the judge)."""
        if self._reranker is None:
            from ctrldial.rerank import check_reranker
            from ctrldial.scoring import load_judge

            self.reranker_info = check_reranker(self.cfg.generate.rerank_classifier, self.cfg.classifier.path)
            self._reranker = load_judge(self.cfg.generate.rerank_classifier, self.cfg.data.attribute)
        return self._reranker

    def param_counts(self) -> dict[str, Any]:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        return {"trainable_params": trainable, "total_params": total, "trainable_percent": 100 * trainable / total if total else 0.0}


def run_labels(cfg: Config) -> list[str]:
    """The labels a run asks for (``eval.labels`` or every label of the attribute), checked."""
    known = label_names(cfg.data.attribute)
    labels = cfg.eval.labels or known
    unknown = [lab for lab in labels if lab not in known]
    if unknown:
        raise UserError(f"eval.labels: unknown label(s) {unknown} for data.attribute={cfg.data.attribute}")
    return labels


def learning_rate(cfg: Config, method: Method) -> float:
    """``train.lr``, or the method's default."""
    return cfg.train.lr or method.default_lr


def add_label_tokens(model, tokenizer, template: Template) -> None:
    """Make room for added label tokens; each starts as the mean embedding of its label word.

    Deterministic from the base weights, so a saved adapter reloads onto exactly the same embeddings.
    """
    if not template.special_tokens:
        return
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for tok, label in zip(template.special_tokens, template.labels):
            word = tokenizer(label.replace("_", " ").replace("+", " "), add_special_tokens=False)["input_ids"]
            emb[tokenizer.convert_tokens_to_ids(tok)] = emb[word].mean(0)


def prepare(cfg: Config, device) -> Loaded:
    """Base model + tokenizer + template, the method chosen but not applied yet."""
    method = get_method(cfg.method.name)
    labels = run_labels(cfg)
    quant = method.quantization(cfg.model) if method.quantization else None
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, device.type, quant)
    template = Template(
        tokenizer,
        cfg.data,
        labels,
        max_positions(model.config, cfg.model.max_positions),
        method.virtual_tokens(cfg.method),
        cfg.generate.max_new_tokens,
    )
    add_label_tokens(model, tokenizer, template)
    if quant is None:
        model.to(device)
    return Loaded(cfg, method, tokenizer, model, template, labels)


def apply_method(m: Loaded, total_steps: int) -> None:
    """Make the model trainable the method's way (``total_steps``: AdaLoRA schedules its rank by it)."""
    ctx = {"tokenizer_path": resolve_model(m.cfg.model.name), "tokenizer": m.tokenizer, "total_steps": total_steps}
    m.model = m.method.build(m.model, m.cfg.method, ctx)


def ready_to_generate(m: Loaded) -> None:
    """Merge mergeable adapters (same outputs, no adapter cost per token) and switch to eval mode."""
    if m.method.mergeable:
        m.model = m.model.merge_and_unload()
    m.model.eval()


def save_method(m: Loaded, folder: Path) -> None:
    """What the method trained, and the tokenizer (with any label tokens), into ``folder``."""
    m.method.save(m.model, folder)
    m.tokenizer.save_pretrained(folder)


def run_config(record: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A finished run's resolved config, with ``--set`` overrides (e.g. generate.do_sample=true) on top."""
    return Layers().add_tree(record["config"], "record.json").add_overrides(overrides).build()


def reload(run_dir: Path, overrides: list[str] | None = None, device=None) -> Loaded:
    """A finished run, ready to generate: exactly the model that was evaluated."""
    run_dir = Path(run_dir)
    cfg = run_config(load_record(run_dir), overrides)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = prepare(cfg, device)
    if m.method.trains:
        m.model = _load_saved(m, run_dir / MODEL_DIR)
    ready_to_generate(m)
    return m


def _load_saved(m: Loaded, folder: Path):
    """The method's saved weights; a missing or damaged folder is a one-line error naming the file."""
    if not folder.is_dir():
        raise UserError(f"{folder}: missing — this run saved no weights; rerun it (`ctrldial run --out {folder.parent} --overwrite ...`)")
    try:
        return m.method.load(m.model, folder)
    except Exception as e:  # safetensors, peft and transformers raise many kinds for a damaged file
        files = ", ".join(sorted(p.name for p in folder.glob("*.safetensors"))) or "no *.safetensors file"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"{folder} ({files}): the saved weights cannot be loaded ({type(e).__name__}: {first}); the run folder is damaged "
            f"or was not written by this ctrldial — rerun it with `ctrldial run --out {folder.parent} --overwrite ...`"
        ) from None
