"""lmtie.render: Table 1's display, copyable commands, the provenance, the Decisions, the
ablations and Figure 1 sections, from hand-made run files and tables."""

import base64
import os
from dataclasses import replace

import pandas as pd
from helpers import SMOKE, write_run
from IPython.display import HTML, Markdown
from PIL import Image as PILImage

from lmtie import figures, render, report, schema, tables


def test_table1_display_shades_delta_and_leaves_the_cells_not_run_to_the_commands(page):
    table = report.read_table(page, "table1")
    shown = render.display_table1(table)
    assert list(shown.data["model"]) == ["VD-LSTM", "+AL", "+RE", "+REAL"]
    assert list(shown.data["seeds"]) == ["1 (1 seed)"] * 4
    html = shown.to_html()
    assert "+17.30" in html and "#fc9272" in html and "#c7e9c0" in html  # > 10 and ≤ 1
    two = tables.table1(tables.table1_runs(report.load_runs(page, "smoke")))
    two.loc[0, ["n", "seeds", "test_std"]] = [2, "1, 2", 1.5]
    assert render.display_table1(two).data["test, ours"].iloc[0] == "88.00 ± 1.50"
    assert render.display_table1(two).data["seeds"].iloc[0] == "1, 2 (n = 2)"
    commands = render.to_run(table).data
    assert "for v in vd al re real; do lmtie train --corpus ptb --size large --variant $v; done" \
        in commands
    assert "for v in al re real; do lmtie train --corpus wikitext-2" not in commands  # VD too
    assert render.styled(table).to_html() == render.styled(table.copy()).to_html()  # same id


def test_commands_wrap_only_between_flags():
    html = render.command_html("lmtie train --corpus ptb --no-detach-target --tau 10")
    assert html == ('<code><span style="white-space: nowrap">lmtie train</span> '
                    '<span style="white-space: nowrap">--corpus ptb</span> '
                    '<span style="white-space: nowrap">--no-detach-target</span> '
                    '<span style="white-space: nowrap">--tau 10</span></code>')


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
    table, images, reading = render.figure1(tmp_path)  # the table of final distances first
    assert images.data.count("<img") == 4 and list(table.data["figure"]) == ["1a", "1b"]
    assert list(table.data["paper"]) == [0.06, 0.06] and "0.800" in table.to_html()
    assert list(table.data.columns[:3]) == ["figure", "β", "τ"]
    assert "Primary: the principal-angle distance" in reading.data
    assert "predate the measurement" in reading.data
    measured = replace(point, setup={"hidden_size": 300}, least_squares_distance=0.0577,
                       hidden_singular_values=[2.0, 1.0, 1.0], hidden_effective_rank=1.9,
                       sine_by_hidden_direction=[0.1, 0.3, 0.9], converged=False)
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "both"), [measured])
    reading = render.figure1(tmp_path)[2].data
    assert "W's end point under J^aug" in reading and "is at 0.0577" in reading
    assert "1/√d = 0.0577 (d = 300" in reading and "paper's ≈ 0.06" in reading
    assert "first 2 directions W's mean sine to span(Lᵀ) is 0.200, along the rest 0.900" in (
        reading)
    assert "W at its minimum" not in reading  # not measured (schema version 3)
    schema.write_figure1_rows(schema.figure1_path(tmp_path, "both"), [replace(
        measured, slice_loss=24.1749, optimum_loss=22.6725, optimum_distance=0.1578,
        optimum_residual=0.0342, optimum_iterations=5, optimum_gradient=1e-8,
        optimum_converged=True)])
    reading = render.figure1(tmp_path)[2].data
    assert ("from 24.1749 to 22.6725 nats per token (5 iterations) and puts span(W) at 0.158 "
            "from span(Lᵀ) (projection residual 0.034)") in reading


def test_ablations_section_shows_table_and_figure_or_how_to_make_one(results):
    table = tables.ablations(report.load_runs(results), "smoke")
    report.save_table(table, results / "tables" / "ablations.csv")
    [note] = render.ablations_section(results)
    assert isinstance(note, Markdown) and "--no-detach-target" in note.data
    write_run(results, SMOKE["real"].replace(tau=10.0, suffix="smoke-tau10"), [100.0], 95.0)
    all_runs = report.load_runs(results)
    table = report.save_table(tables.ablations(all_runs, "smoke"),
                              results / "tables" / "ablations.csv")
    figures.save_figure(figures.plot_ablations(report.load_metrics(all_runs), table),
                       results / "figures" / "ablations.png")
    shown, figure, augmented = render.ablations_section(results)
    assert "τ 10" in shown.to_html() and "command" not in shown.data.columns
    assert isinstance(figure, HTML) and figure.data.startswith('<img src="data:image/png')
    assert isinstance(augmented, Markdown) and "not produced yet" in augmented.data
