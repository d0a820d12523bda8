"""Cross-entropy J (2.4), the augmented loss J^aug = KL(ỹ ‖ ŷ) (3.2), and J^tot (3.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def augmented_target_log_probs(embedding_weight: Tensor, words: Tensor, tau: float) -> Tensor:
    """log ỹ for the given target words: ``log_softmax(Lᵀ u / tau)`` with ``u = L y*``.

    Args:
        embedding_weight: ``(V, D)`` float, the paper's Lᵀ (``nn.Embedding.weight``).
        words: ``(U,)`` int64 target word ids.
        tau: temperature > 0.

    Returns:
        ``(U, V)`` log-probabilities in ``embedding_weight``'s dtype (also under autocast);
        row k is log ỹ for target ``words[k]``.

    Paper: eqs. 3.6-3.7 (ỹ_t = softmax(Lᵀ L y*_t / τ)).
    """
    scores = embedding_weight[words] @ embedding_weight.t()  # (U, V): u·l_i for every word i
    # in the weights' dtype (fp32) also when autocast ran the matmul in bf16
    return torch.log_softmax(scores.to(embedding_weight.dtype) / tau, dim=-1)


def distinct_targets(targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(words (U,), index (N,))`` with ``words[index] == targets``: ỹ is computed once per
    row of ``words`` and gathered with ``index``.

    On the CPU, the distinct words (``torch.unique``: ~400 of 700 PTB targets, so ỹ costs
    U·D·V instead of N·D·V). On CUDA, every target as it is: ``unique``'s data-dependent size
    would stop the host at every step, and the N·D·V matmul is cheap there.
    """
    if targets.is_cuda:
        return targets, torch.arange(targets.numel(), device=targets.device)
    return torch.unique(targets, return_inverse=True)


def augmented_kl(wh: Tensor, targets: Tensor, embedding_weight: Tensor, tau: float, *,
                 detach_target: bool = True) -> Tensor:
    """Mean KL(ỹ_t ‖ ŷ_t) over tokens, in nats per token.

    Args:
        wh: ``(N, V)`` float, W h_t **without bias** (Decision A3: eq. 3.1 as printed).
        targets: ``(N,)`` int64, the target words y*_t.
        embedding_weight: ``(V, D)`` float, Lᵀ.
        tau: temperature > 0 of both distributions.
        detach_target: True (Decision A2) treats ỹ as a fixed target (stop-gradient into L
            through ỹ), which gives the gradient (ŷ − ỹ)/τ of eq. 3.4 w.r.t. ``wh``. False
            lets the gradient flow through ỹ into the embedding (ablation).

    Returns:
        Scalar tensor ≥ 0.

    Raises:
        ValueError: on ``tau <= 0`` or mismatched shapes.

    Computed without cancellation, so that float32 holds when the KL is tiny (Figure 1's
    τ²|V| · J^aug at τ = 40 multiplies it by 1.6·10⁷): with tempered logits ``s = Lᵀu/τ``
    and ``a = W h/τ``, ``d = s − a`` centred under ŷ (Σ ŷ d = 0),
    ``KL = Σ (ỹ − ŷ) d − log1p(Σ ŷ (expm1(d) − d))``, both terms O(d²); the textbook
    ``Σ ỹ log ỹ − Σ ỹ log ŷ`` subtracts two numbers near −log |V| (float32 error ~10⁻⁶ nats).

    Paper: eqs. 3.1, 3.2, 3.6, 3.7. ỹ is computed once per distinct target word of the
    batch and gathered (``distinct_targets``; the rows of equal targets are equal).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if wh.dim() != 2 or targets.shape != wh.shape[:1] or embedding_weight.shape[0] != wh.shape[1]:
        raise ValueError(
            f"expected wh (N, V), targets (N,), embedding_weight (V, D); got "
            f"{tuple(wh.shape)}, {tuple(targets.shape)}, {tuple(embedding_weight.shape)}"
        )
    words, index = distinct_targets(targets)
    lt = embedding_weight.detach() if detach_target else embedding_weight
    scores = lt[words] @ (lt.t() / tau)  # (U, V): s = Lᵀ u / τ per distinct target
    scores = scores.to(lt.dtype)  # fp32 also when autocast ran the matmul in bf16
    target = torch.softmax(scores, dim=-1).index_select(0, index)  # ỹ
    kl, _ = kl_rows(target, scores.index_select(0, index), wh / tau)
    return kl.mean()


def kl_rows(target: Tensor, scores: Tensor, tempered: Tensor) -> tuple[Tensor, Tensor]:
    """KL(ỹ ‖ ŷ) per row without cancellation, and ŷ: the formula of :func:`augmented_kl`.

    Args:
        target: ``(N, V)`` ỹ = softmax(``scores``) (given: callers compute it once per
            distinct word). scores: ``(N, V)`` s = Lᵀ u / τ. tempered: ``(N, V)`` a = W h / τ.

    Returns:
        ``(kl (N,), ŷ (N, V))`` in the inputs' dtype, differentiable in all three.

    With ``d = s − a`` centred under ŷ (Σ ŷ d = 0): ``KL = Σ (ỹ − ŷ) d −
    log1p(Σ ŷ (expm1(d) − d))``, both terms O(d²). Paper: eq. 3.2.
    """
    model = torch.softmax(tempered, dim=-1)  # ŷ
    d = scores - tempered  # log(ỹ/ŷ) up to a constant per row
    d = d - (model * d).sum(-1, keepdim=True)
    spread = (model * (torch.expm1(d) - d)).sum(-1)  # Σ ŷ e^d − 1 ≥ 0
    return ((target - model) * d).sum(-1) - torch.log1p(spread), model


@dataclass(frozen=True)
class LossParts:
    """The training objective and its parts.

    ``objective`` is what SGD minimises (Decision T2): J^tot summed over the bptt steps and
    averaged over the batch, i.e. ``(ce + alpha * aug_kl) * n_tokens / batch_size``.
    ``ce`` and ``aug_kl`` are per-token means in nats (detached, for logging).
    """

    objective: Tensor
    ce: Tensor
    aug_kl: Tensor
    n_tokens: int


def lm_loss(wh: Tensor, bias: Tensor | None, targets: Tensor, embedding_weight: Tensor, *,
            alpha: float, tau: float, detach_target: bool = True,
            aug_bias: bool = False) -> LossParts:
    """J^tot = J + alpha · J^aug (eq. 3.3) for a ``(T, B)`` segment, as ``LossParts``.

    Args:
        wh: ``(T, B, V)`` float32, W h_t without bias (``RNNLM.forward``; under bf16 autocast
            ``train_step`` casts its bf16 output up first: the losses are fp32).
        bias: ``(V,)`` output bias b, or None (tied: b = 0).
        targets: ``(T, B)`` int64.
        embedding_weight: ``(V, D)`` the Lᵀ that ỹ is built from (eq. 3.7), used only when
            ``alpha > 0``: the model's embedding, or a copy of it (``Config.frozen_target``).
        alpha: weight of J^aug (≥ 0); 0 skips the augmented term entirely.
        tau, detach_target: as in ``augmented_kl``.
        aug_bias: False (Decision A3): ŷ = softmax(W h / τ). True: ŷ = softmax((W h + b) / τ),
            so b receives J^aug's gradient too (ablation; needs ``bias``).

    Raises:
        ValueError: ``aug_bias`` without a ``bias``.

    With ỹ a fixed target (``detach_target=True``, the default) the loss runs as one fused
    pass over the logits (``FusedLoss``: both softmaxes, the gradient of eq. 3.4 written
    directly); the ablation ``detach_target=False`` runs ``augmented_kl`` under autograd.
    Both give the same numbers (tests/test_loss.py).

    Paper: eqs. 2.4, 3.3, 3.4; Decision T2 (sum over time, mean over batch).
    """
    if aug_bias and bias is None:
        raise ValueError("aug_bias puts b into ŷ, but the model has no output bias")
    batch_size = targets.shape[1]
    wh = wh.reshape(-1, wh.shape[-1])
    targets = targets.reshape(-1)
    n_tokens = targets.numel()
    scale = n_tokens / batch_size  # Decision T2: per-token mean × T
    if alpha > 0 and not detach_target:
        logits = wh if bias is None else wh + bias
        ce = F.cross_entropy(logits, targets)
        aug = augmented_kl(logits if aug_bias else wh, targets, embedding_weight, tau,
                           detach_target=False)
        return LossParts((ce + alpha * aug) * scale, ce.detach(), aug.detach(), n_tokens)
    target = None
    if alpha > 0:
        with torch.no_grad():
            words, index = distinct_targets(targets)
            target = (augmented_target_log_probs(embedding_weight, words, tau), index)
    stats = torch.empty(2, dtype=wh.dtype, device=wh.device)  # filled with (ce, aug_kl)
    objective = FusedLoss.apply(wh, bias, targets, target, alpha, tau, scale, stats, aug_bias)
    return LossParts(objective, stats[0], stats[1], n_tokens)


class FusedLoss(torch.autograd.Function):
    """``scale · (CE(wh + b) + alpha · KL(ỹ ‖ softmax(wh / tau)))`` with its gradient.

    The gradient w.r.t. ``wh`` is ``scale / N · [softmax(wh + b) − onehot(y)
    + alpha / tau · (softmax(wh / tau) − ỹ)]`` (eqs. 2.4 and 3.4), computed in the forward
    pass from the same buffers, so each (N, V) softmax is evaluated once and no autograd graph
    is built over the logits. ỹ is a constant (Decision A2), given as ``(log ỹ per distinct
    target (U, V), index (N,))``. The entropy of ỹ enters only the logged KL. With
    ``aug_bias`` ŷ is ``softmax((wh + b) / tau)`` and b's gradient holds both terms.
    """

    @staticmethod
    def forward(ctx, wh, bias, targets, target, alpha, tau, scale, stats, aug_bias):
        # fp32 throughout, also inside a bf16 autocast region (lmtie.precision): autocast
        # would run vecdot in bf16; wh arrives in fp32 (train_step casts it up)
        with torch.autocast(wh.device.type, enabled=False):
            return FusedLoss._forward(ctx, wh, bias, targets, target, alpha, tau, scale,
                                       stats, aug_bias)

    @staticmethod
    def _forward(ctx, wh, bias, targets, target, alpha, tau, scale, stats, aug_bias):
        n = targets.numel()
        rows = torch.arange(n, device=targets.device)
        logits = wh if bias is None else wh + bias
        grad = torch.log_softmax(logits, dim=-1)
        del logits
        ce = -grad[rows, targets].mean()
        grad.exp_()  # softmax(wh + b)
        grad[rows, targets] -= 1.0
        # Decision A3: b enters J only (eq. 3.1 has no bias), so its gradient is J's alone
        grad_bias = grad.sum(0).mul_(scale / n) if bias is not None and not aug_bias else None
        aug = ce.new_zeros(())
        if target is not None:
            log_target, index = target
            target_probs = log_target.exp()
            neg_entropy = (target_probs * log_target).sum(-1)  # (U,) Σ ỹ log ỹ
            target_rows = target_probs.index_select(0, index)  # (N, V) ỹ
            tempered = (wh + bias if aug_bias else wh) / tau
            log_model = torch.log_softmax(tempered, dim=-1)  # (N, V) log ŷ
            del tempered
            aug = (neg_entropy.index_select(0, index)
                   - torch.linalg.vecdot(target_rows, log_model)).mean()
            model = log_model.exp_()
            grad.add_(model.sub_(target_rows), alpha=alpha / tau)  # eq. 3.4
        grad.mul_(scale / n)
        if aug_bias:  # b in ŷ too: its gradient is the logits' gradient summed over tokens
            grad_bias = grad.sum(0)
        ctx.save_for_backward(grad, grad_bias)
        stats.copy_(torch.stack([ce, aug]))
        return (ce + alpha * aug) * scale

    @staticmethod
    def backward(ctx, grad_output):
        grad, grad_bias = ctx.saved_tensors
        if grad_bias is not None:
            grad_bias = grad_bias * grad_output
        # in place: the saved (N, V) buffer is used once (no double backward through a loss)
        return grad.mul_(grad_output), grad_bias, None, None, None, None, None, None, None
