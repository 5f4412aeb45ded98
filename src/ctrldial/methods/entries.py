"""The built-in methods: zero-shot, full fine-tuning, and the PEFT family."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctrldial.config import MethodConfig
from ctrldial.errors import UserError
from ctrldial.methods.registry import Method, register

# Per-architecture module names. GPT-2/DialoGPT use Conv1D (weights stored transposed: fan_in_fan_out).
_GPT2 = {
    "lora": ["c_attn", "c_proj", "c_fc"],
    "ia3": ["c_attn", "mlp.c_proj"],
    "ia3_ff": ["mlp.c_proj"],
    "fan_in_fan_out": True,
}
_LLAMA = {
    "lora": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "ia3": ["k_proj", "v_proj", "down_proj"],
    "ia3_ff": ["down_proj"],
    "fan_in_fan_out": False,
}
ARCHITECTURES = {"gpt2": _GPT2, "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma": _LLAMA, "phi3": _LLAMA}


def arch(model) -> dict[str, Any]:
    """Module names for this model's architecture; unknown ones fall back to PEFT's own defaults."""
    return ARCHITECTURES.get(getattr(model.config, "model_type", ""), {})


def _lora_kwargs(model, cfg: MethodConfig) -> dict[str, Any]:
    a = arch(model)
    return dict(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules or a.get("lora") or "all-linear",
        fan_in_fan_out=a.get("fan_in_fan_out", False),
        task_type="CAUSAL_LM",
    )


@contextlib.contextmanager
def _peft_quiet():
    # peft (<= 0.21) reads transformers 5's deprecated `is_gradient_checkpointing` whenever it wraps a model:
    # noise on every run, not a fault
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _wrap(model, peft_config):
    from peft import get_peft_model

    with _peft_quiet():
        return get_peft_model(model, peft_config)


# -- saving and loading ---------------------------------------------------------------------------------
def save_pretrained(model, folder: Path) -> None:
    """An adapter (PEFT methods) or the whole model (full fine-tuning), as safetensors."""
    model.save_pretrained(folder, safe_serialization=True)


def load_adapter(model, folder: Path):
    """The saved adapter on the prepared base model (label tokens added as in training, deterministically)."""
    from peft import PeftModel

    with _peft_quiet():
        return PeftModel.from_pretrained(model, str(folder))


def load_whole(model, folder: Path):
    """The saved model itself, in the dtype and on the device of the prepared one.

    Its embeddings include the label tokens as trained; the prepared base (with freshly initialised label
    rows) is only a template and is discarded.
    """
    from transformers import AutoModelForCausalLM

    attn = getattr(model.config, "_attn_implementation", None)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=model.dtype, **({"attn_implementation": attn} if attn else {}))
    return loaded.to(model.device)


def build_zero_shot(model, cfg: MethodConfig, ctx: dict):
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_full(model, cfg: MethodConfig, ctx: dict):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def build_lora(model, cfg: MethodConfig, ctx: dict):
    from peft import LoraConfig

    return _wrap(model, LoraConfig(**_lora_kwargs(model, cfg)))


def build_qlora(model, cfg: MethodConfig, ctx: dict):
    from peft import LoraConfig, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return _wrap(model, LoraConfig(**_lora_kwargs(model, cfg)))


def qlora_quantization(model_cfg):
    import torch

    if not torch.cuda.is_available():
        raise UserError("method.name=qlora needs a CUDA GPU (bitsandbytes 4-bit); use method.name=lora on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("method.name=qlora needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
    )


def build_adalora(model, cfg: MethodConfig, ctx: dict):
    from peft import AdaLoraConfig

    kw = _lora_kwargs(model, cfg)
    total = max(int(ctx.get("total_steps", 100)), 10)
    # AdaLoRA prunes rank between tinit and total_step - tfinal; it needs the step count up front
    return _wrap(
        model,
        AdaLoraConfig(
            init_r=cfg.r,
            target_r=max(cfg.r // 2, 1),
            lora_alpha=kw["lora_alpha"],
            lora_dropout=kw["lora_dropout"],
            target_modules=kw["target_modules"],
            fan_in_fan_out=kw["fan_in_fan_out"],
            total_step=total,
            tinit=max(total // 10, 1),
            tfinal=max(total // 5, 1),
            deltaT=max(total // 20, 1),
            task_type="CAUSAL_LM",
        ),
    )


def build_ia3(model, cfg: MethodConfig, ctx: dict):
    from peft import IA3Config

    a = arch(model)
    targets = cfg.target_modules or a.get("ia3")
    ff = a.get("ia3_ff") if not cfg.target_modules else [t for t in cfg.target_modules if t in (a.get("ia3_ff") or [])]
    return _wrap(
        model,
        IA3Config(target_modules=targets, feedforward_modules=ff, fan_in_fan_out=a.get("fan_in_fan_out", False), task_type="CAUSAL_LM"),
    )


def build_prefix(model, cfg: MethodConfig, ctx: dict):
    from peft import PrefixTuningConfig

    peft_model = _wrap(
        model,
        PrefixTuningConfig(
            num_virtual_tokens=cfg.num_virtual_tokens,
            prefix_projection=cfg.prefix_projection,
            encoder_hidden_size=cfg.encoder_hidden_size if cfg.prefix_projection else model.config.hidden_size,
            task_type="CAUSAL_LM",
        ),
    )
    if cfg.prompt_init == "text" and not cfg.prefix_projection:
        init_prefix_from_text(peft_model, ctx["tokenizer"], cfg.prompt_init_text, cfg.num_virtual_tokens)
    return peft_model


def init_prefix_from_text(peft_model, tokenizer, text: str, n: int) -> None:
    """Start the prefix as the keys and values the base model computes for ``text`` (repeated or cut to n tokens).

    peft initialises the prefix randomly: keys and values of the wrong scale in every layer, which on
    SmolLM2 doubled the loss before the first step (6.8 vs 3.3) and left 41% empty responses after 30 steps
    (benchmarks/quality). Started from real activations, the prefixed model is exactly the base model
    reading ``text`` first, and training moves on from there (Li & Liang 2021 found the same).
    """
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    ids = (ids * (n // len(ids) + 1))[:n]
    base = peft_model.get_base_model()
    embedding = peft_model.prompt_encoder[peft_model.active_adapter].embedding
    with torch.no_grad():
        cache = base(input_ids=torch.tensor([ids], device=embedding.weight.device), use_cache=True).past_key_values
        # peft reads row t as (layers · 2 [key, value], kv heads, head dim): see PeftModel.get_prompt
        kv = torch.stack([t[0] for layer in cache.layers for t in (layer.keys, layer.values)])  # (2L, H, n, d)
        weight = kv.permute(2, 0, 1, 3).reshape(n, -1)
        if weight.shape != embedding.weight.shape:
            raise UserError(
                f"method.prompt_init=text: this model's key/value cache {tuple(weight.shape)} does not match peft's prefix "
                f"{tuple(embedding.weight.shape)}; use method.prompt_init=random"
            )
        embedding.weight.copy_(weight.to(embedding.weight.dtype))


def build_prompt(model, cfg: MethodConfig, ctx: dict):
    from peft import PromptTuningConfig, PromptTuningInit

    kw: dict[str, Any] = dict(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM")
    if cfg.prompt_init == "text":
        kw.update(
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=cfg.prompt_init_text,
            tokenizer_name_or_path=ctx["tokenizer_path"],
        )
    return _wrap(model, PromptTuningConfig(**kw))


def build_p_tuning(model, cfg: MethodConfig, ctx: dict):
    from peft import PromptEncoderConfig

    return _wrap(
        model,
        PromptEncoderConfig(num_virtual_tokens=cfg.num_virtual_tokens, encoder_hidden_size=cfg.encoder_hidden_size, task_type="CAUSAL_LM"),
    )


def build_generic(model, cfg: MethodConfig, ctx: dict):
    import peft

    if not cfg.peft_type:
        raise UserError("method.name=peft needs method.peft_type, a PEFT config class such as LoHaConfig or LoraConfig")
    cls = getattr(peft, cfg.peft_type, None)
    if cls is None or not isinstance(cls, type) or not cfg.peft_type.endswith("Config"):
        raise UserError(f"method.peft_type={cfg.peft_type!r}: not a PEFT config class (e.g. LoHaConfig, LoKrConfig, LoraConfig)")
    kwargs = {"task_type": "CAUSAL_LM", **cfg.peft_kwargs}
    try:
        peft_config = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"method.peft_kwargs: {cfg.peft_type} rejected them ({e})") from None
    try:
        return _wrap(model, peft_config)
    except (TypeError, ValueError) as e:
        raise UserError(f"method.peft_type={cfg.peft_type}: PEFT cannot apply it to this model ({str(e).splitlines()[0]})") from None


def _virtual(cfg: MethodConfig) -> int:
    return cfg.num_virtual_tokens


def adalora_step(model, step: int) -> None:
    # AdaLoRA reallocates rank from the gradients of the step just taken (before they are zeroed)
    model.base_model.update_and_allocate(step)


ADAPTER = dict(save=save_pretrained, load=load_adapter)
"""PEFT methods: the adapter is saved and loaded onto the base model."""

register(Method("zero_shot", "the pretrained model, label in the prompt, no training", build_zero_shot, 0.0, trains=False))
register(Method("full", "full fine-tuning: every weight trains", build_full, 5e-5, save=save_pretrained, load=load_whole))
register(Method("lora", "LoRA adapters on attention and MLP linears", build_lora, 1e-3, mergeable=True, **ADAPTER))
register(
    Method("qlora", "LoRA on a 4-bit (NF4) base, bitsandbytes, CUDA only", build_qlora, 1e-3, requires_cuda=True,
           quantization=qlora_quantization, **ADAPTER)
)
register(Method("adalora", "LoRA with adaptive rank allocation", build_adalora, 1e-3, mergeable=True, after_step=adalora_step, **ADAPTER))
register(Method("ia3", "IA3: learned rescaling of keys, values and MLP activations", build_ia3, 3e-2, mergeable=True, **ADAPTER))
register(Method("prefix", "prefix tuning: trained key/value prefixes in every layer", build_prefix, 1e-2, virtual_tokens=_virtual, **ADAPTER))
register(Method("prompt", "prompt tuning: trained input embeddings (random or text init)", build_prompt, 3e-2, virtual_tokens=_virtual, **ADAPTER))
register(Method("p_tuning", "P-tuning: virtual tokens from a small prompt encoder", build_p_tuning, 1e-2, virtual_tokens=_virtual, **ADAPTER))
register(
    Method(
        "peft",
        "any PEFT config by name (method.peft_type + method.peft_kwargs)",
        build_generic,
        1e-3,
        virtual_tokens=lambda cfg: int(cfg.peft_kwargs.get("num_virtual_tokens", 0)),
        **ADAPTER,
    )
)
