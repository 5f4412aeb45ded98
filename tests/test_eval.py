"""`ctrldial eval`: a finished run on a contexts file — the run's own contexts reproduce its generations and
metrics; guidance through --set; bad lines name FILE:LINE."""

import json
from pathlib import Path

import pytest

from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.evaluation import read_contexts
from ctrldial.errors import UserError
from ctrldial.pipeline import run

ACTS = ["inform", "question", "directive", "commissive"]


@pytest.fixture(scope="module")
def judged_lora(tmp_path_factory, tiny_bert_shared):
    """A tiny LoRA trained with label dropout, judged by a tiny classifier."""
    from ctrldial.classifier import train_classifier

    tmp = tmp_path_factory.mktemp("eval")
    dd = Path(__file__).parent / "fixtures" / "dd"
    clf = tmp / "clf"
    train_classifier(build_config(None, [f"data.path={dd}", f"classifier.model={tiny_bert_shared}", "classifier.max_steps=10",
                                         "classifier.eval_every=10", "classifier.max_length=48", "classifier.lr=1e-2"]), clf)
    out = tmp / "run"
    run(build_config(None, [
        "model.name=tiny-gpt2", f"data.path={dd}", "method.name=lora", "train.max_steps=6", "train.eval_every=3",
        "train.batch_size=4", "train.tracker=none", "train.mixed_precision=no", "data.max_eval_examples=3",
        "generate.max_new_tokens=5", "train.lr=0.02", "data.label_dropout=0.3", f"classifier.path={clf}",
    ]), out)
    return out


def _rows(folder: Path):
    return [json.loads(l) for l in (folder / "generations.jsonl").read_text().splitlines()]


def test_eval_on_the_runs_own_contexts_reproduces_the_run(judged_lora, tmp_path, capsys):
    rows = _rows(judged_lora)
    contexts = tmp_path / "ctx.jsonl"
    seen = []
    for r in rows:
        if r["context"] not in [s["context"] for s in seen]:
            seen.append({"context": r["context"], "reference": r["reference"], "reference_label": r["reference_label"]})
    contexts.write_text("".join(json.dumps(s) + "\n" for s in seen))
    main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(tmp_path / "e")])
    printed = capsys.readouterr().out
    assert "control_accuracy" in printed and "metrics.json" in printed
    got = _rows(tmp_path / "e")
    assert [(g["context"], g["requested"], g["generation"], g["predicted"]) for g in got] == \
           [(r["context"], r["requested"], r["generation"], r["predicted"]) for r in rows]
    res = json.loads((tmp_path / "e" / "metrics.json").read_text())
    record = json.loads((judged_lora / "record.json").read_text())
    for key in ("control_accuracy", "control_accuracy_gold", "per_label_accuracy", "empty_rate", "bleu"):
        assert res["metrics"][key] == record["metrics"][key], key
    assert res["contexts"] == len(seen) and res["labels"] == ACTS


def test_eval_with_guidance_and_labels(judged_lora, tmp_path):
    contexts = tmp_path / "ood.jsonl"
    contexts.write_text(json.dumps({"context": ["Hi, how was your weekend?"], "id": "w"}) + "\n"
                        + json.dumps({"context": ["I lost my keys again.", "Where did you last see them?"]}) + "\n")
    plain = main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(tmp_path / "p"), "--labels", "question", "directive"])
    assert plain is None
    main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(tmp_path / "g"), "--labels", "question", "directive",
          "--set", "generate.guidance_scale=3"])
    p, g = _rows(tmp_path / "p"), _rows(tmp_path / "g")
    assert [r["requested"] for r in p] == ["question", "directive"] * 2
    assert p[0]["dialogue_id"] == "w" and p[2]["dialogue_id"] == "ood.jsonl:2"
    res = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert res["generate"]["generate.guidance_scale"] == 3 and res["metrics"]["bleu"] is None
    assert [r["generation"] for r in p] != [r["generation"] for r in g]  # guidance changed the decoding


def test_eval_of_some_labels_with_a_validated_judge_corrects_them(judged_lora, tmp_path):
    """`--labels commissive` with a judge that has hand-label agreement: the verdicts it may give are every act, not
    only the requested one (this crashed after the whole generation, and the generations were lost)."""
    import shutil

    run_rec = json.loads((judged_lora / "record.json").read_text())
    judge = tmp_path / "validated"
    shutil.copytree(run_rec["config"]["classifier"]["path"], judge)
    verdicts = [{"judge": v, "label": "commissive" if v == "inform" else v} for v in ACTS]  # its "inform" means commissive
    (judge / "agreement.json").write_text(json.dumps({"verdicts": verdicts, "n": 4}))
    contexts = tmp_path / "c.jsonl"
    contexts.write_text(json.dumps({"context": ["Can you help me move on Sunday?"]}) + "\n")
    main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(tmp_path / "e"), "--labels", "commissive",
          "--set", f"classifier.path={judge}"])
    rows = _rows(tmp_path / "e")
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]
    assert [r["requested"] for r in rows] == ["commissive"]
    called = rows[0]["predicted"]
    assert m["corrected_per_label_accuracy"]["commissive"] == (1.0 if called in ("inform", "commissive") else 0.0)


def test_eval_record_pairs_with_the_run_and_reports_like_one(judged_lora, tmp_path):
    """--record on the run's own contexts (contexts_of_run): a record that report and rescore read, rows that pair
    with the run's, the decoding in its config and the training kept."""
    from ctrldial.evaluation import contexts_of_run
    from ctrldial.metrics import paired_bootstrap
    from ctrldial.record import write_jsonl
    from ctrldial.reporting import find_runs, group_runs

    contexts = tmp_path / "own.jsonl"
    write_jsonl(contexts, contexts_of_run(judged_lora))
    out = tmp_path / "runs" / "guided"
    main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(out), "--record", "--set", "generate.guidance_scale=3"])
    run_rec = json.loads((judged_lora / "record.json").read_text())
    rec = json.loads((out / "record.json").read_text())
    res = json.loads((out / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["config"]["generate"]["guidance_scale"] == 3
    assert rec["metrics"]["control_accuracy"] == res["metrics"]["control_accuracy"]
    assert rec["metrics"]["ci"]["control_accuracy"] == res["metrics"]["ci"]["control_accuracy"]
    assert rec["metrics"]["perplexity"] == run_rec["metrics"]["perplexity"] and rec["train"] == run_rec["train"]
    assert rec["eval"]["run"] == str(judged_lora) and rec["config_hash"] != run_rec["config_hash"]
    paired = paired_bootstrap(_rows(out), _rows(judged_lora), ACTS)  # every response has its partner
    assert paired["difference"] == pytest.approx(res["metrics"]["control_accuracy"] - run_rec["metrics"]["control_accuracy"])
    plain = tmp_path / "runs" / "plain"
    plain.mkdir()
    for name in ("record.json", "generations.jsonl"):
        (plain / name).write_bytes((judged_lora / name).read_bytes())
    rows = group_runs([r for r in find_runs(tmp_path / "runs") if r.record.get("status") == "ok"])
    assert sorted([run.folder for run in r.runs] for r in rows) == [["guided"], ["plain"]]  # one row per decoding
    assert any(r.variant.startswith("guidance_scale=") for r in rows)


@pytest.mark.parametrize("line, message", [
    ("not json", "not valid JSON"),
    ('{"context": "one string"}', "must be a list"),
    ('{"context": []}', "one or more"),
    ('{"turns": ["hi"]}', "must be a list"),
    ('{"context": ["hi"], "reference_label": "shout"}', "not one of"),
])
def test_bad_contexts_lines_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"context": ["fine"]}) + "\n" + line + "\n")
    with pytest.raises(UserError, match=rf"c.jsonl:2: .*{message}"):
        read_contexts(f, ACTS)


def test_bad_contexts_file_exits_2_before_the_model_loads(judged_lora, tmp_path, capsys):
    f = tmp_path / "c.jsonl"
    f.write_text("{oops\n")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(judged_lora), "--contexts", str(f), "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.jsonl:1" in err[0]
    assert not (tmp_path / "x").exists()


def test_an_eval_folder_is_rescored_in_place_and_keeps_its_fluency(judged_lora, tmp_path, capsys):
    """`ctrldial rescore` on an eval folder (no --record): new verdicts and control metrics in metrics.json, the
    figures no judge changes (generation perplexity, repetition, BLEU) kept; an eval written before evals named their
    attribute is rescored too; a damaged metrics.json is one line naming it."""
    from ctrldial.classifier import Scorer
    from ctrldial.metrics import control_metrics

    contexts = tmp_path / "c.jsonl"
    contexts.write_text(json.dumps({"context": ["Can you help me move on Sunday?"], "reference": "Sure.",
                                    "reference_label": "commissive"}) + "\n"
                        + json.dumps({"context": ["I lost my keys again."]}) + "\n")
    out = tmp_path / "e"
    main(["eval", str(judged_lora), "--contexts", str(contexts), "--out", str(out)])
    result = json.loads((out / "metrics.json").read_text())
    assert result["attribute"] == "act"
    judge = result["judge"]
    kept = {k: result["metrics"][k] for k in ("generation_perplexity", "repetition_rate", "bleu", "distinct_2")}
    rows = _rows(out)
    (out / "generations.jsonl").write_text("".join(json.dumps({**r, "predicted": "question"}) + "\n" for r in rows))
    del result["attribute"]  # as written before evals named it
    result["metrics"]["control_accuracy"] = -1.0
    (out / "metrics.json").write_text(json.dumps(result))

    main(["rescore", str(out), "--classifier", judge])
    assert "control_accuracy=" in capsys.readouterr().out
    got = _rows(out)
    pred, _ = Scorer.load(Path(judge), "act").score([r["generation"] for r in got], [r["context"] for r in got])
    assert [r["predicted"] for r in got] == [p if r["generation"].strip() else None for p, r in zip(pred, got)]
    res = json.loads((out / "metrics.json").read_text())
    assert res["metrics"]["control_accuracy"] == control_metrics(got, ACTS)["control_accuracy"]
    assert res["rescored"][-1]["classifier"] == judge and res["judge"] == judge
    assert {k: res["metrics"][k] for k in kept} == kept

    (out / "metrics.json").write_text("{broken")
    with pytest.raises(SystemExit) as e:
        main(["rescore", str(out), "--classifier", judge])
    assert e.value.code == 2 and "metrics.json" in capsys.readouterr().err
