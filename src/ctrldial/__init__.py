"""ctrldial: which parameter-efficient fine-tuning method best teaches a dialogue model to say what it is told to say?

The Python API (``ctrldial.api``): ``run``, ``load`` (→ ``Model.generate``), ``report``, ``rescore``, ``make_config``.
"""

from ctrldial.api import Model, evaluate, load, make_config, report, rescore, run

__all__ = ["Model", "evaluate", "load", "make_config", "report", "rescore", "run"]
__version__ = "0.1.0"
