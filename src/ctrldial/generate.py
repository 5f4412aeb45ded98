"""Batched generation: prompts sorted by length, left padding, KV cache, stop at eos, special tokens stripped.

Greedy decoding of plain models runs ctrldial's own loop (``greedy_batch``): one prefill, then one token
per step for the rows still running — a row that emits eos leaves the batch and its KV cache, so later
steps compute only unfinished responses (Hugging Face ``generate`` keeps finished rows to the end of the
batch). Beam search, sampling, generation-config logit processors and PEFT prompt-learning models (prefix,
prompt and P-tuning insert virtual tokens inside peft's own ``generate``) go through ``model.generate``.
"""

from __future__ import annotations

import inspect

import torch

from ctrldial.config import GenerateConfig

# generation_config fields whose logit processors our greedy loop does not apply; a model that sets any
# of them (e.g. a checkpoint shipping no_repeat_ngram_size) is decoded by Hugging Face generate instead
_PROCESSOR_FIELDS = (
    "min_length", "min_new_tokens", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty",
    "encoder_repetition_penalty", "encoder_no_repeat_ngram_size", "guidance_scale", "max_time", "stop_strings",
)


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only: with left padding every prompt still starts at 0.

    Without them a left-padded row would see shifted positions and decode differently than alone.
    Pad positions get 0, as in Hugging Face ``generate`` (they are masked anyway).
    """
    return (mask.cumsum(-1) - 1).clamp(min=0)


def generation_kwargs(cfg: GenerateConfig, eos_id: int, pad_id: int) -> dict:
    kw = dict(
        max_new_tokens=cfg.max_new_tokens,
        num_beams=cfg.num_beams,
        do_sample=cfg.do_sample,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        repetition_penalty=cfg.repetition_penalty,
    )
    if cfg.do_sample:
        kw.update(temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        # greedy/beam: unset sampling knobs some checkpoints ship in generation_config (avoids warnings)
        kw.update(temperature=None, top_p=None, top_k=None)
    return kw


# -- which loop ---------------------------------------------------------------------------------------
def is_prompt_learning(model) -> bool:
    """PEFT prefix / prompt / P-tuning: virtual tokens are inserted inside peft's ``generate``."""
    peft_config = getattr(model, "active_peft_config", None)
    return bool(getattr(peft_config, "is_prompt_learning", False))


def _forward_parameters(model) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def uses_greedy_loop(model, cfg: GenerateConfig) -> bool:
    """True where ``greedy_batch`` gives Hugging Face greedy's tokens: plain greedy on a plain causal LM."""
    if cfg.do_sample or cfg.num_beams != 1 or is_prompt_learning(model):
        return False
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    if not {"position_ids", "past_key_values", "attention_mask"} <= _forward_parameters(model):
        return False
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        from transformers import GenerationConfig

        default = GenerationConfig()
        if any(getattr(gc, f, None) != getattr(default, f, None) for f in _PROCESSOR_FIELDS):
            return False
    return True


# -- the greedy loop ------------------------------------------------------------------------------------
def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefix_groups(prompts: list[list[int]]) -> list[tuple[int, list[int]]]:
    """Prompt indices grouped by a shared opening, with the number of tokens every member shares.

    Evaluation asks each context for every label, so with ``label_position=before_response`` the prompts of
    one context differ only in their last few tokens: their shared part is computed once. A prompt joins
    the previous group when most of it is shared and the recomputation that shrinking the shared part
    from P to n tokens causes, (k-1)(P-n) for k members, costs less than the n tokens it saves. Every member
    keeps at least one token of its own, whose logits start its response.
    """
    groups: list[tuple[int, list[int]]] = []
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        p = prompts[i]
        if groups:
            shared, members = groups[-1]
            n = min(_common_prefix(prompts[members[0]][:shared], p), len(p) - 1)
            if 2 * n >= len(p) and (len(members) - 1) * (shared - n) < n:
                groups[-1] = (n, members + [i])
                continue
        groups.append((len(p) - 1, [i]))
    return groups


def _penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Hugging Face's repetition penalty, over each row's own tokens (never its padding)."""
    hit = seen[:, : logits.shape[-1]]
    return torch.where(hit, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def _prefill(model, prompts: list[list[int]], pad_id: int, cache, extra: dict):
    """Run the prompts into ``cache``; returns (row order, last logits, attention mask, next positions).

    Groups that share an opening (``shared_prefix_groups``) compute it once: their shared parts are
    prefilled as a batch, the cache rows are copied to every member, and each member's own tail follows,
    left-padded *after* the shared part (the mask hides that padding; positions skip it). Used only when
    it costs fewer padded positions than one plain left-padded batch.
    """
    device = next(model.parameters()).device
    groups = shared_prefix_groups(prompts)
    rows = [i for _, members in groups for i in members]
    width = max(len(p) for p in prompts)
    head_width = max(shared for shared, _ in groups)
    tail_width = max(len(prompts[i]) - shared for shared, members in groups for i in members)
    if len(groups) == len(prompts) or len(groups) * head_width + len(prompts) * tail_width >= len(prompts) * width:
        ids, mask = left_pad([prompts[i] for i in rows], pad_id, device)
        pos = position_ids(mask)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True, **extra).logits
        return rows, logits, mask, pos[:, -1:] + 1
    heads, head_mask = left_pad([prompts[members[0]][:shared] for shared, members in groups], pad_id, device)
    model(input_ids=heads, attention_mask=head_mask, position_ids=position_ids(head_mask), past_key_values=cache, use_cache=True, **extra)
    copy = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=device)
    cache.batch_select_indices(copy)
    head_mask = head_mask[copy]
    tails, tail_mask = left_pad([prompts[i][shared:] for shared, members in groups for i in members], pad_id, device)
    pos = head_mask.sum(-1, keepdim=True) + position_ids(tail_mask)
    mask = torch.cat([head_mask, tail_mask], dim=-1)
    logits = model(input_ids=tails, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True, **extra).logits
    return rows, logits, mask, pos[:, -1:] + 1


@torch.inference_mode()
def greedy_batch(
    model, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int, repetition_penalty: float = 1.0
) -> list[list[int]]:
    """Greedy new tokens per prompt (cut before the first eos) for one batch: Hugging Face greedy's tokens.

    A KV-cached loop that drops finished rows: after each step, rows that produced eos leave the batch,
    the cache (``DynamicCache.batch_select_indices``), the mask and the positions, so later steps compute
    only the responses still running.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    cache = DynamicCache(config=model.config)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}
    rows, logits, mask, next_pos = _prefill(model, prompts, pad_id, cache, extra)
    seen = None
    if repetition_penalty != 1.0:
        vocab = max(logits.shape[-1], pad_id + 1)
        seen = torch.zeros((len(rows), vocab), dtype=torch.bool, device=device)
        for r, i in enumerate(rows):
            seen[r, prompts[i]] = True
    for step in range(max_new_tokens):
        scores = logits[:, -1].float()
        if seen is not None:
            scores = _penalize(scores, seen, repetition_penalty)
        tokens = scores.argmax(-1)
        running = []
        for j, (row, t) in enumerate(zip(rows, tokens.tolist())):
            if t != eos_id:
                out[row].append(t)
                running.append(j)
        if not running or step == max_new_tokens - 1:
            break
        if len(running) < len(rows):
            keep = torch.tensor(running, device=device)
            cache.batch_select_indices(keep)
            tokens, mask, next_pos = tokens[keep], mask[keep], next_pos[keep]
            seen = None if seen is None else seen[keep]
            rows = [rows[j] for j in running]
        if seen is not None:
            seen.scatter_(1, tokens[:, None], True)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
        logits = model(
            input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos, past_key_values=cache, use_cache=True
        ).logits
        next_pos = next_pos + 1
    return out


@torch.inference_mode()
def hf_generate_batch(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int) -> list[list[int]]:
    """Hugging Face (or peft) ``generate`` for one left-padded batch, cut before the first eos."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    gen = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(cfg, eos_id, pad_id))
    new = gen[:, ids.shape[1] :].tolist()
    return [seq[: seq.index(eos_id)] if eos_id in seq else seq for seq in new]


def length_sorted_batches(prompts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Index batches, longest prompts first, so padding is small and memory peaks in the first batch."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def grouped_batches(prompts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Like ``length_sorted_batches``, but prompts sharing an opening stay in one batch (computed once there)."""
    groups = sorted(shared_prefix_groups(prompts), key=lambda g: -max(len(prompts[i]) for i in g[1]))
    batches: list[list[int]] = [[]]
    for _, members in groups:
        for s in range(0, len(members), batch_size):
            part = members[s : s + batch_size]
            if len(batches[-1]) + len(part) > batch_size:
                batches.append([])
            batches[-1].extend(part)
    return [b for b in batches if b]


def generate_ids(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int, progress: bool = False) -> list[list[int]]:
    """New token ids per prompt (without the prompt, cut at the first eos), in the input order.

    Prompts are processed longest first in batches of similar length, so padding is minimal and the
    first batch shows at once whether memory suffices. Greedy decoding of plain models uses
    ``greedy_batch`` (same tokens as Hugging Face greedy, faster); everything else ``model.generate``.
    """
    from tqdm.auto import tqdm

    greedy = uses_greedy_loop(model, cfg)
    out: list[list[int]] = [[] for _ in prompts]
    batches = grouped_batches(prompts, cfg.batch_size) if greedy else length_sorted_batches(prompts, cfg.batch_size)
    for batch in tqdm(batches, desc="generate", disable=not progress, dynamic_ncols=True):
        chunk = [prompts[i] for i in batch]
        if greedy:
            new = greedy_batch(model, chunk, cfg.max_new_tokens, eos_id, pad_id, cfg.repetition_penalty)
        else:
            new = hf_generate_batch(model, chunk, cfg, eos_id, pad_id)
        for i, seq in zip(batch, new):
            out[i] = seq
    return out


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
