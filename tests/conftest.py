"""Shared fixtures. Real corpora come from $LMTIE_DATA_DIR (CI: ../shared/data), else from
./data, where Penn Treebank is downloaded when missing (as `make smoke` does)."""

import contextlib
import io
import random
import time
from dataclasses import dataclass
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
    """Root folder of the real corpora (``lmtie.data.resolve_data_dir``: $LMTIE_DATA_DIR, else
    ./data), with PTB downloaded into it first when missing; without network the test errors
    with the message of ``lmtie data download`` (how to get the corpus by hand)."""
    from lmtie import pipeline

    path = data.resolve_data_dir()
    pipeline.ensure_corpora({"ptb"}, path)
    return path


@dataclass(frozen=True)
class SmokeRun:
    """The session's smoke pipeline: its results root, report, checkpoints, wall time (s) and
    what it printed."""

    results: Path
    report: Path
    checkpoints: Path
    wall_s: float
    console: str


@pytest.fixture(scope="session")
def smoke(data_dir, tmp_path_factory) -> SmokeRun:
    """``lmtie reproduce --preset smoke --jobs 2`` once per session, on real PTB, for every
    test that needs its files (the end-to-end test, the browser test)."""
    from lmtie import pipeline

    root = tmp_path_factory.mktemp("smoke")
    console = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(console):
        html = pipeline.reproduce("smoke", jobs=2, data_dir=data_dir,
                                  results_dir=root / "smoke", checkpoint_root=root / "checkpoints")
    return SmokeRun(root / "smoke", html, root / "checkpoints", time.perf_counter() - start,
                    console.getvalue())


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


@pytest.fixture
def batch():
    """Logits W h (N, V), targets (N,) with repeats, and Lᵀ (V, D): N = 12, V = 30, D = 8."""
    g = torch.Generator().manual_seed(0)
    V, D, N = 30, 8, 12
    emb = torch.randn(V, D, generator=g)
    wh = 3 * torch.randn(N, V, generator=g)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[:4] = targets[4]  # repeated targets exercise the unique/gather path
    return wh, targets, emb
