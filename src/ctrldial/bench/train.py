"""Training speed: ctrldial's loop (the ``train_method`` stage) against a plain Trainer + PEFT LoRA script."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed

from ctrldial.batching import length_grouped_batches
from ctrldial.bench.options import method_model
from ctrldial.bench.timing import steady_rate, summary
from ctrldial.config import Config
from ctrldial.loaded import Loaded, learning_rate
from ctrldial.pipeline import make_accelerator, train_method


def bench_train(cfg: Config, train_enc: list, device, repeats: int) -> tuple[Loaded, dict[str, Any]]:
    """Both loops ``repeats`` times, alternately; returns ctrldial's last trained model (generation uses it)."""
    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            m, r = ctrldial_train(cfg, train_enc, device)
            ours.append(r["tokens_per_s"])
            base.append(hf_trainer_baseline(cfg, train_enc, m.tokenizer, learning_rate(cfg, m.method), Path(tmp))["tokens_per_s"])
    return m, {
        "steps": cfg.train.max_steps, "batch_size": cfg.train.batch_size, "examples": len(train_enc),
        "non_pad_tokens": sum(len(e.input_ids) for e in train_enc), "mixed_precision": r["mixed_precision"],
        "ctrldial": summary(ours, "tokens_per_s"), "hf_trainer": summary(base, "tokens_per_s"),
    }


def ctrldial_train(cfg: Config, train_enc: list, device) -> tuple[Loaded, dict[str, Any]]:
    """ctrldial's loop (length-grouped batches, mixed precision `auto`); steady-state non-pad tokens/s."""
    set_seed(cfg.train.seed)
    m = method_model(cfg, device, len(train_enc))
    accelerator = make_accelerator(cfg, None)
    ends: list[float] = []
    method = m.method
    m.method = dataclasses.replace(method, after_step=_timed(method.after_step, ends))  # the loop's only per-step hook
    try:
        train_method(m, train_enc, [], accelerator)
    finally:
        m.method = method
    # the loop's own batches (one process): same sampler, same seed, epoch 0
    batches = length_grouped_batches([len(e.input_ids) for e in train_enc], cfg.train.batch_size, cfg.train.seed, cfg.train.group_by_length)
    tokens = [sum(len(train_enc[i].input_ids) for i in b) for b in batches]
    return m, {"tokens_per_s": steady_rate(ends, step_tokens(tokens, cfg.train.grad_accum, len(ends))),
               "mixed_precision": accelerator.mixed_precision}


def _timed(after_step, ends: list[float]):
    """The method's own after-step hook (AdaLoRA's), then the time the step ended."""
    def hook(model, step: int) -> None:
        if after_step is not None:
            after_step(model, step)
        ends.append(time.perf_counter())
    return hook


def step_tokens(batch_tokens: list[int], grad_accum: int, steps: int) -> list[int]:
    """Non-pad tokens per optimizer step, from the tokens of each micro-batch."""
    return [sum(batch_tokens[s * grad_accum : (s + 1) * grad_accum]) for s in range(steps)]


def hf_trainer_baseline(cfg: Config, train_enc: list, tokenizer, lr: float, workdir: Path) -> dict[str, Any]:
    """A plain Hugging Face Trainer + PEFT LoRA script with default TrainingArguments, written as a user would."""
    from accelerate.state import AcceleratorState
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from ctrldial.methods.entries import arch
    from ctrldial.models import resolve_model

    AcceleratorState._reset_state(reset_partial_state=True)  # ctrldial's bf16 state must not leak into the baseline
    model = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model.name))
    m = cfg.method
    lora = LoraConfig(r=m.r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=m.target_modules or arch(model).get("lora") or "all-linear",
                      fan_in_fan_out=arch(model).get("fan_in_fan_out", False))
    model = get_peft_model(model, lora)
    data = Dataset.from_dict({
        "input_ids": [e.input_ids for e in train_enc],
        "attention_mask": [[1] * len(e.input_ids) for e in train_enc],
        "labels": [e.labels for e in train_enc],
    })
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    tokens: list[int] = []
    ends: list[float] = []

    def counting_collator(features):
        batch = collator(features)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class StepEnds(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
        learning_rate=lr, gradient_accumulation_steps=cfg.train.grad_accum,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=counting_collator, callbacks=[StepEnds()])
    trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    return {"tokens_per_s": steady_rate(ends, step_tokens(tokens, cfg.train.grad_accum, len(ends)))}
