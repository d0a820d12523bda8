"""The report page's tables and sections, from the frames of :mod:`lmtie.tables` (or their
CSVs): human column names, numbers to the digits that matter, Δ shaded by size, commands that
copy as one line, the qualitative tables, the Decisions and the ablation and Figure 1
sections. The opening summary is :mod:`lmtie.summary`, the figures :mod:`lmtie.figures`.
"""

from __future__ import annotations

import hashlib
import html
import math
from pathlib import Path

import pandas as pd
from IPython.display import HTML, Markdown
from pandas.io.formats.style import Styler

from lmtie import report, study, tables
from lmtie.config import SIZES, make_config
from lmtie.figures import embed
from lmtie.layout import ResultsDir

# Shades of |Δ| (perplexity points, ours − paper): upper bound, colour, meaning
DELTA_SHADES = ((1.0, "#c7e9c0", "≤ 1"),
                (tables.GAP_TOLERANCE, "#edf8b1", f"≤ {tables.GAP_TOLERANCE:g} (reproduced)"),
                (10.0, "#fdd49e", "≤ 10"), (math.inf, "#fc9272", "> 10"))


def styled(frame: pd.DataFrame, precision: int = 3) -> Styler:
    """``frame`` without its index, floats to ``precision`` decimals, "–" for missing, text
    HTML-escaped (``<unk>`` is a word, not a tag); its HTML id is a hash of its content, so
    the same table renders to the same bytes. Raises: nothing."""
    uuid = hashlib.sha1(frame.to_csv(index=False).encode()).hexdigest()[:10]
    return (Styler(frame, uuid=uuid, cell_ids=False)
            .format(precision=precision, na_rep="–", escape="html").hide(axis="index"))


def _shade(value: object) -> str:
    """The background of a Δ cell: by its size (``DELTA_SHADES``), none when missing."""
    if not isinstance(value, int | float) or math.isnan(value):
        return ""
    colour = next(c for bound, c, _ in DELTA_SHADES if abs(value) <= bound)
    return f"background-color: {colour}"


def _short_sha(shas: pd.Series) -> pd.Series:
    """Git shas to 10 hex digits, ``-dirty`` kept."""
    return shas.astype("string").str.replace(r"^([0-9a-f]{10})[0-9a-f]*", r"\1", regex=True)


def _ours(table: pd.DataFrame, split: str) -> pd.Series:
    """Our mean ± std of ``split`` perplexity per cell; the mean alone for one seed."""
    mean, std = table[f"{split}_ppl"], table[f"{split}_std"]
    return pd.Series([("–" if pd.isna(m) else f"{m:.2f}" if pd.isna(s) else f"{m:.2f} ± {s:.2f}")
                      for m, s in zip(mean, std, strict=True)], index=table.index)


def display_table1(table: pd.DataFrame) -> Styler:
    """The cells of a :func:`lmtie.tables.table1` frame (or its CSV) that have runs here:
    ours (mean ± sample std over the finished seeds; the mean alone, "(1 seed)" in the
    seeds column, for one), the paper's, and Δ = our mean − paper shaded by size
    (``DELTA_SHADES``); parameters in millions; seeds still training. The cells not run are
    :func:`to_run`'s.

    Raises: nothing.
    """
    table = table[table["status"] != "not run"].reset_index(drop=True)
    names = [", ".join(f"{float(s):g}" for s in str(seeds).split(",")) if n else ""
             for n, seeds in zip(table["n"], table["seeds"], strict=True)]  # CSV: 1 → 1.0
    seeds = [("in progress" if n == 0 else f"{s} (1 seed)" if n == 1 else f"{s} (n = {n:.0f})")
             for n, s in zip(table["n"], names, strict=True)]
    shown = pd.DataFrame({
        "corpus": table["corpus"], "size": table["size"], "model": table["model"],
        "seeds": seeds, "valid, ours": _ours(table, "valid"),
        "valid, paper": table["paper_valid_ppl"], "valid Δ": table["valid_diff"],
        "test, ours": _ours(table, "test"), "test, paper": table["paper_test_ppl"],
        "test Δ": table["test_diff"], "params (M), ours": table["n_params_m"],
        "params (M), paper": table["paper_n_params_m"]})
    if table["in_progress"].notna().any():
        shown["in progress"] = table["in_progress"].fillna("")
    key = " · ".join(f'<span style="background-color: {c}">&nbsp;{text}&nbsp;</span>'
                     for _, c, text in DELTA_SHADES)
    return (styled(shown, 2).format("{:+.2f}", subset=["valid Δ", "test Δ"], na_rep="–")
            .map(_shade, subset=["valid Δ", "test Δ"])
            .set_caption(f"|Δ| in perplexity points: {key}"))


def to_run(table: pd.DataFrame) -> Markdown:
    """The cells of a :func:`lmtie.tables.table1` frame not run here, as commands to copy:
    ``lmtie reproduce --preset paper`` for them all, or one shell line per corpus and size
    that trains its variants; a note when every cell has a run. Raises: nothing."""
    todo = table[table["status"] == "not run"]
    if todo.empty:
        return Markdown("Every cell of Table 1 has a run here.")
    lines = []
    for _, cell in todo.groupby(["corpus", "size"], sort=False):
        variants = [command.rsplit(" ", 1)[1] for command in cell["command"]]
        prefix = cell["command"].iloc[0].rsplit(" ", 1)[0]
        lines.append(f"for v in {' '.join(variants)}; do {prefix} $v; done")
    return Markdown(f"{len(todo)} cells need a GPU: `lmtie reproduce --preset paper --jobs 1` "
                    "runs them all (finished runs are skipped), or one corpus and size at a "
                    "time:\n\n```\n" + "\n".join(lines) + "\n```")


def display_claims(ledger: pd.DataFrame) -> Styler:
    """A :func:`lmtie.claims.ledger` frame with human column names, without commands for the
    claims that can be tested. Raises: nothing."""
    shown = ledger.assign(command=ledger["command"].fillna(""))
    return styled(shown.rename(columns={
        "claim": "claim", "number": "compared", "status": "status", "n": "seeds",
        "per_seed": "difference per seed", "mean_diff": "mean difference",
        "std_diff": "std", "p_value": "p (one-sided paired t-test)", "paper": "the paper",
        "command": "to test it"}))


def display_ablations(table: pd.DataFrame) -> Styler:
    """A :func:`lmtie.tables.ablations` frame without commands (the provenance has them),
    with human column names. Raises: nothing."""
    shown = table.rename(columns={
        "change": "change from the base run", "epoch": "at epoch",
        "valid_ppl": "valid, ablation", "base_valid_ppl": "valid, base",
        "valid_diff": "Δ (ablation − base)", "run_id": "run", "base_run_id": "base run"})
    return (styled(shown.drop(columns=["command", "corpus", "size"]), 2)
            .format("{:+.2f}", subset=["Δ (ablation − base)"], na_rep="–"))


def display_test_statistics(table: pd.DataFrame) -> Styler:
    """A :func:`lmtie.tables.test_statistics` frame with human column names. Raises: nothing."""
    return styled(table.rename(columns={
        "test_ppl": "test perplexity", "mean_p_unk": "mean p(<unk>)",
        "mean_target_rank": "mean rank of the target", "target_entropy": "entropy of ỹ (nats)",
        "uniform_entropy": "log |V| (nats)", "logit_std": "spread of W h",
        "target_logit_std": "spread of Lᵀu", "logit_target_corr": "corr(W h, Lᵀu)",
        "run_id": "run"}).drop(columns=["corpus", "size"]))


def command_html(command: str) -> str:
    """``command`` as HTML ``<code>`` that wraps only between flags: each flag stays on one
    line with its value, and the text copies as the command. Raises: nothing."""
    groups: list[str] = []
    for word in command.split():
        if groups and not word.startswith("--") and (groups[-1].startswith("--")
                                                    or len(groups) == 1):
            groups[-1] += f" {word}"
        else:
            groups.append(word)
    return "<code>" + " ".join(f'<span style="white-space: nowrap">{html.escape(g)}</span>'
                               for g in groups) + "</code>"


def display_provenance(runs: pd.DataFrame) -> list[Styler | Markdown]:
    """A :func:`lmtie.tables.provenance` frame (or ``tables/runs.csv``) for the page: every
    run, its epochs, device, code (short git sha), start, wall time in hours and the command
    that makes it (or resumes it); then what ``-dirty`` means. Raises: nothing."""
    shown = pd.DataFrame({
        "run": runs["run_id"], "model": runs["model"], "status": runs["status"],
        "epochs run / planned": [f"{r:.0f} / {p:.0f}" for r, p in
                                 zip(runs["epochs_run"], runs["epochs"], strict=True)],
        "best epoch": runs["best_epoch"], "batches an epoch": runs["max_batches"],
        "device": runs["device"], "threads": runs["threads"], "torch": runs["torch"],
        "git": _short_sha(runs["git_sha"]),
        "started (UTC)": runs["start_time"].astype("string").str.replace("T", " ")
        .str.slice(0, 16), "hours": runs["wall_s"] / 3600, "command": runs["command"]})
    if shown["batches an epoch"].isna().all():
        shown = shown.drop(columns="batches an epoch")
    note = Markdown("`git`: the commit the run started from (10 digits); **`-dirty`**: the "
                    "package's own files (`lmtie/`) differed from that commit when the run "
                    "started, so the code was that commit plus uncommitted changes. `hours`: "
                    "wall time of the run (the runs shared the machine with other work; see "
                    "`results/LOG.md`). `command`: copy it to run it again (`--resume` "
                    "continues one in progress).")
    return [styled(shown, 2).format("{:.0f}", subset=["best epoch", "threads"], na_rep="–")
            .format(command_html, subset=["command"], escape=None), note]


def qualitative_sections(long: pd.DataFrame) -> list[Markdown | Styler]:
    """Per phrase of a :func:`lmtie.tables.qualitative` frame: a heading with the context and
    the target, then the rank × model table with the target word highlighted.

    Raises: nothing. Paper: Sec. 6.4, v1 Table 3.
    """
    sections: list[Markdown | Styler] = []
    if not long["column"].str.endswith("ours)").any():
        sections.append(Markdown("*No finished PTB run yet: only the paper's lists.*"))
    for phrase, rows in long.groupby("phrase", sort=True):
        context, target = rows["context"].iloc[0], rows["target"].iloc[0]
        sections.append(Markdown(f"**{phrase}.** “{html.escape(context)} …” → target "
                                 f"**{html.escape(target)}**"))  # <unk> is not a tag
        table = tables.qualitative_table(long, phrase).rename_axis(columns=None).reset_index()
        sections.append(styled(table).map(
            lambda cell, t=target: "font-weight: bold; background: #fde9a9"
            if str(cell).split(" ")[0] == t else ""))
    return sections


DECISIONS = Path(__file__).resolve().parents[1] / "docs" / "decisions.md"


def decisions_markdown() -> Markdown:
    """The project's Decisions (docs/paper.md §2, §4, §6) as a markdown list: the text of
    ``docs/decisions.md`` (one line per Decision, ``{placeholders}`` for numbers), with the
    numbers read from the presets (:func:`lmtie.config.make_config`), so the text cannot
    drift from the code.

    Raises: FileNotFoundError without ``docs/decisions.md`` (lmtie not run from a checkout).
    """
    ptb = [make_config("ptb", s, "al") for s in SIZES]
    wt2 = [make_config("wikitext-2", s, "al") for s in ("small", "medium")]

    def each(configs: list, field: str, sep: str = " / ") -> str:
        return sep.join(f"{getattr(c, field):g}" for c in configs)

    numbers = {"small": ptb[0], "wt2_small": wt2[0], "ptb_dropout": each(ptb, "dropout"),
               "wt2_dropout": each(wt2, "dropout"), "ptb_epochs": each(ptb, "epochs"),
               "ptb_init_range": each(ptb, "init_range", " / ±"),
               "ptb_clip_norm": each(ptb, "clip_norm")}
    return Markdown(DECISIONS.read_text(encoding="utf-8").rstrip("\n").format(**numbers))


NO_ABLATIONS = ("no ablation runs yet. `lmtie train` with a departing setting (e.g. "
                "`--no-detach-target`, `--tau 10`) writes one beside the preset's runs")


def ablations_section(results_dir: str | Path) -> list[HTML | Markdown | Styler]:
    """The report's ablation section from ``tables/ablations.csv``, ``figures/ablations.png``
    and ``figures/augmented.png`` (written by notebook 02): the table without commands and the
    figures, or a note on how to make an ablation run.

    Raises:
        FileNotFoundError: ``tables/ablations.csv`` is missing (run notebook 02 first).
    """
    table = report.read_table(results_dir, "ablations")
    if table.empty:
        return [Markdown(f"*{NO_ABLATIONS[0].upper()}{NO_ABLATIONS[1:]}.*")]
    results = ResultsDir(results_dir)
    return [display_ablations(table), embed(results.figure("ablations"), "Ablations"),
            embed(results.figure("augmented"), "The augmented loss during training")]


def real_study_section(results_dir: str | Path) -> list[HTML | Markdown | Styler]:
    """The report's "Does +REAL work?" section from ``tables/real_study.csv``,
    ``tables/real_evaluation.csv`` and ``figures/real_study.png`` (written by notebook 02):
    the conclusion (:func:`lmtie.study.conclusion`), the verdict per hypothesis, the figure,
    and the checkpoint diagnostics.

    Raises:
        FileNotFoundError: a table is missing (run notebook 02 first).
    """
    verdict = report.read_table(results_dir, "real_study")
    shown = verdict.drop(columns=["baseline", "reference"]).rename(columns={
        "run_id": "run", "epoch": "matched epoch", "valid_ppl": "valid (run)",
        "baseline_valid_ppl": "valid (baseline)", "reference_valid_ppl": "valid (+RE)",
        "vs_reference": "run − +RE", "test_ppl": "test (run in full)",
        "command": "command (not run yet)"})
    if shown["test (run in full)"].isna().all():
        shown = shown.drop(columns="test (run in full)")
    shown["command (not run yet)"] = shown["command (not run yet)"].where(
        verdict["verdict"] == "not run", "")
    evaluation = report.read_table(results_dir, "real_evaluation")
    parts: list[HTML | Markdown | Styler] = [
        Markdown("\n".join(study.conclusion(verdict, evaluation, results_dir))),
        styled(shown),
        embed(ResultsDir(results_dir).figure("real_study"), "The +REAL study: validation curves")]
    if not evaluation.empty:
        chunks = [f"{lo:.0f}–{hi:.0f}" if pd.notna(lo) else "" for lo, hi in zip(
            evaluation.pop("chunk_ppl_min"), evaluation.pop("chunk_ppl_max"), strict=True)]
        evaluation = evaluation.drop(columns="checkpoint").assign(chunk_ppl_range=chunks)
        parts.append(styled(evaluation.rename(columns=lambda c: c.replace("_", " "))))
    return parts


def _figure1_reading(results_dir: str | Path) -> str:
    """Which of the two distances is primary and why, and what remains of the distance at
    β = 1, τ = 10 where the runs measured it (:func:`lmtie.report.figure1_remaining`)."""
    text = ("**Which distance.** The paper's \"relative residual norm from projection of one "
            "matrix onto another\" (Björck & Golub 1973) reads two ways; both are plotted. "
            "Primary: the principal-angle distance (Decision S1), the residual of projecting "
            "an orthonormal basis of span(W) onto span(Lᵀ): it compares the two subspaces, "
            "as the paper's claim is about spans, whatever W's size along each direction. "
            "Beside it (dashed) ‖W − P_{Lᵀ} W‖ / ‖W‖, the residual of W itself, which weighs "
            "each direction by W's size along it and so is lower wherever the directions "
            "still outside span(Lᵀ) are small ones.")
    left = report.figure1_remaining(results_dir)
    if left is None:
        return text + (" The runs shown predate the measurement of what remains (`lmtie "
                       "subspace` records it from schema version 3 on; one point measured so "
                       "far, β = 1, τ = 10: `docs/figure1.md`).")
    text += (
        f"\n\n**What remains at β = 1, τ = 10** (n = {left['n']}, {left['epochs']:g} epochs, "
        f"{left['converged']} stopped by the convergence rule): the distance is "
        f"{left['distance']:.3f}; W's end point under J^aug's large-τ form (eq. 4.3) on the "
        "same hidden states and word vectors (`lmtie.spans.least_squares_w`) is at "
        f"{left['least_squares']:.4f}, "
        f"against 1/√d = {1 / math.sqrt(left['d']):.4f} (d = {left['d']}: one principal "
        f"angle, W's constant direction, which no softmax loss moves) and the paper's ≈ "
        f"{report.paper_distance(1.0, 10.0):g}. The hidden states have an effective rank of "
        f"{left['effective_rank']:.0f} of {left['d']}: along their first "
        f"{round(left['effective_rank'])} directions W's mean sine to span(Lᵀ) is "
        f"{left['sine_within']:.3f}, along the rest {left['sine_beyond']:.3f} (figure: W "
        "along the hidden states' directions; J^aug's gradient in W is Σ (ŷ − ỹ) hᵀ, so "
        "under SGD W moves along a direction only as much as h varies in it; Adam rescales "
        "each weight's step, so only roughly).")
    if left["optimum"] is None:
        return text
    return text + (
        "\n\n**W at its minimum.** The paper measures models trained \"to achieve the minimum "
        "training loss possible\". For fixed hidden states and word vectors eq. 6.1 at β = 1 "
        "is convex in W, and `lmtie.optimum.minimise_w` finds its minimum directly (L-BFGS in "
        "coordinates where the hidden states are white, so that every direction converges "
        "alike, where Adam needs hundreds of epochs for the weak ones). At β = 1, τ = 10 it "
        f"lowers eq. 6.1 over the slice from {left['slice_loss']:.4f} to "
        f"{left['optimum_loss']:.4f} nats per token ({left['iterations']:.0f} iterations) "
        f"and puts span(W) at {left['optimum']:.3f} from span(Lᵀ) (projection residual "
        f"{left['optimum_residual']:.3f}); the figures show it at every β = 1 point. "
        "Deviation: W reaches its minimum, the LSTM and Lᵀ stay as trained. Below β = 1 the "
        "cross-entropy enters: at β = 0 it has no minimum in W (it keeps falling as W grows "
        "along a direction that separates a word's hidden states from the others'), and in "
        "between the minimum lies far from the trained W (`docs/figure1.md`); those points "
        "show the trained W.")


def figure1(results_dir: str | Path) -> list[HTML | Markdown | Styler]:
    """The paper's Figure 1: the final distance per point beside the paper's
    (:func:`lmtie.report.figure1_points`, from the tables in ``<results_dir>/subspace/``), then
    ``figures/figure1a.png`` and ``figure1b.png`` (written by notebook 05), the distance per
    epoch (``figure1{a,b}_epochs.png``) and the longer β = 1 run (``figure1_convergence.png``)
    where drawn, as one HTML output of embedded images; or how to produce the missing ones.

    Raises: ValueError on a malformed Figure 1 table. Paper: Sec. 6.2, Figure 1.
    """
    figure = ResultsDir(results_dir).figure
    paths = [figure(f"figure1{p}") for p in "ab"]
    points = report.figure1_points(results_dir)
    names = {"beta": "β", "tau": "τ", "distance": "distance (mean over seeds)"}
    shown: list[HTML | Markdown | Styler] = [styled(pd.DataFrame(points).rename(
        columns=names)).format("{:g}", subset=["β", "τ", "epochs"])] if points else []
    images = [embed(p, f"Figure 1{p.stem[-1]}") for p in paths if p.is_file()]
    images += [embed(figure(f"figure1{p}_epochs"), f"Figure 1{p} over training")
               for p in "ab" if figure(f"figure1{p}_epochs").is_file()]
    if figure("figure1_hidden_span").is_file():
        images.append(embed(figure("figure1_hidden_span"),
                            "β = 1, τ = 10: W along the hidden states' directions"))
    if figure("figure1_convergence").is_file():
        images.append(embed(figure("figure1_convergence"), "β = 1, τ = 10 trained longer"))
    if images:  # one output, so that the images stand side by side where the page allows
        shown.append(HTML(" ".join(image.data for image in images)))
    if points:
        shown.append(Markdown(_figure1_reading(results_dir)))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        shown.append(Markdown(
            f"Not produced yet: {', '.join(missing)}. `lmtie subspace` (or the notebook "
            "`notebooks/05_subspace_experiment.ipynb`) writes `figures/figure1a.png` (β swept "
            "at τ = 10) and `figures/figure1b.png` (τ swept at β = 1)."))
    return shown
