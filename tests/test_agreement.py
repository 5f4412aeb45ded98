"""`ctrldial judge agreement`: a judge against hand labels of generated responses."""

import json

import pytest

from ctrldial.agreement import agreement
from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.pipeline import run

ACTS = ["inform", "question", "directive", "commissive"]


@pytest.fixture
def judged_run(tmp_path, dd_dir, tiny_bert):
    from ctrldial.classifier import train_classifier

    clf = tmp_path / "clf"
    train_classifier(build_config(None, [f"data.path={dd_dir}", f"classifier.model={tiny_bert}", "classifier.max_steps=20",
                                         "classifier.eval_every=10", "classifier.max_length=48", "classifier.lr=1e-2",
                                         "classifier.context=previous"]), clf)
    out = tmp_path / "run"
    run(build_config(None, ["model.name=tiny-gpt2", f"data.path={dd_dir}", "method.name=zero_shot", "train.tracker=none",
                            "data.max_eval_examples=6", "generate.max_new_tokens=6", f"classifier.path={clf}"]), out)
    rows = [json.loads(l) for l in (out / "generations.jsonl").read_text().splitlines()]
    return clf, [r for r in rows if r["predicted"] is not None]


def _write(path, rows, label):
    path.write_text("".join(json.dumps({"context": r["context"], "response": r["generation"], "label": label(r),
                                        "requested": r["requested"]}) + "\n" for r in rows))
    return path


def test_own_verdicts_agree_fully_and_shifted_labels_never(judged_run, tmp_path, capsys):
    clf, rows = judged_run
    assert len({r["predicted"] for r in rows}) >= 1
    same = _write(tmp_path / "same.jsonl", rows, lambda r: r["predicted"])
    main(["judge", "agreement", str(same), "--classifier", str(clf), "--out", str(tmp_path / "a")])
    res = json.loads((tmp_path / "a" / "agreement.json").read_text())
    assert res["accuracy"] == 1.0 and res["n"] == len(rows)
    assert res["verdicts"][0]["requested"] == rows[0]["requested"]  # extra keys are kept
    assert "agreement 1.000" in capsys.readouterr().out
    shifted = _write(tmp_path / "shifted.jsonl", rows, lambda r: ACTS[(ACTS.index(r["predicted"]) + 1) % 4])
    res = agreement(shifted, clf)
    assert res["accuracy"] == 0.0
    assert sum(map(sum, res["confusion"])) == len(rows) and all(res["confusion"][i][i] == 0 for i in range(4))


@pytest.mark.parametrize("line, words", [
    ("{not json", "not valid JSON"),
    ('{"context": [], "response": "Hi.", "label": "shouting"}', "`label` 'shouting' is not one of"),
    ('{"context": [1], "response": "Hi.", "label": "inform"}', "`context` must be a list of turns"),
    ('{"context": [], "label": "inform"}', "`response` must be a string"),
])
def test_bad_lines_name_file_and_line(judged_run, tmp_path, capsys, line, words):
    clf, _ = judged_run
    f = tmp_path / "labels.jsonl"
    f.write_text('{"context": ["Hi."], "response": "Hello.", "label": "inform"}\n' + line + "\n")
    with pytest.raises(SystemExit) as e:
        main(["judge", "agreement", str(f), "--classifier", str(clf)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"{f}:2:" in err[0] and words in err[0]
