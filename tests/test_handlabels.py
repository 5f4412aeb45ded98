"""`ctrldial judge draw` / `judge join`: hand labels drawn blind, then joined with their key."""

import json

import pytest

from ctrldial.classifier.data import UtteranceExample, class_weights, read_labelled
from ctrldial.cli import main
from ctrldial.handlabels import draw, pool

ACTS = ["inform", "question", "directive", "commissive"]


@pytest.fixture
def runs(tmp_path):
    """Two run folders: 40 responses, the judge says inform 30 times, question 6, directive 4, never commissive."""
    verdicts = ["inform"] * 30 + ["question"] * 6 + ["directive"] * 4
    for k, name in enumerate(("lora/seed0", "ia3/seed0")):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        rows = [{"context": [f"turn {k}-{i}"], "requested": ACTS[i % 4], "generation": f"reply {k}-{i}" if i != 7 else " ",
                 "predicted": v} for i, v in enumerate(verdicts[k::2])]
        (d / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "runs"


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_draw_is_blind_stratified_without_repeats_and_seeded(runs, tmp_path, capsys):
    rows = pool(runs)
    assert len(rows) == 38 and all(r["generation"].strip() for r in rows)  # the blank responses (one per run) are never drawn
    main(["judge", "draw", str(runs), "--out", str(tmp_path / "d"), "--random", "10", "--per-verdict", "3"])
    blind, key = read(tmp_path / "d" / "blind.jsonl"), read(tmp_path / "d" / "key.jsonl")
    assert all(set(b) == {"id", "context", "response"} for b in blind)  # no requested act, no verdict
    assert [b["id"] for b in blind] == [k["id"] for k in key] and len({k["source"] for k in key}) == len(key)
    strat = [k for k in key if k["draw"] == "stratified"]
    assert sum(k["draw"] == "random" for k in key) == 10
    by_verdict = {v: sum(k["judge"] == v for k in strat) for v in ACTS}
    assert by_verdict["inform"] == 3 and by_verdict["commissive"] == 0 and 0 < by_verdict["directive"] <= 3
    assert key[0]["source"].split(":")[0] in ("lora/seed0", "ia3/seed0")
    again = draw(rows, 10, 3, ACTS, seed=0)
    assert [k for _, k in again] == key and draw(rows, 10, 3, ACTS, seed=1) != again
    assert "drawn" in capsys.readouterr().out


def test_exclude_heldout_share_and_no_overwrite(runs, tmp_path, capsys):
    main(["judge", "draw", str(runs), "--out", str(tmp_path / "a"), "--random", "20", "--per-verdict", "0"])
    first = {k["source"] for k in read(tmp_path / "a" / "key.jsonl")}
    main(["judge", "draw", str(runs), "--out", str(tmp_path / "b"), "--random", "18", "--per-verdict", "0",
          "--exclude", str(tmp_path / "a" / "key.jsonl"), "--heldout-share", "0.5", "--prefix", "x"])
    second = read(tmp_path / "b" / "key.jsonl")
    assert not first & {k["source"] for k in second} and second[0]["id"] == "x000"
    assert {k["part"] for k in second} == {"dev", "heldout"}
    with pytest.raises(SystemExit) as e:  # a drawn set may be labelled already: never replaced
        main(["judge", "draw", str(runs), "--out", str(tmp_path / "a"), "--random", "5"])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err


def test_join_gives_the_agreement_format_and_names_bad_lines(runs, tmp_path, capsys):
    d = tmp_path / "d"
    main(["judge", "draw", str(runs), "--out", str(d), "--random", "6", "--per-verdict", "0"])
    key = read(d / "key.jsonl")
    labels = [{"id": k["id"], "label": ACTS[i % 4], "note": f"n{i}"} for i, k in enumerate(key)]
    (d / "hand-labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    main(["judge", "join", str(d), "--out", str(tmp_path / "labels.jsonl")])
    joined = read(tmp_path / "labels.jsonl")
    assert [(j["id"], j["label"], j["judge_at_draw"], j["requested"]) for j in joined] == \
        sorted((k["id"], x["label"], k["judge"], k["requested"]) for k, x in zip(key, labels))
    assert len(read_labelled(tmp_path / "labels.jsonl", ACTS)) == 6  # `judge agreement` reads it
    for bad, words in (({**labels[1], "label": "shouting"}, "not one of"), ({**labels[1], "id": "zz"}, "not in blind.jsonl")):
        (d / "hand-labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [labels[0], bad, *labels[2:]]))
        with pytest.raises(SystemExit) as e:
            main(["judge", "join", str(d), "--out", str(tmp_path / "x.jsonl")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and "hand-labels.jsonl:2:" in err[0] and words in err[0]
    (d / "hand-labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels[:-1]))
    with pytest.raises(SystemExit):
        main(["judge", "join", str(d), "--out", str(tmp_path / "x.jsonl")])
    assert "1 drawn items have no label" in capsys.readouterr().err


def test_class_weight_power_softens_inverse_frequency():
    ex = [UtteranceExample(text="a", history=(), label=0)] * 90 + [UtteranceExample(text="b", history=(), label=1)] * 10
    full, half = class_weights(ex, 2), class_weights(ex, 2, 0.5)
    assert full == pytest.approx([100 / 180, 100 / 20])
    assert half == pytest.approx([w ** 0.5 for w in full]) and half[1] / half[0] == pytest.approx(3.0)
