import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the network (the Ascend pin check that needs PyPI is run by scripts/test.sh).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ warnings out of test output


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture(scope="module")
def tiny_blocks():
    """``(tokenizer, dataset)``: the demo corpus' training part as 16-token blocks, 8 a batch (CPU, PyNative)."""
    from ms_gpt.data import block_dataset, demo_en, encode_lines, train_val_split
    from ms_gpt.environment import device
    from ms_gpt.text import WhitespaceTokenizer

    device.setup("CPU", mode="pynative", seed=0)
    train, _ = train_val_split(demo_en(), 0.1, seed=0)
    tok = WhitespaceTokenizer.build(train)
    return tok, block_dataset(encode_lines(tok, train), 16, 8, seed=0)
