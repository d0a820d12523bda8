"""lmtie diagnose: per-token losses against a direct computation, summaries against hand cases."""

import math

import numpy as np
import pytest
import torch

from lmtie import data, diagnose, runs, schema, train
from lmtie.cli import main
from lmtie.config import make_config
from lmtie.data import batchify
from lmtie.model import RNNLM


def small_config(**overrides):
    return make_config("ptb", "small", "real", embedding_dim=12, hidden_size=12, batch_size=4,
                       bptt=5, epochs=2, eval_batch_size=4, suffix="test", **overrides)


def test_token_losses_equal_one_direct_pass():
    """Per-token NLL, rank, confidence and the NLL at each temperature equal one pass of the
    LSTM over the whole stream (batch 1, no segments), computed here without the stream."""
    torch.manual_seed(0)
    model = RNNLM(23, small_config(output_bias=True))
    torch.nn.init.normal_(model.projection.bias, std=2.0)
    stream = torch.randint(0, 23, (48,))
    with torch.no_grad():
        out, _ = model.lstm(model.embedding(stream[:-1, None]), model.init_state(1))
        logits = (out[:, 0] @ model.projection.weight.t() + model.projection.bias).double()
    targets = stream[1:]
    logp = torch.log_softmax(logits, -1)
    nll = -logp[torch.arange(47), targets]
    rank = 1 + (logp > logp[torch.arange(47), targets][:, None]).sum(1)
    got = diagnose.token_losses(model, batchify(stream, 1), 5, temperatures=(0.5, 1.0, 3.0))
    np.testing.assert_allclose(got["nll"], nll.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(got["rank"], rank.numpy())
    np.testing.assert_array_equal(got["targets"], targets.numpy())
    np.testing.assert_allclose(got["confidence"], logp.exp().amax(1).numpy(), rtol=1e-5)
    for k, t in enumerate((0.5, 1.0, 3.0)):
        tempered = torch.log_softmax(logits / t, -1)[torch.arange(47), targets]
        assert got["nll_by_temperature"][k] == pytest.approx(-tempered.sum().item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperatures"):
        diagnose.token_losses(model, batchify(stream, 1), 5, temperatures=(0.0,))


def test_summary_against_hand_counts():
    # four words; train counts rank them 2 > 0 > 3 > 1 (word 2 most frequent)
    counts = np.array([5, 1, 9, 3])
    losses = {"targets": np.array([2, 2, 0, 1, 3]), "nll": np.array([1.0, 1.0, 2.0, 6.0, 0.0]),
              "rank": np.array([1, 1, 3, 400, 1]), "confidence": np.full(5, 0.5),
              "nll_by_temperature": np.array([10.0, 20.0])}
    got = diagnose.summarise(losses, counts, temperatures=(1.0, 2.0))
    assert got["perplexity"] == pytest.approx(math.exp(10 / 5))
    assert got["perplexity_by_temperature"] == {"1": pytest.approx(math.exp(2)),
                                                "2": pytest.approx(math.exp(4))}
    assert got["best_temperature"] == 1.0
    assert got["rank"]["median"] == 1 and got["rank"]["mean"] == pytest.approx(406 / 5)
    assert got["rank"]["share_top1"] == pytest.approx(3 / 5)
    assert got["rank"]["share_top10"] == pytest.approx(4 / 5)
    assert got["rank"]["share_top1000"] == 1.0
    assert got["tail"]["nll_share_worst0.1"] == pytest.approx(6 / 10)  # one token of five
    assert got["calibration"] == {"mean_confidence": 0.5, "top1_accuracy": pytest.approx(0.6)}
    # every target word's frequency rank is < 100: one band, all tokens
    assert got["bands"] == [{"band": "0-100", "share": 1.0, "mean_nll": pytest.approx(2.0)}]
    # five tokens, five pieces of one token each, in stream order
    assert got["chunks"] == pytest.approx([math.exp(x) for x in (1.0, 1.0, 2.0, 6.0, 0.0)])


def test_chunks_are_contiguous_pieces_of_the_stream():
    nll = np.array([1.0] * 10 + [3.0] * 10)  # the second half of the text is harder
    losses = {"targets": np.zeros(20, dtype=np.int64), "nll": nll, "rank": np.ones(20),
              "confidence": np.ones(20), "nll_by_temperature": np.array([nll.sum()])}
    got = diagnose.summarise(losses, np.array([1]), temperatures=(1.0,))["chunks"]
    assert len(got) == diagnose.CHUNKS
    assert got == pytest.approx([math.e] * 5 + [math.exp(3)] * 5)


def test_diagnose_a_run_keeps_one_entry_per_epoch(tmp_path, tiny_ptb, capsys):
    config = small_config()
    ckpt = tmp_path / "ckpt"
    run_dir = train.fit(config, data_dir=tiny_ptb, results_dir=tmp_path,
                        checkpoint_dir=ckpt, device="cpu", progress=False)
    corpus = data.Corpus("ptb", tiny_ptb)
    model = RNNLM(len(corpus.vocab), config)
    model.load_state_dict(runs.load_checkpoint(ckpt / "last.pt")["model"])
    entry = diagnose.diagnose(run_dir, data_dir=tiny_ptb, checkpoint_dir=ckpt, device="cpu")
    assert entry["epoch"] == 2
    for b in diagnose.BATCH_SIZES:
        expected = train.evaluate(model, batchify(corpus.valid, b), config.bptt).perplexity
        assert entry["valid_ppl_by_batch"][str(b)] == pytest.approx(expected, rel=1e-9)
    assert entry["batch1"]["perplexity"] == pytest.approx(entry["valid_ppl_by_batch"]["1"],
                                                          rel=1e-5)
    assert entry["valid_ppl_state_reset"] > 1
    # the metrics row of the same epoch measured batch 1 on the same weights
    row = schema.read_metrics(run_dir)[-1]
    assert row.valid_ppl_test_batch == pytest.approx(entry["valid_ppl_by_batch"]["1"])
    before = (run_dir / "diagnostics.json").read_text()
    code = main(["diagnose", str(run_dir), "--data-dir", str(tiny_ptb), "--checkpoint-dir",
                 str(ckpt), "--device", "cpu", "--checkpoint", "best"])
    assert code == 0 and str(entry["valid_ppl_by_batch"]["20"])[:6] in capsys.readouterr().out
    stored = schema.read_diagnostics(run_dir, "").entries
    best_epoch = schema.read_final(run_dir).best_epoch
    assert sorted(e.epoch for e in stored) == sorted({2, best_epoch})
    if best_epoch == 2:  # the same epoch again replaces its entry
        assert (run_dir / "diagnostics.json").read_text() == before.replace('"last"', '"best"')
    with pytest.raises(ValueError, match="'last' or 'best'"):
        diagnose.diagnose(run_dir, checkpoint="first", checkpoint_dir=ckpt)
