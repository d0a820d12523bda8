"""The figures of the augmented loss and of span(Lᵀ) against span(W), in the report's style
(:mod:`lmtie.figures`): J^aug and ỹ's entropy per epoch, the subspace distance per epoch of the
untied runs, and the paper's Figure 1 (Sec. 6.2) from the runs of :mod:`lmtie.figure1`, read
through :mod:`lmtie.schema` and summarised by :mod:`lmtie.report`.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lmtie import reference, report, schema
from lmtie.config import SWEEPS, TAUS, VARIANT_LABELS
from lmtie.figures import (
    ABLATION_STYLES,
    MIN_FONT_PT,
    PAGE_WIDTH_IN,
    STYLES,
    ablation_panels,
    integer_epochs,
    save_figure,
    styled,
)
from lmtie.layout import ResultsDir


@styled
def plot_augmented(metrics: pd.DataFrame, table: pd.DataFrame) -> Figure | None:
    """The augmented term over training, for every run that trains with it (+AL, +REAL and
    their ablations), in the panels of :func:`ablation_panels` (the same runs and colours as
    the ablations figure): J^aug on the training set (nats per token, log scale) and the mean
    entropy of its target ỹ over the validation targets (nats; log |V| = no word similarity).
    Runs made before the entropy was recorded are named in a note on their panel. None when
    no run has ``train_aug_kl > 0``.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame. table: a
            :func:`lmtie.tables.ablations` frame (its ``change`` labels the ablation runs).

    Raises: nothing. Paper: eqs. 3.2, 3.7.
    """
    augmented = set(metrics.loc[metrics["train_aug_kl"] > 0, "run_id"])
    rows = []
    for base_id, panel, title in ablation_panels(table):
        lines = [(base_id, f"{panel['model'].iloc[0]} (base)", {"color": "black"})]
        lines += list(zip(panel["run_id"], panel["change"], ABLATION_STYLES, strict=False))
        lines = [line for line in lines if line[0] in augmented]
        if lines:
            rows.append((title, lines))
    covered = {run_id for _, lines in rows for run_id, _, _ in lines}
    for run_id in dict.fromkeys(metrics["run_id"]):  # runs with no ablation: a panel each
        if run_id in augmented - covered:
            run = metrics[metrics["run_id"] == run_id].iloc[0]
            label = VARIANT_LABELS[run["variant"]]
            rows.append((f"{run['corpus']} {run['size']} {label}, seed {run['seed']}",
                         [(run_id, label, {"color": "black"})]))
    if not rows:
        return None
    fig = Figure(figsize=(PAGE_WIDTH_IN, 3.8 * len(rows)), layout="constrained")
    for (kl_ax, entropy_ax), (title, lines) in zip(fig.subplots(len(rows), 2, squeeze=False),
                                                   rows, strict=True):
        missing = []
        for run_id, label, style in lines:
            run = metrics[metrics["run_id"] == run_id].sort_values("epoch")
            kl_ax.plot(run["epoch"], run["train_aug_kl"], label=label, markevery=2, **style)
            if run["target_entropy"].isna().all():
                missing.append(label)
            entropy_ax.plot(run["epoch"], run["target_entropy"], markevery=2, **style)
        kl_ax.set(title=f"{title}: J^aug = KL(ỹ ‖ ŷ), training set", xlabel="epoch",
                  ylabel="nats per token", yscale="log")
        entropy_ax.set(title=f"{title}: entropy of ỹ, validation targets", xlabel="epoch",
                       ylabel="nats")  # log |V| = ỹ uniform
        note = textwrap.fill("not recorded (runs older than the entropy field): "
                             + ", ".join(missing), 80)
        if len(missing) == len(lines):  # nothing to draw: the note alone
            entropy_ax.set_axis_off()
            entropy_ax.text(0.5, 0.5, note, transform=entropy_ax.transAxes, ha="center",
                            va="center", fontsize=MIN_FONT_PT)
        elif missing:  # under the axis, where it hides no curve
            entropy_ax.set_xlabel(f"epoch\n{note}", fontsize=MIN_FONT_PT)
        for ax in (kl_ax, entropy_ax):
            integer_epochs(ax)
        kl_ax.legend(loc="lower right", fontsize=MIN_FONT_PT)
    fig.suptitle("The augmented loss during training (colours as in the ablations figure)")
    return fig


@styled
def plot_subspace_distance(table: pd.DataFrame) -> Figure | None:
    """Subspace distance(Lᵀ, W) over epochs of the untied runs (mean over seeds), one panel
    per corpus and size, on the distance's whole range: 1 = orthogonal spans, 0 = equal
    (Decision S1); each legend entry gives the last epoch's value. None when ``table`` is
    empty (no untied run has completed an epoch).

    Args:
        table: a :func:`lmtie.tables.subspace_table` frame.

    Raises: nothing. Paper: Sec. 6.2; Decision S1.
    """
    if table.empty:
        return None
    cells = list(dict.fromkeys(zip(table["corpus"], table["size"], strict=True)))
    fig = Figure(figsize=(min(PAGE_WIDTH_IN, 0.5 + 6 * len(cells)), 4.2), layout="constrained")
    for ax, (corpus, size) in zip(fig.subplots(1, len(cells), squeeze=False)[0], cells,
                                  strict=True):
        cell = table[(table["corpus"] == corpus) & (table["size"] == size)]
        for label, rows in cell.groupby("model", sort=False):
            mean = rows.groupby("epoch")["subspace_distance"].mean()
            ax.plot(mean.index, mean, markevery=max(1, len(mean) // 10),
                    label=f"{label} (epoch {mean.index[-1]}: {mean.iloc[-1]:.4f})",
                    **STYLES[label])
        ax.set(title=f"{corpus} {size}", xlabel="epoch", ylabel="subspace distance(Lᵀ, W)",
               ylim=(0, 1.02))
        integer_epochs(ax)
        ax.legend(loc="lower left")
    fig.suptitle("Subspace distance between Lᵀ and W (untied models)")
    return fig


def _figure1_axes() -> tuple[Figure, object]:
    """One panel the size of the report's single figures, with the distance's axis."""
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.set(ylabel="subspace distance (Lᵀ, W)", ylim=(0, 1.05))
    return fig, ax


@styled
def plot_figure1(rows: list[schema.Figure1Row], sweep: str) -> Figure | None:
    """Figure 1a (distance vs β, τ = 10) or 1b (vs τ, β = 1), both readings of the paper's
    metric: the principal-angle distance (Decision S1, primary; mean ± std over seeds, each
    run a grey dot) and the projection residual of W (dashed) after training; where the
    runs have them, both for W taken to the minimum of eq. 6.1 for the trained h and Lᵀ
    (:mod:`lmtie.optimum`; dash-dotted and dotted) and the distance of W's end point under
    J^aug's large-τ form (:func:`lmtie.spans.least_squares_w`, triangles); the paper's values
    (``reference.FIGURE1``) as red crosses. None when no row belongs to the sweep.
    Paper: Figure 1 (reference values read off the figure)."""
    stats = report.figure1_summary(rows, sweep)
    if not stats:
        return None
    fig, ax = _figure1_axes()
    ax.set_ylabel("distance (Lᵀ, W)")
    for s in stats:
        mine = [r.final_distance for r in rows if schema.point_of(r) == (s["beta"], s["tau"])]
        ax.plot([s["x"]] * len(mine), mine, ".", color="grey", alpha=0.6)
    ns = sorted({s["n"] for s in stats})
    seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    xs = [s["x"] for s in stats]
    ax.errorbar(xs, [s["mean"] for s in stats], yerr=[s["std"] for s in stats], fmt="o-",
                capsize=4, label=f"principal angles (S1), mean ± std, n = {seeds}")
    ax.errorbar(xs, [s["residual_mean"] for s in stats],
                yerr=[s["residual_std"] for s in stats], fmt="s--", capsize=4, color="black",
                mfc="white", label="projection residual ‖W − P W‖/‖W‖")
    optima = [s for s in stats if s["optimum_mean"] is not None]
    if optima:
        at = [s["x"] for s in optima]
        ax.errorbar(at, [s["optimum_mean"] for s in optima],
                    yerr=[s["optimum_std"] for s in optima], fmt="D-.", capsize=4,
                    color="tab:green", label="W at its minimum for the trained h, Lᵀ (S1)")
        ax.plot(at, [s["optimum_residual"] for s in optima], "d:", color="tab:green",
                mfc="white", label="W at its minimum: projection residual")
    ends = [(s["x"], s["least_squares"]) for s in stats if s["least_squares"] is not None]
    if ends:
        ax.plot(*zip(*ends, strict=True), "v", color="grey", markersize=8,
                label="W's end point under J^aug, large τ (S1)")
    ref = reference.FIGURE1
    if sweep == "a":
        ref_x, ref_y = [0.0, 1.0], [ref["beta0_tau10"], ref["beta1_tau10"]]
        ax.set_xlabel("β (weight of τ²|V|·J^aug in eq. 6.1), τ = 10")
    else:
        ref_x, ref_y = [10.0], [ref["beta1_tau10"]]
        ax.set_xscale("log")
        ax.set_xticks(list(TAUS), [f"{t:g}" for t in TAUS])
        ax.set_xlabel("τ (β = 1)")
    ax.plot(ref_x, ref_y, "x", color="red", markersize=10, mew=2, label="paper (read off Fig. 1)")
    ax.set_title(f"Figure 1{sweep}: span(W) vs span(Lᵀ), PTB 20k-token slice")
    ax.legend(fontsize=MIN_FONT_PT, loc="lower left")
    return fig


@styled
def plot_figure1_per_epoch(rows: list[schema.Figure1Row], sweep: str) -> Figure | None:
    """:func:`lmtie.report.figure1_per_epoch`: one line per point of Figure 1``sweep``, so
    one sees whether a point had levelled off when its runs ended. None without rows."""
    curves = report.figure1_per_epoch(rows, sweep)
    if not curves:
        return None
    fig, ax = _figure1_axes()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    colours = colormaps["viridis"]([i / max(len(curves) - 1, 1) for i in range(len(curves))])
    for colour, curve in zip(colours, curves, strict=True):
        ax.plot(range(len(curve["mean"])), curve["mean"], color=colour,
                label=f"{'β' if sweep == 'a' else 'τ'} = {curve['x']:g}")
    ax.set(xlabel="epoch", title=f"Figure 1{sweep} over training (mean over seeds)")
    ax.legend(fontsize=MIN_FONT_PT, ncol=2, loc="lower left")
    return fig


@styled
def plot_figure1_convergence(rows: list[schema.Figure1Row]) -> Figure | None:
    """Distance(Lᵀ, W) per epoch of the ``"convergence"`` runs (β = 1, τ = 10), plain and
    centred (``centred_subspace_distance``), one line per seed, with the paper's value at
    that point and 1/√d, where a W that J^aug has fitted but for its constant direction sits.
    None without such runs. Paper: Sec. 6.2, Figure 1a (β = 1 end); our addition."""
    mine = [r for r in rows if schema.point_of(r) == SWEEPS["convergence"][0]]
    if not mine:
        return None
    fig, ax = _figure1_axes()
    for r in sorted(mine, key=lambda r: r.seed):
        plain = [r.initial_distance, *r.distance_per_epoch]
        line, = ax.plot(range(len(plain)), plain, label=f"seed {r.seed}")
        ax.plot(range(1, len(r.centred_distance_per_epoch) + 1), r.centred_distance_per_epoch,
                "--", color=line.get_color(),
                label=f"seed {r.seed}, constant direction projected out")
    d = mine[0].setup["hidden_size"]
    ax.axhline(reference.FIGURE1["beta1_tau10"], color="red", lw=1,
               label="paper, β = 1, τ = 10 (read off Fig. 1a)")
    ax.axhline(1 / math.sqrt(d), color="grey", ls=":", label=f"1/√d (d = {d})")
    ax.set(xlabel="epoch", title="β = 1, τ = 10 trained longer")
    ax.legend(fontsize=MIN_FONT_PT, loc="upper right")
    return fig


@styled
def plot_figure1_hidden_span(rows: list[schema.Figure1Row]) -> Figure | None:
    """Why the distance stays up, at β = 1, τ = 10: along each direction of the hidden states
    (by decreasing singular value), W's sine to span(Lᵀ) (mean over seeds) and the singular
    value over the largest (mean over seeds): J^aug's gradient moves W only along directions
    h varies in (:func:`lmtie.spans.hidden_span`). None without such rows.
    Paper: Sec. 6.2 (our addition, issue 17)."""
    mine = [r for r in rows if schema.point_of(r) == (1.0, 10.0) and r.sine_by_hidden_direction]
    if not mine:
        return None
    fig, ax = _figure1_axes()
    width = min(len(r.sine_by_hidden_direction) for r in mine)
    directions = range(1, width + 1)
    sines = [sum(r.sine_by_hidden_direction[k] for r in mine) / len(mine) for k in range(width)]
    scale = [sum(r.hidden_singular_values[k] / r.hidden_singular_values[0] for r in mine)
             / len(mine) for k in range(width)]
    rank = sum(r.hidden_effective_rank for r in mine) / len(mine)
    ax.plot(directions, sines, "-", label="sin∠(W v_k, span Lᵀ)")
    ax.plot(directions, scale, "--", color="black", label="singular value s_k / s_1 of h")
    ax.axvline(rank, color="grey", ls=":", label=f"effective rank of h: {rank:.0f}")
    ax.set(xlabel="direction k of the hidden states (by decreasing s_k)", ylabel="",
           title=f"β = 1, τ = 10: W along the hidden states' directions (n = {len(mine)})")
    ax.legend(fontsize=MIN_FONT_PT, loc="center right")
    return fig


def draw_figure1(rows: list[schema.Figure1Row], results_dir: str | Path,
                 sweep: str = "both") -> None:
    """``figures/figure1{a,b}.png`` and ``figure1{a,b}_epochs.png`` under ``results_dir`` for
    each sweep (``"a"``, ``"b"`` or ``"both"``) that has rows, and ``figure1_hidden_span.png``
    where its rows have the hidden states' span (else removed); for ``"convergence"``,
    ``figures/figure1_convergence.png``. Raises: KeyError for an unknown sweep."""
    figure = ResultsDir(results_dir).figure
    if sweep == "convergence":
        save_figure(plot_figure1_convergence(rows), figure("figure1_convergence"))
        return
    for name in ("a", "b") if sweep == "both" else (sweep,):
        if report.figure1_summary(rows, name):
            save_figure(plot_figure1(rows, name), figure(f"figure1{name}"))
            save_figure(plot_figure1_per_epoch(rows, name), figure(f"figure1{name}_epochs"))
    save_figure(plot_figure1_hidden_span(rows), figure("figure1_hidden_span"))
