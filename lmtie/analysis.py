"""Analyses of trained models: ỹ's entropy, how W h follows Lᵀu, where the probability goes,
next-word predictions (the distance between span(Lᵀ) and span(W): :mod:`lmtie.spans`); and the
one place that says which of them a run records: :func:`epoch_numbers` (each
``metrics.jsonl`` row) and :func:`test_statistics` (``test_statistics.json``). Adding a number:
a function here, its call in one of those two, and its field in :mod:`lmtie.schema`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lmtie import reference
from lmtie.config import Config
from lmtie.data import Corpus, Vocabulary, batchify
from lmtie.evaluation import EvalResult, eval_mode, evaluate, stream_logits
from lmtie.loss import augmented_target_log_probs
from lmtie.model import RNNLM
from lmtie.schema import TestStatistics
from lmtie.spans import subspace_distance

NEIGHBOURS = 10  # test statistics: mass on the target's nearest words in L
FREQUENT = 100  # per epoch: ỹ's mass on the most frequent training words


def augmented_target_entropy(embedding_weight: Tensor, targets: Tensor, tau: float) -> float:
    """Mean entropy, in nats, of the augmented loss's target ỹ_t = softmax(Lᵀ u_t / τ) over
    the target words ``targets``. At log |V| ỹ is uniform: J^aug then only pulls the tempered
    prediction towards uniform (a confidence penalty) and carries no word similarity.

    Args:
        embedding_weight: ``(V, D)`` float, Lᵀ. targets: ``(N,)`` int64 word ids. tau: > 0.

    Returns:
        float in [0, log V] (nats), the mean over the N tokens.

    Raises:
        ValueError: ``tau <= 0`` or no targets.

    Paper: eqs. 3.6-3.7 (our addition: a number behind Sec. 3's premise that ỹ encodes
    similarity between words).
    """
    return _mean_over_targets(embedding_weight, targets, tau,
                              lambda probs: torch.special.entr(probs).sum(-1))  # −Σ p log p


@torch.no_grad()
def _mean_over_targets(embedding_weight: Tensor, targets: Tensor, tau: float,
                       statistic: Callable[[Tensor], Tensor]) -> float:
    """Mean over the N target tokens of ``statistic(ỹ)`` (``(U, V)`` → ``(U,)``), computed once
    per distinct word, 1,024 words at a time. Raises ValueError: ``tau <= 0`` or no targets."""
    if tau <= 0 or targets.numel() == 0:
        raise ValueError(f"need tau > 0 and at least one target, got tau={tau}, "
                         f"{targets.numel()} targets")
    words, counts = torch.unique(targets.to(embedding_weight.device), return_counts=True)
    values = torch.cat([statistic(augmented_target_log_probs(embedding_weight, chunk, tau).exp())
                        for chunk in words.split(1024)])
    return float((values.double() * counts).sum() / counts.sum())


def target_mass_on_frequent(embedding_weight: Tensor, targets: Tensor, tau: float,
                            train: Tensor, k: int = FREQUENT) -> float:
    """Mean mass that ỹ_t = softmax(Lᵀ u_t / τ) puts on the ``k`` most frequent words of the
    training stream (all V when V ≤ k), over the target words ``targets``: k/V when ỹ is
    uniform, near 1 when J^aug pulls every prediction towards the, a, <unk>... whatever the
    target.

    Args:
        embedding_weight: ``(V, D)`` float, Lᵀ. targets: ``(N,)`` int64 word ids. tau: > 0.
        train: ``(T,)`` int64, the training stream (frequencies; ties: the lower id first).

    Returns:
        float in [0, 1], the mean over the N tokens.

    Raises:
        ValueError: ``tau <= 0``, no targets, or ``k < 1``.

    Paper: eqs. 3.6-3.7, Sec. 6.4 (our addition: where ỹ sends J^aug's probability).
    """
    vocab = embedding_weight.shape[0]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    counts = torch.bincount(train.cpu(), minlength=vocab)
    frequent = torch.argsort(counts, descending=True, stable=True)[:k]
    frequent = frequent.to(embedding_weight.device)
    return _mean_over_targets(embedding_weight, targets, tau,
                              lambda probs: probs[:, frequent].sum(-1))


def alignment_sums(wh: Tensor, targets: Tensor, embedding_weight: Tensor) -> Tensor:
    """Per-token statistics of how W h_t follows Lᵀ u_t, summed over the N tokens: ``(3,)``
    float64 ``[Σ std(W h_t), Σ std(Lᵀ u_t), Σ corr(W h_t, Lᵀ u_t)]``, std and Pearson
    correlation taken over the |V| words (so a shift of all logits, which softmax ignores,
    changes nothing).

    Args:
        wh: ``(N, V)`` float logits W h_t without bias. targets: ``(N,)`` int64 y*_t.
        embedding_weight: ``(V, D)`` float, Lᵀ (u_t = its row ``targets[t]``).

    Raises:
        ValueError: mismatched shapes.

    Paper: Sec. 4, eqs. 4.3-4.5 (J^aug drives W h_t to Lᵀ u_t up to a constant).
    """
    if wh.dim() != 2 or targets.shape != wh.shape[:1] or embedding_weight.shape[0] != wh.shape[1]:
        raise ValueError(f"expected wh (N, V), targets (N,), embedding_weight (V, D); got "
                         f"{tuple(wh.shape)}, {tuple(targets.shape)}, "
                         f"{tuple(embedding_weight.shape)}")
    z = wh.double() - wh.double().mean(-1, keepdim=True)
    t = (embedding_weight[targets] @ embedding_weight.t()).double()
    t = t - t.mean(-1, keepdim=True)
    z_norm, t_norm = z.norm(dim=-1), t.norm(dim=-1)
    corr = (z * t).sum(-1) / (z_norm * t_norm)
    scale = math.sqrt(wh.shape[1] - 1)  # std with ddof 1 from the centred norm
    return torch.stack([(z_norm / scale).sum(), (t_norm / scale).sum(), corr.sum()])


@torch.no_grad()
def logit_alignment(model: RNNLM, data: Tensor, bptt: int) -> dict[str, float]:
    """How closely an evaluation-mode model's logits follow the augmented loss's target logits
    over ``data`` (state carried across segments): the paper's Sec. 4 mechanism, measured.

    Args:
        model: an :class:`RNNLM`. data: ``(L, B)`` int64 from ``batchify``. bptt: segment length.

    Returns:
        ``logit_std`` (mean over tokens of the std over words of W h_t, bias left out),
        ``target_logit_std`` (the same for Lᵀ u_t, u_t the target's word vector) and
        ``logit_target_corr`` (mean Pearson correlation of the two over words, in [−1, 1]).

    Raises:
        ValueError: ``data`` has fewer than two rows.

    Paper: Sec. 4, eqs. 4.3-4.5; our addition (a number behind Sec. 4's argument).
    """
    if data.shape[0] < 2:
        raise ValueError(f"need at least two rows of data, got {tuple(data.shape)}")
    sums = torch.zeros(3, dtype=torch.float64, device=model.embedding.weight.device)
    for wh, targets in stream_logits(model, data, bptt, bias=False):
        sums += alignment_sums(wh, targets, model.embedding.weight)
    n = (data.shape[0] - 1) * data.shape[1]
    logit_std, target_std, corr = (sums / n).tolist()
    return {"logit_std": logit_std, "target_logit_std": target_std, "logit_target_corr": corr}


@torch.no_grad()
def nearest_neighbours(embedding_weight: Tensor, k: int) -> Tensor:
    """The ``k`` words nearest each word in L by cosine similarity, the word itself left out.

    Args:
        embedding_weight: ``(V, D)`` float, Lᵀ (rows: word vectors). k: 1 ≤ k < V.

    Returns:
        ``(V, k)`` int64, most similar first (ties broken by ``torch.topk``).

    Raises:
        ValueError: k out of range.
    """
    if not 1 <= k < embedding_weight.shape[0]:
        raise ValueError(f"k must be in [1, V), got {k} for V = {embedding_weight.shape[0]}")
    unit = torch.nn.functional.normalize(embedding_weight.double(), dim=1)
    rows = []
    for chunk in torch.arange(unit.shape[0], device=unit.device).split(1024):
        sims = unit[chunk] @ unit.t()
        sims[torch.arange(len(chunk)), chunk] = -torch.inf  # never its own neighbour
        rows.append(sims.topk(k, dim=1).indices)
    return torch.cat(rows)


@torch.no_grad()
def prediction_mass(model: RNNLM, data: Tensor, bptt: int, *, words: Tensor,
                    neighbours: Tensor) -> dict[str, float]:
    """Where an evaluation-mode model puts its probability over ``data`` (state carried):
    the mean mass on the fixed ``words`` (e.g. a, an, the) and on the target's neighbours.

    Args:
        data: ``(L, B)`` int64 from ``batchify``. bptt: segment length.
        words: ``(K,)`` int64 distinct word ids.
        neighbours: ``(V, k)`` int64 from :func:`nearest_neighbours`; the mass on row
            ``neighbours[y*_t]`` is counted for each target y*_t.

    Returns:
        ``mean_p_words`` and ``mean_p_neighbours``, means over the tokens of p in [0, 1].

    Paper: Sec. 6.4 ("REAL ... gives much less mass to a/an/the", "more to words near the
    target"; our measurement over a whole stream).
    """
    device = model.embedding.weight.device
    words, neighbours = words.to(device), neighbours.to(device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    n = 0
    for logits, targets in stream_logits(model, data, bptt):
        probs = torch.softmax(logits, dim=-1)
        sums[0] += probs[:, words].sum()
        sums[1] += probs.gather(1, neighbours[targets]).sum()
        n += targets.numel()
    p_words, p_neighbours = (sums / n).tolist()
    return {"mean_p_words": p_words, "mean_p_neighbours": p_neighbours}


@torch.no_grad()
def next_word_distribution(model: RNNLM, vocab: Vocabulary, context: str) -> Tensor:
    """p(next word | context) of an evaluation-mode model, from a zero state.

    Args:
        context: whitespace-separated words, all in ``vocab``.

    Returns:
        ``(V,)`` float32 probabilities on the CPU.

    Raises:
        ValueError: a context word is not in the vocabulary (names it).
    """
    words = context.split()
    missing = [w for w in words if w not in vocab.stoi]
    if missing:
        raise ValueError(f"words not in the vocabulary: {missing}; use <unk> for them")
    device = model.embedding.weight.device
    inputs = torch.tensor(vocab.encode(words), device=device).unsqueeze(1)  # (T, 1)
    with eval_mode(model):
        wh, _ = model(inputs, model.init_state(1))
    logits = wh[-1, 0] if model.bias is None else wh[-1, 0] + model.bias
    return torch.softmax(logits, dim=-1).cpu()


def top_k_predictions(model: RNNLM, vocab: Vocabulary, context: str, k: int = 10
                      ) -> list[tuple[str, float]]:
    """The ``k`` most probable next words after ``context`` with their probabilities.

    Paper: Sec. 6.4, v1 Table 3.
    """
    probs = next_word_distribution(model, vocab, context)
    top = torch.topk(probs, k)
    return [(vocab.itos[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


def epoch_numbers(model: RNNLM, corpus: Corpus, config: Config) -> dict[str, float | None]:
    """What each ``metrics.jsonl`` row records beside the training losses and the validation
    perplexity (:class:`lmtie.schema.EpochRow`): ``valid_ppl_test_batch`` (the test
    protocol's batch, Decision E1, on the validation stream: valid/test ratios then compare
    like with like), ``subspace_distance`` (Lᵀ, W; None when tied), and over the validation
    targets ỹ at ``config.tau``: ``target_entropy`` (nats; log V: no word similarity) and
    ``target_mass_frequent`` (:func:`target_mass_on_frequent`)."""
    return {
        "valid_ppl_test_batch": evaluate(model, batchify(corpus.valid, config.test_batch_size),
                                         config.bptt).perplexity,
        "subspace_distance": None if config.tied else subspace_distance(
            model.embedding.weight, model.projection.weight),
        "target_entropy": augmented_target_entropy(model.embedding.weight, corpus.valid[1:],
                                                   config.tau),
        "target_mass_frequent": target_mass_on_frequent(model.embedding.weight,
                                                        corpus.valid[1:], config.tau,
                                                        corpus.train),
    }


def test_statistics(model: RNNLM, corpus: Corpus, config: Config, test: EvalResult,
                    best_epoch: int) -> TestStatistics:
    """The best checkpoint's :class:`lmtie.schema.TestStatistics`, from ``test`` (its
    :func:`lmtie.evaluation.evaluate` over the test stream with ``unk_id``) and further
    passes over the test stream. Paper: Sec. 4, 6.4; eqs. 3.6-3.7."""
    articles = torch.tensor([i for w, i in corpus.vocab.stoi.items() if w in ("a", "an", "the")])
    mass = prediction_mass(model, batchify(corpus.test, config.test_batch_size), config.bptt,
                           words=articles,
                           neighbours=nearest_neighbours(model.embedding.weight, NEIGHBOURS))
    phrases = [{"context": p["context"], "target": p["target"],
                "top10": top_k_predictions(model, corpus.vocab, p["context"], 10)}
               for p in reference.PHRASES if config.corpus == "ptb"]  # PTB test phrases
    return TestStatistics(
        run_id=config.run_id, best_epoch=best_epoch, phrases=phrases,
        mean_p_unk=test.mean_p_unk, mean_target_rank=test.mean_target_rank,
        n_tokens=test.n_tokens,
        target_entropy=augmented_target_entropy(model.embedding.weight, corpus.test[1:],
                                                config.tau),
        uniform_entropy=math.log(len(corpus.vocab)),  # ỹ's ceiling: uniform
        # Sec. 4: how closely W h follows Lᵀu over the test set (batch eval_batch_size)
        **logit_alignment(model, batchify(corpus.test, config.eval_batch_size), config.bptt),
        # Sec. 6.4: mass on a/an/the and on the target's nearest words in the run's L
        mean_p_articles=mass["mean_p_words"], mean_p_neighbours=mass["mean_p_neighbours"],
        neighbours_k=NEIGHBOURS)
