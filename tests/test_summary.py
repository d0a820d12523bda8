"""lmtie.summary: what reproduces and what does not, from hand-made tables, and its contents
linking the sections of the report notebook."""

import json
from pathlib import Path

import pandas as pd

from lmtie import report, study, summary

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_summary_says_what_reproduces_and_what_does_not(page):
    text = summary.summary(page, "smoke").data
    assert "**Preset `smoke`**" in text and "**5 runs**" in text and "Smoke runs" in text
    cell = text[text.index("- **ptb small**"):].split("\n\n")[0].splitlines()
    assert "reproduced = within 3 points" in cell[0]
    assert cell[1] == ("  - reproduced: VD-LSTM 88.00 (1 seed) vs 87.3 (Δ +0.70); +RE 86.00 "
                       "(1 seed) vs 85.1 (Δ +0.90).")
    assert cell[2].startswith("  - **not reproduced: +AL** 90.00 (1 seed) vs 82.9 (Δ +7.10); "
                              "no ablation run yet")
    assert cell[3] == ("  - **not reproduced: +REAL** 100.00 (1 seed) vs 82.7 (Δ +17.30); its "
                       "largest gain among 1 ablations: free output bias, validation 100.00 vs "
                       "120.00 at epoch 2 ([Does +REAL work? (validation set only)]"
                       "(#does-real-work)).")
    assert len(cell) == 4
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


def test_a_studied_cell_gives_its_studys_headline_instead_of_an_ablation(page):
    names = [h.name for h in study.HYPOTHESES[:4]]
    verdicts = ["supports", "refutes", "refutes", "open (run longer)"]
    report.save_table(pd.DataFrame({"hypothesis": names, "verdict": verdicts}),
                      page / "tables" / "real_study.csv")
    text = summary.summary(page, "smoke").data
    assert ("**not reproduced: +REAL** 100.00 (1 seed) vs 82.7 (Δ +17.30); over 4 readings of "
            "the paper (validation, matched epochs) it trains like +RE with α/35; still fails "
            "with ỹ from L frozen each epoch and no stop-gradient on ỹ; beats +RE beyond the "
            "noise with none; open: τ = 40 (open (run longer)) ([Does +REAL work?") in text
    assert "largest gain" not in text.split("+REAL**")[1].split("\n")[0]


def test_every_section_of_the_contents_is_an_anchor_of_the_report_notebook():
    cells = json.loads((NOTEBOOKS / "00_report.ipynb").read_text())["cells"]
    headings = [line for c in cells if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings == [f'## <a id="{anchor}"></a>{title}' for anchor, title in summary.SECTIONS]


def test_figure1_line_gives_trend_level_and_where_j_aug_takes_w(page):
    from lmtie import schema
    from lmtie.figure1 import Figure1Setup

    def row(beta, distance, seed=1, **measured):
        return schema.Figure1Row(
            beta=beta, tau=10.0, seed=seed, slice_start=0, epochs=25, final_loss=0.0,
            final_ce=0.0, final_aug_kl=None, initial_distance=0.98, final_distance=distance,
            final_residual=0.5, wall_s=0.0, distance_per_epoch=[], centred_distance_per_epoch=[],
            loss_per_epoch=[], setup=Figure1Setup().to_dict(), **measured)

    path = schema.figure1_path(page, "both")
    schema.write_figure1_rows(path, [row(0.0, 0.988), row(1.0, 0.749)])
    line = next(x for x in summary.summary(page, "smoke").data.splitlines()
                if x.startswith("- **Figure 1:**"))
    assert ("the distance between span(W) and span(Lᵀ) falls from β = 0 to β = 1 (0.988 → "
            "0.749 after 25 epochs, paper ≈ 1 → 0.06) and stays far from the paper's level at "
            "β = 1, τ = 10 (") in line
    assert "large-τ form" not in line  # no run measured it
    schema.write_figure1_rows(path, [row(0.0, 0.988), row(
        1.0, 0.749, least_squares_distance=0.0577, hidden_effective_rank=171.0,
        hidden_singular_values=[1.0] * 300, sine_by_hidden_direction=[0.5] * 300)])
    line = next(x for x in summary.summary(page, "smoke").data.splitlines()
                if x.startswith("- **Figure 1:**"))
    assert ("τ = 10; J^aug's large-τ form (eq. 4.3) would put W at 0.058 "
            "(1/√d = 0.058, W's constant direction) ([") in line
    schema.write_figure1_rows(path, [
        row(0.0, 0.988), row(1.0, 0.749, optimum_distance=0.15, optimum_residual=0.03),
        row(1.0, 0.751, seed=2, optimum_distance=0.05, optimum_residual=0.02)])
    line = next(x for x in summary.summary(page, "smoke").data.splitlines()
                if x.startswith("- **Figure 1:**"))
    assert ("(0.988 → 0.750 after 25 epochs, paper ≈ 1 → 0.06); with W taken to its minimum for "
            "the trained hidden states and word vectors it is 0.100 ± 0.071 at β = 1, τ = 10, "
            "which reaches the paper's level (") in line


def test_the_code_line_names_the_newest_runs_commit_and_counts_the_others():
    runs = pd.DataFrame({"git_sha": ["1" * 40 + "-dirty", "2" * 40, "1" * 40 + "-dirty", None],
                         "start_time": ["2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z",
                                        "2026-12-02T00:00:00Z", "2026-12-04T00:00:00Z"]})
    assert summary._code(runs) == ("code at `2222222222` and 1 earlier commit "
                                   "(1 with uncommitted changes)")
    later = pd.concat([runs, pd.DataFrame({"git_sha": ["3" * 40],
                                           "start_time": ["2026-12-05T00:00:00Z"]})])
    assert summary._code(later) == ("code at `3333333333` and 2 earlier commits "
                                    "(1 with uncommitted changes)")
    assert summary._code(runs.iloc[[1]]) == "code at `2222222222`"
    assert summary._code(runs.iloc[[3]]) == "code at an unrecorded commit"
