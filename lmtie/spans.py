"""The distance between span(Lᵀ) and span(W), the input and output word spaces (Sec. 6.2,
Figure 1; Decision S1): the plotted subspace distance, and two diagnostics beside it (the
distance with the constant direction projected out, and the projection residual of W itself).
"""

from __future__ import annotations

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
