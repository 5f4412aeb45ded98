"""ctrldial's greedy loop gives Hugging Face greedy's tokens: batched, grouped, early-finishing rows included."""

import random
from collections import Counter
from dataclasses import replace

import pytest
import torch

from ctrldial.config import GenerateConfig
from ctrldial.generate import generate_ids, hf_generate_batch, uses_greedy_loop
from ctrldial.greedy import _Rows, greedy_batch, is_prompt_learning, shared_prefix_groups

MAX_NEW = 12
PAD = 50256  # GPT-2's eos, used as pad as in ctrldial


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # a 32-wide model gains nothing from a second thread, and on a shared CPU the spinning threads cost a lot
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(varied_gpt2):
    return varied_gpt2


@pytest.fixture(scope="module")
def prompts():
    """Contexts asked for several 'labels' (shared openings, different tails) plus unrelated prompts."""
    rng = random.Random(0)
    contexts = [[rng.randrange(300, 20000) for _ in range(rng.randrange(4, 30))] for _ in range(4)]
    labels = [[11], [13, 17], [19, 23, 29]]
    loose = [[rng.randrange(300, 20000) for _ in range(rng.randrange(2, 25))] for _ in range(5)]
    return [c + lab for c in contexts for lab in labels] + loose


def unbatched(model, prompts, eos, cfg):
    """Hugging Face generate, one prompt at a time (no padding at all): the reference."""
    return [hf_generate_batch(model, [p], cfg, eos, PAD)[0] for p in prompts]


@pytest.fixture(scope="module")
def eos_and_reference(model, prompts):
    """An eos id that rows reach at several different steps while others run to max_new_tokens."""
    cfg = GenerateConfig(max_new_tokens=MAX_NEW)
    free = unbatched(model, prompts, -1, cfg)  # -1: no row ever stops
    finish_steps = {}
    for t, _ in Counter(t for seq in free for t in set(seq[1:])).most_common(200):
        steps = {seq.index(t) for seq in free if t in seq}
        finish_steps[t] = (len(steps), -sum(t in seq for seq in free))
    eos = max(finish_steps, key=lambda t: finish_steps[t])
    ref = unbatched(model, prompts, eos, cfg)
    lengths = [len(s) for s in ref]
    assert len({n for n in lengths if n < MAX_NEW}) >= 2 and MAX_NEW in lengths, lengths
    return eos, ref


def test_greedy_loop_equals_hf_generate(model, prompts, eos_and_reference):
    eos, ref = eos_and_reference
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=64)
    assert uses_greedy_loop(model, cfg)
    assert greedy_batch(model, prompts, MAX_NEW, eos, PAD) == ref
    assert generate_ids(model, prompts, cfg, eos, PAD) == ref
    # Hugging Face's own left-padded batch agrees too (position ids from the mask)
    assert hf_generate_batch(model, prompts, cfg, eos, PAD) == ref


@pytest.mark.parametrize("batch_size", [1, 2, 5, 16])
def test_batched_equals_unbatched(model, prompts, eos_and_reference, batch_size, monkeypatch):
    eos, ref = eos_and_reference
    merges = []
    merge = _Rows.merge
    monkeypatch.setattr(_Rows, "merge", lambda self, other: merges.append(len(other.rows)) or merge(self, other))
    assert generate_ids(model, prompts, GenerateConfig(max_new_tokens=MAX_NEW, batch_size=batch_size), eos, PAD) == ref
    if batch_size in (2, 5):  # new prompts joined rows already running (caches of different lengths merged)
        assert merges


def test_repetition_penalty_matches_hf(model, prompts, eos_and_reference):
    eos, _ = eos_and_reference
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=8, repetition_penalty=1.5)
    ref = unbatched(model, prompts, eos, cfg)
    assert ref != unbatched(model, prompts, eos, replace(cfg, repetition_penalty=1.0))  # the penalty matters here
    assert generate_ids(model, prompts, cfg, eos, PAD) == ref


def test_shared_prefix_groups(prompts):
    groups = shared_prefix_groups(prompts)
    assert sorted(i for _, members in groups for i in members) == list(range(len(prompts)))
    by_member = {i: (shared, members) for shared, members in groups for i in members}
    for c in range(4):  # each context's three prompts share the context
        shared, members = by_member[3 * c]
        assert sorted(members) == [3 * c, 3 * c + 1, 3 * c + 2]
        assert shared >= len(prompts[3 * c]) - 1 - 3
    for shared, members in groups:  # every member keeps a token of its own
        assert all(prompts[i][:shared] == prompts[members[0]][:shared] and len(prompts[i]) > shared for i in members)
    assert shared_prefix_groups([[1, 2, 3], [1, 2, 3]]) == [(2, [0, 1])]  # duplicates: the last token stays own
    assert [m for _, m in shared_prefix_groups([[5, 1, 2, 3, 4], [5, 9, 9, 9, 9]])] == [[0], [1]]  # one shared token is not enough


def test_sampling_beams_and_processors_use_hf_generate(model):
    assert not uses_greedy_loop(model, GenerateConfig(do_sample=True))
    assert not uses_greedy_loop(model, GenerateConfig(num_beams=2))
    saved = model.generation_config.no_repeat_ngram_size
    model.generation_config.no_repeat_ngram_size = 2  # a checkpoint shipping a logit processor
    try:
        assert not uses_greedy_loop(model, GenerateConfig())
    finally:
        model.generation_config.no_repeat_ngram_size = saved


@pytest.mark.parametrize("method", ["prefix", "prompt", "p_tuning"])
@pytest.mark.parametrize("batch_size", [3, 16])
def test_prompt_learning_greedy_loop_equals_peft_generate(method, batch_size, prompts, random_adapter):
    """The virtual positions computed once and shared give peft generate's tokens, prompt by prompt."""
    model = random_adapter(method)
    free = unbatched(model, prompts, -1, GenerateConfig(max_new_tokens=MAX_NEW))
    eos = Counter(t for seq in free for t in seq[2:]).most_common(1)[0][0]  # rows stop at different steps
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=batch_size)
    ref = unbatched(model, prompts, eos, cfg)
    assert len({len(s) for s in ref}) >= 2, ref
    assert is_prompt_learning(model) and uses_greedy_loop(model, cfg)
    assert generate_ids(model, prompts, cfg, eos, PAD) == ref
    # and the virtual tokens matter: the base model alone decodes something else
    assert generate_ids(model.get_base_model(), prompts, cfg, eos, PAD) != ref


def test_unmerged_lora_uses_greedy_loop_and_matches(prompts, eos_and_reference, random_adapter):
    model, prompts = random_adapter("lora"), prompts[1::2]
    eos, _ = eos_and_reference
    cfg = GenerateConfig(max_new_tokens=MAX_NEW, batch_size=6)
    assert not is_prompt_learning(model) and uses_greedy_loop(model, cfg)
    assert generate_ids(model, prompts, cfg, eos, PAD) == unbatched(model, prompts, eos, cfg)
    merged = model.merge_and_unload()
    assert generate_ids(merged, prompts, cfg, eos, PAD) == unbatched(merged, prompts, eos, cfg)


def test_prefill_projects_a_contiguous_last_position_and_heads_skip_the_projection(model, random_adapter):
    """The lm_head sees a contiguous input inside contiguous_lm_head (a plain matrix product, not a batched one
    against the expanded vocabulary matrix), the same logits, and no hook is left behind; heads run the backbone."""
    from ctrldial.greedy import backbone, contiguous_lm_head

    head = model.get_output_embeddings()
    seen = []
    probe = head.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    try:
        plain = model(input_ids=ids, logits_to_keep=1).logits
        hooks = len(head._forward_pre_hooks)
        with contiguous_lm_head(model):
            assert len(head._forward_pre_hooks) == hooks + 1
            fixed = model(input_ids=ids, logits_to_keep=1).logits
    finally:
        probe.remove()
    assert seen == [False, True]  # the contiguity hook runs first
    assert torch.allclose(plain, fixed, atol=1e-6) and len(head._forward_pre_hooks) == 0
    assert type(backbone(model)).__name__ == "GPT2Model"
    assert backbone(random_adapter("lora")) is None  # a PeftModel: the full model runs
