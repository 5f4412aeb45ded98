"""Reranking by a discriminator that is never the judge; sampling and likelihoods in ctrldial's loop."""

import shutil

import pytest
import torch

from ctrldial.cli import main
from ctrldial.config import GenerateConfig, build_config
from ctrldial.errors import UserError
from ctrldial.generate import generate_ids
from ctrldial.guidance import Sampler
from ctrldial.rerank import check_reranker, choose, rerank

PAD = 50256


def _classifier(out, dd_dir, bert, *extra):
    from ctrldial.classifier import train_classifier

    train_classifier(build_config(None, [f"data.path={dd_dir}", f"classifier.model={bert}", "classifier.max_steps=4",
                                         "classifier.eval_every=4", "classifier.max_length=48", "classifier.lr=1e-2", *extra]), out)
    return out


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_bert_shared):
    from pathlib import Path

    dd = Path(__file__).parent / "fixtures" / "dd"
    tmp = tmp_path_factory.mktemp("rerank")
    judge = _classifier(tmp / "judge", dd, tiny_bert_shared)
    other = _classifier(tmp / "valid-split", dd, tiny_bert_shared, "classifier.train_split=validation")
    half = _classifier(tmp / "first-half", dd, tiny_bert_shared, "classifier.train_dialogues=first_half")
    return tmp, judge, other, half


def test_a_reranker_that_is_the_judge_exits_2_with_one_line(tmp_path, dd_dir, capsys):
    clf = tmp_path / "clf"
    with pytest.raises(SystemExit) as e:
        main(["run", "--out", str(tmp_path / "run"), "--set", "model.name=tiny-gpt2", "--set", f"data.path={dd_dir}",
              "--set", f"classifier.path={clf}", "--set", f"generate.rerank_classifier={clf}/", "--set", "generate.num_candidates=4",
              "--set", "generate.do_sample=true"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generate.rerank_classifier is the judge" in err[0]
    assert not (tmp_path / "run").exists()


def test_a_reranker_sharing_the_judges_data_is_refused(judges):
    tmp, judge, other, half = judges
    copy = tmp / "copy"
    shutil.copytree(judge, copy, dirs_exist_ok=True)
    with pytest.raises(UserError, match="fingerprint"):
        check_reranker(copy, judge)  # another folder, the same training data
    with pytest.raises(UserError, match="learned from the judge's dialogues"):
        check_reranker(half, judge)  # half of the judge's dialogues
    info = check_reranker(other, judge)  # the validation split: no dialogue in common
    assert info["train_data"]["split"] == "validation" and info["judge_train_data"]["split"] == "train"


def test_classifier_on_the_validation_split_checks_itself_on_train(judges):
    from ctrldial.classifier import read_metadata

    _, judge, other, _ = judges
    a, b = read_metadata(judge), read_metadata(other)
    assert a["train_data"]["split"] == "train" and b["train_data"]["split"] == "validation"
    assert b["validation_data"]["split"] == "train"
    assert a["train_data"]["fingerprint"] != b["train_data"]["fingerprint"]


@pytest.fixture(scope="module")
def model(varied_gpt2):
    return varied_gpt2


def test_likelihoods_are_the_sum_of_chosen_token_logprobs(model):
    prompts = [[400, 500, 600], [700, 800], [900, 1000, 1100, 1200]]
    lps = []
    cfg = GenerateConfig(max_new_tokens=5, batch_size=2)
    out = generate_ids(model, prompts, cfg, -1, PAD, logprobs=lps)
    assert out == generate_ids(model, prompts, cfg, -1, PAD)  # greedy with likelihoods: the same tokens
    for p, seq, lp in zip(prompts, out, lps):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([p + seq])).logits[0].float().log_softmax(-1)
        by_hand = sum(logits[len(p) - 1 + k, t].item() for k, t in enumerate(seq))
        assert lp == pytest.approx(by_hand, abs=1e-3)


def test_sampler_keeps_top_k_and_top_p_and_is_seeded():
    scores = torch.tensor([[4.0, 3.0, 2.0, -1.0, -2.0]] * 2000)
    drawn = Sampler(1.0, 2, 1.0, seed=0).draw(scores)
    assert set(drawn.tolist()) == {0, 1}  # top-k 2
    probs = scores[0].softmax(-1)
    assert probs[0] < 0.9 < probs[0] + probs[1]
    assert set(Sampler(1.0, 0, 0.9, seed=0).draw(scores).tolist()) == {0, 1}  # the smallest set reaching 0.9
    assert torch.equal(Sampler(0.7, 50, 0.95, seed=3).draw(scores), Sampler(0.7, 50, 0.95, seed=3).draw(scores))


class _Fake:
    """A discriminator whose preference is known: it likes responses containing a given token's text."""

    labels = ["inform", "question", "directive", "commissive"]

    def __init__(self, prefer):
        self.prefer = prefer

    def predict_proba(self, texts, contexts):
        return torch.tensor([[0.25, 0.25, 0.9 if self.prefer(t) else 0.1, 0.1] for t in texts])


def test_rerank_keeps_the_candidate_the_discriminator_likes(model, gpt2_tok, dd_dir):
    import copy

    from ctrldial.data.template import Template
    from ctrldial.loaded import Loaded

    gpt2_tok = copy.deepcopy(gpt2_tok)
    gpt2_tok.pad_token = gpt2_tok.eos_token  # as models.load_tokenizer sets it

    cfg = build_config(None, [f"data.path={dd_dir}", "generate.do_sample=true", "generate.num_candidates=6", "generate.max_new_tokens=4",
                              "generate.rerank_classifier=/nowhere"])
    template = Template(gpt2_tok, cfg.data, _Fake.labels, 1024, 0, 4)
    m = Loaded(cfg, None, gpt2_tok, model, template, _Fake.labels)
    requests = [(("Hello there.",), "directive"), (("Where is it?", "In the box."), "directive")]
    # every candidate, in order: the same draws as rerank makes
    expanded = [r for r in requests for _ in range(6)]
    lps = []
    ids = generate_ids(model, [template.prompt_ids(c, l) for c, l in expanded], cfg.generate, gpt2_tok.eos_token_id, gpt2_tok.pad_token_id,
                       logprobs=lps)
    texts = [t.strip() for t in gpt2_tok.batch_decode(ids, skip_special_tokens=True)]
    assert len(set(texts[:6])) > 1  # sampled candidates differ
    liked = texts[2]
    chosen = rerank(m, requests, _Fake(lambda t: t == liked))
    assert chosen[0] == liked
    # nothing liked: every candidate ties on the discriminator, and the most likely one is kept
    chosen = rerank(m, requests, _Fake(lambda t: False))
    best = [max(range(i * 6, i * 6 + 6), key=lambda j: (bool(texts[j]), lps[j])) for i in range(2)]
    assert chosen == [texts[j] for j in best]


def test_rerank_min_prob_keeps_the_most_fluent_of_the_sure_candidates():
    texts = ["I'll do it.", "Sure, I will bring it tomorrow.", "", "It is raining."]
    probs = [[0.1, 0.1, 0.2, 0.6], [0.0, 0.1, 0.0, 0.9], [0.0, 0.0, 0.0, 1.0], [0.7, 0.1, 0.1, 0.1]]
    logprobs = [-2.0, -5.0, 0.0, -0.5]   # per token: -0.5, -0.625, (empty), -0.25
    lengths = [3, 7, 0, 1]
    col = 3
    assert choose(texts, probs, logprobs, lengths, range(4), col, None) == 1      # the most probable of the act
    assert choose(texts, probs, logprobs, lengths, range(4), col, 0.5) == 0       # the most fluent of the sure ones
    assert choose(texts, probs, logprobs, lengths, range(4), col, 0.95) == 1      # none sure enough: as without it
    assert choose(["", ""], [[0, 0, 0, 1]] * 2, [-1.0, -3.0], [0, 0], range(2), col, 0.5) == 0  # all empty


def test_rerank_avoid_repeats_passes_over_a_looping_candidate():
    texts = ["I'll do it, I'll do it, I'll do it.", "OK, I will bring it.", "", "It is raining."]
    probs = [[0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.7], [0.0, 0.0, 0.0, 1.0], [0.7, 0.1, 0.1, 0.1]]
    logprobs, lengths, col = [-1.0, -4.0, 0.0, -0.5], [12, 6, 0, 4], 3
    assert choose(texts, probs, logprobs, lengths, range(4), col, None) == 0                       # the loop is the most probable
    assert choose(texts, probs, logprobs, lengths, range(4), col, None, avoid_repeats=True) == 1   # the next, without a loop
    assert choose(texts, probs, logprobs, lengths, range(4), col, 0.5, avoid_repeats=True) == 1    # min_prob among the others
    assert choose(texts[:1] + [""], probs[:2], logprobs[:2], lengths[:2], range(2), col, None, avoid_repeats=True) == 0  # all loop


def test_rerank_min_prob_without_reranking_is_a_config_error(dd_dir):
    with pytest.raises(UserError, match="rerank_min_prob needs reranking"):
        build_config(None, [f"data.path={dd_dir}", "generate.rerank_min_prob=0.5"])
    with pytest.raises(UserError, match="rerank_min_prob"):
        build_config(None, [f"data.path={dd_dir}", "generate.rerank_min_prob=1.5"])
    with pytest.raises(UserError, match="rerank_avoid_repeats needs reranking"):
        build_config(None, [f"data.path={dd_dir}", "generate.rerank_avoid_repeats=true"])


def test_a_reranked_eval_record_names_its_reranker_and_code(judges, tmp_path):
    """`ctrldial eval --record` with reranking: the record's reranker is the eval's (the run had none), and the
    eval block says with which code it decoded."""
    import json
    from pathlib import Path

    from ctrldial.evaluation import contexts_of_run
    from ctrldial.record import write_jsonl

    _, judge, other, _ = judges
    run = tmp_path / "run"
    dd = Path(__file__).parent / "fixtures" / "dd"
    main(["run", "--out", str(run), "--set", "model.name=tiny-gpt2", "--set", f"data.path={dd}", "--set", "method.name=zero_shot",
          "--set", "train.tracker=none", "--set", "data.max_eval_examples=2", "--set", "generate.max_new_tokens=4",
          "--set", f"classifier.path={judge}"])
    write_jsonl(tmp_path / "ctx.jsonl", contexts_of_run(run))
    out = tmp_path / "reranked"
    main(["eval", str(run), "--contexts", str(tmp_path / "ctx.jsonl"), "--out", str(out), "--record", "--set", "generate.do_sample=true",
          "--set", "generate.num_candidates=2", "--set", f"generate.rerank_classifier={other}"])
    rec, run_rec = (json.loads((d / "record.json").read_text()) for d in (out, run))
    assert run_rec["reranker"] is None and rec["reranker"]["path"] == str(other)
    assert rec["reranker"]["train_data"]["split"] == "validation"
    assert set(rec["eval"]["git"]) == {"commit", "dirty"} and rec["eval"]["environment"]["device"] == "cpu"
    assert rec["git"] == run_rec["git"]  # the training's code stays the run's
