"""Training precision: ``fp32`` (the default, and the reproduction's) or ``bf16`` autocast.

With ``bf16`` a training step runs under ``torch.autocast(..., dtype=torch.bfloat16)``: the
matmuls (the LSTM, whose CPU kernel is oneDNN's ``mkldnn_rnn_layer`` and runs in bf16 under
autocast, the projection W h and the ỹ scores Lᵀu) take bf16 inputs and return bf16. Everything
that accumulates stays fp32: the logits are cast up before the softmaxes (``train.train_step``;
``loss.FusedLoss`` runs with autocast off), the carried LSTM state is cast back to fp32 between
segments, and the parameters, their gradients and the optimiser state are fp32 (autocast casts
copies of the weights; no loss scaling is needed with bf16's fp32 range). Evaluation is fp32.

Deviation: none of this is in the paper; a speed option (``--precision bf16``) whose runs get a
``-bf16`` run_id suffix and are compared with fp32 by their validation curves.
"""

from __future__ import annotations

import contextlib

import torch


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass and loss run in: bf16 autocast on
    ``device``'s type for ``"bf16"``, nothing for ``"fp32"``.

    Raises:
        ValueError: an unknown precision (``lmtie.config.PRECISIONS``).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; choose fp32 or bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively: a CUDA device that supports it (compute
    capability 8.0 or later), or a CPU with AVX512-BF16 or AMX (as torch's cpuinfo reports
    them; oneDNN's own ``_is_mkldnn_bf16_supported`` also says yes for plain AVX512, where it
    emulates bf16). Elsewhere bf16 is emulated and slower than fp32. Raises: nothing."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
