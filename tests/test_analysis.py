"""lmtie.analysis: ỹ's entropy and its mass on the frequent words, W h against Lᵀu, nearest
neighbours and the mass on them, the numbers of every epoch."""

import math

import numpy as np
import pytest
import torch

from lmtie import analysis, atomic, data, schema
from lmtie.analysis import alignment_sums, augmented_target_entropy, target_mass_on_frequent
from lmtie.config import make_config
from lmtie.data import batchify
from lmtie.model import RNNLM


def test_target_entropy_against_hand_cases(batch):
    _, targets, emb = batch
    zero = torch.zeros_like(emb)  # all scores 0: ỹ uniform over V = 30 words
    assert augmented_target_entropy(zero, targets, 2.0) == pytest.approx(math.log(30))
    # one-hot word vectors of norm r: ỹ puts e^{r²/τ} on the target, 1 on each other word
    r2, tau = 4.0, 2.0
    onehot = math.sqrt(r2) * torch.eye(30)
    z = math.exp(r2 / tau) + 29
    p = math.exp(r2 / tau) / z
    expected = -(p * math.log(p) + 29 * (1 / z) * math.log(1 / z))
    assert augmented_target_entropy(onehot, targets, tau) == pytest.approx(expected, rel=1e-6)
    # equals the per-token average of the naive formula (repeated targets weigh more)
    naive = [float(-(torch.softmax(emb @ emb[t] / 3.0, 0) * torch.log_softmax(
        emb @ emb[t] / 3.0, 0)).sum()) for t in targets]
    assert augmented_target_entropy(emb, targets, 3.0) == pytest.approx(
        sum(naive) / len(naive), rel=1e-5)
    with pytest.raises(ValueError, match="tau"):
        augmented_target_entropy(emb, targets, 0.0)


def test_alignment_sums_against_numpy(batch):
    wh, targets, emb = batch
    target_logits = (emb[targets] @ emb.t()).double().numpy()  # Lᵀ u_t per row
    z = wh.double().numpy()
    expected = [z.std(-1, ddof=1).sum(), target_logits.std(-1, ddof=1).sum(),
                sum(np.corrcoef(a, b)[0, 1] for a, b in zip(z, target_logits, strict=True))]
    assert alignment_sums(wh, targets, emb).tolist() == pytest.approx(expected, rel=1e-9)
    # W h = 2 Lᵀu + a shift per token (what eq. 4.3 drives towards): correlation 1
    aligned = 2 * (emb[targets] @ emb.t()) + torch.arange(len(targets))[:, None]
    stds, target_stds, corr = alignment_sums(aligned, targets, emb).tolist()
    assert corr == pytest.approx(len(targets)) and stds == pytest.approx(2 * target_stds)
    with pytest.raises(ValueError, match="expected wh"):
        alignment_sums(wh[:, :5], targets, emb)


def test_nearest_neighbours_and_the_mass_on_them():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(9, 4, generator=g)
    unit = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(analysis.nearest_neighbours(emb, 3).numpy(), expected)
    with pytest.raises(ValueError, match="k must be"):
        analysis.nearest_neighbours(emb, 9)
    torch.manual_seed(0)
    model = RNNLM(9, make_config(embedding_dim=6, hidden_size=6, output_bias=True))
    stream = torch.randint(0, 9, (30,))
    neighbours = torch.from_numpy(expected)
    with torch.no_grad():
        out, _ = model.lstm(model.embedding(stream[:-1, None]), model.init_state(1))
        probs = torch.softmax(out[:, 0] @ model.projection.weight.t() + model.projection.bias, -1)
    mass = analysis.prediction_mass(model, batchify(stream, 1), 4, words=torch.tensor([2, 5]),
                                    neighbours=neighbours)
    assert mass["mean_p_words"] == pytest.approx(probs[:, [2, 5]].sum(1).mean().item(), rel=1e-5)
    on_neighbours = probs.gather(1, neighbours[stream[1:]]).sum(1).mean().item()
    assert mass["mean_p_neighbours"] == pytest.approx(on_neighbours, rel=1e-5)


def test_target_mass_on_frequent_words_against_hand_cases():
    train = torch.tensor([3, 3, 3, 1, 1, 0, 2])  # counts: 3 > 1 > 0 = 2 (a tie: lower id first)
    flat = torch.zeros(5, 2)  # every word vector equal: ỹ uniform over V = 5
    assert target_mass_on_frequent(flat, torch.tensor([0, 4]), 1.0, train, k=2) == (
        pytest.approx(2 / 5))
    peaked = 10.0 * torch.eye(5)  # Lᵀu = 100 on the target itself: ỹ ≈ one-hot on it
    targets = torch.tensor([3, 3, 4, 0])
    assert target_mass_on_frequent(peaked, targets, 1.0, train, k=2) == pytest.approx(0.5)
    assert target_mass_on_frequent(peaked, targets, 1.0, train, k=3) == pytest.approx(0.75)
    assert target_mass_on_frequent(peaked, targets, 1.0, train, k=9) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        target_mass_on_frequent(peaked, targets, 1.0, train, k=0)


def test_every_epoch_records_the_mass_and_older_rows_read_none(tiny_ptb, tmp_path):
    corpus = data.Corpus("ptb", tiny_ptb)
    config = make_config("ptb", "small", "real", embedding_dim=6, hidden_size=6)
    model = RNNLM(len(corpus.vocab), config)
    numbers = analysis.epoch_numbers(model, corpus, config)
    assert numbers["target_mass_frequent"] == target_mass_on_frequent(
        model.embedding.weight, corpus.valid[1:], config.tau, corpus.train)
    assert numbers["target_mass_frequent"] == pytest.approx(1.0)  # V < 100: every word
    row = schema.EpochRow(epoch=1, lr=1.0, train_ce=5.0, train_aug_kl=0.1, tokens_per_s=1.0,
                          valid_ppl=100.0, elapsed_s=1.0, **numbers)
    schema.write_metrics(tmp_path, [row])
    assert schema.read_metrics(tmp_path) == [row]
    older = {k: v for k, v in row.to_dict().items() if k != "target_mass_frequent"}
    atomic.write_jsonl(tmp_path / schema.METRICS, [older])  # a row written before the field
    assert schema.read_metrics(tmp_path)[0].target_mass_frequent is None
