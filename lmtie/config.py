"""One frozen, validated configuration for a training run, and the presets of docs/paper.md §4.

Every field has the paper's name. ``make_config`` builds a config from a corpus, a size and a
variant (the paper's hyperparameters and the project's Decisions), then applies overrides.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

CORPORA = ("ptb", "wikitext-2")
SIZES = ("small", "medium", "large")
VARIANTS = ("vd", "al", "re", "real")
VARIANT_LABELS = {"vd": "VD-LSTM", "al": "+AL", "re": "+RE", "real": "+REAL"}
PRECISIONS = ("fp32", "bf16")  # lmtie.precision: bf16 = autocast for the matmuls
DEVICES = ("auto", "cpu", "cuda")  # --device: auto = CUDA when available (lmtie.device)

# Paper: Sec. 6.1 and appendix. Units: embedding = hidden size.
_SIZE = {
    #          units  lr_decay_start  lr_decay  clip  epochs (T1)  init_range (T1)
    "small": (200, 5, 0.9, 5.0, 40, 0.1),
    "medium": (650, 10, 0.9, 5.0, 60, 0.05),
    "large": (1500, 1, 0.97, 6.0, 100, 0.04),
}
# Decision D1: the paper's "dropout probabilities" are TF keep probabilities; these are drop rates.
_DROPOUT = {
    "ptb": {"small": 0.3, "medium": 0.5, "large": 0.65},
    "wikitext-2": {"small": 0.2, "medium": 0.4},
}
# Decision A1: alpha = gamma * tau with the midpoints of the appendix's gamma ranges.
_GAMMA = {"ptb": 0.65, "wikitext-2": 1.25}
_TAU = 20.0
# config.json also records the run's fingerprint (lmtie.identity): derived from the settings,
# the training math and the corpus, not a setting itself
_RECORDED = ("fingerprint",)
RENAMED = {"preset": "suffix"}  # old field name -> Config field (in files of earlier versions)

# Figure 1 (Sec. 6.2, lmtie.figure1): the (β, τ) points of each sweep
BETAS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)  # Figure 1a, at tau = 10
TAUS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)  # Figure 1b, at beta = 1
# "convergence": Figure 1a's β = 1 end trained CONVERGENCE_EPOCHS epochs, to see where the
# 20-epoch distances were heading; a table of its own (schema.figure1_path)
SWEEPS = {"a": [(b, 10.0) for b in BETAS], "b": [(1.0, t) for t in TAUS],
          "convergence": [(1.0, 10.0)]}
CONVERGENCE_EPOCHS = 100


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Frozen: derive new ones with ``replace``.

    Units: ``lr`` per unit of the summed-over-bptt loss (Decision T2), ``clip_norm`` the global
    L2 norm of that loss's gradient, ``dropout`` a drop rate in [0, 1), ``tau`` the loss
    temperature (never a sampling temperature), ``alpha`` the weight of J^aug in (3.3).

    Raises:
        ValueError: on an unknown corpus/size/variant, or an impossible value (tau <= 0,
            alpha < 0, NaN or infinite numbers, tied with embedding_dim != hidden_size,
            non-positive sizes ...).
    """

    corpus: str = "ptb"
    size: str = "small"
    variant: str = "vd"
    seed: int = 1
    embedding_dim: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.3
    init_range: float = 0.1
    tied: bool = False
    alpha: float = 0.0
    tau: float = _TAU
    detach_target: bool = True  # Decision A2: ỹ is a target (stop-gradient)
    output_bias: bool | None = None  # b in y_t (2.3); None = the paper's: b unless tied
    aug_bias: bool = False  # b in ŷ too: softmax((W h + b)/τ), Sec. 3's "y_t at τ" (ablation)
    frozen_target: bool = False  # ỹ from L as it was when the epoch began (ablation)
    valid_only: bool = False  # ablations: no test-set number is computed (never tune on test)
    lr: float = 1.0
    lr_decay: float = 0.9
    lr_decay_start: int = 5
    clip_norm: float = 5.0
    batch_size: int = 20
    bptt: int = 35
    epochs: int = 40
    max_batches: int | None = None  # cap on training batches per epoch (shortened presets)
    eval_batch_size: int = 20  # validation batch (Decision E1; 20 as in Zaremba et al.'s code)
    test_batch_size: int = 1  # Decision E1: whole test stream, batch 1, state carried
    suffix: str = ""  # run_id suffix of a run beside its preset's, e.g. "smoke", "e10-bias"
    precision: str = "fp32"  # fp32 | bf16 (training matmuls under autocast; run_id suffix)

    def __post_init__(self) -> None:
        if self.output_bias is None:  # Sec. 4: RE has b = 0; a free b is an ablation
            object.__setattr__(self, "output_bias", not self.tied)
        _choice("corpus", self.corpus, CORPORA)
        _choice("size", self.size, SIZES)
        _choice("variant", self.variant, VARIANTS)
        _choice("precision", self.precision, PRECISIONS)
        positive = ("embedding_dim", "hidden_size", "num_layers", "batch_size", "bptt",
                    "epochs", "eval_batch_size", "test_batch_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("tau", "alpha", "dropout", "init_range", "lr", "lr_decay", "clip_norm"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.max_batches is not None and self.max_batches <= 0:
            raise ValueError(f"max_batches must be positive or None, got {self.max_batches}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0 (a temperature), got {self.tau}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0 (weight of J^aug), got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is a drop rate in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.clip_norm <= 0 or self.init_range <= 0:
            raise ValueError("lr, clip_norm and init_range must be > 0")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.tied and self.embedding_dim != self.hidden_size:
            raise ValueError(
                f"tied=True needs embedding_dim == hidden_size (W = Lᵀ), got "
                f"{self.embedding_dim} != {self.hidden_size}"
            )
        if self.aug_bias and not self.output_bias:
            raise ValueError("aug_bias puts b into ŷ, so it needs a bias: set output_bias "
                             "(--output-bias) too")
        if self.frozen_target and not self.detach_target:
            raise ValueError("frozen_target builds ỹ from a copy of L, through which no "
                             "gradient can flow: it needs detach_target (drop "
                             "--no-detach-target)")
        if self.suffix and not self.suffix.replace("-", "").isalnum():
            raise ValueError(f"run_id suffix must be alphanumeric, got {self.suffix!r}")

    @property
    def run_id(self) -> str:
        """``{corpus}-{size}-{variant}-seed{seed}``, plus ``-{suffix}`` when there is one and
        ``-{precision}`` unless fp32 (a bf16 run never takes an fp32 run's place)."""
        run_id = f"{self.corpus}-{self.size}-{self.variant}-seed{self.seed}"
        suffixes = (self.suffix, "" if self.precision == "fp32" else self.precision)
        return "-".join([run_id, *(s for s in suffixes if s)])

    @property
    def label(self) -> str:
        """The paper's row label: ``VD-LSTM``, ``+AL``, ``+RE`` or ``+REAL``."""
        return VARIANT_LABELS[self.variant]

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-based ``epoch``: ``lr * lr_decay ** max(0, epoch - lr_decay_start)``.

        Paper: Sec. 6.1 / appendix (per-epoch decay after epoch 5 / 10 / 1).
        """
        return self.lr * self.lr_decay ** max(0, epoch - self.lr_decay_start)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build from a dict (e.g. a run's ``config.json``; its ``fingerprint`` is skipped).
        Fields it lacks (files from before they existed) take their defaults; fields under an
        old name (``preset``, now ``suffix``) are read under their new one.

        Raises:
            ValueError: on keys that are not Config fields (names them and the valid ones).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {RENAMED.get(k, k): v for k, v in values.items() if k not in _RECORDED}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (validated; unknown keys raise ``ValueError``)."""
        return Config.from_dict({**self.to_dict(), **changes})


def make_config(corpus: str = "ptb", size: str = "small", variant: str = "vd",
                **overrides: Any) -> Config:
    """The preset of docs/paper.md §4 for ``corpus`` × ``size`` × ``variant``, then ``overrides``.

    Variants set two independent switches: ``tied`` (RE: W = Lᵀ, b = 0) and ``alpha`` (AL:
    ``alpha = gamma * tau``, Decision A1). An override of ``tau`` keeps ``alpha = gamma * tau``
    unless ``alpha`` is overridden too.

    Raises:
        ValueError: unknown corpus/size/variant (naming the choices), a size the paper does
            not define for the corpus (WikiText-2 large), or unknown override keys.
    """
    _choice("corpus", corpus, CORPORA)
    _choice("size", size, SIZES)
    _choice("variant", variant, VARIANTS)
    if size not in _DROPOUT[corpus] and "dropout" not in overrides:
        raise ValueError(
            f"the paper defines no {size} model for {corpus}; choose one of "
            f"{', '.join(_DROPOUT[corpus])} (or pass dropout=... explicitly)"
        )
    units, decay_start, decay, clip, epochs, init_range = _SIZE[size]
    tau = float(overrides.get("tau", _TAU))
    augmented = variant in ("al", "real")
    alpha = _GAMMA[corpus] * tau if augmented else 0.0
    if math.isfinite(tau) and not math.isfinite(alpha) and "alpha" not in overrides:
        raise ValueError(f"tau {tau:g} is too large: alpha = gamma * tau overflows")
    values: dict[str, Any] = dict(
        corpus=corpus, size=size, variant=variant,
        embedding_dim=units, hidden_size=units,
        dropout=_DROPOUT[corpus].get(size, 0.0), init_range=init_range,
        tied=variant in ("re", "real"), output_bias=None,
        alpha=alpha, tau=tau,
        lr_decay=decay, lr_decay_start=decay_start, clip_norm=clip, epochs=epochs,
    )
    return Config.from_dict({**Config().to_dict(), **values, **overrides})


PRESETS = ("smoke", "cpu", "paper")


def preset_configs(preset: str, seeds: tuple[int, ...] = (1,)) -> list[Config]:
    """The runs of a ``lmtie reproduce`` preset, for each of ``seeds`` (seed by seed: every
    run of the first seed before any of the second).

    - ``smoke``: PTB small, the four variants, 2 epochs of 100 batches each (run_id suffix
      ``-smoke``); a few minutes on 2 CPU cores. Checks the pipeline, not the paper.
    - ``cpu``: PTB small, the four variants, the full schedule (Decision T1).
    - ``paper``: every cell of Table 1 (PTB small/medium/large, WikiText-2 small/medium); GPU.

    Raises:
        ValueError: unknown preset (names the choices), or a seed below 1.
    """
    _choice("preset", preset, PRESETS)
    if not seeds or min(seeds) < 1:
        raise ValueError(f"seeds must be positive integers, got {list(seeds)}")
    if preset == "smoke":
        cells = [make_config("ptb", "small", v, epochs=2, max_batches=100, suffix="smoke")
                 for v in VARIANTS]
    elif preset == "cpu":
        cells = [make_config("ptb", "small", v) for v in VARIANTS]
    else:
        sizes = [("ptb", s) for s in SIZES] + [("wikitext-2", s) for s in ("small", "medium")]
        cells = [make_config(c, s, v) for c, s in sizes for v in VARIANTS]
    return [config.replace(seed=seed) for seed in seeds for config in cells]


_SEED = re.compile(r"-seed(\d+)(?=-|$)")  # the seed field of Config.run_id


def preset_run(preset: str, run_id: str) -> Config | None:
    """The config of ``preset``'s run ``run_id`` at whatever seed it names (e.g.
    ``ptb-small-vd-seed3`` for ``cpu``), or None when ``run_id`` is not one of the preset's
    runs (an ablation such as ``ptb-small-vd-seed1-e10`` is not).

    Raises:
        ValueError: unknown preset.
    """
    configs = preset_configs(preset)
    try:
        seed = seed_of(run_id)
    except ValueError:  # no seed field: not a preset run
        return None
    if seed < 1:
        return None
    candidates = (config.replace(seed=seed) for config in configs)
    return next((config for config in candidates if config.run_id == run_id), None)


def seed_of(run_id: str) -> int:
    """The seed a run_id names (``ptb-small-vd-seed3-e5`` → 3; :attr:`Config.run_id`).

    Raises: ValueError: no ``-seed<N>`` field in ``run_id``."""
    found = _SEED.search(run_id)
    if not found:
        raise ValueError(f"{run_id}: no -seed<N> in the run_id")
    return int(found.group(1))


def at_seed(run_id: str, seed: int) -> str:
    """``run_id`` with its seed replaced (``ptb-small-re-seed1-bias``, 2 →
    ``ptb-small-re-seed2-bias``): the same run at another seed.

    Raises: ValueError: no ``-seed<N>`` field in ``run_id``."""
    seed_of(run_id)
    return _SEED.sub(f"-seed{seed}", run_id, count=1)
