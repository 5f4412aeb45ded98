"""Inference matrix products on a CPU with the weights packed once: ``packed_linears(model)``.

Every ``nn.Linear`` (and GPT-2's ``Conv1D``) of an fp32 model on the CPU computes ``x @ W.T + b`` with torch's
plain matrix product, which re-arranges ``W`` into the kernel's blocked layout on every call. Decoding calls each
layer once per step with a few dozen rows, so that re-arrangement is most of the product: on SmolLM2's shapes
(one thread, 14 to 160 rows) oneDNN's product on a weight packed once is 2.3 to 2.8 times as fast
(benchmarks/speed). The values are the same products summed in another order: equal to float rounding,
not bit for bit (the greedy tests check the tokens; the bench reports the share identical to Hugging Face).

Used only where nothing needs gradients (generation, perplexity, the judge's scoring) and never under autocast,
whose precision the packed product would not follow: not when the context opens under autocast, and not for a
call made under it (a trained model's forward stays wrapped in accelerate's autocast) or on a non-fp32 input. Without oneDNN, or on another device or dtype, the
context changes nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from transformers.pytorch_utils import Conv1D

PACK_ROWS = 64
"""oneDNN's hint of the rows per product (it changes speed only; 14 to 256 rows run alike with 64)."""


def _packed_forward(packed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The packed product; under autocast (a forward that accelerate wrapped in it) or for another input dtype, the
    plain one, so the layer keeps autocast's precision."""
    if x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return torch.nn.functional.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The ``out × in`` weight of a module this can pack, else None (subclasses, hooks, other devices or dtypes)."""
    if "forward" in module.__dict__ or module._forward_hooks or module._forward_pre_hooks:
        return None
    if type(module) is torch.nn.Linear:
        w = module.weight
    elif type(module) is Conv1D:  # GPT-2: x @ W + b with W in × out
        w = module.weight.t()
    else:
        return None
    return w.detach() if w.device.type == "cpu" and w.dtype == torch.float32 else None


@contextmanager
def packed_linears(model: torch.nn.Module, enabled: bool = True):
    """Inside: the model's fp32 CPU linear layers run on weights packed once (see the module's doc)."""
    if not enabled or not available() or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
        yield
        return
    patched = []
    try:
        for module in model.modules():
            w = _weight(module)
            if w is None:
                continue
            packed = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), PACK_ROWS)
            bias = module.bias.detach() if module.bias is not None else None
            module.forward = partial(_packed_forward, packed, w, bias)
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward
