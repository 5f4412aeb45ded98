"""Batched generation: which loop decodes, prompts batched by length, stop at eos, special tokens stripped.

Greedy decoding of plain models and of PEFT prompt learning runs ctrldial's own KV-cache loop
(``greedy_decode``, greedy.py), which gives Hugging Face greedy's tokens with less work; prompts that share
an opening go to it together (``prefix_chunks``). Beam search, sampling and generation-config logit
processors go through ``model.generate``, on left-padded batches sorted by length.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ctrldial.batching import length_sorted_batches
from ctrldial.config import GenerateConfig
from ctrldial.guidance import Guide, Sampler, expand
from ctrldial.errors import UserError
from ctrldial.greedy import forward_parameters, greedy_decode, is_prompt_learning, left_pad, shared_prefix_groups

# generation_config fields whose logit processors our greedy loop does not apply; a model that sets any
# of them (e.g. a checkpoint shipping no_repeat_ngram_size) is decoded by Hugging Face generate instead
_PROCESSOR_FIELDS = (
    "min_length", "min_new_tokens", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty",
    "encoder_repetition_penalty", "encoder_no_repeat_ngram_size", "guidance_scale", "max_time", "stop_strings",
)


def generation_kwargs(cfg: GenerateConfig, eos_id: int, pad_id: int) -> dict:
    """Keyword arguments of ``model.generate`` for ``cfg``."""
    kw = dict(
        max_new_tokens=cfg.max_new_tokens,
        num_beams=cfg.num_beams,
        do_sample=cfg.do_sample,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        repetition_penalty=cfg.repetition_penalty,
    )
    if cfg.do_sample:
        kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    else:
        # greedy/beam: unset sampling knobs some checkpoints ship in generation_config (avoids warnings)
        kw.update(temperature=None, top_p=None, top_k=None)
    return kw


# -- which loop ---------------------------------------------------------------------------------------
def uses_greedy_loop(model, cfg: GenerateConfig) -> bool:
    """True where ``greedy_decode`` gives Hugging Face greedy's tokens: plain greedy on a plain causal LM."""
    if cfg.do_sample or cfg.num_beams != 1:
        return False
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    if is_prompt_learning(model) and getattr(model.active_peft_config, "num_transformer_submodules", 1) != 1:
        return False
    if not {"position_ids", "past_key_values", "attention_mask"} <= forward_parameters(model):
        return False
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        from transformers import GenerationConfig

        default = GenerationConfig()
        if any(getattr(gc, f, None) != getattr(default, f, None) for f in _PROCESSOR_FIELDS):
            return False
    return True


# -- batches and entry points ---------------------------------------------------------------------------
@torch.inference_mode()
def hf_generate_batch(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int) -> list[list[int]]:
    """Hugging Face (or peft) ``generate`` for one left-padded batch, cut before the first eos."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    gen = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(cfg, eos_id, pad_id))
    new = gen[:, ids.shape[1] :].tolist()
    return [seq[: seq.index(eos_id)] if eos_id in seq else seq for seq in new]


def prefix_chunks(prompts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Prompt groups sharing an opening (split at ``batch_size``), longest prompts first."""
    groups = sorted(shared_prefix_groups(prompts), key=lambda g: -max(len(prompts[i]) for i in g[1]))
    return [members[s : s + batch_size] for _, members in groups for s in range(0, len(members), batch_size)]


def generate_ids(
    model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int, progress: bool = False,
    negatives: list[list[list[int]]] | None = None, logprobs: list[float] | None = None,
) -> list[list[int]]:
    """New token ids per prompt (without the prompt, cut at the first eos), in the input order.

    Prompts are processed longest first in batches of similar length, so padding is minimal and the
    first batch shows at once whether memory suffices. Greedy decoding of plain models uses
    ``greedy_decode`` (Hugging Face greedy's tokens, faster); everything else ``model.generate``.
    With ``negatives`` (per prompt, its negative prompts) and ``cfg.guidance_scale != 1`` the greedy loop
    decodes with classifier-free guidance (guidance.py). With ``logprobs`` (an empty list) it is filled with
    each response's log-likelihood (ctrldial's loop, greedy or sampled; for reranking).
    """
    from tqdm.auto import tqdm

    if not prompts:
        return []
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress, dynamic_ncols=True)
    guided = negatives is not None and cfg.guidance_scale != 1
    if guided or logprobs is not None:
        out = _own_loop(model, prompts, negatives if guided else None, cfg, eos_id, pad_id, bar, logprobs)
    elif uses_greedy_loop(model, cfg):
        chunks = prefix_chunks(prompts, cfg.batch_size)
        out = greedy_decode(model, prompts, chunks, cfg.max_new_tokens, eos_id, pad_id, cfg.batch_size, cfg.repetition_penalty, bar)
    else:
        out = [[] for _ in prompts]
        for batch in length_sorted_batches([len(p) for p in prompts], cfg.batch_size):
            for i, seq in zip(batch, hf_generate_batch(model, [prompts[i] for i in batch], cfg, eos_id, pad_id)):
                out[i] = seq
            bar.update(len(batch))
    bar.close()
    return out


def _own_loop(model, prompts, negatives, cfg: GenerateConfig, eos_id: int, pad_id: int, bar, logprobs) -> list[list[int]]:
    """ctrldial's loop where only it can decode: classifier-free guidance (each prompt with its negatives, in
    the same batches), and candidates whose likelihood a reranker needs (greedy or sampled: ``Sampler``)."""
    if cfg.num_beams != 1 or not uses_greedy_loop(model, replace(cfg, do_sample=False)):
        raise UserError(
            "generate.guidance_scale / generate.num_candidates run in ctrldial's decoding loop, which this model or config cannot "
            "take (beam search, an encoder-decoder, a multi-module prompt-learning method, or a generation_config with logit "
            "processors); set generate.num_beams=1, generate.guidance_scale=1 or generate.num_candidates=1"
        )
    sampler = Sampler(cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed) if cfg.do_sample else None
    if negatives is None:
        rows, guide, batch_size = prompts, None, cfg.batch_size
        chunks = prefix_chunks(prompts, batch_size)
    else:
        rows, owner, members = expand(prompts, negatives)
        per_prompt = max(len(m) for m in members)
        batch_size = max(cfg.batch_size, per_prompt)
        chunks = [[r for i in chunk for r in members[i]] for chunk in prefix_chunks(prompts, max(1, batch_size // per_prompt))]
        guide = Guide(owner, cfg.guidance_scale)
    row_logprobs = [0.0] * len(rows) if logprobs is not None else None
    out = greedy_decode(model, rows, chunks, cfg.max_new_tokens, eos_id, pad_id, batch_size, cfg.repetition_penalty, bar, guide,
                        sampler, row_logprobs)
    if logprobs is not None:
        logprobs[:] = row_logprobs[: len(prompts)]
    return out[: len(prompts)]


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    """Texts of ``ids``, special tokens dropped and whitespace stripped."""
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
