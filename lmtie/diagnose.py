"""How a trained model loses its validation perplexity: evaluation protocol, calibration,
ranking and the tail of the loss, measured on one checkpoint (``lmtie diagnose``).

Validation set only: these numbers choose between readings of the paper, so the test set
plays no part. The entries are kept per checkpoint epoch in the run's ``diagnostics.json``.

Paper: Sec. 6.3-6.4 (our addition: the evidence behind "why +REAL fails", issue 13).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmtie import atomic, identity, runs, schema
from lmtie.config import Config
from lmtie.data import Corpus, batchify
from lmtie.device import resolve_device
from lmtie.evaluation import evaluate, stream_logits
from lmtie.model import RNNLM

BATCH_SIZES = (1, 10, 20)  # the test protocol's batch (E1) ... the validation batch
TEMPERATURES = (0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0)  # logits / T (calibration)
RANK_CUTS = (1, 10, 100, 1000)  # share of targets ranked at or above each
TAIL_SHARES = (0.01, 0.1)  # the worst 1 % / 10 % of tokens
FREQUENCY_BANDS = ((0, 100), (100, 1000), (1000, 10_000), (10_000, None))  # by train-count rank
CHUNKS = 10  # contiguous pieces of the stream: how much the perplexity moves with the text


@torch.no_grad()
def token_losses(model: RNNLM, data: torch.Tensor, bptt: int,
                 temperatures: tuple[float, ...] = TEMPERATURES) -> dict[str, np.ndarray]:
    """Per-token numbers of an evaluation-mode model over ``data`` (state carried).

    Args:
        data: ``(L, B)`` int64 from ``batchify``. bptt: segment length.
        temperatures: T > 0; the logits (bias included) are divided by each.

    Returns:
        ``targets`` ``(N,)`` int64; ``nll`` ``(N,)`` float64 nats at T = 1; ``rank`` ``(N,)``
        int64 (1 = the model's top word; ties count against the target);
        ``nll_by_temperature`` ``(len(temperatures),)`` float64, the summed NLL at each T;
        ``confidence`` ``(N,)`` float64, the largest probability at T = 1.
        Tokens in the order of ``data``'s columns, segment by segment.

    Raises:
        ValueError: a temperature ≤ 0.
    """
    if any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be > 0, got {temperatures}")
    parts: dict[str, list] = {"targets": [], "nll": [], "rank": [], "confidence": []}
    by_temperature = torch.zeros(len(temperatures), dtype=torch.float64)
    for logits, targets in stream_logits(model, data, bptt):
        log_probs = torch.log_softmax(logits, dim=-1)
        target_lp = log_probs.gather(1, targets[:, None])
        parts["targets"].append(targets)
        parts["nll"].append(-target_lp[:, 0].double())
        parts["rank"].append((log_probs > target_lp).sum(1) + 1)
        parts["confidence"].append(log_probs.amax(1).exp().double())
        for k, t in enumerate(temperatures):
            tempered = torch.log_softmax(logits / t, dim=-1).gather(1, targets[:, None])
            by_temperature[k] -= tempered.double().sum()
    out = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    out["nll_by_temperature"] = by_temperature.numpy()
    return out


def summarise(losses: dict[str, np.ndarray], train_counts: np.ndarray,
              temperatures: tuple[float, ...] = TEMPERATURES) -> dict[str, Any]:
    """The numbers of one diagnostics entry from :func:`token_losses`.

    Args:
        losses: from :func:`token_losses`.
        train_counts: ``(V,)`` how often each word occurs in the training stream (frequency
            bands rank words by it, most frequent first).

    Returns:
        ``perplexity``; ``perplexity_by_temperature`` {T: ppl} and the best T of the grid;
        ``rank`` (mean, median, 90th/99th percentile, share at or above each of
        ``RANK_CUTS``); ``tail`` (share of the total NLL from the worst 1 %/10 % of tokens);
        ``calibration`` (mean confidence, top-1 accuracy); ``bands`` (per frequency band of
        the target: share of tokens, mean NLL); ``chunks`` (the perplexity of each of
        ``CHUNKS`` contiguous, equal pieces of the stream, in stream order: how far one
        model's perplexity moves between stretches of the same held-out text).
    """
    nll, rank = losses["nll"], losses["rank"]
    n = len(nll)
    by_t = {f"{t:g}": math.exp(s / n) for t, s in zip(temperatures, losses["nll_by_temperature"],
                                                        strict=True)}
    ordered = np.sort(nll)[::-1]
    word_rank = np.empty(len(train_counts), dtype=np.int64)
    word_rank[np.argsort(-train_counts, kind="stable")] = np.arange(len(train_counts))
    target_rank = word_rank[losses["targets"]]
    bands = []
    for low, high in FREQUENCY_BANDS:
        inside = (target_rank >= low) & (target_rank < (high or len(train_counts)))
        if inside.any():
            bands.append({"band": f"{low}-{high or len(train_counts)}",
                          "share": float(inside.mean()), "mean_nll": float(nll[inside].mean())})
    return {
        "n_tokens": n,
        "perplexity": math.exp(nll.mean()),
        "perplexity_by_temperature": by_t,
        "best_temperature": float(min(by_t, key=by_t.get)),
        "rank": {"mean": float(rank.mean()), "median": float(np.median(rank)),
                 "p90": float(np.percentile(rank, 90)), "p99": float(np.percentile(rank, 99)),
                 **{f"share_top{c}": float((rank <= c).mean()) for c in RANK_CUTS}},
        "tail": {f"nll_share_worst{s:g}": float(ordered[:max(1, round(s * n))].sum()
                                                 / ordered.sum()) for s in TAIL_SHARES},
        "calibration": {"mean_confidence": float(losses["confidence"].mean()),
                        "top1_accuracy": float((rank == 1).mean())},
        "bands": bands,
        "chunks": [math.exp(piece.mean()) for piece in np.array_split(nll, min(CHUNKS, n))],
    }


def diagnose(run_dir: str | Path, *, checkpoint: str = "last", data_dir: str | Path | None = None,
             checkpoint_dir: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Measure one checkpoint of a run on the validation stream and store the entry in
    ``<run_dir>/diagnostics.json`` (entries kept per epoch; one for the same epoch is
    replaced). Returns the entry.

    The checkpoint must carry the run's fingerprint (:mod:`lmtie.identity`); it is read from
    ``checkpoint_dir``, else the run's keyed folder, else (a run started before fingerprints)
    ``<root>/<run_id>/``, which is left where it is. Only ``diagnostics.json`` is written
    (atomically; nothing else writes it), so a run may be diagnosed while it trains.

    The entry: ``epoch``, ``checkpoint``; ``valid_ppl_by_batch`` {B: ppl} for B in
    ``BATCH_SIZES`` (state carried); ``valid_ppl_state_reset`` (batch 1, the state set to zero
    before every bptt segment: how much the carried state helps); and :func:`summarise` of
    batch 1 (the test protocol, Decision E1) under ``batch1``.

    Raises:
        FileNotFoundError: no ``config.json`` in ``run_dir`` or no such checkpoint.
        ValueError: ``checkpoint`` is not ``last`` or ``best``; the checkpoint is corrupt or
            of another run (names both fingerprints).
    """
    if checkpoint not in ("last", "best"):
        raise ValueError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    run_dir = Path(run_dir)
    config = Config.from_dict(atomic.read_json(run_dir / "config.json"))
    corpus = Corpus(config.corpus, data_dir)
    fp = identity.fingerprint(config, corpus.sha256)
    if checkpoint_dir is None:
        keyed = identity.checkpoint_dir_for(config, fp)
        legacy = keyed.parent / config.run_id
        checkpoint_dir = keyed if (keyed / f"{checkpoint}.pt").is_file() or not (
            legacy / f"{checkpoint}.pt").is_file() else legacy
    path = Path(checkpoint_dir).expanduser() / f"{checkpoint}.pt"
    ckpt = identity.load_own(path, config, fp, corpus.sha256, identity.BEST_KEYS)
    model = RNNLM(len(corpus.vocab), config).to(resolve_device(device))
    runs.load_state(model, ckpt["model"], path)
    by_batch = {str(b): evaluate(model, batchify(corpus.valid, b), config.bptt).perplexity
                for b in BATCH_SIZES}
    one = batchify(corpus.valid, 1)
    reset = sum(evaluate(model, one[start:start + config.bptt + 1], config.bptt).nll
                for start in range(0, one.shape[0] - 1, config.bptt))
    counts = np.bincount(corpus.train.numpy(), minlength=len(corpus.vocab))
    entry = schema.DiagnosticsEntry(
        epoch=ckpt["epoch"], checkpoint=checkpoint, valid_ppl_by_batch=by_batch,
        valid_ppl_state_reset=math.exp(reset / (one.shape[0] - 1)),
        batch1=summarise(token_losses(model, one, config.bptt), counts))
    stored = schema.read_diagnostics(run_dir, config.run_id)
    entries = [e for e in stored.entries if e.epoch != entry.epoch] + [entry]
    schema.write_diagnostics(run_dir, schema.Diagnostics(
        stored.run_id, sorted(entries, key=lambda e: e.epoch)))
    return entry.to_dict()
