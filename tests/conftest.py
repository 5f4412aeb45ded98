import os
import re
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    # one shared cache per test session (tiny models, tokenizer files); never the user's ~/.cache
    os.environ.setdefault("CTRLDIAL_CACHE", str(tmp_path_factory.mktemp("ctrldial-cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # tiny models gain nothing from a second thread, and lose a lot when another process holds a core
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def dd_dir() -> Path:
    """Small hand-written dialogues in the DailyDialog layout (not copied from the corpus)."""
    return FIXTURES / "dd"


@pytest.fixture
def dd_copy(tmp_path, dd_dir) -> Path:
    """A writable copy of the fixture corpus, for corruption tests."""
    dst = tmp_path / "dd"
    shutil.copytree(dd_dir, dst)
    return dst


@pytest.fixture(scope="session")
def varied_gpt2():
    """tiny-gpt2 in fp32, eval mode, with its weight matrices scaled up: the random model otherwise repeats one
    token forever, and a varied output is needed to find an eos that rows reach at different steps. Shared: do
    not modify it."""
    import torch

    from ctrldial.config import ModelConfig
    from ctrldial.models import load_model

    m = load_model(ModelConfig(name="tiny-gpt2")).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(6.0)
    return m


@pytest.fixture(scope="session")
def random_adapter():
    """``random_adapter(method)``: tiny-gpt2 with a random-looking (nonzero) adapter of ``method`` (prefix, prompt, LoRA …)."""
    import torch

    from ctrldial.config import MethodConfig, ModelConfig
    from ctrldial.methods import get_method
    from ctrldial.models import load_model

    def build(method: str):
        base = load_model(ModelConfig(name="tiny-gpt2")).eval()
        cfg = MethodConfig(name=method, num_virtual_tokens=3, prompt_init="random")
        torch.manual_seed(0)
        model = get_method(method).build(base, cfg, {"tokenizer_path": None, "total_steps": 10}).eval()
        with torch.no_grad():  # a trained-looking adapter: nonzero everywhere
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.5)
        return model

    return build


@pytest.fixture(scope="session")
def gpt2_tok():
    from ctrldial.models import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture
def tiny_bert(tmp_path, dd_dir):
    """A random 2-layer, 32-wide BERT whose WordPiece vocab is every word of the fixture corpus."""
    return make_tiny_bert(tmp_path, dd_dir)


@pytest.fixture(scope="session")
def tiny_bert_shared(tmp_path_factory):
    """``tiny_bert`` once per session, for module-scoped fixtures (do not modify it)."""
    return make_tiny_bert(tmp_path_factory.mktemp("shared-bert"), FIXTURES / "dd")


def make_tiny_bert(tmp_path: Path, dd_dir: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from ctrldial.data.normalize import normalize_text

    words = set()
    for f in dd_dir.glob("*/dialogues_*.txt"):
        if "_act_" not in f.name and "_emotion_" not in f.name:
            words |= set(re.findall(r"\w+|[^\w\s]", normalize_text(f.read_text(encoding="utf-8")).lower()))
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]) + "\n")
    # from_pretrained(folder): BertTokenizerFast(vocab_file=...) silently builds a 5-token vocab in transformers 5
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    assert tokenizer.unk_token_id not in tokenizer("Did you hear the forecast?")["input_ids"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
