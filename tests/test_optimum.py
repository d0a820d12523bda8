"""W's minimum of eq. 6.1 at β = 1 for fixed h and Lᵀ (lmtie.optimum), against an exact case,
an independent minimiser of the textbook loss, and the large-τ closed form."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import torch

from lmtie.optimum import augmented_objective, minimise_w
from lmtie.spans import least_squares_w

V, H, N = 7, 3, 60


def _problem(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A small fixed problem: h (N, H), targets (N,), unit-norm Lᵀ (V, H), W (V, H)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (N,), generator=g)
    lt = torch.randn(V, H, generator=g, dtype=torch.float64)
    lt = lt / lt.norm(dim=1, keepdim=True)
    w = torch.randn(V, H, generator=g, dtype=torch.float64)
    return h, targets, lt, w


def _centred(x: np.ndarray) -> np.ndarray:
    """x with its mean over the vocabulary removed: the part a softmax sees."""
    return x - x.mean(axis=0)


def _textbook(h, targets, lt, tau):
    """eq. 6.1 at β = 1 per token in numpy, as printed (τ²|V| Σ ỹ log(ỹ/ŷ)), for scipy's
    BFGS over the raw W: an implementation that shares no code with lmtie."""
    h, lt, y = h.numpy(), lt.numpy(), targets.numpy()
    log_target = scipy.special.log_softmax(lt[y] @ lt.T / tau, axis=1)

    def loss(flat: np.ndarray) -> float:
        log_model = scipy.special.log_softmax(h @ flat.reshape(V, H).T / tau, axis=1)
        return tau**2 * V * (np.exp(log_target) * (log_target - log_model)).sum(axis=1).mean()
    return loss


@pytest.mark.parametrize("tau", [0.5, 10.0])
def test_the_objective_is_the_textbook_loss_and_its_gradient_the_finite_differences(tau):
    h, targets, lt, w = _problem(3)
    objective = augmented_objective(h, targets, lt, tau, chunk_tokens=7)  # several chunks
    textbook = _textbook(h, targets, lt, tau)
    at = w.numpy().ravel()
    assert objective(w)[0] == pytest.approx(textbook(at), rel=1e-12)
    numeric = scipy.optimize.approx_fprime(at, textbook, 1e-6)
    np.testing.assert_allclose(objective(w)[1].numpy().ravel(), numeric, rtol=1e-4, atol=1e-6)


def test_an_exactly_reachable_target_is_reached_with_the_mean_row_kept():
    """h_t = u_t (the target's own word vector): W = Lᵀ makes W h_t = Lᵀ u_t, so ŷ = ỹ and
    J^aug = 0; the minimum is Lᵀ up to W's mean row, which no softmax loss moves."""
    _, targets, lt, w = _problem()
    h = lt[targets]
    result = minimise_w(h, targets, lt, w, tau=2.0, rtol=1e-10)
    assert result.converged and result.start_loss > 1.0
    assert result.loss == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(_centred(result.weight.numpy()), _centred(lt.numpy()), atol=1e-6)
    np.testing.assert_allclose(result.weight.numpy().mean(axis=0), w.numpy().mean(axis=0),
                               atol=1e-12)


@pytest.mark.parametrize("tau", [0.5, 2.0, 10.0])
def test_the_minimum_is_the_textbook_loss_minimised_by_scipy(tau):
    h, targets, lt, w = _problem(1)
    result = minimise_w(h, targets, lt, w, tau, rtol=1e-10)
    loss = _textbook(h, targets, lt, tau)
    reference = scipy.optimize.minimize(loss, w.numpy().ravel(), method="BFGS",
                                        options={"gtol": 1e-10})
    assert result.converged and result.iterations > 0 and result.gradient < 1e-7
    assert result.loss == pytest.approx(reference.fun, rel=1e-9, abs=1e-12)
    assert result.start_loss == pytest.approx(loss(w.numpy().ravel()), rel=1e-12)
    np.testing.assert_allclose(_centred(result.weight.numpy()),
                               _centred(reference.x.reshape(V, H)), atol=1e-4)


def test_at_large_tau_the_minimum_is_the_least_squares_end_point():
    """τ²|V| J^aug → ½‖C(W h − Lᵀ u)‖² (eq. 4.3) as τ grows: the minimum approaches
    lmtie.spans.least_squares_w's closed form, by O(1/τ)."""
    h, targets, lt, w = _problem(2)
    closed = least_squares_w(h, lt[targets], lt, w)
    gaps = []
    for tau in (10.0, 100.0):
        result = minimise_w(h, targets, lt, w, tau, rtol=1e-10)
        gaps.append(np.abs(result.weight.numpy() - closed).max())
    assert gaps[1] < 1e-2 and gaps[1] < gaps[0] / 5


def test_bad_input_is_refused_with_what_to_do():
    h, targets, lt, w = _problem()
    with pytest.raises(ValueError, match="tau"):
        minimise_w(h, targets, lt, w, 0.0)
    with pytest.raises(ValueError, match="targets"):
        minimise_w(h, targets[:-1], lt, w, 1.0)
    with pytest.raises(ValueError, match="lt"):
        minimise_w(h, targets, lt[:-1], w, 1.0)
    flat = h.clone()
    flat[:, 2] = flat[:, 0]  # two hidden units always equal: W's minimum is not unique
    with pytest.raises(ValueError, match="more tokens than hidden units"):
        minimise_w(flat, targets, lt, w, 1.0)
