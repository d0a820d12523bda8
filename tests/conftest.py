"""Shared fixtures. Real corpora come from $LMTIE_DATA_DIR (CI: ../shared/data)."""

import os
from pathlib import Path

import pytest
import torch

# Tests are small: one thread is faster than two fighting over a busy machine, and makes
# float reductions reproducible.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root folder of the real corpora; skips the test when $LMTIE_DATA_DIR is unset/missing."""
    value = os.environ.get("LMTIE_DATA_DIR")
    if not value:
        pytest.skip("LMTIE_DATA_DIR is not set (point it at the corpora, e.g. ../shared/data)")
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        pytest.skip(f"LMTIE_DATA_DIR={value} is not a folder")
    return path
