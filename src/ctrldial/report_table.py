"""The report's comparison table: columns from the METRICS table (and the per-label and per-judge ones), cells, flags, legend."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from ctrldial.record import METRICS, Metric, judge_metrics, per_label_metric

if TYPE_CHECKING:
    from ctrldial.reporting import Row


def judges_of(runs: list) -> list[str]:
    """Names of the additional judges (``ctrldial rescore --as NAME``) found in the runs' records, first seen first."""
    seen: list[str] = []
    for r in runs:
        for name in r.record.get("judges") or {}:
            if name not in seen:
                seen.append(name)
    return seen


def judge_rank_agreement(rows: list[Row], judges: list[str]) -> list[dict[str, Any]]:
    """Per extra judge, Kendall's τ-b between the rows' rankings by mean control accuracy under the primary judge and
    under that judge (rows both judges scored; τ needs 3 of them). A τ near 1: the judges rank the methods alike."""
    from scipy.stats import kendalltau

    primary = METRICS[0]
    out = []
    for name in judges:
        other = judge_metrics(name)[0]
        pairs = [(statistics.fmean(a), statistics.fmean(b)) for row in rows
                 if (a := row.values(primary.get)) and (b := row.values(other.get))]
        if len(pairs) >= 3:
            res = kendalltau(*zip(*pairs))
            out.append({"judge": name, "tau": float(res.statistic), "p_value": float(res.pvalue), "rows": len(pairs)})
    return out


def rank_agreement_text(agreement: list[dict[str, Any]]) -> str:
    return "; ".join(f"the rows' ranking by control accuracy, primary judge against {a['judge']}: Kendall τ = {a['tau']:.2f} "
                     f"({a['rows']} rows, p = {a['p_value']:.2g})" for a in agreement)


def columns(labels: list[str], judges: list[str] = ()) -> list[Metric]:
    """Every metric of the table and the CSV, in order: METRICS, the per-label ones and each extra judge's where they belong."""
    cols = []
    for m in METRICS:
        cols.append(m)
        if m.by_label:
            cols += [per_label_metric(lab) for lab in labels]
        if m.by_judge:
            cols += [jm for name in judges for jm in judge_metrics(name)]
    return cols


def _num(v: float, fmt: str) -> str:
    if fmt == "params":
        for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return f"{v / div:.3g}{unit}"
        return f"{v:.0f}"
    return format(v, fmt)


def cell(vals: list[float], fmt: str) -> str:
    if not vals:
        return "n/a"
    mean = statistics.fmean(vals)
    return _num(mean, fmt) + (f" ± {_num(statistics.stdev(vals), fmt)}" if len(vals) > 1 and fmt != "params" else "")


def _interval(record: dict[str, Any], m: Metric) -> list[float] | None:
    try:
        return m.interval(record)
    except (KeyError, TypeError):
        return None


def row_interval(row: Row, m: Metric) -> list[float] | None:
    """The metric's 95% interval for a row: its run's, or for several seeds the mean of their lower and of their
    upper bounds (the context uncertainty of one seed's figure; the ± beside it is the spread between seeds)."""
    cis = [ci for r in row.runs if (ci := _interval(r.record, m))] if m.ci else []
    return [statistics.fmean(c[0] for c in cis), statistics.fmean(c[1] for c in cis)] if cis else None


def _ci_text(row: Row, m: Metric) -> str:
    """`` [lo, hi]`` when the row's records hold the metric's 95% interval (``row_interval``)."""
    ci = row_interval(row, m)
    return f" [{_num(ci[0], m.fmt)}, {_num(ci[1], m.fmt)}]" if ci else ""


VERSUS = "vs best: Δ control [95% CI]"
"""The column comparing each row with the best one (``reporting.compare_with_best``)."""


def versus_text(v: dict[str, Any] | None) -> str:
    """The vs-best cell: ``best``, ``≈ best −0.012 [−0.031, +0.006]``, ``−0.120 [−0.150, −0.090]``, ``not comparable (…)``, ``n/a``."""
    if v is None or v["status"] in ("n/a", "best", "not comparable"):
        return "n/a" if v is None else v["status"] + (f" ({v['why']})" if v.get("why") else "")
    lo, hi = v["ci"]
    text = f"{v['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    return f"≈ best {text}" if v["status"] == "≈ best" else text


def judges_disagree(record: dict[str, Any], judges: list[str]) -> list[str]:
    """The extra judges whose control-accuracy interval does not overlap the primary judge's."""
    primary = _interval(record, METRICS[0])
    out = []
    for name in judges:
        other = _interval(record, judge_metrics(name)[0])
        if primary and other and (other[0] > primary[1] or other[1] < primary[0]):
            out.append(name)
    return out


def flags(row: Row, judges: list[str] = ()) -> str:
    notes = []
    same = [r for r in row.runs if (r.record.get("sanity") or {}).get("changed") is False]
    if same:
        notes.append(f"⚠ same as base model ({len(same)}/{len(row.runs)} runs)")
    apart = sorted({name for r in row.runs for name in judges_disagree(r.record, list(judges))})
    if apart:
        notes.append(f"⚠ judges disagree ({', '.join(apart)})")
    return "; ".join(notes)


def table(rows: list[Row], labels: list[str], judges: list[str] = (),
          versus: list[dict[str, Any] | None] | None = None) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Header and cells for Markdown/HTML, and machine-readable rows for CSV.

    ``versus``: per row, its comparison with the best row (``reporting.compare_with_best``); it adds the
    ``VERSUS`` column after control accuracy and the ``vs_best*`` CSV fields."""
    cols = columns(labels, judges)
    shown = [m for m in cols if not m.percent_of]  # a percentage is shown inside its count's cell
    at = 4 + shown.index(METRICS[0])  # the vs-best column follows control accuracy
    header = ["model", "method", "seeds"] + [m.title for m in shown] + ["flags"]
    if versus is not None:
        header.insert(at, VERSUS)
    cells, csv_rows = [], []
    for n, row in enumerate(rows):
        text = {m.key: cell(row.values(m.get), m.fmt) + _ci_text(row, m) for m in cols}
        for m in cols:
            if m.percent_of and text[m.percent_of] != "n/a":
                text[m.percent_of] += f" ({text[m.key].split(' ')[0]}%)"
        cells.append([row.model, row.label, str(len(row.runs))] + [text[m.key] for m in shown] + [flags(row, judges)])
        if versus is not None:
            cells[-1].insert(at, versus_text(versus[n]))
        rec: dict[str, Any] = {"model": row.model, "method": row.method, "variant": row.variant, "seeds": len(row.runs)}
        for m in cols:
            vals = row.values(m.get)
            rec[f"{m.csv_key}_mean"] = statistics.fmean(vals) if vals else None
            rec[f"{m.csv_key}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
            if m.ci:
                rec[f"{m.csv_key}_ci_low"], rec[f"{m.csv_key}_ci_high"] = row_interval(row, m) or (None, None)
        if versus is not None:
            v = versus[n] or {"status": "n/a"}
            rec["vs_best"] = v["status"]
            rec["vs_best_difference"], rec["vs_best_p_value"] = v.get("difference"), v.get("p_value")
            rec["vs_best_ci_low"], rec["vs_best_ci_high"] = v.get("ci") or (None, None)
        rec["flags"] = flags(row, judges)
        rec["runs"] = " ".join(r.folder for r in row.runs)
        csv_rows.append(rec)
    return header, cells, csv_rows


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in line] for line in [header, *cells]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(line) + " |" for line in esc[1:]]
    return "\n".join(lines) + "\n"


# -- the legend ---------------------------------------------------------------------------------------
ROW_NOTES = [
    ("± and seeds", "mean ± standard deviation over the seeds of that row; n/a: not measured (e.g. no classifier)"),
    ("[lo, hi]", "the 95% bootstrap interval over test contexts (each context's responses resampled together; BLEU and "
                 "dist-2 from 200 resamples, dist-2's moved so that their median is the measured value); for a row of "
                 "several seeds, the mean of the seeds' intervals: the context uncertainty of one seed's figure, while ± "
                 "is the spread between seeds"),
    (VERSUS, "the row's control accuracy minus the best row's (highest mean control accuracy), on the test contexts both "
             "were evaluated on: a paired bootstrap over contexts (1000 resamples; every response paired with the other "
             "row's to the same context and requested act). Seeds are paired in order (data.seed, then train.seed) and "
             "the difference is the mean over pairs; a row's extra seeds sit out. ≈ best: the 95% interval of the "
             "difference contains 0, so the row is not distinguishable from the best on these contexts (training "
             "randomness is not in that interval: read it with the seeds' ±). not comparable: evaluated on other "
             "test contexts (eval_fingerprint differs or no context is shared). n/a: no judged generations.jsonl"),
    ("⚠ same as base model", "on the fixed sanity prompts the tuned model generated exactly what the base model did: the method had no effect"),
    ("⚠ judges disagree", "an extra judge's 95% interval of control accuracy does not overlap the primary judge's: read that figure with care"),
]
"""What the table shows besides its metrics (each metric explains itself: ``Metric.meaning``)."""


def reading(labels: list[str], judges: list[str] = ()) -> list[tuple[str, str]]:
    """The entries of "How to read this report": every column (one entry for the per-label ones), then the row notes."""
    entries = []
    for m in METRICS:
        if not m.percent_of:
            entries.append((m.title, m.meaning))
        if m.by_label and labels:
            entries.append((", ".join(labels), per_label_metric("that act").meaning))
        if m.by_judge:
            entries += [(jm.title, jm.meaning) for name in judges for jm in judge_metrics(name)]
    return entries + ROW_NOTES
