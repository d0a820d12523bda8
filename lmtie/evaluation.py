"""Evaluation: the perplexity of a model over a token stream, state carried across segments.

Paper: Sec. 2 (perplexity); Decision E1 of PAPER.md (test: batch 1, whole stream).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from lmtie.data import bptt_batches, num_bptt_batches
from lmtie.model import RNNLM


def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)``: total cross-entropy in nats over the number of targets.

    Raises:
        ValueError: ``n_tokens <= 0``.

    Paper: Sec. 2; never averaged per batch (one of the Keras repo's bugs).
    """
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    return math.exp(total_nll / n_tokens)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in evaluation mode (no dropout) inside the block, its mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def stream_logits(model: RNNLM, data: Tensor, bptt: int, *, bias: bool = True
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """The evaluation-mode model's logits over ``data``, segment by segment, with the state
    carried across segments (Zaremba et al.; Decision E1 with batch 1).

    Args:
        data: ``(L, B)`` int64 from ``batchify``. bptt: segment length.
        bias: add the output bias b (eq. 2.3), if the model has one; False gives W h_t.

    Yields:
        ``(logits (T·B, V) float, targets (T·B,) int64)`` on the model's device.
    """
    data = data.to(model.embedding.weight.device)
    with eval_mode(model):
        state = model.init_state(data.shape[1])
        for inputs, targets in bptt_batches(data, bptt):
            wh, state = model(inputs, state)
            if bias and model.bias is not None:
                wh = wh + model.bias
            yield wh.flatten(0, 1), targets.reshape(-1)


@dataclass(frozen=True)
class EvalResult:
    """Evaluation of a stream: total NLL (nats), token count, perplexity, and optionally the
    mean p(<unk>) the model gives and the mean rank (1 = top) of the target word."""

    nll: float
    n_tokens: int
    perplexity: float
    mean_p_unk: float | None = None
    mean_target_rank: float | None = None


@torch.no_grad()
def evaluate(model: RNNLM, data: torch.Tensor, bptt: int, *, unk_id: int | None = None,
             progress: bool = False) -> EvalResult:
    """Perplexity of ``model`` (no dropout) over ``data``, state carried across segments.

    Args:
        data: ``(L, B)`` int64 from ``batchify`` (B = 1 for Decision E1's test protocol).
        bptt: segment length (does not change the result beyond float rounding).
        unk_id: id of ``<unk>``; when given, also the mean p(<unk>) and mean target rank.

    Paper: Decision E1 (test: batch 1, whole stream, state carried).
    """
    nll = torch.zeros((), dtype=torch.float64, device=model.embedding.weight.device)
    p_unk = torch.zeros_like(nll)
    ranks = torch.zeros_like(nll)
    batches = tqdm(stream_logits(model, data, bptt), total=num_bptt_batches(data, bptt),
                   desc="evaluate", disable=not progress, leave=False)
    for logits, targets in batches:
        log_probs = torch.log_softmax(logits, dim=-1)
        target_lp = log_probs.gather(1, targets[:, None])
        nll -= target_lp.sum()
        if unk_id is not None:
            p_unk += log_probs[:, unk_id].exp().sum()
            ranks += (log_probs > target_lp).sum() + targets.numel()
    n = data.shape[0] * data.shape[1] - data.shape[1]
    stats = {}
    if unk_id is not None:
        stats = {"mean_p_unk": p_unk.item() / n, "mean_target_rank": ranks.item() / n}
    return EvalResult(nll.item(), n, perplexity(nll.item(), n), **stats)
