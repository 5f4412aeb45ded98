"""Classifier-free guidance in the greedy loop: the formula by hand, scale 1, prompt learning, label dropout."""

import random

import pytest
import torch

from ctrldial.config import Config, DataConfig, GenerateConfig, validate
from ctrldial.errors import UserError
from ctrldial.generate import _own_loop, generate_ids

MAX_NEW = 10
PAD = 50256


@pytest.fixture(scope="module")
def model(varied_gpt2):
    return varied_gpt2


@pytest.fixture(scope="module")
def requests():
    """Three contexts, each asked for three 'labels'; the null prompt is the context alone."""
    rng = random.Random(1)
    contexts = [[rng.randrange(300, 20000) for _ in range(rng.randrange(4, 20))] for _ in range(3)]
    labels = [[11], [13, 17], [19, 23, 29]]
    prompts = [c + lab for c in contexts for lab in labels]
    null = [[c] for c in contexts for _ in labels]
    others = [[c + o for o in labels if o != lab] for c in contexts for lab in labels]
    return prompts, null, others


def last_logits(model, seq):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([seq])).logits[0, -1].float()


def by_hand(model, prompt, negatives, scale, eos, max_new=MAX_NEW):
    """The formula, one sequence at a time, every step recomputed from scratch (no cache, no batching)."""
    out = []
    for _ in range(max_new):
        cond = last_logits(model, prompt + out)
        uncond = torch.stack([last_logits(model, n + out) for n in negatives]).mean(0)
        t = int((uncond + scale * (cond - uncond)).argmax())
        if t == eos:
            break
        out.append(t)
    return out


def _eos(model, prompts, negatives):
    """A token the guided rows emit at different steps, so rows leave the batch at different steps."""
    free = [by_hand(model, p, n, 2.5, -1) for p, n in zip(prompts, negatives)]
    steps = {}
    for seq in free:
        for t in set(seq[1:]):
            steps.setdefault(t, set()).add(seq.index(t))
    return max(steps, key=lambda t: len(steps[t]))


@pytest.mark.parametrize("negative", ["null", "other_labels"])
@pytest.mark.parametrize("batch_size", [4, 64])
def test_guided_tokens_equal_the_formula_by_hand(model, requests, negative, batch_size):
    prompts, null, others = requests
    negatives = null if negative == "null" else others
    eos = _eos(model, prompts, negatives)
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=batch_size, guidance_scale=2.5)
    got = generate_ids(model, prompts, cfg, eos, PAD, negatives=negatives)
    ref = [by_hand(model, p, n, 2.5, eos) for p, n in zip(prompts, negatives)]
    assert got == ref
    assert len({len(s) for s in ref}) >= 2, ref  # rows left the batch at different steps
    # guidance changed something: plain decoding gives other tokens
    assert generate_ids(model, prompts, GenerateConfig(max_new_tokens=MAX_NEW), eos, PAD) != got


def test_scale_one_is_plain_decoding(model, requests):
    prompts, null, others = requests
    plain = generate_ids(model, prompts, GenerateConfig(max_new_tokens=MAX_NEW), PAD, PAD)
    # scale 1 builds no negatives: exactly today's tokens
    assert generate_ids(model, prompts, GenerateConfig(max_new_tokens=MAX_NEW, guidance_scale=1.0), PAD, PAD, negatives=null) == plain
    # and even forced through the guided loop, negatives riding along do not disturb their owners
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=8, guidance_scale=1.0)
    assert _own_loop(model, prompts, others, cfg, PAD, PAD, None, None) == plain


@pytest.mark.parametrize("method", ["prefix", "prompt", "p_tuning"])
def test_prompt_learning_guides_with_virtual_tokens_in_both_rows(method, requests, random_adapter):
    """peft's own forward (virtual tokens in front of every sequence) is the reference for both rows."""
    model = random_adapter(method)
    prompts, null, _ = requests
    cfg = GenerateConfig(max_new_tokens=6, batch_size=8, guidance_scale=2.0)
    got = generate_ids(model, prompts, cfg, -1, PAD, negatives=null)
    assert got == [by_hand(model, p, n, 2.0, -1, max_new=6) for p, n in zip(prompts, null)]
    # the virtual tokens matter on the guided path too
    assert generate_ids(model.get_base_model(), prompts, cfg, -1, PAD, negatives=null) != got


def test_guidance_needs_greedy_decoding():
    cfg = Config(generate=GenerateConfig(guidance_scale=2.0, num_beams=4))
    with pytest.raises(UserError, match="generate.guidance_scale"):
        validate(cfg)
    with pytest.raises(UserError, match="data.label_dropout"):
        validate(Config(data=DataConfig(label_dropout=1.0)))


def test_label_dropout_gives_null_prompts_to_a_seeded_share(gpt2_tok, dd_dir):
    from ctrldial.data.examples import build_examples
    from ctrldial.data.corpus import load_corpus
    from ctrldial.data.template import Template
    from ctrldial.loaded import Loaded

    cfg = Config(data=DataConfig(path=str(dd_dir), label_dropout=0.5))
    examples = build_examples(load_corpus(str(dd_dir)), "train", cfg.data)
    template = Template(gpt2_tok, cfg.data, ["inform", "question", "directive", "commissive"], 1024)
    m = Loaded(cfg, None, gpt2_tok, None, template, template.labels)
    plain, _ = m.encode(examples)
    dropped, _ = m.encode(examples, cfg.data.label_dropout)
    nulls = [e for e in dropped if e not in plain]
    assert 0.3 * len(examples) < len(nulls) < 0.7 * len(examples)
    # a null example is the same sequence without "label <sep>", the response and its loss unchanged
    for ex, a, b in zip(examples, plain, dropped):
        if a != b:
            label = gpt2_tok(template.label_text(["inform", "question", "directive", "commissive"][ex.act]), add_special_tokens=False)["input_ids"]
            assert len(a.input_ids) - len(b.input_ids) == len(label) + 1
            assert a.labels[-len(b.labels):][-5:] == b.labels[-5:]
    assert m.encode(examples, 0.5)[0] == dropped  # seeded: the same share every time
