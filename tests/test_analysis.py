"""lmtie.analysis: the subspace distance (Decision S1), its centred form and the projection
residual; ỹ's entropy, W h against Lᵀu, nearest neighbours and the mass on them."""

import math

import numpy as np
import pytest
import torch

from lmtie import analysis
from lmtie.analysis import (
    alignment_sums,
    augmented_target_entropy,
    centred_subspace_distance,
    projection_residual,
    subspace_distance,
)
from lmtie.config import make_config
from lmtie.data import batchify
from lmtie.model import RNNLM


def residual_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Independent formula: ‖Q − U Uᵀ Q‖_F / √d with QR bases U = orth(a), Q = orth(b)."""
    u, _ = np.linalg.qr(a)
    q, _ = np.linalg.qr(b)
    return float(np.linalg.norm(q - u @ (u.T @ q)) / math.sqrt(a.shape[1]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_same_span_any_basis_is_zero(rng):
    a = rng.standard_normal((40, 6))
    mix = rng.standard_normal((6, 6)) + 6 * np.eye(6)  # invertible
    assert subspace_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert subspace_distance(a, a @ mix) == pytest.approx(0.0, abs=1e-7)


def test_orthogonal_spans_is_one():
    eye = np.eye(10)
    assert subspace_distance(eye[:, :4], eye[:, 4:8]) == pytest.approx(1.0, abs=1e-12)
    # one shared direction out of four: sines (0, 1, 1, 1) -> sqrt(3/4)
    assert subspace_distance(eye[:, :4], eye[:, [0, 5, 6, 7]]) == pytest.approx(math.sqrt(0.75))


def test_symmetric_and_invariant_to_right_multiplication(rng):
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    r = rng.standard_normal((5, 5)) + 5 * np.eye(5)
    d = subspace_distance(a, b)
    assert 0.0 < d < 1.0
    assert subspace_distance(b, a) == pytest.approx(d, abs=1e-12)
    assert subspace_distance(a @ r, b) == pytest.approx(d, abs=1e-10)
    assert subspace_distance(a, b @ r) == pytest.approx(d, abs=1e-10)


@pytest.mark.parametrize(("rows", "cols"), [(20, 3), (100, 10), (500, 30)])
def test_equals_independent_residual_formula(rng, rows, cols):
    a, b = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    assert subspace_distance(a, b) == pytest.approx(residual_distance(a, b), abs=1e-10)
    close = a + 0.01 * rng.standard_normal((rows, cols))  # small angles, the β = 1 regime
    assert subspace_distance(a, close) == pytest.approx(residual_distance(a, close), rel=1e-6)
    assert subspace_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(
        residual_distance(a, b), abs=1e-10)


def test_projection_residual_weighs_directions_by_size(rng):
    a = rng.standard_normal((40, 4))
    inside = a @ rng.standard_normal((4, 4))
    assert projection_residual(a, inside) == pytest.approx(0.0, abs=1e-12)
    eye = np.eye(10)
    assert projection_residual(eye[:, :4], eye[:, 4:8]) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 4)))  # orthonormal columns: equals S1
    assert projection_residual(a, q) == pytest.approx(subspace_distance(a, q), abs=1e-12)
    # three columns in span(a), a fourth orthogonal to it and 100x smaller
    off = np.linalg.qr(np.hstack([a, rng.standard_normal((40, 1))]))[0][:, 4:]
    b = np.hstack([a[:, :3] / np.linalg.norm(a[:, :3], axis=0), 0.01 * off])
    assert subspace_distance(a, b) == pytest.approx(0.5, abs=1e-9)  # sines (0, 0, 0, 1)
    assert projection_residual(a, b) == pytest.approx(0.01 / math.sqrt(3.0001), rel=1e-6)
    assert projection_residual(a, b) != pytest.approx(projection_residual(b, a))
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        projection_residual(a, a[:, :3])
    with pytest.raises(ValueError, match="zeros"):
        projection_residual(a, np.zeros_like(a))


def test_shape_mismatch_raises(rng):
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        subspace_distance(rng.standard_normal((20, 3)), rng.standard_normal((20, 4)))
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        subspace_distance(rng.standard_normal(20), rng.standard_normal(20))


def test_centred_distance_ignores_the_constant_direction(rng):
    """W = Lᵀ A + 1 cᵀ (what J^aug cannot tell from Lᵀ A): centred distance 0, while the plain
    distance is one principal angle out of d, i.e. up to 1/√d; ~1/√d when c is large (1 is
    nearly orthogonal to a random d-dim span of R^V when d << V)."""
    v, d = 2000, 10
    lt = rng.standard_normal((v, d))
    fitted = lt @ (rng.standard_normal((d, d)) + 3 * np.eye(d))
    for size, low in ((1.0, 0.1), (100.0, 0.99)):
        w = fitted + np.outer(np.ones(v), size * rng.standard_normal(d))
        assert centred_subspace_distance(lt, w) == pytest.approx(0.0, abs=1e-7)
        assert subspace_distance(lt, w) == pytest.approx(residual_distance(lt, w), abs=1e-10)
        assert low / math.sqrt(d) < subspace_distance(lt, w) <= 1 / math.sqrt(d)
    other = rng.standard_normal((v, d))  # random spans stay far apart after centring
    assert centred_subspace_distance(lt, other) == pytest.approx(
        residual_distance(lt - lt.mean(0), other - other.mean(0)), abs=1e-10)
    with pytest.raises(ValueError, match="one shape"):
        centred_subspace_distance(lt, w[:, :3])


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
