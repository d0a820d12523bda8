"""--precision bf16: autocast runs the matmuls in bf16, the losses and the state stay fp32, the
run is named apart; fp32 steps are exactly what they were before."""

from pathlib import Path

import pytest
import torch

from lmtie import identity, loss, precision, settings, train
from lmtie.config import make_config
from lmtie.loss import lm_loss
from lmtie.model import RNNLM

CPU = torch.device("cpu")


def tiny(variant="real", **overrides):
    config = make_config("ptb", "small", variant, **overrides)
    return config.replace(embedding_dim=16, hidden_size=16, batch_size=3, bptt=6)


def setup(config, vocab_size=40):
    torch.manual_seed(0)
    model = RNNLM(vocab_size, config)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(0, vocab_size, (config.bptt + 1, config.batch_size), generator=g)
    return model, optimizer, batch[:-1], batch[1:]


def test_bf16_runs_are_named_apart_and_are_no_ablation():
    config = make_config("ptb", "small", "vd", precision="bf16")
    assert config.run_id == "ptb-small-vd-seed1-bf16"
    assert config.replace(suffix="e10").run_id == "ptb-small-vd-seed1-e10-bf16"
    assert make_config("ptb", "small", "vd").run_id == "ptb-small-vd-seed1"  # fp32: unchanged
    with pytest.raises(ValueError, match="precision"):
        make_config("ptb", "small", "vd", precision="fp16")
    cli_config = settings.parse_train_flags("--variant real --epochs 10 --precision bf16")
    assert cli_config.run_id == "ptb-small-real-seed1-e10-bf16"
    assert not cli_config.valid_only  # a numerics setting, not a change of model or loss
    assert settings.train_command(cli_config).endswith("--epochs 10 --suffix e10 --precision bf16")
    # beside its fp32 base in the report's ablations table
    assert settings.describe_change(cli_config, make_config("ptb", "small", "real")) == (
        "10 epochs, bf16 matmuls")


def test_fp32_runs_keep_the_fingerprint_they_had_before_precision_existed():
    """Adding the precision setting orphans no run: an fp32 run's fingerprint (its checkpoint
    folder's name) is the one computed before the setting existed; a bf16 run has its own."""
    sha = {"train": "a", "valid": "b", "test": "c"}
    config = make_config("ptb", "small", "real", seed=2, suffix="smoke")
    before = "75d06034e89a1d22e18156e2c07f36f80c68887dc2bc11ab7a015f2d4b2309db"  # main@0d817f5
    assert identity.fingerprint(config, sha) == before
    assert identity.fingerprint(config.replace(precision="bf16"), sha) != before


def test_fp32_step_is_the_plain_step_bit_for_bit():
    """train_step with precision fp32 equals forward, lm_loss, backward, clip, SGD written out
    without any of the precision code: the fp32 training math is unchanged."""
    config = tiny("real", dropout=0.3)
    model, optimizer, inputs, targets = setup(config)
    state = model.init_state(config.batch_size)
    parts, new_state = train.train_step(model, optimizer, inputs, targets, state, config,
                                        torch.Generator().manual_seed(2))

    ref, ref_optimizer, _, _ = setup(config)
    masks = ref.sample_masks(config.batch_size, torch.Generator().manual_seed(2))
    wh, ref_state = ref(inputs, ref.init_state(config.batch_size), masks)
    ref_parts = lm_loss(wh, ref.bias, targets, ref.embedding.weight, alpha=config.alpha,
                        tau=config.tau)
    ref_parts.objective.backward()
    torch.nn.utils.clip_grad_norm_(ref_optimizer.param_groups[0]["params"], config.clip_norm)
    ref_optimizer.step()
    assert torch.equal(parts.objective, ref_parts.objective)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(new_state, ref_state, strict=True))


def test_bf16_autocast_runs_the_matmuls_in_bf16():
    config = tiny("vd", dropout=0.3)
    model, _, inputs, _ = setup(config)
    masks = model.sample_masks(config.batch_size, torch.Generator().manual_seed(0))
    state = model.init_state(config.batch_size)
    with precision.autocast("bf16", CPU):
        wh, (h, c) = model(inputs, state, masks)  # LSTM (oneDNN on the CPU) and projection
        plain, _ = model(inputs, state)  # evaluation's fused nn.LSTM path too
        log_target = loss.augmented_target_log_probs(model.embedding.weight, inputs[0], 20.0)
    assert wh.dtype == plain.dtype == h.dtype == c.dtype == torch.bfloat16
    assert log_target.dtype == torch.float32  # ỹ's matmul in bf16, its softmax in fp32
    with precision.autocast("fp32", CPU):
        assert model(inputs, state, masks)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        precision.autocast("fp16", CPU)


@pytest.mark.parametrize("variant", ["vd", "real"])
def test_bf16_step_keeps_losses_state_and_parameters_fp32(variant, monkeypatch):
    config = tiny(variant, dropout=0.3)
    seen = []
    fused = loss.FusedLoss.apply

    def spy(wh, *args):
        seen.append((wh.dtype, torch.is_autocast_enabled("cpu")))
        return fused(wh, *args)

    monkeypatch.setattr(loss.FusedLoss, "apply", spy)
    steps = {}
    for name in ("fp32", "bf16"):
        model, optimizer, inputs, targets = setup(config.replace(precision=name))
        state = model.init_state(config.batch_size)
        parts, state = train.train_step(model, optimizer, inputs, targets, state,
                                        config.replace(precision=name),
                                        torch.Generator().manual_seed(3))
        steps[name] = (parts, state, model)
    assert seen == [(torch.float32, False), (torch.float32, True)]  # fp32 logits in both
    parts, (h, c), model = steps["bf16"]
    assert h.dtype == c.dtype == torch.float32  # the carried state is cast back
    assert parts.objective.dtype == parts.ce.dtype == torch.float32
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
               for p in model.parameters())
    # the same step in bf16: bf16's 8-bit mantissa moves the loss by far less than a percent
    assert parts.ce.item() == pytest.approx(steps["fp32"][0].ce.item(), rel=5e-3)
    assert parts.aug_kl.item() == pytest.approx(steps["fp32"][0].aug_kl.item(), rel=5e-2,
                                                abs=1e-6)


def test_native_bf16_follows_the_cpu_flags():
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    expected = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert precision.native_bf16(CPU) is expected
