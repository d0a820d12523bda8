"""Sec. 6.2 / Figure 1: the subspace distance between Lᵀ and W as the augmented loss takes over.

A 2-layer LSTM, untied W, trained on a random contiguous 20,000-token slice of PTB train with no
dropout or weight decay, every word vector (row of Lᵀ) renormalised to unit norm after each
update, on eq. 6.1 per token: ``β · τ²|V| · J^aug + (1 − β) · J`` (J^aug = ``augmented_kl``,
J = CE), until the training loss stops improving (:class:`Convergence`) or a cap; both
readings of the distance between span Lᵀ and span W (Decision S1 and the projection
residual) after every epoch, and at the end the hidden states' span and W's end point under
J^aug (:mod:`lmtie.spans`), which explain the distance that remains. Figure 1a sweeps β at
τ = 10, 1b τ at β = 1 (:data:`lmtie.config.SWEEPS`). Each run trains through Table 1's
epoch loop (:func:`lmtie.train.train_epoch`) with its own step, can checkpoint every epoch
and go on from there, and returns its row (:class:`lmtie.schema.Figure1Row`); the sweeps
are :mod:`lmtie.figure1_sweep`'s. The choices where the paper is silent (optimiser, batch,
epoch budget, precision) and why: ``docs/figure1.md``. The summaries and figures are on the
report side (:mod:`lmtie.report`, :mod:`lmtie.figures_spans`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lmtie.config import CONVERGENCE_EPOCHS, make_config
from lmtie.data import batchify, bptt_batches
from lmtie.loss import augmented_kl
from lmtie.model import RNNLM, State
from lmtie.optimum import Optimum, minimise_w
from lmtie.runs import load_checkpoint, save_checkpoint
from lmtie.schema import Figure1Row
from lmtie.spans import (
    centred_subspace_distance,
    hidden_span,
    least_squares_w,
    projection_residual,
    subspace_distance,
)
from lmtie.train import train_epoch

MATH_VERSION = 1  # bump with every change that changes a run's numbers: no checkpoint resumes
PROGRESS_EVERY = 25  # epochs between a run's progress lines
SMOKE = {"slice_tokens": 2_000, "hidden_size": 16, "epochs": 2}


@dataclass(frozen=True)
class Figure1Setup:
    """Everything of a Sec. 6.2 run except (β, τ, seed). Units: tokens, epochs; ``lr`` per step
    of the per-token mean loss; ``clip_norm`` the global L2 norm of that loss's gradient;
    ``epochs`` the most a run trains; ``halvings``, ``patience``: the convergence rule
    (:class:`Convergence`; ``halvings`` 0: every run trains ``epochs``). ``docs/figure1.md``
    says why.

    Raises:
        ValueError: unknown optimiser, sizes/epochs/lr that are not positive, or a negative
            ``halvings``/``patience``.
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
    halvings: int = 4
    patience: int = 2

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        sizes = ("slice_tokens", "hidden_size", "num_layers", "batch_size", "bptt", "epochs")
        bad = [n for n in sizes if getattr(self, n) <= 0]
        if bad or min(self.lr, self.clip_norm, self.init_range) <= 0:
            raise ValueError(f"{bad or 'lr, clip_norm, init_range'} must be positive")
        _check_rule(self.halvings, self.patience)

    def to_dict(self) -> dict:
        """Every field (a row's ``setup``; a resumed sweep compares it)."""
        return dataclasses.asdict(self)


def _check_rule(halvings: int, patience: int) -> None:
    """Raises ValueError unless both numbers of the convergence rule are >= 0."""
    if min(halvings, patience) < 0:
        raise ValueError(f"halvings and patience must be >= 0, got {halvings}, {patience}")


class Convergence:
    """When a Sec. 6.2 run has reached its minimum training loss (the paper: "trained to
    achieve the minimum training loss possible"): the learning rate is halved whenever the
    epoch's loss has not improved on the best so far by a relative 10⁻³ for ``patience`` + 1
    epochs in a row (``torch.optim.lr_scheduler.ReduceLROnPlateau``), counted from the loss's
    highest point, and the run stops at the ``halvings``-th halving.

    For β > 0 the loss first *rises* for several epochs (ỹ sharpens as L learns through the
    inputs) while the distance falls; a plateau counted from epoch 1 would halve the rate
    during that rise. So the scheduler sees the losses from the first epoch whose loss is
    below the one before.

    Raises: ValueError for a negative ``halvings`` or ``patience``.
    Paper: Sec. 6.2; Deviation: the rule is ours (the paper gives none).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, halvings: int, patience: int) -> None:
        _check_rule(halvings, patience)
        self.halvings, self.halved = halvings, 0
        self._optimizer = optimizer
        self._scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=patience, threshold=1e-3)
        self._previous: float | None = None
        self._falling = False

    def step(self, loss: float) -> bool:
        """Record an epoch's training loss (per token); True when the run should stop
        (never when ``halvings`` is 0)."""
        self._falling = self._falling or (self._previous is not None and loss < self._previous)
        self._previous = loss
        if not self._falling or self.halvings == 0:
            return False
        lr = self._optimizer.param_groups[0]["lr"]
        self._scheduler.step(loss)
        self.halved += self._optimizer.param_groups[0]["lr"] < lr
        return self.halved >= self.halvings

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to go on where this rule stands (plain data;
        the learning rate itself is the optimiser's)."""
        return {"scheduler": self._scheduler.state_dict(), "halved": self.halved,
                "previous": self._previous, "falling": self._falling}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._scheduler.load_state_dict(state["scheduler"])
        self.halved, self._previous = state["halved"], state["previous"]
        self._falling = state["falling"]


def default_epochs(sweep: str) -> int:
    """The epoch budget of a sweep's runs: ``CONVERGENCE_EPOCHS`` for ``"convergence"``, else
    ``Figure1Setup``'s (20)."""
    return CONVERGENCE_EPOCHS if sweep == "convergence" else Figure1Setup.epochs


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


def normalise_rows_(weight: Tensor) -> None:
    """Unit-norm every word vector (row of Lᵀ), in place. Paper: Sec. 6.2."""
    with torch.no_grad():
        weight.div_(weight.norm(dim=1, keepdim=True).clamp_min(1e-12))


def _eq61_step(model: RNNLM, optimizer: torch.optim.Optimizer, beta: float, tau: float,
               clip_norm: float) -> Callable[[Tensor, Tensor, State], tuple[Tensor, State]]:
    """The :data:`lmtie.train.Step` of eq. 6.1: per-token ``(1 − β) J + β τ²|V| J^aug``,
    clipping, the optimiser's step and the unit-norm rows of Lᵀ; logs (J^tot, J, J^aug) per
    token × tokens (J^aug NaN at β = 0)."""
    lt = model.embedding.weight
    params = [p for p in model.parameters() if p.requires_grad]
    vocab_size = lt.shape[0]
    scale = beta * tau**2 * vocab_size  # eq. 6.1: β · τ²|V|

    def step(inputs: Tensor, targets: Tensor, state: State) -> tuple[Tensor, State]:
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
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        normalise_rows_(lt)
        return torch.stack([objective, ce, aug]).detach() * targets.numel(), state
    return step


@dataclass
class _History:
    """A run's record so far (what its checkpoint carries besides the weights): distance
    before training; per epoch J^tot, the distance, the centred distance and the projection
    residual; the last epoch's (J^tot, J, J^aug) per token; stopped by the rule; seconds."""

    initial: float
    losses: list[float] = dataclasses.field(default_factory=list)
    distances: list[float] = dataclasses.field(default_factory=list)
    centred: list[float] = dataclasses.field(default_factory=list)
    residuals: list[float] = dataclasses.field(default_factory=list)
    last: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    converged: bool = False
    wall_s: float = 0.0


def _identity(beta: float, tau: float, seed: int, setup: Figure1Setup, tokens: Tensor
              ) -> dict[str, Any]:
    """What makes a run's numbers (its checkpoint continues only a run of the same): the
    point, the setup, the slice's sha256 and :data:`MATH_VERSION`."""
    digest = hashlib.sha256(tokens.cpu().numpy().tobytes()).hexdigest()
    return {"beta": float(beta), "tau": float(tau), "seed": seed, "setup": setup.to_dict(),
            "slice_sha256": digest, "math_version": MATH_VERSION}


def _resume(path: Path, identity: dict[str, Any], model: RNNLM,
            optimizer: torch.optim.Optimizer, convergence: Convergence) -> _History:
    """Load the run's state from its checkpoint at ``path`` into the three objects.
    Raises: ValueError (corrupt, or of another run: says what to do; nothing changed)."""
    fix = (f"Delete {path} to train beta={identity['beta']:g} tau={identity['tau']:g} "
           f"seed={identity['seed']} from its start")
    payload = load_checkpoint(path, ("identity", "model", "optimizer", "convergence",
                                     "history"), fix)
    if payload["identity"] != identity:
        raise ValueError(f"{path} holds another run (another point, setup, slice or math "
                         f"version); nothing was changed. {fix}")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    convergence.load_state_dict(payload["convergence"])
    history = payload["history"]
    return _History(**{**history, "last": tuple(history["last"])})


def train_point(ids: Tensor, vocab_size: int, beta: float, tau: float, seed: int,
                setup: Figure1Setup = Figure1Setup(), device: str | torch.device = "cpu",
                checkpoint: str | Path | None = None, progress: bool = False) -> Figure1Row:
    """Train one Sec. 6.2 model on a random slice of ``ids`` and return its row.

    Args:
        ids: ``(N,)`` int64 training stream (PTB train); a slice of ``setup.slice_tokens``.
        vocab_size: V (the model's vocabulary; every id < V).
        beta: weight in [0, 1] of the augmented term (eq. 6.1). tau: temperature > 0.
        seed: slice start and initialisation (there is no dropout).
        checkpoint: a file written (atomically) after every epoch and, when it exists,
            continued from: the run then computes what it would have computed unbroken.
            None: no checkpoint.
        progress: print a line every ``PROGRESS_EVERY`` epochs and where it resumes.

    Returns:
        The run's :class:`lmtie.schema.Figure1Row` (``wall_s`` summed over its sessions).

    Raises:
        ValueError: β outside [0, 1], τ ≤ 0, a slice longer than ``ids``, or a checkpoint
            that is corrupt or of another run.
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
    normalise_rows_(lt)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over each parameter instead of ~10 passes (46 -> ~10 ms a step here)
    optimizer = (torch.optim.Adam(params, lr=setup.lr, weight_decay=0.0, fused=True)
                 if setup.optimizer == "adam" else torch.optim.SGD(params, lr=setup.lr))
    step = _eq61_step(model, optimizer, beta, tau, setup.clip_norm)
    convergence = Convergence(optimizer, setup.halvings, setup.patience)
    identity = _identity(beta, tau, seed, setup, tokens)
    if checkpoint is not None and Path(checkpoint).is_file():
        history = _resume(Path(checkpoint), identity, model, optimizer, convergence)
        if progress:
            print(f"beta={beta:g} tau={tau:g} seed={seed}: continuing after epoch "
                  f"{len(history.losses)} ({checkpoint})", flush=True)
    else:
        history = _History(initial=subspace_distance(lt, w))
    while not history.converged and len(history.losses) < setup.epochs:
        epoch = len(history.losses) + 1
        try:
            sums, _ = train_epoch(model, data, setup.bptt, step)
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} in epoch {epoch} (beta={beta}, tau={tau}, "
                                     f"seed={seed}); lower the lr") from err
        history.last = (sums[0], sums[1], sums[2])
        history.losses.append(sums[0])
        history.distances.append(subspace_distance(lt, w))
        history.centred.append(centred_subspace_distance(lt, w))
        history.residuals.append(projection_residual(lt, w))
        history.converged = convergence.step(history.last[0])
        if progress and epoch % PROGRESS_EVERY == 0:
            print(f"beta={beta:g} tau={tau:g} seed={seed}: epoch {epoch}, loss "
                  f"{history.last[0]:.4f}, distance {history.distances[-1]:.3f}, "
                  f"{convergence.halved} lr halving(s)", flush=True)
        if checkpoint is not None:
            wall_s = history.wall_s + time.perf_counter() - start_time
            save_checkpoint(Path(checkpoint), {
                "identity": identity, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "convergence": convergence.state_dict(),
                "history": dataclasses.asdict(dataclasses.replace(history, wall_s=wall_s))})
    h, targets = hidden_states(model, data, setup.bptt)
    span = hidden_span(h, lt, w)
    end = None if beta == 0 else subspace_distance(
        lt, least_squares_w(h, lt.detach()[targets], lt, w))
    optimum = minimise_w(h, targets, lt, w, tau) if beta == 1 else None
    loss, ce_mean, aug_mean = history.last
    return Figure1Row(
        beta=beta, tau=tau, seed=seed, slice_start=slice_start, epochs=len(history.losses),
        final_loss=loss, final_ce=ce_mean,
        final_aug_kl=None if math.isnan(aug_mean) else aug_mean,
        initial_distance=history.initial, final_distance=history.distances[-1],
        final_residual=history.residuals[-1],
        wall_s=history.wall_s + time.perf_counter() - start_time,
        distance_per_epoch=history.distances, centred_distance_per_epoch=history.centred,
        loss_per_epoch=history.losses, setup=setup.to_dict(),
        residual_per_epoch=history.residuals, converged=history.converged,
        lr_halvings=convergence.halved, hidden_singular_values=span.singular_values,
        hidden_effective_rank=span.effective_rank, sine_by_hidden_direction=span.sines,
        least_squares_distance=end, **_optimum_fields(optimum, lt))


def _optimum_fields(optimum: Optimum | None, lt: Tensor) -> dict[str, Any]:
    """A row's fields of W's minimum (:mod:`lmtie.optimum`); none below β = 1."""
    if optimum is None:
        return {}
    return {"slice_loss": optimum.start_loss, "optimum_loss": optimum.loss,
            "optimum_distance": subspace_distance(lt, optimum.weight),
            "optimum_residual": projection_residual(lt, optimum.weight),
            "optimum_gradient": optimum.gradient, "optimum_iterations": optimum.iterations,
            "optimum_converged": optimum.converged}


def hidden_states(model: RNNLM, data: Tensor, bptt: int) -> tuple[Tensor, Tensor]:
    """The top layer's outputs h_t (what W multiplies) over ``data`` ``(L, B)`` in bptt
    segments with the state carried, as in training, without gradients: ``(N, H)`` float32
    and the ``(N,)`` int64 targets they predict, N = (L − 1) · B. Paper: Sec. 6.2 (h of
    eq. 2.2); our addition for :func:`lmtie.spans.hidden_span`."""
    outputs, targets = [], []
    state = model.init_state(data.shape[1])
    with torch.no_grad():
        for inputs, target in bptt_batches(data, bptt):
            out, state = model.lstm(model.embedding(inputs), state)
            outputs.append(out.reshape(-1, out.shape[-1]))
            targets.append(target.reshape(-1))
    return torch.cat(outputs).cpu(), torch.cat(targets).cpu()
