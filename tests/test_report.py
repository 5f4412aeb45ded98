"""`ctrldial report`: tables, plots and a self-contained HTML page, built from run records only."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from ctrldial.errors import UserError
from ctrldial.reporting import report

ACTS = ["inform", "question", "directive", "commissive"]


def fake_run(root: Path, name: str, method: str, seed: int = 0, control: float | None = 0.5, status: str = "ok",
             model: str = "tiny-gpt2", changed: bool = True, extra: dict | None = None) -> Path:
    """A run folder as `ctrldial run` writes it: record.json (+ generations.jsonl when ok)."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {"data": {"path": "sample", "seed": 0, "label_position": "before_response", **(extra or {})},
              "model": {"name": model}, "method": {"name": method}, "train": {"seed": seed, "tracker": "none"}}
    rec: dict = {"schema": 1, "status": status, "config": config, "config_hash": f"{name}-hash"}
    if status == "failed":
        rec["error"] = "RuntimeError: CUDA out of memory\nsecond line"
    if status == "ok":
        trained = method != "zero_shot"
        rec["metrics"] = {
            "control_accuracy": control, "control_accuracy_gold": control, "control_accuracy_other": control,
            "per_label_accuracy": {a: (None if control is None else control + 0.1 * i) for i, a in enumerate(ACTS)} if control is not None else {},
            "bleu": 1.5 + seed, "distinct_1": 0.3, "distinct_2": 0.5, "perplexity": 40.0, "empty_rate": 0.0, "mean_length": 8.0,
        }
        rec["cost"] = {"trainable_params": 10_000 * trained * (1 + (method == "full") * 100), "total_params": 1_000_000,
                       "trainable_percent": 1.0 * trained, "train_seconds": 12.0, "peak_memory_mb": 900.0}
        rec["train"] = {"history": [{"step": s, "loss": 3.0 - s / 10, "lr": 1e-3} for s in range(1, 11)] + [{"step": 10, "val_loss": 2.5}]} if trained else None
        rec["data"] = {"labels": ACTS}
        rec["sanity"] = {"prompts": 2, "differ": int(changed) * 2, "changed": changed} if trained else None
        rows = [{"dialogue_id": f"test-{d}", "turn": 1, "context": [f"context <{d}> & more"], "requested": a,
                 "reference": "ref", "reference_label": "question", "generation": f"{method} says {a} {d}",
                 **({} if control is None else {"predicted": a if i % 2 == 0 else "inform", "confidence": 0.9})}
                for d in range(4) for i, a in enumerate(ACTS)]
        (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "record.json").write_text(json.dumps(rec))
    return folder


def html_resources(page: str) -> list[str]:
    """Every src/href that is not an embedded data URI or an in-page anchor."""
    return [u for u in re.findall(r'(?:src|href)="([^"]*)"', page) if not u.startswith(("data:", "#"))]


def test_report_tables_plots_and_html(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, "method=lora,seed=0", "lora", 0, 0.6)
    fake_run(root, "method=lora,seed=1", "lora", 1, 0.8)
    fake_run(root, "method=prefix,seed=0", "prefix", 0, 0.3, changed=False)
    fake_run(root, "method=zero_shot", "zero_shot", 0, 0.25)
    fake_run(root, "method=full,seed=0", "full", 0, status="failed")
    fake_run(root, "method=ia3,seed=0", "ia3", 0, status="running")
    (root / "classifier").mkdir()  # not a run: ignored

    page = report(root)
    assert page == root / "report" / "report.html"
    rows = list(csv.DictReader((root / "report" / "results.csv").open()))
    assert [(r["method"], r["seeds"]) for r in rows] == [("zero_shot", "1"), ("lora", "2"), ("prefix", "1")]  # registry order
    lora = rows[1]
    assert float(lora["control_accuracy_mean"]) == pytest.approx(0.7)
    assert float(lora["control_accuracy_std"]) == pytest.approx(0.1414, abs=1e-3)
    assert float(lora["acc_question_mean"]) == pytest.approx(0.8)
    assert float(lora["trainable_params_mean"]) == 10_000 and float(lora["bleu_mean"]) == pytest.approx(2.0)
    assert "same as base model" in rows[2]["flags"]

    md = (root / "report" / "results.md").read_text()
    assert "| tiny-gpt2 | lora | 2 | 0.700 ± 0.141 |" in md
    assert "CUDA out of memory" in md and "second line" not in md  # the error's first line
    assert "method=ia3,seed=0" in md  # incomplete runs are listed apart too
    for png in ("control_vs_params.png", "per_act_accuracy.png", "loss_curves.png"):
        assert (root / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert html_resources(text) == []  # self-contained: nothing to fetch
    assert "context &lt;0&gt; &amp; more" in text  # gallery text is escaped
    assert "lora says question 0" in text and "zero_shot says commissive 0" in text
    assert "⚠ same as base model" in text and "1 failed, 1 incomplete" in text


def test_report_without_classifier(tmp_path):
    fake_run(tmp_path, "a", "lora", control=None)
    fake_run(tmp_path, "b", "prompt", control=None)
    text = report(tmp_path).read_text()
    assert "No classifier scored these runs" in text
    assert not (tmp_path / "report" / "control_vs_params.png").exists()
    assert (tmp_path / "report" / "loss_curves.png").is_file()
    assert "| n/a |" in (tmp_path / "report" / "results.md").read_text()


def test_report_with_failed_runs_only(tmp_path):
    fake_run(tmp_path, "a", "lora", status="failed")
    text = report(tmp_path).read_text()
    assert "No run finished: 1 failed" in text and "CUDA out of memory" in text
    assert (tmp_path / "report" / "results.csv").read_text().startswith("model,method")


def test_runs_differing_in_other_keys_are_separate_rows(tmp_path):
    fake_run(tmp_path, "first", "lora", extra={"label_position": "first"})
    fake_run(tmp_path, "before", "lora", extra={"label_position": "before_response"})
    rows = list(csv.DictReader((tmp_path / "report" / "results.csv").open())) if report(tmp_path) else []
    assert sorted(r["variant"] for r in rows) == ["", "label_position=first"]  # the most common value goes unsaid


def test_report_needs_records(tmp_path):
    with pytest.raises(UserError, match="no run records"):
        report(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        report(tmp_path / "missing")


def test_a_new_metric_is_one_entry_in_metrics(tmp_path, monkeypatch):
    """Columns, CSV keys and the legend all come from record.METRICS."""
    from ctrldial import report_table
    from ctrldial.record import METRICS, Metric

    extra = Metric("metrics.mean_length", "mean length", ".1f", "words per response", None)
    monkeypatch.setattr(report_table, "METRICS", [*METRICS, extra])
    fake_run(tmp_path, "a", "lora")
    page = report(tmp_path).read_text()
    (row,) = csv.DictReader((tmp_path / "report" / "results.csv").open())
    assert float(row["mean_length_mean"]) == 8.0 and row["mean_length_std"] == ""
    assert "| peak MB | mean length | flags |" in (tmp_path / "report" / "results.md").read_text()
    assert "<dt><b>mean length</b></dt><dd>words per response</dd>" in page


def test_second_judge_columns_intervals_and_disagreement_flag(tmp_path):
    a = fake_run(tmp_path, "a", "lora", control=0.5)
    b = fake_run(tmp_path, "b", "prefix", control=0.4)
    for folder, other, ci in ((a, 0.48, [0.45, 0.51]), (b, 0.7, [0.66, 0.74])):
        rec = json.loads((folder / "record.json").read_text())
        lo = rec["metrics"]["control_accuracy"]
        rec["metrics"]["ci"] = {"control_accuracy": [lo - 0.03, lo + 0.03]}
        rec["judges"] = {"ngram": {"path": "j2", "metrics": {"control_accuracy": other, "ci": {"control_accuracy": ci},
                                                             "corrected_control_accuracy": other - 0.1}}}
        (folder / "record.json").write_text(json.dumps(rec))
    report(tmp_path)
    md = (tmp_path / "report" / "results.md").read_text()
    assert "control acc. [ngram]" in md and "corrected [ngram]" in md
    lora = next(line for line in md.splitlines() if "| lora |" in line)
    prefix = next(line for line in md.splitlines() if "| prefix |" in line)
    assert "0.500 [0.470, 0.530]" in lora and "judges disagree" not in lora  # the intervals overlap
    assert "⚠ judges disagree (ngram)" in prefix  # 0.37–0.43 vs 0.66–0.74
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "report" / "results.csv").open())}
    assert float(rows["prefix"]["control_accuracy_ngram_mean"]) == 0.7 and float(rows["lora"]["control_accuracy_ci_low"]) == 0.47


@pytest.mark.parametrize("others, tau", [((0.6, 0.5, 0.4, 0.3), 1.0), ((0.3, 0.4, 0.5, 0.6), -1.0), ((0.6, 0.5, 0.3, 0.4), 2 / 3)])
def test_kendall_tau_between_the_judges_rankings(tmp_path, others, tau):
    """The report states how alike two judges rank the rows: τ-b over the rows' mean control accuracies."""
    methods, primary = ("lora", "prefix", "prompt", "ia3"), (0.5, 0.45, 0.4, 0.35)
    for method, control, other in zip(methods, primary, others):
        folder = fake_run(tmp_path, method, method, control=control)
        rec = json.loads((folder / "record.json").read_text())
        rec["judges"] = {"ngram": {"path": "j2", "metrics": {"control_accuracy": other}}}
        (folder / "record.json").write_text(json.dumps(rec))
    report(tmp_path)
    md = (tmp_path / "report" / "results.md").read_text()
    assert f"primary judge against ngram: Kendall τ = {tau:.2f} (4 rows" in md
