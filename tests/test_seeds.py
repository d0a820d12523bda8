"""Several seeds of a preset (issue 14): which runs belong to a preset, Table 1 as mean ± sample
std over the finished seeds (hand-computed numbers), runs in progress left out of the means,
the seed band of Figure 2 and ablations named after a seed's run."""

import math

import numpy as np
import pytest
from test_report import SMOKE, write_run

from lmtie import cli, figures, report, runs, tables
from lmtie.config import make_config, preset_configs, preset_run


def test_preset_configs_per_seed_and_the_runs_of_a_preset():
    configs = preset_configs("cpu", (1, 2))
    assert [c.run_id for c in configs] == [
        f"ptb-small-{v}-seed{s}" for s in (1, 2) for v in ("vd", "al", "re", "real")]
    assert preset_run("cpu", "ptb-small-real-seed3") == make_config("ptb", "small", "real",
                                                                     seed=3)
    assert preset_run("smoke", "ptb-small-vd-seed2-smoke") == SMOKE["vd"].replace(seed=2)
    for ablation in ("ptb-small-real-seed1-e10-bias", "ptb-small-real-seed2-e5",
                     "ptb-small-vd-seed1-smoke", "ptb-small-vd-seed0", "ptb-small-vd-seedx"):
        assert preset_run("cpu", ablation) is None
    with pytest.raises(ValueError, match="seeds"):
        preset_configs("cpu", (0,))
    args = cli._parser().parse_args(["reproduce", "--preset", "cpu", "--seeds", "1,2,3"])
    assert args.seeds == (1, 2, 3)
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["reproduce", "--seeds", "0"])


@pytest.fixture
def seeds(tmp_path):
    """VD-LSTM seeds 1, 2 finished (valid 100, 104; test 95, 99), seed 3 in progress (epoch 1
    of 2); +REAL seed 1 only (valid 90, test 85)."""
    write_run(tmp_path, SMOKE["vd"], [120.0, 100.0], 95.0)
    write_run(tmp_path, SMOKE["vd"].replace(seed=2), [118.0, 104.0], 99.0)
    running = write_run(tmp_path, SMOKE["vd"].replace(seed=3), [130.0], 97.0)
    (running / "final.json").unlink()
    write_run(tmp_path, SMOKE["real"], [110.0, 90.0], 85.0)
    return tmp_path


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
        runs.write_jsonl(path, runs.read_jsonl(path)[:1])
    cells = tables.table1(tables.table1_runs(report.load_runs(seeds, "smoke")))
    vd = cells.iloc[0]
    assert (vd["status"], vd["n"]) == ("in progress", 0) and np.isnan(vd["valid_ppl"])
    assert vd["command"].endswith("--resume") and vd["in_progress"].count("epoch 1 of 2") == 3


def test_figure2_draws_the_seed_band_and_the_papers_marks(seeds):
    metrics = report.load_metrics(report.load_runs(seeds, "smoke"))
    fig = figures.plot_valid_curves(metrics)
    full, zoom = fig.axes
    vd = next(line for line in full.lines if line.get_label().startswith("VD-LSTM"))
    assert list(vd.get_ydata()) == [119.0, 102.0]  # mean of the finished seeds per epoch
    assert "2 seeds, band min–max" in vd.get_label() and "seed 3 (epoch 1" in vd.get_label()
    [band] = full.collections  # only VD-LSTM has two seeds
    assert band.get_paths()[0].vertices[:, 1].min() == pytest.approx(100.0)
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(120.0)
    styles = {line.get_label().split(" ")[0]: (line.get_linestyle(), line.get_marker())
              for line in full.lines}
    assert styles == {"VD-LSTM": ("-", "o"), "+REAL": (":", "D")}  # apart in grey-scale
    assert zoom.get_ylim() == pytest.approx((90.0 / 1.12, 90.0 * 1.12))  # around the best
    marks = {(round(line.get_ydata()[0], 1), line.get_markerfacecolor()) for line in zoom.lines
             if len(line.get_xdata()) == 1}
    assert marks == {(92.6, "none"), (86.3, "none")}  # the paper's final validation values


def test_an_ablation_sits_beside_its_own_seeds_run(seeds):
    ablation = SMOKE["vd"].replace(seed=2, epochs=3, preset="smoke-e3")
    write_run(seeds, ablation, [117.0, 103.0, 98.0], 94.0)
    other = SMOKE["real"].replace(seed=2, tau=10.0, preset="smoke-tau10")  # no +REAL seed 2
    write_run(seeds, other, [112.0], 90.0)
    table = tables.ablations(report.load_runs(seeds), "smoke").set_index("run_id")
    assert set(table.index) == {ablation.run_id, other.run_id}  # seeds 2, 3 are preset runs
    assert table.loc[ablation.run_id, "base_run_id"] == SMOKE["vd"].replace(seed=2).run_id
    assert table.loc[ablation.run_id, "change"] == "3 epochs"
    assert table.loc[other.run_id, "base_run_id"] == SMOKE["real"].run_id
    assert table.loc[other.run_id, "change"] == "seed 2, τ 10"
