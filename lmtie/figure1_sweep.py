"""The Figure 1 sweep (Sec. 6.2): its points, its table, its parallel runs and their checkpoints.

:func:`run_sweep` trains every (β, τ, seed) not yet in the sweep's table
(:func:`lmtie.schema.figure1_path`) with :func:`lmtie.figure1.train_point`, ``jobs`` at a time in
spawned processes, and appends each row as its run finishes. One process writes a table: it
holds the locks of the table's folder and of the runs' checkpoint folder
(:func:`checkpoint_dir_for`, outside the repository). Each run writes its checkpoint after every
epoch, removed once its row is in the table, so an interrupted sweep goes on from the last
finished epoch of each run, to the numbers an unbroken run gives. ``docs/figure1.md`` says what a
sweep costs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from torch import Tensor

from lmtie import schema
from lmtie.config import SWEEPS
from lmtie.data import Corpus
from lmtie.device import resolve_device
from lmtie.figure1 import Figure1Setup, train_point
from lmtie.identity import owned
from lmtie.runs import DEFAULT_CHECKPOINT_ROOT
from lmtie.schema import Figure1Row, figure1_path, point_of

_DEFAULT_SETUP = Figure1Setup()


def sweep_points(sweep: str = "both", seeds: int = 3) -> list[tuple[float, float, int]]:
    """(β, τ, seed) of Figure 1a (``"a"``), 1b (``"b"``), both (the shared point β = 1,
    τ = 10 once) or ``"convergence"``, seeds 1..``seeds``, seed-major (a cut-short sweep has
    whole curves).

    Raises: ValueError for an unknown sweep or ``seeds < 1``. Paper: Sec. 6.2, Figure 1a/b.
    """
    if sweep not in (*SWEEPS, "both") or seeds < 1:
        raise ValueError(f"sweep must be one of {(*SWEEPS, 'both')} and seeds >= 1, got "
                         f"{sweep!r}, {seeds}")
    pairs = list(dict.fromkeys(SWEEPS["a"] + SWEEPS["b"] if sweep == "both" else SWEEPS[sweep]))
    return [(beta, tau, seed) for seed in range(1, seeds + 1) for beta, tau in pairs]


def _unordered(function: Callable[..., Figure1Row], calls: list[tuple], jobs: int
               ) -> Iterator[Figure1Row]:
    """``function(*args)`` for each ``args`` of ``calls``, yielded as each finishes: here when
    ``jobs`` is 1, else in ``jobs`` spawned processes with this process's torch thread count
    (spawn, not fork: a forked OpenMP runtime can hang)."""
    if jobs == 1:
        yield from (function(*args) for args in calls)
        return
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads,
                               initargs=(torch.get_num_threads(),))
    try:
        for future in as_completed([pool.submit(function, *args) for args in calls]):
            yield future.result()
    finally:
        pool.shutdown(cancel_futures=True)


def checkpoint_dir_for(path: str | Path, setup: Figure1Setup,
                      root: str | Path | None = None) -> Path:
    """Where the runs of the sweep table at ``path`` keep their last epoch:
    ``<root>/figure1-<12 hex digits of sha256(the table's absolute path, setup)>/``, one
    ``beta<β>-tau<τ>-seed<s>.pt`` per run in progress (root: ``~/.cache/lmtie/checkpoints``).
    Raises: nothing."""
    key = json.dumps([str(Path(path).resolve()), setup.to_dict()], sort_keys=True)
    root = Path(root or DEFAULT_CHECKPOINT_ROOT).expanduser()
    return root / f"figure1-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _checkpoint_name(beta: float, tau: float, seed: int) -> str:
    return f"beta{beta:g}-tau{tau:g}-seed{seed}.pt"


def run_sweep(ids: Tensor, vocab_size: int, points: list[tuple[float, float, int]],
              path: str | Path, setup: Figure1Setup = _DEFAULT_SETUP,
              device: str | torch.device = "cpu", progress: bool = False, jobs: int = 1,
              checkpoint_root: str | Path | None = None) -> list[Figure1Row]:
    """Train every (β, τ, seed) of ``points`` not yet in the table at ``path``
    (:func:`lmtie.schema.read_figure1_rows`), ``jobs`` at a time (separate processes); the
    table is rewritten as each run finishes (atomically, by this process only: it holds the
    locks of the table's folder and of :func:`checkpoint_dir_for`), and each run writes a
    checkpoint after every epoch (removed once its row is in the table), so an interrupted
    sweep resumes from the last finished epoch of each run. Returns all rows of the table.

    Raises:
        ValueError: ``jobs < 1``; the table holds runs of another ``setup`` (use another
            results dir); a checkpoint of another run; or as ``train_point``.
        lmtie.lock.RunLockedError: another process is writing this table (names it).

    Paper: Sec. 6.2 ("each point averaged over 10 runs"; we use fewer, see the CLI).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    ckpt_dir = checkpoint_dir_for(path, setup, checkpoint_root)
    labels = ("Figure 1 table folder", "Figure 1 checkpoint folder")
    with owned(Path(path).parent, ckpt_dir, labels):
        rows = schema.read_figure1_rows(path)
        other = [r.setup for r in rows if r.setup != setup.to_dict()]
        if other:
            raise ValueError(f"{path} holds runs of another setup ({other[0]}); pass "
                             "another --results-dir, or delete the table to start again")
        done = {(*point_of(r), r.seed) for r in rows}
        for row in rows:  # a kill between the table's write and the unlink below left it
            (ckpt_dir / _checkpoint_name(row.beta, row.tau, row.seed)).unlink(missing_ok=True)
        todo = [p for p in points if (round(p[0], 6), round(p[1], 6), p[2]) not in done]
        calls = [(ids, vocab_size, beta, tau, seed, setup, device,
                  ckpt_dir / _checkpoint_name(beta, tau, seed), progress)
                 for beta, tau, seed in todo]
        for i, row in enumerate(_unordered(train_point, calls, jobs), 1):
            rows.append(row)
            schema.write_figure1_rows(path, rows)
            (ckpt_dir / _checkpoint_name(row.beta, row.tau, row.seed)).unlink(missing_ok=True)
            if progress:
                at_minimum = ("" if row.optimum_distance is None else
                              f", {row.optimum_distance:.3f} with W at its minimum")
                print(f"[{i}/{len(todo)}] beta={row.beta:g} tau={row.tau:g} seed={row.seed}: "
                      f"distance {row.initial_distance:.3f} -> {row.final_distance:.3f} in "
                      f"{row.epochs} epochs{at_minimum}, {row.wall_s:.0f} s", flush=True)
    return rows


def run_experiment(sweep: str = "both", seeds: int = 3, results_dir: str | Path = "results",
                   setup: Figure1Setup = _DEFAULT_SETUP, device: str = "auto",
                   data_dir: str | Path | None = None, progress: bool = True, jobs: int = 1,
                   checkpoint_root: str | Path | None = None) -> list[Figure1Row]:
    """Run (resuming) the Figure 1 sweep on PTB train into its table under ``results_dir``
    (:func:`lmtie.schema.figure1_path`), the runs in progress checkpointed under
    ``checkpoint_root`` (:func:`checkpoint_dir_for`). Returns all rows of that table; the
    figures are :func:`lmtie.figures_spans.draw_figure1`'s.

    Raises:
        ValueError: bad sweep/seeds/device/setup; FileNotFoundError: PTB is missing (the
            message says how to get it); as :func:`run_sweep`.

    Paper: Sec. 6.2, Figure 1. Time: (number of points × seeds) × the time of one run /
    ``jobs`` (one process per job; with one torch thread each on a 2-core CPU, ``jobs=2``).
    """
    points = sweep_points(sweep, seeds)
    dev = resolve_device(device)
    corpus = Corpus("ptb", data_dir)
    return run_sweep(corpus.train, len(corpus.vocab), points,
                     figure1_path(results_dir, sweep), setup, dev, progress, jobs,
                     checkpoint_root)
