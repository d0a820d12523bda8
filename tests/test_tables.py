"""lmtie.tables: Table 1 per run and per cell (mean ± sample std over the finished seeds,
hand-computed), the ablations beside their base, the subspace distance per epoch, the
qualitative predictions, test statistics and provenance, from hand-made run files."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import SMOKE, plotted, write_run

from lmtie import atomic, figures, figures_spans, reference, render, report, tables


def test_table1_ours_beside_paper_and_commands_for_missing_cells(results):
    table = tables.table1_runs(report.load_runs(results, "smoke"))
    assert list(table.columns) == tables.TABLE1_RUN_COLUMNS
    assert len(table) == 20  # every cell of the paper's table, one run each at most here
    cells = table.set_index(["corpus", "size", "model"])
    vd = cells.loc[("ptb", "small", "VD-LSTM")]
    assert (vd["valid_ppl"], vd["paper_valid_ppl"]) == (100.0, 92.6)
    assert vd["valid_diff"] == pytest.approx(100.0 - 92.6)
    assert vd["test_diff"] == pytest.approx(95.0 - 87.3)
    assert (vd["n_params_m"], vd["paper_n_params_m"]) == (4.65, 4.65)
    assert (vd["epochs_run"], vd["max_batches"], vd["device"]) == (2, 100, "cpu")
    assert vd["command"] == ("lmtie train --corpus ptb --size small --variant vd --epochs 2 "
                             "--max-batches 100 --suffix smoke")
    real = cells.loc[("ptb", "small", "+REAL")]
    assert real["test_diff"] == pytest.approx(85.0 - 82.7)
    assert real["paper_n_params_m"] == 2.64
    missing = cells.loc[("ptb", "medium", "+REAL")]
    assert math.isnan(missing["valid_ppl"]) and math.isnan(missing["valid_diff"])
    assert (missing["paper_valid_ppl"], missing["paper_test_ppl"]) == (75.7, 73.2)
    assert missing["command"] == "lmtie train --corpus ptb --size medium --variant real"
    assert pd.isna(missing["run_id"])
    assert math.isnan(cells.loc[("wikitext-2", "small", "VD-LSTM")]["paper_valid_ppl"])
    for (corpus, size, _), row in cells.iterrows():  # the paper's numbers are reference's
        variant = {"VD-LSTM": "vd", "+AL": "al", "+RE": "re", "+REAL": "real"}[_]
        expected = reference.paper_perplexity(corpus, size, variant)
        if expected:
            assert (row["paper_valid_ppl"], row["paper_test_ppl"]) == expected


def test_metrics_and_subspace_table_carry_the_numbers(results):
    metrics = report.load_metrics(report.load_runs(results, "smoke"))
    assert list(metrics["valid_ppl"]) == [120.0, 100.0, 110.0, 90.0]
    assert metrics["train_ppl"].iloc[0] == pytest.approx(140.0)  # exp(train_ce)
    table = tables.subspace_table(metrics)  # untied runs only
    assert list(table["model"]) == ["VD-LSTM", "VD-LSTM"]
    assert list(table["subspace_distance"]) == [0.99, 0.97]
    fig = figures_spans.plot_subspace_distance(table)
    assert plotted(fig) == [[0.99, 0.97]]
    assert plotted(figures.plot_valid_curves(metrics)) == [[110.0, 90.0], [120.0, 100.0]]
    empty = tables.subspace_table(metrics[metrics["model"] == "+REAL"])  # tied: no distance
    assert empty.empty and figures_spans.plot_subspace_distance(empty) is None
    assert figures.plot_valid_curves(metrics.iloc[0:0]) is None


def test_qualitative_tables_put_ours_beside_the_paper(results):
    long = tables.qualitative(report.load_runs(results, "smoke"))
    table = tables.qualitative_table(long, 1)
    assert list(table.columns) == ["VD-LSTM (large, paper)", "+REAL (large, paper)",
                                   "VD-LSTM (small, ours)", "+REAL (small, ours)"]
    assert list(table.index) == list(range(1, 11))
    assert table.loc[1, "VD-LSTM (large, paper)"] == "the 0.27"
    assert table.loc[3, "+REAL (large, paper)"] == "a 0.08"
    assert table.loc[4, "+REAL (large, paper)"] == ""  # the paper prints three words
    assert table.loc[1, "+REAL (small, ours)"] == "federal 0.20"
    assert table.loc[10, "VD-LSTM (small, ours)"] == "null 0.02"
    sections = render.qualitative_sections(long)
    assert len(sections) == 8 and "federal" in sections[0].data


def test_unk_rank_and_provenance(results):
    frame = report.load_runs(results, "smoke")
    numbers = tables.test_statistics(frame).set_index("model")
    assert numbers.loc["VD-LSTM", "mean_p_unk"] == 0.06
    assert numbers.loc["+REAL", "mean_target_rank"] == 100.0
    assert numbers.loc["+REAL", "target_entropy"] == 9.0
    assert numbers.loc["+REAL", "uniform_entropy"] == pytest.approx(9.2103, abs=1e-4)
    provenance = tables.provenance(frame)
    assert list(provenance.columns) == tables.PROVENANCE_COLUMNS
    assert list(provenance["epochs"]) == [2, 2] and list(provenance["max_batches"]) == [100, 100]
    shown, note = render.display_provenance(provenance)
    assert list(shown.data["git"]) == ["0123456789"] * 2 and "-dirty" in note.data
    assert list(shown.data["hours"]) == pytest.approx([20 / 3600] * 2)
    assert list(shown.data["epochs run / planned"]) == ["2 / 2"] * 2


def test_ablations_sit_beside_their_base_at_the_same_epoch(results):
    nodetach = SMOKE["real"].replace(detach_target=False, suffix="smoke-nodetach",
                                     valid_only=True)
    write_run(results, nodetach, [104.0], None)  # one epoch; the base has 110 there
    longer = SMOKE["vd"].replace(epochs=3, suffix="smoke-e3")
    write_run(results, longer, [121.0, 101.0, 97.0], 93.0)  # the base has no epoch 3
    table = tables.ablations(report.load_runs(results), "smoke")
    assert list(table["run_id"]) == [longer.run_id, nodetach.run_id]  # the paper's order
    assert list(table["change"]) == ["3 epochs", "no stop-gradient on ỹ"]
    assert list(table["base_run_id"]) == [SMOKE["vd"].run_id, SMOKE["real"].run_id]
    assert list(table["epoch"]) == [3, 1]
    assert list(table["valid_ppl"]) == [97.0, 104.0]
    assert math.isnan(table["base_valid_ppl"][0]) and table["base_valid_ppl"][1] == 110.0
    assert table["valid_diff"][1] == -6.0
    assert "test_ppl" not in table  # validation only: ablations choose settings
    finished = report.load_runs(results).set_index("run_id").loc[nodetach.run_id]
    assert finished["status"] == "finished" and math.isnan(finished["test_ppl"])
    assert tables.ablations(report.load_runs(results, "smoke"), "smoke").empty
    reseeded = SMOKE["real"].replace(seed=2, suffix="smoke-seed2")  # another seed: a change
    write_run(results, reseeded, [115.0, 95.0], 90.0)
    row = tables.ablations(report.load_runs(results), "smoke").set_index("run_id").loc[
        reseeded.run_id]
    assert (row["change"], row["base_run_id"], row["valid_diff"]) == (
        "seed 2", SMOKE["real"].run_id, 5.0)
    shutil.rmtree(results / "runs" / reseeded.run_id)
    just_started = results / "runs" / SMOKE["re"].replace(tau=5.0, suffix="smoke-tau5").run_id
    atomic.write_json(just_started / "config.json",
                    SMOKE["re"].replace(tau=5.0, suffix="smoke-tau5").to_dict())
    atomic.write_jsonl(just_started / "metrics.jsonl", [])  # no epoch yet: left out
    assert len(tables.ablations(report.load_runs(results), "smoke")) == 2

    diverged = SMOKE["real"].replace(tau=1.0, suffix="smoke-tau1", valid_only=True)
    write_run(results, diverged, [150.0, 5000.0], None)
    table = tables.ablations(report.load_runs(results), "smoke")
    fig = figures.plot_ablations(report.load_metrics(report.load_runs(results)), table)
    _, real_panel = fig.axes  # one panel per base run, in the table's order
    assert plotted(fig) == [[120.0, 100.0], [121.0, 101.0, 97.0]]
    lines = {line.get_label(): (line.get_linestyle(), [float(y) for y in line.get_ydata()])
             for line in real_panel.lines}
    assert lines == {"+REAL (base)": ("-", [110.0, 90.0]), "VD-LSTM": ("-", [120.0, 100.0]),
                     "no stop-gradient on ỹ": ("--", [104.0]),
                     "τ 1 (ends at 5000, off the plot)": ("-.", [150.0, 5000.0])}
    colours = [line.get_color() for line in real_panel.lines]
    assert len({str(c) for c in colours}) == 4  # black, grey and one colour per ablation
    assert real_panel.get_ylim() == pytest.approx((0.95 * 90.0, 1.6 * 90.0))
    assert figures.plot_ablations(report.load_metrics(report.load_runs(results)),
                                 table.iloc[0:0]) is None


def test_table1_is_mean_and_sample_std_over_finished_seeds(seeds):
    run_table = tables.table1_runs(report.load_runs(seeds, "smoke"))
    vd_runs = run_table.query("model == 'VD-LSTM' and corpus == 'ptb' and size == 'small'")
    assert list(vd_runs["seed"]) == [1, 2, 3]  # one row per run, kept in table1_runs.csv
    assert list(vd_runs["status"]) == ["finished", "finished", "in progress (epoch 1 of 2)"]
    cells = tables.table1(run_table)
    assert list(cells.columns) == tables.TABLE1_COLUMNS
    assert len(cells) == 20  # one row per cell of the paper's Table 1
    cells = cells.set_index("model")
    vd = cells.loc["VD-LSTM"].iloc[0]
    assert (vd["n"], vd["seeds"], vd["status"]) == (2, "1, 2", "finished")
    assert vd["valid_ppl"] == pytest.approx(102.0) and vd["test_ppl"] == pytest.approx(97.0)
    assert vd["valid_std"] == pytest.approx(math.sqrt(8.0))  # ((−2)² + 2²) / (2 − 1)
    assert vd["test_std"] == pytest.approx(math.sqrt(8.0))
    assert vd["test_diff"] == pytest.approx(97.0 - 87.3)
    assert vd["in_progress"] == "seed 3: epoch 1 of 2"
    real = cells.loc["+REAL"].iloc[0]
    assert (real["n"], real["test_ppl"]) == (1, 85.0) and np.isnan(real["test_std"])
    medium = cells.loc["+REAL"].iloc[1]
    assert (medium["status"], medium["n"]) == ("not run", 0)
    assert medium["command"] == "lmtie train --corpus ptb --size medium --variant real"
    report.save_table(run_table, seeds / "tables" / "table1_runs.csv")  # from the CSV as well
    back = tables.table1(report.read_table(seeds, "table1_runs"))
    assert back["valid_ppl"].iloc[0] == pytest.approx(102.0)


def test_only_in_progress_seeds_resume_and_count_in_no_mean(seeds):
    for seed in (1, 2):
        (seeds / "runs" / SMOKE["vd"].replace(seed=seed).run_id / "final.json").unlink()
        path = seeds / "runs" / SMOKE["vd"].replace(seed=seed).run_id / "metrics.jsonl"
        atomic.write_jsonl(path, atomic.read_jsonl(path)[:1])
    cells = tables.table1(tables.table1_runs(report.load_runs(seeds, "smoke")))
    vd = cells.iloc[0]
    assert (vd["status"], vd["n"]) == ("in progress", 0) and np.isnan(vd["valid_ppl"])
    assert vd["command"].endswith("--resume") and vd["in_progress"].count("epoch 1 of 2") == 3


def test_an_ablation_sits_beside_its_own_seeds_run(seeds):
    ablation = SMOKE["vd"].replace(seed=2, epochs=3, suffix="smoke-e3")
    write_run(seeds, ablation, [117.0, 103.0, 98.0], 94.0)
    other = SMOKE["real"].replace(seed=2, tau=10.0, suffix="smoke-tau10")  # no +REAL seed 2
    write_run(seeds, other, [112.0], 90.0)
    table = tables.ablations(report.load_runs(seeds), "smoke").set_index("run_id")
    assert set(table.index) == {ablation.run_id, other.run_id}  # seeds 2, 3 are preset runs
    assert table.loc[ablation.run_id, "base_run_id"] == SMOKE["vd"].replace(seed=2).run_id
    assert table.loc[ablation.run_id, "change"] == "3 epochs"
    assert table.loc[other.run_id, "base_run_id"] == SMOKE["real"].run_id
    assert table.loc[other.run_id, "change"] == "seed 2, τ 10"
