"""Uncertainty in every number: record intervals (control, BLEU, distinct-2), the paired bootstrap, seeds and "≈ best" in the report."""

import csv
import json
import random
import statistics

import pytest

from ctrldial.errors import UserError
from ctrldial.metrics import TEXT_RESAMPLES, control_ci, control_metrics, paired_bootstrap, paired_bootstrap_seeds, text_metrics
from ctrldial.pipeline import score_generations
from ctrldial.reporting import report
from test_eval import judged_lora  # noqa: F401 (a fixture: a finished tiny LoRA run, judged)
from test_report import fake_run

ACTS = ["inform", "question", "directive", "commissive"]
WORDS = "I you we it the a to go see know think want need okay sure yes no please thanks now later here there".split()


def judged_rows(hit_rate: float, seed: int, contexts: int = 40) -> list[dict]:
    """``contexts`` test contexts × 4 requested acts, each response judged a hit with probability ``hit_rate``."""
    rng, rows = random.Random(seed), []
    for d in range(contexts):
        reference = " ".join(rng.choices(WORDS, k=8))
        for act in ACTS:
            rows.append({"dialogue_id": f"test-{d}", "turn": 1, "context": [f"context {d}"], "requested": act,
                         "reference": reference, "reference_label": ACTS[d % 4],
                         "generation": " ".join(rng.choices(WORDS, k=7)) if rng.random() > 0.1 else reference,
                         "predicted": act if rng.random() < hit_rate else ("inform" if act != "inform" else "question")})
    return rows


def brackets(ci, value) -> bool:
    return ci is not None and ci[0] <= value <= ci[1] and ci[0] < ci[1]  # a real interval, not a point


def test_record_intervals_bracket_their_point_values():
    rows = judged_rows(0.6, seed=1)
    metrics = {**control_metrics(rows, ACTS), "ci": control_ci(rows, ACTS)}
    metrics.update(text_metrics(rows, ci=metrics["ci"]))  # as pipeline.score_generations does
    ci = metrics["ci"]
    for key in ("control_accuracy", "control_accuracy_gold", "bleu", "distinct_2"):
        assert brackets(ci[key], metrics[key]), (key, ci[key], metrics[key])
    for act in ACTS:
        assert brackets(ci["per_label_accuracy"][act], metrics["per_label_accuracy"][act])
    assert ci["text_resamples"] == TEXT_RESAMPLES and ci["resamples"] == 1000 and ci["unit"] == "context"
    assert "ci" not in text_metrics(rows)  # only asked for: no bootstrap cost for other callers


def test_a_finished_runs_record_holds_intervals_around_its_figures(judged_lora):
    metrics = json.loads((judged_lora / "record.json").read_text())["metrics"]
    for key in ("control_accuracy", "control_accuracy_gold", "bleu", "distinct_2"):
        lo, hi = metrics["ci"][key]
        assert lo <= metrics[key] <= hi, key


def test_score_generations_gives_text_intervals_with_and_without_a_judge():
    class Echo:  # hears every response as an inform
        def score(self, texts, contexts):
            return ["inform"] * len(texts), [0.9] * len(texts)

    rows = judged_rows(0.6, seed=2)
    for r in rows:
        r.pop("predicted")
    judged, _ = score_generations(Echo(), [dict(r) for r in rows], ACTS)
    assert set(judged["ci"]) >= {"control_accuracy", "bleu", "distinct_2"}
    assert brackets(judged["ci"]["bleu"], judged["bleu"]) and brackets(judged["ci"]["distinct_2"], judged["distinct_2"])
    unjudged, _ = score_generations(None, rows, ACTS)
    assert unjudged["control_accuracy"] is None and set(unjudged["ci"]) >= {"bleu", "distinct_2"}
    assert "control_accuracy" not in unjudged["ci"]


def test_paired_bootstrap_of_identical_sets_is_exactly_zero():
    rows = judged_rows(0.6, seed=3)
    out = paired_bootstrap(rows, [dict(r) for r in reversed(rows)], ACTS)  # pairing is by context and act, not order
    assert out["difference"] == 0.0 and out["ci"] == [0.0, 0.0] and out["p_value"] == 1.0


def test_paired_bootstrap_finds_a_clearly_better_set():
    better, worse = judged_rows(0.9, seed=4), judged_rows(0.4, seed=5)
    out = paired_bootstrap(better, worse, ACTS)
    expected = control_metrics(better, ACTS)["control_accuracy"] - control_metrics(worse, ACTS)["control_accuracy"]
    assert out["difference"] == pytest.approx(expected) and out["difference"] > 0.3
    assert 0 < out["ci"][0] <= out["difference"] <= out["ci"][1] and out["p_value"] < 0.01
    back = paired_bootstrap(worse, better, ACTS)
    assert back["difference"] == pytest.approx(-expected) and back["ci"][1] < 0


def test_paired_bootstrap_counts_only_shared_contexts_and_refuses_none():
    a, b = judged_rows(0.7, seed=6, contexts=20), judged_rows(0.5, seed=7, contexts=20)
    extra = [{**r, "dialogue_id": "only-in-b", "predicted": None} for r in judged_rows(0.0, seed=8, contexts=3)]
    assert paired_bootstrap(a, b + extra, ACTS) == paired_bootstrap(a, b, ACTS)
    other = [{**r, "context": ["another context"]} for r in b]
    with pytest.raises(UserError, match="share no test context"):
        paired_bootstrap(a, other, ACTS)


def test_paired_bootstrap_pools_seeds_as_the_mean_of_pair_differences():
    pairs = [(judged_rows(0.8, seed=s), judged_rows(0.5, seed=10 + s)) for s in range(3)]
    pooled = paired_bootstrap_seeds(pairs, ACTS)
    assert pooled["difference"] == pytest.approx(statistics.fmean(paired_bootstrap(a, b, ACTS)["difference"] for a, b in pairs))
    assert pooled["pairs"] == 3 and pooled["ci"][0] > 0


# -- the report ---------------------------------------------------------------------------------------------
def seeded_run(root, name, method, seed, rows, fingerprint="fp-test"):
    """A finished run (tests.test_report.fake_run) whose generations, metrics and intervals come from ``rows``."""
    folder = fake_run(root, name, method, seed)
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = json.loads((folder / "record.json").read_text())
    rec["metrics"].update(control_metrics(rows, ACTS), ci=control_ci(rows, ACTS))
    rec["data"]["eval_fingerprint"] = fingerprint
    (folder / "record.json").write_text(json.dumps(rec))
    return rec["metrics"]


def test_report_means_seeds_and_marks_rows_not_distinguishable_from_the_best(tmp_path, monkeypatch):
    import matplotlib.axes

    lora = [seeded_run(tmp_path, f"lora-{s}", "lora", s, judged_rows(0.8, seed=20 + s)) for s in range(3)]
    close = judged_rows(0.8, seed=20)  # lora's first seed with two hits turned into misses
    for r in [r for r in close if r["predicted"] == r["requested"]][:2]:
        r["predicted"] = "commissive" if r["requested"] != "commissive" else "inform"
    seeded_run(tmp_path, "prompt", "prompt", 0, close)
    seeded_run(tmp_path, "prefix", "prefix", 0, judged_rows(0.3, seed=30))
    seeded_run(tmp_path, "ia3", "ia3", 0, judged_rows(0.8, seed=31), fingerprint="fp-other-contexts")
    bars = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", lambda ax, x, y, **kw: bars.append((y[0], kw["yerr"])) or real(ax, x, y, **kw))

    report(tmp_path)
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "report" / "results.csv").open())}
    acc = [m["control_accuracy"] for m in lora]
    assert rows["lora"]["seeds"] == "3" and rows["lora"]["vs_best"] == "best"
    assert float(rows["lora"]["control_accuracy_mean"]) == pytest.approx(statistics.fmean(acc))
    assert float(rows["lora"]["control_accuracy_std"]) == pytest.approx(statistics.stdev(acc)) and statistics.stdev(acc) > 0
    low = statistics.fmean(m["ci"]["control_accuracy"][0] for m in lora)  # the mean of the seeds' intervals
    assert float(rows["lora"]["control_accuracy_ci_low"]) == pytest.approx(low)
    assert rows["prompt"]["vs_best"] == "≈ best" and float(rows["prompt"]["vs_best_ci_low"]) < 0 <= float(rows["prompt"]["vs_best_ci_high"])
    assert float(rows["prompt"]["vs_best_difference"]) == pytest.approx(-2 / 40 / 4, abs=0.01)  # vs lora's first seed only
    assert rows["prefix"]["vs_best"] == "below best" and float(rows["prefix"]["vs_best_ci_high"]) < 0
    assert rows["ia3"]["vs_best"] == "not comparable" and rows["ia3"]["vs_best_difference"] == ""

    md = (tmp_path / "report" / "results.md").read_text()
    line = {m: next(x for x in md.splitlines() if f"| {m} |" in x) for m in rows}
    hi = statistics.fmean(m["ci"]["control_accuracy"][1] for m in lora)
    assert f"| lora | 3 | {statistics.fmean(acc):.3f} ± {statistics.stdev(acc):.3f} [{low:.3f}, {hi:.3f}] | best |" in line["lora"]
    assert "| ≈ best -0.0" in line["prompt"] and "≈ best" not in line["prefix"]
    assert "not comparable (other test contexts)" in line["ia3"]
    assert "Every row against the best, tiny-gpt2 lora" in md
    # error bars are the intervals: lora's point sits at its seeds' mean with the mean interval around it
    y, (down, up) = next((y, e) for y, e in bars if y == pytest.approx(statistics.fmean(acc)))
    assert down[0] == pytest.approx(statistics.fmean(acc) - low) and up[0] == pytest.approx(hi - statistics.fmean(acc))
    assert "paired bootstrap over contexts" in (tmp_path / "report" / "report.html").read_text()


def test_rescore_keeps_the_text_intervals(tmp_path, monkeypatch):
    from ctrldial import scoring
    from ctrldial.record import RECORD, RunRecord

    rows = judged_rows(0.6, seed=40)
    metrics = text_metrics(rows, ci={})
    rec = {f: None for f in RunRecord.__dataclass_fields__} | {
        "schema": 1, "status": "ok", "config": {"data": {"attribute": "act"}}, "metrics": metrics, "data": {"labels": ACTS}, "warnings": []}
    (tmp_path / RECORD).write_text(json.dumps(rec))
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class AlwaysInform:
        def score(self, texts, contexts):
            return ["inform"] * len(texts), [0.9] * len(texts)

    monkeypatch.setattr(scoring, "load_judge", lambda *a: AlwaysInform())
    out = scoring.rescore(tmp_path, tmp_path / "judge")
    assert out["metrics"]["ci"]["bleu"] == metrics["ci"]["bleu"] and out["metrics"]["ci"]["control_accuracy"] is not None
