"""Fluency beside control: repetition of the responses, and their perplexity under the untuned base model."""

import json
import math

import pytest
import torch

from ctrldial.fluency import generation_perplexity
from ctrldial.loaded import apply_method, prepare, ready_to_generate
from ctrldial.metrics import label_word_rate, repetition_rate, text_metrics
from ctrldial.models import load_model
from ctrldial.pipeline import run
from ctrldial.scoring import perplexity
from test_reload import tiny

CONTEXT = ["Did you hear the forecast?", "No, what did they say?"]
REPLIES = ["It will rain all day tomorrow.", "Take an umbrella, just in case.", "Will you come with me?"]


def _rows(texts):
    return [{"context": CONTEXT, "requested": "inform", "reference_label": "inform", "reference": "It will rain.",
             "generation": t} for t in texts]


def test_repetition_rate_counts_repeated_word_trigrams_of_non_empty_responses():
    texts = ["the cat the cat sat", "a b c a b c", "", "   ", "I don't know, I DON'T know.", "Hello there."]
    # "the cat" recurs only as a bigram; punctuation and case do not hide "i don't know"; empty replies do not count
    assert text_metrics(_rows(texts))["repetition_rate"] == pytest.approx(2 / 4)
    assert repetition_rate(["a b c, a b c"]) == 1.0 and repetition_rate(["I know. I know."]) == 0.0
    assert repetition_rate(["", " "]) is None and text_metrics(_rows([]))["repetition_rate"] is None


def test_label_word_rate_counts_responses_that_say_the_requested_label():
    rows = [{"generation": g, "requested": r, "reference_label": "inform", "reference": "x"} for g, r in [
        ("Sure, commissive.", "commissive"), ("Is that a question?", "question"), ("Information, please.", "inform"),
        ("No emotion at all.", "no_emotion"), ("A question for you.", "directive"), ("  ", "inform")]]
    # the requested label's own name, as a whole word (no_emotion also as two words); the blank one is not counted
    assert label_word_rate(rows) == pytest.approx(3 / 5) and text_metrics(rows)["label_word_rate"] == pytest.approx(3 / 5)
    assert label_word_rate(rows[-1:]) is None


def _encoded(m, rows):
    """What generation_perplexity should read, built by hand: the context alone (no label), then the response."""
    enc = [m.template.train_ids(r["context"], None, r["generation"]) for r in rows if r["generation"].strip()]
    assert all(e is not None for e in enc)
    return enc


def _tuned(dd_dir, *extra):
    cfg = tiny(dd_dir, "lora", *extra)
    m = prepare(cfg, torch.device("cpu"))
    apply_method(m, total_steps=1)
    with torch.no_grad():  # LoRA starts as the identity; move it so that tuned and base differ
        for name, p in m.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    ready_to_generate(m)
    return m


def test_generation_perplexity_reads_the_base_model_and_leaves_the_tuned_one_alone(dd_dir):
    m = _tuned(dd_dir)
    rows = _rows([*REPLIES, ""])
    probe = torch.tensor([_encoded(m, rows)[0].input_ids])
    before = m.model(input_ids=probe).logits

    got = generation_perplexity(m, rows)
    enc = _encoded(m, rows)
    base = load_model(m.cfg.model).eval()
    assert math.isfinite(got) and got > 1
    assert got == pytest.approx(perplexity(base, enc, m.pad_id, m.cfg.generate.batch_size), rel=1e-6)
    assert got != pytest.approx(perplexity(m.model, enc, m.pad_id, m.cfg.generate.batch_size), rel=1e-3)  # not the tuned model
    assert got == pytest.approx(generation_perplexity(m, _rows(REPLIES)), rel=1e-6)  # the empty reply is left out
    assert torch.equal(m.model(input_ids=probe).logits, before)
    assert generation_perplexity(m, _rows(["", "  "])) is None


def test_generation_perplexity_with_label_tokens_the_base_model_lacks(dd_dir):
    m = _tuned(dd_dir, "data.label_style=special")
    base = load_model(m.cfg.model)
    assert len(m.tokenizer) > base.get_input_embeddings().num_embeddings
    got = generation_perplexity(m, _rows(REPLIES))
    assert got == pytest.approx(perplexity(base.eval(), _encoded(m, _rows(REPLIES)), m.pad_id, 4), rel=1e-6)
    # a reply that spells out a label token re-encodes to it; the base model has no embedding for it, so it is left out
    assert generation_perplexity(m, _rows([*REPLIES, "<|question|> why?"])) == pytest.approx(got, rel=1e-6)


def test_a_run_records_fluency_and_can_skip_the_base_model(tmp_path, dd_dir):
    rec = run(tiny(dd_dir, "lora"), tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "record.json").read_text())
    rows = [json.loads(l) for l in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    said = [r for r in rows if r["generation"].strip()]
    assert on_disk["metrics"]["repetition_rate"] == rec["metrics"]["repetition_rate"] == repetition_rate([r["generation"] for r in rows])
    gp = on_disk["metrics"]["generation_perplexity"]
    assert (gp is None) if not said else (math.isfinite(gp) and gp > 1)

    skipped = run(tiny(dd_dir, "zero_shot", "eval.generation_perplexity=false"), tmp_path / "skip")
    assert skipped["metrics"]["generation_perplexity"] is None
