"""Human-corrected control: the formula by hand, and on a judge that is always right it changes nothing."""

from ctrldial.correction import corrected_control, precision_table
from ctrldial.metrics import control_ci, control_metrics

ACTS = ["inform", "question", "directive", "commissive"]


def test_precision_table_and_correction_by_hand():
    verdicts = [  # the judge calls 4 responses directive: 1 is one, 3 are informs (one of those weighs 2)
        {"judge": "directive", "label": "directive"}, {"judge": "directive", "label": "inform"},
        {"judge": "directive", "label": "inform", "weight": 2.0}, {"judge": "directive", "label": "inform"},
        {"judge": "inform", "label": "inform"}, {"judge": "question", "label": "question"}, {"judge": "commissive", "label": "commissive"},
    ]
    t = precision_table(verdicts, ACTS)
    assert t["directive"]["directive"] == 1 / 5 and t["directive"]["inform"] == 4 / 5 and t["inform"]["inform"] == 1.0
    rows = [{"requested": "directive", "predicted": "directive"}, {"requested": "directive", "predicted": "inform"},
            {"requested": "directive", "predicted": None}, {"requested": "inform", "predicted": "directive"}]
    c = corrected_control(rows, ["inform", "directive"], t)
    assert c["per_label_accuracy"]["directive"] == (0.2 + 0.0 + 0.0) / 3  # judged: 1/3
    assert c["per_label_accuracy"]["inform"] == 0.8  # judged: 0, but a "directive" verdict is an inform 80% of the time
    assert c["control_accuracy"] == (0.8 + 0.2 / 3) / 2


def test_a_perfect_judge_needs_no_correction():
    t = precision_table([{"judge": a, "label": a} for a in ACTS], ACTS)
    rows = [{"requested": r, "predicted": p, "reference_label": "inform", "context": [str(i)], "turn": i, "dialogue_id": "d"}
            for i, (r, p) in enumerate([(r, p) for r in ACTS for p in ACTS])]
    assert corrected_control(rows, ACTS, t)["control_accuracy"] == control_metrics(rows, ACTS)["control_accuracy"]


def test_bootstrap_interval_brackets_the_estimate_and_resamples_contexts():
    import random

    rng = random.Random(0)
    rows = [{"requested": a, "predicted": a if rng.random() < 0.6 else "question", "reference_label": "inform", "context": [f"c{i}"],
             "dialogue_id": f"d{i}", "turn": 1} for i in range(60) for a in ACTS]
    m, ci = control_metrics(rows, ACTS), control_ci(rows, ACTS)
    lo, hi = ci["control_accuracy"]
    assert lo < m["control_accuracy"] < hi and hi - lo < 0.2
    assert ci["unit"] == "context" and control_ci(rows, ACTS) == ci  # seeded
