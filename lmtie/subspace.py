"""Sec. 6.2 / Figure 1: the subspace distance between Lᵀ and W as the augmented loss takes over.

A 2-layer LSTM, untied W, trained on a random contiguous 20,000-token slice of PTB train with no
dropout or weight decay, every word vector (row of Lᵀ) renormalised to unit norm after each
update, on eq. 6.1 per token: ``β · τ²|V| · J^aug + (1 − β) · J`` (J^aug = ``augmented_kl``,
J = CE); distance(span Lᵀ, span W) (Decision S1) after every epoch. Figure 1a sweeps β at
τ = 10, 1b τ at β = 1; one CSV row per run, rewritten atomically, so a sweep resumes.

Choices where the paper is silent (for the README's "Deviations and choices"):
- Adam, lr 1e-3, no weight decay, clip 5 (global norm, per-token loss); batch 5 (114 updates per
  epoch), bptt 35, state carried, init ±0.1 (T1). τ²|V|·J^aug ≈ ½‖Wh − Lᵀu‖² (eq. 4.3) has unit
  curvature on all |V| logits, CE does not: Adam's per-parameter step serves every β, τ. Plain
  SGD (per-token lr 1, or 35 = T2's lr 1) shrank h rather than W's off-span part: distance
  0.985 → 0.983 in 6 epochs, vs 0.962 (Adam, batch 20) and 0.931 (Adam, batch 5) (β = 1,
  τ = 10, seed 1).
- Budget: every run trains ``epochs`` = 20 epochs, the same at every β and τ so that the points
  compare (36 runs in ~3 CPU-hours). The training loss cannot decide when to stop: with β > 0
  it rises after 1-2 epochs while the distance keeps falling, because ỹ (a stop-gradient
  target, Decision A2) drifts as L learns through the inputs (its spread ½‖Lᵀu − mean‖² grew
  17.2 → 19.5 nats in 5 epochs). The distance after every epoch is kept (CSV, and
  ``figure1{a,b}_epochs.png``) to show where a point was still moving. Vocabulary: all of PTB
  (|V| = 10,000).
- J^aug in float32 through ``augmented_kl``, whose formula has no cancellation: τ²|V|
  (10⁴-1.6·10⁷) would amplify the textbook formula's float32 error (0.2-3 % of the KL here).
- The seed picks slice and initialisation: seed s starts from the same slice and weights at
  every β and τ (a paired comparison).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lmtie import reference, runs
from lmtie.analysis import centred_subspace_distance, projection_residual, subspace_distance
from lmtie.config import make_config
from lmtie.data import Corpus, batchify, bptt_batches
from lmtie.loss import augmented_kl
from lmtie.model import RNNLM

BETAS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)  # Figure 1a, at tau = 10
TAUS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)  # Figure 1b, at beta = 1
# "convergence": Figure 1a's β = 1 end trained CONVERGENCE_EPOCHS epochs, to see where the
# 20-epoch distances were heading; its own CSV and figure (``csv_path``, ``draw_figures``)
SWEEPS = {"a": [(b, 10.0) for b in BETAS], "b": [(1.0, t) for t in TAUS],
          "convergence": [(1.0, 10.0)]}
CONVERGENCE_EPOCHS = 100
COLUMNS = ("beta", "tau", "seed", "slice_start", "epochs", "final_loss", "final_ce",
           "final_aug_kl", "initial_distance", "final_distance", "final_residual", "wall_s",
           "distance_per_epoch", "centred_distance_per_epoch", "loss_per_epoch", "setup")
SMOKE = {"slice_tokens": 2_000, "hidden_size": 16, "epochs": 2}
_TEXT_COLUMNS = ("distance_per_epoch", "centred_distance_per_epoch", "loss_per_epoch", "setup")
_INT_COLUMNS = ("seed", "slice_start", "epochs")


@dataclass(frozen=True)
class SubspaceSetup:
    """Everything of a Sec. 6.2 run except (β, τ, seed). Units: tokens, epochs; ``lr`` per step
    of the per-token mean loss; ``clip_norm`` the global L2 norm of that loss's gradient;
    ``epochs`` the fixed budget of every run (see the module docstring).

    Raises:
        ValueError: unknown optimiser, or sizes/epochs/lr that are not positive.
    """

    slice_tokens: int = 20_000
    hidden_size: int = 300
    num_layers: int = 2
    batch_size: int = 5
    bptt: int = 35
    init_range: float = 0.1
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    clip_norm: float = 5.0
    epochs: int = 20

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        sizes = ("slice_tokens", "hidden_size", "num_layers", "batch_size", "bptt", "epochs")
        bad = [n for n in sizes if getattr(self, n) <= 0]
        if bad or min(self.lr, self.clip_norm, self.init_range) <= 0:
            raise ValueError(f"{bad or 'lr, clip_norm, init_range'} must be positive")

    def to_json(self) -> str:
        """Compact JSON of every field (the CSV's ``setup`` column; resume compares it)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def random_slice(ids: Tensor, n_tokens: int, seed: int) -> tuple[Tensor, int]:
    """A contiguous ``(n_tokens,)`` slice of ``ids`` ``(N,)`` at a start drawn from ``seed``.

    Returns the slice and its start index. Raises: ValueError if ``n_tokens > N``.
    Paper: Sec. 6.2 ("a random contiguous 20,000-word slice of the PTB train set").
    """
    if not 0 < n_tokens <= ids.numel():
        raise ValueError(f"slice of {n_tokens} tokens from a stream of {ids.numel()}; "
                         "choose 0 < slice_tokens <= the training-set size")
    generator = torch.Generator().manual_seed(seed)
    start = int(torch.randint(0, ids.numel() - n_tokens + 1, (1,), generator=generator))
    return ids[start:start + n_tokens], start


def _normalise_rows_(weight: Tensor) -> None:
    """Unit-norm every word vector (row of Lᵀ), in place. Paper: Sec. 6.2."""
    with torch.no_grad():
        weight.div_(weight.norm(dim=1, keepdim=True).clamp_min(1e-12))


def train_point(ids: Tensor, vocab_size: int, beta: float, tau: float, seed: int,
                setup: SubspaceSetup = SubspaceSetup(), device: str | torch.device = "cpu"
                ) -> dict:
    """Train one Sec. 6.2 model on a random slice of ``ids`` and return its CSV row.

    Args:
        ids: ``(N,)`` int64 training stream (PTB train); a slice of ``setup.slice_tokens``.
        vocab_size: V (the model's vocabulary; every id < V).
        beta: weight in [0, 1] of the augmented term (eq. 6.1). tau: temperature > 0.
        seed: slice start and initialisation (there is no dropout).

    Returns:
        The ``COLUMNS`` dict: ``epochs``,
        ``final_loss`` (last epoch-mean J^tot per token), ``final_ce``/``final_aug_kl`` (nats
        per token; J^aug unscaled, NaN at β = 0), distances in [0, 1] (``initial_distance``
        before training), ``final_residual`` (``projection_residual(Lᵀ, W)``: the distance
        with W's directions weighed by their size, a diagnostic), ``wall_s`` (s),
        per-epoch distances, centred distances (``centred_subspace_distance``: the
        constant direction, which J^aug cannot see, projected out) and losses (JSON),
        ``setup`` (JSON).

    Raises:
        ValueError: β outside [0, 1], τ ≤ 0, or a slice longer than ``ids``.
        FloatingPointError: the training loss became NaN/inf.

    Paper: Sec. 6.2, eq. 6.1, Figure 1.
    """
    if not 0.0 <= beta <= 1.0 or tau <= 0:
        raise ValueError(f"need 0 <= beta <= 1 and tau > 0, got beta={beta}, tau={tau}")
    start_time = time.perf_counter()
    dev = torch.device(device)
    tokens, slice_start = random_slice(ids, setup.slice_tokens, seed)
    data = batchify(tokens, setup.batch_size).to(dev)
    torch.manual_seed(seed)
    config = make_config("ptb", "small", "vd", embedding_dim=setup.hidden_size,
                         hidden_size=setup.hidden_size, num_layers=setup.num_layers,
                         dropout=0.0, init_range=setup.init_range, seed=seed)
    model = RNNLM(vocab_size, config).to(dev)
    lt, w = model.embedding.weight, model.projection.weight  # Lᵀ (V, D), W (V, H): untied
    _normalise_rows_(lt)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over each parameter instead of ~10 passes (46 -> ~10 ms a step here)
    optimizer = (torch.optim.Adam(params, lr=setup.lr, weight_decay=0.0, fused=True)
                 if setup.optimizer == "adam" else torch.optim.SGD(params, lr=setup.lr))
    scale = beta * tau**2 * vocab_size  # eq. 6.1: β · τ²|V|
    initial = subspace_distance(lt, w)
    distances: list[float] = []
    centred: list[float] = []
    losses: list[float] = []
    for _ in range(setup.epochs):
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # J^tot, J, J^aug token sums
        n_tokens = 0
        state = model.init_state(setup.batch_size)
        for inputs, targets in bptt_batches(data, setup.bptt):
            state = tuple(s.detach() for s in state)  # truncated BPTT, state carried
            wh, state = model(inputs, state)  # masks=None: no dropout, fused LSTM
            wh, targets = wh.reshape(-1, vocab_size), targets.reshape(-1)
            with torch.set_grad_enabled(beta < 1):  # at β = 1, J is only logged
                ce = F.cross_entropy(wh + model.bias, targets)
            objective = (1.0 - beta) * ce if beta < 1 else torch.zeros_like(ce)
            aug = torch.full_like(ce, math.nan)
            if beta > 0:  # float32 holds: augmented_kl avoids the KL's cancellation
                aug = augmented_kl(wh, targets, lt, tau)
                objective = objective + scale * aug
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(params, setup.clip_norm)
            optimizer.step()
            _normalise_rows_(lt)
            sums += torch.stack([objective, ce, aug]).detach() * targets.numel()
            n_tokens += targets.numel()
        loss, ce_mean, aug_mean = (sums / n_tokens).tolist()
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss {loss} at epoch {len(losses) + 1} "
                                     f"(beta={beta}, tau={tau}, seed={seed}); lower the lr")
        losses.append(loss)
        distances.append(subspace_distance(lt, w))
        centred.append(centred_subspace_distance(lt, w))
    return {"beta": beta, "tau": tau, "seed": seed, "slice_start": slice_start,
            "epochs": len(losses),
            "final_loss": loss, "final_ce": ce_mean, "final_aug_kl": aug_mean,
            "initial_distance": initial, "final_distance": distances[-1],
            "final_residual": projection_residual(lt, w),
            "wall_s": time.perf_counter() - start_time,
            "distance_per_epoch": json.dumps(distances),
            "centred_distance_per_epoch": json.dumps(centred), "loss_per_epoch": json.dumps(losses),
            "setup": setup.to_json()}


def sweep_points(sweep: str = "both", seeds: int = 3) -> list[tuple[float, float, int]]:
    """(β, τ, seed) of Figure 1a (``"a"``), 1b (``"b"``), both (the shared point β = 1,
    τ = 10 once) or ``"convergence"``, seeds 1..``seeds``, seed-major (a cut-short sweep has
    whole curves).

    Raises: ValueError for an unknown sweep or ``seeds < 1``. Paper: Sec. 6.2, Figure 1a/b.
    """
    if sweep not in (*SWEEPS, "both") or seeds < 1:
        raise ValueError(f"sweep must be one of {(*SWEEPS, 'both')} and seeds >= 1, got "
                         f"{sweep!r}, {seeds}")
    pairs = list(dict.fromkeys(SWEEPS["a"] + SWEEPS["b"] if sweep == "both" else SWEEPS[sweep]))
    return [(beta, tau, seed) for seed in range(1, seeds + 1) for beta, tau in pairs]


def _point(row: dict) -> tuple[float, float]:
    return round(float(row["beta"]), 6), round(float(row["tau"]), 6)


def default_epochs(sweep: str) -> int:
    """The epoch budget of a sweep's runs: ``CONVERGENCE_EPOCHS`` for ``"convergence"``, else
    ``SubspaceSetup``'s (20)."""
    return CONVERGENCE_EPOCHS if sweep == "convergence" else SubspaceSetup.epochs


def csv_path(results_dir: str | Path, sweep: str) -> Path:
    """Where a sweep's rows live: ``subspace/runs.csv`` (Figure 1a, 1b, both) or
    ``subspace/convergence.csv`` (its own budget) under ``results_dir``."""
    name = "convergence" if sweep == "convergence" else "runs"
    return Path(results_dir) / "subspace" / f"{name}.csv"


def read_rows(csv_path: str | Path) -> list[dict]:
    """Rows of the results CSV, numbers parsed (JSON columns stay strings); [] if absent.
    Rows written before ``centred_distance_per_epoch`` existed get ``"[]"`` there.

    Raises: ValueError on a malformed number. Paper: none (bookkeeping)."""
    path = Path(csv_path)
    if not path.is_file():
        return []
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for row in rows:
        row.setdefault("centred_distance_per_epoch", "[]")
        for name in set(COLUMNS) - set(_TEXT_COLUMNS):
            row[name] = int(row[name]) if name in _INT_COLUMNS else float(row[name])
    return rows


def write_rows(csv_path: str | Path, rows: list[dict]) -> None:
    """Rewrite the whole CSV atomically (temp file + ``os.replace``), one row per run.

    Raises: KeyError if a row lacks a ``COLUMNS`` key. Paper: none (bookkeeping)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    runs.atomic_write_text(Path(csv_path), out.getvalue())


def _unordered(function: Callable[..., dict], calls: list[tuple], jobs: int) -> Iterator[dict]:
    """``function(*args)`` for each ``args`` of ``calls``, yielded as each finishes: here when
    ``jobs`` is 1, else in ``jobs`` spawned processes with this process's torch thread count
    (spawn, not fork: a forked OpenMP runtime can hang)."""
    if jobs == 1:
        yield from (function(*args) for args in calls)
        return
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads,
                               initargs=(torch.get_num_threads(),))
    try:
        for future in as_completed([pool.submit(function, *args) for args in calls]):
            yield future.result()
    finally:
        pool.shutdown(cancel_futures=True)


def run_sweep(ids: Tensor, vocab_size: int, points: list[tuple[float, float, int]],
              csv_path: str | Path, setup: SubspaceSetup = SubspaceSetup(),
              device: str | torch.device = "cpu", progress: bool = False, jobs: int = 1
              ) -> list[dict]:
    """Train every (β, τ, seed) of ``points`` not yet in ``csv_path``, ``jobs`` at a time
    (separate processes); append each row as it finishes (atomic rewrite by this process
    only, so an interrupted sweep resumes). Returns all rows of the CSV.

    Raises:
        ValueError: ``jobs < 1``; the CSV holds runs of another ``setup`` (use another results
            dir), or as ``train_point``.

    Paper: Sec. 6.2 ("each point averaged over 10 runs"; we use fewer, see the CLI).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    rows = read_rows(csv_path)
    other = {r["setup"] for r in rows} - {setup.to_json()}
    if other:
        raise ValueError(f"{csv_path} holds runs of another setup ({other.pop()}); pass "
                         "another --results-dir, or delete the CSV to start again")
    done = {(*_point(r), r["seed"]) for r in rows}
    todo = [p for p in points if (round(p[0], 6), round(p[1], 6), p[2]) not in done]
    calls = [(ids, vocab_size, beta, tau, seed, setup, device) for beta, tau, seed in todo]
    for i, row in enumerate(_unordered(train_point, calls, jobs), 1):
        rows.append(row)
        write_rows(csv_path, rows)
        if progress:
            print(f"[{i}/{len(todo)}] beta={row['beta']:g} tau={row['tau']:g} "
                  f"seed={row['seed']}: distance "
                  f"{row['initial_distance']:.3f} -> {row['final_distance']:.3f} in "
                  f"{row['epochs']} epochs, {row['wall_s']:.0f} s", flush=True)
    return rows


def summarise(rows: list[dict], sweep: str) -> list[dict]:
    """Per point of Figure 1``sweep`` (``"a"`` | ``"b"``) that has runs: ``x`` (β or τ),
    ``beta``, ``tau``, ``n`` seeds, ``mean`` and ``std`` (ddof 1; 0 for one run) of the final
    distance, ``mean_epochs``. Raises: KeyError for an unknown sweep. Paper: Figure 1."""
    out = []
    for beta, tau in SWEEPS[sweep]:
        mine = [r for r in rows if _point(r) == (beta, tau)]
        if not mine:
            continue
        values = [r["final_distance"] for r in mine]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
        out.append({"x": beta if sweep == "a" else tau, "beta": beta, "tau": tau,
                    "n": len(values), "mean": mean, "std": math.sqrt(var),
                    "mean_epochs": sum(r["epochs"] for r in mine) / len(mine)})
    return out


def paper_distance(beta: float, tau: float) -> float | None:
    """The paper's distance at (β, τ) where Figure 1 gives one (``reference.FIGURE1``: β = 0
    and β = 1 at τ = 10), else None. Paper: Figure 1a (values read off the plot)."""
    known = {(0.0, 10.0): reference.FIGURE1["beta0_tau10"],
             (1.0, 10.0): reference.FIGURE1["beta1_tau10"]}
    return known.get((round(beta, 6), round(tau, 6)))


def report_rows(results_dir: str | Path) -> list[dict]:
    """One row per point of Figure 1a, 1b and the convergence runs found under
    ``results_dir`` (``csv_path``): ``figure``, ``beta``, ``tau``, ``epochs``, ``seeds``,
    ``distance`` and ``std`` (final distance, mean and std over seeds), ``paper``
    (:func:`paper_distance`, None where the paper gives no number). [] when no CSV exists.

    Raises: ValueError on a malformed CSV (``read_rows``). Paper: Sec. 6.2, Figure 1.
    """
    out = []
    for sweep, figure in (("a", "1a"), ("b", "1b"), ("convergence", "longer run")):
        for point in summarise(read_rows(csv_path(results_dir, sweep)), sweep):
            out.append({"figure": figure, "beta": point["beta"], "tau": point["tau"],
                        "epochs": point["mean_epochs"], "seeds": point["n"],
                        "distance": point["mean"], "std": point["std"],
                        "paper": paper_distance(point["beta"], point["tau"])})
    return out


def plot_figure1(rows: list[dict], sweep: str, path: str | Path) -> Path:
    """Draw Figure 1a (distance vs β, τ = 10) or 1b (vs τ, β = 1): mean ± std over seeds,
    each run as a grey dot, the paper's values (``reference.FIGURE1``) as red crosses.

    Returns ``path`` (PNG, 120 dpi). Raises: ValueError when no row belongs to the sweep.
    Paper: Figure 1 (reference values read off the figure).
    """
    stats = summarise(rows, sweep)
    if not stats:
        raise ValueError(f"no finished runs of sweep {sweep!r}; run `lmtie subspace` first")
    fig, ax = _axes()
    for s in stats:
        mine = [r["final_distance"] for r in rows if _point(r) == (s["beta"], s["tau"])]
        ax.plot([s["x"]] * len(mine), mine, ".", color="grey", alpha=0.6)
    ns = sorted({s["n"] for s in stats})
    seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    ax.errorbar([s["x"] for s in stats], [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats], fmt="o-", capsize=4,
                label=f"ours: mean ± std, n = {seeds} per point")
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
    ax.set_ylabel("subspace distance (Lᵀ, W)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Figure 1{sweep}: span(W) vs span(Lᵀ), PTB 20k-token slice")
    ax.legend(fontsize=9, loc="lower left")
    return _save(fig, path)


def distance_per_epoch(rows: list[dict], sweep: str) -> list[dict]:
    """Per point of Figure 1``sweep`` that has runs: ``x`` (β or τ), ``beta``, ``tau`` and
    ``mean``, the distance(Lᵀ, W) after each epoch averaged over the seeds that reached it
    (``mean[0]``: before training). Raises: KeyError for an unknown sweep.
    Paper: Sec. 6.2 (our addition: the paper shows final distances only)."""
    out = []
    for beta, tau in SWEEPS[sweep]:
        curves = [[r["initial_distance"], *json.loads(r["distance_per_epoch"])]
                  for r in rows if _point(r) == (beta, tau)]
        if curves:
            mean = [sum(c[e] for c in curves if e < len(c)) / sum(e < len(c) for c in curves)
                    for e in range(max(map(len, curves)))]
            out.append({"x": beta if sweep == "a" else tau, "beta": beta, "tau": tau,
                        "mean": mean})
    return out


def plot_distance_per_epoch(rows: list[dict], sweep: str, path: str | Path) -> Path:
    """Draw :func:`distance_per_epoch`: one line per point of Figure 1``sweep``, so one sees
    whether a point had levelled off when its runs ended.

    Returns ``path`` (PNG, 120 dpi). Raises: ValueError when no row belongs to the sweep.
    """
    curves = distance_per_epoch(rows, sweep)
    if not curves:
        raise ValueError(f"no finished runs of sweep {sweep!r}; run `lmtie subspace` first")
    fig, ax = _axes()
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    colours = colormaps["viridis"]([i / max(len(curves) - 1, 1) for i in range(len(curves))])
    for colour, curve in zip(colours, curves, strict=True):
        ax.plot(range(len(curve["mean"])), curve["mean"], color=colour,
                label=f"{'β' if sweep == 'a' else 'τ'} = {curve['x']:g}")
    ax.set(xlabel="epoch", ylabel="subspace distance (Lᵀ, W)", ylim=(0, 1.05),
           title=f"Figure 1{sweep} over training (mean over seeds)")
    ax.legend(fontsize=9, ncol=2, loc="lower left")
    return _save(fig, path)


def plot_convergence(rows: list[dict], path: str | Path) -> Path:
    """Distance(Lᵀ, W) per epoch of the ``"convergence"`` runs (β = 1, τ = 10), plain and
    centred (``centred_subspace_distance``), one line per seed, with the paper's value at
    that point and 1/√d, where a W that J^aug has fitted but for its constant direction sits.

    Returns ``path`` (PNG, 120 dpi). Raises: ValueError when no row is a convergence run.
    Paper: Sec. 6.2, Figure 1a (β = 1 end); our addition.
    """
    mine = [r for r in rows if _point(r) == SWEEPS["convergence"][0]]
    if not mine:
        raise ValueError("no convergence runs; run `lmtie subspace --sweep convergence`")
    fig, ax = _axes()
    for r in sorted(mine, key=lambda r: r["seed"]):
        plain = [r["initial_distance"], *json.loads(r["distance_per_epoch"])]
        line, = ax.plot(range(len(plain)), plain, label=f"seed {r['seed']}")
        centred = json.loads(r["centred_distance_per_epoch"])
        ax.plot(range(1, len(centred) + 1), centred, "--", color=line.get_color(),
                label=f"seed {r['seed']}, constant direction projected out")
    d = json.loads(mine[0]["setup"])["hidden_size"]
    ax.axhline(reference.FIGURE1["beta1_tau10"], color="red", lw=1,
               label="paper, β = 1, τ = 10 (read off Fig. 1a)")
    ax.axhline(1 / math.sqrt(d), color="grey", ls=":", label=f"1/√d (d = {d})")
    ax.set(xlabel="epoch", ylabel="subspace distance (Lᵀ, W)", ylim=(0, 1.05),
           title="β = 1, τ = 10 trained longer")
    ax.legend(fontsize=9, loc="upper right")
    return _save(fig, path)


def _axes() -> tuple[Any, Any]:
    """A 5 × 3.6 in matplotlib ``Figure`` (no pyplot state) and its axes. matplotlib is
    imported here: it belongs to the ``notebooks`` extra, and the sweep runs without it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6), layout="tight")
    return fig, fig.subplots()


def _save(fig: Any, path: str | Path) -> Path:
    """``fig`` as a 120-dpi PNG at ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})  # same figure, same bytes
    return path


def run_experiment(sweep: str = "both", seeds: int = 3, results_dir: str | Path = "results",
                   setup: SubspaceSetup = SubspaceSetup(), device: str = "auto",
                   data_dir: str | Path | None = None, progress: bool = True, jobs: int = 1
                   ) -> list[dict]:
    """Run (resuming) the Figure 1 sweep on PTB train and draw its figures.

    Writes ``csv_path(results_dir, sweep)`` and the figures of ``draw_figures``. Returns all
    rows of that CSV.

    Raises:
        ValueError: bad sweep/seeds/device/setup; FileNotFoundError: PTB is missing (the
            message says how to get it).

    Paper: Sec. 6.2, Figure 1. Time: (number of points × seeds) × the time of one run /
    ``jobs`` (one process per job; with one torch thread each on a 2-core CPU, ``jobs=2``).
    """
    from lmtie.train import resolve_device

    points = sweep_points(sweep, seeds)
    dev = resolve_device(device)
    corpus = Corpus("ptb", data_dir)
    results = Path(results_dir)
    rows = run_sweep(corpus.train, len(corpus.vocab), points, csv_path(results, sweep),
                     setup, dev, progress, jobs)
    draw_figures(rows, results, sweep)
    return rows


def draw_figures(rows: list[dict], results_dir: str | Path, sweep: str = "both") -> None:
    """``figures/figure1{a,b}.png`` and ``figure1{a,b}_epochs.png`` under ``results_dir`` for
    each sweep (``"a"``, ``"b"`` or ``"both"``) that has rows (e.g. ``read_rows`` of a sweep
    cut short); ``figures/figure1_convergence.png`` for ``"convergence"``.
    Raises: KeyError for an unknown sweep."""
    figures = Path(results_dir) / "figures"
    if sweep == "convergence":
        plot_convergence(rows, figures / "figure1_convergence.png")
        return
    for name in ("a", "b") if sweep == "both" else (sweep,):
        if summarise(rows, name):
            plot_figure1(rows, name, figures / f"figure1{name}.png")
            plot_distance_per_epoch(rows, name, figures / f"figure1{name}_epochs.png")
