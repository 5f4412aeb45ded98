"""`ctrldial report DIR`: comparison tables, plots, a sample gallery and one self-contained report.html.

Built only from run records (``*/record.json``) and their ``generations.jsonl``: a result is a file, and
the table is built from files. Runs that differ only in their seeds form one row (mean ± std), and every
row is compared with the best one on the same test contexts (``compare_with_best``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ctrldial.config import flatten
from ctrldial.errors import UserError
from ctrldial.metrics import paired_bootstrap_seeds
from ctrldial.naming import format_value, short_key
from ctrldial.record import GENERATIONS, RECORD, metric, per_label_metric, write_atomic
from ctrldial.report_table import (judge_rank_agreement, judges_of, markdown_table, rank_agreement_text, reading, row_interval,
                                   table)
from ctrldial.report_html import CSS, gallery_html, html_table, img

REPORT_DIR = "report"
SEED_KEYS = ("train.seed", "data.seed")
NOT_GROUPED = {*SEED_KEYS, "train.tracker"}
"""Keys that never make two runs different rows: seeds are averaged over, the tracker changes no result."""
GALLERY_CONTEXTS = 3


@dataclass
class Run:
    folder: str
    record: dict[str, Any]
    flat: dict[str, Any]
    path: Path

    @property
    def status(self) -> str:
        return str(self.record.get("status", "unknown"))


@dataclass
class Row:
    """One model × method (× other varying keys) over its seeds."""

    model: str
    method: str
    variant: str
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(x for x in (self.method, self.variant) if x)

    def values(self, get: Callable[[dict[str, Any]], Any]) -> list[float]:
        out = []
        for r in self.runs:
            try:
                v = get(r.record)
            except (KeyError, TypeError):
                v = None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
        return out


# -- collecting ---------------------------------------------------------------------------------------
def find_runs(root: Path) -> list[Run]:
    runs = []
    for p in sorted(root.rglob(RECORD)):
        rel = p.parent.relative_to(root)
        if rel.parts[:1] == (REPORT_DIR,) or any(part.startswith(".") for part in rel.parts):
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            rec = {"status": "unreadable", "error": f"{p}: not valid JSON"}
        runs.append(Run(str(rel) if str(rel) != "." else root.name, rec, flatten(rec.get("config", {})), p.parent))
    return runs


def group_runs(ok: list[Run]) -> list[Row]:
    """Rows keyed by model, method and every other key that varies across the finished runs (seeds aside).

    A row's variant label names only its values that differ from the most common one, so the usual runs
    read `lora` and a template variant reads `lora label_position=first`."""
    from ctrldial.methods import METHODS

    def value(r: Run, k: str) -> str:
        return json.dumps(r.flat.get(k), sort_keys=True)

    keys = sorted({k for r in ok for k in r.flat} - NOT_GROUPED - {"model.name", "method.name"})
    varying = [k for k in keys if len({value(r, k) for r in ok}) > 1]
    modal = {k: Counter(value(r, k) for r in ok).most_common(1)[0][0] for k in varying}
    rows: dict[tuple, Row] = {}
    for r in ok:
        variant = ",".join(f"{short_key(k)}={format_value(r.flat.get(k))}" for k in varying if value(r, k) != modal[k])
        key = (r.flat.get("model.name"), r.flat.get("method.name"), tuple(value(r, k) for k in varying))
        rows.setdefault(key, Row(str(key[0]), str(key[1]), variant)).runs.append(r)
    order = list(METHODS)  # methods in registry order, models by size
    size: dict[str, float] = {}
    for row in rows.values():
        size[row.model] = max(size.get(row.model, 0.0), *row.values(lambda rec: rec["cost"]["total_params"]), 0.0)
    return sorted(rows.values(), key=lambda w: (size[w.model], w.model, order.index(w.method) if w.method in order else len(order), w.variant))


def labels_of(runs: list[Run]) -> list[str]:
    seen: list[str] = []
    for r in runs:
        for lab in list((r.record.get("data") or {}).get("labels") or []) + list((r.record.get("metrics") or {}).get("per_label_accuracy") or {}):
            if lab not in seen:
                seen.append(lab)
    return seen


def _error_line(run: Run) -> str:
    return str(run.record.get("error") or "no error recorded").splitlines()[0][:400]


# -- plots (matplotlib's Agg canvas; no pyplot, no global state) ---------------------------------------
def _panels(rows: list[Row], path: Path, has_data: Callable[[Row], bool], draw: Callable[[Any, list[Row]], None]) -> bool:
    """One panel per model that has data, drawn by ``draw(ax, rows of that model)``; False if none has."""
    from matplotlib.figure import Figure

    models: dict[str, list[Row]] = {}
    for row in rows:
        models.setdefault(row.model, []).append(row)
    models = {m: rs for m, rs in models.items() if any(has_data(r) for r in rs)}
    if not models:
        return False
    ncols = min(len(models), 3)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * -(-len(models) // ncols)), dpi=100, layout="constrained")
    axes = fig.subplots(-(-len(models) // ncols), ncols, squeeze=False).ravel()
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    for ax, (model, rs) in zip(axes, models.items()):
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        draw(ax, rs)
    fig.savefig(path)
    return True


def _color(rows: list[Row], row: Row) -> str:
    """One colour per method (label) in every plot."""
    return f"C{list(dict.fromkeys(r.label for r in rows)).index(row.label) % 10}"


def plot_control_vs_params(rows: list[Row], path: Path) -> bool:
    def draw(ax, rs: list[Row]) -> None:
        for row in rs:
            acc, params = row.values(metric("control_accuracy").get), row.values(metric("trainable_params").get)
            if not acc:
                continue
            y, ci = statistics.fmean(acc), row_interval(row, metric("control_accuracy"))
            err = [[max(0.0, y - ci[0])], [max(0.0, ci[1] - y)]] if ci else None  # the 95% interval, as in the table
            if not params or statistics.fmean(params) <= 0:  # nothing trained: a floor, drawn as a line
                ax.axhline(y, ls="--", color="grey", lw=1)
                if ci:
                    ax.axhspan(ci[0], ci[1], color="grey", alpha=0.15, lw=0)
                ax.annotate(row.label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="grey", va="bottom")
                continue
            x = statistics.fmean(params)
            ax.errorbar([x], [y], yerr=err, fmt="o", capsize=3, color=_color(rows, row))
            ax.annotate(row.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set(xscale="log", xlabel="trainable parameters (log)", ylabel="control accuracy (bars: 95% CI)", ylim=(0, 1))

    return _panels(rows, path, lambda r: bool(r.values(metric("control_accuracy").get)), draw)


def plot_per_label(rows: list[Row], labels: list[str], path: Path) -> bool:
    def draw(ax, rs: list[Row]) -> None:
        width = 0.8 / len(rs)
        for i, row in enumerate(rs):
            means = [statistics.fmean(v) if (v := row.values(per_label_metric(lab).get)) else 0.0 for lab in labels]
            cis = [row_interval(row, per_label_metric(lab)) for lab in labels]  # error bars: the 95% intervals
            err = [[max(0.0, y - ci[0]) if ci else 0.0 for y, ci in zip(means, cis)],
                   [max(0.0, ci[1] - y) if ci else 0.0 for y, ci in zip(means, cis)]]
            ax.bar([j + (i - (len(rs) - 1) / 2) * width for j in range(len(labels))], means, width, label=row.label, color=_color(rows, row),
                   yerr=err if any(cis) else None, capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set(ylim=(0, 1), ylabel="control accuracy")
        ax.legend(fontsize=7, ncols=2)

    return _panels(rows, path, lambda r: any(r.values(per_label_metric(lab).get) for lab in labels), draw)


def _history(row: Row) -> list[dict[str, Any]]:
    return (representative(row).record.get("train") or {}).get("history") or []


def plot_losses(rows: list[Row], path: Path) -> bool:
    def draw(ax, rs: list[Row]) -> None:
        for row in rs:
            train = [(h["step"], h["loss"]) for h in _history(row) if h.get("loss") is not None]
            valid = [(h["step"], h["val_loss"]) for h in _history(row) if h.get("val_loss") is not None]
            w = max(1, len(train) // 25)  # a moving average: per-step losses are noisy
            smooth = [statistics.fmean(v for _, v in train[max(0, i - w + 1) : i + 1]) for i in range(len(train))]
            ax.plot([s for s, _ in train], smooth, lw=1.2, color=_color(rows, row), label=f"{row.label} train")
            if valid:
                ax.plot(*zip(*valid), "o--", color=_color(rows, row), ms=4, lw=1, label=f"{row.label} val")
        ax.set(xlabel="optimizer step", ylabel="loss (train: smoothed, val: dashed)")
        ax.legend(fontsize=7, ncols=2)

    return _panels(rows, path, lambda r: bool(_history(r)), draw)


# -- the sample gallery -------------------------------------------------------------------------------
def by_seed(row: Row) -> list[Run]:
    """The row's runs in seed order (data.seed, then train.seed): the same order for every row."""
    return sorted(row.runs, key=lambda r: tuple(r.flat.get(k) or 0 for k in SEED_KEYS) + (r.folder,))


def representative(row: Row) -> Run:
    """The run with the lowest seed: the same choice for every row."""
    return by_seed(row)[0]


def read_generations(run: Run) -> list[dict[str, Any]]:
    p = run.path / GENERATIONS
    if not p.is_file():
        return []
    try:
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError:
        return []


def gallery(rows: list[Row], n: int = GALLERY_CONTEXTS) -> list[dict[str, Any]]:
    """For the first ``n`` test contexts every row generated for: each row's response for every label."""
    per_row = []
    for row in rows:
        by_ctx: dict[tuple, dict[str, dict]] = {}
        for g in read_generations(representative(row)):
            by_ctx.setdefault((g.get("dialogue_id"), g.get("turn")), {})[g.get("requested")] = g
        per_row.append(by_ctx)
    if not per_row or not per_row[0]:
        return []
    common = [k for k in per_row[0] if all(k in d for d in per_row)][:n]
    out = []
    for key in common:
        first = next(iter(per_row[0][key].values()))
        out.append({"dialogue_id": key[0], "turn": key[1], "context": first.get("context", []), "reference": first.get("reference"),
                    "reference_label": first.get("reference_label"),
                    "rows": [(row.model, row.label, d[key]) for row, d in zip(rows, per_row)]})
    return out


# -- every row against the best -----------------------------------------------------------------------
def compare_with_best(rows: list[Row], labels: list[str]) -> list[dict[str, Any] | None]:
    """Per row, its control accuracy against the best row's (highest mean control accuracy; the first on a tie).

    A paired bootstrap over the test contexts both rows were evaluated on (``metrics.paired_bootstrap_seeds``,
    from each run's ``generations.jsonl``): the i-th seed of the row with the i-th of the best (``by_seed``),
    the difference being the mean over these pairs; a longer row's extra seeds sit out. ``status``: ``best``,
    ``≈ best`` (the 95% interval of the difference contains 0), ``below best`` / ``above best``, ``not
    comparable`` (other test contexts) or ``n/a`` (no control accuracy or no judged generations).
    """
    acc = {id(row): statistics.fmean(v) for row in rows if (v := row.values(metric("control_accuracy").get))}
    if not acc:
        return [None] * len(rows)
    best = max((row for row in rows if id(row) in acc), key=lambda row: acc[id(row)])
    cache: dict[Path, list[dict[str, Any]]] = {}

    def judged(run: Run) -> list[dict[str, Any]]:
        if run.path not in cache:
            gens = read_generations(run)
            cache[run.path] = gens if gens and all("predicted" in g for g in gens) else []
        return cache[run.path]

    def fingerprint(run: Run) -> Any:
        return (run.record.get("data") or {}).get("eval_fingerprint")

    out: list[dict[str, Any] | None] = []
    for row in rows:
        pairs = list(zip(by_seed(row), by_seed(best)))
        if row is best:
            out.append({"status": "best"})
        elif id(row) not in acc:
            out.append({"status": "n/a", "why": "no control accuracy"})
        elif any(fingerprint(a) and fingerprint(b) and fingerprint(a) != fingerprint(b) for a, b in pairs):
            out.append({"status": "not comparable", "why": "other test contexts"})
        elif not all(judged(a) and judged(b) for a, b in pairs):
            out.append({"status": "n/a", "why": "no judged generations"})
        else:
            try:
                v = paired_bootstrap_seeds([(judged(a), judged(b)) for a, b in pairs], labels)
            except UserError:
                out.append({"status": "not comparable", "why": "no shared test context"})
                continue
            lo, hi = v["ci"]
            out.append({**v, "status": "≈ best" if lo <= 0 <= hi else ("below best" if hi < 0 else "above best")})
        out[-1]["best"] = f"{best.model} {best.label}"
    return out


# -- the report ---------------------------------------------------------------------------------------
def report(dir: Path) -> Path:
    """Write DIR/report/{results.md, results.csv, *.png, report.html}; return the path of report.html."""
    root = Path(dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass a sweep folder (ctrldial sweep … --out DIR) or a folder of run folders")
    runs = find_runs(root)
    if not runs:
        raise UserError(f"{root}: no run records (*/{RECORD}) found; run `ctrldial sweep FILE --out {root}` first")
    out = root / REPORT_DIR
    out.mkdir(exist_ok=True)
    ok = [r for r in runs if r.status == "ok"]
    failed = [r for r in runs if r.status not in ("ok", "running")]
    running = [r for r in runs if r.status == "running"]
    rows = group_runs(ok)
    labels = labels_of(ok)
    versus = compare_with_best(rows, labels)
    header, cells, csv_rows = table(rows, labels, judges_of(ok), versus)
    best = next((v["best"] for v in versus if v), None)
    ranks = rank_agreement_text(judge_rank_agreement(rows, judges_of(ok)))
    against = (f"Every row against the best, {best}: its control accuracy minus the best's on the same test contexts "
               "(paired bootstrap, 95% interval); ≈ best: not distinguishable from it.") if best else ""

    notes = []
    if not ok:
        notes.append(f"No run finished: {len(failed)} failed, {len(running)} incomplete. Their errors are listed below.")
    elif all(r.record.get("metrics", {}).get("control_accuracy") is None for r in ok):
        notes.append("No classifier scored these runs, so control accuracy is not measured (n/a). Set classifier.path "
                     "(or let `ctrldial sweep` train one) to measure it.")
    if running:
        notes.append(f"{len(running)} run(s) have not finished (interrupted or still running): rerun the sweep to complete them.")

    md = [f"# ctrldial results — {root.name}\n\n", f"{len(runs)} runs: {len(ok)} ok, {len(failed)} failed, {len(running)} incomplete.\n"]
    md += [f"> {n}\n" for n in notes]
    if rows:
        md += ["\n## Comparison (mean ± std over seeds)\n\n", f"{against}\n\n" if against else "", markdown_table(header, cells)]
        md += [f"\nJudges: {ranks}.\n"] if ranks else []
    problem_header = ["run", "model", "method", "status", "error"]
    problem_cells = [[r.folder, str(r.flat.get("model.name")), str(r.flat.get("method.name")), r.status, _error_line(r)] for r in failed]
    problem_cells += [[r.folder, str(r.flat.get("model.name")), str(r.flat.get("method.name")), r.status, "interrupted or still running"]
                      for r in running]
    if problem_cells:
        md += ["\n## Failed and incomplete runs\n\n", markdown_table(problem_header, problem_cells)]
    write_atomic(out / "results.md", "".join(md))

    buf = io.StringIO()
    fields = list(csv_rows[0]) if csv_rows else ["model", "method", "variant", "seeds"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows)
    write_atomic(out / "results.csv", buf.getvalue())

    plots = [("control_vs_params.png", "Control accuracy vs trainable parameters (error bars: 95% interval over test contexts)",
              lambda p: plot_control_vs_params(rows, p)),
             ("per_act_accuracy.png", "Control accuracy per requested act (error bars: 95% interval over test contexts)",
              lambda p: plot_per_label(rows, labels, p)),
             ("loss_curves.png", "Training and validation loss", lambda p: plot_losses(rows, p))]
    figures = []
    for name, title, draw in plots:
        (out / name).unlink(missing_ok=True)
        if rows and draw(out / name):
            figures.append((title, out / name))

    h = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ctrldial report — {html.escape(root.name)}</title>"
         f"<style>{CSS}</style></head><body><h1>ctrldial report — {html.escape(root.name)}</h1>",
         f"<p class=muted>{len(runs)} runs: {len(ok)} ok, {len(failed)} failed, {len(running)} incomplete. "
         f"Built from the run records under {html.escape(str(root))}.</p>"]
    h += [f"<p class=note>{html.escape(n)}</p>" for n in notes]
    if rows:
        h += [f"<h2>Comparison</h2><p class=muted>mean ± std over seeds [95% interval over test contexts]; one row per model × method. "
              f"{html.escape(against)}</p>", html_table(header, cells, 3)]
        h += [f"<p>Judges: {html.escape(ranks)}.</p>"] if ranks else []
    for title, path in figures:
        h += [f"<h2>{html.escape(title)}</h2>", img(path, title)]
    items = gallery(rows)
    if items:
        h += ["<h2>Samples</h2><p class=muted>The same test contexts for every run (lowest seed); ✓/✗: the classifier's verdict.</p>",
              gallery_html(items, labels)]
    if problem_cells:
        h += ["<h2>Failed and incomplete runs</h2>", html_table(problem_header, problem_cells)]
    h += ["<h2>How to read this report</h2><dl>"] + [f"<dt><b>{html.escape(k)}</b></dt><dd>{html.escape(v)}</dd>" for k, v in reading(labels, judges_of(ok))]
    h += ["</dl></body></html>\n"]
    page = out / "report.html"
    write_atomic(page, "".join(h))
    return page

