"""What a user sets for a training run: one table, :data:`SETTINGS`, and everything derived
from it, so that a setting is written once:

    SETTINGS ─► add_arguments      the flags of ``lmtie train`` (and their checks)
             ─► train_config       flags → Config: the run_id suffix of a run that departs
                                   from its preset (``-e10``, ``-tau10``, ``-bias``), and
                                   validation-only ablations
             ─► train_flags        Config → flags: the ``lmtie train`` command the report
                                   shows, and notebook 01's ``flags`` parameter
             ─► describe_change    the ablations table's words (``τ 10, 5 epochs``)

``parse_train_flags(train_flags(config)) == config`` for every config ``lmtie train`` can
make. Adding a setting: a field of :class:`lmtie.config.Config` and a row here.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmtie.config import CORPORA, PRECISIONS, SIZES, VARIANTS, Config, make_config

BASE = ("corpus", "size", "variant")  # the preset a run departs from (make_config)


@dataclass(frozen=True)
class Setting:
    """One settable :class:`lmtie.config.Config` field.

    Attributes:
        name: the Config field. flag: its ``lmtie train`` option. help: the option's help.
        kind: the value's type; None: a switch, whose flag sets the field to ``switched``.
        choices: the values allowed. default: the flag's; None: the preset's (make_config).
        valid, must: for numbers, whether a given value is allowed, and the error's words for
            one that is not (``--tau must be a finite number > 0 ..., got nan``).
        suffix: the run_id suffix word of a run that departs in this field: for a value its
            prefix (``e`` → ``e10``), for a switch the word; "" for none.
        words: the ablations table's text: a format of the value (``τ {:g}``), or a switch's.
        ablation: a change of the model or the loss, not of the schedule: such a run chooses
            between settings and is validation-only (unless ``--measure-test``).
    """

    name: str
    flag: str
    help: str
    kind: type | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None
    switched: bool = True
    valid: Callable[[Any], bool] | None = None
    must: str = ""
    suffix: str = ""
    words: str = ""
    ablation: bool = False


def _is_given(setting: Setting, value: Any) -> bool:
    """A value setting is given unless None; a switch when it is on."""
    return value is not None if setting.kind else bool(value)


def _count(value: int) -> bool:
    return value >= 1


def _temperature(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _weight(value: float) -> bool:
    return math.isfinite(value) and value >= 0


# The rows in the order of the run_id suffix words (``-e10-bias-augbias``).
SETTINGS = (
    Setting("corpus", "--corpus", "default: ptb", str, CORPORA, "ptb"),
    Setting("size", "--size", "default: small", str, SIZES, "small"),
    Setting("variant", "--variant", "vd = VD-LSTM (default), al = +AL, re = +RE (W = Lᵀ), "
            "real = +REAL", str, VARIANTS, "vd"),
    Setting("seed", "--seed", "default: 1", int, default=1, words="seed {}"),
    Setting("epochs", "--epochs", "default: the size's, 40 / 60 / 100 (Decision T1)", int,
            valid=_count, must="at least 1", suffix="e", words="{} epochs"),
    Setting("max_batches", "--max-batches", "cap on training batches per epoch (default: "
            "none, whole epochs)", int, valid=_count, must="at least 1", suffix="b",
            words="{} batches an epoch"),
    Setting("tau", "--tau", "loss temperature (default: 20)", float, valid=_temperature,
            must="a finite number > 0 (a temperature)", suffix="tau", words="τ {:g}",
            ablation=True),
    Setting("alpha", "--alpha", "weight of J^aug (default gamma * tau for +AL/+REAL, else 0)",
            float, valid=_weight, must="a finite number >= 0 (the weight of J^aug)",
            suffix="alpha", words="α {:.3g}", ablation=True),
    Setting("detach_target", "--no-detach-target", "let the gradient flow through ỹ "
            "(ablation of Decision A2)", switched=False, suffix="nodetach",
            words="no stop-gradient on ỹ", ablation=True),
    Setting("output_bias", "--output-bias", "keep a free output bias b in a tied model "
            "(ablation: the paper's RE has b = 0); b enters J only (Decision A3)",
            suffix="bias", words="free output bias", ablation=True),
    Setting("aug_bias", "--aug-bias", "with --output-bias: b in ŷ = softmax((W h + b)/τ) too, "
            "the Sec. 3 reading 'ŷ is y_t at temperature τ' (ablation of Decision A3)",
            suffix="augbias", words="bias in ŷ too", ablation=True),
    Setting("frozen_target", "--frozen-target", "build ỹ from a copy of L taken when each "
            "epoch begins, not from the moving L (ablation: no feedback of the target)",
            suffix="frozen", words="ỹ frozen each epoch", ablation=True),
    Setting("suffix", "--suffix", "run_id suffix (default: derived from the options that "
            "depart from the preset, e.g. -e1 for --epochs 1)", str, default=""),
    Setting("precision", "--precision", "fp32 (default): the reproduction's; bf16: autocast "
            "the matmuls to bf16 (softmax, losses, optimiser in fp32; run_id suffix -bf16, "
            "added by Config.run_id)", str, PRECISIONS, "fp32", words="{} matmuls"),
)
BY_NAME = {s.name: s for s in SETTINGS}
MEASURE_TEST = ("--measure-test", "with an ablation flag, at the full schedule: measure the "
                "test set once at the end, like a preset run (a reading of the paper run in "
                "full; its run_id suffix keeps it out of Table 1)")


def add_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add the flags of :data:`SETTINGS` and ``--measure-test`` to ``parser`` (an
    ``ArgumentParser`` or an argument group); each stores under its setting's name."""
    for s in SETTINGS:
        if s.kind is None:
            parser.add_argument(s.flag, dest=s.name, action="store_true", help=s.help)
        else:
            parser.add_argument(s.flag, dest=s.name, type=s.kind, choices=s.choices,
                                default=s.default, help=s.help)
    parser.add_argument(MEASURE_TEST[0], dest="measure_test", action="store_true",
                        help=MEASURE_TEST[1])


def train_config(given: Mapping[str, Any]) -> Config:
    """The config of a training run from its settings as ``lmtie train`` takes them.

    A run that departs from its preset (fewer epochs, an ablation) gets a run_id suffix
    naming the change, e.g. ``-e1`` or ``-tau10``, unless ``suffix`` names one, so it never
    overwrites the full-schedule run. An ablation (a change of the model or the loss, not
    only of the schedule) is validation-only: it chooses between settings, so no test-set
    number is computed for it, unless ``measure_test`` asks for one at the full schedule
    (issue 13: a reading that beats +RE is run in full and its test number reported beside
    the faithful one).

    Args:
        given: setting name → value, as the flags store them (other keys are ignored): a
            value setting absent or None takes the preset's value, a switch is on when true;
            ``measure_test``: bool.

    Raises:
        ValueError: a value a flag does not allow (names the flag), a config
            :func:`lmtie.config.make_config` refuses, ``measure_test`` without an ablation or
            with a shortened schedule.
    """
    for s in SETTINGS:
        value = given.get(s.name)
        if s.valid is not None and value is not None and not s.valid(value):
            raise ValueError(f"{s.flag} must be {s.must}, got {value}")
    base_of = {s.name: given.get(s.name) or s.default for s in SETTINGS if s.name in BASE}
    seed = 1 if given.get("seed") is None else given["seed"]
    overrides = {s.name: (given[s.name] if s.kind else s.switched) for s in SETTINGS
                 if s.name not in (*BASE, "seed", "suffix") and _is_given(s, given.get(s.name))}
    base = make_config(**base_of, seed=seed)
    config = make_config(**base_of, seed=seed, **overrides)
    changed = [BY_NAME[k] for k in overrides  # the departures a suffix word names
               if BY_NAME[k].suffix and getattr(base, k) != getattr(config, k)]
    suffix = given.get("suffix") or "-".join(  # 0.5 -> 0p5, 1e+20 -> 1e20
        s.suffix if s.kind is None
        else f"{s.suffix}{overrides[s.name]:g}".replace(".", "p").replace("+", "")
        for s in changed)
    ablation = any(s.ablation for s in changed)
    measure_test = bool(given.get("measure_test"))
    if measure_test and not ablation:
        raise ValueError("--measure-test is for an ablation (e.g. --output-bias): a run "
                         "without one measures the test set already")
    if measure_test and (config.epochs < base.epochs or config.max_batches is not None):
        raise ValueError(f"--measure-test needs the full schedule ({base.epochs} epochs, "
                         "whole epochs): drop --epochs/--max-batches")
    return config.replace(suffix=suffix, valid_only=ablation and not measure_test)


class _Refusal(argparse.ArgumentParser):
    """A parser whose errors raise ``ValueError`` instead of leaving the program."""

    def error(self, message: str) -> Any:
        raise ValueError(f"{self.prog}: {message}")


def parse_train_flags(flags: str | Sequence[str]) -> Config:
    """The config of ``lmtie train``'s flags (text as a shell splits it, or a list).

    Raises:
        ValueError: an unknown flag or a bad value (the parser's message), or as
            :func:`train_config`.
    """
    parser = _Refusal(prog="lmtie train", add_help=False)
    add_arguments(parser)
    return train_config(vars(parser.parse_args(
        shlex.split(flags) if isinstance(flags, str) else list(flags))))


def train_flags(config: Config) -> list[str]:
    """The ``lmtie train`` flags that make ``config``: corpus, size and variant, then a flag
    for each field where ``config`` differs from its preset (in the order of the Config
    fields), and ``--measure-test`` for an ablation that measures the test set.

    Raises:
        ValueError: ``config`` changes a field that ``lmtie train`` has no flag for.
    """
    base = make_config(config.corpus, config.size, config.variant)
    flags = [f for name in BASE for f in (BY_NAME[name].flag, getattr(config, name))]
    ablation = False
    for name, value in config.to_dict().items():
        if name in (*BASE, "valid_only") or value == getattr(base, name):
            continue  # valid_only: set by train_config for ablations
        s = BY_NAME.get(name)
        if s is None or (s.kind is None and value != s.switched):
            raise ValueError(f"{config.run_id}: {name}={value!r} has no `lmtie train` flag")
        flags += [s.flag] if s.kind is None else [s.flag, str(value)]
        ablation = ablation or s.ablation
    if ablation and not config.valid_only:
        flags.append(MEASURE_TEST[0])  # an ablation that measures the test set (issue 13)
    return flags


def train_command(config: Config) -> str:
    """``lmtie train`` and :func:`train_flags` as one line of shell. Raises: as those."""
    return shlex.join(["lmtie", "train", *train_flags(config)])


def describe_change(config: Config, base: Config) -> str:
    """What ``config`` changes from ``base``, in words, e.g. ``"τ 10, α 6.5, 5 epochs"`` or
    ``"free output bias"``: the settings' words, other fields as ``name=value``.
    Raises: nothing."""
    words = []
    for name, value in config.to_dict().items():
        if name in ("suffix", "valid_only") or value == getattr(base, name):
            continue
        s = BY_NAME.get(name)
        words.append(f"{name}={value}" if s is None or not s.words
                     else s.words if s.kind is None else s.words.format(value))
    return ", ".join(words)
