"""lmtie.device: the device choice and the machine set up for training; and the CUDA path
(marked ``gpu``; ``make gpu-check`` runs them): cuDNN's fused LSTM with the variational masks
equals an LSTMCell loop, the fused loss equals autograd, a seed draws the same masks on CPU and
GPU, a training step never waits for the device, and a run trains end to end. Without a CUDA
device every ``gpu`` test is skipped, saying so.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import reference_lstm, small_model

from lmtie import atomic, device, loss, train
from lmtie.config import VARIANTS, make_config
from lmtie.loss import augmented_kl, lm_loss
from lmtie.model import RNNLM

CUDA = torch.device("cuda")
_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                              reason="no CUDA device: the CUDA path is tested in code only; run "
                                     "`make gpu-check` on a machine with a GPU")


def on_gpu(test):
    """Mark ``test`` ``gpu``, skipped without a CUDA device."""
    return pytest.mark.gpu(_NO_CUDA(test))


def test_device_choice():
    assert device.resolve_device("cpu") == torch.device("cpu")
    assert device.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device.prepare_device("cpu") == torch.device("cpu")  # mallopt: a no-op otherwise
    with pytest.raises(ValueError, match="cpu"):
        device.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            device.resolve_device("cuda")


@on_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_cudnn_lstm_equals_an_lstmcell_loop(dtype):
    assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
    model, _ = small_model(dropout=0.4)
    model = model.to(CUDA, dtype)
    inputs = torch.randint(0, 50, (7, 3), device=CUDA)
    state = tuple(torch.randn(2, 3, 16, device=CUDA, dtype=dtype, requires_grad=True)
                  for _ in range(2))
    masks = model.sample_masks(3, torch.Generator().manual_seed(5)).to(dtype)
    assert masks.is_cuda and (masks == 0).any()
    weights = [torch.randn(s, device=CUDA, dtype=dtype) for s in ((7, 3, 50), (2, 3, 16),
                                                                   (2, 3, 16))]
    params = [p for p in model.parameters() if p.requires_grad]

    def values_and_gradients(outputs):
        wh, (h, c) = outputs
        total = sum((w * o).sum() for w, o in zip(weights, (wh, h, c), strict=True))
        return [wh, h, c, *torch.autograd.grad(total, [*params, *state],
                                               materialize_grads=True)]

    ours = values_and_gradients(model(inputs, state, masks))
    hidden, new_state = reference_lstm(model, model.embedding(inputs), state, masks)
    expected = values_and_gradients((hidden @ model.projection.weight.t(), new_state))
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {
        "rtol": 1e-9, "atol": 1e-11}
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, **tolerance)


@on_gpu
@pytest.mark.parametrize("alpha", [0.0, 13.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_loss_on_cuda_equals_autograd(alpha, with_bias):
    g = torch.Generator().manual_seed(0)
    T, B, V, D = 5, 4, 300, 16
    emb = torch.randn(V, D, generator=g, dtype=torch.float64).to(CUDA)
    wh = (3 * torch.randn(T * B, V, generator=g, dtype=torch.float64)).to(CUDA)
    targets = torch.randint(0, V, (T * B,), generator=g).to(CUDA)
    targets[:4] = targets[4]  # repeated targets: every target is its own row on CUDA
    bias = torch.randn(V, generator=g, dtype=torch.float64).to(CUDA) if with_bias else None

    def leaves():
        return (wh.clone().requires_grad_(),
                None if bias is None else bias.clone().requires_grad_())

    w1, b1 = leaves()
    fused = lm_loss(w1.reshape(T, B, V), b1, targets.reshape(T, B), emb, alpha=alpha, tau=2.0)
    fused.objective.backward()
    w2, b2 = leaves()
    ce = F.cross_entropy(w2 if b2 is None else w2 + b2, targets)
    expected = (ce + alpha * augmented_kl(w2, targets, emb, 2.0)) * T
    expected.backward()
    torch.testing.assert_close(fused.objective, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-10, atol=1e-12)
    if with_bias:
        torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-10, atol=1e-12)


@on_gpu
def test_a_seed_draws_the_same_masks_on_cpu_and_gpu():
    config = make_config("ptb", "small", "vd")
    cpu_model = RNNLM(100, config)
    gpu_model = RNNLM(100, config).to(CUDA)
    for seed in (1, 2):
        on_cpu = cpu_model.sample_masks(20, torch.Generator().manual_seed(seed))
        on_gpu = gpu_model.sample_masks(20, torch.Generator().manual_seed(seed))
        assert on_gpu.is_cuda and torch.equal(on_cpu, on_gpu.cpu())


@on_gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_training_step_never_waits_for_the_device(variant, precision):
    """torch.cuda.set_sync_debug_mode("error") turns any host-device synchronisation (an
    .item(), a blocking copy, torch.unique's size) into an error: a step queues its kernels
    and returns, so the host stays ahead of the GPU."""
    config = make_config("ptb", "small", variant, precision=precision)
    torch.manual_seed(0)
    model = RNNLM(10_000, config).to(CUDA)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 10_000, (36 * 4, config.batch_size), device=CUDA)
    state = model.init_state(config.batch_size)
    for step in range(4):
        inputs, targets = data[step * 36:step * 36 + 35], data[step * 36 + 1:step * 36 + 36]
        if step >= 2:  # after the warm-up (cuDNN plans, allocator)
            torch.cuda.set_sync_debug_mode("error")
        try:
            parts, state = train.train_step(model, optimizer, inputs, targets, state, config,
                                            generator)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(parts.objective).item() and state[0].dtype == torch.float32


@on_gpu
def test_bf16_on_cuda_keeps_the_loss_in_fp32(monkeypatch):
    seen = []
    fused = loss.FusedLoss.apply
    monkeypatch.setattr(loss.FusedLoss, "apply",
                        lambda wh, *args: seen.append(wh.dtype) or fused(wh, *args))
    results = {}
    for precision in ("fp32", "bf16"):
        config = make_config("ptb", "small", "real", precision=precision)
        torch.manual_seed(0)
        model = RNNLM(10_000, config).to(CUDA)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
        batch = torch.randint(0, 10_000, (36, 20), generator=torch.Generator().manual_seed(1))
        batch = batch.to(CUDA)
        parts, _ = train.train_step(model, optimizer, batch[:-1], batch[1:],
                                    model.init_state(20), config,
                                    torch.Generator().manual_seed(2))
        results[precision] = parts.ce.item()
    assert seen == [torch.float32, torch.float32]
    assert results["bf16"] == pytest.approx(results["fp32"], rel=5e-3)


@on_gpu
@pytest.mark.parametrize(("variant", "precision"), [("al", "fp32"), ("real", "bf16")])
def test_a_run_trains_end_to_end_on_cuda(tmp_path, tiny_ptb, variant, precision):
    """fit on the GPU, validation and test, the analyses (subspace distance when untied,
    ỹ entropy, logit alignment, prediction mass) included."""
    config = make_config("ptb", "small", variant, epochs=2, suffix="cuda", precision=precision)
    run_dir = train.fit(config, data_dir=tiny_ptb, results_dir=tmp_path,
                        checkpoint_dir=tmp_path / "ckpt", device="cuda", progress=False)
    final = atomic.read_json(run_dir / "final.json")
    assert final["device"].startswith("cuda") and final["epochs_run"] == 2
    assert atomic.read_json(run_dir / "env.json")["cuda_device"]
    assert all(math.isfinite(final[k]) and final[k] > 1 for k in ("valid_ppl", "test_ppl"))
    assert len(atomic.read_json(run_dir / "predictions.json")["phrases"]) == 4
