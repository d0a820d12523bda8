"""Subspace distance (Decision S1) and the Sec. 6.2 experiment on a tiny synthetic corpus."""

import json
import math
from dataclasses import replace
from operator import itemgetter

import numpy as np
import pytest
import torch

from lmtie import subspace
from lmtie.analysis import centred_subspace_distance, projection_residual, subspace_distance
from lmtie.subspace import SubspaceSetup, read_rows, run_sweep, train_point


def residual_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Independent formula: ‖Q − U Uᵀ Q‖_F / √d with QR bases U = orth(a), Q = orth(b)."""
    u, _ = np.linalg.qr(a)
    q, _ = np.linalg.qr(b)
    return float(np.linalg.norm(q - u @ (u.T @ q)) / math.sqrt(a.shape[1]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_same_span_any_basis_is_zero(rng):
    a = rng.standard_normal((40, 6))
    mix = rng.standard_normal((6, 6)) + 6 * np.eye(6)  # invertible
    assert subspace_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert subspace_distance(a, a @ mix) == pytest.approx(0.0, abs=1e-7)


def test_orthogonal_spans_is_one():
    eye = np.eye(10)
    assert subspace_distance(eye[:, :4], eye[:, 4:8]) == pytest.approx(1.0, abs=1e-12)
    # one shared direction out of four: sines (0, 1, 1, 1) -> sqrt(3/4)
    assert subspace_distance(eye[:, :4], eye[:, [0, 5, 6, 7]]) == pytest.approx(math.sqrt(0.75))


def test_symmetric_and_invariant_to_right_multiplication(rng):
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    r = rng.standard_normal((5, 5)) + 5 * np.eye(5)
    d = subspace_distance(a, b)
    assert 0.0 < d < 1.0
    assert subspace_distance(b, a) == pytest.approx(d, abs=1e-12)
    assert subspace_distance(a @ r, b) == pytest.approx(d, abs=1e-10)
    assert subspace_distance(a, b @ r) == pytest.approx(d, abs=1e-10)


@pytest.mark.parametrize(("rows", "cols"), [(20, 3), (100, 10), (500, 30)])
def test_equals_independent_residual_formula(rng, rows, cols):
    a, b = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    assert subspace_distance(a, b) == pytest.approx(residual_distance(a, b), abs=1e-10)
    close = a + 0.01 * rng.standard_normal((rows, cols))  # small angles, the β = 1 regime
    assert subspace_distance(a, close) == pytest.approx(residual_distance(a, close), rel=1e-6)
    assert subspace_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(
        residual_distance(a, b), abs=1e-10)


def test_projection_residual_weighs_directions_by_size(rng):
    a = rng.standard_normal((40, 4))
    inside = a @ rng.standard_normal((4, 4))
    assert projection_residual(a, inside) == pytest.approx(0.0, abs=1e-12)
    eye = np.eye(10)
    assert projection_residual(eye[:, :4], eye[:, 4:8]) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 4)))  # orthonormal columns: equals S1
    assert projection_residual(a, q) == pytest.approx(subspace_distance(a, q), abs=1e-12)
    # three columns in span(a), a fourth orthogonal to it and 100x smaller
    off = np.linalg.qr(np.hstack([a, rng.standard_normal((40, 1))]))[0][:, 4:]
    b = np.hstack([a[:, :3] / np.linalg.norm(a[:, :3], axis=0), 0.01 * off])
    assert subspace_distance(a, b) == pytest.approx(0.5, abs=1e-9)  # sines (0, 0, 0, 1)
    assert projection_residual(a, b) == pytest.approx(0.01 / math.sqrt(3.0001), rel=1e-6)
    assert projection_residual(a, b) != pytest.approx(projection_residual(b, a))
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        projection_residual(a, a[:, :3])
    with pytest.raises(ValueError, match="zeros"):
        projection_residual(a, np.zeros_like(a))


def test_shape_mismatch_raises(rng):
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        subspace_distance(rng.standard_normal((20, 3)), rng.standard_normal((20, 4)))
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        subspace_distance(rng.standard_normal(20), rng.standard_normal(20))


def test_setup_is_validated():
    with pytest.raises(ValueError, match="optimizer"):
        SubspaceSetup(optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        SubspaceSetup(epochs=0)


def test_centred_distance_ignores_the_constant_direction(rng):
    """W = Lᵀ A + 1 cᵀ (what J^aug cannot tell from Lᵀ A): centred distance 0, while the plain
    distance is one principal angle out of d, i.e. up to 1/√d; ~1/√d when c is large (1 is
    nearly orthogonal to a random d-dim span of R^V when d << V)."""
    v, d = 2000, 10
    lt = rng.standard_normal((v, d))
    fitted = lt @ (rng.standard_normal((d, d)) + 3 * np.eye(d))
    for size, low in ((1.0, 0.1), (100.0, 0.99)):
        w = fitted + np.outer(np.ones(v), size * rng.standard_normal(d))
        assert centred_subspace_distance(lt, w) == pytest.approx(0.0, abs=1e-7)
        assert subspace_distance(lt, w) == pytest.approx(residual_distance(lt, w), abs=1e-10)
        assert low / math.sqrt(d) < subspace_distance(lt, w) <= 1 / math.sqrt(d)
    other = rng.standard_normal((v, d))  # random spans stay far apart after centring
    assert centred_subspace_distance(lt, other) == pytest.approx(
        residual_distance(lt - lt.mean(0), other - other.mean(0)), abs=1e-10)
    with pytest.raises(ValueError, match="one shape"):
        centred_subspace_distance(lt, w[:, :3])


def test_random_slice_is_contiguous_and_seeded():
    ids = torch.arange(1000)
    part, start = subspace.random_slice(ids, 100, seed=3)
    assert torch.equal(part, torch.arange(start, start + 100))
    assert subspace.random_slice(ids, 100, seed=3)[1] == start
    assert subspace.random_slice(ids, 100, seed=4)[1] != start
    with pytest.raises(ValueError, match="slice_tokens"):
        subspace.random_slice(ids, 1001, seed=0)


def test_sweep_points_share_beta1_tau10_once():
    points = subspace.sweep_points("both", seeds=2)
    assert len(points) == 2 * (7 + 6 - 1)
    assert points.count((1.0, 10.0, 1)) == 1
    assert points[:12] == [(b, t, 1) for b, t in dict.fromkeys(
        subspace.SWEEPS["a"] + subspace.SWEEPS["b"])]
    with pytest.raises(ValueError, match="sweep"):
        subspace.sweep_points("c")


VOCAB = 50
TINY = SubspaceSetup(slice_tokens=600, hidden_size=8, num_layers=1, batch_size=4, bptt=10,
                     lr=1e-2, epochs=30)


@pytest.fixture(scope="module")
def markov_ids():
    """A 1,000-token stream from a sparse random Markov chain over 50 words."""
    gen = torch.Generator().manual_seed(0)
    nxt = torch.randint(0, VOCAB, (VOCAB, 3), generator=gen)  # 3 successors per word
    ids = [0]
    for _ in range(999):
        ids.append(int(nxt[ids[-1], torch.randint(0, 3, (1,), generator=gen)]))
    return torch.tensor(ids)


@pytest.fixture(scope="module")
def tiny_runs(markov_ids):
    return {beta: train_point(markov_ids, VOCAB, beta, 10.0, seed=1, setup=TINY)
            for beta in (0.0, 1.0)}


def test_augmented_loss_pulls_w_into_span_of_lt(tiny_runs):
    d0, d1 = tiny_runs[0.0], tiny_runs[1.0]  # measured: 0.92 -> 0.934 (β = 0), 0.378 (β = 1)
    # 15 updates per epoch x 30 epochs; random 8-dim spans in R^50: ~0.92
    assert d0["initial_distance"] == d1["initial_distance"]  # same seed: same init
    assert 0.8 < d0["initial_distance"] < 0.95
    assert d0["final_distance"] > 0.75
    assert d1["final_distance"] < 0.5 * d0["final_distance"]
    distances = json.loads(d1["distance_per_epoch"])
    assert len(distances) == d1["epochs"] == 30
    assert distances[-1] < distances[0]
    assert math.isnan(d0["final_aug_kl"]) and d1["final_aug_kl"] > 0
    assert d0["final_loss"] == pytest.approx(d0["final_ce"])  # β = 0: plain cross-entropy
    assert 0 < d1["final_residual"] < d0["final_residual"] <= 1


def test_word_vectors_stay_unit_norm(markov_ids, monkeypatch):
    seen = []
    original = subspace._normalise_rows_

    def spy(weight):
        original(weight)
        seen.append(weight.norm(dim=1))

    monkeypatch.setattr(subspace, "_normalise_rows_", spy)
    train_point(markov_ids, VOCAB, 0.5, 2.0, seed=2, setup=replace(TINY, epochs=1))
    assert len(seen) == 1 + 15  # once after init, once per update
    assert torch.allclose(torch.stack(seen), torch.ones(16, VOCAB), atol=1e-6)


def test_sweep_resumes_and_skips_finished_points(tmp_path, markov_ids, monkeypatch):
    csv_path = tmp_path / "subspace" / "runs.csv"
    setup = replace(TINY, epochs=2)
    first = run_sweep(markov_ids, VOCAB, [(0.0, 10.0, 1)], csv_path, setup)
    assert len(first) == 1 and read_rows(csv_path)[0]["epochs"] == 2
    calls = []

    def fake(ids, vocab_size, beta, tau, seed, setup, device):
        calls.append((beta, tau, seed))
        return {**first[0], "beta": beta, "tau": tau, "seed": seed}

    monkeypatch.setattr(subspace, "train_point", fake)
    rows = run_sweep(markov_ids, VOCAB, [(0.0, 10.0, 1), (1.0, 10.0, 1), (0.0, 10.0, 2)],
                     csv_path, setup)
    assert calls == [(1.0, 10.0, 1), (0.0, 10.0, 2)]  # (0, 10, 1) was skipped
    assert [(r["beta"], r["tau"], r["seed"]) for r in read_rows(csv_path)] == [
        (0.0, 10.0, 1), (1.0, 10.0, 1), (0.0, 10.0, 2)]
    assert len(rows) == 3
    assert run_sweep(markov_ids, VOCAB, [(1.0, 10.0, 1)], csv_path, setup) and len(calls) == 2
    assert not list(csv_path.parent.glob("*.tmp"))  # atomic rewrite leaves no temp files
    with pytest.raises(ValueError, match="another setup"):
        run_sweep(markov_ids, VOCAB, [(0.5, 10.0, 1)], csv_path, replace(TINY, epochs=3))


def test_parallel_sweep_equals_sequential(tmp_path, markov_ids):
    """Two spawned workers give the rows one process gives (same seeds: same numbers), and
    the CSV holds each point once."""
    setup = replace(TINY, epochs=2)
    points = [(0.0, 10.0, 1), (1.0, 10.0, 1), (1.0, 2.0, 2)]
    one = run_sweep(markov_ids, VOCAB, points, tmp_path / "one.csv", setup)
    two = run_sweep(markov_ids, VOCAB, points, tmp_path / "two.csv", setup, jobs=2)
    key = itemgetter("beta", "tau", "seed")
    for a, b in zip(sorted(one, key=key), sorted(read_rows(tmp_path / "two.csv"), key=key),
                    strict=True):
        assert key(a) == key(b) and a["distance_per_epoch"] == b["distance_per_epoch"]
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-12)
    assert len(two) == 3
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(markov_ids, VOCAB, points, tmp_path / "x.csv", setup, jobs=0)


def test_convergence_sweep_has_its_own_csv_and_figure(tmp_path, markov_ids):
    setup = replace(TINY, epochs=3)
    points = subspace.sweep_points("convergence", seeds=1)
    assert points == [(1.0, 10.0, 1)]
    path = subspace.csv_path(tmp_path, "convergence")
    assert path == tmp_path / "subspace" / "convergence.csv"
    assert subspace.csv_path(tmp_path, "both") == tmp_path / "subspace" / "runs.csv"
    rows = run_sweep(markov_ids, VOCAB, points, path, setup)
    centred = json.loads(read_rows(path)[0]["centred_distance_per_epoch"])
    assert len(centred) == 3 and all(0 <= c <= 1 for c in centred)
    subspace.draw_figures(rows, tmp_path, "convergence")
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["figure1_convergence.png"]
    with pytest.raises(ValueError, match="no convergence runs"):
        subspace.plot_convergence([], tmp_path / "x.png")


def test_report_rows_put_each_point_beside_the_paper(tmp_path):
    def row(beta, tau, seed, distance, epochs=20):
        return {c: 0.0 for c in subspace.COLUMNS} | {
            "beta": beta, "tau": tau, "seed": seed, "slice_start": 0, "epochs": epochs,
            "final_distance": distance, "distance_per_epoch": "[]", "loss_per_epoch": "[]",
            "centred_distance_per_epoch": "[]", "setup": "{}"}

    assert subspace.report_rows(tmp_path) == []
    subspace.write_rows(subspace.csv_path(tmp_path, "both"),
                        [row(0.0, 10.0, 1, 0.9), row(0.0, 10.0, 2, 1.0), row(1.0, 2.0, 1, 0.5)])
    subspace.write_rows(subspace.csv_path(tmp_path, "convergence"), [row(1.0, 10.0, 1, 0.4, 100)])
    table = subspace.report_rows(tmp_path)
    assert [(r["figure"], r["beta"], r["tau"], r["seeds"], r["epochs"], r["paper"])
            for r in table] == [("1a", 0.0, 10.0, 2, 20, 1.0), ("1b", 1.0, 2.0, 1, 20, None),
                                ("longer run", 1.0, 10.0, 1, 100, 0.06)]
    assert table[0]["distance"] == pytest.approx(0.95)
    assert table[0]["std"] == pytest.approx(math.sqrt(0.005))


def test_rows_from_before_the_centred_column_still_read(tmp_path):
    path = tmp_path / "runs.csv"
    subspace.write_rows(path, [{c: 1 for c in subspace.COLUMNS}])
    old = path.read_text().replace(",centred_distance_per_epoch", "").replace("1,1,1,", "1,1,", 1)
    path.write_text(old)
    row = read_rows(path)[0]
    assert row["centred_distance_per_epoch"] == "[]" and row["final_distance"] == 1.0


def test_summary_and_figure(tmp_path):
    rows = [{"beta": b, "tau": 10.0, "seed": s, "final_distance": 1.0 - 0.9 * b + 0.01 * s,
             "epochs": 5} for b in subspace.BETAS for s in (1, 2, 3)]
    stats = subspace.summarise(rows, "a")
    assert [s["x"] for s in stats] == list(subspace.BETAS)
    assert stats[0]["mean"] == pytest.approx(1.02) and stats[0]["std"] == pytest.approx(0.01)
    assert subspace.summarise(rows, "b") == [{"x": 10.0, "beta": 1.0, "tau": 10.0, "n": 3,
                                              "mean": pytest.approx(0.12), "std":
                                              pytest.approx(0.01), "mean_epochs": 5.0}]
    path = subspace.plot_figure1(rows, "a", tmp_path / "figure1a.png")
    assert path.stat().st_size > 10_000
    rows_with_curves = [{**r, "initial_distance": 0.98, "distance_per_epoch": json.dumps(
        [0.9, 0.8, 0.7][:2 + (r["seed"] == 1)])} for r in rows]
    curves = subspace.distance_per_epoch(rows_with_curves, "a")
    assert [c["x"] for c in curves] == list(subspace.BETAS)
    assert curves[-1]["mean"] == pytest.approx([0.98, 0.9, 0.8, 0.7])  # epoch 3: seed 1 only
    assert [c["x"] for c in subspace.distance_per_epoch(rows_with_curves, "b")] == [10.0]
    path = subspace.plot_distance_per_epoch(rows_with_curves, "a", tmp_path / "epochs.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no finished runs"):
        subspace.plot_figure1([], "b", tmp_path / "figure1b.png")
    with pytest.raises(ValueError, match="no finished runs"):
        subspace.plot_distance_per_epoch([], "b", tmp_path / "b_epochs.png")


def test_cli_subspace_wires_its_flags(monkeypatch, capsys):
    from lmtie import cli

    seen = {}

    def fake(sweep, seeds, results_dir, setup, device, data_dir, progress, jobs):
        seen.update(sweep=sweep, seeds=seeds, results_dir=results_dir, setup=setup,
                    device=device, progress=progress, jobs=jobs)
        return [{"beta": 1.0, "tau": t, "seed": 1, "final_distance": 0.5, "epochs": 3}
                for t in subspace.TAUS]

    monkeypatch.setattr(subspace, "run_experiment", fake)
    assert cli.main(["subspace", "--sweep", "b", "--seeds", "4", "--epochs", "7",
                     "--results-dir", "out", "--device", "cpu", "--quiet", "--jobs", "2"]) == 0
    assert seen == {"sweep": "b", "seeds": 4, "results_dir": "out", "device": "cpu",
                    "setup": SubspaceSetup(epochs=7), "progress": False, "jobs": 2}
    assert capsys.readouterr().out.count("distance 0.500 ± 0.000 (n=1)") == 6
    cli.main(["subspace", "--sweep", "convergence", "--seeds", "1", "--quiet"])
    assert seen["sweep"] == "convergence" and seen["setup"] == SubspaceSetup(epochs=100)
    assert "convergence: beta=1 tau=10 distance" in capsys.readouterr().out


def test_cli_plot_only_draws_from_the_csv_without_training(tmp_path, monkeypatch, capsys):
    from lmtie import cli

    monkeypatch.setattr(subspace, "train_point", None)  # training would raise TypeError
    rows = [{c: 0.0 for c in subspace.COLUMNS} | {
        "beta": b, "tau": 10.0, "seed": 1, "slice_start": 0, "epochs": 2,
        "initial_distance": 0.98, "final_distance": 0.9 - 0.1 * b,
        "distance_per_epoch": "[0.95, 0.9]", "loss_per_epoch": "[1, 1]", "setup": "{}"}
        for b in (0.0, 1.0)]
    subspace.write_rows(tmp_path / "subspace" / "runs.csv", rows)
    assert cli.main(["subspace", "--plot-only", "--results-dir", str(tmp_path)]) == 0
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["figure1a.png", "figure1a_epochs.png", "figure1b.png",
                       "figure1b_epochs.png"]  # (1, 10) is a point of both sweeps
    assert "figure 1a: beta=1 tau=10 distance 0.800" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_05_smoke_on_real_ptb(data_dir, tmp_path):
    from lmtie import pipeline

    source = pipeline.NOTEBOOKS_DIR / "05_subspace_experiment.ipynb"
    pipeline.run_notebook(source, tmp_path / "05.ipynb", {
        "sweep": "b", "seeds": 1, "smoke": True, "results_dir": str(tmp_path / "results"),
        "data_dir": str(data_dir), "device": "cpu"})
    rows = read_rows(tmp_path / "results" / "subspace" / "runs.csv")
    assert [(r["beta"], r["tau"], r["epochs"]) for r in rows] == [
        (1.0, t, 2) for t in subspace.TAUS]
    assert all(0.9 < r["final_distance"] <= r["initial_distance"] for r in rows)
    assert (tmp_path / "results" / "figures" / "figure1b.png").stat().st_size > 10_000
