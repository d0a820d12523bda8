"""lmtie.report / tables / figures / render: tables and figures from hand-made run files (fast,
no training)."""

import base64
import dataclasses
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.display import HTML, Markdown
from PIL import Image as PILImage

from lmtie import cli, figures, figures_spans, reference, render, report, runs, schema, tables
from lmtie.config import Config, make_config, preset_configs

SMOKE = {c.variant: c for c in preset_configs("smoke")}
ENV = {"git_sha": "0123456789abcdef0123", "python": "3.11.7", "torch": "2.13.0",
       "device": "cpu", "threads": 1, "start_time": "2025-01-01T00:00:00Z"}


def top10(first: str) -> list[list]:
    words = [first, "the", "a", "<unk>", "N", "of", "to", "in", "and", "null"]
    return [[w, round(0.2 - 0.02 * i, 3)] for i, w in enumerate(words)]


def write_run(results: Path, config: Config, valid: list[float], test: float | None,
              distances: list[float] | None = None, first_word: str = "federal",
              p_unk: float = 0.05, rank: float = 120.0) -> Path:
    """A finished run dir as ``fit`` writes it, with chosen numbers."""
    run_dir = results / "runs" / config.run_id
    runs.write_json(run_dir / "config.json", config.to_dict())
    runs.write_json(run_dir / "env.json", ENV)
    schema.write_metrics(run_dir, [schema.EpochRow(
        epoch=e, lr=1.0, train_ce=math.log(v + 20), train_aug_kl=0.0, tokens_per_s=1000.0,
        valid_ppl=v, valid_ppl_test_batch=None,
        subspace_distance=None if distances is None else distances[e - 1],
        target_entropy=None, elapsed_s=10.0 * e) for e, v in enumerate(valid, 1)])
    best = int(np.argmin(valid)) + 1
    if not config.valid_only:  # an ablation has no test-set numbers (train.finish)
        schema.write_test_statistics(run_dir, schema.TestStatistics(
            run_id=config.run_id, best_epoch=best, n_tokens=82_429,
            mean_p_unk=p_unk, mean_target_rank=rank, target_entropy=9.0,
            uniform_entropy=math.log(10_000), logit_std=None, target_logit_std=None,
            logit_target_corr=None, mean_p_articles=None, mean_p_neighbours=None,
            neighbours_k=None,
            phrases=[{"context": p["context"], "target": p["target"],
                      "top10": top10(first_word)} for p in reference.PHRASES]))
    schema.write_final(run_dir, schema.FinalRecord(
        run_id=config.run_id, corpus=config.corpus, size=config.size,
        variant=config.variant, tied=config.tied, alpha=config.alpha,
        tau=config.tau, seed=config.seed, n_params=2_640_000 if config.tied else
        4_650_000, epochs_run=len(valid), best_epoch=best, valid_ppl=min(valid),
        test_ppl=test, eval_batch_size=20, test_batch_size=1,
        preset=config.preset, wall_s=10.0 * len(valid), device="cpu"))
    return run_dir


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Smoke runs of VD-LSTM (valid 120 → 100, test 95) and +REAL (valid 110 → 90, test 85)."""
    write_run(tmp_path, SMOKE["vd"], [120.0, 100.0], 95.0, distances=[0.99, 0.97],
              first_word="the", p_unk=0.06, rank=150.0)
    write_run(tmp_path, SMOKE["real"], [110.0, 90.0], 85.0, first_word="federal",
              p_unk=0.03, rank=100.0)
    return tmp_path


def test_load_runs_reads_run_files_in_paper_order(results):
    frame = report.load_runs(results, "smoke")
    assert list(frame["run_id"]) == ["ptb-small-vd-seed1-smoke", "ptb-small-real-seed1-smoke"]
    assert list(frame["valid_ppl"]) == [100.0, 90.0]
    assert list(frame["test_ppl"]) == [95.0, 85.0]
    assert list(frame["mean_p_unk"]) == [0.06, 0.03]
    assert list(frame["preset"]) == ["smoke", "smoke"]
    assert list(frame["git_sha"]) == [ENV["git_sha"]] * 2
    assert len(report.load_runs(results)) == 2  # no preset: every run dir
    assert list(frame.columns) == report.RUN_COLUMNS
    empty = report.load_runs(results, "cpu")  # the cpu preset's runs are not there
    assert empty.empty and list(empty.columns) == report.RUN_COLUMNS
    assert tables.table1_runs(empty)["command"].notna().sum() == 20


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


def test_train_command_round_trips_through_the_cli_for_every_preset():
    for preset in ("smoke", "cpu", "paper"):
        for config in preset_configs(preset):
            argv = report.train_command(config).split()[1:]
            assert cli._train_config(cli._parser().parse_args(argv)) == config
    ablation = make_config("ptb", "small", "al", tau=10.0, detach_target=False,
                           preset="tau10-nodetach", valid_only=True)  # ablation: no test
    argv = report.train_command(ablation).split()[1:]
    assert cli._train_config(cli._parser().parse_args(argv)) == ablation
    biased = make_config("ptb", "small", "real", epochs=5, output_bias=True,
                         preset="e5-bias", valid_only=True)
    argv = report.train_command(biased).split()[1:]
    assert "--output-bias" in argv
    assert cli._train_config(cli._parser().parse_args(argv)) == biased
    for switches, suffix in (({"output_bias": True, "aug_bias": True}, "e10-bias-augbias"),
                             ({"frozen_target": True}, "e10-frozen")):
        config = make_config("ptb", "small", "real", epochs=10, preset=suffix, valid_only=True,
                             **switches)
        assert cli._train_config(cli._parser().parse_args(
            report.train_command(config).split()[1:])) == config
    measured = make_config("ptb", "small", "real", detach_target=False, output_bias=True,
                           preset="nodetach-bias")  # a reading run in full: test measured
    argv = report.train_command(measured).split()[1:]
    assert argv[-1] == "--measure-test"
    assert cli._train_config(cli._parser().parse_args(argv)) == measured
    for bf16 in (make_config("ptb", "small", "real", precision="bf16"),  # a speed option
                 measured.replace(precision="bf16")):
        argv = report.train_command(bf16).split()[1:]
        assert cli._train_config(cli._parser().parse_args(argv)) == bf16
    shortened = make_config("ptb", "small", "real", epochs=5, preset="e5")  # not an ablation
    assert cli._train_config(cli._parser().parse_args(
        report.train_command(shortened).split()[1:])) == shortened
    with pytest.raises(ValueError, match="bptt"):
        report.train_command(make_config(bptt=20))


def test_missing_final_json_after_the_last_epoch_names_the_file_and_the_fix(results):
    path = results / "runs" / SMOKE["vd"].run_id / "final.json"
    path.unlink()  # both epochs of the smoke config ran: the final evaluation is missing
    message = _error(FileNotFoundError, report.load_runs, results, "smoke")
    assert str(path) in message and "lmtie evaluate" in message and "--resume" in message


def test_run_without_final_json_is_in_progress_and_claims_no_numbers(results):
    run_dir = results / "runs" / SMOKE["vd"].run_id
    (run_dir / "final.json").unlink()
    schema.write_metrics(run_dir, schema.read_metrics(run_dir)[:1])  # killed in epoch 2
    frame = report.load_runs(results, "smoke")
    row = frame[frame["run_id"] == SMOKE["vd"].run_id].iloc[0]
    assert row["status"] == "in progress (epoch 1 of 2)" and row["epochs_run"] == 1
    assert row["command"].endswith("--resume") and pd.isna(row["test_ppl"])
    table = tables.table1_runs(frame)
    shown = table[table["run_id"] == SMOKE["vd"].run_id].iloc[0]
    assert pd.isna(shown["valid_ppl"]) and pd.isna(shown["test_diff"])
    assert SMOKE["vd"].run_id not in set(tables.test_statistics(frame)["run_id"])
    assert len(report.load_metrics(frame)) == 3  # its curve so far is still shown
    (run_dir / "metrics.jsonl").write_text("")  # in its first epoch
    frame = report.load_runs(results, "smoke")
    assert "in progress (epoch 0 of 2)" in set(frame["status"])
    assert len(report.load_metrics(frame)) == 2  # the other runs' epochs only


def test_corrupt_or_incomplete_final_json_names_the_file(results):
    path = results / "runs" / SMOKE["real"].run_id / "final.json"
    path.write_text('{"valid_ppl": 90.0, ')
    assert str(path) in _error(ValueError, report.load_runs, results, "smoke")
    path.write_text('{"valid_ppl": 90.0}')
    message = _error(ValueError, report.load_runs, results, "smoke")
    assert str(path) in message and "test_ppl" in message


def test_run_of_another_config_is_refused_for_a_preset(results):
    path = results / "runs" / SMOKE["vd"].run_id / "config.json"
    runs.write_json(path, SMOKE["vd"].replace(max_batches=50).to_dict())
    assert str(path) in _error(ValueError, report.load_runs, results, "smoke")


def test_metrics_missing_or_corrupt_names_the_file(results):
    frame = report.load_runs(results, "smoke")
    path = results / "runs" / SMOKE["vd"].run_id / "metrics.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    assert f"{path}:3" in _error(ValueError, report.load_metrics, frame)
    path.unlink()
    assert str(path) in _error(FileNotFoundError, report.load_metrics, frame)


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


def test_tables_survive_csv_round_trip(results, tmp_path):
    long = tables.qualitative(report.load_runs(results, "smoke"))
    report.save_table(long, tmp_path / "tables" / "qualitative.csv")
    back = report.read_table(tmp_path, "qualitative")
    assert (back["word"] == long["word"]).all()  # "null" and "N" stay words
    report.save_table(tables.table1_runs(report.load_runs(results)), tmp_path / "tables" / "t.csv")
    table = report.read_table(tmp_path, "t")
    assert table["valid_ppl"].notna().sum() == 2 and table["command"].notna().all()
    cells = tables.table1(table)  # from the CSV as from the frame
    assert cells.equals(tables.table1(tables.table1_runs(report.load_runs(results))))
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        report.read_table(tmp_path, "missing")


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


def test_decisions_and_figure1_section(tmp_path):
    text = render.decisions_markdown().data
    assert [line[4:6] for line in text.splitlines()] == [
        "A1", "A2", "A3", "D1", "T1", "T2", "E1", "S1"]
    assert "α = 13 (PTB), 25 (WikiText-2)" in text and "0.3 / 0.5 / 0.65" in text
    (shown,) = render.figure1(tmp_path)
    assert isinstance(shown, Markdown) and "lmtie subspace" in shown.data
    png = figures.save_figure(figures.plot_learning_curve(
        pd.DataFrame({"epoch": [1], "train_ppl": [5.0], "valid_ppl": [4.0]}), "x"),
        tmp_path / "figures" / "figure1a.png")
    os.link(tmp_path / "figures" / "figure1a.png", tmp_path / "figures" / "figure1b.png")
    [images] = render.figure1(tmp_path)  # one output: the images stand side by side
    assert isinstance(images, HTML) and images.data.count("<img") == 2
    assert 'alt="Figure 1b"' in images.data and base64.b64encode(png.data).decode() in images.data
    assert 'style="width: 576px; max-width: 100%"' in images.data  # 6 in at 96 CSS px an inch
    with PILImage.open(tmp_path / "figures" / "figure1a.png") as saved:  # 256 colours: small
        assert saved.mode == "P" and round(saved.info["dpi"][0]) == figures.DPI
    os.link(tmp_path / "figures" / "figure1a.png", tmp_path / "figures" / "figure1b_epochs.png")
    assert 'alt="Figure 1b over training"' in render.figure1(tmp_path)[0].data
    os.link(tmp_path / "figures" / "figure1a.png", tmp_path / "figures" / "figure1_convergence.png")
    assert 'alt="β = 1, τ = 10 trained longer"' in render.figure1(tmp_path)[-1].data
    point = schema.Figure1Row(
        beta=1.0, tau=10.0, seed=1, slice_start=0, epochs=20, final_loss=0.0, final_ce=0.0,
        final_aug_kl=0.0, initial_distance=0.0, final_distance=0.8, final_residual=0.0,
        wall_s=0.0, distance_per_epoch=[], centred_distance_per_epoch=[], loss_per_epoch=[],
        setup={})
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "both"), [point])
    table, images = render.figure1(tmp_path)  # the table of final distances comes first
    assert images.data.count("<img") == 4 and list(table.data["figure"]) == ["1a", "1b"]
    assert list(table.data["paper"]) == [0.06, 0.06] and "0.800" in table.to_html()
    assert list(table.data.columns[:3]) == ["figure", "β", "τ"]


def plotted(fig) -> list[list[float]]:
    """The y values of the lines of the first panel (seaborn adds empty legend proxies)."""
    return sorted([float(y) for y in line.get_ydata()] for line in fig.axes[0].lines
                  if len(line.get_ydata()))


def _error(kind: type[Exception], function, *args) -> str:
    with pytest.raises(kind) as info:
        function(*args)
    return str(info.value)


def test_ablations_sit_beside_their_base_at_the_same_epoch(results):
    nodetach = SMOKE["real"].replace(detach_target=False, preset="smoke-nodetach",
                                     valid_only=True)
    write_run(results, nodetach, [104.0], None)  # one epoch; the base has 110 there
    longer = SMOKE["vd"].replace(epochs=3, preset="smoke-e3")
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
    reseeded = SMOKE["real"].replace(seed=2, preset="smoke-seed2")  # another seed: a change
    write_run(results, reseeded, [115.0, 95.0], 90.0)
    row = tables.ablations(report.load_runs(results), "smoke").set_index("run_id").loc[
        reseeded.run_id]
    assert (row["change"], row["base_run_id"], row["valid_diff"]) == (
        "seed 2", SMOKE["real"].run_id, 5.0)
    shutil.rmtree(results / "runs" / reseeded.run_id)
    just_started = results / "runs" / SMOKE["re"].replace(tau=5.0, preset="smoke-tau5").run_id
    runs.write_json(just_started / "config.json",
                    SMOKE["re"].replace(tau=5.0, preset="smoke-tau5").to_dict())
    runs.write_jsonl(just_started / "metrics.jsonl", [])  # no epoch yet: left out
    assert len(tables.ablations(report.load_runs(results), "smoke")) == 2

    diverged = SMOKE["real"].replace(tau=1.0, preset="smoke-tau1", valid_only=True)
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


def test_ablations_section_shows_table_and_figure_or_how_to_make_one(results):
    table = tables.ablations(report.load_runs(results), "smoke")
    report.save_table(table, results / "tables" / "ablations.csv")
    [note] = render.ablations_section(results)
    assert isinstance(note, Markdown) and "--no-detach-target" in note.data
    write_run(results, SMOKE["real"].replace(tau=10.0, preset="smoke-tau10"), [100.0], 95.0)
    all_runs = report.load_runs(results)
    table = report.save_table(tables.ablations(all_runs, "smoke"),
                              results / "tables" / "ablations.csv")
    figures.save_figure(figures.plot_ablations(report.load_metrics(all_runs), table),
                       results / "figures" / "ablations.png")
    shown, figure, augmented = render.ablations_section(results)
    assert "τ 10" in shown.to_html() and "command" not in shown.data.columns
    assert isinstance(figure, HTML) and figure.data.startswith('<img src="data:image/png')
    assert isinstance(augmented, Markdown) and "not produced yet" in augmented.data


def test_augmented_figure_draws_the_runs_that_train_with_it(results):
    real = SMOKE["real"]
    real_dir = results / "runs" / real.run_id
    schema.write_metrics(real_dir, [
        dataclasses.replace(row, train_aug_kl=kl, target_entropy=h)
        for row, kl, h in zip(schema.read_metrics(real_dir), (0.01, 0.02), (9.1, 9.0),
                              strict=True)])
    write_run(results, real.replace(tau=10.0, preset="smoke-tau10"), [100.0], 95.0)
    tau10 = results / "runs" / real.replace(tau=10.0, preset="smoke-tau10").run_id
    legacy = {k: v for k, v in schema.read_metrics(tau10)[0].to_dict().items()  # version 1:
              if k not in ("schema_version", "target_entropy", "valid_ppl_test_batch")}
    runs.write_jsonl(tau10 / "metrics.jsonl", [{**legacy, "train_aug_kl": 0.1}])
    all_runs = report.load_runs(results)
    fig = figures_spans.plot_augmented(report.load_metrics(all_runs),
                                       tables.ablations(all_runs, "smoke"))
    kl_ax, entropy_ax = fig.axes
    assert {line.get_label(): list(line.get_ydata()) for line in kl_ax.lines} == {
        "+REAL (base)": [0.01, 0.02], "τ 10": [0.1]}  # not VD-LSTM
    assert kl_ax.get_yscale() == "log"
    entropies = [list(line.get_ydata()) for line in entropy_ax.lines]
    assert entropies[0] == [9.1, 9.0] and math.isnan(entropies[1][0])
    note = entropy_ax.get_xlabel()  # the missing series is named, with the reason
    assert "τ 10" in note and "older than the entropy field" in note and "base" not in note
    vd_only = report.load_runs(results, "smoke").query("variant == 'vd'")
    assert figures_spans.plot_augmented(report.load_metrics(vd_only), tables.ablations(
        all_runs, "smoke")) is None


def test_ablation_of_a_base_run_in_its_first_epoch_is_drawn_without_it(results):
    """A seed-2 preset run that has just started (no epoch) and a finished 5-epoch run of the
    same seed: the panel draws the ablation, not the empty base."""
    base = SMOKE["real"].replace(seed=2)
    runs.write_json(results / "runs" / base.run_id / "config.json", base.to_dict())
    runs.write_jsonl(results / "runs" / base.run_id / "metrics.jsonl", [])
    write_run(results, base.replace(preset="smoke-tau40", tau=40.0, alpha=26.0,
                                    valid_only=True), [140.0, 130.0], None)
    all_runs = report.load_runs(results)
    table = tables.ablations(all_runs, "smoke")
    fig = figures.plot_ablations(report.load_metrics(all_runs), table)
    drawn = [line.get_label() for ax in fig.axes for line in ax.lines]
    assert drawn == ["α 26, τ 40"]  # no base line (and no VD-LSTM of seed 2)
