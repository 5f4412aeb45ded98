"""`ctrldial tune`: hyper-parameter search with Optuna on the validation split only; one resumable study per method.

    ctrldial tune --config base.yaml --out tune/lora --trials 12 --space 'train.lr=loguniform(1e-5,1e-1)'

- **Validation only**: every trial runs with ``eval.split=validation``, so its objective is measured on
  validation contexts and tuning never generates for (or scores) a test context. ``best.yaml`` carries the base's
  own ``eval.split`` (test by default): the final ``ctrldial run --config best.yaml`` is the first to see test.
- **Trials are sweep points**: each is a run folder ``trials/NAME`` (NAME = the params and the config hash) run
  by the sweep's run path (``sweep.point_state`` / ``sweep._run_point``): records, failures recorded, and a
  finished folder whose config hash matches is reused, not rerun (equal configs run once). Judges are the
  sweep's too: without ``classifier.path`` one classifier is trained into ``OUT/classifier`` on first use.
- **Resumable**: the study is ``study.db`` (SQLite) beside ``trials/``; the same command continues it.
  ``--trials N`` is N trials in all (complete, pruned or failed); a trial cut off by a kill is run again
  with the same params. A study only resumes with the objective, space and base config it started with.
- **Sampler and pruner**: TPE (seeded with ``--seed`` plus the trials already in the study, so a resumed
  study does not replay its first proposals) and a ``MedianPruner`` on the validation loss. The loss curve
  (``train.history``, one value per ``train.eval_every`` steps) is reported to the trial after its run, so
  pruning saves no time: a trial whose best validation loss is worse than the median of the earlier complete
  trials at its last step (once there are 5 of them) is marked pruned — it counts toward ``--trials``, keeps
  its objective in the table, never becomes the best, and TPE ranks it below the complete ones. (Stopping a
  run mid-training would need a hook in the training loop; the curve and the pruner are ready for one.)
- **Outputs**: ``study.db``, ``trials.md`` (one row per trial) and ``best.yaml`` (the base config with the best
  params); with a sweep file, one study per method: ``OUT/<method>/…`` and ``OUT/best/<method>.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import yaml
from optuna.trial import TrialState

from ctrldial.config import Config, flat_config
from ctrldial.errors import UserError
from ctrldial.naming import MAX_NAME, format_value, short_key
from ctrldial.record import evaluated_split, read_record, write_atomic
from ctrldial.sweep import LOCKS, _run_point, assign_classifier, ensure_classifier, lock, point_state
from ctrldial.sweepspec import Point, SweepSpec, expand, load_sweep
from ctrldial.tunespace import Dimension, check_space, parse_space, with_params

DB, TABLE, BEST, TRIALS = "study.db", "trials.md", "best.yaml", "trials"


@dataclass(frozen=True)
class Objective:
    direction: str
    read: Callable[[dict[str, Any]], float | None]
    meaning: str


OBJECTIVES = {
    "valid_control_accuracy": Objective("maximize", lambda rec: (rec.get("metrics") or {}).get("control_accuracy"),
                                        "control accuracy on validation contexts (metrics.control_accuracy)"),
    "valid_loss": Objective("minimize", lambda rec: (rec.get("train") or {}).get("best_val_loss"),
                            "the best validation loss (train.best_val_loss)"),
}


@dataclass
class Study:
    """One study: the base point it tunes, where it lives, and where its best config goes."""

    key: str
    base: Point
    folder: Path
    best_path: Path


# -- setting up -----------------------------------------------------------------------------------------------
def _studies(out: Path, config_files: list[str | Path] | None, sweep_file: str | Path | None,
             overrides: list[str] | None, objective: str) -> tuple[SweepSpec, list[Study]]:
    """The base points (one for --config, one per sweep point), each a study; judges are assigned by the caller."""
    if bool(config_files) == bool(sweep_file):
        raise UserError("ctrldial tune: give either --config FILE (one study) or --sweep FILE (one study per method), not both or neither")
    if sweep_file:
        spec = load_sweep(Path(sweep_file))
        points = expand(spec, overrides)
    else:  # a judge is trained into OUT/classifier (without classifier.path) only when the objective needs one
        spec = SweepSpec(name="tune", source=", ".join(map(str, config_files or [])), points=[{}],
                         train_classifier=objective == "valid_control_accuracy")
        points = expand(spec, overrides, config_files)
    if not sweep_file:
        return spec, [Study(points[0].cfg.method.name, points[0], out, out / BEST)]
    methods = [p.cfg.method.name for p in points]
    keys = [m if methods.count(m) == 1 else p.name for m, p in zip(methods, points)]  # per method; per point if one repeats
    return spec, [Study(k, p, out / k, out / "best" / f"{k}.yaml") for k, p in zip(keys, points)]


def _check(studies: list[Study], dims: list[Dimension], objective: str) -> None:
    """Everything that would make a trial fail for sure, before any runs."""
    from ctrldial.methods import METHODS

    for s in studies:
        check_space(dims, s.base.cfg)
        if objective == "valid_loss" and not METHODS[s.base.cfg.method.name].trains:
            raise UserError(f"--objective valid_loss: {s.key} ({s.base.cfg.method.name}) trains nothing, so it has no validation "
                            "loss; use --objective valid_control_accuracy")
        if objective == "valid_control_accuracy" and not s.base.cfg.classifier.path:
            raise UserError(f"--objective valid_control_accuracy needs a judge: set classifier.path for {s.key}, or let the sweep "
                            "train one (classifier: {train: true} in the sweep file)")


def _open(s: Study, dims: list[Dimension], objective: str, seed: int, n_trials: int):
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ctrldial prints one line per trial itself
    s.folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{(s.folder / DB).resolve()}", study_name=s.key, load_if_exists=True,
                                direction=OBJECTIVES[objective].direction, pruner=optuna.pruners.MedianPruner())
    started = {"objective": objective, "space": [d.text for d in dims], "base_config_hash": s.base.cfg.fingerprint()}
    for k, v in started.items():
        if k in study.user_attrs and study.user_attrs[k] != v:
            raise UserError(f"{s.folder / DB}: this study was started with {k} {study.user_attrs[k]!r}, not {v!r}; rerun with the "
                            "same --config/--sweep, --set, --space and --objective to resume it, or choose another --out")
        study.set_user_attr(k, v)
    # a few random proposals before TPE models the rest; reseeded by progress, so resuming does not replay them
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=min(10, max(2, n_trials // 3)))
    return study


def _counted(study) -> list:
    """Trials that count toward --trials: complete, pruned, or failed in their run (not cut off by a kill)."""
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


def _requeue_killed(study) -> None:
    """A trial left running by a killed tune is closed and its params queued again: its run folder resumes."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)


# -- one trial ------------------------------------------------------------------------------------------------
def trial_name(dims: list[Dimension], cfg: Config) -> str:
    """`lr=0.000312,r=12-1a2b3c4d`: the params, then the config hash (two trials share a folder only if equal)."""
    flat = flat_config(cfg)
    shorts = [short_key(d.key) for d in dims]
    labels = [s if shorts.count(s) == 1 else d.key for s, d in zip(shorts, dims)]
    name = ",".join(f"{lab}={format_value(flat[d.key])}" for lab, d in zip(labels, dims))[: MAX_NAME - 9]
    return f"{name}-{cfg.fingerprint()[:8]}"


def _report_curve(trial, rec: dict[str, Any], direction: str) -> bool:
    """Feed the run's validation-loss curve to the pruner (negated when the study maximizes); True: prune.

    Asked once, at the last step: the run is already over, so its best loss is judged against the median of the
    complete trials at that step (a mid-run pruner would also stop runs that are merely slow to start)."""
    sign = -1.0 if direction == "maximize" else 1.0
    curve = [e for e in (rec.get("train") or {}).get("history") or [] if "val_loss" in e]
    for entry in curve:
        trial.report(sign * entry["val_loss"], entry["step"])
    return bool(curve) and trial.should_prune()


def _run_trial(study, s: Study, dims: list[Dimension], objective: str, spec: SweepSpec, folders: dict,
               launcher: str | None) -> tuple[Any, str]:
    """Ask for params, run them as a sweep point, tell the result; the trial and its progress text."""
    trial = study.ask()
    params = {d.key: d.suggest(trial) for d in dims}
    try:
        cfg = with_params(s.base.cfg, params, {"eval.split": "validation"})
    except UserError as e:  # a value inside the range the config rejects (the bounds were checked up front)
        trial.set_user_attr("error", str(e)[:300])
        study.tell(trial, state=TrialState.FAIL)
        return trial, f"failed: {e}"
    point = Point(trial_name(dims, cfg), f"trial {trial.number}", params, cfg)
    trial.set_user_attr("run", f"{TRIALS}/{point.name}")
    trials_dir = s.folder / TRIALS
    reused = point_state(point, trials_dir)[0] == "skip"
    error = None
    if not reused:
        ensure_classifier(spec, point, folders)
        error = _run_point(point, trials_dir, launcher, None)
    rec = read_record(trials_dir / point.name) or {}
    value = None if error else OBJECTIVES[objective].read(rec)
    if error is None and evaluated_split(rec) != "validation":
        error = f"the run evaluated {evaluated_split(rec)} contexts, not validation ones"  # never tune on test
    elif error is None and (value is None or not math.isfinite(value)):
        error = f"{objective} is n/a in {trials_dir / point.name / 'record.json'}"
    if error:
        trial.set_user_attr("error", error.splitlines()[0][:300])
        study.tell(trial, state=TrialState.FAIL)
        return trial, f"failed: {error.splitlines()[0][:200]}"
    trial.set_user_attr("objective", value)
    text = f"{objective}={value:.4g}" + (" (run reused)" if reused else "")
    if _report_curve(trial, rec, OBJECTIVES[objective].direction):
        study.tell(trial, state=TrialState.PRUNED)
        return trial, text + ", pruned: its validation loss was worse than the median"
    study.tell(trial, value)
    return trial, text


# -- outputs --------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_table(study, s: Study, dims: list[Dimension], objective: str) -> Path:
    """``trials.md``: number, state, objective, every param, run folder."""
    best = _best(study)
    rows = [f"# ctrldial tune: {s.key} — {objective} ({OBJECTIVES[objective].direction}), on validation contexts only", "",
            "| trial | state | " + " | ".join([objective, *(d.key for d in dims), "run"]) + " |",
            "|" + "---|" * (4 + len(dims))]
    for t in study.trials:
        state = t.state.name.lower() + (" (best)" if best is not None and t.number == best.number else "")
        if t.state == TrialState.FAIL:
            state += f": {t.user_attrs.get('error', 'cut off by a kill; its params ran again as a new trial')[:100]}"
        obj = t.user_attrs.get("objective")
        cells = [str(t.number), state.replace("|", "/"), "n/a" if obj is None else _fmt(obj)]
        cells += [_fmt(t.params[d.key]) if d.key in t.params else "" for d in dims] + [t.user_attrs.get("run", "")]
        rows.append("| " + " | ".join(cells) + " |")
    path = s.folder / TABLE
    write_atomic(path, "\n".join(rows) + "\n")
    return path


def _best(study):
    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def write_best(study, s: Study, objective: str) -> Path | None:
    """``best.yaml``: the base config with the best trial's params (and the base's own eval.split), for ctrldial run."""
    best = _best(study)
    if best is None:
        return None
    cfg = with_params(s.base.cfg, best.params)
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    header = (f"# ctrldial tune: the best of {len(study.trials)} trials on validation contexts — trial {best.number}, "
              f"{objective}={best.value:.4g} ({s.folder / best.user_attrs.get('run', '')})\n# params: {params}\n"
              f"# ctrldial run --config {s.best_path} --out runs/{s.key}-tuned\n")
    write_atomic(s.best_path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    return s.best_path


# -- the command ----------------------------------------------------------------------------------------------
def tune(out: str | Path, trials: int, space: list[str], objective: str = "valid_control_accuracy",
         config_files: list[str | Path] | None = None, sweep_file: str | Path | None = None,
         overrides: list[str] | None = None, seed: int = 0) -> dict[str, Path | None]:
    """Run each study up to ``trials`` trials in all; returns each study's best config file (None: no trial completed)."""
    if trials < 1:
        raise UserError(f"--trials {trials}: give the number of trials in all, at least 1 (e.g. --trials 12)")
    if objective not in OBJECTIVES:
        raise UserError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    out = Path(out)
    dims = parse_space(space)
    spec, studies = _studies(out, config_files, sweep_file, overrides, objective)
    folders = assign_classifier(spec, [s.base for s in studies], out)
    _check(studies, dims, objective)
    written: dict[str, Path | None] = {}
    with lock(out / LOCKS / "tune.lock") as held:
        if held is None:
            raise UserError(f"{out}: another ctrldial tune is running on this folder; wait for it, or choose another --out")
        for s in studies:
            written[s.key] = _tune_one(s, dims, objective, trials, seed, spec, folders)
    if not any(written.values()):
        raise UserError(f"no trial completed; see {', '.join(str(s.folder / TABLE) for s in studies)} for why")
    return written


def _tune_one(s: Study, dims: list[Dimension], objective: str, trials: int, seed: int, spec: SweepSpec, folders: dict) -> Path | None:
    study = _open(s, dims, objective, seed, trials)
    _requeue_killed(study)
    done = len(_counted(study))
    print(f"tune {s.key}: {objective} ({OBJECTIVES[objective].meaning}, {OBJECTIVES[objective].direction}); "
          f"{done} of {trials} trials done → {s.folder / DB}", flush=True)
    try:
        while done < trials:
            trial, result = _run_trial(study, s, dims, objective, spec, folders, spec.launcher)
            done += 1
            best = _best(study)
            best_text = f"best {best.value:.4g} (trial {best.number})" if best is not None else "no complete trial yet"
            params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
            print(f"tune {s.key}: trial {trial.number} [{done}/{trials}] {params}: {result}; {best_text}", flush=True)
    finally:
        table = write_table(study, s, dims, objective)
    path = write_best(study, s, objective)
    print(f"tune {s.key}: {table}" + (f", best config: {path}" if path else ", no complete trial: no best config"), flush=True)
    return path
