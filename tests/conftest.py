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
