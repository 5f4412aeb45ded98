"""Fluency of the generated responses, so that a control method cannot score by producing gibberish.

Control accuracy alone rewards a method (strong guidance, a high learning rate) that says "?" to every request
for a question. The generation perplexity reads the responses with the untuned base model: text that model
finds unlikely is not fluent English, whatever the judge thinks of its act. Its companion, the share of
responses stuck in a loop, is a text metric (``metrics.repetition_rate``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from ctrldial.models import load_model
from ctrldial.scoring import perplexity

if TYPE_CHECKING:
    from ctrldial.loaded import Loaded


def generation_perplexity(m: Loaded, rows: list[dict[str, Any]]) -> float | None:
    """exp(mean token loss) of the non-empty generated responses (and their eos) given their context alone, no
    label, under the pretrained model of ``m.cfg.model``; None without a non-empty response.

    The base model is loaded afresh in float32, unquantized, whatever the run trained in: every run of a model
    is read by the same judge, so the figure compares across methods. It is freed before returning; ``m.model``
    is not touched.
    """
    encoded = [m.template.train_ids(r["context"], None, r["generation"]) for r in rows if r["generation"].strip()]
    encoded = [e for e in encoded if e is not None]
    if not encoded:
        return None
    device = next(m.model.parameters()).device
    base = load_model(dataclasses.replace(m.cfg.model, dtype="float32"), device.type).to(device).eval()
    try:
        # with data.label_style=special the tokenizer has label tokens the base model has no embedding for; a
        # decoded response holds none (special tokens are skipped), unless it spells one out and re-encodes to it:
        # such a response is left out
        vocab = base.get_input_embeddings().num_embeddings
        assert m.pad_id < vocab, f"pad token {m.pad_id} is outside the base model's {vocab} embeddings"
        known = [e for e in encoded if max(e.input_ids) < vocab]
        return perplexity(base, known, m.pad_id, m.cfg.generate.batch_size)
    finally:
        del base
        if device.type == "cuda":
            torch.cuda.empty_cache()
