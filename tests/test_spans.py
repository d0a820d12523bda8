"""lmtie.spans: the subspace distance (Decision S1) against an independent formula, its
centred form and the projection residual."""

import math

import numpy as np
import pytest
import torch

from lmtie.spans import (
    centred_subspace_distance,
    hidden_span,
    least_squares_w,
    projection_residual,
    subspace_distance,
)


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


def test_hidden_span_by_hand(rng):
    """h visits 3 of 6 directions equally (effective rank 3); W maps those into span(Lᵀ) and
    the other 3 orthogonally to it: sines (0, 0, 0, 1, 1, 1)."""
    v, d, n = 50, 6, 40
    lt = rng.standard_normal((v, d))
    q, _ = np.linalg.qr(rng.standard_normal((n, 3)))
    h = np.zeros((n, d))
    h[:, :3] = 2.0 * q  # singular values (2, 2, 2, 0, 0, 0) along e_1..e_3
    basis = np.linalg.qr(lt)[0]
    outside = rng.standard_normal((v, 3))
    outside -= basis @ (basis.T @ outside)
    w = np.hstack([lt @ rng.standard_normal((d, 3)), outside])
    span = hidden_span(h, lt, w)
    assert span.singular_values == pytest.approx([2, 2, 2, 0, 0, 0], abs=1e-12)
    assert span.effective_rank == pytest.approx(3.0)
    assert span.sines[:3] == pytest.approx([0, 0, 0], abs=1e-7)
    assert span.sines[3:] == pytest.approx([1, 1, 1], abs=1e-7)  # any basis of e_4..e_6
    # unequal singular values (4, 1): entropy of (0.8, 0.2)
    h2 = np.zeros((n, d))
    h2[:, 0], h2[:, 1] = 4.0 * q[:, 0], q[:, 1]
    expected = math.exp(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))
    assert hidden_span(h2, lt, w).effective_rank == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"h must be \(N, 6\)"):
        hidden_span(h[:, :5], lt, w)


def test_least_squares_w_recovers_an_exact_fit_but_its_constant_direction(rng):
    """Targets u_t = A h_t exactly: the centred W* is C Lᵀ A, W's mean row is kept, and
    span(W*) is one principal angle (W's constant direction) away from span(Lᵀ)."""
    v, d, n = 300, 8, 200
    lt = rng.standard_normal((v, d))
    a = rng.standard_normal((d, d)) + 3 * np.eye(d)
    h = rng.standard_normal((n, d))
    u = h @ a.T  # u_t = A h_t
    w = rng.standard_normal((v, d)) + 5.0  # a large constant direction
    fitted = least_squares_w(h, u, lt, w)
    centre = np.eye(v) - 1.0 / v
    assert np.allclose(centre @ fitted, centre @ lt @ a, atol=1e-9)
    assert np.allclose(fitted.mean(axis=0), w.mean(axis=0))
    assert centred_subspace_distance(lt, fitted) == pytest.approx(0.0, abs=1e-6)
    assert 0.9 / math.sqrt(d) < subspace_distance(lt, fitted) <= 1 / math.sqrt(d) + 1e-12
    # noisy targets: the same W* as numpy's least squares on the centred problem
    noisy = u + 0.1 * rng.standard_normal(u.shape)
    solved = np.linalg.lstsq(h, noisy @ lt.T @ centre, rcond=None)[0].T  # C W* hᵀ ≈ C Lᵀ u
    assert np.allclose(centre @ least_squares_w(h, noisy, lt, w), solved, atol=1e-9)
    with pytest.raises(ValueError, match="need h"):
        least_squares_w(h, u[:, :3], lt, w)
