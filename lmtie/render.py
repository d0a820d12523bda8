"""What the report shows, from the frames of :mod:`lmtie.report`: figures as matplotlib
``Figure`` objects (no pyplot state) — one run's learning curve, validation perplexity per epoch
(the paper's Figure 2), subspace distance over epochs — and the page's styled Table 1, header,
Decisions and Figure-1 section. :func:`save_figure` writes ``<results>/figures/*.png``.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import HTML, Image, Markdown
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pandas.io.formats.style import Styler

from lmtie import report, subspace
from lmtie.config import SIZES, VARIANT_LABELS, make_config


def _facets(frame: pd.DataFrame, y: str, ylabel: str, title: str) -> Figure:
    """One panel per (corpus, size) in ``frame``: ``y`` over epochs, one line per model
    (the mean over seeds when a model has several)."""
    cells = list(dict.fromkeys(zip(frame["corpus"], frame["size"], strict=True)))
    fig = Figure(figsize=(0.6 + 4.2 * len(cells), 3.6), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    order = [label for label in VARIANT_LABELS.values() if label in set(frame["model"])]
    for ax, (corpus, size) in zip(axes, cells, strict=True):
        cell = frame[(frame["corpus"] == corpus) & (frame["size"] == size)]
        sns.lineplot(data=cell, x="epoch", y=y, hue="model", hue_order=order, marker="o",
                     errorbar=None, ax=ax)
        ax.set(title=f"{corpus} {size}", xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_learning_curve(metrics: pd.DataFrame, title: str) -> Figure:
    """Train (with dropout) and validation perplexity of one run over epochs, log scale.

    Args:
        metrics: a :func:`lmtie.report.read_metrics` frame (``epoch``, ``train_ppl``,
            ``valid_ppl``).

    Raises: nothing.
    """
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(metrics["epoch"], metrics["train_ppl"], marker="o", label="train (with dropout)")
    ax.plot(metrics["epoch"], metrics["valid_ppl"], marker="o", label="valid")
    ax.set(title=title, xlabel="epoch", ylabel="perplexity", yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_valid_curves(metrics: pd.DataFrame) -> Figure | None:
    """Validation perplexity per epoch of each variant, one panel per corpus and size; None
    when no run has completed an epoch.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame (in-progress runs included).

    Raises: nothing. Paper: Figure 2 (validation perplexity during training).
    """
    if metrics.empty:
        return None
    return _facets(metrics, "valid_ppl", "validation perplexity",
                   "Validation perplexity per epoch")


def plot_ablations(metrics: pd.DataFrame, table: pd.DataFrame) -> Figure | None:
    """Validation perplexity per epoch of the ablation runs, one panel per base run: the base
    (solid black), the VD-LSTM run of its corpus and size (solid grey, the baseline every
    variant should beat) and each ablation (dashed, a colour each). The y axis runs from
    0.95 × to 1.6 × the panel's lowest perplexity, so that late differences show; a run that
    ends above it (e.g. one that diverged) says where in its legend entry. None when
    ``table`` is empty.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame holding the ablation runs, their
            base runs and the VD-LSTM runs. table: a :func:`lmtie.report.ablations` frame.

    Raises: nothing.
    """
    if table.empty:
        return None
    bases = list(dict.fromkeys(table["base_run_id"]))
    fig = Figure(figsize=(0.6 + 4.6 * len(bases), 5.4), layout="constrained")
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    for ax, base_id in zip(axes, bases, strict=True):
        rows = table[table["base_run_id"] == base_id]
        first = rows.iloc[0]
        vd = metrics[(metrics["corpus"] == first["corpus"]) & (metrics["size"] == first["size"])
                     & (metrics["variant"] == "vd") & ~metrics["run_id"].isin(table["run_id"])]
        lines = [(base_id, first["model"], {"color": "black"})]
        lines += [(vd_id, "VD-LSTM", {"color": "0.6"})
                  for vd_id in dict.fromkeys(vd["run_id"]) if vd_id != base_id]
        colours = sns.color_palette(n_colors=len(rows))
        lines += [(run_id, change, {"color": colour, "linestyle": "--", "marker": "."})
                  for run_id, change, colour in zip(rows["run_id"], rows["change"], colours,
                                                    strict=True)]
        shown = metrics[metrics["run_id"].isin([run_id for run_id, _, _ in lines])]
        low = shown["valid_ppl"].min()
        top = 1.6 * low
        for run_id, label, style in lines:
            run = metrics[metrics["run_id"] == run_id]
            last = run.sort_values("epoch")["valid_ppl"].iloc[-1]
            if last > top:
                label += f" (ends at {last:.4g}, off the plot)"
            ax.plot(run["epoch"], run["valid_ppl"], label=label, **style)
        ax.set(title=f"{first['corpus']} {first['size']} {first['model']}", xlabel="epoch",
               ylabel="validation perplexity", ylim=(0.95 * low, top))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below
    fig.suptitle("Ablations (dashed) beside their base run (black): validation perplexity")
    return fig


def plot_augmented(metrics: pd.DataFrame, table: pd.DataFrame) -> Figure | None:
    """The augmented term over training, for every run that trains with it (+AL, +REAL and
    their ablations): J^aug on the training set (nats per token, log scale) and the mean
    entropy of its target ỹ over the validation targets (nats; log |V| = no word similarity;
    recorded from 2026-12-02 on). One line per run; None when no run has ``train_aug_kl > 0``.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame. table: a
            :func:`lmtie.report.ablations` frame (its ``change`` labels the ablation runs).

    Raises: nothing. Paper: eqs. 3.2, 3.7.
    """
    augmented = metrics.groupby("run_id")["train_aug_kl"].transform("max") > 0
    metrics = metrics[augmented]
    if metrics.empty:
        return None
    changes = dict(zip(table["run_id"], table["change"], strict=True))
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    kl_ax, entropy_ax = fig.subplots(1, 2, sharex=True)
    groups = metrics.groupby("run_id", sort=False)
    for (run_id, rows), colour in zip(groups, sns.color_palette("husl", groups.ngroups),
                                      strict=True):  # a colour of its own for each run
        first = rows.iloc[0]
        label = f"{first['corpus']} {first['size']} {first['model']}"
        label += f", {changes[run_id]}" if run_id in changes else ""
        style = {"color": colour, **({"linestyle": "--", "marker": "."} if run_id in changes
                                     else {})}
        kl_ax.plot(rows["epoch"], rows["train_aug_kl"], label=label, **style)
        entropy_ax.plot(rows["epoch"], rows["target_entropy"], **style)  # NaN draws nothing
    kl_ax.set(title="J^aug = KL(ỹ ‖ ŷ) on the training set", xlabel="epoch",
              ylabel="nats per token", yscale="log")
    entropy_ax.set(title="entropy of ỹ over the validation targets", xlabel="epoch",
                   ylabel="nats")
    if metrics["target_entropy"].isna().all():
        entropy_ax.text(0.5, 0.5, "not recorded for these runs\n(metrics.jsonl from 2026-12-02 on)",
                        transform=entropy_ax.transAxes, ha="center", va="center")
    for ax in (kl_ax, entropy_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    fig.suptitle("The augmented loss during training (dashed: ablations)")
    return fig


def plot_subspace_distance(table: pd.DataFrame) -> Figure | None:
    """Subspace distance(Lᵀ, W) over epochs of the untied runs; 1 = orthogonal, 0 = equal;
    None when ``table`` is empty (no untied run has completed an epoch).

    Args:
        table: a :func:`lmtie.report.subspace_table` frame.

    Raises: nothing. Paper: Sec. 6.2; Decision S1.
    """
    if table.empty:
        return None
    return _facets(table, "subspace_distance", "subspace distance(Lᵀ, W)",
                   "Subspace distance between Lᵀ and W (untied models)")


def _image(fig: Figure, dpi: int) -> Image:
    """``fig`` as a PNG image, its title as the alternative text."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return Image(data=buffer.getvalue(), alt=fig.get_suptitle() or fig.axes[0].get_title())


def save_figure(fig: Figure | None, path: str | Path,
                why: str = "no run has completed an epoch. Train one (commands in Table 1)"
                ) -> Image | Markdown:
    """Write ``fig`` as a 150-dpi PNG to ``path`` (folders created); returns the image, so a
    notebook cell ending in ``save_figure(...)`` shows exactly the saved file. ``fig`` None
    (nothing to plot yet) removes a stale ``path`` and returns a note saying ``why``.

    Raises:
        OSError: ``path`` cannot be written.
    """
    path = Path(path)
    if fig is None:
        path.unlink(missing_ok=True)
        return Markdown(f"*Nothing to plot yet for `{path.name}`: {why}.*")
    image = _image(fig, 150)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.data)
    return image


def embed(path: str | Path, alt: str) -> HTML | Markdown:
    """The PNG at ``path`` as an inline ``<img>`` with alternative text ``alt`` (nbconvert's
    HTML drops the ``alt`` of an ``Image``), for the report; a note when there is none yet.

    Raises: nothing.
    """
    if not Path(path).is_file():
        return Markdown(f"*{alt}: not produced yet (no run has completed an epoch).*")
    png = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return HTML(f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}">')


def show(fig: Figure) -> Image:
    """``fig`` as an embedded PNG (100 dpi, no file), for notebooks. Raises: nothing."""
    return _image(fig, 100)


def styled(frame: pd.DataFrame, precision: int = 3) -> Styler:
    """``frame`` without its index, floats to ``precision`` decimals, "–" for missing, text
    HTML-escaped (``<unk>`` is a word, not a tag). Raises: nothing."""
    return (frame.style.format(precision=precision, na_rep="–", escape="html")  # <unk>
            .hide(axis="index"))


def display_table1(table: pd.DataFrame) -> Styler:
    """A :func:`lmtie.report.table1` frame (or its CSV) for the report: ours, the paper's and
    the difference; "–" where there is no number; ``run / command`` is a finished run's id,
    else the command that produces it (``--resume`` for a run in progress).

    Raises: nothing.
    """
    sha = table["git_sha"].astype("string")
    shown = pd.DataFrame({
        "corpus": table["corpus"], "size": table["size"], "model": table["model"],
        "status": table["status"], "valid": table["valid_ppl"],
        "valid (paper)": table["paper_valid_ppl"],
        "valid Δ": table["valid_diff"], "test": table["test_ppl"],
        "test (paper)": table["paper_test_ppl"], "test Δ": table["test_diff"],
        "params M": table["n_params_m"], "params M (paper)": table["paper_n_params_m"],
        "epochs": table["epochs_run"], "preset": table["preset"], "device": table["device"],
        "git sha": sha.str.replace(r"^([0-9a-f]{10})[0-9a-f]*", r"\1", regex=True),
        "run / command": table["run_id"].where(table["status"] == "finished",
                                               table["command"])})
    return styled(shown, 2).format("{:.0f}", subset=["epochs"], na_rep="–", escape="html")


def qualitative_sections(long: pd.DataFrame) -> list[Markdown | Styler]:
    """Per phrase of a :func:`lmtie.report.qualitative` frame: a heading with the context and
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
        table = report.qualitative_table(long, phrase).rename_axis(columns=None).reset_index()
        sections.append(table.style.format(escape="html").hide(axis="index").map(
            lambda cell, t=target: "font-weight: bold; background: #fde9a9"
            if str(cell).split(" ")[0] == t else ""))
    return sections


def decisions_markdown() -> Markdown:
    """The project's Decisions (PAPER.md §2, §4, §6) as a markdown list, numbers read from the
    presets (:func:`lmtie.config.make_config`), so the text cannot drift from the code.

    Raises: nothing.
    """
    ptb = [make_config("ptb", s, "al") for s in SIZES]
    wt2 = [make_config("wikitext-2", s, "al") for s in ("small", "medium")]

    def each(configs: list, field: str, sep: str = " / ") -> str:
        return sep.join(f"{getattr(c, field):g}" for c in configs)

    small = ptb[0]
    return Markdown("\n".join([
        f"- **A1** α = γτ (3.3) with τ = {small.tau:g} and γ at the midpoint of the appendix's "
        f"range: α = {small.alpha:g} (PTB), {wt2[0].alpha:g} (WikiText-2).",
        "- **A2** ỹ is a target, computed from L under stop-gradient: the gradient (3.4) holds "
        "it fixed (`--no-detach-target` lets the gradient flow, for ablation).",
        "- **A3** ŷ = softmax(W h / τ) without the bias b, as (3.1) is printed; tied models "
        "have no bias.",
        f"- **D1** the paper's dropout \"probabilities\" are TensorFlow keep probabilities: "
        f"drop rates {each(ptb, 'dropout')} (PTB small / medium / large), "
        f"{each(wt2, 'dropout')} (WikiText-2 small / medium); no dropout on the embedding.",
        f"- **T1** at most {each(ptb, 'epochs')} epochs (small / medium / large), the best "
        "validation checkpoint kept; uniform initialisation in "
        f"±{each(ptb, 'init_range', ' / ±')}.",
        f"- **T2** the training cost is the cross-entropy summed over the {small.bptt} unrolled "
        f"steps and averaged over the batch (the TensorFlow PTB code), so lr = {small.lr:g} "
        f"and clip norms {each(ptb, 'clip_norm')} apply to it; losses are reported per token.",
        f"- **E1** test perplexity over the whole test stream with batch "
        f"{small.test_batch_size}, state carried; validation during training with batch "
        f"{small.eval_batch_size}.",
        "- **S1** subspace distance = ‖Q − U Uᵀ Q‖_F / √d with orthonormal bases U = orth(Lᵀ), "
        "Q = orth(W): the root-mean-square sine of the principal angles."]))


def summary_markdown(provenance: pd.DataFrame, preset: str) -> Markdown:
    """Report header: preset and the command that regenerates the page, number of runs,
    devices, torch versions, git shas, time of rendering (UTC).

    Args:
        provenance: a :func:`lmtie.report.provenance` frame (or ``tables/runs.csv``).

    Raises: nothing.
    """
    def values(column: str) -> str:
        return ", ".join(f"`{v}`" for v in dict.fromkeys(provenance[column].astype(str)))

    lines = [f"**Preset** `{preset}`: `lmtie reproduce --preset {preset}` regenerates this "
             "page." if preset else "**Every run** of the results folder.",
             f"**Runs** {len(provenance)} · **device** {values('device')} · **torch** "
             f"{values('torch')} · **git** {values('git_sha')} · **rendered** "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    if (provenance["preset"] == "smoke").any():
        lines.append("> **Smoke runs** (a few hundred batches) check the pipeline, not the "
                     "paper: their perplexities are far above the paper's.")
    return Markdown("\n\n".join(lines))


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
    figures = Path(results_dir) / "figures"
    return [styled(table.drop(columns="command"), 2), embed(figures / "ablations.png",
                                                          "Ablations"),
            embed(figures / "augmented.png", "The augmented loss during training")]


def figure1(results_dir: str | Path) -> list[HTML | Markdown | Styler]:
    """The paper's Figure 1: the final distance per point beside the paper's
    (``subspace.report_rows``, from the CSVs under ``<results_dir>/subspace/``), then
    ``figures/figure1a.png`` and ``figure1b.png`` (written by notebook 05) as embedded images,
    the distance per epoch (``figure1{a,b}_epochs.png``) and the longer β = 1 run
    (``figure1_convergence.png``) where drawn, or how to produce the missing ones.

    Raises: ValueError on a malformed results CSV. Paper: Sec. 6.2, Figure 1.
    """
    figures = Path(results_dir) / "figures"
    paths = [figures / f"figure1{p}.png" for p in "ab"]
    points = subspace.report_rows(results_dir)
    shown: list[HTML | Markdown | Styler] = [styled(pd.DataFrame(points)).format(
        "{:g}", subset=["beta", "tau", "epochs"])] if points else []
    shown += [embed(p, f"Figure 1{p.stem[-1]}") for p in paths if p.is_file()]
    shown += [embed(figures / f"figure1{p}_epochs.png", f"Figure 1{p} over training")
              for p in "ab" if (figures / f"figure1{p}_epochs.png").is_file()]
    if (figures / "figure1_convergence.png").is_file():
        shown.append(embed(figures / "figure1_convergence.png", "β = 1, τ = 10 trained longer"))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        shown.append(Markdown(
            f"Not produced yet: {', '.join(missing)}. `lmtie subspace` (or the notebook "
            "`notebooks/05_subspace_experiment.ipynb`) writes `figures/figure1a.png` (β swept "
            "at τ = 10) and `figures/figure1b.png` (τ swept at β = 1)."))
    return shown
