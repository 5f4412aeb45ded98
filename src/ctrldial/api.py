"""The Python API, for notebooks and scripts; the CLI is a thin layer over it.

    import ctrldial
    record = ctrldial.run({"model": {"name": "smollm2-135m"}, "method": {"name": "lora"}}, "runs/lora")
    bot = ctrldial.load("runs/lora")
    bot.generate(["Are you coming tonight?"], "question")
    ctrldial.report("runs")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrldial.config import Config, Layers, build_config
from ctrldial.errors import UserError, check_label  # noqa: F401  (check_label is public here)
from ctrldial.record import recorded_labels  # noqa: F401


def make_config(spec: Config | dict[str, Any] | str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A validated Config from a Config, a nested dict (as in a YAML file), or a YAML file path; ``overrides`` are ``KEY=VALUE``."""
    if isinstance(spec, Config):
        return Layers().add_tree(spec.to_dict(), "config").add_overrides(overrides).build()
    if isinstance(spec, (str, Path)):
        return build_config([spec], overrides)
    return build_config(None, overrides, base=spec)


def run(spec: Config | dict[str, Any] | str | Path | None, out: str | Path, overrides: list[str] | None = None,
        overwrite: bool = False) -> dict[str, Any] | None:
    """Train, generate and score one run into ``out``; returns its record (as written to ``out/record.json``)."""
    from ctrldial.pipeline import run as run_pipeline

    return run_pipeline(make_config(spec, overrides), Path(out), overwrite=overwrite)


def tune(out: str | Path, trials: int, space: list[str], objective: str = "valid_control_accuracy",
         config: list[str | Path] | str | Path | None = None, sweep: str | Path | None = None,
         overrides: list[str] | None = None, seed: int = 0) -> dict[str, Path | None]:
    """Hyper-parameter search on validation contexts (``space``: ``KEY=DIST`` items, as ``--space``), from config files or
    a sweep file (one study per method); resumes the study in ``out``. Returns each study's best config file."""
    from ctrldial.tune import tune as run_tune

    files = [config] if isinstance(config, (str, Path)) else config
    return run_tune(Path(out), trials, space, objective, config_files=files, sweep_file=sweep, overrides=overrides, seed=seed)


class Model:
    """A finished run, loaded: exactly the model that was evaluated, ready to answer."""

    def __init__(self, loaded):
        self._m = loaded

    @property
    def labels(self) -> list[str]:
        return list(self._m.labels)

    @property
    def config(self) -> Config:
        return self._m.cfg

    def generate(self, context: str | list[str], label: str) -> str:
        """The response to ``context`` (a turn or turns, oldest first) with the requested ``label``."""
        return self.generate_many([context], [label])[0]

    def generate_many(self, contexts: list[str | list[str]], labels: list[str]) -> list[str]:
        """One response per (context, label) pair, batched (with the run's decoding, guidance included)."""
        for lab in labels:
            check_label(lab, self._m.labels)
        return self._m.respond([(_turns(c), lab) for c, lab in zip(contexts, labels)])


def _turns(context: str | list[str]) -> tuple[str, ...]:
    return (context,) if isinstance(context, str) else tuple(context)


def load(run_dir: str | Path, overrides: list[str] | None = None) -> Model:
    """A finished run folder, ready to generate (``overrides``, e.g. ``generate.do_sample=true``)."""
    from ctrldial.loaded import reload

    return Model(reload(Path(run_dir), overrides))


def report(runs_dir: str | Path) -> Path:
    """Tables, plots and report.html from every run record under ``runs_dir``; returns the page's path."""
    from ctrldial.reporting import report as build_report

    return build_report(Path(runs_dir))


def evaluate(run_dir: str | Path, contexts: str | Path, out: str | Path, labels: list[str] | None = None,
             overrides: list[str] | None = None, record: bool = False) -> dict[str, Any]:
    """A finished run on a contexts file (``{"context": [...]}`` per line): generations, judged, into ``out``
    (``record``: also a ``record.json`` that ``report`` and ``rescore`` read)."""
    from ctrldial.evaluation import evaluate as _evaluate

    return _evaluate(Path(run_dir), Path(contexts), Path(out), labels, overrides, record)


def rescore(run_dir: str | Path, classifier: str | Path, name: str | None = None, unsure_below: float = 0.0) -> dict[str, Any]:
    """Judge a finished run's generations again with another classifier (``name``: as an additional judge; ``unsure_below``:
    as ``classifier.unsure_below``); returns the record."""
    from ctrldial.scoring import rescore as rescore_run

    return rescore_run(Path(run_dir), Path(classifier), name, unsure_below)
