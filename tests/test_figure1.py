"""lmtie.figure1: one Sec. 6.2 run on a tiny synthetic corpus (the conftest's ``markov_ids``),
with the summaries (lmtie.report) and figures (lmtie.figures_spans) of its rows."""

from dataclasses import replace

import pytest
import torch
from helpers import FIGURE1_TINY as TINY
from helpers import FIGURE1_VOCAB as VOCAB
from helpers import figure1_row as make_row

from lmtie import figure1, figures_spans, report, schema
from lmtie.config import BETAS
from lmtie.figure1 import Figure1Setup, train_point


def test_setup_is_validated():
    with pytest.raises(ValueError, match="optimizer"):
        Figure1Setup(optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        Figure1Setup(epochs=0)
    with pytest.raises(ValueError, match="halvings and patience"):
        Figure1Setup(patience=-1)


def test_convergence_halves_on_plateaus_counted_from_the_highest_loss():
    """Hand-computed (patience 1, relative threshold 1e-3): the rise 5 → 7 halves nothing;
    from 6.5 on, each second epoch without a 0.1 % gain halves the rate; stop at the 2nd."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    rule = figure1.Convergence(optimizer, halvings=2, patience=1)
    stops = [rule.step(loss) for loss in (5.0, 6.0, 7.0, 6.5, 6.0, 5.999, 5.998)]
    assert stops == [False] * 7 and rule.halved == 1  # 5.999 and 5.998: no 0.1 % gain
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert rule.step(5.0) is False  # a gain resets the count
    assert [rule.step(5.0), rule.step(5.0)] == [False, True]
    assert rule.halved == 2 and optimizer.param_groups[0]["lr"] == 0.25
    fixed = figure1.Convergence(optimizer, halvings=0, patience=0)
    assert not any(fixed.step(loss) for loss in (3.0, 2.0, 2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="halvings and patience"):
        figure1.Convergence(optimizer, halvings=-1, patience=2)


def test_random_slice_is_contiguous_and_seeded():
    ids = torch.arange(1000)
    part, start = figure1.random_slice(ids, 100, seed=3)
    assert torch.equal(part, torch.arange(start, start + 100))
    assert figure1.random_slice(ids, 100, seed=3)[1] == start
    assert figure1.random_slice(ids, 100, seed=4)[1] != start
    with pytest.raises(ValueError, match="slice_tokens"):
        figure1.random_slice(ids, 1001, seed=0)


@pytest.fixture(scope="module")
def tiny_runs(markov_ids):
    return {beta: train_point(markov_ids, VOCAB, beta, 10.0, seed=1, setup=TINY)
            for beta in (0.0, 1.0)}


def test_augmented_loss_pulls_w_into_span_of_lt(tiny_runs):
    d0, d1 = tiny_runs[0.0], tiny_runs[1.0]  # measured: 0.92 -> 0.934 (β = 0), 0.378 (β = 1)
    # 15 updates per epoch x 30 epochs; random 8-dim spans in R^50: ~0.92
    assert d0.initial_distance == d1.initial_distance  # same seed: same init
    assert 0.8 < d0.initial_distance < 0.95
    assert d0.final_distance > 0.75
    assert d1.final_distance < 0.5 * d0.final_distance
    assert len(d1.distance_per_epoch) == d1.epochs == 30
    assert d1.distance_per_epoch[-1] < d1.distance_per_epoch[0]
    assert d0.final_aug_kl is None and d1.final_aug_kl > 0  # β = 0: no J^aug
    assert d0.final_loss == pytest.approx(d0.final_ce)  # β = 0: plain cross-entropy
    assert 0 < d1.final_residual < d0.final_residual <= 1
    assert d1.residual_per_epoch[-1] == d1.final_residual and len(d1.residual_per_epoch) == 30
    assert d1.converged is False and d1.lr_halvings == 0  # halvings=0: the budget decides
    # the hidden states (8 dims) and W's end point under J^aug (none at β = 0)
    assert len(d1.hidden_singular_values) == len(d1.sine_by_hidden_direction) == 8
    assert 1.0 <= d1.hidden_effective_rank <= 8.0
    assert all(0.0 <= s <= 1.0 for s in d1.sine_by_hidden_direction)
    assert d0.least_squares_distance is None
    assert d1.least_squares_distance <= 8**-0.5 + 1e-9  # W's constant direction at most
    assert d1.least_squares_distance < d1.final_distance  # where W is heading: closer
    # at β = 1, W taken to the minimum of eq. 6.1 for the trained h and Lᵀ (lmtie.optimum);
    # none below (the cross-entropy: no minimum at β = 0, a far one in between)
    assert d1.optimum_converged and d1.optimum_gradient < 1e-5
    assert d1.optimum_loss < d1.slice_loss and d1.optimum_iterations > 0
    assert d1.optimum_distance < d1.final_distance
    assert 0 < d1.optimum_residual < d1.final_residual
    assert d0.optimum_distance is d0.slice_loss is d0.optimum_converged is None


def test_a_run_stops_when_its_loss_stops_improving(markov_ids):
    run = train_point(markov_ids, VOCAB, 1.0, 10.0, seed=1,
                      setup=replace(TINY, halvings=1, patience=0, lr=0.3, epochs=200))
    assert run.converged is True and run.lr_halvings == 1 and run.epochs < 200


def test_word_vectors_stay_unit_norm(markov_ids, monkeypatch):
    seen = []
    original = figure1.normalise_rows_

    def spy(weight):
        original(weight)
        seen.append(weight.norm(dim=1))

    monkeypatch.setattr(figure1, "normalise_rows_", spy)
    train_point(markov_ids, VOCAB, 0.5, 2.0, seed=2, setup=replace(TINY, epochs=1))
    assert len(seen) == 1 + 15  # once after init, once per update
    assert torch.allclose(torch.stack(seen), torch.ones(16, VOCAB), atol=1e-6)


def test_a_diverging_run_names_its_point(markov_ids):
    with pytest.raises(FloatingPointError, match=r"beta=1.0, tau=2.0, seed=1\); lower the lr"):
        train_point(markov_ids, VOCAB, 1.0, 2.0, seed=1, setup=replace(TINY, lr=1e30, epochs=1))


def test_figure1_points_put_each_point_beside_the_paper(tmp_path):
    assert report.figure1_points(tmp_path) == []
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "both"), [
        make_row(0.0, 10.0, 1, 0.9), make_row(0.0, 10.0, 2, 1.0), make_row(1.0, 2.0, 1, 0.5)])
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "convergence"),
                              [make_row(1.0, 10.0, 1, 0.4, 100)])
    table = report.figure1_points(tmp_path)
    assert [(r["figure"], r["beta"], r["tau"], r["seeds"], r["epochs"], r["paper"])
            for r in table] == [("1a", 0.0, 10.0, 2, 20, 1.0), ("1b", 1.0, 2.0, 1, 20, None),
                                ("longer run", 1.0, 10.0, 1, 100, 0.06)]
    assert table[0]["distance"] == pytest.approx(0.95)
    assert table[0]["std"] == pytest.approx(0.005 ** 0.5)
    assert table[0]["converged"] is None and table[0]["least_squares"] is None
    assert table[0]["optimum"] is table[0]["optimum_residual"] is None  # before version 4
    assert report.figure1_remaining(tmp_path) is None  # rows from before version 3


def test_what_remains_at_beta1_tau10(tmp_path):
    """Two runs with the measurements of version 3: means over them, sines split at the
    hidden states' effective rank (2 of 4 directions)."""
    rows = [make_row(1.0, 10.0, seed, 0.5 + 0.1 * seed, epochs=30 + seed,
                     final_residual=0.3, converged=seed == 1, lr_halvings=4,
                     setup={**Figure1Setup().to_dict(), "hidden_size": 4},
                     hidden_singular_values=[4.0, 3.0, 0.5, 0.1], hidden_effective_rank=2.2,
                     sine_by_hidden_direction=[0.1, 0.2, 0.9, 1.0],
                     least_squares_distance=0.4 + 0.1 * seed, slice_loss=20.0 + seed,
                     optimum_loss=18.0 + seed, optimum_distance=0.1 + 0.1 * seed,
                     optimum_residual=0.03, optimum_iterations=4 + 2 * seed,
                     optimum_gradient=1e-7, optimum_converged=True) for seed in (1, 2)]
    rows.append(make_row(0.0, 10.0, 1, 0.99))
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "both"), rows)
    left = report.figure1_remaining(tmp_path)
    assert left == {"n": 2, "epochs": 31.5, "converged": 1, "distance": pytest.approx(0.65),
                    "least_squares": pytest.approx(0.55), "d": 4,
                    "effective_rank": pytest.approx(2.2), "sine_within": pytest.approx(0.15),
                    "sine_beyond": pytest.approx(0.95), "optimum": pytest.approx(0.25),
                    "optimum_residual": pytest.approx(0.03), "slice_loss": 21.5,
                    "optimum_loss": 19.5, "iterations": 7.0}
    point = next(p for p in report.figure1_points(tmp_path) if p["beta"] == 1.0)  # 1a's end
    assert point["converged"] == 1 and point["least_squares"] == pytest.approx(0.55)
    assert point["residual"] == pytest.approx(0.3)
    assert point["optimum"] == pytest.approx(0.25) and point["optimum_residual"] == 0.03
    assert point["optimum_std"] == pytest.approx(0.1 * 0.5**0.5)
    beta0 = next(p for p in report.figure1_points(tmp_path) if p["beta"] == 0.0)
    assert beta0["optimum"] is beta0["optimum_std"] is None  # measured at β = 1 only
    fig = figures_spans.plot_figure1_hidden_span(rows)
    assert [line.get_ydata()[2] for line in fig.axes[0].lines[:2]] == [0.9, 0.125]
    figures_spans.draw_figure1(rows, tmp_path, "both")
    assert (tmp_path / "figures" / "figure1_hidden_span.png").is_file()
    labels = figures_spans.plot_figure1(rows, "a").axes[0].get_legend_handles_labels()[1]
    assert "W at its minimum for the trained h, Lᵀ (S1)" in labels
    assert "W's end point under J^aug, large τ (S1)" in labels
    figures_spans.draw_figure1(rows[2:], tmp_path, "both")  # no such rows: a stale one goes
    assert not (tmp_path / "figures" / "figure1_hidden_span.png").exists()


def test_summary_and_figures(tmp_path):
    rows = [make_row(b, 10.0, s, 1.0 - 0.9 * b + 0.01 * s, epochs=5)
            for b in BETAS for s in (1, 2, 3)]
    stats = report.figure1_summary(rows, "a")
    assert [s["x"] for s in stats] == list(BETAS)
    assert stats[0]["mean"] == pytest.approx(1.02) and stats[0]["std"] == pytest.approx(0.01)
    assert report.figure1_summary(rows, "b") == [{
        "x": 10.0, "beta": 1.0, "tau": 10.0, "n": 3, "mean": pytest.approx(0.12),
        "std": pytest.approx(0.01), "residual_mean": 0.0, "residual_std": 0.0,
        "least_squares": None, "optimum_mean": None, "optimum_std": None,
        "optimum_residual": None, "converged": None, "mean_epochs": 5.0}]
    figures_spans.draw_figure1(rows, tmp_path, "a")
    assert (tmp_path / "figures" / "figure1a.png").stat().st_size > 10_000
    with_curves = [replace(r, initial_distance=0.98,
                           distance_per_epoch=[0.9, 0.8, 0.7][:2 + (r.seed == 1)]) for r in rows]
    curves = report.figure1_per_epoch(with_curves, "a")
    assert [c["x"] for c in curves] == list(BETAS)
    assert curves[-1]["mean"] == pytest.approx([0.98, 0.9, 0.8, 0.7])  # epoch 3: seed 1 only
    assert [c["x"] for c in report.figure1_per_epoch(with_curves, "b")] == [10.0]
    fig = figures_spans.plot_figure1_per_epoch(with_curves, "a")
    assert len(fig.axes[0].lines) == len(BETAS)
    assert figures_spans.plot_figure1([], "b") is None
    assert figures_spans.plot_figure1_per_epoch([], "b") is None
