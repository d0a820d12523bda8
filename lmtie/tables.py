"""The report's tables, from the frames of :mod:`lmtie.report`: Table 1 per run and per cell
(mean ± sample std over seeds), the paper's pattern checked on ours, the ablations beside their
base runs, the subspace distance per epoch, the qualitative predictions, test-set statistics
and the provenance of every run. Pure functions of the frames; no file is read but run files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmtie import atomic, reference
from lmtie.config import SIZES, VARIANT_LABELS, Config, preset_configs, preset_run
from lmtie.report import ALIGNMENT_KEYS, finished, read_metrics
from lmtie.settings import describe_change, train_command

TABLE1_RUN_COLUMNS = ["corpus", "size", "model", "seed", "status", "valid_ppl",
                      "paper_valid_ppl", "valid_diff", "test_ppl", "paper_test_ppl", "test_diff",
                      "n_params_m", "paper_n_params_m", "epochs_run", "best_epoch",
                      "max_batches", "device", "git_sha", "run_id", "command"]
TABLE1_COLUMNS = ["corpus", "size", "model", "status", "n", "seeds", "valid_ppl", "valid_std",
                  "paper_valid_ppl", "valid_diff", "test_ppl", "test_std", "paper_test_ppl",
                  "test_diff", "n_params_m", "paper_n_params_m", "in_progress", "command"]
ABLATION_COLUMNS = ["corpus", "size", "model", "seed", "change", "status", "epoch",
                    "valid_ppl", "base_valid_ppl", "valid_diff", "run_id", "base_run_id",
                    "command"]
PROVENANCE_COLUMNS = ["run_id", "model", "status", "epochs", "epochs_run", "best_epoch",
                      "max_batches", "device", "threads", "torch", "git_sha", "start_time",
                      "wall_s", "command"]


def table1_runs(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1 run by run: every cell of the paper's table, ours beside the paper's.

    One row per run of ``runs_frame`` (``TABLE1_RUN_COLUMNS``; runs in progress too, without
    numbers); a cell without a run gets one row with status "not run", the paper's numbers
    and the ``command`` that would produce ours. ``valid_diff``/``test_diff`` = ours − paper
    (perplexity); ``n_params_m`` in millions (the paper's where docs/paper.md §5 gives one).

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
            rows.append({**{c: run[c] for c in TABLE1_RUN_COLUMNS if c in run.index}, **base,
                         "n_params_m": run["n_params"] / 1e6})
    table = pd.DataFrame(rows, columns=TABLE1_RUN_COLUMNS)
    table["valid_diff"] = table["valid_ppl"] - table["paper_valid_ppl"]
    table["test_diff"] = table["test_ppl"] - table["paper_test_ppl"]
    return table


def table1(run_table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 cell by cell: over the finished runs (seeds) of each cell, the mean and the
    sample standard deviation (ddof = 1; NaN for one seed) of the validation and test
    perplexity, beside the paper's; ``valid_diff``/``test_diff`` = our mean − paper.

    Runs in progress count in no mean: ``in_progress`` names them ("seed 2: epoch 5 of 40").
    ``status`` is "finished" (``n`` ≥ 1 finished seeds, listed in ``seeds``), "in progress"
    (none finished yet; ``command`` resumes the first) or "not run" (``command`` makes it).

    Args:
        run_table: a :func:`table1_runs` frame (or ``tables/table1_runs.csv``).

    Returns:
        ``TABLE1_COLUMNS`` frame, one row per cell of the paper's Table 1 in its order.

    Raises: nothing. Paper: Table 1.
    """
    rows = []
    for (corpus, size, model), cell in run_table.groupby(["corpus", "size", "model"],
                                                         sort=False):
        done = cell[cell["status"] == "finished"].sort_values("seed")
        running = cell[cell["status"].str.startswith("in progress")].sort_values("seed")
        first = cell.iloc[0]
        row = {"corpus": corpus, "size": size, "model": model, "n": len(done),
               "seeds": ", ".join(str(int(s)) for s in done["seed"]),
               **{k: first[k] for k in ("paper_valid_ppl", "paper_test_ppl",
                                        "paper_n_params_m")},
               "in_progress": "; ".join(
                   f"seed {int(r['seed'])}: {r['status'].removeprefix('in progress (')[:-1]}"
                   for _, r in running.iterrows())}
        for split in ("valid", "test"):
            values = done[f"{split}_ppl"].astype(float)
            row[f"{split}_ppl"] = values.mean() if len(done) else np.nan
            row[f"{split}_std"] = values.std(ddof=1) if len(done) > 1 else np.nan
        if len(done):
            row |= {"status": "finished", "n_params_m": done["n_params_m"].iloc[0],
                    "command": ""}
        elif len(running):
            row |= {"status": "in progress", "command": running["command"].iloc[0]}
        else:
            row |= {"status": "not run", "command": first["command"]}
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    table["valid_diff"] = table["valid_ppl"] - table["paper_valid_ppl"]
    table["test_diff"] = table["test_ppl"] - table["paper_test_ppl"]
    return table


GAP_TOLERANCE = 3.0  # test perplexity points from the paper's that count as reproduced
def ablations(all_runs: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Runs beside a preset's: each run of ``all_runs`` (``load_runs(results_dir)``) that is
    not one of ``preset``'s runs (at any seed) but has a base there: the preset's run of the
    same corpus, size, variant and seed when it exists, else its seed-1 run (so another seed
    is a change too). The validation perplexity at its last completed epoch sits beside the
    base's at that same epoch (NaN while the base has not got there).

    Runs that have not completed an epoch are left out. Validation only: an ablation
    chooses between settings, so its test perplexity is not shown (never tune on the test
    set). ``change`` names what the run departs in
    (:func:`lmtie.settings.describe_change`, e.g. ``"no stop-gradient on ỹ, 10 epochs"``);
    ``valid_diff`` = run − base.

    Returns:
        ``ABLATION_COLUMNS`` frame, one row per ablation run (empty without one).

    Raises:
        FileNotFoundError, ValueError: as :func:`lmtie.report.read_metrics`.
    """
    bases = {(c.corpus, c.size, c.variant): c for c in preset_configs(preset)}
    done = dict(zip(all_runs["run_id"], all_runs["epochs_run"], strict=True))
    dirs = dict(zip(all_runs["run_id"], all_runs["run_dir"], strict=True))
    rows = []
    for _, run in all_runs[all_runs["epochs_run"] > 0].iterrows():  # an epoch to compare
        base_config = bases.get((run["corpus"], run["size"], run["variant"]))
        if base_config is None or preset_run(preset, run["run_id"]):
            continue
        if base_config.replace(seed=int(run["seed"])).run_id in dirs:
            base_config = base_config.replace(seed=int(run["seed"]))
        base_id = base_config.run_id
        valid = read_metrics(run["run_dir"]).set_index("epoch")["valid_ppl"]
        epoch = int(valid.index.max())
        base = (read_metrics(dirs[base_id]).set_index("epoch")["valid_ppl"]
                if done.get(base_id, 0) > 0 else pd.Series(dtype=float))
        base_valid = base.get(epoch, np.nan)
        config = Config.from_dict(atomic.read_json(Path(run["run_dir"]) / "config.json"))
        rows.append({**{c: run[c] for c in ("corpus", "size", "model", "seed", "status",
                                            "run_id", "command")},
                     "change": describe_change(config, base_config),
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


def test_statistics(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """The test statistics of each finished run (``test_statistics.json``): mean p(<unk>)
    and mean rank of the target (1 = top) over the whole test set, per run,
    with test perplexity and provenance; and the mean entropy of the augmented target ỹ (at
    the run's τ) over the test targets beside its ceiling log V (ỹ uniform), and how closely
    the logits W h follow Lᵀu (``analysis.logit_alignment``, Sec. 4). Our additions to
    Sec. 6.4, Sec. 3 and Sec. 4 (no paper numbers); NaN for runs finished before a number was
    recorded (``lmtie evaluate`` adds it). Where each run comes from: :func:`provenance`.

    Raises: nothing.
    """
    return finished(runs_frame)[["corpus", "size", "model", "seed", "test_ppl", "mean_p_unk",
                                 "mean_target_rank", "target_entropy", "uniform_entropy",
                                 *ALIGNMENT_KEYS, "run_id"]]


def provenance(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Where each run's numbers come from: epochs (planned, run, best), batch cap, device,
    threads, torch, git sha (``-dirty``: ``lmtie/`` differed from that commit), start time
    (UTC), wall time (s) and the command that makes (or resumes) the run.

    Args:
        runs_frame: a :func:`lmtie.report.load_runs` frame; every run of the results folder
            for the report (preset runs and ablations).

    Raises: nothing.
    """
    return runs_frame[PROVENANCE_COLUMNS].reset_index(drop=True)
