"""Batched generation: which loop decodes, prompts batched by length, stop at eos, special tokens stripped.

Greedy decoding of plain models and of PEFT prompt learning runs ctrldial's own KV-cache loop
(``greedy_decode``, greedy.py), which gives Hugging Face greedy's tokens with less work; prompts that share
an opening go to it together (``prefix_chunks``). Beam search, sampling and generation-config logit
processors go through ``model.generate``, on left-padded batches sorted by length.
"""

from __future__ import annotations

import torch

from ctrldial.batching import length_sorted_batches
from ctrldial.config import GenerateConfig
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
        kw.update(temperature=cfg.temperature, top_p=cfg.top_p)
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


def generate_ids(model, prompts: list[list[int]], cfg: GenerateConfig, eos_id: int, pad_id: int, progress: bool = False) -> list[list[int]]:
    """New token ids per prompt (without the prompt, cut at the first eos), in the input order.

    Prompts are processed longest first in batches of similar length, so padding is minimal and the
    first batch shows at once whether memory suffices. Greedy decoding of plain models uses
    ``greedy_decode`` (Hugging Face greedy's tokens, faster); everything else ``model.generate``.
    """
    from tqdm.auto import tqdm

    if not prompts:
        return []
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress, dynamic_ncols=True)
    if uses_greedy_loop(model, cfg):
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


def decode(tokenizer, ids: list[list[int]]) -> list[str]:
    """Texts of ``ids``, special tokens dropped and whitespace stripped."""
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
