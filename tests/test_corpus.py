import subprocess
import sys
import zipfile

import pytest

from conftest import FIXTURES

from ctrldial.config import DataConfig
from ctrldial.data.corpus import ACTS, load_corpus, read_hf
from ctrldial.data.examples import build_examples, label_of, sample_examples
from ctrldial.data.stats import corpus_stats
from ctrldial.errors import UserError


def test_reads_layout(dd_dir):
    c = load_corpus(str(dd_dir), dedup=False)
    assert set(c.splits) == {"train", "validation", "test"}
    for ds in c.splits.values():
        for d in ds:
            assert len(d.utterances) == len(d.acts) == len(d.emotions) >= 2
            assert all(0 <= a < 4 for a in d.acts)


def test_dedup_removes_eval_dialogues_in_train(dd_dir):
    raw = load_corpus(str(dd_dir), dedup=False)
    c = load_corpus(str(dd_dir), dedup=True)
    assert c.removed_duplicates["test"] >= 1
    assert len(c.splits["test"]) == len(raw.splits["test"]) - c.removed_duplicates["test"]
    train = {"\n".join(d.utterances) for d in c.splits["train"]}
    assert not any("\n".join(d.utterances) in train for d in c.splits["test"] + c.splits["validation"])


def _zip_layout(src, dst, nested: bool):
    with zipfile.ZipFile(dst, "w") as z:
        for split in ("train", "validation", "test"):
            if nested:
                inner = dst.parent / f"{split}.zip"
                with zipfile.ZipFile(inner, "w") as iz:
                    for f in (src / split).iterdir():
                        iz.write(f, f"{split}/{f.name}")
                z.write(inner, f"ijcnlp_dailydialog/{split}.zip")
            else:
                for f in (src / split).iterdir():
                    z.write(f, f"ijcnlp_dailydialog/{split}/{f.name}")


@pytest.mark.parametrize("nested", [False, True])
def test_zip_equals_folder(tmp_path, dd_dir, nested):
    z = tmp_path / "dd.zip"
    _zip_layout(dd_dir, z, nested)
    a, b = load_corpus(str(dd_dir)), load_corpus(str(z))
    assert {s: [d.utterances for d in ds] for s, ds in a.splits.items()} == {s: [d.utterances for d in ds] for s, ds in b.splits.items()}


def test_split_zips_in_folder(tmp_path, dd_dir):
    for split in ("train", "validation", "test"):
        with zipfile.ZipFile(tmp_path / f"{split}.zip", "w") as z:
            for f in (dd_dir / split).iterdir():
                z.write(f, f"{split}/{f.name}")
    c = load_corpus(str(tmp_path))
    assert len(c.splits["train"]) == len(load_corpus(str(dd_dir)).splits["train"])


def test_parquet_column_mapping(tmp_path, dd_dir):
    """The Hub's Parquet conversion of li2017dailydialog/daily_dialog: act 0 is a dummy, 1..4 as the files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = load_corpus(str(dd_dir), dedup=False)
    for split, ds in ref.splits.items():
        table = pa.table({
            "dialog": [d.utterances for d in ds],
            "act": [[a + 1 for a in d.acts] for d in ds],
            "emotion": [d.emotions for d in ds],
        })
        pq.write_table(table, tmp_path / f"{split}-00000-of-00001.parquet")
    c = load_corpus(str(tmp_path), dedup=False)
    for split in ref.splits:
        assert [(d.utterances, d.acts, d.emotions) for d in c.splits[split]] == [(d.utterances, d.acts, d.emotions) for d in ref.splits[split]]


def test_utterance_level_rows_are_regrouped(dd_dir):
    """DeepPavlov/daily_dialog: one row per utterance, `dialog` = history up to it, label names."""
    from ctrldial.data.corpus import EMOTIONS

    ref = load_corpus(str(dd_dir), dedup=False)
    rows = {
        split: [
            {"dialog": d.utterances[: i + 1], "act_label_text": ACTS[d.acts[i]], "emotion_label_text": EMOTIONS[d.emotions[i]].replace("_", " ")}
            for d in ds
            for i in range(len(d.utterances))
        ]
        for split, ds in ref.splits.items()
    }
    c = read_hf(rows, "rows")
    for split in ref.splits:
        assert [(d.utterances, d.acts, d.emotions) for d in c.splits[split]] == [(d.utterances, d.acts, d.emotions) for d in ref.splits[split]]


def test_dummy_act_rejected():
    rows = {s: [{"dialog": ["a", "b"], "act": [0, 1], "emotion": [0, 0]}] for s in ("train", "validation", "test")}
    with pytest.raises(UserError, match=r"row 1: act labels \[0, 1\] outside 1..4"):
        read_hf(rows, "hub")


def _rewrite_line(path, lineno, fn):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def test_label_count_mismatch_names_file_and_line(dd_copy):
    _rewrite_line(dd_copy / "test" / "dialogues_act_test.txt", 2, lambda l: " ".join(l.split()[:-1]) + " ")
    with pytest.raises(UserError, match=r"dialogues_act_test.txt:2: \d+ labels for \d+ utterances"):
        load_corpus(str(dd_copy))


def test_label_out_of_range(dd_copy):
    _rewrite_line(dd_copy / "train" / "dialogues_emotion_train.txt", 3, lambda l: "9 " + " ".join(l.split()[1:]) + " ")
    with pytest.raises(UserError, match=r"dialogues_emotion_train.txt:3: label 9 out of range, expected 0..6"):
        load_corpus(str(dd_copy))


def test_non_utf8(dd_copy):
    p = dd_copy / "validation" / "dialogues_validation.txt"
    data = p.read_bytes().split(b"\n")
    data[1] = data[1] + b"\xff"
    p.write_bytes(b"\n".join(data))
    with pytest.raises(UserError, match=r"dialogues_validation.txt:2: not valid UTF-8"):
        load_corpus(str(dd_copy))


def test_empty_split(dd_copy):
    for f in (dd_copy / "test").iterdir():
        f.write_text("")
    with pytest.raises(UserError, match=r"dialogues_test.txt: split 'test' has no dialogues"):
        load_corpus(str(dd_copy))


def test_missing_file(dd_copy):
    (dd_copy / "train" / "dialogues_emotion_train.txt").unlink()
    with pytest.raises(UserError, match=r"dialogues_emotion_train.txt: file missing"):
        load_corpus(str(dd_copy))


def test_skip_mode_counts(dd_copy):
    _rewrite_line(dd_copy / "test" / "dialogues_act_test.txt", 2, lambda l: " ".join(l.split()[:-1]) + " ")
    ok = load_corpus(str(FIXTURES / "dd"), dedup=False)
    c = load_corpus(str(dd_copy), on_error="skip", dedup=False)
    assert c.skipped == {"test": 1}
    assert len(c.splits["test"]) == len(ok.splits["test"]) - 1


def test_examples_every_turn_with_context(dd_dir):
    c = load_corpus(str(dd_dir))
    cfg = DataConfig(path=str(dd_dir), max_context_turns=2)
    exs = build_examples(c, "train", cfg)
    assert len(exs) == sum(len(d.utterances) - 1 for d in c.splits["train"])
    d = c.splits["train"][0]
    first = [e for e in exs if e.dialogue_id == d.id]
    assert first[0].context == (first[0].context[0],) and len(first[-1].context) == min(2, len(d.utterances) - 1)
    assert [e.act for e in first] == d.acts[1:]


def test_balanced_sample(dd_dir):
    c = load_corpus(str(dd_dir))
    exs = build_examples(c, "train", DataConfig())
    s = sample_examples(exs, 20, seed=1, balance_by="act")
    counts = {a: sum(label_of(e, "act") == a for e in s) for a in ACTS}
    assert len(s) == 20 and max(counts.values()) - min(counts.values()) <= 1 or min(counts.values()) < 5
    assert sample_examples(exs, 20, seed=1, balance_by="act") == s  # seeded


def test_stats_numbers(dd_dir):
    s = corpus_stats(DataConfig(path=str(dd_dir)))
    c = load_corpus(str(dd_dir), dedup=False)
    tr = s["splits"]["train"]
    assert tr["dialogues"] == len(c.splits["train"])
    assert tr["utterances"] == sum(len(d.utterances) for d in c.splits["train"])
    assert sum(tr["acts"].values()) == tr["utterances"]
    assert s["duplicates"]["test_in_train"] >= 1


def test_cli_error_is_one_line_exit_2(dd_copy):
    _rewrite_line(dd_copy / "test" / "dialogues_act_test.txt", 3, lambda l: " ".join(l.split()[:-1]) + " ")
    r = subprocess.run([sys.executable, "-m", "ctrldial", "data", "stats", "--data", str(dd_copy)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "dialogues_act_test.txt:3" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_json(dd_dir):
    import json

    r = subprocess.run([sys.executable, "-m", "ctrldial", "data", "stats", "--data", str(dd_dir), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s["splits"]["train"]["acts"]) == set(ACTS)


def test_extra_train_examples_join_the_sampled_ones_and_the_fingerprint(dd_dir, tmp_path):
    from ctrldial.data.examples import fingerprint, load_splits

    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        '{"context": ["a", "b", "c", "d", "e", "Shall we go?"], "response": " Sure, I\'ll come. ", "act": "commissive"}\n\n'
        '{"context": [], "response": "Sit down.", "act": "directive", "note": "kept aside"}\n'
    )
    plain = load_splits(DataConfig(path=str(dd_dir), max_train_examples=10))
    with_extra = load_splits(DataConfig(path=str(dd_dir), max_train_examples=10, max_context_turns=4, extra_train=str(extra)))
    assert with_extra.train[:10] == plain.train  # the sample is unchanged; the extra examples come on top
    added = with_extra.train[10:]
    assert [(ex.context, ex.response, label_of(ex, "act"), ex.turn) for ex in added] == [
        (("c", "d", "e", "Shall we go?"), "Sure, I'll come.", "commissive", 1),  # the last max_context_turns turns
        ((), "Sit down.", "directive", 3),
    ]
    assert fingerprint(with_extra.train) != fingerprint(plain.train)


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('{"context": "hi", "response": "Sure.", "act": "commissive"}', '"context" must be a list'),
        ('{"context": ["hi"], "response": "  ", "act": "commissive"}', '"response" must be a non-empty string'),
        ('{"context": ["hi"], "response": "Sure.", "act": "promise"}', '"act" must be one of inform, question'),
        ('{"context": ["hi"], "response": "Sure."}', '"act" must be one of'),
        ("not json", "not valid JSON"),
    ],
)
def test_a_bad_extra_train_line_names_file_and_line(dd_dir, tmp_path, line, fragment):
    from ctrldial.data.examples import load_splits

    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"context": ["hi"], "response": "Sure.", "act": "commissive"}\n' + line + "\n")
    with pytest.raises(UserError, match=f"{extra}:2: .*") as e:
        load_splits(DataConfig(path=str(dd_dir), max_train_examples=10, extra_train=str(extra)))
    assert fragment in str(e.value)


def test_extra_train_for_emotion_needs_the_emotion_and_a_missing_file_is_one_line(dd_dir, tmp_path):
    from ctrldial.data.examples import load_splits

    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"context": ["hi"], "response": "Great!", "act": "inform"}\n')
    with pytest.raises(UserError, match='"emotion" must be one of'):
        load_splits(DataConfig(path=str(dd_dir), attribute="emotion", extra_train=str(extra)))
    with pytest.raises(UserError, match="no such file"):
        load_splits(DataConfig(path=str(dd_dir), extra_train=str(tmp_path / "missing.jsonl")))
