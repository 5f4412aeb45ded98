"""The training loop: setup → loop (validate every N steps, early stopping) → reload the best weights.

Plain PyTorch under `accelerate`: the same code runs on one CPU, on one GPU, and data-parallel across
processes (`accelerate launch --multi_gpu …`, or `torchrun --nproc_per_node 2 -m ctrldial run …` on CPU).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import gather_object
from torch.utils.data import DataLoader

from ctrldial.batching import length_grouped_batches
from ctrldial.config import TrainConfig
from ctrldial.data.template import IGNORE, Encoded
from ctrldial.errors import UserError


class TrainingFailed(Exception):
    """A fault during training (non-finite loss, out of memory): the run is recorded as failed with a hint.

    ``model`` holds the last good weights (the best validation state, if any), so they can still be saved;
    ``kept_weights`` is the folder they were saved to, once the caller has done so.
    """

    def __init__(self, message: str, model=None, step: int = 0):
        super().__init__(message)
        self.model, self.step = model, step
        self.kept_weights: Path | None = None


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _restore(model, state: dict[str, torch.Tensor] | None) -> None:
    if state is None:
        return
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            named[n].copy_(t)


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    """One entry per logged step: {step, loss, lr} and {step, val_loss} at validations."""
    steps: int = 0
    best_step: int = 0
    best_val_loss: float | None = None
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_tokens: int = 0
    """Non-pad tokens seen (all processes)."""
    packed: bool = False
    """Trained on packed rows (``train.packing`` and a method without virtual tokens)."""
    padding_share: float = 0.0
    """Share of the positions computed that were padding (this process; packed rows pad only their ends)."""
    rank_batch_digests: list[str] = field(default_factory=list)
    """Per process, a digest of the batches it trained on: data parallelism must give each its own."""
    rank_weight_checksums: list[float] = field(default_factory=list)
    """Per process, a checksum of the trained weights: synchronised gradients keep them equal."""

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_mixed_precision(choice: str, use_cuda: bool) -> str:
    """`auto` → bf16 where the hardware does it natively (CUDA with bf16, CPU AMX/AVX512-BF16), else fp32."""
    if choice != "auto":
        return choice
    if use_cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"


# -- batches ------------------------------------------------------------------------------------------
class EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose order changes each epoch (seed + epoch); accelerate shards it across processes."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: bool):
        self.lengths, self.batch_size, self.seed, self.group, self.epoch = lengths, batch_size, seed, group, 0

    def __iter__(self):
        yield from length_grouped_batches(self.lengths, self.batch_size, self.seed + self.epoch, self.group)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def train_steps(num_examples: int, cfg: TrainConfig, num_processes: int) -> int:
    """Optimizer steps the loop runs (fewer only if early stopping ends it): ``max_steps``, else ``epochs`` epochs.

    An epoch is ceil(examples / batch_size) batches (the last one may be short), shared by the processes and
    accumulated ``grad_accum`` at a time: its whole steps, at least one. The loop stops at this count, and
    whatever needs the length of the run (the learning-rate decay, AdaLoRA's budget) must take it from here.
    """
    if cfg.max_steps:
        return cfg.max_steps
    per_epoch = max(-(-num_examples // cfg.batch_size) // (cfg.grad_accum * num_processes), 1)
    return math.ceil(per_epoch * cfg.epochs)


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding; padded label positions are IGNORE, so pad == eos never hides the real eos."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _first_fit(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices into rows of at most ``budget`` tokens, longest first, each into the first row it fits."""
    rows: list[list[int]] = []
    used: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, u in enumerate(used) if u + lengths[i] <= budget), None)
        if r is None:
            rows.append([]), used.append(0)
            r = len(rows) - 1
        rows[r].append(i)
        used[r] += lengths[i]
    return rows


def pack(examples: list[Encoded], pad_id: int, row_tokens: int) -> dict[str, torch.Tensor]:
    """The examples end to end in rows of at most ``row_tokens`` tokens; position ids restart at 0 for each.

    Of about 17 row widths from the longest example up to ``row_tokens``, the one computing the fewest positions
    (rows × width; ties: the narrower) is used, so a packed batch never computes more than a padded one.
    Without an attention mask, transformers derives a block-diagonal causal mask from such position ids
    (``masking_utils.find_packed_sequence_indices``), so no example attends to another; a row's padding is a
    sequence of its own at its end. Each example's first label is IGNORE: it must not be predicted from the
    example before it. Rows are bounded because attention over a row costs its length squared: on
    SmolLM2-135M one row per batch of 8 trains slower than padded batches (benchmarks/speed/README.md).
    """
    lengths = [len(e.input_ids) for e in examples]
    longest = max(lengths)
    widths = sorted({*range(longest, max(row_tokens, longest) + 1, max(1, (row_tokens - longest) // 16)), max(row_tokens, longest)})
    layouts = [_first_fit(lengths, b) for b in widths]
    layout = min(layouts, key=lambda rows: len(rows) * max(sum(lengths[i] for i in r) for r in rows))  # first = narrowest
    used = [sum(lengths[i] for i in r) for r in layout]
    rows = [[examples[i] for i in r] for r in layout]
    width = max(used)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.input_ids)
            ids[i, at : at + n] = torch.tensor(e.input_ids)
            labels[i, at + 1 : at + n] = torch.tensor(e.labels[1:])
            positions[i, at : at + n] = torch.arange(n)
            at += n
        positions[i, at:] = torch.arange(width - at)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "tokens": torch.tensor(sum(used))}


def batch_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real (non-pad) tokens of a padded or packed batch."""
    return batch["tokens"] if "tokens" in batch else batch["attention_mask"].sum()


# -- loss -----------------------------------------------------------------------------------------------
def token_losses(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token losses, number of target tokens) for a padded or a packed batch, for every kind of method.

    A packed batch (``position_ids``, from ``pack``) computes logits only at the positions that predict a
    target (``logits_to_keep`` as a boolean mask): the vocabulary projection and the loss skip the context.
    Prompt tuning and P-tuning prepend virtual tokens *inside* the model, so their (padded) logits are longer
    than the labels by num_virtual_tokens; the last L positions always align with the L input tokens.
    """
    labels = batch["labels"]
    shift_labels = labels[:, 1:]
    if "position_ids" in batch:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = shift_labels != IGNORE
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=keep, use_cache=False)
        logits, targets = out.logits.float(), shift_labels[keep[:, :-1]]
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum"), targets.new_tensor(targets.numel())
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, -labels.shape[1] :]
    shift_logits = logits[:, :-1].float()
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, (shift_labels != IGNORE).sum()


@torch.no_grad()
def packing_agrees(model, examples: list[Encoded], pad_id: int, row_tokens: int, rtol: float = 1e-4) -> bool:
    """Do these examples packed in rows lose what they lose in a padded batch (fp32, eval mode)?

    Checked before packing (``batcher``), because a model whose attention ignores packed position ids (an older
    or custom architecture) would silently let packed examples attend to each other.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        packed, _ = token_losses(model, {k: v.to(device) for k, v in pack(examples, pad_id, row_tokens).items()})
        padded, _ = token_losses(model, {k: v.to(device) for k, v in collate(examples, pad_id).items()})
        return bool(torch.isclose(packed, padded, rtol=rtol, atol=1e-4))
    finally:
        model.train(was_training)


def batcher(model, probe: list[Encoded], pad_id: int, row_tokens: int, packable: bool) -> tuple[bool, Callable]:
    """(packed?, examples → batch): packed rows where the method allows them (``packable``) and this model keeps
    packed examples apart (``packing_agrees`` on ``probe``), else padded batches, with a warning when packing was
    wanted but the model failed the check."""
    packed = packable and packing_agrees(model, probe, pad_id, row_tokens)
    if packable and not packed:
        warnings.warn("train.packing: this model lets packed examples attend to each other (its attention ignores "
                      "packed position ids); using padded batches instead", stacklevel=3)
    return packed, (lambda b: pack(b, pad_id, row_tokens)) if packed else (lambda b: collate(b, pad_id))


@torch.no_grad()
def mean_loss(model, loader, accelerator) -> float:
    """Token-weighted mean loss over a loader, summed across processes."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in loader:
        with accelerator.autocast():
            s, n = token_losses(model, batch)
        total += torch.stack([s.double(), n.double()])
    total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    return (total[0] / total[1].clamp(min=1)).item()


def trainable_state(model) -> dict[str, torch.Tensor]:
    """A copy of the weights that train (the whole model for full fine-tuning, the adapter otherwise)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# -- the loop ---------------------------------------------------------------------------------------------
def train(
    model,
    train_data: list[Encoded],
    valid_data: list[Encoded],
    cfg: TrainConfig,
    lr: float,
    pad_id: int,
    accelerator,
    after_step: Callable[[Any, int], None] | None = None,
    packable: bool = False,
) -> tuple[Any, TrainResult]:
    """Train ``model`` in place; return the (unwrapped) model holding the best validation weights.

    ``packable``: the method can train on packed rows (no virtual tokens); ``cfg.packing`` then packs them,
    once a check on the first batch shows this model keeps packed examples apart (else: padded batches).

    Faults become ``TrainingFailed`` carrying the last good weights: a non-finite loss (hint: learning rate,
    precision) or running out of memory (hint: smaller batches with gradient accumulation).
    """
    try:
        return _train(model, train_data, valid_data, cfg, lr, pad_id, accelerator, after_step, packable)
    except TrainingFailed:
        raise
    except Exception as e:
        if not _is_oom(e):
            raise
        raise TrainingFailed(
            f"out of memory ({str(e).splitlines()[0][:120]}): lower train.batch_size (now {cfg.batch_size}) and raise "
            f"train.grad_accum to keep the effective batch, or lower data.max_length",
            model=None,
        ) from None


def _train(model, train_data, valid_data, cfg: TrainConfig, lr: float, pad_id: int, accelerator, after_step, packable) -> tuple[Any, TrainResult]:
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not train_data:
        raise UserError("no training examples left: raise data.max_train_examples or data.max_length")
    params = [p for p in model.parameters() if p.requires_grad]  # frozen weights get no optimizer state
    if not params:
        raise UserError("this method has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)

    sampler = EpochBatches([len(e.input_ids) for e in train_data], cfg.batch_size, cfg.seed, cfg.group_by_length)
    first = [train_data[i] for i in next(iter(sampler))]
    packed, to_batch = batcher(model, first, pad_id, cfg.pack_tokens, packable and cfg.packing)
    loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=to_batch)
    valid_sorted = sorted(valid_data, key=lambda e: len(e.input_ids))  # sorted: least padding, fixed order
    vloader = DataLoader(valid_sorted, batch_size=cfg.batch_size * 2, collate_fn=to_batch)

    total_steps = train_steps(len(train_data), cfg, accelerator.num_processes)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, vloader, scheduler = accelerator.prepare(model, optimizer, loader, vloader, scheduler)

    result = TrainResult()
    best = None
    bad_evals = 0
    step, micro, epoch = 0, 0, 0
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)
    computed = 0  # positions the model computed, pads included (this process)
    result.packed = packed
    digest = hashlib.sha256()
    bar = tqdm(total=total_steps, desc="train", disable=not accelerator.is_main_process, dynamic_ncols=True)
    start = time.perf_counter()
    model.train()
    done = total_steps == 0
    while not done:
        sampler.epoch = epoch
        for batch in loader:
            with accelerator.autocast():
                loss_sum, n_tok = token_losses(model, batch)
                loss = loss_sum / n_tok.clamp(min=1)
            if not torch.isfinite(loss):
                bar.close()
                unwrapped = accelerator.unwrap_model(model)
                _restore(unwrapped, best)
                raise TrainingFailed(
                    f"loss became {loss.item()} at step {step + 1}: lower train.lr (now {lr:g}) or use "
                    f"train.mixed_precision=no; the last good weights were kept",
                    model=unwrapped if best is not None else None,
                    step=step + 1,
                )
            accelerator.backward(loss / cfg.grad_accum)
            tokens += batch_tokens(batch).to(tokens.device)
            computed += batch["input_ids"].numel()
            digest.update(batch["input_ids"].cpu().numpy().tobytes())
            micro += 1
            if micro % cfg.grad_accum:
                continue
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step(accelerator.unwrap_model(model), step)
            optimizer.zero_grad(set_to_none=True)
            step += 1
            result.history.append({"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
            accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if valid_data and (step % cfg.eval_every == 0 or step == total_steps):
                val = mean_loss(model, vloader, accelerator)
                result.history.append({"step": step, "val_loss": val})
                accelerator.log({"valid/loss": val}, step=step)
                bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val:.3f}")
                if result.best_val_loss is None or val < result.best_val_loss:
                    result.best_val_loss, result.best_step, bad_evals = val, step, 0
                    best = trainable_state(accelerator.unwrap_model(model))
                else:
                    bad_evals += 1
                    if cfg.patience and bad_evals >= cfg.patience:
                        result.stopped_early = True
                        done = True
                        break
            if step >= total_steps:
                done = True
                break
        epoch += 1
    bar.close()
    result.steps = step
    result.train_seconds = time.perf_counter() - start
    result.train_tokens = int(accelerator.reduce(tokens, reduction="sum").item())
    result.padding_share = 1 - int(tokens.item()) / computed if computed else 0.0
    result.rank_batch_digests = gather_object([digest.hexdigest()[:12]])
    result.rank_weight_checksums = gather_object([float(sum(p.detach().double().sum() for p in params))])
    model = accelerator.unwrap_model(model)
    _restore(model, best)  # early stopping keeps the best validation weights, not the last ones
    model.eval()
    return model, result
