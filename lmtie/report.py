"""Run files → the report's tables: pure functions of the files in ``<results>/runs/*/``.

``<results>`` is a results root (``results/``, or ``results/smoke/`` for smoke runs) holding
``runs/<run_id>/``; the analysis notebooks write ``tables/*.csv`` and ``figures/*.png`` beside
it, and the report notebook renders those. The paper's numbers come from :mod:`lmtie.reference`,
ours from the run files: nothing is typed by hand. Figures and the page's presentation are in
:mod:`lmtie.render`; ``lmtie reproduce`` (the papermill driver) is :mod:`lmtie.pipeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmtie import reference, runs
from lmtie.config import (
    CORPORA,
    SIZES,
    VARIANT_LABELS,
    VARIANTS,
    Config,
    make_config,
    preset_configs,
)

_FINAL_KEYS = ("n_params", "epochs_run", "best_epoch", "valid_ppl", "test_ppl", "device",
               "wall_s")
_METRICS_KEYS = ("epoch", "train_ce", "valid_ppl", "subspace_distance")
_PREDICTION_KEYS = ("phrases", "mean_p_unk", "mean_target_rank")
_FLAGS = {"seed": "--seed", "epochs": "--epochs", "max_batches": "--max-batches",
          "preset": "--preset", "tau": "--tau", "alpha": "--alpha"}
_SWITCH_FLAGS = {"output_bias": "--output-bias", "aug_bias": "--aug-bias",
                 "frozen_target": "--frozen-target"}  # ablation switches of `lmtie train`
TABLE1_COLUMNS = ["corpus", "size", "model", "seed", "status", "valid_ppl", "paper_valid_ppl",
                  "valid_diff", "test_ppl", "paper_test_ppl", "test_diff", "n_params_m",
                  "paper_n_params_m", "epochs_run", "best_epoch", "max_batches", "preset",
                  "device", "git_sha", "run_id", "command"]
# predictions.json, over the test stream (the last two from 2026-12-03 on)
MASS_KEYS = ("mean_p_unk", "mean_target_rank", "mean_p_articles", "mean_p_neighbours")
ALIGNMENT_KEYS = ("logit_std", "target_logit_std", "logit_target_corr")  # analysis.logit_alignment
RUN_COLUMNS = [*Config().to_dict(), *_FINAL_KEYS, "status", "run_id", "model", "git_sha",
               "threads", "torch", "start_time", *MASS_KEYS,
               "target_entropy", "uniform_entropy", *ALIGNMENT_KEYS, "phrases",
               "command", "run_dir"]
ABLATION_COLUMNS = ["corpus", "size", "model", "seed", "change", "status", "epoch",
                    "valid_ppl", "base_valid_ppl", "valid_diff", "run_id", "base_run_id",
                    "command"]
PROVENANCE_COLUMNS = ["run_id", "status", "preset", "epochs", "max_batches", "epochs_run",
                      "best_epoch", "device", "threads", "torch", "git_sha", "start_time", "wall_s",
                      "command"]


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
        preset: only the runs of ``lmtie.config.preset_configs(preset)`` (missing ones are
            left out: :func:`table1` shows their command); None = every run dir.

    Returns:
        DataFrame, one row per run in the paper's order; perplexities per token (exp nats),
        ``wall_s`` seconds; ``preset`` is the run's suffix or ``"full"`` (schedule of T1).

    Raises:
        FileNotFoundError: a run dir lacks ``config.json``; a run that completed all its
            epochs lacks ``final.json``; a finished one lacks ``env.json``/
            ``predictions.json`` (not written for validation-only ablations; the message
            names the file and how to re-measure the run).
        ValueError: a corrupt or incomplete run file (names it), or, with ``preset``, a run
            dir whose ``config.json`` is not the preset's config.
    """
    root = Path(results_dir) / "runs"
    if preset:
        expected = {c.run_id: c for c in preset_configs(preset)}
        dirs = [root / run_id for run_id in expected if (root / run_id).is_dir()]
    else:
        expected = {}
        dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows = [_run_row(run_dir, expected.get(run_dir.name), preset) for run_dir in dirs]
    return _sorted(pd.DataFrame(rows, columns=RUN_COLUMNS))


def _run_row(run_dir: Path, expected: Config | None, preset: str | None) -> dict[str, Any]:
    """The :func:`load_runs` row of one run dir (finished or in progress)."""
    config = Config.from_dict(_read_dict(run_dir / "config.json", (), "train the run"))
    if expected is not None and config != expected:
        raise ValueError(f"{run_dir / 'config.json'} is not the {preset} preset's config; "
                         f"retrain it (lmtie reproduce --preset {preset} --force) or move "
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
        ValueError: a corrupt line, or rows without DESIGN.md §3's columns (names the file).
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


def table1(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: every cell of the paper's table, ours beside the paper's.

    One row per run (``TABLE1_COLUMNS``); a cell without a run gets one row with the paper's
    numbers and the ``command`` that would produce ours. ``valid_diff``/``test_diff`` = ours −
    paper (perplexity); ``n_params_m`` in millions (the paper's where PAPER.md §5 gives one).
    Raises: nothing. Paper: Table 1 (v1 PTB, v3 WikiText-2); parameter counts §5.
    """
    rows = []
    for config in preset_configs("paper"):
        key = (config.corpus, config.size, config.variant)
        paper_valid, paper_test = reference.paper_perplexity(*key) or (np.nan, np.nan)
        base = {"corpus": config.corpus, "size": config.size, "model": config.label,
                "paper_valid_ppl": paper_valid, "paper_test_ppl": paper_test,
                "paper_n_params_m": reference.N_PARAMS_M.get(
                    (config.corpus, config.size, config.tied), np.nan)}
        ours = runs_frame[(runs_frame["corpus"] == config.corpus)
                          & (runs_frame["size"] == config.size)
                          & (runs_frame["variant"] == config.variant)]
        if ours.empty:
            rows.append({**base, "seed": config.seed, "status": "not run",
                         "command": train_command(config)})
        for _, run in ours.iterrows():
            rows.append({**{c: run[c] for c in TABLE1_COLUMNS if c in run.index}, **base,
                         "n_params_m": run["n_params"] / 1e6})
    table = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    table["valid_diff"] = table["valid_ppl"] - table["paper_valid_ppl"]
    table["test_diff"] = table["test_ppl"] - table["paper_test_ppl"]
    return table


GAP_TOLERANCE = 3.0  # test perplexity points from the paper's that count as reproduced
CLAIM_COLUMNS = ["corpus", "size", "claim", "paper", "ours", "ours_test", "paper_test"]


def _ordering(numbers: dict[str, float], lower: str, others: list[str]) -> tuple[Any, str]:
    """("yes"/"no", or NaN when a number is missing; the numbers as text) for "``lower`` has
    a lower perplexity than each of ``others``"."""
    values = [numbers.get(model, np.nan) for model in (lower, *others)]
    text = f"{lower} {values[0]:.2f} vs " + ", ".join(
        f"{model} {value:.2f}" for model, value in zip(others, values[1:], strict=True))
    if any(np.isnan(values)):
        return np.nan, text
    return ("yes" if all(values[0] < v for v in values[1:]) else "no"), text


def claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's pattern (Sec. 6.3, PAPER.md §5) checked on our test perplexities: +REAL
    lowest of the four, each variant below VD-LSTM, and +AL against +RE in the paper's order
    for that size (+AL lower for small, +RE for medium and large); then each of our test
    perplexities within ``GAP_TOLERANCE`` of the paper's. One row per claim and (corpus,
    size) with at least one finished run of ours (the lowest seed per variant).

    Args:
        table: a :func:`table1` frame (or ``tables/table1.csv``).

    Returns:
        ``CLAIM_COLUMNS`` frame: ``paper``/``ours`` "yes" or "no" (NaN where a number is
        missing: the paper has no VD-LSTM row for WikiText-2, or a run has not finished);
        ``ours_test``/``paper_test`` the perplexities compared.

    Raises: nothing.
    """
    rows = []
    done = table[table["status"] == "finished"].sort_values("seed", kind="stable")
    for (corpus, size), cell in done.groupby(["corpus", "size"], sort=False):
        cell = cell.drop_duplicates("model")  # the lowest seed of each variant
        ours = dict(zip(cell["model"], cell["test_ppl"], strict=True))
        paper = {VARIANT_LABELS[v]: reference.paper_perplexity(corpus, size, v)[1]
                 for v in VARIANTS if reference.paper_perplexity(corpus, size, v)}
        al, re_, real, vd = (VARIANT_LABELS[v] for v in ("al", "re", "real", "vd"))
        first, second = (al, re_) if paper.get(al, np.inf) < paper.get(re_, np.inf) else (
            re_, al)
        specs = [(f"{real} lowest of the four", real, [vd, al, re_]),
                 *((f"{m} below {vd}", m, [vd]) for m in (al, re_, real)),
                 (f"{first} below {second}", first, [second])]
        for claim, lower, others in specs:
            ours_holds, ours_text = _ordering(ours, lower, others)
            paper_holds, paper_text = _ordering(paper, lower, others)
            rows.append({"corpus": corpus, "size": size, "claim": claim, "paper": paper_holds,
                         "ours": ours_holds, "ours_test": ours_text, "paper_test": paper_text})
        for _, run in cell.iterrows():
            if np.isnan(run["paper_test_ppl"]):
                continue
            rows.append({"corpus": corpus, "size": size, "paper": np.nan,
                         "claim": f"{run['model']} within {GAP_TOLERANCE:g} of the paper",
                         "ours": "yes" if abs(run["test_diff"]) <= GAP_TOLERANCE else "no",
                         "ours_test": f"{run['test_ppl']:.2f} (Δ {run['test_diff']:+.2f})",
                         "paper_test": f"{run['paper_test_ppl']:.2f}"})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _change(config: Config, base: Config) -> str:
    """What ``config`` changes from ``base``, e.g. ``"detach_target=False"`` (its name and
    whether it is validation-only follow from the change)."""
    return ", ".join(f"{name}={value}" for name, value in config.to_dict().items()
                     if name not in ("preset", "valid_only") and value != getattr(base, name))


def ablations(all_runs: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Runs beside a preset's: each run of ``all_runs`` (``load_runs(results_dir)``) that is
    not one of ``preset_configs(preset)`` but has its base there (same corpus, size and
    variant, the preset's settings; another seed is a change too), with the validation
    perplexity at its last completed epoch beside the base's at that same epoch (NaN while the
    base has not got there).

    Runs that have not completed an epoch are left out. Validation only: an ablation
    chooses between settings, so its test perplexity is not shown (never tune on the test
    set). ``change`` names what the run departs in
    (``"detach_target=False"``, ``"tau=10.0, alpha=6.5"``, ``"seed=2"``); ``valid_diff`` =
    run − base.

    Returns:
        ``ABLATION_COLUMNS`` frame, one row per ablation run (empty without one).

    Raises:
        FileNotFoundError, ValueError: as :func:`read_metrics`.
    """
    bases = {(c.corpus, c.size, c.variant): c for c in preset_configs(preset)}
    done = dict(zip(all_runs["run_id"], all_runs["epochs_run"], strict=True))
    dirs = dict(zip(all_runs["run_id"], all_runs["run_dir"], strict=True))
    rows = []
    for _, run in all_runs[all_runs["epochs_run"] > 0].iterrows():  # an epoch to compare
        base_config = bases.get((run["corpus"], run["size"], run["variant"]))
        if base_config is None or run["run_id"] == base_config.run_id:
            continue
        base_id = base_config.run_id
        valid = read_metrics(run["run_dir"]).set_index("epoch")["valid_ppl"]
        epoch = int(valid.index.max())
        base = (read_metrics(dirs[base_id]).set_index("epoch")["valid_ppl"]
                if done.get(base_id, 0) > 0 else pd.Series(dtype=float))
        base_valid = base.get(epoch, np.nan)
        rows.append({**{c: run[c] for c in ("corpus", "size", "model", "seed", "status",
                                            "run_id", "command")},
                     "change": _change(Config.from_dict(
                         runs.read_json(Path(run["run_dir"]) / "config.json")), base_config),
                     "epoch": epoch, "valid_ppl": valid[epoch], "base_valid_ppl": base_valid,
                     "valid_diff": valid[epoch] - base_valid, "base_run_id": base_id})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def subspace_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Subspace distance between Lᵀ and W per epoch of the untied runs (VD-LSTM, +AL).

    Empty when no untied run has completed an epoch. Raises: nothing.

    Paper: Sec. 6.2 (distance of the Table-1 models over training); Decision S1.
    """
    columns = ["run_id", "corpus", "size", "model", "seed", "epoch", "subspace_distance"]
    if metrics.empty:
        return pd.DataFrame(columns=columns)
    table = metrics.dropna(subset=["subspace_distance"])
    return table[["run_id", "corpus", "size", "model", "seed", "epoch", "subspace_distance"]]


def qualitative(runs_frame: pd.DataFrame, size: str | None = None) -> pd.DataFrame:
    """Top-10 next words of the PTB runs of ``size`` beside the paper's lists, long format.

    Columns: ``phrase`` (1–4), ``context``, ``target``, ``column`` (e.g. ``"+REAL (small,
    ours)"``), ``rank`` (1 = top), ``word``, ``p``. Ours: the lowest seed per variant.

    Args:
        size: PTB size of our runs; None = the largest with runs (the paper shows large).

    Only finished runs count; with none, only the paper's lists. Raises: nothing.

    Paper: Sec. 6.4, v1 Table 3 (only the first words of each list are printed there).
    """
    ptb = finished(runs_frame)
    ptb = ptb[ptb["corpus"] == "ptb"]
    size = size or next((s for s in reversed(SIZES) if (ptb["size"] == s).any()), None)
    ours = ptb[ptb["size"] == size].drop_duplicates("variant")
    rows = []
    for number, phrase in enumerate(reference.PHRASES, 1):
        head = {"phrase": number, "context": phrase["context"], "target": phrase["target"]}
        lists = [(f"{VARIANT_LABELS[v]} (large, paper)", phrase[v])
                 for v in ("vd", "real")]
        for _, run in ours.iterrows():
            mine = next(p for p in run["phrases"] if p["context"] == phrase["context"])
            lists.append((f"{run['model']} ({size}, ours)", mine["top10"]))
        rows += [{**head, "column": column, "rank": rank, "word": word, "p": p}
                 for column, words in lists for rank, (word, p) in enumerate(words, 1)]
    return pd.DataFrame(rows)


def qualitative_table(long: pd.DataFrame, phrase: int) -> pd.DataFrame:
    """Phrase ``phrase`` of a :func:`qualitative` frame as a table: rank × column, cells
    ``"word p"`` (p to 2 decimals), ``""`` where the paper prints no more words.

    Raises:
        ValueError: no such phrase in ``long``.
    """
    rows = long[long["phrase"] == phrase]
    if rows.empty:
        raise ValueError(f"no phrase {phrase}; choose one of {sorted(set(long['phrase']))}")
    cells = rows.assign(cell=rows["word"] + " " + rows["p"].map("{:.2f}".format))
    table = cells.pivot(index="rank", columns="column", values="cell")
    return table[list(dict.fromkeys(rows["column"]))].fillna("")


def unk_rank(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Mean p(<unk>) and mean rank of the target (1 = top) over the whole test set, per run,
    with test perplexity and provenance; and the mean entropy of the augmented target ỹ (at
    the run's τ) over the test targets beside its ceiling log V (ỹ uniform), and how closely
    the logits W h follow Lᵀu (``analysis.logit_alignment``, Sec. 4). Our additions to
    Sec. 6.4, Sec. 3 and Sec. 4 (no paper numbers); NaN for runs finished before a number was
    recorded (``lmtie evaluate`` adds it).

    Raises: nothing.
    """
    return finished(runs_frame)[["corpus", "size", "model", "seed", "test_ppl", "mean_p_unk",
                                 "mean_target_rank", "target_entropy", "uniform_entropy",
                                 *ALIGNMENT_KEYS, "preset", "epochs_run", "device", "git_sha",
                                 "run_id"]]


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


def provenance(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Where each run's numbers come from: preset, epochs (planned, run, best), batch cap,
    device, threads, torch, git sha, start time (UTC), wall time (s) and command.

    Raises: nothing.
    """
    return runs_frame[PROVENANCE_COLUMNS].reset_index(drop=True)
