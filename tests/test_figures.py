"""lmtie.figures: the validation curves with their seed band and the paper's marks, the
ablation panels, every figure within the page width and readable at 9 points."""

import pandas as pd
import pytest
from helpers import SMOKE, write_run
from matplotlib.text import Text

from lmtie import atomic, figures, figures_spans, report, tables


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


def test_ablation_of_a_base_run_in_its_first_epoch_is_drawn_without_it(results):
    """A seed-2 preset run that has just started (no epoch) and a finished 5-epoch run of the
    same seed: the panel draws the ablation, not the empty base."""
    base = SMOKE["real"].replace(seed=2)
    atomic.write_json(results / "runs" / base.run_id / "config.json", base.to_dict())
    atomic.write_jsonl(results / "runs" / base.run_id / "metrics.jsonl", [])
    write_run(results, base.replace(suffix="smoke-tau40", tau=40.0, alpha=26.0,
                                    valid_only=True), [140.0, 130.0], None)
    all_runs = report.load_runs(results)
    table = tables.ablations(all_runs, "smoke")
    fig = figures.plot_ablations(report.load_metrics(all_runs), table)
    drawn = [line.get_label() for ax in fig.axes for line in ax.lines]
    assert drawn == ["α 26, τ 40"]  # no base line (and no VD-LSTM of seed 2)


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
