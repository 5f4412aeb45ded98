"""The registry of methods. Each entry says how to make a base model trainable and what it needs.

Generic code asks an entry for its capabilities (``trains``, ``mergeable``, ``virtual_tokens`` …) and
never branches on a method's name; an entry also saves and reloads what it trained (``save``/``load``).
Adding a method is one ``register(Method(...))`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # only for annotations: config validates method names, so importing it here would be a circle
    from ctrldial.config import MethodConfig


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    build: Callable[[Any, MethodConfig, dict], Any]
    """(base model, method config, context{tokenizer, labels, init_text}) → the model to train."""
    default_lr: float
    trains: bool = True
    mergeable: bool = False
    """Adapter weights can be merged into the base weights before generation (faster, same outputs)."""
    virtual_tokens: Callable[[MethodConfig], int] = lambda cfg: 0
    """Positions the method prepends inside the model (prefix, prompt, P-tuning); reserved in every prompt."""
    requires_cuda: bool = False
    quantization: Callable[[Any], Any] | None = None
    """Returns a transformers quantization config to load the base model with (QLoRA)."""
    after_step: Callable[[Any, int], None] | None = None
    """Called with (model, step) after each optimizer step (AdaLoRA's rank reallocation)."""
    save: Callable[[Any, Path], None] = lambda model, folder: None
    """(trained model, folder): write what the method trained (default: nothing, e.g. zero-shot)."""
    load: Callable[[Any, Path], Any] = lambda model, folder: model
    """(prepared base model, the folder ``save`` wrote) → exactly the model that was trained and evaluated."""


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    from ctrldial.errors import UserError

    if name not in METHODS:
        raise UserError(f"method.name: unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]

