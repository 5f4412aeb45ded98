import os
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
def gpt2_tok():
    from ctrldial.models import gpt2_tokenizer

    return gpt2_tokenizer()
