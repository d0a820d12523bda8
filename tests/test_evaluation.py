"""lmtie.evaluation: perplexity, and evaluation against a direct computation."""

import math

import pytest
import torch

from lmtie import evaluation
from lmtie.config import make_config
from lmtie.data import batchify
from lmtie.model import RNNLM


def tiny_config(variant="real"):
    return make_config("ptb", "small", variant, embedding_dim=12, hidden_size=12)


def test_perplexity_and_uniform_model():
    assert evaluation.perplexity(math.log(7) * 10, 10) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="n_tokens"):
        evaluation.perplexity(1.0, 0)
    model = RNNLM(37, tiny_config())
    torch.nn.init.zeros_(model.projection.weight)  # all logits 0: p = 1/V everywhere
    result = evaluation.evaluate(model, batchify(torch.randint(0, 37, (200,)), 1), 35, unk_id=3)
    assert result.perplexity == pytest.approx(37.0, rel=1e-5)
    assert result.n_tokens == 199
    assert result.mean_p_unk == pytest.approx(1 / 37, rel=1e-5)


def test_evaluate_matches_direct_computation_and_is_bptt_invariant():
    torch.manual_seed(3)
    model = RNNLM(20, tiny_config("vd"))
    stream = torch.randint(0, 20, (61,))
    with torch.no_grad():  # one pass over the whole stream with batch 1
        wh, _ = model(stream[:-1].unsqueeze(1), model.init_state(1))
        logp = torch.log_softmax((wh + model.bias).squeeze(1), -1)
        nll = -logp[torch.arange(60), stream[1:]].sum().item()
        rank = (logp > logp[torch.arange(60), stream[1:]].unsqueeze(1)).sum(1) + 1
    for bptt in (1, 7, 35):
        result = evaluation.evaluate(model, batchify(stream, 1), bptt, unk_id=0)
        assert result.nll == pytest.approx(nll, rel=1e-5)
        assert result.mean_target_rank == pytest.approx(rank.double().mean().item())
