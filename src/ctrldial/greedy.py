"""The greedy KV-cache engine: Hugging Face greedy's tokens with less work.

``greedy_decode`` decodes plain models (base, full fine-tuning, merged or unmerged LoRA/IA3):

- prompts that share an opening (one context asked for every label) compute it once;
- a row that emits eos leaves the batch and its KV cache at once (``generate`` keeps finished rows to the
  end of the batch);
- once half the rows have left, the next prompts are prefilled and join the running batch;
- position ids come from the attention mask, so a left-padded row decodes as it would alone.

PEFT prompt learning (prefix, prompt and P-tuning) runs the same loop on the base model: the virtual
positions are the same for every prompt, so they are computed once into a KV cache that every row starts
from (``_Start``).

transformers' cache internals are kvcache.py's; which prompts take this loop is generate.py's policy.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from ctrldial.kvcache import GrowingLayer, left_zeros, new_cache, stack_caches
from ctrldial.packed import packed_linears


# -- inputs -------------------------------------------------------------------------------------------
def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-aligned in one tensor, and their attention mask (0 over the padding)."""
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


def is_prompt_learning(model) -> bool:
    """PEFT prefix / prompt / P-tuning: virtual tokens are inserted inside peft's ``generate``."""
    peft_config = getattr(model, "active_peft_config", None)
    return bool(getattr(peft_config, "is_prompt_learning", False))


def forward_parameters(model) -> set[str]:
    """Argument names of the base model's ``forward`` (peft wrappers see through to it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


@contextmanager
def contiguous_lm_head(model):
    """Inside: the output projection sees a contiguous input.

    Prefill keeps the logits of the last position only (``logits_to_keep=1``), a slice ``[rows, 1, hidden]`` whose
    batch stride is the whole sequence's; torch's matmul then cannot fold it into one matrix product and runs a
    batched product against the vocabulary matrix expanded per row (0.54 s instead of about 0.04 s for 40 rows of
    SmolLM2, one CPU thread). A contiguous copy of the same values takes the plain product.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    hook = head.register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]), prepend=True) if isinstance(head, torch.nn.Module) else None
    try:
        yield
    finally:
        if hook is not None:
            hook.remove()


def backbone(model):
    """The model without its output projection, where it has one apart (``base_model``): prefilling a cache needs no logits."""
    body = model.base_model if isinstance(model, PreTrainedModel) else None
    return body if isinstance(body, torch.nn.Module) and body is not model else None


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


class _Start:
    """What every row attends to before its prompt: nothing, or the virtual positions of PEFT prompt learning.

    Prefix tuning's prefix is a KV cache already; prompt tuning's and P-tuning's virtual tokens are input
    embeddings at positions 0..n-1, the same for every prompt, so the base model runs them once into a
    cache. Either way the loop then calls the base model with the prompt at positions n, n+1, …, which is
    what peft's own forward computes (for a prompt alone, without padding).
    """

    def __init__(self, model):
        self.model, self.n = model, 0
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        if is_prompt_learning(model):
            self.model = model.get_base_model()
            self._virtual_positions(model)
        # GrowingLayer caches can be stacked and merged row-wise; sliding-window layers cannot
        self.stackable = all(type(layer) is GrowingLayer for layer in new_cache(self.model).layers)

    def _virtual_positions(self, model) -> None:
        """Keys and values of the virtual positions (batch 1), computed once."""
        virtual = model.get_prompt(batch_size=1)
        if isinstance(virtual, torch.Tensor):  # virtual input embeddings
            cache = DynamicCache(config=self.model.config)
            dtype = self.model.get_input_embeddings().weight.dtype
            self.model(inputs_embeds=virtual.to(dtype), past_key_values=cache, use_cache=True)
            virtual = cache
        self.layers = [(layer.keys, layer.values) for layer in virtual.layers]
        self.n = virtual.get_seq_length()

    def cache(self, rows: int) -> DynamicCache:
        """A fresh cache for ``rows`` rows, holding the virtual positions."""
        cache = new_cache(self.model)
        for i, (k, v) in enumerate(self.layers):
            cache.update(k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous(), i)
        return cache

    def mask(self, token_mask: torch.Tensor) -> torch.Tensor:
        """The attention mask with the virtual positions in front."""
        return torch.cat([token_mask.new_ones((token_mask.shape[0], self.n)), token_mask], dim=-1)


def _prefill_heads(start: _Start, heads: list[list[int]], pad_id: int, device, extra: dict) -> tuple[DynamicCache, torch.Tensor]:
    """The KV cache and left-padded mask of ``heads`` (after the virtual positions, if any).

    Each head runs alone and the caches are stacked: a batch left-padded to its longest head would compute
    the padding too (2.3x the tokens on the quick bench's 12 contexts, heads of 13 to 133 tokens). Caches
    that cannot be stacked (sliding-window layers) take the padded batch.
    """
    model, n = start.model, start.n
    width = n + max(len(h) for h in heads)
    _, mask = left_pad([[1] * (n + len(h)) for h in heads], 0, device)
    body = backbone(model)
    run, extra = (body, {}) if body is not None else (model, extra)  # the heads' logits are never read
    if start.stackable:
        caches = []
        for h in heads:
            cache = start.cache(1)
            ids = torch.tensor([h], device=device)
            pos = n + torch.arange(len(h), device=device)[None]
            run(input_ids=ids, attention_mask=start.mask(torch.ones_like(ids)), position_ids=pos, past_key_values=cache, use_cache=True, **extra)
            caches.append(cache)
        stack_caches(caches[0], caches, width)
        return caches[0], mask
    cache = start.cache(len(heads))
    ids, token_mask = left_pad(heads, pad_id, device)
    mask = start.mask(token_mask)
    run(input_ids=ids, attention_mask=mask, position_ids=n + position_ids(token_mask), past_key_values=cache, use_cache=True, **extra)
    return cache, mask


@dataclass
class _Rows:
    """Sequences decoded together: prompt indices, KV cache, attention mask, next positions, last logits."""

    rows: list[int]
    cache: Any
    mask: torch.Tensor
    next_pos: torch.Tensor
    logits: torch.Tensor
    seen: torch.Tensor | None  # tokens each row has seen, for the repetition penalty

    def keep(self, idx: list[int]) -> None:
        keep = torch.tensor(idx, device=self.mask.device)
        self.cache.batch_select_indices(keep)
        self.rows = [self.rows[j] for j in idx]
        self.mask, self.next_pos, self.logits = self.mask[keep], self.next_pos[keep], self.logits[keep]
        self.seen = None if self.seen is None else self.seen[keep]

    def merge(self, other: _Rows) -> None:
        """Append ``other``'s rows; the shorter cache is left-padded with masked zeros to the longer one."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        stack_caches(self.cache, [self.cache, other.cache], width)
        self.mask = torch.cat([left_zeros(self.mask, width, 1), left_zeros(other.mask, width, 1)])
        self.next_pos = torch.cat([self.next_pos, other.next_pos])
        self.logits = torch.cat([self.logits, other.logits])
        self.seen = None if self.seen is None else torch.cat([self.seen, other.seen])
        self.rows += other.rows


def _prefill(start: _Start, prompts: list[list[int]], take: list[int], pad_id: int, penalty: bool) -> _Rows:
    """Run prompts ``take`` into a fresh cache.

    Groups that share an opening (``shared_prefix_groups``) compute it once: their shared parts are
    prefilled as a batch, the cache rows are copied to every member, and each member's own tail follows,
    left-padded *after* the shared part (the mask hides that padding; positions skip it). Used only when
    it costs fewer padded positions than one plain left-padded batch.
    """
    model = start.model
    device = next(model.parameters()).device
    extra = {"logits_to_keep": 1} if "logits_to_keep" in forward_parameters(model) else {}
    sub = [prompts[i] for i in take]
    groups = shared_prefix_groups(sub)
    order = [j for _, members in groups for j in members]
    width = max(len(p) for p in sub)
    head_width = max(shared for shared, _ in groups)
    tail_width = max(len(sub[j]) - shared for shared, members in groups for j in members)
    if len(groups) == len(sub) or len(groups) * head_width + len(sub) * tail_width >= len(sub) * width:
        cache = start.cache(len(sub))
        ids, token_mask = left_pad([sub[j] for j in order], pad_id, device)
        pos, mask = start.n + position_ids(token_mask), start.mask(token_mask)
    else:
        cache, head_mask = _prefill_heads(start, [sub[members[0]][:shared] for shared, members in groups], pad_id, device, extra)
        copy = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=device)
        cache.batch_select_indices(copy)
        head_mask = head_mask[copy]
        ids, tail_mask = left_pad([sub[j][shared:] for shared, members in groups for j in members], pad_id, device)
        pos = head_mask.sum(-1, keepdim=True) + position_ids(tail_mask)
        mask = torch.cat([head_mask, tail_mask], dim=-1)
    with contiguous_lm_head(model):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True, **extra).logits[:, -1:]
    seen = None
    if penalty:
        seen = torch.zeros((len(order), max(logits.shape[-1], pad_id + 1)), dtype=torch.bool, device=device)
        for r, j in enumerate(order):
            seen[r, sub[j]] = True
    return _Rows([take[j] for j in order], cache, mask, pos[:, -1:] + 1, logits, seen)


@torch.inference_mode()
def greedy_decode(
    model,
    prompts: list[list[int]],
    chunks: list[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    batch_size: int,
    repetition_penalty: float = 1.0,
    progress=None,
    guide=None,
    sampler=None,
    logprobs: list[float] | None = None,
) -> list[list[int]]:
    """Greedy new tokens per prompt (cut before the first eos): Hugging Face greedy's tokens, faster.

    A KV-cached loop over at most ``batch_size`` rows. A row that emits eos (or reaches max_new_tokens)
    leaves the batch and its cache at once (``DynamicCache.batch_select_indices``), so later steps compute
    only the responses still running; once half the rows have left, the next ``chunks`` of prompts
    (index lists, kept together) are prefilled and join the running batch, so the per-step cost, mostly
    reading the weights on a CPU, is shared by a full batch instead of a straggler or two.

    With ``guide`` (classifier-free guidance) some prompts are companions of another: they take their owner's
    token at every step and leave with it, and the owner's token comes from the guided logits
    (``ctrldial.guidance.Guide``: ``combine`` the logits, then every row ``follow``s its owner's token).
    ``chunks`` must keep each owner with its companions. Only owners' tokens are returned (``out[i]`` is
    empty for a companion).

    With ``sampler`` (``ctrldial.guidance.Sampler``) tokens are drawn instead of taken greedily; ``logprobs``
    (a list as long as ``prompts``) receives each response's log-likelihood under the scores it was decoded
    from (eos included), which rerankers use to break ties.
    """
    start = _Start(model)
    with packed_linears(start.model):
        return _decode(start, prompts, chunks, max_new_tokens, eos_id, pad_id, batch_size, repetition_penalty, progress,
                       guide, sampler, logprobs)


def _decode(start: _Start, prompts, chunks, max_new_tokens, eos_id, pad_id, batch_size, repetition_penalty, progress,
            guide, sampler, logprobs) -> list[list[int]]:
    model = start.model
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    queue = list(chunks)
    live: _Rows | None = None
    penalty = repetition_penalty != 1.0
    while queue or live is not None:
        if queue and (live is None or (len(live.rows) <= batch_size // 2 and start.stackable)):
            room = batch_size - (len(live.rows) if live else 0)
            take: list[int] = []
            while queue and len(take) + len(queue[0]) <= room:
                take += queue.pop(0)
            if take:
                new = _prefill(start, prompts, take, pad_id, penalty)
                if live is None:
                    live = new
                else:
                    live.merge(new)
        assert live is not None, "a chunk larger than batch_size"
        scores = live.logits[:, -1].float()
        if guide is not None:
            scores = guide.combine(scores, live.rows)
        if live.seen is not None:
            scores = _penalize(scores, live.seen, repetition_penalty)
        tokens = scores.argmax(-1) if sampler is None else sampler.draw(scores)
        if guide is not None:
            tokens = guide.follow(tokens, live.rows)
        if logprobs is not None:
            for row, lp in zip(live.rows, scores.log_softmax(-1).gather(1, tokens[:, None])[:, 0].tolist()):
                logprobs[row] += lp
        owner = guide.owner if guide is not None else None
        running, finished = [], 0
        for row, t in zip(live.rows, tokens.tolist()):
            if t != eos_id and (owner is None or owner[row] == row):
                out[row].append(t)
        for j, (row, t) in enumerate(zip(live.rows, tokens.tolist())):
            own = row if owner is None else owner[row]
            if t != eos_id and len(out[own]) < max_new_tokens:
                running.append(j)
            elif own == row:
                finished += 1
        if progress is not None:
            progress.update(finished)
        if not running:
            live = None
            continue
        if len(running) < len(live.rows):
            live.keep(running)
            tokens = tokens[torch.tensor(running, device=device)]
        if live.seen is not None:
            live.seen.scatter_(1, tokens[:, None], True)
        live.mask = torch.cat([live.mask, live.mask.new_ones((len(live.rows), 1))], dim=-1)
        live.logits = model(
            input_ids=tokens[:, None], attention_mask=live.mask, position_ids=live.next_pos,
            past_key_values=live.cache, use_cache=True,
        ).logits
        live.next_pos = live.next_pos + 1
    return out


def greedy_batch(
    model, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int, repetition_penalty: float = 1.0
) -> list[list[int]]:
    """``greedy_decode`` of ``prompts`` as one batch."""
    return greedy_decode(model, prompts, [list(range(len(prompts)))], max_new_tokens, eos_id, pad_id, len(prompts), repetition_penalty)
