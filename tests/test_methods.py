"""Every method end to end on a tiny random GPT-2 with DialoGPT's real tokenizer."""

import json

import pytest
import torch

import ctrldial

from ctrldial.config import build_config
from ctrldial.methods import METHODS
from ctrldial.loaded import apply_method, prepare
from ctrldial.pipeline import run
from ctrldial.train import collate, token_losses

CPU_METHODS = [m for m, e in METHODS.items() if not e.requires_cuda and m != "peft"]
TRAINABLE = [m for m in CPU_METHODS if METHODS[m].trains]


def tiny_cfg(dd_dir, method, *extra):
    return build_config(None, [
        "model.name=tiny-gpt2", f"data.path={dd_dir}", f"method.name={method}", "method.num_virtual_tokens=4",
        "train.max_steps=12", "train.eval_every=6", "train.batch_size=4", "train.tracker=none", "train.mixed_precision=no",
        "data.max_eval_examples=4", "generate.max_new_tokens=6", "eval.sanity_prompts=4", *extra,
    ])


@pytest.mark.parametrize("method", CPU_METHODS)
def test_method_end_to_end(tmp_path, dd_dir, method):
    lr = ["train.lr=0.05"] if method in ("full", "lora", "adalora") else ["train.lr=0.3"]
    rec = run(tiny_cfg(dd_dir, method, *lr), tmp_path / method)
    assert rec["status"] == "ok"
    on_disk = json.loads((tmp_path / method / "record.json").read_text())
    assert on_disk["metrics"] == rec["metrics"]
    rows = [json.loads(l) for l in (tmp_path / method / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 4  # every context asked for every act
    assert {r["requested"] for r in rows} == {"inform", "question", "directive", "commissive"}
    if METHODS[method].trains:
        # the trained weights change what the model generates (a silently ignored adapter fails here)
        assert rec["sanity"]["changed"], rec["sanity"]
        assert (tmp_path / method / "model").is_dir()
        assert 0 < rec["cost"]["trainable_params"] <= rec["cost"]["total_params"]
    else:
        assert rec["cost"]["trainable_params"] == 0 and rec["train"] is None
    # reloaded through the public path, the run regenerates exactly what it recorded (the model that was evaluated)
    bot = ctrldial.load(tmp_path / method)
    assert bot.generate_many([r["context"] for r in rows], [r["requested"] for r in rows]) == [r["generation"] for r in rows]


@pytest.mark.parametrize("method", TRAINABLE)
def test_loss_falls_on_repeated_batch(dd_dir, method):
    cfg = tiny_cfg(dd_dir, method)
    g = prepare(cfg, torch.device("cpu"))
    from ctrldial.data.corpus import load_corpus
    from ctrldial.data.examples import build_examples

    exs = build_examples(load_corpus(str(dd_dir)), "train", cfg.data)[:4]
    enc, _ = g.encode(exs)
    apply_method(g, total_steps=30)
    batch = collate(enc, g.tokenizer.pad_token_id)
    params = [p for p in g.model.parameters() if p.requires_grad]
    # a tiny random model needs large steps; virtual tokens move a random 50k-way softmax only slowly
    lr = 0.3 if METHODS[method].virtual_tokens(cfg.method) else max(METHODS[method].default_lr, 1e-2) * 3
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for step in range(15):
        s, n = token_losses(g.model, batch)
        loss = s / n
        loss.backward()
        opt.step()
        if METHODS[method].after_step:
            METHODS[method].after_step(g.model, step)
        opt.zero_grad()
        losses.append(loss.item())
    # a random tiny GPT-2 sits near the uniform loss ln(50257) = 10.825, which virtual tokens alone barely move:
    # demand a steady fall, not a large one (a frozen or disconnected adapter keeps the loss constant)
    assert losses[-1] < losses[0] - 0.004 and sum(losses[-5:]) < sum(losses[:5]), losses


def test_prompt_tuning_logits_align_with_labels(dd_dir):
    """Prompt tuning prepends virtual tokens inside the model: logits are longer than labels."""
    cfg = tiny_cfg(dd_dir, "prompt", "method.num_virtual_tokens=5")
    g = prepare(cfg, torch.device("cpu"))
    apply_method(g, 10)
    enc = g.template.train_ids(("hi",), "question", "how are you?")
    batch = collate([enc], g.tokenizer.pad_token_id)
    out = g.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.shape[1] == batch["input_ids"].shape[1] + 5
    s, n = token_losses(g.model, batch)
    assert n.item() == sum(l != -100 for l in enc.labels) - 0  # every response token (and the eos) is scored
    assert torch.isfinite(s)


def test_virtual_tokens_reserved_in_positions(dd_dir):
    """A prompt never pushes virtual tokens + prompt + new tokens past the model's positions (GPT-2: 1024)."""
    cfg = tiny_cfg(dd_dir, "prefix", "method.num_virtual_tokens=30", "generate.max_new_tokens=40", "data.max_context_turns=50")
    g = prepare(cfg, torch.device("cpu"))
    long_ctx = tuple(" ".join(["word"] * 60) for _ in range(10))
    ids = g.template.prompt_ids(long_ctx, "inform")
    assert len(ids) + 30 + 40 <= g.model.config.n_positions


def test_qlora_without_cuda_is_a_clear_error(tmp_path, dd_dir):
    from ctrldial.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="qlora needs a CUDA GPU"):
        run(tiny_cfg(dd_dir, "qlora"), tmp_path / "q")


def test_generic_peft_entry(tmp_path, dd_dir):
    kw = "method.peft_kwargs={r: 4, target_modules: [c_attn], fan_in_fan_out: true}"
    rec = run(tiny_cfg(dd_dir, "peft", "method.peft_type=VeraConfig", kw, "train.lr=0.05"), tmp_path / "vera")
    assert rec["status"] == "ok" and rec["sanity"]["changed"]


def test_generic_peft_entry_errors(tmp_path, dd_dir):
    from ctrldial.errors import UserError

    with pytest.raises(UserError, match="not a PEFT config class"):
        run(tiny_cfg(dd_dir, "peft", "method.peft_type=Nope"), tmp_path / "a")
    with pytest.raises(UserError, match="LoHaConfig: PEFT cannot apply it to this model"):
        run(tiny_cfg(dd_dir, "peft", "method.peft_type=LoHaConfig", "method.peft_kwargs={target_modules: [c_attn]}"), tmp_path / "b")


def test_prefix_text_init_is_the_base_model_reading_the_text(dd_dir):
    """The prefix starts as the base model's own keys/values for `prompt_init_text`: the prefixed model's
    next-token logits equal the base model's on text + input (a random prefix would not)."""
    cfg = tiny_cfg(dd_dir, "prefix", "method.num_virtual_tokens=5", "method.prompt_init_text=Respond with the act")
    g = prepare(cfg, torch.device("cpu"))
    base = g.model
    text_ids = g.tokenizer("Respond with the act", add_special_tokens=False)["input_ids"]
    text_ids = (text_ids * 5)[:5]
    x = g.tokenizer("hello there, how are you?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = base(input_ids=torch.cat([torch.tensor([text_ids]), x], dim=1)).logits[:, -x.shape[1]:]
    apply_method(g, total_steps=10)
    g.model.eval()
    with torch.no_grad():
        got = g.model(input_ids=x, attention_mask=torch.ones_like(x)).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()

    random_init = prepare(tiny_cfg(dd_dir, "prefix", "method.num_virtual_tokens=5", "method.prompt_init=random"), torch.device("cpu"))
    apply_method(random_init, total_steps=10)
    with torch.no_grad():
        other = random_init.model.eval()(input_ids=x, attention_mask=torch.ones_like(x)).logits
    assert not torch.allclose(other, want, atol=1e-2)
