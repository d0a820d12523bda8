"""Run files → pandas frames: one row per run, one row per epoch, read from
``<results>/runs/*/`` only; and the CSV files of the report's tables.

``<results>`` is a results root (``results/``, or ``results/smoke/`` for smoke runs) holding
``runs/<run_id>/``; the analysis notebooks write ``tables/*.csv`` and ``figures/*.png`` beside
it, and the report notebook renders those. The report's tables are :mod:`lmtie.tables`, its
figures :mod:`lmtie.figures`, the page :mod:`lmtie.render`; ``lmtie reproduce`` (the papermill
driver) is :mod:`lmtie.pipeline`. Nothing is typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmtie import runs
from lmtie.config import CORPORA, SIZES, VARIANTS, Config, make_config, preset_run

_FINAL_KEYS = ("n_params", "epochs_run", "best_epoch", "valid_ppl", "test_ppl", "device",
               "wall_s")
_METRICS_KEYS = ("epoch", "train_ce", "valid_ppl", "subspace_distance")
_PREDICTION_KEYS = ("phrases", "mean_p_unk", "mean_target_rank")
_FLAGS = {"seed": "--seed", "epochs": "--epochs", "max_batches": "--max-batches",
          "preset": "--suffix", "tau": "--tau", "alpha": "--alpha", "precision": "--precision"}
_SWITCH_FLAGS = {"output_bias": "--output-bias", "aug_bias": "--aug-bias",
                 "frozen_target": "--frozen-target"}  # ablation switches of `lmtie train`
_NOT_ABLATIONS = ("seed", "epochs", "max_batches", "preset", "valid_only", "precision")
# predictions.json, over the test stream (the last two from 2026-12-03 on)
MASS_KEYS = ("mean_p_unk", "mean_target_rank", "mean_p_articles", "mean_p_neighbours")
ALIGNMENT_KEYS = ("logit_std", "target_logit_std", "logit_target_corr")  # analysis.logit_alignment
RUN_COLUMNS = [*Config().to_dict(), *_FINAL_KEYS, "status", "run_id", "model", "git_sha",
               "threads", "torch", "start_time", *MASS_KEYS,
               "target_entropy", "uniform_entropy", *ALIGNMENT_KEYS, "phrases",
               "command", "run_dir"]


def train_command(config: Config) -> str:
    """The ``lmtie train`` command that produces ``config``'s run; flags only where ``config``
    differs from the defaults of its corpus, size and variant.

    Raises:
        ValueError: ``config`` changes a field that ``lmtie train`` has no flag for.
    """
    base = make_config(config.corpus, config.size, config.variant)
    command = (f"lmtie train --corpus {config.corpus} --size {config.size} "
               f"--variant {config.variant}")
    for name, value in config.to_dict().items():
        if value == getattr(base, name):
            continue
        if name == "detach_target":
            command += " --no-detach-target"
        elif name in _SWITCH_FLAGS:
            command += f" {_SWITCH_FLAGS[name]}"
        elif name == "valid_only":  # set by `lmtie train` for ablations
            continue
        elif name in _FLAGS:
            command += f" {_FLAGS[name]} {value}"
        else:
            raise ValueError(f"{config.run_id}: {name}={value!r} has no `lmtie train` flag")
    changed = [name for name, value in config.to_dict().items() if value != getattr(base, name)]
    if not config.valid_only and any(name not in _NOT_ABLATIONS for name in changed):
        command += " --measure-test"  # an ablation that measures the test set (issue 13)
    return command


def _read_dict(path: Path, keys: tuple[str, ...], hint: str) -> dict[str, Any]:
    """``read_json(path)``, checked to be an object holding ``keys``; errors name the file."""
    try:
        obj = runs.read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; {hint}") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise ValueError(f"{path}: missing {missing}; {hint}")
    return obj


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's order: corpus, size, variant (then seed)."""
    keys = {"corpus": CORPORA, "size": SIZES, "variant": VARIANTS}
    order = [frame[k].map({v: i for i, v in enumerate(vs)}) for k, vs in keys.items()]
    index = pd.DataFrame({str(i): o for i, o in enumerate(order)} | {"seed": frame["seed"]})
    return frame.loc[index.sort_values(list(index.columns)).index].reset_index(drop=True)


def load_runs(results_dir: str | Path, preset: str | None = None) -> pd.DataFrame:
    """One row per run in ``<results_dir>/runs/``: config, ``final.json``, ``env.json`` and
    ``predictions.json`` summaries, the paper's ``model`` label and the ``command``.

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
        (exp nats), ``wall_s`` seconds; ``preset`` is the run_id suffix, or ``"full"`` for
        the full schedule of Decision T1.

    Raises:
        FileNotFoundError: a run dir lacks ``config.json``; a run that completed all its
            epochs lacks ``final.json``; a finished one lacks ``env.json``/
            ``predictions.json`` (not written for validation-only ablations; the message
            names the file and how to re-measure the run).
        ValueError: a corrupt or incomplete run file (names it), or, with ``preset``, a run
            dir named as a preset run whose ``config.json`` is not the preset's config.
    """
    root = Path(results_dir) / "runs"
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    expected = {d.name: preset_run(preset, d.name) for d in dirs} if preset else {}
    rows = [_run_row(d, expected.get(d.name), preset) for d in dirs
            if not preset or expected[d.name]]
    return _sorted(pd.DataFrame(rows, columns=RUN_COLUMNS))


def _run_row(run_dir: Path, expected: Config | None, preset: str | None) -> dict[str, Any]:
    """The :func:`load_runs` row of one run dir (finished or in progress)."""
    config = Config.from_dict(_read_dict(run_dir / "config.json", (), "train the run"))
    if expected is not None and config != expected:
        raise ValueError(f"{run_dir / 'config.json'} is not the {preset} preset's config; "
                         f"retrain it (lmtie reproduce --preset {preset} --seeds "
                         f"{config.seed} --force) or move "
                         "the run dir away")
    command = train_command(config)
    row: dict[str, Any] = {**config.to_dict(), "preset": config.preset or "full",
                           "run_id": config.run_id, "model": config.label,
                           "command": command, "run_dir": str(run_dir)}
    hint = (f"re-measure the run (`lmtie evaluate {run_dir}`), finish it (`{command} "
            f"--resume`), or move {run_dir} away")
    if not (run_dir / "final.json").is_file():
        metrics = run_dir / "metrics.jsonl"
        done = len(runs.read_jsonl(metrics)) if metrics.is_file() else 0  # 0: first epoch
        if done >= config.epochs:  # trained to the end, but its final evaluation is missing
            raise FileNotFoundError(f"{run_dir / 'final.json'}: not found although all "
                                    f"{config.epochs} epochs ran; {hint}")
        env = runs.read_json(run_dir / "env.json") if (run_dir / "env.json").is_file() else {}
        return {**row, "status": f"in progress (epoch {done} of {config.epochs})",
                "epochs_run": done, "device": env.get("device"), "git_sha": env.get("git_sha"),
                "threads": env.get("threads"), "torch": env.get("torch"),
                "start_time": env.get("start_time"), "command": f"{command} --resume"}
    final = _read_dict(run_dir / "final.json", _FINAL_KEYS, hint)
    env = _read_dict(run_dir / "env.json", ("git_sha",), hint)
    row = {**row, **{k: final[k] for k in _FINAL_KEYS}, "status": "finished",
           "git_sha": env["git_sha"], "threads": env.get("threads"),
           "torch": env.get("torch"), "start_time": env.get("start_time")}
    if config.valid_only:  # an ablation: no test-set numbers
        return {**row, "test_ppl": np.nan}
    predictions = _read_dict(run_dir / "predictions.json", _PREDICTION_KEYS, hint)
    return {**row,
            **{k: predictions.get(k, np.nan) for k in MASS_KEYS},
            "target_entropy": predictions.get("target_entropy", np.nan),
            "uniform_entropy": predictions.get("uniform_entropy", np.nan),
            **{k: predictions.get(k, np.nan) for k in ALIGNMENT_KEYS},
            "phrases": predictions["phrases"]}


def finished(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """The finished runs (with ``final.json``) of a :func:`load_runs` frame. Raises: nothing."""
    return runs_frame[runs_frame["status"] == "finished"].reset_index(drop=True)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """``metrics.jsonl`` of one run: one row per epoch, plus ``train_ppl = exp(train_ce)``;
    ``target_entropy`` is NaN for runs made before it was recorded.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` (names it).
        ValueError: a corrupt line, or rows without the columns every run records (names
            the file).
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        rows = runs.read_jsonl(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; train the run first") from None
    bad = [i for i, row in enumerate(rows, 1) if any(k not in row for k in _METRICS_KEYS)]
    if not rows or bad:
        where = "no epochs" if not rows else f"line {bad[0]} lacks one of"
        raise ValueError(f"{path}: {where} {list(_METRICS_KEYS)}; train the run again (--force)")
    frame = pd.DataFrame(rows)
    frame["train_ppl"] = np.exp(frame["train_ce"].astype(float))
    frame["subspace_distance"] = frame["subspace_distance"].astype(float)  # None -> NaN
    if "target_entropy" not in frame:  # recorded per epoch from 2026-12-02 on
        frame["target_entropy"] = np.nan
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
    runs.atomic_write_text(Path(path), table.to_csv(index=False))
    return table


def read_table(results_dir: str | Path, name: str) -> pd.DataFrame:
    """``<results_dir>/tables/<name>.csv`` (only empty cells are NaN: PTB has the word "null").

    Raises:
        FileNotFoundError: the table is missing (run the analysis notebooks first).
    """
    path = Path(results_dir) / "tables" / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `lmtie reproduce` or the analysis "
                                "notebooks 02–04 first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
