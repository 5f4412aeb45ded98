"""The judge: a tiny random BERT fine-tuned on the fixture dialogues, saved, reloaded, evaluated and scored."""

import json
import random
import re

import pytest

from ctrldial.classifier import METADATA_FILE, Scorer, classification_metrics, evaluate_classifier, read_metadata, train_classifier
from ctrldial.batching import shuffled_batches
from ctrldial.classifier.data import encode, fingerprint, pad_batch, utterance_examples
from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.data.corpus import ACTS, Corpus, load_corpus
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two threads wait on each other
    at every op (measured: 39 s instead of 5 s for one training test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(dd_dir, model, *extra):
    return build_config(None, [
        f"data.path={dd_dir}", f"classifier.model={model}", "classifier.lr=1e-2", "classifier.batch_size=8",
        "classifier.max_steps=40", "classifier.eval_every=10", "classifier.max_length=48", "classifier.warmup_ratio=0.1",
        *extra,
    ])


@pytest.fixture
def trained(tmp_path, dd_dir, tiny_bert):
    cfg = tiny_cfg(dd_dir, tiny_bert)
    out = tmp_path / "clf"
    return cfg, out, train_classifier(cfg, out)


# -- metrics ----------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    gold = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    pred = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
    m = classification_metrics(gold, pred, ["a", "b", "c", "d"])
    assert m["confusion"] == [[2, 1, 1, 0], [1, 2, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.6)
    # a: P 2/3, R 2/4; b: P 2/4, R 2/3; c: P 2/3, R 2/3; d never occurs and stays out of the macro average
    expected = {"a": (2 / 3, 1 / 2, 4 / 7, 4), "b": (1 / 2, 2 / 3, 4 / 7, 3), "c": (2 / 3, 2 / 3, 2 / 3, 3), "d": (0, 0, 0, 0)}
    for name, (p, r, f1, support) in expected.items():
        c = m["per_class"][name]
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((p, r, f1, support))
    assert m["macro_f1"] == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)


def test_metrics_never_predicted_class_counts_as_zero():
    m = classification_metrics([0, 1], [0, 0], ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


# -- data -------------------------------------------------------------------------------------------
def test_every_utterance_is_an_example(dd_dir):
    corpus = load_corpus(str(dd_dir))
    examples = utterance_examples(corpus, "train", "act", normalize=True)
    assert len(examples) == sum(len(d.utterances) for d in corpus.splits["train"])
    first = corpus.splits["train"][0]
    assert examples[0].previous == "" and examples[1].previous == normalize_text(first.utterances[0])
    assert [ex.label for ex in examples[: len(first.acts)]] == first.acts


def test_length_grouped_batches_cover_each_example_once():
    lengths = [random.Random(1).randint(1, 50) for _ in range(103)]
    batches = shuffled_batches(lengths, 8, random.Random(0), group_batches=4, longest_first=False)
    assert sorted(i for b in batches for i in b) == list(range(103))
    batch = pad_batch([{"input_ids": [5, 6, 7]}, {"input_ids": [5]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [3, 1]


# -- train, save, reload ----------------------------------------------------------------------------
def test_training_lowers_loss_and_saves_a_model_folder(trained):
    _, out, result = trained
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.8
    for name in ("config.json", "model.safetensors", "tokenizer.json", METADATA_FILE):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging files left behind"


def test_reloaded_classifier_predicts_as_right_after_training(trained, dd_dir):
    _, out, result = trained
    scorer = Scorer.load(out, attribute="act")
    valid = utterance_examples(load_corpus(str(dd_dir)), "validation", "act", normalize=False)
    pred = scorer.predict_proba([ex.text for ex in valid]).argmax(-1).tolist()
    again = classification_metrics([ex.label for ex in valid], pred, scorer.labels)
    # the validation confusion was computed in memory from the kept best state; the saved one must agree exactly
    assert again["confusion"] == result["validation_metrics"]["confusion"]


def test_metadata_round_trips(trained, dd_dir):
    cfg, out, result = trained
    meta = read_metadata(out)
    assert meta == json.loads(json.dumps({k: v for k, v in result.items() if k != "out"}))
    assert (meta["attribute"], meta["labels"], meta["input"], meta["max_length"]) == ("act", list(ACTS), "none", 48)
    assert meta["base_model"] == cfg.classifier.model and meta["train_config"]["classifier"]["lr"] == 1e-2
    train = utterance_examples(load_corpus(str(dd_dir)), "train", "act", normalize=True)
    assert meta["train_data"]["fingerprint"] == fingerprint(train, list(ACTS))
    assert meta["validation_metrics"]["step"] in [h["step"] for h in meta["history"]]
    assert meta["wall_time_s"] > 0


def test_score_keeps_input_order(trained):
    scorer = Scorer.load(trained[1])
    texts = ["Did you hear the forecast?", "I will.", "Take a warm coat if you go out, it is really cold today.", "Thanks."]
    labels, conf = scorer.score(texts, batch_size=3)
    one_by_one = [scorer.score([t])[0][0] for t in texts]
    assert labels == one_by_one and all(label in ACTS for label in labels)
    assert all(0 < c <= 1 for c in conf)
    assert scorer.score([]) == ([], [])


def test_refuses_to_overwrite_a_classifier(trained):
    cfg, out, _ = trained
    with pytest.raises(UserError, match="already holds a classifier.*--overwrite"):
        train_classifier(cfg, out)


# -- evaluation -------------------------------------------------------------------------------------
def test_eval_writes_metrics_and_heat_map(trained, tmp_path):
    cfg, out, _ = trained
    res = evaluate_classifier(out, cfg, out=tmp_path / "ev")
    on_disk = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert on_disk["accuracy"] == res["accuracy"]
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    confusion = res["confusion"]
    assert sum(map(sum, confusion)) == res["n"] == sum(c["support"] for c in res["per_class"].values())
    assert res["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(len(ACTS))) / res["n"])


def test_cli_train_and_eval_end_to_end(tmp_path, dd_dir, tiny_bert, capsys):
    sets = [x for kv in [f"data.path={dd_dir}", f"classifier.model={tiny_bert}", "classifier.max_steps=4",
                         "classifier.batch_size=8", "classifier.context=previous"] for x in ("--set", kv)]
    main(["classifier", "train", "--out", str(tmp_path / "clf"), *sets])
    capsys.readouterr()
    main(["classifier", "eval", str(tmp_path / "clf"), *sets])
    printed = capsys.readouterr().out
    assert "commissive" in printed and (tmp_path / "clf" / "eval.json").is_file()
    assert set(json.loads(printed[printed.rindex("{"):])) == {"accuracy", "macro_f1"}


# -- context=previous and bad input -----------------------------------------------------------------
def test_context_classifier_needs_contexts(tmp_path, dd_dir, tiny_bert):
    out = tmp_path / "ctx"
    train_classifier(tiny_cfg(dd_dir, tiny_bert, "classifier.context=previous", "classifier.max_steps=4"), out)
    scorer = Scorer.load(out)
    assert scorer.input == "previous"
    with pytest.raises(UserError, match="context=previous"):
        scorer.score(["I will."])
    labels, conf = scorer.score(["I will.", "Hello."], contexts=["Take a coat.", ""])
    assert len(labels) == len(conf) == 2


def test_encode_one_turn_is_the_plain_pair_and_more_turns_drop_the_oldest_first(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    texts, turns = ["I will."], ["Good morning.", "Did you hear the forecast?", "Take a coat."]
    one = encode(tok, texts, [turns[-1:]], 48)[0]
    assert one == {k: tok("Take a coat.", "I will.")[k] for k in one}  # what every context=previous judge was fed
    assert encode(tok, texts, [[]], 48)[0]["input_ids"] == tok("", "I will.")["input_ids"]
    three = tok.decode(encode(tok, texts, [turns], 48)[0]["input_ids"])
    assert three == "[CLS] good morning. [SEP] did you hear the forecast? [SEP] take a coat. [SEP] i will. [SEP]"
    # 17 tokens: [CLS] + 11 (two turns and a separator) + [SEP] + 3 + [SEP]; "good morning. [SEP]" (4 more) no longer fits
    cut = encode(tok, texts, [turns], 17)[0]["input_ids"]
    assert tok.decode(cut) == "[CLS] did you hear the forecast? [SEP] take a coat. [SEP] i will. [SEP]" and len(cut) == 17
    # the turn just before the utterance always stays; longest_first trims what still does not fit
    assert tok.decode(encode(tok, texts, [turns], 8)[0]["input_ids"]) == "[CLS] take a coat [SEP] i will [SEP]"


def test_context_turns_classifier_reads_its_last_turns(tmp_path, dd_dir, tiny_bert):
    out = tmp_path / "ctx2"
    cfg = tiny_cfg(dd_dir, tiny_bert, "classifier.context=previous", "classifier.context_turns=2", "classifier.max_steps=4")
    meta = train_classifier(cfg, out)
    train = utterance_examples(load_corpus(str(dd_dir)), "train", "act", normalize=True)
    assert meta["context_turns"] == 2 and meta["train_data"]["fingerprint"] == fingerprint(train, list(ACTS), 2)
    assert fingerprint(train, list(ACTS), 2) != fingerprint(train, list(ACTS), 1)
    scorer = Scorer.load(out)
    assert scorer.context_turns == 2
    texts = ["I will.", "Thanks.", "Good morning."]
    history = [["Good morning.", "Did you hear the forecast?", "Take a coat."], ["Can you help me?"], []]
    p = scorer.predict_proba(texts, history)
    # older turns than the last two are not read; a string is the previous utterance alone
    assert p.allclose(scorer.predict_proba(texts, [h[-2:] for h in history]))
    assert p[1:].allclose(scorer.predict_proba(texts[1:], ["Can you help me?", ""]))
    assert not p[0].allclose(scorer.predict_proba(texts[:1], [history[0][-1:]])[0])


def test_label_mismatch_names_folder_and_attributes(trained):
    out = trained[1]
    with pytest.raises(UserError, match=rf"{re.escape(str(out))}.*'act'.*'emotion'"):
        Scorer.load(out, attribute="emotion")
    meta = json.loads((out / METADATA_FILE).read_text())
    meta["labels"] = list(reversed(meta["labels"]))
    (out / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="labels .* do not match"):
        Scorer.load(out, attribute="act")


def test_a_plain_model_folder_is_not_a_classifier(tiny_bert, trained):
    with pytest.raises(UserError, match="not a ctrldial classifier: .*has no ctrldial_classifier.json"):
        Scorer.load(tiny_bert)
    (tiny_bert / METADATA_FILE).write_text((trained[1] / METADATA_FILE).read_text())
    with pytest.raises(UserError, match="not a ctrldial classifier: .*not a sequence classifier"):
        Scorer.load(tiny_bert)


def test_one_attribute_per_classifier(tmp_path, dd_dir, tiny_bert):
    with pytest.raises(UserError, match="one attribute.*data.attribute=act"):
        train_classifier(tiny_cfg(dd_dir, tiny_bert, "data.attribute=act+emotion"), tmp_path / "x")


def test_cli_reports_bad_attribute_in_one_line(tmp_path, dd_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["classifier", "train", "--out", str(tmp_path / "x"), "--set", f"data.path={dd_dir}", "--set", "data.attribute=act+emotion"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctrldial: error: data.attribute=act+emotion") and "\n" not in err


def test_empty_training_set_is_a_user_error(tmp_path, dd_dir, tiny_bert, monkeypatch):
    real = load_corpus(str(dd_dir))
    empty = Corpus({**real.splits, "train": []}, real.source)
    monkeypatch.setattr("ctrldial.data.corpus.load_corpus", lambda *a, **k: empty)
    with pytest.raises(UserError, match="train split has no utterances"):
        train_classifier(tiny_cfg(dd_dir, tiny_bert), tmp_path / "x")


def test_emotion_classifier_with_class_weights(tmp_path, dd_dir, tiny_bert):
    cfg = tiny_cfg(dd_dir, tiny_bert, "data.attribute=emotion", "classifier.class_weights=true", "classifier.max_steps=4")
    meta = train_classifier(cfg, tmp_path / "emo")
    assert meta["labels"][0] == "no_emotion" and len(meta["class_weights"]) == 7
    assert Scorer.load(tmp_path / "emo", attribute="emotion").labels == meta["labels"]


def test_label_smoothing_caps_the_confidence_it_trains_towards(tmp_path, dd_dir, tiny_bert):
    """With smoothing 0.5 over 4 acts the loss is lowest at 0.625 on the gold act; unsmoothed it wants 1.0."""
    texts = [ex.text for ex in utterance_examples(load_corpus(str(dd_dir)), "train", "act", normalize=True)]
    confidence = {}
    for smoothing in (0.0, 0.5):  # long enough to fit the fixture; one validation at the end keeps the last state
        cfg = tiny_cfg(dd_dir, tiny_bert, f"classifier.label_smoothing={smoothing}", "classifier.max_steps=300",
                       "classifier.eval_every=300")
        train_classifier(cfg, tmp_path / str(smoothing))
        probs = Scorer.load(tmp_path / str(smoothing)).predict_proba(texts)
        confidence[smoothing] = probs.max(-1).values.mean().item()
    assert confidence[0.0] > 0.75 and confidence[0.5] < 0.66, confidence
    assert read_metadata(tmp_path / "0.5")["train_config"]["classifier"]["label_smoothing"] == 0.5


# -- ensembles --------------------------------------------------------------------------------------
def test_ensemble_is_the_mean_of_its_members_each_reading_its_own_input(tmp_path, dd_dir, tiny_bert, trained, capsys):
    cfg, utt, _ = trained
    ctx = tmp_path / "ctx2"
    train_classifier(tiny_cfg(dd_dir, tiny_bert, "classifier.context=previous", "classifier.context_turns=2",
                              "classifier.max_steps=6", "classifier.seed=1"), ctx)
    main(["classifier", "ensemble", str(utt), str(ctx), "--out", str(tmp_path / "ens")])
    ens = Scorer.load(tmp_path / "ens", attribute="act")
    assert ens.input == "previous" and ens.context_turns == 2 and len(ens.members) == 2
    assert [m.path.parent.name for m in ens.members] == ["members", "members"]  # copies: the folder stands alone
    texts, history = ["I will.", "Good morning."], [["Did you hear the forecast?", "Take a coat."], []]
    mean = (Scorer.load(utt).predict_proba(texts) + Scorer.load(ctx).predict_proba(texts, history)) / 2
    assert ens.predict_proba(texts, history).allclose(mean)
    with pytest.raises(UserError, match="pass contexts"):
        ens.score(texts)
    res = evaluate_classifier(tmp_path / "ens", cfg)
    assert res["input"] == "previous" and (tmp_path / "ens" / "eval.json").is_file()
    from ctrldial.bench import _score_both

    with pytest.raises(UserError, match="is an ensemble.*members/0"):  # the pipeline comparison needs one model folder
        _score_both(tmp_path / "ens", "act", texts, repeats=1)


def test_ensemble_bad_members_are_one_line_errors(tmp_path, dd_dir, tiny_bert, trained, capsys):
    utt = trained[1]
    emo = tmp_path / "emo"
    train_classifier(tiny_cfg(dd_dir, tiny_bert, "data.attribute=emotion", "classifier.max_steps=2"), emo)
    cases = [
        ([str(utt)], "at least 2 classifier folders"),
        ([str(utt), str(tiny_bert)], "not a ctrldial classifier"),
        ([str(utt), str(emo)], "judge the same labels"),
    ]
    capsys.readouterr()
    for members, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["classifier", "ensemble", *members, "--out", str(tmp_path / "e")])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and message in err and "\n" not in err
    main(["classifier", "ensemble", str(utt), str(utt), "--out", str(tmp_path / "e")])
    with pytest.raises(UserError, match="already an ensemble"):
        from ctrldial.classifier import make_ensemble

        make_ensemble([tmp_path / "e", utt], tmp_path / "e2")
    with pytest.raises(UserError, match="already holds a classifier"):
        make_ensemble([utt, utt], tmp_path / "e")


def test_dialogue_halves_are_disjoint_and_cover_the_split(dd_dir):
    from ctrldial.classifier.data import dialogue_half
    from ctrldial.data.corpus import load_corpus

    train = load_corpus(str(dd_dir)).splits["train"]
    first, second = dialogue_half(train, "first_half"), dialogue_half(train, "second_half")
    assert first and second and first + second == train and not {id(d) for d in first} & {id(d) for d in second}


def test_extra_train_adds_hand_labelled_responses(tmp_path, dd_dir, tiny_bert):
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"context": ["Can you help me?"], "response": "Sure, I will.", "label": "commissive"}\n'
                     '{"context": [], "response": "Close the door.", "label": "directive"}\n')
    plain = train_classifier(tiny_cfg(dd_dir, tiny_bert, "classifier.max_steps=2"), tmp_path / "a")
    more = train_classifier(tiny_cfg(dd_dir, tiny_bert, "classifier.max_steps=2", f"classifier.extra_train={extra}",
                                     "classifier.extra_repeats=3", "classifier.train_dialogues=first_half"), tmp_path / "b")
    assert more["train_data"]["extra_train"] == {"path": str(extra), "examples": 2, "repeats": 3}
    assert more["train_data"]["dialogues"] == "first_half" and more["train_data"]["available"] < plain["train_data"]["available"]
    assert more["train_data"]["fingerprint"] != plain["train_data"]["fingerprint"]
    with pytest.raises(UserError, match=r"extra.jsonl:2: `label` 'shout'"):
        extra.write_text('{"context": [], "response": "Hi.", "label": "inform"}\n{"context": [], "response": "Hi.", "label": "shout"}\n')
        train_classifier(tiny_cfg(dd_dir, tiny_bert, "classifier.max_steps=2", f"classifier.extra_train={extra}"), tmp_path / "c")
