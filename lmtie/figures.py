"""The report's figures, from the frames of :mod:`lmtie.report` and :mod:`lmtie.tables`, as
matplotlib ``Figure`` objects (no pyplot state), and how they reach the page: the style
(``styled``), the one save (``save_figure``), ``embed`` and ``show``, and the perplexity
figures. The figures of J^aug and of span(Lᵀ) vs span(W), Figure 1 among them, are
:mod:`lmtie.figures_spans`, in the same style.

Every figure is at most ``PAGE_WIDTH_IN`` wide and is shown at its own size (``embed``: one
inch of figure = 96 CSS px), so a text of ``s`` points reads as ``s`` points on the page; no
text is smaller than ``MIN_FONT_PT``. A panel holds at most five series; each variant keeps one
colour, line style and marker everywhere, so the curves part in grey-scale too.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from IPython.display import HTML, Image, Markdown
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image as PILImage

from lmtie import reference
from lmtie.config import VARIANT_LABELS, seed_of

PAGE_WIDTH_IN = 12.0  # the widest figure: 1152 CSS px, inside the page at a 1280 px window
MIN_FONT_PT = 9.0
DPI = 150  # PNG pixels per inch: sharp on high-density screens, shown at 96 CSS px an inch
_RC = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
       "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 13}
_PALETTE = sns.color_palette("colorblind")
STYLES = {  # per variant: colour, line style and marker (grey-scale keeps the last two)
    label: {"color": _PALETTE[i], "linestyle": ls, "marker": marker}
    for i, (label, ls, marker) in enumerate(zip(VARIANT_LABELS.values(), ("-", "--", "-.", ":"),
                                                ("o", "s", "^", "D"), strict=True))}
ABLATION_STYLES = [{"color": _PALETTE[i], "linestyle": ls, "marker": m}  # beside black, grey
                    for i, ls, m in ((0, "--", "v"), (1, "-.", "P"), (2, ":", "X"))]
PER_PANEL = len(ABLATION_STYLES)  # ablations per panel: with the base and VD-LSTM, five lines


def styled(plot: Callable) -> Callable:
    """Draw ``plot`` with the report's font sizes."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return plot(*args, **kwargs)
    return wrapper


def integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


@styled
def plot_learning_curve(metrics: pd.DataFrame, title: str) -> Figure:
    """Train (with dropout) and validation perplexity of one run over epochs, log scale.

    Args:
        metrics: a :func:`lmtie.report.read_metrics` frame (``epoch``, ``train_ppl``,
            ``valid_ppl``).

    Raises: nothing.
    """
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(metrics["epoch"], metrics["train_ppl"], marker="o", label="train (with dropout)")
    ax.plot(metrics["epoch"], metrics["valid_ppl"], marker="s", ls="--", label="valid")
    ax.set(title=title, xlabel="epoch", ylabel="perplexity", yscale="log")
    integer_epochs(ax)
    ax.legend()
    return fig


def _seed_curves(cell: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """Per variant of one (corpus, size): (label, epoch → mean/min/max/n of the validation
    perplexity, note). Finished seeds make the curve; a variant with none finished shows its
    runs in progress instead."""
    curves = []
    for variant, label in VARIANT_LABELS.items():
        runs = cell[cell["variant"] == variant]
        if runs.empty:
            continue
        done = runs[runs["status"] == "finished"]
        shown = done if not done.empty else runs
        stats = shown.groupby("epoch")["valid_ppl"].agg(["mean", "min", "max", "count"])
        n = shown["run_id"].nunique()
        note = f"{n} seeds, band min–max" if n > 1 else "1 seed"
        if done.empty:
            note += ", in progress"
        elif len(done) < len(runs):
            waiting = runs[runs["status"] != "finished"].groupby("seed")["epoch"].max()
            note += "; not drawn: " + ", ".join(f"seed {s} (epoch {e}, in progress)"
                                                for s, e in waiting.items())
        curves.append((label, stats, note))
    return curves


@styled
def plot_valid_curves(metrics: pd.DataFrame) -> Figure | None:
    """The paper's Figure 2: validation perplexity per epoch of each variant, mean over the
    finished seeds with their min–max band, one row per corpus and size: every epoch (log
    scale), then the last third zoomed around our best final value (± 12 %) with the
    paper's final validation perplexity as a hollow mark right of the last epoch. A curve or
    mark outside the zoom says so in the legend. None when no run has completed an epoch.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame (in-progress runs included).

    Raises: nothing. Paper: Figure 2 (validation perplexity during training), Table 1.
    """
    if metrics.empty:
        return None
    cells = list(dict.fromkeys(zip(metrics["corpus"], metrics["size"], strict=True)))
    fig = Figure(figsize=(PAGE_WIDTH_IN, 4.6 * len(cells)), layout="constrained")
    for (full, zoom), (corpus, size) in zip(fig.subplots(len(cells), 2, squeeze=False), cells,
                                            strict=True):
        curves = _seed_curves(metrics[(metrics["corpus"] == corpus)
                                      & (metrics["size"] == size)])
        last = max(int(stats.index.max()) for _, stats, _ in curves)
        start = max(1, last - max(1, last // 3))
        best = min(stats["mean"].iloc[-1] for _, stats, _ in curves)
        low, high = best / 1.12, best * 1.12
        outside = []
        for label, stats, note in curves:
            style = STYLES[label]
            end = stats["mean"].iloc[-1]
            off = "" if low <= end <= high else f"; ends at {end:.2f}, off this panel"
            for ax, text in ((full, f"{label} ({note})"), (zoom, f"{label}{off}")):
                ax.plot(stats.index, stats["mean"], label=text, markevery=max(1, last // 10),
                        **style)
                if stats["count"].max() > 1:
                    ax.fill_between(stats.index, stats["min"], stats["max"],
                                    color=style["color"], alpha=0.2, linewidth=0)
            paper = reference.paper_perplexity(corpus, size, _variant(label))
            if paper and low <= paper[0] <= high:
                zoom.plot([last + 0.6], [paper[0]], marker=style["marker"], color=style["color"],
                          markerfacecolor="none", markersize=10, markeredgewidth=2)
            elif paper:
                outside.append(f"{label} {paper[0]:g}")
        mark = "paper's final validation (hollow)"
        mark += f"; off this panel: {', '.join(outside)}" if outside else ""
        zoom.add_line(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                             linestyle="none", markeredgewidth=2, label=mark))
        full.set(title=f"{corpus} {size}: every epoch", yscale="log")
        zoom.set(title=f"{corpus} {size}: epochs {start}–{last}, zoomed",
                 xlim=(start - 0.3, last + 1), ylim=(low, high))
        for ax in (full, zoom):
            ax.set(xlabel="epoch", ylabel="validation perplexity")
            integer_epochs(ax)
            ax.legend(loc="upper right")
    fig.suptitle("Validation perplexity per epoch (the paper's Figure 2)")
    return fig


def _variant(label: str) -> str:
    return next(v for v, name in VARIANT_LABELS.items() if name == label)


def ablation_panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """The ablation runs of a :func:`lmtie.tables.ablations` frame in panels of at most
    ``PER_PANEL``: (base run_id, its ablation rows, panel title). Raises: nothing."""
    panels = []
    for base_id, rows in table.groupby("base_run_id", sort=False):
        parts = math.ceil(len(rows) / PER_PANEL)
        first = rows.iloc[0]
        for part in range(parts):
            title = f"{first['corpus']} {first['size']} {first['model']}, seed {seed_of(base_id)}"
            title += f" ({part + 1}/{parts})" if parts > 1 else ""
            panels.append((base_id, rows.iloc[part * PER_PANEL:(part + 1) * PER_PANEL], title))
    return panels


def _grid(n_panels: int, height: float, columns: int = 3) -> tuple[Figure, list]:
    """A page-wide figure of ``n_panels`` panels, ``columns`` a row; spare panels hidden."""
    columns = min(columns, n_panels)
    rows = math.ceil(n_panels / columns)
    fig = Figure(figsize=(PAGE_WIDTH_IN, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _perplexity_panel(ax, low: float, **settings) -> None:
    """Labels, y from 0.95 × to 1.6 × ``low`` (late differences show), integer epochs and a
    legend below a panel of validation curves; ``settings`` go to ``ax.set``."""
    ax.set(xlabel="epoch", ylabel="validation perplexity", ylim=(0.95 * low, 1.6 * low),
           **settings)
    integer_epochs(ax)
    ax.legend(fontsize=MIN_FONT_PT, loc="upper center", bbox_to_anchor=(0.5, -0.16))


@styled
def plot_ablations(metrics: pd.DataFrame, table: pd.DataFrame) -> Figure | None:
    """Validation perplexity per epoch of the ablation runs, panels of at most
    ``PER_PANEL`` ablations (:func:`ablation_panels`) beside their base run (solid black)
    and the VD-LSTM run of the same corpus, size and seed (solid grey, the baseline every
    variant should beat). The y axis runs from 0.95 × to 1.6 × the panel's lowest
    perplexity, so that late differences show; a run that ends above it (e.g. one that
    diverged) says where in its legend entry. None when ``table`` is empty.

    Args:
        metrics: a :func:`lmtie.report.load_metrics` frame holding the ablation runs, their
            base runs and the VD-LSTM runs. table: a :func:`lmtie.tables.ablations` frame.

    Raises: nothing.
    """
    if table.empty:
        return None
    panels = ablation_panels(table)
    fig, axes = _grid(len(panels), 4.8)
    for ax, (base_id, rows, title) in zip(axes, panels, strict=True):
        first = rows.iloc[0]
        vd = metrics[(metrics["corpus"] == first["corpus"]) & (metrics["size"] == first["size"])
                     & (metrics["variant"] == "vd") & (metrics["seed"] == seed_of(base_id))
                     & ~metrics["run_id"].isin(table["run_id"])]
        lines = [(base_id, f"{first['model']} (base)", {"color": "black"})]
        lines += [(vd_id, "VD-LSTM", {"color": "0.6"})
                  for vd_id in dict.fromkeys(vd["run_id"]) if vd_id != base_id][:1]
        lines += [(run_id, change, style) for run_id, change, style in
                  zip(rows["run_id"], rows["change"], ABLATION_STYLES, strict=False)]
        shown = metrics[metrics["run_id"].isin([run_id for run_id, _, _ in lines])]
        low = shown["valid_ppl"].min()
        top = 1.6 * low
        for run_id, label, style in lines:
            run = metrics[metrics["run_id"] == run_id].sort_values("epoch")
            if run.empty:  # a base run still in its first epoch
                continue
            last = run["valid_ppl"].iloc[-1]
            if last > top:
                label += f" (ends at {last:.4g}, off the plot)"
            ax.plot(run["epoch"], run["valid_ppl"], label=label, markevery=2, **style)
        _perplexity_panel(ax, low, title=title)
    fig.suptitle("Ablations beside their base run (black): validation perplexity")
    return fig


@styled
def plot_real_study(curves: pd.DataFrame, verdict: pd.DataFrame) -> Figure | None:
    """The +REAL study: per panel, up to ``PER_PANEL`` runs of hypotheses (a colour and line
    style each) beside their baseline (+REAL as read, or with a bias: black) and their +RE
    reference (grey), over the epochs the hypotheses ran; y from 0.95 × to 1.6 × the panel's
    lowest perplexity. None when no hypothesis has run.

    Args:
        curves: :func:`lmtie.study.curves`. verdict: :func:`lmtie.study.verdict`.

    Raises: nothing.
    """
    ran = verdict[verdict["verdict"] != "not run"]
    if ran.empty:
        return None
    panels = [(baseline, ref, rows.iloc[start:start + PER_PANEL])
              for (baseline, ref), rows in ran.groupby(["baseline", "reference"], sort=False)
              for start in range(0, len(rows), PER_PANEL)]
    fig, axes = _grid(len(panels), 4.8)
    for ax, (baseline, ref, rows) in zip(axes, panels, strict=True):
        lines = [(baseline, f"{baseline} (baseline)", {"color": "black"}),
                 (ref, f"{ref} (+RE reference)", {"color": "0.6"})]
        lines += list(zip(rows["run_id"], rows["run_id"], ABLATION_STYLES, strict=False))
        last_epoch = curves[curves["run_id"].isin(rows["run_id"])]["epoch"].max()
        shown = curves[curves["run_id"].isin([r for r, _, _ in lines])
                       & (curves["epoch"] <= last_epoch)]
        low = shown["valid_ppl"].min()
        for run_id, label, style in lines:
            run = shown[shown["run_id"] == run_id].sort_values("epoch")
            ax.plot(run["epoch"], run["valid_ppl"], label=label.removeprefix("ptb-small-"),
                    **style)
        _perplexity_panel(ax, low, xlim=(0.5, last_epoch + 0.5))
    fig.suptitle("Does +REAL work? Each reading's run beside its baseline (black) and +RE (grey)")
    return fig


def _image(fig: Figure, dpi: int) -> Image:
    """``fig`` as a PNG image of 256 colours (Pillow's median cut: a third of the bytes of
    matplotlib's RGBA PNG, which the report embeds in every figure; no visible change on a
    white background), its dpi recorded, without the matplotlib version (the bytes are the
    same for the same figure); its title as the alternative text."""
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi, facecolor="white")
    rendered.seek(0)
    palette = PILImage.open(rendered).convert("RGB").quantize(
        256, method=PILImage.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True, dpi=(dpi, dpi))
    return Image(data=buffer.getvalue(), alt=fig.get_suptitle() or fig.axes[0].get_title())


def save_figure(fig: Figure | None, path: str | Path,
                why: str = "no run has completed an epoch. Train one (commands in Table 1)"
                ) -> Image | Markdown:
    """Write ``fig`` as a ``DPI`` PNG to ``path`` (folders created); returns the image, so a
    notebook cell ending in ``save_figure(...)`` shows exactly the saved file. ``fig`` None
    (nothing to plot yet) removes a stale ``path`` and returns a note saying ``why``.

    Raises:
        OSError: ``path`` cannot be written.
    """
    path = Path(path)
    if fig is None:
        path.unlink(missing_ok=True)
        return Markdown(f"*Nothing to plot yet for `{path.name}`: {why}.*")
    image = _image(fig, DPI)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.data)
    return image


def embed(path: str | Path, alt: str) -> HTML | Markdown:
    """The PNG at ``path`` as an inline ``<img>`` with alternative text ``alt`` (nbconvert's
    HTML drops the ``alt`` of an ``Image``), shown at its own size: its width in inches
    (pixels / the PNG's dpi) × 96 CSS px, never wider than the page. A note when there is
    none yet.

    Raises: nothing.
    """
    path = Path(path)
    if not path.is_file():
        return Markdown(f"*{alt}: not produced yet (no run has completed an epoch).*")
    with PILImage.open(path) as png:
        width = round(png.width / png.info.get("dpi", (96, 96))[0] * 96)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return HTML(f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" '
                f'style="width: {width}px; max-width: 100%">')


def show(fig: Figure) -> Image:
    """``fig`` as an embedded PNG (100 dpi, no file), for notebooks. Raises: nothing."""
    return _image(fig, 100)
