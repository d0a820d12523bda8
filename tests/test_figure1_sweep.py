"""lmtie.figure1_sweep: the Figure 1 sweep on a tiny synthetic corpus (the conftest's
``markov_ids``): resume from the table and from a run's checkpoint, one writer, parallel runs,
the CLI and notebook 05."""

from dataclasses import replace

import pytest
from helpers import FIGURE1_TINY as TINY
from helpers import FIGURE1_VOCAB as VOCAB
from helpers import figure1_row as make_row

from lmtie import figure1, figure1_sweep, figures_spans, schema
from lmtie.config import SWEEPS, TAUS
from lmtie.figure1 import Figure1Setup, train_point
from lmtie.figure1_sweep import run_sweep
from lmtie.schema import Figure1Row, read_figure1_rows


def test_sweep_points_share_beta1_tau10_once():
    points = figure1_sweep.sweep_points("both", seeds=2)
    assert len(points) == 2 * (7 + 6 - 1)
    assert points.count((1.0, 10.0, 1)) == 1
    assert points[:12] == [(b, t, 1) for b, t in dict.fromkeys(
        SWEEPS["a"] + SWEEPS["b"])]
    with pytest.raises(ValueError, match="sweep"):
        figure1_sweep.sweep_points("c")


@pytest.fixture(autouse=True)
def checkpoint_root(tmp_path, monkeypatch):
    """Sweeps keep their runs' checkpoints under the test's folder, not the user's cache."""
    monkeypatch.setattr(figure1_sweep, "DEFAULT_CHECKPOINT_ROOT", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def test_an_interrupted_run_goes_on_from_its_last_epoch_to_the_same_numbers(
        tmp_path, markov_ids, monkeypatch, checkpoint_root):
    """Killed in its last epoch (the one whose third halving of the learning rate stops the
    unbroken run), the run continues from the epoch before, with the rule's two halvings and
    its best loss (a rule started afresh would neither halve nor stop there), to the numbers
    of the unbroken run; the sweep takes it up and removes the checkpoint with its row."""
    setup = replace(TINY, halvings=3, patience=0, lr=0.3, epochs=60)
    unbroken = train_point(markov_ids, VOCAB, 1.0, 10.0, seed=1, setup=setup)
    assert unbroken.converged and unbroken.lr_halvings == 3 and unbroken.epochs < 60
    path = tmp_path / "subspace" / "runs.jsonl"
    checkpoint = figure1_sweep.checkpoint_dir_for(path, setup) / "beta1-tau10-seed1.pt"
    assert checkpoint.parent.parent == checkpoint_root
    checkpoint.parent.mkdir(parents=True)
    original, calls = figure1.train_epoch, []

    def killed_in_the_last_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == unbroken.epochs:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(figure1, "train_epoch", killed_in_the_last_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_point(markov_ids, VOCAB, 1.0, 10.0, seed=1, setup=setup, checkpoint=checkpoint)
    monkeypatch.setattr(figure1, "train_epoch", original)
    with pytest.raises(ValueError, match=r"holds another run.*Delete .*seed=2 from its start"):
        train_point(markov_ids, VOCAB, 1.0, 10.0, seed=2, setup=setup, checkpoint=checkpoint)
    (row,) = run_sweep(markov_ids, VOCAB, [(1.0, 10.0, 1)], path, setup)
    assert not checkpoint.exists() and read_figure1_rows(path) == [row]
    checkpoint.write_bytes(b"left by a kill after the table's write")
    assert run_sweep(markov_ids, VOCAB, [(1.0, 10.0, 1)], path, setup) == [row]
    assert not checkpoint.exists()  # a finished run's checkpoint goes at the next start
    kept = ("loss_per_epoch", "distance_per_epoch", "centred_distance_per_epoch",
            "residual_per_epoch", "epochs", "converged", "lr_halvings", "final_loss",
            "final_ce", "final_aug_kl", "initial_distance", "hidden_singular_values",
            "least_squares_distance", "slice_loss", "optimum_distance")
    assert {k: getattr(row, k) for k in kept} == {k: getattr(unbroken, k) for k in kept}
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"not an lmtie checkpoint.*Delete .* from its start"):
        train_point(markov_ids, VOCAB, 1.0, 10.0, seed=1, setup=setup, checkpoint=checkpoint)


def test_one_process_writes_a_sweep_table(tmp_path, markov_ids):
    from lmtie import lock

    path = tmp_path / "subspace" / "runs.jsonl"
    with lock.hold(path.parent, "held by the test"), pytest.raises(
            lock.RunLockedError, match=r"Figure 1 table folder .*subspace is in use by pid"):
        run_sweep(markov_ids, VOCAB, [(0.0, 10.0, 1)], path, replace(TINY, epochs=1))
    assert not path.exists()


def test_sweep_resumes_and_skips_finished_points(tmp_path, markov_ids, monkeypatch,
                                                 capsys):
    path = tmp_path / "subspace" / "runs.jsonl"
    setup = replace(TINY, epochs=2)
    first = run_sweep(markov_ids, VOCAB, [(0.0, 10.0, 1)], path, setup)
    assert len(first) == 1 and read_figure1_rows(path)[0].epochs == 2
    calls = []

    def fake(ids, vocab_size, beta, tau, seed, setup, device, checkpoint, progress):
        calls.append((beta, tau, seed))
        return replace(first[0], beta=beta, tau=tau, seed=seed,
                       optimum_distance=0.25 if beta == 1 else None)

    monkeypatch.setattr(figure1_sweep, "train_point", fake)
    rows = run_sweep(markov_ids, VOCAB, [(0.0, 10.0, 1), (1.0, 10.0, 1), (0.0, 10.0, 2)],
                     path, setup, progress=True)
    assert calls == [(1.0, 10.0, 1), (0.0, 10.0, 2)]  # (0, 10, 1) was skipped
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/2] beta=1 tau=10 seed=1: distance ")
    assert " in 2 epochs, 0.250 with W at its minimum, " in lines[0]
    assert " in 2 epochs, " in lines[1] and "minimum" not in lines[1]  # none below β = 1
    assert [(r.beta, r.tau, r.seed) for r in read_figure1_rows(path)] == [
        (0.0, 10.0, 1), (1.0, 10.0, 1), (0.0, 10.0, 2)]
    assert len(rows) == 3
    assert run_sweep(markov_ids, VOCAB, [(1.0, 10.0, 1)], path, setup) and len(calls) == 2
    assert not list(path.parent.glob("*.tmp"))  # atomic rewrite leaves no temp files
    with pytest.raises(ValueError, match="another setup"):
        run_sweep(markov_ids, VOCAB, [(0.5, 10.0, 1)], path, replace(TINY, epochs=3))


def test_parallel_sweep_equals_sequential(tmp_path, markov_ids):
    """Two spawned workers give the rows one process gives (same seeds: same numbers), and
    the table holds each point once."""
    setup = replace(TINY, epochs=2)
    points = [(0.0, 10.0, 1), (1.0, 10.0, 1), (1.0, 2.0, 2)]
    one = run_sweep(markov_ids, VOCAB, points, tmp_path / "one.jsonl", setup)
    two = run_sweep(markov_ids, VOCAB, points, tmp_path / "two.jsonl", setup, jobs=2)

    def key(row: Figure1Row) -> tuple:
        return row.beta, row.tau, row.seed

    for a, b in zip(sorted(one, key=key),
                    sorted(read_figure1_rows(tmp_path / "two.jsonl"), key=key), strict=True):
        assert key(a) == key(b) and a.distance_per_epoch == b.distance_per_epoch
        assert a.final_loss == pytest.approx(b.final_loss, rel=1e-12)
    assert len(two) == 3
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(markov_ids, VOCAB, points, tmp_path / "x.jsonl", setup, jobs=0)


def test_convergence_sweep_has_its_own_table_and_figure(tmp_path, markov_ids):
    setup = replace(TINY, epochs=3)
    points = figure1_sweep.sweep_points("convergence", seeds=1)
    assert points == [(1.0, 10.0, 1)]
    path = schema.figure1_path(tmp_path, "convergence")
    assert path == tmp_path / "subspace" / "convergence.jsonl"
    assert schema.figure1_path(tmp_path, "both") == tmp_path / "subspace" / "runs.jsonl"
    rows = run_sweep(markov_ids, VOCAB, points, path, setup)
    centred = read_figure1_rows(path)[0].centred_distance_per_epoch
    assert len(centred) == 3 and all(0 <= c <= 1 for c in centred)
    figures_spans.draw_figure1(rows, tmp_path, "convergence")
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["figure1_convergence.png"]
    assert figures_spans.plot_figure1_convergence([]) is None


def test_cli_subspace_wires_its_flags(tmp_path, monkeypatch, capsys):
    from lmtie import cli

    seen = {}

    def fake(sweep, seeds, results_dir, setup, device, data_dir, progress, jobs,
             checkpoint_root):
        seen.update(sweep=sweep, seeds=seeds, results_dir=results_dir, setup=setup,
                    device=device, progress=progress, jobs=jobs, checkpoint_root=checkpoint_root)
        return [make_row(1.0, t, 1, 0.5, epochs=3) for t in TAUS]

    monkeypatch.setattr(figure1_sweep, "run_experiment", fake)
    out = str(tmp_path / "out")
    assert cli.main(["subspace", "--sweep", "b", "--seeds", "4", "--epochs", "7",
                     "--results-dir", out, "--device", "cpu", "--quiet", "--jobs", "2",
                     "--checkpoint-root", "ck"]) == 0
    assert seen == {"sweep": "b", "seeds": 4, "results_dir": out, "device": "cpu",
                    "setup": Figure1Setup(epochs=7), "progress": False, "jobs": 2,
                    "checkpoint_root": "ck"}
    assert capsys.readouterr().out.count("distance 0.500 ± 0.000 (n=1)") == 6
    cli.main(["subspace", "--sweep", "convergence", "--seeds", "1", "--quiet",
              "--results-dir", out])
    assert seen["sweep"] == "convergence" and seen["setup"] == Figure1Setup(epochs=100)
    assert "convergence: beta=1 tau=10 distance" in capsys.readouterr().out


def test_cli_plot_only_draws_from_the_table_without_training(tmp_path, monkeypatch, capsys):
    from lmtie import cli

    monkeypatch.setattr(figure1_sweep, "train_point", None)  # training would raise TypeError
    rows = [make_row(b, 10.0, 1, 0.9 - 0.1 * b, epochs=2, initial_distance=0.98,
                     distance_per_epoch=[0.95, 0.9], loss_per_epoch=[1.0, 1.0])
            for b in (0.0, 1.0)]
    schema.write_figure1_rows(tmp_path / "subspace" / "runs.jsonl", rows)
    assert cli.main(["subspace", "--plot-only", "--results-dir", str(tmp_path)]) == 0
    drawn = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert drawn == ["figure1a.png", "figure1a_epochs.png", "figure1b.png",
                     "figure1b_epochs.png"]  # (1, 10) is a point of both sweeps
    assert "figure 1a: beta=1 tau=10 distance 0.800" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_05_smoke_on_real_ptb(data_dir, tmp_path):
    from lmtie import pipeline

    source = pipeline.NOTEBOOKS_DIR / "05_subspace_experiment.ipynb"
    pipeline.run_notebook(source, tmp_path / "05.ipynb", {
        "sweep": "b", "seeds": 1, "smoke": True, "results_dir": str(tmp_path / "results"),
        "data_dir": str(data_dir), "device": "cpu",
        "checkpoint_root": str(tmp_path / "checkpoints")})
    rows = read_figure1_rows(tmp_path / "results" / "subspace" / "runs.jsonl")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [  # emptied run by run
        figure1_sweep.checkpoint_dir_for(tmp_path / "results" / "subspace" / "runs.jsonl",
                                   Figure1Setup(**figure1.SMOKE)).name]
    assert [(r.beta, r.tau, r.epochs) for r in rows] == [(1.0, t, 2) for t in TAUS]
    assert all(0.9 < r.final_distance <= r.initial_distance for r in rows)
    assert (tmp_path / "results" / "figures" / "figure1b.png").stat().st_size > 10_000
