"""One registry of methods (``registry``) and the built-in entries (``entries``: zero-shot, full fine-tuning, PEFT).

Generic code asks an entry for its capabilities and never branches on a method's name.
"""

from ctrldial.methods import entries as _entries  # noqa: F401  (registers the built-in methods)
from ctrldial.methods.registry import METHODS, Method, get_method, register

__all__ = ["METHODS", "Method", "get_method", "register"]
