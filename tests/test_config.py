import pytest

from ctrldial.config import Config, build_config, load_config_dict, valid_keys
from ctrldial.errors import UserError


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  max_context_turns: 2\ntrain:\n  lr: 1e-3\nmethod:\n  target_modules: [q_proj, v_proj]\n")
    cfg = build_config([f], ["data.max_context_turns=4", "data.dedup=false", "train.max_steps=null", "data.label_words={question: 'Ask:'}"])
    assert cfg.data.max_context_turns == 4  # --set wins over the file
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.data.dedup is False
    assert cfg.train.max_steps is None
    assert cfg.method.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.label_words == {"question": "Ask:"}


def test_every_problem_in_one_message():
    with pytest.raises(UserError) as e:
        build_config(None, ["data.bogus=1", "train.batch_size=x", "data.attribute=tone"])
    msg = str(e.value)
    assert "unknown key 'data.bogus'" in msg
    assert "train.batch_size: expected an integer" in msg
    assert "data.attribute: expected one of act, emotion, act+emotion" in msg
    assert "valid keys:" in msg and "data.max_context_turns" in msg


def test_value_checks_collected():
    with pytest.raises(UserError) as e:
        build_config(None, ["train.batch_size=0", "train.lr=-1", "method.name=nope"])
    msg = str(e.value)
    assert "train.batch_size must be > 0" in msg and "train.lr must be > 0" in msg and "unknown method 'nope'" in msg


def test_unknown_section_in_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataa:\n  path: x\n")
    with pytest.raises(UserError, match="unknown key 'dataa.path'.*from .*c.yaml"):
        build_config([f])


def test_round_trip_and_fingerprint():
    cfg = build_config(None, ["method.name=prefix", "data.max_train_examples=100"])
    again = load_config_dict(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert cfg.fingerprint() != Config().fingerprint()


def test_required_keys_exist():
    keys = set(valid_keys())
    for k in ["data.path", "data.attribute", "data.max_context_turns", "data.max_train_examples", "data.max_eval_examples", "data.dedup", "data.normalize"]:
        assert k in keys
