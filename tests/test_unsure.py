"""The `unsure` threshold: low-confidence verdicts counted apart, never as hits; agreement's threshold table."""

import json

import pytest

from ctrldial.agreement import THRESHOLDS, agreement
from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.errors import UserError
from ctrldial.metrics import control_ci
from ctrldial.scoring import score_rows

ACTS = ["inform", "question", "directive", "commissive"]


class FixedJudge:
    """Answers from a table {response: (verdict, confidence)}; ``unsure_below`` as load_judge sets it."""

    def __init__(self, table, unsure_below=0.0):
        self.table, self.unsure_below = table, unsure_below

    def score(self, texts, contexts):
        return [self.table[t][0] for t in texts], [self.table[t][1] for t in texts]


def _rows():
    """2 contexts × 4 requested acts; the reference of context 0 is a question, of context 1 an inform."""
    rows = []
    for c, ref in ((0, "question"), (1, "inform")):
        for act in ACTS:
            rows.append({"dialogue_id": c, "turn": 1, "context": [f"turn {c}"], "requested": act, "reference_label": ref,
                         "generation": f"{act} reply {c}"})
    rows[7]["generation"] = "  "  # context 1, commissive requested: an empty reply
    return rows


TABLE = {  # verdict, confidence: context 0 follows every request, context 1 only inform and question
    "inform reply 0": ("inform", 0.95), "question reply 0": ("question", 0.60), "directive reply 0": ("directive", 0.90),
    "commissive reply 0": ("commissive", 0.45), "inform reply 1": ("inform", 0.80), "question reply 1": ("question", 0.99),
    "directive reply 1": ("inform", 0.70), "  ": ("inform", 0.50),
}


def test_threshold_zero_is_exactly_the_metrics_without_one():
    rows = _rows()
    rows[0]["unsure"] = True  # left by an earlier rescore with a threshold: scoring without one drops it
    m = score_rows(FixedJudge(TABLE), rows, ACTS)
    assert set(m) == {"control_accuracy", "control_accuracy_gold", "control_accuracy_other", "per_label_accuracy", "ci"}
    assert not any("unsure" in r for r in rows)
    assert m["per_label_accuracy"] == {"inform": 1.0, "question": 1.0, "directive": 0.5, "commissive": 0.5}
    assert m["control_accuracy"] == 0.75
    assert m["control_accuracy_gold"] == 1.0 and m["control_accuracy_other"] == 4 / 6
    assert m["ci"] == control_ci(rows, ACTS) and "control_accuracy_sure" not in m["ci"]
    assert score_rows(FixedJudge(TABLE, unsure_below=0.0), _rows(), ACTS) == m


def test_a_threshold_above_every_confidence_makes_every_verdict_unsure():
    rows = _rows()
    m = score_rows(FixedJudge(TABLE, unsure_below=0.995), rows, ACTS)
    assert all(r["unsure"] for r in rows if r["generation"].strip()) and rows[7]["unsure"] is False
    assert m["unsure_rate"] == 1.0 and m["unsure_below"] == 0.995
    assert m["control_accuracy"] == 0.0 and m["control_accuracy_gold"] == 0.0
    assert m["per_label_accuracy"] == dict.fromkeys(ACTS, 0.0)
    # the only sure response is the empty one, a sure miss
    assert m["per_label_accuracy_sure"] == {"inform": None, "question": None, "directive": None, "commissive": 0.0}
    assert m["control_accuracy_sure"] == 0.0
    assert m["ci"]["control_accuracy"] == [0.0, 0.0]


def test_a_middle_threshold_counts_unsure_as_misses_and_sure_apart():
    rows = _rows()
    m = score_rows(FixedJudge(TABLE, unsure_below=0.65), rows, ACTS)
    # unsure: question reply 0 (0.60), commissive reply 0 (0.45); 7 non-empty responses
    assert [r["unsure"] for r in rows] == [False, True, False, True, False, False, False, False]
    assert m["unsure_rate"] == pytest.approx(2 / 7)
    assert m["per_label_accuracy"] == {"inform": 1.0, "question": 0.5, "directive": 0.5, "commissive": 0.0}
    assert m["control_accuracy"] == pytest.approx(0.5)
    assert m["per_label_accuracy_sure"] == {"inform": 1.0, "question": 1.0, "directive": 0.5, "commissive": 0.0}
    assert m["control_accuracy_sure"] == pytest.approx(0.625)
    lo, hi = m["ci"]["control_accuracy_sure"]
    assert lo <= m["control_accuracy_sure"] <= hi


def test_config_rejects_a_threshold_of_one_in_one_line():
    assert build_config(None, ["classifier.unsure_below=0.7"]).classifier.unsure_below == 0.7
    with pytest.raises(UserError) as e:
        build_config(None, ["classifier.unsure_below=1.0"])
    assert "classifier.unsure_below must be in [0, 1)" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def tiny_judge(tmp_path, dd_dir, tiny_bert):
    from ctrldial.classifier import train_classifier

    clf = tmp_path / "clf"
    train_classifier(build_config(None, [f"data.path={dd_dir}", f"classifier.model={tiny_bert}", "classifier.max_steps=5",
                                         "classifier.eval_every=5", "classifier.max_length=48", "classifier.context=previous"]), clf)
    return clf


def _labels(path):
    turns = ["It's really cold today .", "Did you hear the forecast ?", "They say it might snow tonight .", "Take a warm coat if you go out .",
             "I will .", "Ask Emma . She takes very good notes .", "Thanks . I'd better run .", "No , the Boston train leaves from platform nine ."]
    acts = ["inform", "question", "inform", "directive", "commissive", "directive", "inform", "inform"]
    path.write_text("".join(json.dumps({"context": [turns[i - 1]] if i else [], "response": t, "label": a}) + "\n"
                            for i, (t, a) in enumerate(zip(turns, acts))))
    return path


def test_agreement_coverage_and_threshold_table(tiny_judge, tmp_path, capsys):
    labels = _labels(tmp_path / "labels.jsonl")
    plain = agreement(labels, tiny_judge)
    assert "coverage" not in plain and "unsure" not in plain["verdicts"][0]
    assert [t["threshold"] for t in plain["thresholds"]] == list(THRESHOLDS)
    top = plain["thresholds"][0]  # threshold 0: every verdict is sure, the figures are the plain ones
    assert top["coverage"] == 1.0 and top["accuracy"] == plain["accuracy"]
    assert all(top["per_class"][a]["precision"] == plain["per_class"][a]["precision"] for a in ACTS)
    coverages = [t["coverage"] for t in plain["thresholds"]]
    assert coverages == sorted(coverages, reverse=True)

    confs = sorted(v["confidence"] for v in plain["verdicts"])
    t = (confs[3] + confs[4]) / 2  # half the verdicts sure
    main(["judge", "agreement", str(labels), "--classifier", str(tiny_judge), "--out", str(tmp_path / "a"), "--unsure-below", str(t)])
    assert "coverage 0.500 (4/8)" in capsys.readouterr().out
    res = json.loads((tmp_path / "a" / "agreement.json").read_text())
    sure = [v for v in res["verdicts"] if not v["unsure"]]
    assert res["coverage"] == 0.5 and res["sure"]["n_sure"] == len(sure) == 4
    assert res["sure"]["accuracy"] == sum(v["agrees"] for v in sure) / 4
    assert all(v["unsure"] == (v["confidence"] < t) for v in res["verdicts"])
    for a in ACTS:  # recall_all: a true act whose verdict is unsure counts as not found
        found = sum(v["agrees"] and v["label"] == a for v in sure)
        support = sum(v["label"] == a for v in res["verdicts"])
        assert res["sure"]["per_class"][a]["recall_all"] == pytest.approx(found / support if support else 0.0)
    with pytest.raises(SystemExit):
        main(["judge", "agreement", str(labels), "--classifier", str(tiny_judge), "--unsure-below", "1"])


def test_rescore_with_a_threshold_then_without(tiny_judge, tmp_path, capsys):
    from ctrldial.record import RunRecord, write_json, write_jsonl

    run = tmp_path / "run"
    rows = [{k: v for k, v in r.items()} for r in _rows()]
    write_jsonl(run / "generations.jsonl", rows)
    write_json(run / "record.json", {**RunRecord({"data": {"attribute": "act"}}, "h", status="ok").to_dict(),
                                     "data": {"labels": ACTS}, "metrics": {}})
    main(["rescore", str(run), "--classifier", str(tiny_judge), "--unsure-below", "0.999"])
    assert "unsure_rate=1.000" in capsys.readouterr().out
    rec = json.loads((run / "record.json").read_text())
    assert rec["metrics"]["unsure_rate"] == 1.0 and rec["metrics"]["control_accuracy"] == 0.0
    assert rec["rescored"][-1]["unsure_below"] == 0.999
    main(["rescore", str(run), "--classifier", str(tiny_judge)])
    rec = json.loads((run / "record.json").read_text())
    assert not {"unsure_rate", "control_accuracy_sure", "unsure_below"} & set(rec["metrics"])
    assert not any("unsure" in json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines())


def test_a_run_takes_the_threshold_from_its_config(tiny_judge, tmp_path, dd_dir):
    from ctrldial.pipeline import run

    out = tmp_path / "run"
    run(build_config(None, ["model.name=tiny-gpt2", f"data.path={dd_dir}", "method.name=zero_shot", "train.tracker=none",
                            "data.max_eval_examples=2", "generate.max_new_tokens=4", f"classifier.path={tiny_judge}",
                            "classifier.unsure_below=0.999"]), out)
    rec = json.loads((out / "record.json").read_text())
    assert rec["metrics"]["unsure_below"] == 0.999 and rec["metrics"]["control_accuracy"] == 0.0
    judged = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert rec["metrics"]["unsure_rate"] in (1.0, None) and all(r["unsure"] == (r["predicted"] is not None) for r in judged)
