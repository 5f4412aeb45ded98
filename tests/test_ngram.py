"""The second judge: a hashed n-gram linear classifier trained on the fixture dialogues, saved, reloaded, evaluated."""

import json
import os
import subprocess
import sys

import pytest

from ctrldial.classifier import (
    METADATA_FILE, NgramScorer, Scorer, classification_metrics, make_ensemble, read_metadata, train_classifier,
)
from ctrldial.classifier import ngram
from ctrldial.classifier.data import fingerprint, utterance_examples
from ctrldial.cli import main
from ctrldial.config import build_config
from ctrldial.data.corpus import ACTS, load_corpus
from ctrldial.data.normalize import normalize_text
from ctrldial.errors import UserError


def ngram_cfg(dd_dir, *extra):
    # lr 2e-2, 8 epochs of batch 16: enough for 64 utterances (the real corpus takes the DEFAULTS)
    return build_config(None, [
        f"data.path={dd_dir}", "classifier.model=ngram", "classifier.lr=2e-2", "classifier.batch_size=16",
        "classifier.epochs=8", *extra,
    ])


@pytest.fixture
def trained(tmp_path, dd_dir):
    cfg = ngram_cfg(dd_dir, "classifier.context=previous")
    out = tmp_path / "ngram"
    return cfg, out, train_classifier(cfg, out)


def examples(dd_dir, split):
    return utterance_examples(load_corpus(str(dd_dir)), split, "act", normalize=False)


# -- features -----------------------------------------------------------------------------------------
def test_features_name_words_bigrams_char_grams_and_flags():
    b = lambda f: ngram._bucket(f, ngram.BUCKETS)  # noqa: E731
    ids = set(ngram.utterance_features("Are you OK?"))
    for f in ("w:are", "w:ok", "w:?", "b:you ok", "c:<ar", "c:<are>", "c:ok>", "q:", "f:are"):
        assert b(f) in ids, f
    assert b("c:<?>") not in ids  # no character n-grams of punctuation marks
    assert not {b("p:are"), b("p0:"), b("pq:")} & ids  # no context features without context
    assert ngram.utterance_features("Are you OK?") == ngram.utterance_features("are YOU ok?")  # lower-cased
    first, after_question = set(ngram.utterance_features("Fine.", "")), set(ngram.utterance_features("Fine.", "How are you?"))
    assert b("p0:") in first and {b("p:how"), b("pq:")} <= after_question and b("w:how") not in after_question


def test_hashing_is_stable_across_processes():
    code = "from ctrldial.classifier.ngram import utterance_features as f; print(f(\"I'd love to, thanks!\", 'Shall we dance?'))"
    here = ngram.utterance_features("I'd love to, thanks!", "Shall we dance?")
    for seed in ("1", "2"):  # Python's own hash() of the same strings differs between these two processes
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == here


def test_hyperparameters_default_only_where_left_at_minilm_values(dd_dir):
    assert ngram.hyperparameters(build_config(None, ["classifier.model=ngram"]).classifier) == ngram.DEFAULTS
    hp = ngram.hyperparameters(ngram_cfg(dd_dir).classifier)
    assert hp == {"lr": 2e-2, "batch_size": 16, "epochs": 8.0}


# -- train, save, reload ------------------------------------------------------------------------------
def test_trains_and_saves_weights_and_metadata(trained, tmp_path, dd_dir):
    cfg, out, result = trained
    assert sorted(p.name for p in out.iterdir()) == [METADATA_FILE, ngram.WEIGHTS_FILE]  # no staging, no pickle
    meta = read_metadata(out)
    assert meta == json.loads(json.dumps({k: v for k, v in result.items() if k != "out"}))
    # every key a MiniLM folder has (train.py), plus the kind and its features
    for key in ("attribute", "labels", "input", "context_turns", "max_length", "normalize", "train_data",
                "validation_data", "train_config", "validation_metrics", "history", "base_model", "class_weights"):
        assert key in meta, key
    assert (meta["kind"], meta["input"], meta["context_turns"], meta["labels"]) == ("ngram", "previous", 1, list(ACTS))
    assert meta["features"] == ngram.FEATURES and meta["hyperparameters"]["lr"] == 2e-2
    train = utterance_examples(load_corpus(str(dd_dir)), "train", "act", normalize=True)
    assert meta["train_data"]["fingerprint"] == fingerprint(train, list(ACTS), 1)
    assert meta["validation_metrics"]["step"] in [h["step"] for h in meta["history"]]
    assert len(meta["history"]) == 8  # one validation per epoch


def test_reloaded_classifier_gives_the_saved_probabilities(trained, dd_dir):
    import torch
    from safetensors.torch import load_file

    _, out, result = trained
    scorer = Scorer.load(out, attribute="act")
    assert isinstance(scorer, NgramScorer) and scorer.labels == list(ACTS)
    valid = examples(dd_dir, "validation")
    texts, contexts = [ex.text for ex in valid], [list(ex.history) for ex in valid]
    probs = scorer.predict_proba(texts, contexts)
    assert torch.equal(probs, Scorer.load(out).predict_proba(texts, contexts))
    # the validation confusion was computed in memory from the best epoch's state: the saved one agrees
    again = classification_metrics([ex.label for ex in valid], probs.argmax(-1).tolist(), scorer.labels)
    assert again["confusion"] == result["validation_metrics"]["confusion"]
    # and the saved tensors are the whole model: row sums plus bias, by hand
    state = load_file(str(out / ngram.WEIGHTS_FILE))
    for i in (0, 5):
        ids = ngram.utterance_features(normalize_text(texts[i]), normalize_text(valid[i].previous))
        by_hand = (state["bag.weight"][ids].sum(0) + state["bias"]).softmax(-1)
        assert torch.allclose(by_hand, probs[i], atol=1e-6)


def test_it_learns(trained, dd_dir):
    _, out, result = trained
    scorer = Scorer.load(out)
    train = examples(dd_dir, "train")
    pred = scorer.predict_proba([ex.text for ex in train], [list(ex.history) for ex in train]).argmax(-1).tolist()
    assert sum(p == ex.label for p, ex in zip(pred, train)) / len(train) > 0.95  # it fits its training set
    valid = examples(dd_dir, "validation")
    majority = max(sum(ex.label == k for ex in valid) for k in range(4)) / len(valid)
    assert result["validation_metrics"]["accuracy"] > majority + 0.1


def test_context_changes_predictions_and_is_required(trained):
    scorer = Scorer.load(trained[1])
    texts = ["Sure."] * 3
    probs = scorer.predict_proba(texts, [[], ["Could you pass the salt?"], "Could you pass the salt?"])
    assert not probs[0].equal(probs[1])
    assert probs[1].equal(probs[2])  # a string context is the previous utterance, as for Scorer
    assert scorer.predict_proba(texts[:1], [["Hello.", "Could you pass the salt?"]]).equal(probs[1:2])  # last turn only
    with pytest.raises(UserError, match="context=previous: pass contexts"):
        scorer.predict_proba(texts)
    labels, conf = scorer.score(texts, [[]] * 3)
    assert all(label in ACTS for label in labels) and all(0 < c <= 1 for c in conf)
    assert scorer.score([], []) == ([], [])


def test_without_context_the_utterance_alone_is_read(tmp_path, dd_dir):
    out = tmp_path / "utt"
    train_classifier(ngram_cfg(dd_dir, "classifier.epochs=2"), out)
    scorer = Scorer.load(out)
    assert (scorer.input, scorer.context_turns) == ("none", 0)
    assert scorer.predict_proba(["Sure."]).equal(scorer.predict_proba(["Sure."], ["Could you pass the salt?"]))


def test_training_knobs_are_honoured(tmp_path, dd_dir):
    cfg = ngram_cfg(dd_dir, "data.max_train_examples=20", "classifier.class_weights=true", "classifier.label_smoothing=0.1",
                    "classifier.max_steps=3", "classifier.train_dialogues=first_half")
    meta = train_classifier(cfg, tmp_path / "k")
    assert meta["train_data"]["utterances"] == 20 and meta["train_data"]["dialogues"] == "first_half"
    assert meta["steps"] == 3 and meta["history"][-1]["step"] == 3 and len(meta["class_weights"]) == 4
    assert meta["train_config"]["classifier"]["label_smoothing"] == 0.1


def test_refusals(trained, tmp_path, dd_dir):
    cfg, out, _ = trained
    with pytest.raises(UserError, match="already holds a classifier"):
        train_classifier(cfg, out)
    with pytest.raises(UserError, match="reads only the previous utterance"):
        train_classifier(ngram_cfg(dd_dir, "classifier.context=previous", "classifier.context_turns=2"), tmp_path / "x")
    with pytest.raises(UserError, match="judges attribute 'act'"):
        Scorer.load(out, attribute="emotion")
    (out / ngram.WEIGHTS_FILE).rename(tmp_path / "moved")
    with pytest.raises(UserError, match=f"not a ctrldial classifier: .*no {ngram.WEIGHTS_FILE}"):
        read_metadata(out)


# -- eval and ensembles -------------------------------------------------------------------------------
def test_classifier_eval_cli(trained, tmp_path, dd_dir):
    _, out, _ = trained
    main(["classifier", "eval", str(out), "--out", str(tmp_path / "ev"), "--set", f"data.path={dd_dir}"])
    res = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert res["input"] == "previous" and (tmp_path / "ev" / "confusion.png").is_file()
    assert 0 <= res["accuracy"] <= 1 and sum(map(sum, res["confusion"])) == len(examples(dd_dir, "test"))


def test_ensemble_of_ngram_judges_averages(trained, tmp_path, dd_dir):
    _, out, _ = trained
    other = tmp_path / "seed1"
    train_classifier(ngram_cfg(dd_dir, "classifier.context=previous", "classifier.seed=1", "classifier.epochs=3"), other)
    make_ensemble([out, other], tmp_path / "ens")
    ens = Scorer.load(tmp_path / "ens", "act")
    texts, contexts = ["Sure.", "What time is it?"], [["Could you pass the salt?"], []]
    mean = (Scorer.load(out).predict_proba(texts, contexts) + Scorer.load(other).predict_proba(texts, contexts)) / 2
    assert ens.predict_proba(texts, contexts).allclose(mean)
