import pytest

from ctrldial.config import DataConfig
from ctrldial.data.corpus import ACTS
from ctrldial.data.template import IGNORE, Template
from ctrldial.errors import UserError

EOS = 50256


def test_first_experiments_layout(gpt2_tok):
    """dialogue ['hi', 'how are you?', 'fine'], acts [inform, question, inform]: the target 'how are you?'."""
    t = Template(gpt2_tok, DataConfig(label_position="first"), list(ACTS), max_positions=1024)
    enc = t.train_ids(("hi",), "question", "how are you?")
    assert gpt2_tok.decode(enc.input_ids) == "question<|endoftext|>hi<|endoftext|>how are you?<|endoftext|>"
    assert enc.input_ids == [25652, EOS, 5303, EOS, 4919, 389, 345, 30, EOS]
    assert enc.labels == [IGNORE] * 4 + [4919, 389, 345, 30, EOS]


def test_before_response_layout(gpt2_tok):
    t = Template(gpt2_tok, DataConfig(label_position="before_response"), list(ACTS), max_positions=1024)
    enc = t.train_ids(("hi", "how are you?"), "inform", "fine")
    assert gpt2_tok.decode(enc.input_ids) == "hi<|endoftext|>how are you?<|endoftext|>inform<|endoftext|>fine<|endoftext|>"
    n_resp = len(gpt2_tok("fine")["input_ids"]) + 1
    assert enc.labels[-n_resp:] == enc.input_ids[-n_resp:] and set(enc.labels[:-n_resp]) == {IGNORE}
    # the prompt used for generation is exactly the training sequence minus the response
    assert t.prompt_ids(("hi", "how are you?"), "inform") == enc.input_ids[:-n_resp]


def test_final_eos_in_loss_even_when_pad_is_eos(gpt2_tok):
    assert gpt2_tok.pad_token_id in (None, EOS)
    t = Template(gpt2_tok, DataConfig(), list(ACTS), max_positions=1024)
    enc = t.train_ids(("hello",), "question", "are you ok?")
    assert enc.labels[-1] == EOS


def test_custom_separator_and_label_words(gpt2_tok):
    cfg = DataConfig(separator="\\n", label_words={"question": "Ask a question:"})
    t = Template(gpt2_tok, cfg, list(ACTS), max_positions=1024)
    ids = t.prompt_ids(("hi there",), "question")
    assert gpt2_tok.decode(ids) == "hi there\nAsk a question:\n"
    enc = t.train_ids(("hi there",), "question", "why?")
    assert enc.input_ids[-1] == EOS  # responses still end with the real eos


def test_special_label_tokens(gpt2_tok):
    from ctrldial.models import gpt2_tokenizer

    tok = gpt2_tokenizer()
    t = Template(tok, DataConfig(label_style="special", label_position="first"), list(ACTS), max_positions=1024)
    ids = t.prompt_ids(("hi",), "commissive")
    assert tok.convert_ids_to_tokens(ids[0]) == "<|commissive|>" and ids[0] >= 50257


def test_left_truncation_whole_utterances(gpt2_tok):
    ctx = ("one two three four five", "six seven eight", "nine ten")
    t = Template(gpt2_tok, DataConfig(label_position="first"), list(ACTS), max_positions=20, num_virtual_tokens=4, max_new_tokens=6)
    ids = t.prompt_ids(ctx, "question")
    assert len(ids) + 4 + 6 <= 20
    text = gpt2_tok.decode(ids)
    assert text.startswith("question<|endoftext|>")  # never the label
    assert text.endswith("nine ten<|endoftext|>")  # the most recent turn survives
    assert "one two" not in text  # the oldest goes first, whole


def test_training_truncation_keeps_response_and_drops_too_long(gpt2_tok):
    t = Template(gpt2_tok, DataConfig(max_length=None), list(ACTS), max_positions=16, num_virtual_tokens=4, max_new_tokens=4)
    enc = t.train_ids(("a b c d e f g", "h i j"), "inform", "ok then")
    assert len(enc.input_ids) + 4 <= 16
    assert gpt2_tok.decode(enc.input_ids).endswith("ok then<|endoftext|>")
    assert t.train_ids(("x",), "inform", " ".join(["word"] * 30)) is None


def test_no_room_is_a_clear_error(gpt2_tok):
    with pytest.raises(UserError, match="max_new_tokens=1000.*num_virtual_tokens=30"):
        Template(gpt2_tok, DataConfig(), list(ACTS), max_positions=1024, num_virtual_tokens=30, max_new_tokens=1000)
