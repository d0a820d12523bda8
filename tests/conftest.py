"""Shared fixtures. Real corpora come from $LMTIE_DATA_DIR (CI: ../shared/data)."""

import os
import random
from pathlib import Path

import pytest
import torch

from lmtie import data
from lmtie.reference import PHRASES

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


def write_tiny_ptb(root: Path) -> dict:
    """Write a small PTB-layout corpus under ``root/ptb/`` whose vocabulary covers the paper's
    four phrases; returns its ``data.EXPECTED["ptb"]`` entry (token counts, no sha256)."""
    words = sorted({w for p in PHRASES for w in p["context"].split()} | {"<unk>", "N"})
    rng = random.Random(0)
    (root / "ptb").mkdir(parents=True)
    counts = {}
    for split, n_lines in (("train", 120), ("valid", 15), ("test", 15)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
                 for _ in range(n_lines)]
        if split == "train":
            lines.append(" ".join(words))  # every word appears in train
        text = "\n".join(lines) + "\n"
        (root / "ptb" / f"ptb.{split}.txt").write_text(text)
        counts[split] = len(data.tokenize(text))
    return {"tokens": counts, "vocab_size": len(words) + 1, "sha256": None}


@pytest.fixture
def tiny_ptb(tmp_path, monkeypatch):
    """A small PTB-layout corpus whose vocabulary covers the paper's four phrases."""
    root = tmp_path / "data"
    monkeypatch.setitem(data.EXPECTED, "ptb", write_tiny_ptb(root))
    return root
