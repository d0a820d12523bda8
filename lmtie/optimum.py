"""W at the minimum of J^aug for fixed hidden states and word vectors (Sec. 6.2, issue 17).

The paper measures Figure 1 on models trained "to achieve the minimum training loss possible".
First-order training moves W along a direction of the hidden states' space only as fast as
h varies in it (s_300/s_1 ≈ 0.013 over the slice, so ≈ 6,000 times slower in the weakest
direction than the strongest), and reaching the minimum that way costs hundreds of epochs.
But at β = 1, for fixed h_t (the LSTM's outputs over the slice) and fixed Lᵀ, eq. 6.1 is
τ²|V| · J^aug, a convex function of W: a KL against a fixed ỹ, log-sum-exp minus a linear
term in the logits W h_t / τ. Its minimum is found here directly, in coordinates where the
hidden states are white (so that every direction converges alike), by L-BFGS.

Deviation: the paper trains everything to the minimum; :func:`lmtie.figure1.train_point`
trains jointly for its epochs and then takes W to its minimum for the h and Lᵀ reached,
which lowers the training loss (the result says by how much) and leaves the LSTM and Lᵀ as
trained. Only at β = 1: at β = 0 the cross-entropy alone has no minimum in W (it keeps
falling as W grows along a direction that separates a word's hidden states from the
others'), and in between its minimum lies far from the trained W (measured in
``docs/figure1.md``: L-BFGS was still lowering the loss after 28 iterations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from lmtie.loss import kl_rows


@dataclass(frozen=True)
class Optimum:
    """:func:`minimise_w`'s result.

    Attributes:
        weight: ``(V, H)`` float64 W at the minimum (its constant direction, the mean row,
            is the start's: no softmax loss moves it, and no step of the search does).
        start_loss, loss: τ²|V| · J^aug per token over the slice (nats, float64), eq. 6.1
            at β = 1, at the given and at the returned W.
        gradient: the largest absolute gradient at the end relative to the start (in the
            whitened coordinates the search runs in).
        iterations: L-BFGS iterations. converged: the search stopped at its tolerance
            (``rtol``) or where float64 no longer lowers the loss, not at its cap or a failed
            line search.
    """

    weight: Tensor
    start_loss: float
    loss: float
    gradient: float
    iterations: int
    converged: bool


def _whitening(h: Tensor) -> Tensor:
    """``R`` (upper triangular) with ``hᵀ h / N = Rᵀ R``: ``h R⁻¹`` has identity second
    moment. Raises: ValueError (h is not of full column rank)."""
    factor, info = torch.linalg.cholesky_ex(h.T @ h / h.shape[0])
    if info != 0:
        raise ValueError(f"the hidden states do not span all {h.shape[1]} directions "
                         "(their second moment is singular): W's minimum is not unique; use "
                         "more tokens than hidden units")
    return factor.T


def augmented_objective(h: Tensor, targets: Tensor, lt: Tensor, tau: float,
                        chunk_tokens: int = 2_000) -> Callable[[Tensor], tuple[float, Tensor]]:
    """eq. 6.1 at β = 1 over a slice as a function of W: ``W ↦ (τ²|V| · mean_t KL(ỹ_t ‖
    softmax(W h_t / τ)), its gradient in W)``.

    Args: ``h`` ``(N, H)``, ``targets`` ``(N,)``, ``lt`` ``(V, D)`` as :func:`minimise_w`;
    W ``(V, H)`` float64. Returns: the function (float64; ỹ computed once per distinct
    target). The logits' gradient is written out, eq. 3.4: ``τ|V| (ŷ − ỹ)``; J^aug's value is
    :func:`lmtie.loss.kl_rows` (no cancellation). Raises: nothing (shapes: minimise_w).
    """
    h = h.detach().to(torch.float64)
    scale = tau**2 * lt.shape[0]
    words, index = torch.unique(targets.detach(), return_inverse=True)
    lt64 = lt.detach().to(torch.float64)
    scores = lt64[words] @ lt64.T / tau  # (U, V) s = Lᵀ u / τ per distinct target
    target = torch.softmax(scores, dim=-1)

    def objective(weight: Tensor) -> tuple[float, Tensor]:
        total, grad = 0.0, torch.zeros_like(weight)
        for lo in range(0, len(h), chunk_tokens):
            h_chunk, at = h[lo:lo + chunk_tokens], index[lo:lo + chunk_tokens]
            target_rows = target.index_select(0, at)
            kl, model = kl_rows(target_rows, scores.index_select(0, at), h_chunk @ weight.T / tau)
            total += scale * kl.sum().item()
            grad += model.sub_(target_rows).T @ h_chunk
        return total / len(h), grad.mul_(scale / tau / len(h))
    return objective


def minimise_w(h: Tensor, targets: Tensor, lt: Tensor, w: Tensor, tau: float, *,
               chunk_tokens: int = 2_000, rtol: float = 1e-6,
               max_iterations: int = 200) -> Optimum:
    """Minimise eq. 6.1 at β = 1, per token ``τ²|V| · KL(ỹ_t ‖ softmax(W h_t / τ))``, over W
    with the hidden states and Lᵀ fixed, from the given W.

    Args:
        h: ``(N, H)`` hidden states h_t over the slice (:func:`lmtie.figure1.hidden_states`).
        targets: ``(N,)`` int64 words y*_t they predict.
        lt: ``(V, D)`` Lᵀ that ỹ is built from (eq. 3.7).
        w: ``(V, H)`` W to start from. tau: temperature > 0.
        chunk_tokens: tokens per pass (memory: ≈ 5 · chunk_tokens · V float64).
        rtol: stop when the largest absolute gradient has fallen by this factor.
        max_iterations: L-BFGS iterations at most.

    Returns:
        An :class:`Optimum` (float64 throughout: J^aug scaled by τ²|V| up to 1.6·10⁷ needs it).

    Raises:
        ValueError: τ ≤ 0, shapes that do not fit, or hidden states that do not span R^H.

    The search runs in P = W R (``Rᵀ R`` the second moment of h): the logits are unchanged
    and the loss's curvature in P is the same along every direction of the hidden states.
    The loss is :func:`augmented_objective`; scipy's L-BFGS-B.

    Paper: Sec. 6.2, eq. 6.1 at β = 1 (the minimum of the training loss); Deviation: over W
    only (module docstring).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    n, hidden = h.shape
    vocab_size = w.shape[0]
    if targets.shape != (n,) or w.shape[1] != hidden or lt.shape[0] != vocab_size:
        raise ValueError(f"need h (N, H), targets (N,), lt (V, D), W (V, H); got "
                         f"{tuple(h.shape)}, {tuple(targets.shape)}, {tuple(lt.shape)}, "
                         f"{tuple(w.shape)}")
    h = h.detach().to(torch.float64)
    r = _whitening(h)
    r_inv = torch.linalg.solve_triangular(r, torch.eye(hidden, dtype=r.dtype), upper=True)
    objective = augmented_objective(h, targets, lt, tau, chunk_tokens)

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = objective(torch.from_numpy(flat).view(vocab_size, hidden) @ r_inv.T)
        return loss, (grad @ r_inv).reshape(-1).numpy()  # W = P R⁻ᵀ: ∂/∂P = (∂/∂W) R⁻¹

    x0 = (w.detach().to(torch.float64) @ r.T).reshape(-1).numpy()
    start_loss, start_grad = loss_and_gradient(x0)
    start_max = float(np.abs(start_grad).max())
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):  # as spans.py
        result = scipy.optimize.minimize(
            loss_and_gradient, x0, jac=True, method="L-BFGS-B",
            options={"maxiter": max_iterations, "gtol": rtol * start_max, "ftol": 0.0})
    end_max = float(np.abs(result.jac).max())
    return Optimum(weight=torch.from_numpy(result.x).view(vocab_size, hidden) @ r_inv.T,
                   start_loss=start_loss, loss=float(result.fun),
                   gradient=end_max / start_max if start_max > 0 else 0.0,
                   iterations=int(result.nit), converged=bool(result.success))
