"""The distance between span(Lᵀ) and span(W), the input and output word spaces (Sec. 6.2,
Figure 1; Decision S1): the plotted subspace distance, and diagnostics beside it (the distance
with the constant direction projected out, the projection residual of W itself, the span of
the hidden states W acts on, and W's end point under J^aug).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor


def _pair(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float64 arrays. Raises ValueError: not two (V, d) of one shape."""
    a, b = (np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
            for x in (a, b))
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (V, d) matrices of one shape, got {a.shape}, {b.shape}")
    return a, b


def subspace_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Distance between the column spaces of ``a`` and ``b``: 0 when equal, 1 when orthogonal.

    With orthonormal bases ``U = orth(a)``, ``Q = orth(b)`` of the two d-dimensional
    subspaces of R^V: ``dist = ‖Q − U Uᵀ Q‖_F / √d``, the relative residual norm of projecting
    one onto the other (Björck & Golub 1973), which equals the root-mean-square of the sines of
    the principal angles (computed here with ``scipy.linalg.subspace_angles``).

    Args:
        a, b: ``(V, d)`` float matrices, e.g. Lᵀ (``embedding.weight``) and W
            (``projection.weight``); full column rank.

    Returns:
        float in [0, 1]; symmetric; invariant to ``a → a R`` for invertible ``R``.

    Raises:
        ValueError: shapes differ or are not 2-D.

    Paper: Sec. 6.2, Figure 1; Decision S1.
    """
    a, b = _pair(a, b)
    # BLAS gets torch's thread budget: an extra OpenBLAS thread spinning against a training
    # run on the other core made this take 1.5-37 s instead of 0.65 s (10,000 x 200).
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        sines = np.sin(scipy.linalg.subspace_angles(a, b))
    return float(np.sqrt(np.mean(sines**2)))


def centred_subspace_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """:func:`subspace_distance` with the constant direction 1 projected out of both spans
    (every column minus its mean): the part of the distance J^aug can act on.

    J^aug compares softmax(W h / τ) with ỹ, and a softmax ignores a shift of all logits, so the
    component of W along 1 gets no gradient from it (eq. 3.1 has no bias, Decision A3):
    ``W = Lᵀ A + 1 cᵀ`` minimises J^aug for any c, at a :func:`subspace_distance` of up to
    1/√d (one of d principal angles at 90°), and at a centred distance of 0.

    Args:
        a, b: ``(V, d)`` float matrices (Lᵀ and W), full column rank after centring.

    Returns:
        float in [0, 1], as :func:`subspace_distance`.

    Raises:
        ValueError: shapes differ or are not 2-D.

    Paper: Sec. 6.2; Deviation: our diagnostic beside Decision S1, not the plotted distance.
    """
    a, b = _pair(a, b)
    return subspace_distance(a - a.mean(axis=0), b - b.mean(axis=0))


def projection_residual(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Relative residual of projecting ``b`` onto span(``a``): ``‖b − U Uᵀ b‖_F / ‖b‖_F``,
    ``U = orth(a)``. 0 when every column of ``b`` lies in span(``a``), 1 when all are
    orthogonal to it.

    Unlike :func:`subspace_distance` it weighs each direction of ``b`` by its size: a column
    space that differs only in directions where ``b`` is small scores low. With orthonormal
    columns in ``b`` the two agree. A diagnostic beside Decision S1 (the paper's "relative
    residual norm" read for W itself rather than for an orthonormal basis of it).

    Args:
        a, b: ``(V, d)`` float matrices (Lᵀ and W), ``b`` not all zero.

    Returns:
        float in [0, 1]; not symmetric; invariant to ``a → a R`` (invertible R), not to
        ``b → b R``.

    Raises:
        ValueError: shapes differ or are not 2-D, or ``b`` is zero.

    Paper: Sec. 6.2 (Björck & Golub 1973); Deviation: a diagnostic, not the plotted S1.
    """
    a, b = _pair(a, b)
    norm = np.linalg.norm(b)
    if norm == 0:
        raise ValueError("b is all zeros: its projection residual is undefined")
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        u = scipy.linalg.orth(a)
        return float(np.linalg.norm(b - u @ (u.T @ b)) / norm)


@dataclass(frozen=True)
class HiddenSpan:
    """How much of R^H the hidden states fill, and how far W is from span(Lᵀ) along each
    direction of them (:func:`hidden_span`).

    Attributes:
        singular_values: ``(H,)`` of the hidden states ``h`` ``(N, H)``, descending.
        effective_rank: exp of the entropy of the singular values normalised to sum 1
            (Roy & Vetterli 2007), in [1, H]: H when h fills every direction equally.
        sines: ``(H,)`` sin∠(W v_k, span(Lᵀ)) for the right singular vector v_k of h that
            belongs to ``singular_values[k]``: 0 where W maps the direction into span(Lᵀ).
    """

    singular_values: list[float]
    effective_rank: float
    sines: list[float]


def hidden_span(h: Tensor | np.ndarray, lt: Tensor | np.ndarray, w: Tensor | np.ndarray
                ) -> HiddenSpan:
    """The directions the hidden states vary in, and W's sine to span(Lᵀ) along each.

    J^aug's gradient with respect to W is Σ_t (ŷ_t − ỹ_t) h_tᵀ: under SGD W moves only along
    the directions of R^H that the h_t span, in proportion to how much they vary there (Adam
    rescales each weight's step, so roughly). A direction the hidden states hardly visit
    keeps its initial (random) W v_k, whose sine to span(Lᵀ) stays near 1.

    Args:
        h: ``(N, H)`` hidden states (the inputs of W) over the training slice.
        lt, w: ``(V, H)`` Lᵀ (``embedding.weight``) and W (``projection.weight``).

    Returns:
        A :class:`HiddenSpan`.

    Raises:
        ValueError: shapes do not fit (``h``'s columns must be W's), or h is all zeros.

    Paper: Sec. 6.2 (our addition, issue 17: why the distance stays above the paper's).
    """
    lt, w = _pair(lt, w)
    h = np.asarray(h.detach().cpu() if isinstance(h, Tensor) else h, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != w.shape[1]:
        raise ValueError(f"h must be (N, {w.shape[1]}) for a (V, {w.shape[1]}) W, "
                         f"got {h.shape}")
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        _, s, vt = np.linalg.svd(h, full_matrices=False)
        if s[0] == 0:
            raise ValueError("h is all zeros: it spans no direction")
        u = scipy.linalg.orth(lt)
        columns = w @ vt.T  # (V, H): W v_k for each direction
        off = columns - u @ (u.T @ columns)
    p = s / s.sum()
    p = p[p > 0]
    sines = np.linalg.norm(off, axis=0) / np.linalg.norm(columns, axis=0).clip(1e-300)
    return HiddenSpan(singular_values=s.tolist(),
                      effective_rank=float(np.exp(-(p * np.log(p)).sum())),
                      sines=sines.tolist())


def least_squares_w(h: Tensor | np.ndarray, u: Tensor | np.ndarray, lt: Tensor | np.ndarray,
                    w: Tensor | np.ndarray) -> np.ndarray:
    """W's end point under J^aug for fixed hidden states and word vectors: the W that makes
    the logits W h_t closest to the target's Lᵀ u_t, up to the shift no softmax sees.

    For large τ, τ²|V|·J^aug ≈ ½‖C (W h − Lᵀ u)‖² per token (eq. 4.3, C = I − 11ᵀ/V centres
    the logits), so over the slice J^aug is least squares in W. Its minimiser is
    ``C W* = C Lᵀ A`` with ``A = (Σ u hᵀ)(Σ h hᵀ)⁺`` (D × H), which fixes W* but for its
    constant direction 1 (mean row), which no softmax loss moves: W* keeps W's. So span(W*)
    lies in span(Lᵀ, 1), and its distance to span(Lᵀ) is W's constant direction alone
    (at most 1/√H, one principal angle of H).

    Args:
        h: ``(N, H)`` hidden states over the slice; u: ``(N, D)`` the target words' vectors
            (rows of Lᵀ at the targets: u_t = L y*_t); lt: ``(V, D)`` Lᵀ; w: ``(V, H)`` W (its
            mean row is kept).

    Returns:
        ``(V, H)`` float64 W*.

    Raises:
        ValueError: shapes do not fit.

    Paper: Sec. 4 (eq. 4.3), Sec. 6.2; Deviation: the large-τ form of J^aug, not the KL.
    """
    h, u, lt, w = (np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x,
                              dtype=np.float64) for x in (h, u, lt, w))
    if (h.ndim != 2 or u.ndim != 2 or h.shape[0] != u.shape[0] or lt.shape[1] != u.shape[1]
            or w.shape != (lt.shape[0], h.shape[1])):
        raise ValueError(f"need h (N, H), u (N, D), Lᵀ (V, D), W (V, H); got {h.shape}, "
                         f"{u.shape}, {lt.shape}, {w.shape}")
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        a = (u.T @ h) @ np.linalg.pinv(h.T @ h)  # (D, H)
        fitted = lt @ a
    return fitted - fitted.mean(axis=0) + w.mean(axis=0)
