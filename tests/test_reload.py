"""Reloading finished runs: the evaluated model exactly, damaged folders as one-line errors, rescoring, the Python API."""

import json
import subprocess
import sys
import time

import pytest
import torch

import ctrldial
from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.errors import UserError
from ctrldial.loaded import reload
from ctrldial.pipeline import run


def tiny(dd_dir, method, *extra):
    return build_config(None, [
        "model.name=tiny-gpt2", f"data.path={dd_dir}", f"method.name={method}", "train.max_steps=6", "train.eval_every=3",
        "train.batch_size=4", "train.tracker=none", "train.mixed_precision=no", "data.max_eval_examples=3",
        "generate.max_new_tokens=5", "train.lr=0.05", *extra,
    ])


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    from pathlib import Path

    dd = Path(__file__).parent / "fixtures" / "dd"
    out = tmp_path_factory.mktemp("lora") / "run"
    run(tiny(dd, "lora"), out)
    return out


def _rows(folder):
    return [json.loads(l) for l in (folder / "generations.jsonl").read_text().splitlines()]


def test_full_fine_tuning_with_special_label_tokens_reloads_the_learned_embeddings(tmp_path, dd_dir):
    out = tmp_path / "full"
    run(tiny(dd_dir, "full", "data.label_style=special", "train.lr=0.5"), out)
    m = reload(out)
    ids = m.tokenizer.convert_tokens_to_ids(m.template.special_tokens)
    from safetensors.torch import load_file

    saved = load_file(str(out / "model" / "model.safetensors"))
    emb_key = next(k for k in saved if k.endswith("wte.weight"))
    rows = m.model.get_input_embeddings().weight[ids]
    assert torch.equal(rows, saved[emb_key][ids])  # exactly the trained rows ...
    # ... which training moved away from the deterministic mean-of-label-word start that prepare() gives them
    fresh = ctrldial.loaded.prepare(tiny(dd_dir, "full", "data.label_style=special"), torch.device("cpu"))
    assert not torch.equal(rows, fresh.model.get_input_embeddings().weight[ids])
    r = _rows(out)
    assert ctrldial.Model(m).generate_many([x["context"] for x in r], [x["requested"] for x in r]) == [x["generation"] for x in r]


def test_damaged_weights_give_one_line(lora_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(lora_run, broken)
    weights = broken / "model" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(SystemExit) as e:
        main(["generate", str(broken), "--label", "question", "--context", "Hi."])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "adapter_model.safetensors" in err[0] and "--overwrite" in err[0]


@pytest.mark.parametrize("content, words", [
    ('{"schema": 1, "status": "ok", "conf', "damaged (not valid JSON"),
    ('{"schema": 99, "status": "ok"}', "record schema 99"),
    ('{"name": "something else"}', "not a ctrldial run record"),
    ('{"schema": 1, "status": "ok", "config": {}}', "damaged record, missing"),
    ('{"schema": 1, "status": "running", "config": {}}', "not finished"),
])
def test_damaged_or_foreign_record_gives_one_line(lora_run, tmp_path, capsys, content, words):
    import shutil

    folder = tmp_path / "r"
    shutil.copytree(lora_run, folder)
    (folder / "record.json").write_text(content)
    with pytest.raises(SystemExit) as e:
        main(["generate", str(folder), "--label", "question"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and words in err[0] and "record.json" in err[0]


def test_unknown_label_is_rejected_before_the_model_loads(lora_run):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "ctrldial", "generate", str(lora_run), "--label", "shouting", "--context", "Hi."],
                       capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "ctrldial: error: --label 'shouting': not one of inform, question, directive, commissive"]
    assert elapsed < 30  # generous for a loaded CI machine; a model load is what this guards against (checked by hand: < 3 s)


def test_cli_generate_repeats_the_recorded_generation(lora_run, capsys):
    row = _rows(lora_run)[1]
    main(["generate", str(lora_run), "--label", row["requested"], *[x for t in row["context"] for x in ("--context", t)]])
    assert capsys.readouterr().out.rstrip("\n") == row["generation"]


@pytest.fixture
def judged_copy(lora_run, tmp_path, dd_dir, tiny_bert):
    """A tiny trained judge and a writable copy of the finished LoRA run."""
    import shutil

    from ctrldial.classifier import train_classifier

    clf = tmp_path / "clf"
    train_classifier(build_config(None, [f"data.path={dd_dir}", f"classifier.model={tiny_bert}", "classifier.max_steps=5",
                                         "classifier.eval_every=5", "classifier.max_length=48"]), clf)
    folder = tmp_path / "r"
    shutil.copytree(lora_run, folder)
    return clf, folder


def test_rescore_with_another_classifier(judged_copy):
    from ctrldial.classifier import Scorer
    from ctrldial.metrics import control_metrics

    clf, folder = judged_copy
    rec = ctrldial.rescore(folder, clf)
    rows = _rows(folder)
    pred, _ = Scorer.load(clf, "act").score([r["generation"] for r in rows], [r["context"] for r in rows])
    assert [r["predicted"] for r in rows] == [p if r["generation"].strip() else None for p, r in zip(pred, rows)]
    on_disk = json.loads((folder / "record.json").read_text())
    assert on_disk["judge"] == str(clf) and on_disk["rescored"][-1]["classifier"] == str(clf)
    assert on_disk["metrics"]["control_accuracy"] == control_metrics(rows, rec["data"]["labels"])["control_accuracy"]


def test_python_api_run_load_report(tmp_path, dd_dir):
    cfg = {"model": {"name": "tiny-gpt2"}, "data": {"path": str(dd_dir), "max_eval_examples": 2},
           "method": {"name": "lora"}, "train": {"max_steps": 2, "tracker": "none", "lr": 0.05}, "generate": {"max_new_tokens": 4}}
    rec = ctrldial.run(cfg, tmp_path / "runs" / "lora", overrides=["train.batch_size=2"])
    assert rec["status"] == "ok" and rec["config"]["train"]["batch_size"] == 2
    bot = ctrldial.load(tmp_path / "runs" / "lora")
    first = _rows(tmp_path / "runs" / "lora")[0]
    assert bot.generate(first["context"], first["requested"]) == first["generation"]
    with pytest.raises(UserError, match="not one of"):
        bot.generate("Hi.", "shouting")
    page = ctrldial.report(tmp_path / "runs")
    assert page.name == "report.html" and "lora" in page.read_text()


def test_rescore_as_an_extra_judge_keeps_the_primary_and_a_validated_judge_is_corrected(judged_copy, tmp_path):
    from ctrldial.agreement import agreement

    clf, folder = judged_copy
    primary = ctrldial.rescore(folder, clf)
    before = (folder / "generations.jsonl").read_text()
    rows = _rows(folder)
    labels = tmp_path / "hand.jsonl"  # a "hand-labelled" set on which this judge is always right
    labels.write_text("".join(json.dumps({"context": r["context"], "response": r["generation"], "label": r["predicted"]}) + "\n"
                              for r in rows if r["predicted"]))
    agreement(labels, clf, out=clf)  # the judge now carries its validation: clf/agreement.json
    rec = ctrldial.rescore(folder, clf, name="second")
    assert (folder / "generations.jsonl").read_text() == before and rec["metrics"] == primary["metrics"]
    second = rec["judges"]["second"]["metrics"]
    assert second["control_accuracy"] == primary["metrics"]["control_accuracy"]
    lo, hi = second["ci"]["control_accuracy"]
    assert lo <= second["control_accuracy"] <= hi
    # validated on exactly these responses, where it is always right: the correction changes nothing
    assert second["corrected_control_accuracy"] == pytest.approx(second["control_accuracy"])
    assert second["corrected_by"]["validation"] == str(clf / "agreement.json")
