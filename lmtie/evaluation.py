"""Evaluation: the perplexity of a model over a token stream, state carried across segments.

Paper: Sec. 2 (perplexity); Decision E1 of PAPER.md (test: batch 1, whole stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
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
    was_training = model.training
    model.eval()
    data = data.to(model.embedding.weight.device)
    state = model.init_state(data.shape[1])
    nll = torch.zeros((), dtype=torch.float64, device=data.device)
    p_unk = torch.zeros_like(nll)
    ranks = torch.zeros_like(nll)
    batches = tqdm(bptt_batches(data, bptt), total=num_bptt_batches(data, bptt),
                   desc="evaluate", disable=not progress, leave=False)
    for inputs, targets in batches:
        wh, state = model(inputs, state)
        logits = (wh if model.bias is None else wh + model.bias).flatten(0, 1)
        log_probs = torch.log_softmax(logits, dim=-1)
        target_lp = log_probs.gather(1, targets.reshape(-1, 1))
        nll -= target_lp.sum()
        if unk_id is not None:
            p_unk += log_probs[:, unk_id].exp().sum()
            ranks += (log_probs > target_lp).sum() + targets.numel()
    model.train(was_training)
    n = data.shape[0] * data.shape[1] - data.shape[1]
    stats = {}
    if unk_id is not None:
        stats = {"mean_p_unk": p_unk.item() / n, "mean_target_rank": ranks.item() / n}
    return EvalResult(nll.item(), n, perplexity(nll.item(), n), **stats)
