"""The run files, one dataclass each: what a file holds is written here once, and every file
is written and read through its class (``write_*``/``read_*``), never as a dict literal.

    <run_dir>/metrics.jsonl         EpochRow, one line per completed epoch
    <run_dir>/final.json            FinalRecord, the run's summary (test perplexity)
    <run_dir>/test_statistics.json  TestStatistics: the model over the test stream beyond its
                                    perplexity (p(<unk>), ranks, ỹ's entropy, W h vs Lᵀu,
                                    mass on a/an/the and on neighbours, next-word lists);
                                    ``predictions.json`` before schema version 2
    <run_dir>/diagnostics.json      Diagnostics: ``lmtie diagnose`` entries, one per epoch
    <results>/subspace/*.jsonl      Figure1Row, one line per Sec. 6.2 run (:mod:`lmtie.figure1`)

Every record carries ``schema_version``. Files from before versions (no ``schema_version``)
are version 1: fields added over time may be missing, and read as None. A file is migrated on
read, by its version, to the current class; a newer version than this code knows is refused.
Adding a number: one field here (with a default of None for older files) and the function
that computes it (:mod:`lmtie.analysis`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lmtie import atomic
from lmtie.layout import ResultsDir

LEGACY = 1  # the version of files written before records had one
METRICS, FINAL, TEST_STATISTICS, DIAGNOSTICS = (
    "metrics.jsonl", "final.json", "test_statistics.json", "diagnostics.json")
LEGACY_TEST_STATISTICS = "predictions.json"  # the name of version 1


class SchemaError(ValueError):
    """A run file does not fit its record: a missing or unknown field, or a version newer
    than this code (the message names the file and what to do)."""


class Record:
    """Base of the run-file records: versioned dict conversion with migration on read."""

    VERSION: ClassVar[int] = 2
    OPTIONAL_BEFORE: ClassVar[dict[str, int]] = {}  # field -> first version that always has it

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values, ``schema_version`` last."""
        return {**dataclasses.asdict(self), "schema_version": self.VERSION}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | Path = "a record") -> Any:
        """Read a stored record of any known version (``where`` names it in errors).

        Raises:
            SchemaError: not an object, a version newer than ``VERSION``, an unknown field, or
                a field missing that its version always has.
        """
        if not isinstance(values, dict):
            raise SchemaError(f"{where}: expected a JSON object, got {type(values).__name__}")
        values = dict(values)
        version = values.pop("schema_version", LEGACY)
        if not isinstance(version, int) or version > cls.VERSION:
            raise SchemaError(f"{where}: schema version {version!r}, newer than this lmtie's "
                              f"{cls.VERSION}; update lmtie (git pull, pip install -e .)")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise SchemaError(f"{where}: unknown fields {unknown} for a {cls.__name__}; it was "
                              "edited or written by another program")
        for name in names:  # migration: fields a version may lack read as None
            if name not in values and version < cls.OPTIONAL_BEFORE.get(name, 0):
                values[name] = None
        missing = [n for n in names if n not in values and _required(cls, n)]
        if missing:
            raise SchemaError(f"{where}: missing {missing}; re-run the command that writes it")
        return cls(**values)


def _required(cls: type, name: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclass(frozen=True)
class EpochRow(Record):
    """One line of ``metrics.jsonl``: an epoch of training and its validation.

    Units: ``lr`` per unit of the summed-over-bptt loss (Decision T2); ``train_ce``,
    ``train_aug_kl`` nats per token over the epoch (with dropout); perplexities exp(nats);
    ``subspace_distance`` in [0, 1] (None when tied); ``target_entropy`` nats (mean entropy of
    ỹ over the validation targets); ``tokens_per_s``; ``elapsed_s`` seconds since the run
    started (training + validation).
    """

    OPTIONAL_BEFORE: ClassVar[dict[str, int]] = {"valid_ppl_test_batch": 2, "target_entropy": 2}

    epoch: int
    lr: float
    train_ce: float
    train_aug_kl: float
    tokens_per_s: float
    valid_ppl: float
    valid_ppl_test_batch: float | None  # the test protocol's batch (E1) on the valid stream
    subspace_distance: float | None
    target_entropy: float | None
    elapsed_s: float
    target_mass_frequent: float | None = None  # ỹ's mass on the 100 most frequent train words


@dataclass(frozen=True)
class FinalRecord(Record):
    """``final.json``: the run's summary. ``valid_ppl`` of the best epoch; ``test_ppl`` with
    its weights (batch ``test_batch_size``, Decision E1), None for a validation-only run;
    ``suffix`` the config's run_id suffix (``preset`` before version 3); ``wall_s`` seconds;
    ``device`` as torch names it."""

    VERSION: ClassVar[int] = 3

    run_id: str
    corpus: str
    size: str
    variant: str
    tied: bool
    alpha: float
    tau: float
    seed: int
    n_params: int
    epochs_run: int
    best_epoch: int
    valid_ppl: float
    test_ppl: float | None
    eval_batch_size: int
    test_batch_size: int
    suffix: str
    wall_s: float
    device: str

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | Path = "a record") -> FinalRecord:
        if isinstance(values, dict) and values.get("schema_version", LEGACY) in (1, 2):
            values = {("suffix" if k == "preset" else k): v for k, v in values.items()}
        return super().from_dict(values, where)


@dataclass(frozen=True)
class TestStatistics(Record):
    """``test_statistics.json`` (``predictions.json`` in version 1): the best checkpoint over
    the test stream, beyond perplexity. Means over the ``n_tokens`` targets: ``mean_p_unk``,
    ``mean_target_rank`` (1 = top), ``mean_p_articles`` (p(a) + p(an) + p(the)),
    ``mean_p_neighbours`` (mass on the target's ``neighbours_k`` nearest words in L);
    ``target_entropy`` of ỹ at the run's τ beside ``uniform_entropy`` = log |V| (nats);
    ``logit_std``, ``target_logit_std``, ``logit_target_corr``: W h against Lᵀu (Sec. 4);
    ``phrases``: the top-10 next words after the paper's PTB phrases (Sec. 6.4)."""

    __test__: ClassVar[bool] = False  # not a pytest class, despite its name
    OPTIONAL_BEFORE: ClassVar[dict[str, int]] = dict.fromkeys(
        ("target_entropy", "uniform_entropy", "logit_std", "target_logit_std",
         "logit_target_corr", "mean_p_articles", "mean_p_neighbours", "neighbours_k"), 2)

    run_id: str
    best_epoch: int
    phrases: list[dict[str, Any]]
    mean_p_unk: float
    mean_target_rank: float
    n_tokens: int
    target_entropy: float | None
    uniform_entropy: float | None
    logit_std: float | None
    target_logit_std: float | None
    logit_target_corr: float | None
    mean_p_articles: float | None
    mean_p_neighbours: float | None
    neighbours_k: int | None


@dataclass(frozen=True)
class DiagnosticsEntry(Record):
    """One ``lmtie diagnose`` measurement of a checkpoint (validation set; see
    :func:`lmtie.diagnose.diagnose`): perplexity by batch size (keys are batch sizes as
    text), with the state reset, and ``batch1`` (:func:`lmtie.diagnose.summarise`)."""

    epoch: int
    checkpoint: str
    valid_ppl_by_batch: dict[str, float]
    valid_ppl_state_reset: float
    batch1: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:  # nested in Diagnostics: no version of its own
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Diagnostics(Record):
    """``diagnostics.json``: the run's :class:`DiagnosticsEntry` list, one per epoch."""

    run_id: str
    entries: list[DiagnosticsEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "entries": [e.to_dict() for e in self.entries],
                "schema_version": self.VERSION}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | Path = "a record") -> Diagnostics:
        record = super().from_dict(values, where)
        return dataclasses.replace(record, entries=[
            DiagnosticsEntry.from_dict(e, where) for e in record.entries])


@dataclass(frozen=True)
class Figure1Row(Record):
    """One Sec. 6.2 run (:func:`lmtie.figure1.train_point`). ``final_loss`` (last epoch's
    J^tot per token), ``final_ce``, ``final_aug_kl`` (nats per token; J^aug unscaled, None at
    β = 0); distances in [0, 1] (``initial_distance`` before training; per epoch: plain and
    centred, :func:`lmtie.spans.centred_subspace_distance`); ``final_residual``
    (:func:`lmtie.spans.projection_residual`, also per epoch); ``wall_s`` seconds; ``setup``:
    the :class:`lmtie.figure1.Figure1Setup` fields; ``converged``: stopped by
    :class:`lmtie.figure1.Convergence` after ``lr_halvings`` halvings (else at the cap); at
    the end, the hidden states' span and W's sine along each of its directions
    (:func:`lmtie.spans.hidden_span`) and ``least_squares_distance``, the distance of W's end
    point under J^aug (:func:`lmtie.spans.least_squares_w`; None at β = 0); at β = 1 (else
    None), W taken to the minimum of eq. 6.1 for the trained h and Lᵀ
    (:func:`lmtie.optimum.minimise_w`):
    eq. 6.1 per token over the slice before (``slice_loss``) and after (``optimum_loss``),
    the distance and projection residual of that W, the gradient left (relative), the
    L-BFGS iterations and whether it converged. Version 1: ``centred_distance_per_epoch`` may
    be missing (read as []); versions 1–2 lack the fields from ``residual_per_epoch`` on,
    version 3 those from ``slice_loss`` on (empty lists and None)."""

    VERSION: ClassVar[int] = 4

    beta: float
    tau: float
    seed: int
    slice_start: int
    epochs: int
    final_loss: float
    final_ce: float
    final_aug_kl: float | None
    initial_distance: float
    final_distance: float
    final_residual: float
    wall_s: float
    distance_per_epoch: list[float]
    centred_distance_per_epoch: list[float]
    loss_per_epoch: list[float]
    setup: dict[str, Any]
    residual_per_epoch: list[float] = field(default_factory=list)
    converged: bool | None = None
    lr_halvings: int | None = None
    hidden_singular_values: list[float] = field(default_factory=list)
    hidden_effective_rank: float | None = None
    sine_by_hidden_direction: list[float] = field(default_factory=list)
    least_squares_distance: float | None = None
    slice_loss: float | None = None
    optimum_loss: float | None = None
    optimum_distance: float | None = None
    optimum_residual: float | None = None
    optimum_gradient: float | None = None
    optimum_iterations: int | None = None
    optimum_converged: bool | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str | Path = "a record") -> Figure1Row:
        values = dict(values)
        if values.get("schema_version", LEGACY) < 2:
            values.setdefault("centred_distance_per_epoch", [])
        return super().from_dict(values, where)


def write_metrics(run_dir: str | Path, rows: list[EpochRow]) -> None:
    """``metrics.jsonl``, rewritten whole and atomically."""
    atomic.write_jsonl(Path(run_dir) / METRICS, [r.to_dict() for r in rows])


def read_metrics(run_dir: str | Path) -> list[EpochRow]:
    """The rows of ``metrics.jsonl``. Raises: FileNotFoundError; ValueError (corrupt line,
    :class:`SchemaError`), naming the file and line."""
    path = Path(run_dir) / METRICS
    return [EpochRow.from_dict(r, f"{path}:{i}") for i, r in enumerate(atomic.read_jsonl(path), 1)]


def write_final(run_dir: str | Path, final: FinalRecord) -> None:
    atomic.write_json(Path(run_dir) / FINAL, final.to_dict())


def read_final(run_dir: str | Path) -> FinalRecord:
    """Raises: FileNotFoundError; ValueError (corrupt, :class:`SchemaError`)."""
    path = Path(run_dir) / FINAL
    return FinalRecord.from_dict(atomic.read_json(path), path)


def test_statistics_path(run_dir: str | Path) -> Path:
    """Where a run's :class:`TestStatistics` are: ``test_statistics.json``, or the version-1
    ``predictions.json`` when only that exists."""
    path = Path(run_dir) / TEST_STATISTICS
    legacy = Path(run_dir) / LEGACY_TEST_STATISTICS
    return legacy if legacy.is_file() and not path.is_file() else path


def write_test_statistics(run_dir: str | Path, statistics: TestStatistics) -> None:
    """``test_statistics.json``; a version-1 ``predictions.json`` beside it is removed."""
    atomic.write_json(Path(run_dir) / TEST_STATISTICS, statistics.to_dict())
    (Path(run_dir) / LEGACY_TEST_STATISTICS).unlink(missing_ok=True)


def read_test_statistics(run_dir: str | Path) -> TestStatistics:
    """Raises: FileNotFoundError; ValueError (corrupt, :class:`SchemaError`)."""
    path = test_statistics_path(run_dir)
    return TestStatistics.from_dict(atomic.read_json(path), path)


def read_diagnostics(run_dir: str | Path, run_id: str) -> Diagnostics:
    """The run's diagnostics (none yet: an empty :class:`Diagnostics`)."""
    path = Path(run_dir) / DIAGNOSTICS
    if not path.is_file():
        return Diagnostics(run_id)
    return Diagnostics.from_dict(atomic.read_json(path), path)


def write_diagnostics(run_dir: str | Path, diagnostics: Diagnostics) -> None:
    atomic.write_json(Path(run_dir) / DIAGNOSTICS, diagnostics.to_dict())


def figure1_path(results_dir: str | Path, sweep: str) -> Path:
    """A sweep's table under ``results_dir``: ``subspace/runs.jsonl`` (Figure 1a, 1b, both)
    or ``subspace/convergence.jsonl`` (its own budget); version 1: ``.csv``."""
    return ResultsDir(results_dir).subspace("convergence" if sweep == "convergence" else "runs")


def point_of(row: Figure1Row) -> tuple[float, float]:
    """(β, τ) of a row, rounded to compare with the points of :data:`lmtie.config.SWEEPS`."""
    return round(float(row.beta), 6), round(float(row.tau), 6)


def write_figure1_rows(path: str | Path, rows: list[Figure1Row]) -> None:
    """A Figure 1 table (JSON lines, one run each), rewritten whole and atomically; the
    version-1 CSV it migrates (same name, ``.csv``) is removed."""
    atomic.write_jsonl(Path(path), [r.to_dict() for r in rows])
    Path(path).with_suffix(".csv").unlink(missing_ok=True)


def read_figure1_rows(path: str | Path) -> list[Figure1Row]:
    """A Figure 1 table: ``path`` (``.jsonl``), else the version-1 CSV beside it (lists and
    the setup as JSON text in cells, ``nan`` for no J^aug); [] when neither exists.

    Raises: ValueError on a malformed file (names it and the line)."""
    path = Path(path)
    if path.is_file():
        return [Figure1Row.from_dict(r, f"{path}:{i}")
                for i, r in enumerate(atomic.read_jsonl(path), 1)]
    legacy = path.with_suffix(".csv")
    return _read_legacy_csv(legacy) if legacy.is_file() else []


def _read_legacy_csv(path: Path) -> list[Figure1Row]:
    import csv
    import io
    import json

    rows = []
    text = path.read_text(encoding="utf-8")
    for number, cells in enumerate(csv.DictReader(io.StringIO(text)), 2):
        try:
            values: dict[str, Any] = {
                k: json.loads(v) if k.endswith("_per_epoch") or k == "setup"
                else int(v) if k in ("seed", "slice_start", "epochs") else float(v)
                for k, v in cells.items()}
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        if math.isnan(values["final_aug_kl"]):  # nan: no J^aug (β = 0)
            values["final_aug_kl"] = None
        rows.append(Figure1Row.from_dict(values, f"{path}:{number}"))
    return rows
