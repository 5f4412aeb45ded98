"""`ctrldial tune`: a resumable Optuna study whose trials are sweep runs, scored on validation contexts only."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.data.corpus import load_corpus
from ctrldial.errors import UserError
from ctrldial.tunespace import parse_dimension, parse_space

SPACE = ["--space", "train.lr=loguniform(1e-4,1e-2)", "--space", "method.r=int(2,8)"]


def fast_base(dd: Path, clf: Path | None) -> dict:
    """A trial of a few seconds: tiny GPT-2, fixture dialogues, 2 steps, 2 evaluation contexts, 4 new tokens."""
    return {
        "data": {"path": str(dd), "max_eval_examples": 2, "max_valid_examples": 4},
        "model": {"name": "tiny-gpt2"},
        "train": {"max_steps": 2, "eval_every": 1, "batch_size": 4, "tracker": "none", "mixed_precision": "no"},
        "generate": {"max_new_tokens": 4},
        "eval": {"sanity_prompts": 0, "perplexity": False, "generation_perplexity": False},
        "classifier": {"path": str(clf) if clf else None},
    }


@pytest.fixture(scope="module")
def judge(tmp_path_factory, tiny_bert_shared):
    from ctrldial.classifier import train_classifier

    clf = tmp_path_factory.mktemp("judge") / "clf"
    dd = Path(__file__).parent / "fixtures" / "dd"
    train_classifier(build_config(None, [f"data.path={dd}", f"classifier.model={tiny_bert_shared}", "classifier.max_steps=3",
                                         "classifier.eval_every=3", "classifier.max_length=48"]), clf)
    return clf


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, judge):
    """`ctrldial tune --trials 2` on a base config file: (base file, out folder)."""
    root = tmp_path_factory.mktemp("tune")
    base = root / "base.yaml"
    base.write_text(yaml.safe_dump(fast_base(Path(__file__).parent / "fixtures" / "dd", judge)), encoding="utf-8")
    out = root / "out"
    main(["tune", "--config", str(base), "--out", str(out), "--trials", "2", *SPACE])
    return base, out


def _study(folder: Path):
    return optuna.load_study(study_name="lora", storage=f"sqlite:///{folder / 'study.db'}")


def _records(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/record.json")}


def test_two_trials_write_a_study_a_table_and_a_best_config(tuned):
    base, out = tuned
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(_records(out)) == 2
    table = (out / "trials.md").read_text()
    assert "valid_control_accuracy" in table and "(best)" in table and table.count("| complete") == 2
    best = build_config([out / "best.yaml"])  # loadable by `ctrldial run --config`
    assert best.train.lr == pytest.approx(study.best_trial.params["train.lr"])
    assert best.method.r == study.best_trial.params["method.r"]
    assert best.eval.split == "test"  # the final run evaluates on test; only the trials were on validation
    assert best.data.max_eval_examples == 2  # the rest is the base config


def test_trials_evaluate_validation_contexts_only(tuned, dd_dir):
    _, out = tuned
    corpus = load_corpus(str(dd_dir), "raise", True)
    valid_ids = {d.id for d in corpus.splits["validation"]}
    test_ids = {d.id for d in corpus.splits["test"]}
    for folder in (out / "trials").iterdir():
        rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        seen = {r["dialogue_id"] for r in rows}
        assert rows and seen <= valid_ids and not seen & test_ids
        record = json.loads((folder / "record.json").read_text())
        assert record["data"]["eval_split"] == "validation" and record["config"]["eval"]["split"] == "validation"


def test_rerun_runs_nothing_new_and_more_trials_run_only_the_new_ones(tuned, capsys):
    base, out = tuned
    before = _records(out)
    main(["tune", "--config", str(base), "--out", str(out), "--trials", "2", *SPACE])
    assert _records(out) == before and len(_study(out).trials) == 2
    assert "2 of 2 trials done" in capsys.readouterr().out
    main(["tune", "--config", str(base), "--out", str(out), "--trials", "3", *SPACE])
    after = _records(out)
    assert len(_study(out).trials) == 3 and len(after) == 3
    assert {k: v for k, v in after.items() if k in before} == before  # the first two were not rerun


def test_a_changed_space_does_not_resume_the_study(tuned, capsys):
    base, out = tuned
    with pytest.raises(SystemExit) as e:
        main(["tune", "--config", str(base), "--out", str(out), "--trials", "4", "--space", "train.lr=loguniform(1e-5,1e-1)"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "study.db" in err and "--space" in err and len(err.splitlines()) == 1


def test_a_sweep_file_gives_one_study_per_method(tmp_path, dd_dir):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": fast_base(dd_dir, None), "grid": {"method.name": ["lora", "ia3"]},
                                     "classifier": {"train": False}}), encoding="utf-8")
    out = tmp_path / "out"
    main(["tune", "--sweep", str(sweep), "--out", str(out), "--trials", "1", "--objective", "valid_loss",
          "--space", "train.lr=loguniform(1e-4,1e-2)"])
    for method in ("lora", "ia3"):
        assert (out / method / "study.db").is_file() and (out / method / "trials.md").is_file()
        assert build_config([out / "best" / f"{method}.yaml"]).method.name == method


@pytest.mark.parametrize("item, words", [
    ("train.lr=loguniform(1e-5)", "two bounds"),
    ("train.lr=loguniform(0,1)", "0 < a < b"),
    ("train.lrr=loguniform(1e-5,1e-1)", "did you mean train.lr"),
    ("train.lr=normal(0,1)", "unknown distribution"),
    ("train.lr", "KEY=DIST"),
    ("method.r=uniform(4,64)", "use int(a,b)"),
    ("method.r=int(0,8)", "method.r must be > 0"),
    ("eval.split=choice(test,validation)", "cannot be searched"),
])
def test_a_bad_space_is_one_line_and_exit_2(item, words, tmp_path, dd_dir, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(fast_base(dd_dir, tmp_path)), encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["tune", "--config", str(base), "--out", str(tmp_path / "out"), "--trials", "2", "--space", item])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "--space" in err and words in err and "loguniform(a,b)" in err
    assert not (tmp_path / "out" / "study.db").exists()


def test_space_values_read_like_set_values():
    assert parse_dimension("method.name=choice(lora, ia3)").args == ("lora", "ia3")
    assert parse_dimension("method.r=int(4,64)").args == (4, 64)
    assert parse_dimension("train.lr=loguniform(1e-5,1e-1)").args == (1e-5, 1e-1)
    with pytest.raises(UserError, match="searched twice"):
        parse_space(["train.lr=uniform(0.1,0.2)", "train.lr=loguniform(1e-5,1e-1)"])
