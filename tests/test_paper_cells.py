"""Every cell of the ``paper`` preset runs end to end on the CPU, so that a week-long GPU grid
cannot fail on a path nobody ran: WikiText-2's 33,278-word vocabulary, the medium and large
models, each variant. Each cell trains two batches (batch 4, bptt 10, the cell's own model,
vocabulary, dropout, loss and schedule otherwise), validates once and runs the test and
prediction step, on the real corpora cut short: 200 training tokens, 300 validation tokens
(two segments a column at the validation batch of 20) and 100 test tokens. The streams read at
batch 1 (validation at the test batch, test perplexity, prediction mass) cost a large model a
pass over its weights per token, so they are kept short. Two CPU-side float64 analyses whose
cost grows with the cell but whose code does not change with it are replaced by stubs of their
shape: ``nearest_neighbours`` (V²·D flops, over a minute for WikiText-2 medium on one core) and
``subspace_distance`` (an SVD of the (V, H) matrices, seconds for PTB large);
tests/test_diagnose.py and test_subspace.py cover them. Slow: 75 CPU-seconds (user + sys) and
4 GB of checkpoints written for the 21 tests; 11 minutes of wall time on this project's shared
2-core machine with two training runs beside it, where PTB large (about 80 s a cell) and
WikiText-2 medium (about 40 s) are most of it.
"""

import copy
import math

import pytest
import torch

from lmtie import data, runs, train
from lmtie.config import preset_configs
from lmtie.reference import N_PARAMS_M

CELLS = preset_configs("paper")
SHORT = {"train": 200, "valid": 300, "test": 100}


@pytest.fixture(scope="module")
def corpora(data_dir):
    """PTB and WikiText-2 as loaded (and verified) in full, once."""
    return {name: data.Corpus(name, data_dir) for name in ("ptb", "wikitext-2")}


def expected_params(config, vocab_size):
    """Unique trainable parameters, counted by hand: L, W and b unless tied, and two LSTM
    layers with one bias per gate."""
    d, h = config.embedding_dim, config.hidden_size
    lstm = 4 * h * (d + h) + 4 * h + 4 * h * (h + h) + 4 * h
    return vocab_size * d + lstm + (0 if config.tied else vocab_size * h + vocab_size)


def test_the_paper_preset_has_the_twenty_cells_of_table_1():
    assert len(CELLS) == 20
    assert {(c.corpus, c.size) for c in CELLS} == {
        ("ptb", "small"), ("ptb", "medium"), ("ptb", "large"), ("wikitext-2", "small"),
        ("wikitext-2", "medium")}


@pytest.mark.slow
@pytest.mark.parametrize("config", CELLS, ids=[c.run_id for c in CELLS])
def test_paper_cell_trains_validates_and_tests(config, corpora, tmp_path, monkeypatch):
    def short_corpus(name, data_dir=None):
        corpus = copy.copy(corpora[name])
        for split, n in SHORT.items():
            setattr(corpus, split, getattr(corpora[name], split)[:n])
        return corpus

    monkeypatch.setattr(train, "Corpus", short_corpus)
    monkeypatch.setattr(train, "nearest_neighbours", lambda weight, k: torch.arange(
        1, k + 1).expand(weight.shape[0], k))
    monkeypatch.setattr(train, "subspace_distance", lambda a, b: 0.5)
    cell = config.replace(epochs=1, max_batches=2, batch_size=4, bptt=10)
    run_dir = train.fit(cell, results_dir=tmp_path, checkpoint_dir=tmp_path / "ckpt",
                        device="cpu", progress=False)

    vocab_size = len(corpora[config.corpus].vocab)
    assert vocab_size == data.EXPECTED[config.corpus]["vocab_size"]
    final = runs.read_json(run_dir / "final.json")
    assert final["n_params"] == expected_params(config, vocab_size)
    paper = N_PARAMS_M.get((config.corpus, config.size, config.tied))
    if paper is not None:
        assert round(final["n_params"] / 1e6, len(str(paper).split(".")[1])) == paper
    # two SGD steps from a uniform initialisation: finite and about as uncertain as uniform
    for key in ("valid_ppl", "test_ppl"):
        assert math.isfinite(final[key]) and 0.2 * vocab_size < final[key] < 5 * vocab_size
    (row,) = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert (row["subspace_distance"] is None) == config.tied
    assert 0 < row["target_entropy"] <= math.log(vocab_size) + 1e-6
    predictions = runs.read_json(run_dir / "predictions.json")
    assert predictions["n_tokens"] == SHORT["test"] - 1
    assert len(predictions["phrases"]) == (4 if config.corpus == "ptb" else 0)
    assert all(len(p["top10"]) == 10 for p in predictions["phrases"])
    assert 0 < predictions["mean_p_unk"] < 1
