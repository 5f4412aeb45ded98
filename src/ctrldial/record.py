"""The run record: one self-describing JSON per run, written atomically. Tables are built from these.

``RunRecord`` is its schema (``SCHEMA_VERSION``, checked on read); ``METRICS`` is the one table of what a
record measures — name, column title, format, meaning, direction — that the report reads.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ctrldial.errors import UserError

RECORD = "record.json"
GENERATIONS = "generations.jsonl"
"""Beside the record: one row per (context, requested label) with the response and the judge's verdict."""
EVAL_METRICS = "metrics.json"
"""Beside an eval's generations (`ctrldial eval`): the run, the contexts file, the decoding and the metrics."""
SCHEMA_VERSION = 1
PACKAGES = ("ctrldial", "torch", "transformers", "peft", "accelerate", "datasets", "sacrebleu", "bitsandbytes")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; records and reports are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def jsonl_objects(path: Path, example: str):
    """``(where, object)`` for every non-blank line of a JSONL input file, ``where`` = ``FILE:LINE``; a line that is
    not a JSON object is a one-line error naming it, with ``example`` as the fix."""
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg}); write one object per line, e.g. {example}") from None
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(item).__name__}; e.g. {example}")
        yield where, item


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record as a dict, or None when it is missing or not valid JSON (lenient: sweeps redo such runs)."""
    p = run_dir / RECORD
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def load_record(run_dir: Path) -> dict[str, Any]:
    """A finished run's record, checked: a missing, damaged, foreign or unfinished one is a one-line error."""
    p = Path(run_dir) / RECORD
    if not p.is_file():
        raise UserError(f"{p}: no run record here; run `ctrldial run --out {run_dir}` first, or pass a run folder")
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: damaged (not valid JSON: {e}); run the same command again to redo this run") from None
    check_schema(rec, p)
    if rec.get("status") != "ok":
        raise UserError(f"{p}: the run is {rec.get('status')!r}, not finished; run it again (`ctrldial run --out {run_dir} ...`)")
    return rec


def evaluated_split(rec: dict[str, Any]) -> str:
    """The split a record's generations and metrics come from; records written before ``eval.split`` existed say test."""
    return str((rec.get("data") or {}).get("eval_split") or (rec.get("config") or {}).get("eval", {}).get("split") or "test")


def recorded_labels(run_dir: Path) -> list[str]:
    """The labels a finished run was evaluated on, read from its record (no model is loaded)."""
    return list(load_record(Path(run_dir))["data"]["labels"])


ADDED_LATER = {"reranker"}
"""RunRecord fields added within this schema version: a record written before them lacks them (read as None)."""


def check_schema(rec: Any, where: Path) -> None:
    """A record of this schema, with the keys every reader relies on."""
    if not isinstance(rec, dict) or "schema" not in rec:
        raise UserError(f"{where}: not a ctrldial run record (no `schema` key)")
    if rec["schema"] != SCHEMA_VERSION:
        raise UserError(
            f"{where}: record schema {rec['schema']!r}, this ctrldial reads schema {SCHEMA_VERSION}; "
            "rerun the run with this version (or use the ctrldial version that wrote it)"
        )
    missing = [f.name for f in fields(RunRecord) if f.name not in rec and f.name not in ADDED_LATER]
    if rec.get("status") == "ok" and missing:
        raise UserError(f"{where}: damaged record, missing {', '.join(missing)}; run the same command again to redo this run")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the ctrldial source tree (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def peak_memory_mb() -> float:
    """CUDA max allocated on GPU, else the process's peak resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def environment() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
    }


# -- the schema ------------------------------------------------------------------------------------------
@dataclass
class Cost:
    """What a run cost on the machine that ran it."""

    trainable_params: int
    total_params: int
    trainable_percent: float
    train_seconds: float
    train_tokens_per_second: float | None
    generate_seconds: float
    responses_per_second: float | None
    peak_memory_mb: float
    processes: int
    mixed_precision: str


@dataclass
class TrainSummary:
    steps: int
    best_step: int
    best_val_loss: float | None
    stopped_early: bool
    lr: float
    history: list[dict[str, Any]]
    """One entry per logged step: {step, loss, lr} and {step, val_loss} at validations."""
    rank_batch_digests: list[str]
    rank_weight_checksums: list[float]
    packed: bool = False
    """Trained on packed rows (train.packing); absent in records written before packing (read as False)."""
    padding_share: float = 0.0
    """Share of the positions computed that were padding."""


@dataclass
class DataSummary:
    train_examples: int
    train_dropped_too_long: int
    valid_examples: int
    eval_contexts: int
    labels: list[str]
    removed_duplicates: dict[str, int]
    skipped_malformed: dict[str, int]
    train_fingerprint: str
    eval_fingerprint: str
    eval_split: str = "test"
    """The split whose contexts were evaluated (``eval.split``); added later: read it with ``evaluated_split``."""


@dataclass
class Sanity:
    """Tuned vs base generations on fixed prompts: ``changed`` false means the method had no effect."""

    prompts: int
    differ: int
    changed: bool


@dataclass
class RunRecord:
    """``record.json``. A running or failed run has only the first block; a finished one has all of it."""

    config: dict[str, Any]
    config_hash: str
    schema: int = SCHEMA_VERSION
    status: str = "running"
    """running | ok | failed | interrupted"""
    packages: dict[str, str | None] = field(default_factory=package_versions)
    git: dict[str, Any] = field(default_factory=git_state)
    environment: dict[str, Any] = field(default_factory=environment)
    metrics: dict[str, Any] | None = None
    """Keys of ``METRICS`` (``metrics.*``) plus ``per_label_accuracy`` {label: accuracy}."""
    cost: Cost | None = None
    train: TrainSummary | None = None
    data: DataSummary | None = None
    sanity: Sanity | None = None
    warnings: list[str] = field(default_factory=list)
    judge: str | None = None
    """The classifier folder that produced the control metrics."""
    reranker: dict[str, Any] | None = None
    """With generate.num_candidates > 1: the discriminator that chose among candidates, and its training data
    beside the judge's (rerank.py: they never share dialogues)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # the first block leads, as readers of the file expect; a running record stops there
        order = ["schema", "status", "config", "config_hash", "packages", "git", "environment"]
        out = {k: d[k] for k in order}
        if self.status == "ok":
            out.update((k, d[k]) for k in d if k not in order)
        return out


def write_record(run_dir: Path, record: RunRecord, **extra: Any) -> None:
    """``record.json`` atomically; ``extra`` adds failure details (error, failed_step, kept_weights, peak_memory_mb)."""
    write_json(Path(run_dir) / RECORD, {**record.to_dict(), **extra})


# -- the metrics table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One measured quantity of a record, as the report shows it."""

    key: str
    """Path in the record, e.g. ``metrics.bleu`` or ``cost.train_seconds``."""
    title: str
    fmt: str
    """A format spec, or ``params`` (1.2M)."""
    meaning: str
    higher_is_better: bool | None
    """None: neither (a cost that is read, not ranked)."""
    csv: str = ""
    """The report's CSV column stem (``_mean`` and ``_std`` follow); empty: ``name``."""
    by_label: bool = False
    """The table follows this column with one per requested label (``per_label_metric``)."""
    percent_of: str = ""
    """The key of the metric this is a percentage of: shown in that one's cell (``1.2M (0.5%)``), not as a column."""
    ci: str = ""
    """Path of its 95% interval [lo, hi] in the record, if it has one."""
    by_judge: bool = False
    """The table follows this column with each additional judge's (``judge_metrics``)."""

    @property
    def name(self) -> str:
        return self.key.split(".")[-1]

    @property
    def csv_key(self) -> str:
        return self.csv or self.name

    def get(self, record: dict[str, Any]) -> Any:
        return _at(record, self.key)

    def interval(self, record: dict[str, Any]) -> list[float] | None:
        return _at(record, self.ci) if self.ci else None


def _at(record: dict[str, Any], path: str) -> Any:
    v: Any = record
    for part in path.split("."):
        v = v[part]
    return v


def per_label_metric(label: str) -> Metric:
    """Control accuracy when ``label`` is requested (a column per label)."""
    return Metric(f"metrics.per_label_accuracy.{label}", label, ".3f", f"control accuracy when {label} is requested", True,
                  csv=f"acc_{label}", ci=f"metrics.ci.per_label_accuracy.{label}")


def judge_metrics(name: str) -> list[Metric]:
    """An additional judge's columns (``ctrldial rescore RUN --classifier J --as NAME``): its control accuracy and corrected control."""
    base = f"judges.{name}.metrics"
    return [
        Metric(f"{base}.control_accuracy", f"control acc. [{name}]", ".3f", f"control accuracy as judge {name} sees it", True,
               csv=f"control_accuracy_{name}", ci=f"{base}.ci.control_accuracy"),
        Metric(f"{base}.corrected_control_accuracy", f"corrected [{name}]", ".3f",
               f"judge {name}'s control accuracy corrected by its validation on hand labels", True, csv=f"corrected_control_accuracy_{name}"),
    ]


METRICS: list[Metric] = [
    Metric("metrics.control_accuracy", "control acc.", ".3f",
           "share of responses the classifier judges to be of the requested act, averaged over the requested acts "
           "(every test context is asked for every act); chance is 1 / number of acts", True, by_label=True,
           ci="metrics.ci.control_accuracy"),
    Metric("metrics.corrected_control_accuracy", "corrected control", ".3f",
           "control accuracy re-read through the judge's validation on held-out hand labels: the mean over requested acts a of "
           "Σ_v q(v|a)·P(true=a | judge=v), q the share the judge calls v (ctrldial/correction.py); n/a: the judge has no "
           "agreement.json", True, by_judge=True),
    Metric("metrics.control_accuracy_gold", "gold-label acc.", ".3f",
           "control accuracy on the responses requested with the reference's own act (the first experiments' measure)", True,
           ci="metrics.ci.control_accuracy_gold"),
    Metric("metrics.control_accuracy_sure", "control acc., sure", ".3f",
           "control accuracy over the verdicts the judge is sure of (confidence >= classifier.unsure_below; empty responses "
           "count as misses); n/a: no threshold set", True, ci="metrics.ci.control_accuracy_sure"),
    Metric("metrics.unsure_rate", "unsure", ".3f",
           "share of non-empty responses whose verdict is below classifier.unsure_below (counted as misses in control acc.); "
           "n/a: no threshold set (a property of the judge on these responses, not a quality of the method)", None),
    Metric("metrics.bleu", "BLEU", ".2f", "on the responses requested with the reference's own act: overlap with the reference", True,
           ci="metrics.ci.bleu"),
    Metric("metrics.distinct_1", "dist-1", ".3f", "distinct unigrams / all unigrams of those responses (variety)", True),
    Metric("metrics.distinct_2", "dist-2", ".3f", "distinct bigrams / all bigrams of those responses (variety)", True,
           ci="metrics.ci.distinct_2"),
    Metric("metrics.perplexity", "perplexity", ".1f", "of the reference responses under the tuned model", False),
    Metric("metrics.empty_rate", "empty", ".3f", "share of empty responses", False),
    Metric("metrics.generation_perplexity", "gen. perplexity", ".1f",
           "of the generated (non-empty) responses given their context, under the untuned base model: fluency, which high "
           "control must not cost (ctrldial/fluency.py)", False),
    Metric("metrics.repetition_rate", "repetition", ".3f",
           "share of non-empty responses in which a word 3-gram occurs twice (a decoding loop)", False),
    Metric("metrics.label_word_rate", "label word", ".3f",
           "share of non-empty responses that say the requested label's name (\"Sure, commissive.\"): control a judge "
           "may grant for copying the label", False),
    Metric("cost.trainable_params", "trainable params (% of model)", "params", "what the method trains (and its share of the model)", None),
    Metric("cost.trainable_percent", "% of model", ".3g", "trainable parameters as a share of all parameters", None,
           percent_of="cost.trainable_params"),
    Metric("cost.train_seconds", "train s", ".0f", "training wall time on the machine that ran it", False),
    Metric("cost.peak_memory_mb", "peak MB", ",.0f", "peak memory (CUDA allocated, else the process's peak RSS)", False),
]
"""Table order (the report's columns, CSV keys and legend); a new metric is one more entry here."""


def metric(key: str) -> Metric:
    """The METRICS entry of ``key`` (its full path or its last part)."""
    for m in METRICS:
        if key in (m.key, m.name):
            return m
    raise KeyError(key)
