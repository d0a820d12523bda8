"""The report page: the summary from hand-made tables, Table 1's display, copyable commands,
anchors shared by the notebook and the contents, figures readable at the page width, and the
command line's names, defaults and speed."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.text import Text
from test_report import SMOKE, write_run

from lmtie import claims, cli, figures, figures_spans, render, report, summary, tables

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def page(tmp_path):
    """Smoke runs with test perplexities 88 (VD-LSTM, paper 87.3), 90 (+AL, 82.9), 86 (+RE,
    85.1) and 100 (+REAL, 82.7), an ablation of +REAL that gains 20 points, and the tables
    notebook 02 writes."""
    for variant, test in (("vd", 88.0), ("al", 90.0), ("re", 86.0), ("real", 100.0)):
        untied = variant in ("vd", "al")
        write_run(tmp_path, SMOKE[variant], [150.0, 120.0], test,
                  distances=[0.99, 0.98] if untied else None)
    bias = SMOKE["real"].replace(output_bias=True, preset="smoke-bias", valid_only=True)
    write_run(tmp_path, bias, [130.0, 100.0], None)
    runs = report.load_runs(tmp_path, "smoke")
    run_table = report.save_table(tables.table1_runs(runs), tmp_path / "tables" / "t.csv")
    for name, table in (("table1", tables.table1(run_table)),
                        ("claims", claims.ledger(report.load_runs(tmp_path), "smoke")),
                        ("ablations", tables.ablations(report.load_runs(tmp_path), "smoke")),
                        ("runs", tables.provenance(report.load_runs(tmp_path)))):
        report.save_table(table, tmp_path / "tables" / f"{name}.csv")
    return tmp_path


def test_summary_says_what_reproduces_and_what_does_not(page):
    text = summary.summary(page, "smoke").data
    assert "**Preset `smoke`**" in text and "**5 runs**" in text and "Smoke runs" in text
    cell = next(line for line in text.splitlines() if line.startswith("- **ptb small**"))
    assert "reproduced = within 3 points" in cell
    assert ("reproduced: VD-LSTM 88.00 (1 seed) vs 87.3 (Δ +0.70); +RE 86.00 (1 seed) vs 85.1 "
            "(Δ +0.90).") in cell
    assert "**not reproduced: +AL** 90.00 (1 seed) vs 82.9 (Δ +7.10); no ablation run yet" in cell
    assert ("**not reproduced: +REAL** 100.00 (1 seed) vs 82.7 (Δ +17.30); its largest gain "
            "among 1 ablations: free output bias, validation 100.00 vs 120.00 at epoch 2 "
            "([Does +REAL work? (validation set only)](#does-real-work))") in cell
    assert "**Figure 1:** not run yet" in text
    assert "**Not run here:** 16 cells" in text and "(#to-run)" in text
    contents = text[text.index("**Contents:**"):]
    assert all(f"(#{anchor})" in contents for anchor, _ in summary.SECTIONS)


def test_summary_links_a_models_own_section_when_the_page_has_one(page, monkeypatch):
    monkeypatch.setattr(summary, "SECTIONS",
                        [*summary.SECTIONS, ("does-real-work", "Does +REAL work?")])
    text = summary.summary(page, "smoke").data
    assert "([Does +REAL work?](#does-real-work))" in text
    assert "+AL** 90.00 (1 seed) vs 82.9 (Δ +7.10); no ablation run yet ([Ablations]" in text


def test_every_section_of_the_contents_is_an_anchor_of_the_report_notebook():
    cells = json.loads((NOTEBOOKS / "00_report.ipynb").read_text())["cells"]
    headings = [line for c in cells if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings == [f'## <a id="{anchor}"></a>{title}' for anchor, title in summary.SECTIONS]


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


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_figures_fit_the_page_and_read_at_9_points(page):
    metrics = report.load_metrics(report.load_runs(page))
    ablations = report.read_table(page, "ablations")
    drawn = {"valid": figures.plot_valid_curves(metrics),
             "ablations": figures.plot_ablations(metrics, ablations),
             "subspace": figures_spans.plot_subspace_distance(tables.subspace_table(metrics)),
             "curve": figures.plot_learning_curve(metrics.iloc[:2], "x")}
    for name, fig in drawn.items():
        assert fig.get_figwidth() <= figures.PAGE_WIDTH_IN, name
        small = [t.get_text() for t in _texts(fig) if t.get_fontsize() < figures.MIN_FONT_PT]
        assert small == [], name
        for ax in fig.axes:
            drawn_lines = [line for line in ax.lines if line.get_label()[0] != "_"]
            assert len(drawn_lines) <= 5, name
    _, zoom = drawn["valid"].axes
    assert zoom.get_ylim()[1] < 150  # zoomed around the best final value, not the first epoch
    assert drawn["subspace"].axes[0].get_ylim() == (0, 1.02)  # the distance's whole range


def test_the_ablations_split_into_panels_of_three():
    rows = pd.DataFrame({"base_run_id": ["ptb-small-real-seed1"] * 7, "corpus": "ptb",
                         "size": "small", "model": "+REAL", "run_id": list("abcdefg")})
    panels = figures.ablation_panels(rows)
    assert [len(p[1]) for p in panels] == [3, 3, 1]
    assert [p[2] for p in panels] == [f"ptb small +REAL, seed 1 ({i}/3)" for i in (1, 2, 3)]


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys; from lmtie import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    for command in ("train", "evaluate", "diagnose", "reproduce", "data", "subspace"):
        assert f"\n    {command}" in out
    assert out.strip().endswith("False False")


def test_train_help_gives_every_default_and_old_spellings_say_the_new():
    parser = cli._parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.help is not None and action.default not in (None, False, "==SUPPRESS=="):
            assert "default" in action.help, action.option_strings
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--preset", "smoke"])
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "--output-dir", "x"])


def test_train_results_dir_is_the_results_root(tmp_path, capsys):
    assert cli.main(["train", "--results-dir", str(tmp_path / "runs"), "--epochs", "1"]) == 2
    assert "results root" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
