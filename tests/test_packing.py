"""Padding-free training: packed rows give the losses and gradients of padded batches, and runs stay reproducible."""

import json
import warnings

import pytest
import torch

from ctrldial import train as T
from ctrldial.data.template import IGNORE, Encoded

PAD = 0
# fp32 on CPU: packed and padded rows run the same arithmetic in other shapes, so sums differ in the last bits
RTOL, ATOL = 1e-4, 1e-5


def _examples(lengths, seed=0, vocab=200):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        out.append(Encoded(ids, [IGNORE] * (n // 2) + ids[n // 2 :]))  # the second half is the response
    return out


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def _tiny_gpt2():
    from ctrldial.config import ModelConfig
    from ctrldial.models import load_model

    return load_model(ModelConfig(name="tiny-gpt2")).eval()


def test_pack_lays_examples_end_to_end_within_the_row_budget():
    ex = _examples([30, 12, 50, 7, 70])
    b = T.pack(ex, PAD, row_tokens=64)
    ids, pos, lab = b["input_ids"], b["position_ids"], b["labels"]
    assert int(b["tokens"]) == 169 and ids.shape[1] == 70  # the 70-token example sets the width
    found = []
    for r in range(ids.shape[0]):
        starts = (pos[r] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
        in_row = []
        for s, e in zip(starts, starts[1:]):
            seq = ids[r, s:e].tolist()
            if all(t == PAD for t in seq):
                assert (lab[r, s:e] == IGNORE).all() and e == ids.shape[1]  # the row's padding: at its end, a sequence of its own
                continue
            match = next(x for x in ex if x.input_ids == seq)
            assert pos[r, s:e].tolist() == list(range(e - s))
            assert lab[r, s].item() == IGNORE and lab[r, s + 1 : e].tolist() == match.labels[1:]
            in_row.append(len(seq))
        assert sum(in_row) <= 70
        found += in_row
    assert sorted(found) == sorted(len(x.input_ids) for x in ex)  # every example once, none split


def test_pack_never_computes_more_positions_than_padding_and_finds_the_tight_layout():
    import random

    rng = random.Random(0)
    for _ in range(200):
        ex = _examples([rng.randint(3, 90) for _ in range(rng.randint(1, 12))])
        budget = rng.choice([16, 64, 128, 256])
        b = T.pack(ex, PAD, budget)
        assert b["input_ids"].numel() <= T.collate(ex, PAD)["input_ids"].numel()
        assert b["input_ids"].shape[1] <= max(budget, max(len(e.input_ids) for e in ex))
    # 40, 20, 20, 40 in rows of up to 64: padding computes 4 × 40; rows of 40 + 20 compute 2 × 60, and so do
    # three rows of 40 (40 | 40 | 20 + 20): the tie goes to the narrower rows (attention costs width squared)
    b = T.pack(_examples([40, 20, 20, 40]), PAD, 64)
    assert tuple(b["input_ids"].shape) == (3, 40) and int(b["tokens"]) == 120


@pytest.mark.parametrize("make", [_tiny_gpt2, _tiny_llama], ids=["gpt2", "llama"])
def test_packed_rows_give_each_example_its_padded_loss_and_gradient(make):
    """Per example, the token losses of packed rows equal those of a padded batch; so do the gradients."""
    model = make()
    ex = _examples([23, 9, 41, 16, 30, 5], seed=1)
    packed, padded = T.pack(ex, PAD, row_tokens=64), T.collate(ex, PAD)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()

    def per_token(batch):
        kw = {k: batch[k] for k in ("attention_mask", "position_ids") if k in batch}
        logits = model(input_ids=batch["input_ids"], use_cache=False, **kw).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE, reduction="none")
        return loss, batch["labels"][:, 1:] != IGNORE

    lp, mp = per_token(packed)
    lc, mc = per_token(padded)
    # each example's target losses, found in the packed rows by its token ids
    for i, e in enumerate(ex):
        want = lc[i][mc[i]]
        r, s = next((r, s) for r in range(packed["input_ids"].shape[0]) for s in range(packed["input_ids"].shape[1])
                    if packed["position_ids"][r, s] == 0 and packed["input_ids"][r, s : s + len(e.input_ids)].tolist() == e.input_ids)
        got = lp[r, s : s + len(e.input_ids) - 1][mp[r, s : s + len(e.input_ids) - 1]]
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)

    def grads(batch):
        model.zero_grad()
        s, n = T.token_losses(model, batch)
        (s / n).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    gp, gc = grads(packed), grads(padded)
    assert gp.keys() == gc.keys() and gp
    for k in gp:
        torch.testing.assert_close(gp[k], gc[k], rtol=1e-3, atol=1e-6, msg=k)
    # and the sums token_losses returns, with logits kept only where a target is predicted
    with torch.no_grad():
        (sp, np_), (sc, nc) = T.token_losses(model, packed), T.token_losses(model, padded)
    assert int(np_) == int(nc) == sum(sum(t != IGNORE for t in e.labels[1:]) for e in ex)
    torch.testing.assert_close(sp, sc, rtol=RTOL, atol=ATOL)


class _LeakyAttention(torch.nn.Module):
    """A model that drops position ids and masks: packed examples attend to each other (an older architecture)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
        return self.inner(input_ids=input_ids, **kw)


def test_packing_check_catches_a_model_that_lets_packed_examples_attend_to_each_other():
    ex = _examples([20, 14, 9], seed=2)
    assert T.packing_agrees(_tiny_gpt2(), ex, PAD, 64)
    assert not T.packing_agrees(_LeakyAttention(_tiny_gpt2()), ex, PAD, 64)


def test_leaky_model_trains_on_padded_batches_with_a_warning(dd_dir):
    from accelerate import Accelerator

    from ctrldial.config import TrainConfig

    cfg = TrainConfig(max_steps=2, batch_size=4, eval_every=100, tracker="none", mixed_precision="no")
    model = _LeakyAttention(_tiny_gpt2()).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, result = T.train(model, _examples([20, 14, 9, 30, 11, 8, 25, 17], seed=3), [], cfg, 1e-3, PAD,
                            Accelerator(cpu=True), packable=True)
    assert not result.packed and result.padding_share > 0
    assert any("train.packing" in str(w.message) for w in caught)


def _run(dd_dir, out, *sets):
    from ctrldial.config import build_config
    from ctrldial.pipeline import run

    args = ["model.name=tiny-gpt2", f"data.path={dd_dir}", "train.tracker=none", "train.max_steps=6", "train.eval_every=3",
            "train.mixed_precision=no", "data.max_eval_examples=4", "generate.max_new_tokens=4", *sets]
    run(build_config(None, args), out)
    return json.loads((out / "record.json").read_text())


def test_packed_training_is_reproducible_and_matches_padded_training(tmp_path, dd_dir):
    a = _run(dd_dir, tmp_path / "a", "method.name=lora")
    b = _run(dd_dir, tmp_path / "b", "method.name=lora")
    c = _run(dd_dir, tmp_path / "c", "method.name=lora", "train.packing=false")
    assert a["train"]["packed"] and not c["train"]["packed"]
    assert a["train"]["padding_share"] < c["train"]["padding_share"]
    assert a["train"]["history"] == b["train"]["history"]  # a fixed seed trains the same, bit for bit
    assert a["train"]["rank_weight_checksums"] == b["train"]["rank_weight_checksums"]
    # packed and padded batches hold the same examples in the same order: the same losses, up to float noise
    la = [h["loss"] for h in a["train"]["history"] if "loss" in h]
    lc = [h["loss"] for h in c["train"]["history"] if "loss" in h]
    assert la == pytest.approx(lc, rel=1e-3)


def test_methods_with_virtual_tokens_keep_padded_batches(tmp_path, dd_dir):
    rec = _run(dd_dir, tmp_path / "p", "method.name=prompt", "train.max_steps=2")
    assert not rec["train"]["packed"]


def test_perplexity_packs_and_equals_the_padded_figure():
    from ctrldial.scoring import perplexity

    ex = _examples([23, 9, 41, 16, 30, 5, 12, 60, 33], seed=4)
    data = sorted(ex, key=lambda e: len(e.input_ids))

    def padded(model):
        with torch.no_grad():
            sums = [T.token_losses(model, T.collate(data[i : i + 4], PAD)) for i in range(0, len(data), 4)]
        return float(torch.exp(sum(s for s, _ in sums) / sum(n for _, n in sums)))

    model = _tiny_gpt2()
    assert perplexity(model, ex, PAD, batch_size=4) == pytest.approx(padded(model), rel=1e-4)
    leaky = _LeakyAttention(_tiny_gpt2()).eval()  # packed rows would mix its examples: it is scored on padded batches
    assert perplexity(leaky, ex, PAD, batch_size=4) == pytest.approx(padded(leaky), rel=1e-6)
