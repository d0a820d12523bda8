"""Run identity: the fingerprint of what makes a run's weights, the checkpoint folder it keys,
and the checks that keep one run's files and checkpoints from mixing with another's.

    fingerprint = sha256 of the canonical JSON of
                  {"config": Config.to_dict()          every setting of the run (renamed
                                                       fields under their first name; those
                                                       added later left out at their old
                                                       value),
                   "math_version": MATH_VERSION,       the training math of this code,
                   "corpus_sha256": {split: sha256}}   the corpus files it reads
    checkpoints   ~/.cache/lmtie/checkpoints/<run_id>-<first 12 hex digits>/{last,best}.pt

Two runs with one fingerprint compute the same numbers, so a checkpoint may continue any run
of its fingerprint (``env.json`` records every such start and its source). The git commit is
not part of it: a docstring edit must not orphan a week-long run, and ``env.json`` already
records the commit of every start. ``config.json`` and every checkpoint store the fingerprint.
Files from before it existed (``config.json`` without one, checkpoints in
``<root>/<run_id>/``) get the fingerprint of their stored config at training math version 1
with today's corpus; such a checkpoint folder is moved to its new name when its run goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmtie import atomic, lock, runs
from lmtie.config import RENAMED, Config
from lmtie.schema import EpochRow

MATH_VERSION = 1  # bump with every change of the code that changes the numbers of a run
_UNRECORDED_MATH_VERSION = 1  # the math of the files written before fingerprints existed
_SHORT = 12  # hex digits of the fingerprint in folder names and messages
BEST_KEYS = ("config", "epoch", "model")  # in best.pt (beside the fingerprint in new ones)
LAST_KEYS = (*BEST_KEYS, "optimizer", "generator", "history", "best", "wall_s")  # last.pt
# Settings added to Config after fingerprints existed, with the value every earlier run had:
# left out of the fingerprint at that value, so that adding a setting orphans no run.
_ADDED_SETTINGS = {"precision": "fp32"}


def fingerprint(config: Config, corpus_sha256: dict[str, str],
                math_version: int | None = None) -> str:
    """The run's identity: sha256 (64 hex digits) of its settings, training math and corpus.

    Args:
        corpus_sha256: split -> hex digest of the corpus file (``Corpus.sha256``).
        math_version: None: this code's ``MATH_VERSION``.
    """
    math_version = MATH_VERSION if math_version is None else math_version
    first_names = {new: old for old, new in RENAMED.items()}  # a rename orphans no run
    settings = {first_names.get(k, k): v for k, v in config.to_dict().items()
                if k not in _ADDED_SETTINGS or v != _ADDED_SETTINGS[k]}
    parts = {"config": settings, "math_version": math_version,
             "corpus_sha256": corpus_sha256}
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_fingerprint(stored_config: dict[str, Any], stored_fingerprint: str | None,
                         corpus_sha256: dict[str, str]) -> str:
    """The fingerprint a file records, or, for a file from before fingerprints, that of its
    stored config (defaults filled in: ``Config.from_dict``) at training math version 1 with
    ``corpus_sha256``.

    Raises:
        ValueError: the stored config is not a valid Config.
    """
    if stored_fingerprint is not None:
        return stored_fingerprint
    return fingerprint(Config.from_dict(stored_config), corpus_sha256, _UNRECORDED_MATH_VERSION)


def checkpoint_dir_for(config: Config, fp: str, root: str | Path | None = None) -> Path:
    """``<root>/<run_id>-<fingerprint[:12]>/`` (root: ``~/.cache/lmtie/checkpoints``), the
    run's default checkpoint folder. Raises: nothing."""
    root = Path(root or runs.DEFAULT_CHECKPOINT_ROOT).expanduser()
    return root / f"{config.run_id}-{fp[:_SHORT]}"


def _difference(config: Config, stored_config: dict[str, Any]) -> str:
    """What sets ``stored_config`` apart from ``config``, for a refusal message."""
    try:
        theirs = Config.from_dict(stored_config).to_dict()
    except ValueError:
        return "its settings are not an lmtie config"
    changed = [f"{k} {theirs[k]!r} instead of {v!r}" for k, v in config.to_dict().items()
               if theirs[k] != v]
    return ("it has " + ", ".join(changed) if changed
            else "same settings, so the corpus files or the training math version differ")


def load_own(path: Path, config: Config, fp: str, corpus_sha256: dict[str, str],
             keys: tuple[str, ...] = LAST_KEYS) -> dict[str, Any]:
    """Load the checkpoint at ``path``, refusing one of another fingerprint than ``fp``.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: corrupt, foreign (see :func:`lmtie.runs.load_checkpoint`), or of another
            run: names both fingerprints and what differs; nothing is changed.
    """
    payload = runs.load_checkpoint(path, keys)
    theirs = recorded_fingerprint(payload["config"], payload.get("fingerprint"), corpus_sha256)
    if theirs != fp:
        raise ValueError(
            f"{path} belongs to another run (fingerprint {theirs[:_SHORT]}; "
            f"{_difference(config, payload['config'])}) than {config.run_id} (fingerprint "
            f"{fp[:_SHORT]}); nothing was changed. Point --checkpoint-dir at this run's own "
            f"checkpoints (by default {checkpoint_dir_for(config, fp)})")
    return payload


def recorded_epochs(run_dir: Path, config: Config, fp: str, corpus_sha256: dict[str, str],
                    fix: str) -> int:
    """Epochs that ``run_dir``'s ``metrics.jsonl`` records (0 when it has none).

    Raises:
        ValueError: ``run_dir`` holds results (epochs or ``final.json``) of another
            fingerprint than ``fp``: names both, says what differs, then ``fix``.
    """
    metrics = run_dir / "metrics.jsonl"
    epochs = len(atomic.read_jsonl(metrics)) if metrics.is_file() else 0
    if not (run_dir / "config.json").is_file():
        return epochs
    stored = atomic.read_json(run_dir / "config.json")
    theirs = recorded_fingerprint(stored, stored.get("fingerprint"), corpus_sha256)
    if theirs != fp and (epochs or (run_dir / "final.json").is_file()):
        raise ValueError(
            f"{run_dir} holds {epochs} epoch(s) of a run with fingerprint {theirs[:_SHORT]} "
            f"({_difference(config, stored)}), not of this command's run (fingerprint "
            f"{fp[:_SHORT]}); nothing was changed. {fix}")
    return epochs


def adopt_unkeyed(ckpt_dir: Path, config: Config, fp: str,
                  corpus_sha256: dict[str, str]) -> Path | None:
    """Move this run's checkpoints from the folder of the layout before fingerprints
    (``<root>/<run_id>/``) into ``ckpt_dir`` (``<root>/<run_id>-<fingerprint[:12]>/``), when
    ``ckpt_dir`` has none and every ``*.pt`` there has this run's fingerprint. Returns the old
    folder (removed when left empty), or None when nothing was moved.

    Raises:
        ValueError: a checkpoint in the old folder is corrupt (names it).
    """
    old = ckpt_dir.parent / config.run_id
    if ckpt_dir.name != f"{config.run_id}-{fp[:_SHORT]}" or any(ckpt_dir.glob("*.pt")):
        return None
    found = sorted(old.glob("*.pt")) if old.is_dir() else []
    if not found:
        return None
    for path in found:
        payload = runs.load_checkpoint(path)
        if "fingerprint" in payload or recorded_fingerprint(
                payload["config"], None, corpus_sha256) != fp:
            return None
    for path in found:
        os.replace(path, ckpt_dir / path.name)
    with contextlib.suppress(OSError):
        old.rmdir()
    return old


@contextlib.contextmanager
def owned(run_dir: Path, ckpt_dir: Path,
          labels: tuple[str, str] = ("run dir", "checkpoint folder")) -> Iterator[None]:
    """Hold the locks of ``run_dir`` and ``ckpt_dir`` (:func:`lmtie.lock.hold`: one writer
    per run; both created if missing, so both are proven writable), after removing the
    temporary files that killed writes left in them. ``labels``: how messages name the two.

    Raises:
        lmtie.lock.RunLockedError: another process holds either (names it).
        ValueError: either cannot be created or written.
    """
    folders = dict(zip(labels, (Path(run_dir), Path(ckpt_dir)), strict=True))
    with contextlib.ExitStack() as stack:
        held: set[Path] = set()
        for label, folder in folders.items():
            if folder.resolve() not in held:
                stack.enter_context(lock.hold(folder, label))
                held.add(folder.resolve())
            for orphan in atomic.remove_orphans(folder):
                print(f"removed {orphan}: a write killed midway left it")
        yield


@dataclass(frozen=True)
class Start:
    """How a training begins: ``checkpoint``, the ``last.pt`` payload to continue from (None:
    from epoch 1), and ``source``, what ``env.json`` records about it (None: a fresh start;
    else ``{"checkpoint": path, "epoch": n}``, plus ``moved_from`` for an adopted folder)."""

    checkpoint: dict[str, Any] | None
    source: dict[str, Any] | None


def plan_start(config: Config, fp: str, corpus_sha256: dict[str, str], run_dir: Path,
               ckpt_dir: Path, *, resume: bool, force: bool) -> Start:
    """Decide how ``lmtie train`` begins, refusing whatever would lose or mix results. Call
    it inside :func:`owned`. Only ``force`` deletes (the run's files and checkpoints, never
    the lock).

    Raises:
        ValueError: (nothing changed) the run dir holds results of another fingerprint; it
            holds a run and neither ``resume`` nor ``force`` is set; the checkpoint folder
            holds this run's epochs and neither is set; ``resume`` finds no checkpoint while
            the run dir records epochs; the checkpoint is corrupt, foreign, of another
            fingerprint, or behind the run dir.
    """
    moved_from = adopt_unkeyed(ckpt_dir, config, fp, corpus_sha256)
    if force:
        for folder in (run_dir, ckpt_dir):
            for path in folder.iterdir():
                if path.name not in lock.LOCK_FILES:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        return Start(None, None)
    epochs = recorded_epochs(run_dir, config, fp, corpus_sha256,
                             "Give this run its own run_id (--suffix NAME) or --results-dir, "
                             "or replace that run with --force")
    last = ckpt_dir / "last.pt"
    checkpoint = load_own(last, config, fp, corpus_sha256) if last.is_file() else None
    if not resume:
        if (run_dir / "metrics.jsonl").exists():
            raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or "
                             "--force to start it again from scratch")
        if checkpoint is not None:
            raise ValueError(f"{last} holds epoch {checkpoint['epoch']} of this run (written "
                             "for another results folder?); pass --resume to continue from "
                             "it, or --force to start again from scratch")
        return Start(None, None)
    if checkpoint is None:
        if epochs or (run_dir / "final.json").is_file():
            raise ValueError(
                f"--resume: no checkpoint of {config.run_id} at {last}, but {run_dir} records "
                f"{epochs} epoch(s); nothing was changed. Point --checkpoint-dir at the folder "
                f"that holds its last.pt, or start the run over with --force (deletes "
                f"{run_dir}'s files)")
        return Start(None, None)
    if epochs > checkpoint["epoch"]:
        raise ValueError(
            f"{run_dir} records {epochs} epochs but {last} only {checkpoint['epoch']}: it is "
            "not the checkpoint these files were written from; nothing was changed. Point "
            "--checkpoint-dir at this run's own checkpoints, or start over with --force")
    source = {"checkpoint": str(last), "epoch": checkpoint["epoch"]}
    return Start(checkpoint, source if moved_from is None else
                 {**source, "moved_from": str(moved_from)})


def load_best(model: torch.nn.Module, path: Path, config: Config, fp: str,
              corpus_sha256: dict[str, str], run_dir: Path, history: list[EpochRow]) -> int:
    """Load ``best.pt`` at ``path`` into ``model`` and return its epoch, checked to be this
    run's best: its fingerprint ``fp``, and the epoch of the lowest validation perplexity in
    ``history`` (the run dir's ``metrics.jsonl`` rows).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: (nothing changed) as :func:`load_own`, or the checkpoint is not of the
            run dir's best epoch (another copy of the run wrote it).
    """
    best = load_own(path, config, fp, corpus_sha256, BEST_KEYS)
    valid = [row.valid_ppl for row in history]
    epoch = 1 + valid.index(min(valid)) if valid else 0
    if best["epoch"] != epoch:
        raise ValueError(
            f"{path}: the best checkpoint is from epoch {best['epoch']}, but {run_dir} records "
            f"its best validation perplexity at epoch {epoch} of {len(history)}: another copy "
            "of this run wrote it; nothing was changed. Point --checkpoint-dir at this run's "
            "own checkpoints, or resume this run (lmtie train ... --resume)")
    runs.load_state(model, best["model"], path)
    return epoch
