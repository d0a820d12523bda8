"""Run files → pandas frames: one row per run, one row per epoch, read from
``<results>/runs/*/`` only; and the CSV files of the report's tables.

``<results>`` is a results root (``results/``, or ``results/smoke/`` for smoke runs) holding
``runs/<run_id>/``; the analysis notebooks write ``tables/*.csv`` and ``figures/*.png`` beside
it, and the report notebook renders those. The report's tables are :mod:`lmtie.tables`, its
figures :mod:`lmtie.figures`, the page :mod:`lmtie.render`; ``lmtie reproduce`` (the papermill
driver) is :mod:`lmtie.pipeline`. Nothing is typed by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import numpy as np
import pandas as pd

from lmtie import atomic, reference, schema
from lmtie.config import CORPORA, SIZES, SWEEPS, VARIANTS, Config, preset_run
from lmtie.layout import ResultsDir
from lmtie.settings import train_command

_FINAL_KEYS = ("n_params", "epochs_run", "best_epoch", "valid_ppl", "test_ppl", "device",
               "wall_s")
# from test_statistics.json (schema.TestStatistics), over the test stream
MASS_KEYS = ("mean_p_unk", "mean_target_rank", "mean_p_articles", "mean_p_neighbours")
ALIGNMENT_KEYS = ("logit_std", "target_logit_std", "logit_target_corr")  # analysis.logit_alignment
RUN_COLUMNS = [*Config().to_dict(), *_FINAL_KEYS, "status", "run_id", "model", "git_sha",
               "threads", "torch", "start_time", *MASS_KEYS,
               "target_entropy", "uniform_entropy", *ALIGNMENT_KEYS, "phrases",
               "command", "run_dir"]


def _read(reader: Callable[[Path], Any], run_dir: Path, name: str, hint: str) -> Any:
    """``reader(run_dir)``; errors name the file ``name`` and end with ``hint``."""
    try:
        return reader(run_dir)
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir / name}: not found; {hint}") from None
    except schema.SchemaError as err:
        raise ValueError(f"{err}; {hint}") from None


def _nan(value: float | None) -> float:
    """A number of a run file, NaN where its version did not record it."""
    return np.nan if value is None else value


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's order: corpus, size, variant (then seed)."""
    keys = {"corpus": CORPORA, "size": SIZES, "variant": VARIANTS}
    order = [frame[k].map({v: i for i, v in enumerate(vs)}) for k, vs in keys.items()]
    index = pd.DataFrame({str(i): o for i, o in enumerate(order)} | {"seed": frame["seed"]})
    return frame.loc[index.sort_values(list(index.columns)).index].reset_index(drop=True)


def load_runs(results_dir: str | Path, preset: str | None = None) -> pd.DataFrame:
    """One row per run in ``<results_dir>/runs/``: config, ``final.json``, ``env.json`` and
    ``test_statistics.json`` summaries, the paper's ``model`` label and the ``command``.

    A run without ``final.json`` is still training (or was interrupted): its row has
    ``status`` "in progress (epoch k of N)", the epochs completed so far and no final numbers;
    a finished run has ``status`` "finished".

    Args:
        results_dir: results root holding ``runs/<run_id>/``.
        preset: only the runs of ``preset``, at every seed found
            (:func:`lmtie.config.preset_run`; missing ones are left out, and
            :func:`lmtie.tables.table1_runs` shows their command); None = every run dir.

    Returns:
        DataFrame, one row per run in the paper's order (then seed); perplexities per token
        (exp nats), ``wall_s`` seconds; ``suffix`` is the run_id suffix, or ``"full"`` for
        the full schedule of Decision T1.

    Raises:
        FileNotFoundError: a run dir lacks ``config.json``; a run that completed all its
            epochs lacks ``final.json``; a finished one lacks ``env.json``/
            ``test_statistics.json`` (not written for validation-only ablations; the message
            names the file and how to re-measure the run).
        ValueError: a corrupt or incomplete run file (names it), or, with ``preset``, a run
            dir named as a preset run whose ``config.json`` is not the preset's config.
    """
    root = ResultsDir(results_dir).runs
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    expected = {d.name: preset_run(preset, d.name) for d in dirs} if preset else {}
    rows = [_run_row(d, expected.get(d.name), preset) for d in dirs
            if not preset or expected[d.name]]
    return _sorted(pd.DataFrame(rows, columns=RUN_COLUMNS))


def _run_row(run_dir: Path, expected: Config | None, preset: str | None) -> dict[str, Any]:
    """The :func:`load_runs` row of one run dir (finished or in progress)."""
    try:
        config = Config.from_dict(atomic.read_json(run_dir / "config.json"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir / 'config.json'}: not found; train the run") from None
    if expected is not None and config != expected:
        raise ValueError(f"{run_dir / 'config.json'} is not the {preset} preset's config; "
                         f"retrain it (lmtie reproduce --preset {preset} --seeds "
                         f"{config.seed} --force) or move "
                         "the run dir away")
    command = train_command(config)
    row: dict[str, Any] = {**config.to_dict(), "suffix": config.suffix or "full",
                           "run_id": config.run_id, "model": config.label,
                           "command": command, "run_dir": str(run_dir)}
    hint = (f"re-measure the run (`lmtie evaluate {run_dir}`), finish it (`{command} "
            f"--resume`), or move {run_dir} away")
    if not (run_dir / schema.FINAL).is_file():
        metrics = run_dir / schema.METRICS
        done = len(schema.read_metrics(run_dir)) if metrics.is_file() else 0  # 0: epoch 1
        if done >= config.epochs:  # trained to the end, but its final evaluation is missing
            raise FileNotFoundError(f"{run_dir / schema.FINAL}: not found although all "
                                    f"{config.epochs} epochs ran; {hint}")
        env = atomic.read_json(run_dir / "env.json") if (run_dir / "env.json").is_file() else {}
        return {**row, "status": f"in progress (epoch {done} of {config.epochs})",
                "epochs_run": done, "device": env.get("device"), "git_sha": env.get("git_sha"),
                "threads": env.get("threads"), "torch": env.get("torch"),
                "start_time": env.get("start_time"), "command": f"{command} --resume"}
    final = _read(schema.read_final, run_dir, schema.FINAL, hint)
    env = _read(lambda d: atomic.read_json(d / "env.json"), run_dir, "env.json", hint)
    if not isinstance(env, dict) or "git_sha" not in env:
        raise ValueError(f"{run_dir / 'env.json'}: missing ['git_sha']; {hint}")
    row = {**row, **{k: getattr(final, k) for k in _FINAL_KEYS}, "status": "finished",
           "git_sha": env["git_sha"], "threads": env.get("threads"),
           "torch": env.get("torch"), "start_time": env.get("start_time")}
    if config.valid_only:  # an ablation: no test-set numbers
        return {**row, "test_ppl": np.nan}
    statistics = _read(schema.read_test_statistics, run_dir, schema.TEST_STATISTICS, hint)
    return {**row, **{k: _nan(getattr(statistics, k))
                      for k in (*MASS_KEYS, "target_entropy", "uniform_entropy",
                                *ALIGNMENT_KEYS)},
            "phrases": statistics.phrases}


def finished(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """The finished runs (with ``final.json``) of a :func:`load_runs` frame. Raises: nothing."""
    return runs_frame[runs_frame["status"] == "finished"].reset_index(drop=True)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """``metrics.jsonl`` of one run (:class:`lmtie.schema.EpochRow`): one row per epoch, plus
    ``train_ppl = exp(train_ce)``; numbers its schema version did not record are NaN.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` (names it).
        ValueError: a corrupt line or a row that does not fit the schema, or no epochs
            (names the file).
    """
    path = Path(run_dir) / schema.METRICS
    hint = "train the run again (--force)"
    rows = _read(schema.read_metrics, Path(run_dir), schema.METRICS, hint)
    if not rows:
        raise ValueError(f"{path}: no epochs; {hint}")
    frame = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    frame["train_ppl"] = np.exp(frame["train_ce"].astype(float))
    for column in ("valid_ppl_test_batch", "subspace_distance", "target_entropy"):
        frame[column] = frame[column].astype(float)  # None -> NaN
    return frame


def load_metrics(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Every completed epoch of the runs of :func:`load_runs` (in-progress runs too), long
    format, with the run's ``run_id``, ``corpus``, ``size``, ``variant``, ``model``, ``seed``
    and ``status``; empty when no run has completed an epoch.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_metrics` (a finished run without
            ``metrics.jsonl``, a corrupt one).
    """
    keys = ["run_id", "corpus", "size", "variant", "model", "seed", "status"]
    frames = [read_metrics(run["run_dir"]).assign(**{k: run[k] for k in keys})
              for _, run in runs_frame.iterrows()
              if run["status"] == "finished" or run["epochs_run"]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=keys)


def save_table(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write ``table`` as CSV (atomically) to ``path``; returns it for display.

    Raises:
        OSError: ``path`` cannot be written.
    """
    atomic.write_text(Path(path), table.to_csv(index=False))
    return table


def read_table(results_dir: str | Path, name: str) -> pd.DataFrame:
    """``<results_dir>/tables/<name>.csv`` (only empty cells are NaN: PTB has the word "null").

    Raises:
        FileNotFoundError: the table is missing (run the analysis notebooks first).
    """
    path = ResultsDir(results_dir).table(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `lmtie reproduce` or the analysis "
                                "notebooks 02–04 first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _mean(values: list[float]) -> float:
    """Mean of a list; NaN for an empty one."""
    return fmean(values) if values else math.nan


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for one value) of a non-empty list."""
    return fmean(values), stdev(values) if len(values) > 1 else 0.0


def figure1_summary(rows: list[schema.Figure1Row], sweep: str) -> list[dict[str, Any]]:
    """Per point of Figure 1``sweep`` (``"a"`` | ``"b"`` | ``"convergence"``) that has runs:
    ``x`` (β or τ), ``beta``, ``tau``, ``n`` seeds, ``mean`` and ``std`` (ddof 1; 0 for one
    run) of the final distance (Decision S1), ``residual_mean``/``residual_std`` of the final
    projection residual, ``least_squares`` (mean distance of W's end point under J^aug; None
    where no run has one), ``optimum_mean``/``optimum_std`` and ``optimum_residual`` (W at
    the minimum of eq. 6.1 for the trained h and Lᵀ, :mod:`lmtie.optimum`; None where no run
    has it: below β = 1, or tables before schema version 4), ``converged`` (runs stopped by the
    convergence rule; None for runs from before it) and ``mean_epochs``. Raises: KeyError
    for an unknown sweep. Paper: Figure 1."""
    out = []
    for beta, tau in SWEEPS[sweep]:
        mine = [r for r in rows if schema.point_of(r) == (beta, tau)]
        if not mine:
            continue
        mean, std = _mean_std([r.final_distance for r in mine])
        residual_mean, residual_std = _mean_std([r.final_residual for r in mine])
        ends = [r.least_squares_distance for r in mine if r.least_squares_distance is not None]
        optima = [r for r in mine if r.optimum_distance is not None]
        optimum_mean, optimum_std = (_mean_std([r.optimum_distance for r in optima])
                                     if optima else (None, None))
        ruled = [r.converged for r in mine if r.converged is not None]
        out.append({"x": beta if sweep == "a" else tau, "beta": beta, "tau": tau,
                    "n": len(mine), "mean": mean, "std": std,
                    "residual_mean": residual_mean, "residual_std": residual_std,
                    "least_squares": _mean(ends) if ends else None,
                    "optimum_mean": optimum_mean, "optimum_std": optimum_std,
                    "optimum_residual": (_mean([r.optimum_residual for r in optima])
                                         if optima else None),
                    "converged": sum(ruled) if ruled else None,
                    "mean_epochs": _mean([r.epochs for r in mine])})
    return out


def figure1_per_epoch(rows: list[schema.Figure1Row], sweep: str) -> list[dict[str, Any]]:
    """Per point of Figure 1``sweep`` that has runs: ``x`` (β or τ), ``beta``, ``tau`` and
    ``mean``, the distance(Lᵀ, W) after each epoch averaged over the seeds that reached it
    (``mean[0]``: before training). Raises: KeyError for an unknown sweep.
    Paper: Sec. 6.2 (our addition: the paper shows final distances only)."""
    out = []
    for beta, tau in SWEEPS[sweep]:
        curves = [[r.initial_distance, *r.distance_per_epoch]
                  for r in rows if schema.point_of(r) == (beta, tau)]
        if curves:
            mean = [sum(c[e] for c in curves if e < len(c)) / sum(e < len(c) for c in curves)
                    for e in range(max(map(len, curves)))]
            out.append({"x": beta if sweep == "a" else tau, "beta": beta, "tau": tau,
                        "mean": mean})
    return out


def paper_distance(beta: float, tau: float) -> float | None:
    """The paper's distance at (β, τ) where Figure 1 gives one (``reference.FIGURE1``: β = 0
    and β = 1 at τ = 10), else None. Paper: Figure 1a (values read off the plot)."""
    known = {(0.0, 10.0): reference.FIGURE1["beta0_tau10"],
             (1.0, 10.0): reference.FIGURE1["beta1_tau10"]}
    return known.get((round(beta, 6), round(tau, 6)))


def figure1_remaining(results_dir: str | Path) -> dict[str, Any] | None:
    """What remains of the distance at β = 1, τ = 10 (Figure 1a's end, the paper's ≈ 0.06),
    from the runs of ``subspace/runs.jsonl`` that measured it (mean over them): ``n``,
    ``epochs``, ``converged`` (by the rule), ``distance`` (S1), ``least_squares`` (W's end
    point under J^aug), ``d`` (hidden size; 1/√d is one principal angle of d),
    ``effective_rank`` of the hidden states, and W's mean sine to span(Lᵀ) along their first
    ``round(effective_rank)`` directions (``sine_within``) and along the rest
    (``sine_beyond``; NaN when there is no rest); where measured (schema version 4, else
    None), W at the minimum of eq. 6.1 for the trained h and Lᵀ: its distance ``optimum``
    and projection residual ``optimum_residual``, eq. 6.1 per token over the slice before
    (``slice_loss``) and at it (``optimum_loss``), and the L-BFGS ``iterations``. None when
    no run has these (tables from before schema version 3).

    Raises: ValueError on a malformed table. Paper: Sec. 6.2, Figure 1a (our addition).
    """
    rows = [r for r in schema.read_figure1_rows(schema.figure1_path(results_dir, "both"))
            if schema.point_of(r) == (1.0, 10.0) and r.least_squares_distance is not None
            and r.sine_by_hidden_direction]
    if not rows:
        return None

    rank = _mean([r.hidden_effective_rank for r in rows])
    cut = round(rank)
    optima = [r for r in rows if r.optimum_distance is not None]
    optimum = {name: _mean([getattr(r, field) for r in optima]) if optima else None
               for name, field in (("optimum", "optimum_distance"),
                                   ("optimum_residual", "optimum_residual"),
                                   ("slice_loss", "slice_loss"),
                                   ("optimum_loss", "optimum_loss"),
                                   ("iterations", "optimum_iterations"))}
    return {**optimum, "n": len(rows), "epochs": _mean([r.epochs for r in rows]),
            "converged": sum(bool(r.converged) for r in rows),
            "distance": _mean([r.final_distance for r in rows]),
            "least_squares": _mean([r.least_squares_distance for r in rows]),
            "d": rows[0].setup["hidden_size"], "effective_rank": rank,
            "sine_within": _mean([_mean(r.sine_by_hidden_direction[:cut]) for r in rows]),
            "sine_beyond": _mean([_mean(r.sine_by_hidden_direction[cut:]) for r in rows])}


def figure1_points(results_dir: str | Path) -> list[dict[str, Any]]:
    """One row per point of Figure 1a, 1b and the convergence runs found under
    ``results_dir`` (:func:`lmtie.schema.figure1_path`): ``figure``, ``beta``, ``tau``,
    ``epochs``, ``seeds``, ``converged`` (of them, by the rule), ``distance`` and ``std``
    (final distance, Decision S1, mean and std over seeds), ``residual`` and
    ``residual_std`` (the projection residual), ``least_squares`` (distance of W's end point
    under J^aug), ``optimum``, ``optimum_std`` and ``optimum_residual`` (W at the minimum of
    eq. 6.1 for the trained h and Lᵀ; None where not measured), ``paper``
    (:func:`paper_distance`, None where the paper gives no number).
    [] when no table exists.

    Raises: ValueError on a malformed table. Paper: Sec. 6.2, Figure 1.
    """
    out = []
    for sweep, figure in (("a", "1a"), ("b", "1b"), ("convergence", "longer run")):
        rows = schema.read_figure1_rows(schema.figure1_path(results_dir, sweep))
        for point in figure1_summary(rows, sweep):
            out.append({"figure": figure, "beta": point["beta"], "tau": point["tau"],
                        "epochs": point["mean_epochs"], "seeds": point["n"],
                        "converged": point["converged"], "distance": point["mean"],
                        "std": point["std"], "residual": point["residual_mean"],
                        "residual_std": point["residual_std"],
                        "least_squares": point["least_squares"],
                        "optimum": point["optimum_mean"], "optimum_std": point["optimum_std"],
                        "optimum_residual": point["optimum_residual"],
                        "paper": paper_distance(point["beta"], point["tau"])})
    return out
