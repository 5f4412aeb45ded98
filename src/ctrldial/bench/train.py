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
from ctrldial.train import resolve_mixed_precision


def bench_train(cfg: Config, train_enc: list, device, repeats: int, baseline_bf16: bool = False) -> tuple[Loaded, dict[str, Any]]:
    """Both loops ``repeats`` times, alternately; returns ctrldial's last trained model (generation uses it).

    ``ctrldial`` runs at the baseline's precision (fp32, or bf16 autocast when the baseline gets ``bf16=True``
    too): ``train_speedup`` compares like with like. ``ctrldial_auto`` runs at ctrldial's default precision
    (``auto``: bf16 where the CPU has it natively), when that differs: ``train_speedup_auto``.
    """
    same = "bf16" if baseline_bf16 else "no"
    auto = resolve_mixed_precision(cfg.train.mixed_precision, device.type == "cuda")
    sides = {"ctrldial": same} | ({"ctrldial_auto": auto} if auto != same else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*sides, "hf_trainer"]}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, precision in sides.items():
                m, r = ctrldial_train(cfg, train_enc, device, precision)
                runs[name].append(r)
            runs["hf_trainer"].append(hf_trainer_baseline(cfg, train_enc, m.tokenizer, learning_rate(cfg, m.method), Path(tmp), baseline_bf16))
    part: dict[str, Any] = {
        "steps": cfg.train.max_steps, "batch_size": cfg.train.batch_size, "examples": len(train_enc),
        "non_pad_tokens": sum(len(e.input_ids) for e in train_enc),
        "precision": {**{n: ("bf16" if p == "bf16" else "fp32") for n, p in sides.items()}, "hf_trainer": "bf16" if baseline_bf16 else "fp32"},
    }
    for name, rs in runs.items():
        part[name] = summary([r["tokens_per_s"] for r in rs], "tokens_per_s") | {"padding_share": rs[-1]["padding_share"]}
        if "packed" in rs[-1]:
            part[name]["packed"] = rs[-1]["packed"]
    return m, part


def ctrldial_train(cfg: Config, train_enc: list, device, precision: str) -> tuple[Loaded, dict[str, Any]]:
    """ctrldial's loop (packed or length-grouped batches) at ``precision``; steady-state non-pad tokens/s."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mixed_precision=precision))
    set_seed(cfg.train.seed)
    m = method_model(cfg, device, len(train_enc))
    accelerator = make_accelerator(cfg, None)
    ends: list[float] = []
    method = m.method
    m.method = dataclasses.replace(method, after_step=_timed(method.after_step, ends))  # the loop's only per-step hook
    try:
        result = train_method(m, train_enc, [], accelerator)
    finally:
        m.method = method
    # the loop's own batches (one process): same sampler, same seed, epoch 0
    batches = length_grouped_batches([len(e.input_ids) for e in train_enc], cfg.train.batch_size, cfg.train.seed, cfg.train.group_by_length)
    tokens = [sum(len(train_enc[i].input_ids) for i in b) for b in batches]
    return m, {"tokens_per_s": steady_rate(ends, step_tokens(tokens, cfg.train.grad_accum, len(ends))),
               "padding_share": result.padding_share, "packed": result.packed}


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


def hf_trainer_baseline(cfg: Config, train_enc: list, tokenizer, lr: float, workdir: Path, bf16: bool = False) -> dict[str, Any]:
    """A plain Hugging Face Trainer + PEFT LoRA script with default TrainingArguments (``bf16`` if asked), written
    as a user would."""
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
    computed: list[int] = []
    ends: list[float] = []

    def counting_collator(features):
        batch = collator(features)
        tokens.append(int(batch["attention_mask"].sum()))
        computed.append(batch["input_ids"].numel())
        return batch

    class StepEnds(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
        learning_rate=lr, gradient_accumulation_steps=cfg.train.grad_accum, bf16=bf16,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=counting_collator, callbacks=[StepEnds()])
    trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)
    return {"tokens_per_s": steady_rate(ends, step_tokens(tokens, cfg.train.grad_accum, len(ends))),
            "padding_share": 1 - sum(tokens) / sum(computed)}
