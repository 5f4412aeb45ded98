"""Batched generation: prompts sorted by length, left padding, KV cache, stop at eos, special tokens stripped."""

from __future__ import annotations

import torch

from ctrldial.config import GenerateConfig


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


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


@torch.inference_mode()
def generate_ids(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int, progress: bool = False) -> list[list[int]]:
    """New token ids per prompt (without the prompt, cut at the first eos), in the input order.

    Prompts are processed longest first in batches of similar length, so padding is minimal and the
    first batch shows at once whether memory suffices.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    kw = generation_kwargs(cfg, eos_id, pad_id)
    batches = [order[s : s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
    for batch in tqdm(batches, desc="generate", disable=not progress, dynamic_ncols=True):
        ids, mask = left_pad([prompts[i] for i in batch], pad_id, device)
        gen = model.generate(input_ids=ids, attention_mask=mask, **kw)
        new = gen[:, ids.shape[1] :].tolist()
        for i, seq in zip(batch, new):
            out[i] = seq[: seq.index(eos_id)] if eos_id in seq else seq
    return out


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
