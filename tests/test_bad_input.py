"""Every user mistake: exit status 2, one line on stderr naming the fault, no traceback."""

import subprocess
import sys

import pytest

from ctrldial.cli import main

TINY = ["--set", "model.name=tiny-gpt2", "--set", "train.tracker=none", "--set", "train.max_steps=1", "--set", "data.max_eval_examples=1"]


def _rewrite(path, lineno, fn):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def corrupt(kind, d):
    """Apply one kind of damage to a copy of the fixture corpus at ``d``."""
    if kind == "missing_split_file":
        (d / "validation" / "dialogues_act_validation.txt").unlink()
    elif kind == "count_mismatch":
        _rewrite(d / "test" / "dialogues_act_test.txt", 3, lambda l: " ".join(l.split()[:-1]) + " ")
    elif kind == "empty_line":
        _rewrite(d / "train" / "dialogues_train.txt", 2, lambda l: "")
    elif kind == "non_utf8":
        p = d / "train" / "dialogues_train.txt"
        p.write_bytes(p.read_bytes().replace(b"\n", b"\xe9\n", 1))
    elif kind == "label_out_of_range":
        _rewrite(d / "train" / "dialogues_act_train.txt", 4, lambda l: "7 " + " ".join(l.split()[1:]) + " ")
    elif kind == "empty_split":
        for f in (d / "validation").iterdir():
            f.write_text("")


DATA_CASES = [
    ("missing_split_file", "dialogues_act_validation.txt: file missing"),
    ("count_mismatch", "dialogues_act_test.txt:3:"),
    ("empty_line", "dialogues_train.txt:2: empty dialogue"),
    ("non_utf8", "dialogues_train.txt:1: not valid UTF-8"),
    ("label_out_of_range", "dialogues_act_train.txt:4: label 7 out of range"),
    ("empty_split", "split 'validation' has no dialogues"),
]


def _fails(capsys, argv, fragment):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [l for l in err.splitlines() if l.startswith("ctrldial: error:")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind,fragment", DATA_CASES)
def test_bad_data(capsys, dd_copy, kind, fragment):
    corrupt(kind, dd_copy)
    _fails(capsys, ["data", "stats", "--data", str(dd_copy)], fragment)


CONFIG_CASES = [
    (["data", "stats", "--data", "/no/such/folder"], "data.path=/no/such/folder: no such folder"),
    (["data", "stats", "--data", "nobody-xyz/no-dataset"], "machine may be offline"),
    (["data", "stats", "--set", "data.colour=red"], "unknown key 'data.colour'"),
    (["data", "stats", "--set", "data.max_context_turns=four"], "data.max_context_turns: expected an integer"),
    (["data", "stats", "--set", "method.name=lorra"], "unknown method 'lorra'"),
    (["data", "stats", "--set", "train.batch_size=0"], "train.batch_size must be > 0"),
    (["data", "stats", "--set", "train.lr=-0.001"], "train.lr must be > 0"),
    (["classifier", "train", "--out", "{tmp}/c", "--set", "classifier.max_length=4", "--set", "classifier.warmup_ratio=1"],
     "classifier.max_length must be >= 8 (64 covers almost every DailyDialog utterance); classifier.warmup_ratio must be in [0, 1)"),
    (["classifier", "train", "--out", "{tmp}/c", "--set", "classifier.context_turns=0"], "classifier.context_turns must be >= 1"),
    (["classifier", "train", "--out", "{tmp}/c", "--set", "classifier.label_smoothing=1"], "classifier.label_smoothing must be in [0, 1)"),
    (["classifier", "train", "--out", "{tmp}/c", "--set", "classifier.class_weight_power=0"], "classifier.class_weight_power must be in (0, 2]"),
    (["data", "stats", "--config", "/no/such.yaml"], "config file /no/such.yaml not found"),
    (["run", "--out", "{tmp}/r", "--set", "model.name=dialogpt-smal", *TINY[2:]], "unknown model alias; did you mean dialogpt-small"),
    (["run", "--out", "{tmp}/r", *TINY, "--set", "method.name=prefix", "--set", "method.num_virtual_tokens=200",
      "--set", "generate.max_new_tokens=100"], "leave no room for a prompt"),
    (["run", "--out", "{tmp}/r", *TINY, "--set", "method.name=qlora"], "qlora needs a CUDA GPU"),
    (["run", "--out", "{tmp}/r", *TINY, "--set", "classifier.path={tmp}"], "not a ctrldial classifier"),
    (["run", "--out", "{tmp}/r", *TINY, "--set", "data.extra_train={tmp}/none.jsonl"], "none.jsonl: no such file; give a JSONL file of examples"),
]


@pytest.mark.parametrize("argv,fragment", CONFIG_CASES, ids=[c[1][:40] for c in CONFIG_CASES])
def test_bad_config(capsys, tmp_path, dd_dir, monkeypatch, argv, fragment):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "run":
        argv += ["--set", f"data.path={dd_dir}"]
    _fails(capsys, argv, fragment)


def test_bad_yaml(capsys, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  path: [unclosed\n")
    _fails(capsys, ["data", "stats", "--config", str(f)], "c.yaml:")


def test_finished_run_not_overwritten(capsys, tmp_path, dd_dir):
    out = tmp_path / "r"
    argv = ["run", "--out", str(out), *TINY, "--set", f"data.path={dd_dir}", "--set", "method.name=zero_shot"]
    main(argv)
    before = (out / "record.json").read_bytes()
    _fails(capsys, argv, "already finished; pass --overwrite")
    assert (out / "record.json").read_bytes() == before


def test_no_traceback_in_a_real_process(dd_copy):
    corrupt("count_mismatch", dd_copy)
    r = subprocess.run([sys.executable, "-m", "ctrldial", "data", "stats", "--data", str(dd_copy)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ctrldial", "--debug", "data", "stats", "--data", str(dd_copy)], capture_output=True, text=True)
    assert "Traceback" in r.stderr  # --debug shows it
