"""Loss numbers against hand-written references (docs/paper.md §2)."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmtie import loss
from lmtie.loss import augmented_kl, lm_loss


def naive_kl(wh, targets, emb, tau):
    """Per-token loop, float64, straight from eqs. 3.1, 3.2, 3.6, 3.7."""
    total = 0.0
    for n in range(wh.shape[0]):
        u = emb[targets[n]].double()  # u_t = L y*_t
        target = torch.softmax(emb.double() @ u / tau, 0)  # ỹ = softmax(Lᵀ u / τ)
        model = torch.softmax(wh[n].double() / tau, 0)  # ŷ = softmax(W h / τ)
        total += float((target * (target.log() - model.log())).sum())
    return total / wh.shape[0]


@pytest.mark.parametrize("tau", [0.5, 1.0, 20.0])
def test_augmented_kl_equals_naive_loop(batch, tau):
    wh, targets, emb = batch
    assert augmented_kl(wh, targets, emb, tau).item() == pytest.approx(
        naive_kl(wh, targets, emb, tau), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("tau", [10.0, 40.0])
def test_float32_holds_when_the_kl_is_tiny(tau):
    """Figure 1's regime: unit word vectors, |V| = 10,000, W h close to Lᵀ u. The float32 KL
    matches a float64 evaluation of eq. 3.2 although it is ~10⁻⁸ nats (τ²|V| scales it up)."""
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(10_000, 300, generator=g), dim=1)
    targets = torch.randint(0, 10_000, (64,), generator=g)
    wh = emb[targets] @ emb.t() + 0.05 * torch.randn(64, 10_000, generator=g)
    e, w = emb.double(), wh.double()
    log_target = torch.log_softmax(e[targets] @ e.t() / tau, -1)
    reference = (log_target.exp() * (log_target - torch.log_softmax(w / tau, -1))).sum(-1)
    ours = augmented_kl(wh, targets, emb, tau).item()
    assert reference.mean().item() < 2e-5  # the textbook formula in float32: 0.2-3 % off
    assert ours == pytest.approx(reference.mean().item(), rel=1e-5)


def test_augmented_kl_nonnegative_and_zero_at_target(batch):
    wh, targets, emb = batch
    assert augmented_kl(wh, targets, emb, 2.0).item() > 0.01
    wh_star = emb[targets] @ emb.t()  # W h_t = Lᵀ u_t  =>  ŷ = ỹ
    assert augmented_kl(wh_star, targets, emb, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_is_eq_3_4(batch):
    wh, targets, emb = batch
    tau = 3.0
    wh = wh.double().requires_grad_()
    augmented_kl(wh, targets, emb.double(), tau).backward()
    target = torch.softmax(emb.double()[targets] @ emb.double().t() / tau, -1)
    model = torch.softmax(wh.detach() / tau, -1)
    expected = (model - target) / tau / wh.shape[0]  # (ŷ − ỹ)/τ per token, mean over N
    torch.testing.assert_close(wh.grad, expected)


def test_gradcheck_float64(batch):
    wh, targets, emb = batch
    wh = wh[:5].double().requires_grad_()
    emb = emb.double().requires_grad_()
    targets = targets[:5]
    assert torch.autograd.gradcheck(
        lambda w, e: augmented_kl(w, targets, e, 1.5, detach_target=False), (wh, emb))


def test_stop_gradient_through_target(batch):
    wh, targets, emb = batch
    wh = wh.clone().requires_grad_()
    emb = emb.clone().requires_grad_()
    augmented_kl(wh, targets, emb, 2.0, detach_target=True).backward()
    assert emb.grad is None  # ỹ is a fixed target (Decision A2)
    assert wh.grad.abs().sum() > 0
    augmented_kl(wh, targets, emb, 2.0, detach_target=False).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_alpha_zero_is_plain_cross_entropy(batch):
    wh, targets, emb = batch
    T, B = 3, 4
    bias = torch.randn(wh.shape[1])
    parts = lm_loss(wh.reshape(T, B, -1), bias, targets.reshape(T, B), emb, alpha=0.0, tau=20.0)
    logp = torch.log_softmax((wh + bias).double(), -1)
    ce = -sum(logp[n, targets[n]] for n in range(len(targets))) / len(targets)
    assert parts.ce.item() == pytest.approx(float(ce), rel=1e-6)
    assert parts.aug_kl.item() == 0.0
    # Decision T2: summed over the T steps, averaged over the batch
    assert parts.objective.item() == pytest.approx(float(ce) * T, rel=1e-6)


def test_total_loss_is_ce_plus_alpha_kl(batch):
    wh, targets, emb = batch
    parts = lm_loss(wh.reshape(3, 4, -1), None, targets.reshape(3, 4), emb, alpha=13.0, tau=20.0)
    ce = F.cross_entropy(wh, targets).item()
    kl = naive_kl(wh, targets, emb, 20.0)
    assert parts.aug_kl.item() == pytest.approx(kl, rel=1e-5)
    assert parts.objective.item() == pytest.approx((ce + 13.0 * kl) * 3, rel=1e-5)


def test_bad_inputs(batch):
    wh, targets, emb = batch
    with pytest.raises(ValueError, match="tau"):
        augmented_kl(wh, targets, emb, 0.0)
    with pytest.raises(ValueError, match="expected wh"):
        augmented_kl(wh, targets[:-1], emb, 1.0)
    assert math.isfinite(augmented_kl(wh, targets, emb, 1.0).item())


@pytest.mark.parametrize("alpha", [0.0, 13.0])
@pytest.mark.parametrize(("with_bias", "aug_bias"), [(False, False), (True, False), (True, True)])
def test_fused_loss_equals_straightforward_autograd(batch, alpha, with_bias, aug_bias):
    """The fused training path (ỹ detached) = CE + alpha · augmented_kl under autograd, with
    ŷ = softmax(W h / τ) (Decision A3) or softmax((W h + b) / τ) (``aug_bias``)."""
    wh, targets, emb = batch
    T, B = 3, 4
    bias = torch.randn(wh.shape[1], dtype=torch.float64) if with_bias else None
    wh = wh.double()
    emb = emb.double()

    def leaves():
        w = wh.clone().requires_grad_()
        b = None if bias is None else bias.clone().requires_grad_()
        return w, b

    w1, b1 = leaves()
    fused = lm_loss(w1.reshape(T, B, -1), b1, targets.reshape(T, B), emb, alpha=alpha, tau=2.0,
                    aug_bias=aug_bias)
    fused.objective.backward()
    w2, b2 = leaves()
    ce = F.cross_entropy(w2 if b2 is None else w2 + b2, targets)
    aug = augmented_kl(w2 + b2 if aug_bias else w2, targets, emb, 2.0)
    ((ce + alpha * aug) * T).backward()
    assert fused.objective.item() == pytest.approx(((ce + alpha * aug) * T).item(), rel=1e-12)
    assert fused.ce.item() == pytest.approx(ce.item(), rel=1e-12)
    assert fused.aug_kl.item() == pytest.approx(aug.item() if alpha else 0.0, rel=1e-12)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-10, atol=1e-12)
    if with_bias:
        torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-10, atol=1e-12)


def test_bias_in_the_model_distribution(batch):
    """aug_bias: b's gradient gains alpha/τ · Σ (ŷ − ỹ) with ŷ = softmax((W h + b)/τ) (eq. 3.4
    with b in the logits), on the fused and on the autograd (no stop-gradient) path; a loss
    without a bias refuses it."""
    wh, targets, emb = batch
    wh, emb = wh.double(), emb.double()
    bias = torch.linspace(-2, 2, wh.shape[1], dtype=torch.float64)
    T, B, alpha, tau = 3, 4, 13.0, 2.0
    model = torch.softmax((wh + bias) / tau, -1)
    target = torch.softmax(emb[targets] @ emb.t() / tau, -1)
    onehot = F.one_hot(targets, wh.shape[1]).double()
    expected = (torch.softmax(wh + bias, -1) - onehot + alpha / tau * (model - target)).sum(0) / B
    for detach in (True, False):
        b = bias.clone().requires_grad_()
        lm_loss(wh.reshape(T, B, -1), b, targets.reshape(T, B), emb, alpha=alpha, tau=tau,
                detach_target=detach, aug_bias=True).objective.backward()
        torch.testing.assert_close(b.grad, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="no output bias"):
        lm_loss(wh.reshape(T, B, -1), None, targets.reshape(T, B), emb, alpha=alpha, tau=tau,
                aug_bias=True)


def test_ablation_path_lets_gradient_reach_the_embedding(batch):
    wh, targets, emb = batch
    emb = emb.clone().requires_grad_()
    parts = lm_loss(wh.reshape(3, 4, -1), None, targets.reshape(3, 4), emb, alpha=1.0, tau=2.0,
                    detach_target=False)
    parts.objective.backward()
    assert emb.grad.abs().sum() > 0


def test_per_token_targets_give_the_same_kl(batch, monkeypatch):
    """The CUDA path of distinct_targets (every target, no unique) computes the same loss."""
    wh, targets, emb = batch
    expected = augmented_kl(wh, targets, emb, 2.0).item()
    words, index = loss.distinct_targets(targets)
    assert len(words) < len(targets) and torch.equal(words[index], targets)
    monkeypatch.setattr(loss, "distinct_targets",
                        lambda t: (t, torch.arange(t.numel())))
    assert augmented_kl(wh, targets, emb, 2.0).item() == pytest.approx(expected, rel=1e-6)
    parts = lm_loss(wh.reshape(3, 4, -1), None, targets.reshape(3, 4), emb, alpha=1.0, tau=2.0)
    assert parts.aug_kl.item() == pytest.approx(expected, rel=1e-6)
