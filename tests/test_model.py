"""Model structure, tying, parameter counts, variational dropout semantics."""

import pytest
import torch
from helpers import reference_lstm, small_model

from lmtie.config import make_config
from lmtie.model import RNNLM
from lmtie.reference import N_PARAMS_M

VOCAB = {"ptb": 10_000, "wikitext-2": 33_278}


def test_tied_shares_storage_and_has_no_bias():
    model, _ = small_model("re")
    assert model.projection.weight is model.embedding.weight
    assert model.bias is None
    untied, _ = small_model("vd")
    assert untied.projection.weight.data_ptr() != untied.embedding.weight.data_ptr()
    assert untied.bias is not None and untied.bias.shape == (50,)
    biased, config = small_model("real", output_bias=True)  # ablation: tied with a free b
    assert biased.projection.weight is biased.embedding.weight and biased.bias.shape == (50,)
    assert biased.n_params() == model.n_params() + 50
    assert config.replace(output_bias=None).output_bias is False  # None: the paper's choice


@pytest.mark.parametrize(("corpus", "size", "tied"), sorted(N_PARAMS_M))
def test_parameter_counts_match_paper(corpus, size, tied):
    config = make_config(corpus, size, "re" if tied else "vd")
    with torch.device("meta"):  # counts only: no memory for the 66M-parameter model
        model = RNNLM(VOCAB[corpus], config)
    paper = N_PARAMS_M[(corpus, size, tied)]
    decimals = len(str(paper).split(".")[1])  # the paper rounds to its printed digits
    assert round(model.n_params() / 1e6, decimals) == paper


def test_init_is_uniform_in_range_and_single_gate_bias():
    model, config = small_model()
    for name, p in model.named_parameters():
        if name.startswith("lstm.bias_hh"):
            assert not p.requires_grad and p.abs().max() == 0
        else:
            assert p.abs().max() <= config.init_range
            assert p.abs().max() > 0.8 * config.init_range


def test_masks_are_per_sequence_and_inverted_dropout():
    model, config = small_model(dropout=0.3)
    masks = model.sample_masks(400, torch.Generator().manual_seed(1))
    assert masks.shape == (2, 400, 16)  # one mask per layer and sequence, none per time step
    keep = 1 - config.dropout
    torch.testing.assert_close(masks.unique(), torch.tensor([0.0, 1 / keep]))
    again = model.sample_masks(400, torch.Generator().manual_seed(1))
    assert torch.equal(masks, again)  # a seed gives the same masks (CPU generator, any device)
    assert (masks > 0).float().mean().item() == pytest.approx(keep, abs=0.02)


def test_masked_forward_matches_reference_semantics():
    model, _ = small_model(dropout=0.5)
    inputs = torch.randint(0, 50, (7, 3))
    state = tuple(torch.randn(2, 3, 16) for _ in range(2))
    masks = model.sample_masks(3, torch.Generator().manual_seed(2))
    wh, (h, c) = model(inputs, state, masks)
    hidden, (h_ref, c_ref) = reference_lstm(model, model.embedding(inputs), state, masks)
    expected = hidden @ model.projection.weight.t()
    torch.testing.assert_close(wh, expected, rtol=1e-5, atol=1e-5)
    # the carried state is unmasked, dropped units included (the next segment has new masks)
    assert (masks == 0).any() and (h_ref[masks == 0].abs() > 1e-3).any()
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-6)
    _, (h1, _) = model(inputs[:1], state, masks)  # T = 1: the recomputation starts at h_0
    _, (h1_ref, _) = reference_lstm(model, model.embedding(inputs[:1]), state, masks)
    torch.testing.assert_close(h1, h1_ref, rtol=1e-5, atol=1e-6)


def test_fused_and_masked_paths_agree_without_dropout():
    model, _ = small_model()
    inputs = torch.randint(0, 50, (9, 4))
    state = tuple(torch.randn(2, 4, 16) for _ in range(2))
    fused, (h1, c1) = model(inputs, state)
    looped, (h2, c2) = model(inputs, state, torch.ones(2, 4, 16))
    torch.testing.assert_close(fused, looped, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c1, c2, rtol=1e-5, atol=1e-5)


def test_model_gradients_match_autograd_reference():
    """Every parameter's and the state's gradient through the masked LSTM equals autograd's
    through PyTorch's nn.LSTMCell (float64), outputs and carried state included."""
    model, _ = small_model(dropout=0.4)
    model.double()
    inputs = torch.randint(0, 50, (6, 3))
    state = tuple(torch.randn(2, 3, 16, dtype=torch.float64, requires_grad=True)
                  for _ in range(2))
    masks = model.sample_masks(3, torch.Generator().manual_seed(5)).double()
    weights = [torch.randn(s, dtype=torch.float64) for s in ((6, 3, 50), (2, 3, 16), (2, 3, 16))]
    params = [p for p in model.parameters() if p.requires_grad]

    def gradients(outputs):
        (wh, (h, c)) = outputs
        loss = sum((w * o).sum() for w, o in zip(weights, (wh, h, c), strict=True))
        return torch.autograd.grad(loss, [*params, *state], materialize_grads=True)

    ours = gradients(model(inputs, state, masks))
    hidden, new_state = reference_lstm(model, model.embedding(inputs), state, masks)
    expected = gradients((hidden @ model.projection.weight.t(), new_state))
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
