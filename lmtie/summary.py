"""The report's opening: what reproduces and what does not, the paper's pattern, Figure 1's
verdict and the contents, written from the tables under ``<results>/tables/`` and the Figure 1
tables (nothing typed by hand but the sentences around the numbers).

``SECTIONS`` lists the page's sections in order; the report notebook gives each heading the
same anchor (``## <a id="anchor"></a>title``). A section added to the page is added here too,
and the summary links to it where it explains a result (e.g. ``does-real-work`` for +REAL).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from IPython.display import Markdown

from lmtie import report, study
from lmtie.layout import ResultsDir
from lmtie.tables import GAP_TOLERANCE

SECTIONS: list[tuple[str, str]] = [  # (anchor, heading), in the page's order
    ("table-1", "Table 1: perplexity"),
    ("pattern", "The paper's claims across seeds (Sec. 6.3–6.4)"),
    ("figure-2", "Validation perplexity per epoch (the paper's Figure 2)"),
    ("ablations", "Ablations (validation set only)"),
    ("does-real-work", "Does +REAL work? (validation set only)"),
    ("subspace", "Subspace distance between Lᵀ and W during training (Sec. 6.2)"),
    ("figure-1", "Figure 1: the augmented loss aligns span(W) with span(Lᵀ) (Sec. 6.2)"),
    ("qualitative", "Qualitative predictions (the paper's Table 3)"),
    ("test-statistics", "p(`<unk>`), target rank, ỹ and W h over the test set (our addition)"),
    ("decisions", "Decisions where the paper is silent or ambiguous"),
    ("provenance", "Provenance of every run"),
]
EXPLAINED_BY = {"+REAL": "does-real-work"}  # a model's own section, where the page has one
STUDIED = {("ptb", "small", "+REAL"): "real_study"}  # a cell's study table (lmtie.study)


def _link(anchor: str, text: str) -> str:
    return f"[{text}](#{anchor})"


def _section(anchor: str) -> str | None:
    """The heading of ``anchor`` when the page has that section, else None."""
    return dict(SECTIONS).get(anchor)


def _ours(row: pd.Series) -> str:
    """Our test perplexity of a Table 1 cell: mean ± std (n seeds), or the one seed's."""
    if row["n"] > 1:
        return f"{row['test_ppl']:.2f} ± {row['test_std']:.2f} (n = {row['n']:.0f})"
    return f"{row['test_ppl']:.2f} (1 seed)"


def _largest_ablation(ablations: pd.DataFrame, row: pd.Series) -> str:
    """The ablation of ``row``'s model that moved validation perplexity most, in words."""
    mine = ablations[(ablations["corpus"] == row["corpus"]) & (ablations["size"] == row["size"])
                     & (ablations["model"] == row["model"])].dropna(subset=["valid_diff"])
    if mine.empty:
        return "no ablation run yet"
    best = mine.loc[mine["valid_diff"].idxmin()]
    return (f"its largest gain among {len(mine)} ablations: {best['change']}, validation "
            f"{best['valid_ppl']:.2f} vs {best['base_valid_ppl']:.2f} at epoch "
            f"{best['epoch']:.0f}")


def _explanation(results: Path, ablations: pd.DataFrame, row: pd.Series) -> str:
    """Why ``row``'s model misses the paper, in one clause: its study's headline
    (:func:`lmtie.study.headline`) where the cell has one and notebook 02 wrote its table,
    else its largest ablation effect."""
    name = STUDIED.get((row["corpus"], row["size"], row["model"]))
    if name and ResultsDir(results).table(name).is_file():
        return study.headline(report.read_table(results, name))
    return _largest_ablation(ablations, row)


def _cells(results: Path, table: pd.DataFrame, ablations: pd.DataFrame) -> list[str]:
    """One bullet per (corpus, size) with a finished run, with a sub-bullet for what
    reproduces and one per model that does not."""
    lines = []
    done = table[table["status"] == "finished"]
    for (corpus, size), cell in done.groupby(["corpus", "size"], sort=False):
        comparable = cell.dropna(subset=["paper_test_ppl"])
        close = comparable[comparable["test_diff"].abs() <= GAP_TOLERANCE]
        far = comparable[comparable["test_diff"].abs() > GAP_TOLERANCE]
        text = [f"**{corpus} {size}** (test perplexity, ours vs paper; reproduced = within "
                f"{GAP_TOLERANCE:g} points):"]
        if not close.empty:
            text.append("reproduced: " + "; ".join(
                f"{r['model']} {_ours(r)} vs {r['paper_test_ppl']:g} (Δ {r['test_diff']:+.2f})"
                for _, r in close.iterrows()) + ".")
        for _, r in far.iterrows():
            own = EXPLAINED_BY.get(r["model"])
            where = (_link(own, _section(own)) if own and _section(own)
                     else _link("ablations", "Ablations"))
            text.append(f"**not reproduced: {r['model']}** {_ours(r)} vs "
                        f"{r['paper_test_ppl']:g} (Δ {r['test_diff']:+.2f}); "
                        f"{_explanation(results, ablations, r)} ({where}).")
        lines.append("\n  - ".join(text))
    return lines


def _pattern(ledger: pd.DataFrame) -> str | None:
    """How many of the paper's orderings of the test perplexities hold here in every seed
    (a :func:`lmtie.claims.ledger` frame), and which do not."""
    orderings = ledger[(ledger["number"] == "test_ppl") & ledger["claim"].str.contains(" below ")
                       & ledger["n"].gt(0)]
    if orderings.empty:
        return None
    same = orderings[orderings["status"] == "holds"]
    text = (f"**The paper's pattern:** {len(same)} of {len(orderings)} orderings of the test "
            "perplexities hold here in every seed")
    differ = orderings[orderings["status"] != "holds"]
    if not differ.empty:
        text += "; not: " + "; ".join(
            f"{r['claim'].removesuffix(' (test perplexity)')} ({r['status']}, mean difference "
            f"{r['mean_diff']:+.2f}, n = {r['n']:g})" for _, r in differ.iterrows())
    return f"{text} ({_link('pattern', 'details')})."


def _figure1(results_dir: Path) -> str:
    """Figure 1's verdict: the trend in β and the level at β = 1, τ = 10, against the paper,
    and where J^aug would take W (:func:`lmtie.report.figure1_remaining`) once measured."""
    rows = {(r["figure"], r["beta"], r["tau"]): r for r in report.figure1_points(results_dir)}
    start, end = rows.get(("1a", 0.0, 10.0)), rows.get(("1a", 1.0, 10.0))
    if not (start and end):
        return ("**Figure 1:** not run yet (`lmtie subspace --sweep both`, "
                f"{_link('figure-1', 'section')}).")
    trend = "falls" if end["distance"] < start["distance"] else "does not fall"
    at_end = end["distance"] if end["optimum"] is None else end["optimum"]
    level = "reaches" if abs(at_end - end["paper"]) <= 0.1 else "stays far from"
    text = (f"**Figure 1:** the distance between span(W) and span(Lᵀ) {trend} from β = 0 to "
            f"β = 1 ({start['distance']:.3f} → {end['distance']:.3f} after {end['epochs']:g} "
            f"epochs, paper ≈ {start['paper']:g} → {end['paper']:g})")
    if end["optimum"] is None:
        text += f" and {level} the paper's level at β = 1, τ = 10"
    else:
        text += (f"; with W taken to its minimum for the trained hidden states and word "
                 f"vectors it is {end['optimum']:.3f} ± {end['optimum_std']:.3f} at β = 1, "
                 f"τ = 10, which {level} the paper's level")
    longer = rows.get(("longer run", 1.0, 10.0))
    if longer:
        text += f"; {longer['distance']:.3f} after {longer['epochs']:g} epochs"
    left = report.figure1_remaining(results_dir)
    if left:
        text += (f"; J^aug's large-τ form (eq. 4.3) would put W at "
                 f"{left['least_squares']:.3f} (1/√d = {1 / math.sqrt(left['d']):.3f}, W's "
                 "constant direction)")
    return f"{text} ({_link('figure-1', 'section')})."


def _code(runs: pd.DataFrame) -> str:
    """The commits the runs were trained at (``runs.csv``'s ``git_sha``, ``-dirty`` for a tree
    with uncommitted changes): the newest run's (by ``start_time``) and how many others."""
    shas = runs.sort_values("start_time", ascending=False)["git_sha"].dropna()
    unique = list(dict.fromkeys(shas.str.replace(r"^(\w{10})\w*", r"\1", regex=True)))
    if not unique:
        return "code at an unrecorded commit"
    dirty = sum(sha.endswith("-dirty") for sha in unique)
    others = (f" and {len(unique) - 1} earlier commit{'s' * (len(unique) > 2)}"
              if len(unique) > 1 else "")
    return (f"code at `{unique[0]}`{others}"
            + (f" ({dirty} with uncommitted changes)" if dirty else ""))


def summary(results_dir: str | Path, preset: str) -> Markdown:
    """The report's first section: the runs behind the page and how to regenerate it; per
    corpus and size what reproduces (test perplexity within ``GAP_TOLERANCE`` of the paper's)
    and what does not, with its study's headline (or else its largest ablation effect) and a
    link to the section that explains it; the paper's pattern; Figure 1's verdict; runs in
    progress; the cells to run on a GPU; the contents.

    Args:
        results_dir: results root with ``tables/{table1,claims,ablations,runs}.csv``
            (notebook 02) and, where run, the Figure 1 tables.
        preset: the preset of the page ("" = every run of the folder).

    Raises:
        FileNotFoundError: a table is missing (run notebook 02 first).
    """
    results = Path(results_dir)
    table = report.read_table(results, "table1")
    runs = report.read_table(results, "runs")
    lines = [(f"**Preset `{preset}`**, regenerated by `lmtie reproduce --preset {preset}` "
              "(`--report-only`: from the run files as they are)." if preset else
              "**Every run** of the results folder."),
             f"**{len(runs)} runs** on {', '.join(dict.fromkeys(runs['device'].dropna()))} "
             f"(torch {', '.join(dict.fromkeys(runs['torch'].dropna()))}), {_code(runs)} "
             f"({_link('provenance', 'provenance')})."]
    if preset == "smoke":
        lines.append("> **Smoke runs** (2 × 100 batches) check the pipeline, not the paper: "
                     "their perplexities are far above the paper's.")
    bullets = _cells(results, table, report.read_table(results, "ablations"))
    pattern = _pattern(report.read_table(results, "claims"))
    bullets += [pattern] if pattern else []
    bullets.append(_figure1(results))
    running = table[table["in_progress"].notna()]
    if not running.empty:
        bullets.append("**In progress** (not in the means): " + "; ".join(
            f"{r['corpus']} {r['size']} {r['model']} {r['in_progress']}"
            for _, r in running.iterrows()) + ".")
    todo = table[table["status"] == "not run"]
    if not todo.empty:
        bullets.append(f"**Not run here:** {len(todo)} cells of Table 1 (they need a GPU; "
                       f"{_link('to-run', 'commands')}).")
    contents = " · ".join(f"{i}. {_link(anchor, title)}"
                          for i, (anchor, title) in enumerate(SECTIONS, 1))
    return Markdown("\n\n".join([*lines, *(f"- {b}" for b in bullets),
                                 f"**Contents:** {contents}"]))

