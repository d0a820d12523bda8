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
from helpers import FIGURE1_VOCAB, SMOKE, write_run

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


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Smoke runs of VD-LSTM (valid 120 → 100, test 95) and +REAL (valid 110 → 90, test 85)."""
    write_run(tmp_path, SMOKE["vd"], [120.0, 100.0], 95.0, distances=[0.99, 0.97],
              first_word="the", p_unk=0.06, rank=150.0)
    write_run(tmp_path, SMOKE["real"], [110.0, 90.0], 85.0, first_word="federal",
              p_unk=0.03, rank=100.0)
    return tmp_path


@pytest.fixture
def seeds(tmp_path):
    """VD-LSTM seeds 1, 2 finished (valid 100, 104; test 95, 99), seed 3 in progress (epoch 1
    of 2); +REAL seed 1 only (valid 90, test 85)."""
    write_run(tmp_path, SMOKE["vd"], [120.0, 100.0], 95.0)
    write_run(tmp_path, SMOKE["vd"].replace(seed=2), [118.0, 104.0], 99.0)
    running = write_run(tmp_path, SMOKE["vd"].replace(seed=3), [130.0], 97.0)
    (running / "final.json").unlink()
    write_run(tmp_path, SMOKE["real"], [110.0, 90.0], 85.0)
    return tmp_path


@pytest.fixture
def page(tmp_path):
    """Smoke runs with test perplexities 88 (VD-LSTM, paper 87.3), 90 (+AL, 82.9), 86 (+RE,
    85.1) and 100 (+REAL, 82.7), an ablation of +REAL that gains 20 points, and the tables
    notebook 02 writes."""
    for variant, test in (("vd", 88.0), ("al", 90.0), ("re", 86.0), ("real", 100.0)):
        untied = variant in ("vd", "al")
        write_run(tmp_path, SMOKE[variant], [150.0, 120.0], test,
                  distances=[0.99, 0.98] if untied else None)
    bias = SMOKE["real"].replace(output_bias=True, suffix="smoke-bias", valid_only=True)
    write_run(tmp_path, bias, [130.0, 100.0], None)
    from lmtie import claims, report, tables

    runs = report.load_runs(tmp_path, "smoke")
    run_table = report.save_table(tables.table1_runs(runs), tmp_path / "tables" / "t.csv")
    for name, table in (("table1", tables.table1(run_table)),
                        ("claims", claims.ledger(report.load_runs(tmp_path), "smoke")),
                        ("ablations", tables.ablations(report.load_runs(tmp_path), "smoke")),
                        ("runs", tables.provenance(report.load_runs(tmp_path)))):
        report.save_table(table, tmp_path / "tables" / f"{name}.csv")
    return tmp_path


@pytest.fixture(scope="session")
def markov_ids():
    """A 1,000-token stream from a sparse random Markov chain over ``FIGURE1_VOCAB`` words
    (the Figure 1 tests' corpus)."""
    gen = torch.Generator().manual_seed(0)
    nxt = torch.randint(0, FIGURE1_VOCAB, (FIGURE1_VOCAB, 3), generator=gen)  # 3 successors
    ids = [0]
    for _ in range(999):
        ids.append(int(nxt[ids[-1], torch.randint(0, 3, (1,), generator=gen)]))
    return torch.tensor(ids)
