"""A run's files over its life: the start (``config.json``, ``env.json``, resuming from
``last.pt``), each epoch (checkpoints, then the ``metrics.jsonl`` row), and a divergence;
checkpoints saved atomically and loaded safely; the environment record.

A run dir (``results/runs/<run_id>/``) holds small JSON files that are committed (their
records: :mod:`lmtie.schema`); checkpoints (``*.pt``) live in a separate directory outside
the git tree and are never committed. Which checkpoint belongs to which run:
:mod:`lmtie.identity`.
"""

from __future__ import annotations

import errno
import math
import pickle
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmtie import schema
from lmtie.atomic import read_json, replacing, write_json

if TYPE_CHECKING:
    from lmtie.config import Config
    from lmtie.identity import Start
    from lmtie.model import RNNLM

DEFAULT_CHECKPOINT_ROOT = Path("~/.cache/lmtie/checkpoints")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically ``torch.save`` ``payload`` (tensors, dicts, lists, numbers, strings only).

    Raises:
        OSError: ``errno.ENOSPC`` "no space left on <folder>"; the old file is kept. (Saved
            through a Python file object: torch's own writer reports a full disk as an
            unspecific RuntimeError.)
    """
    with replacing(Path(path)) as tmp, open(tmp, "wb") as file:
        torch.save(payload, file)


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("config", "epoch", "model"),
                    fix: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code runs), on the CPU.

    Args:
        keys: entries the checkpoint must hold (``last.pt`` also holds the optimizer, the
            dropout generator and the history).
        fix: what the refusal message tells the user to do (None: a training's remedies).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is truncated or corrupt, holds Python objects a checkpoint never
            holds, or lacks ``keys`` (names the file and what to do; nothing is changed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (lmtie train ...)")
    fix = "nothing was changed. " + (fix or (
        f"Move {path} away, then point --checkpoint-dir at another copy of the run's "
        "checkpoints, or start the run again (lmtie train ... --force)"))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's advice (weights_only=False) would run its code
        raise ValueError(f"{path} is not an lmtie checkpoint: not a file of tensors and plain "
                         "data, the only kind lmtie loads (loading anything else could run "
                         f"code); {fix}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).split(". ")[0] or ("empty" if not path.stat().st_size
                                              else type(err).__name__)
        raise ValueError(f"{path} is truncated or corrupt ({reason}); {fix}") from None
    missing = [k for k in keys if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise ValueError(f"{path} is not an lmtie checkpoint (no {', '.join(missing)}); {fix}")
    return payload


def git_sha() -> str | None:
    """The current commit (with ``-dirty`` when the package's own files differ from it), or
    None outside git. Result files changing under ``results/`` (runs in progress) do not
    make it dirty: they are not the code that ran."""
    try:
        here = Path(__file__).parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "."], cwd=here, capture_output=True, text=True,
                               check=True).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """What ``env.json`` records: git sha, versions, device, the CPU's vector instruction set
    as torch uses it (``cpu_capability``, e.g. AVX2 or AVX512: kernels, and so the last bits
    of a run, differ between CPUs, and SGD amplifies them), threads, start time (UTC)."""
    return {
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    """``model.load_state_dict(state)``; a state of another shape names ``path``.

    Raises:
        ValueError: the weights in ``path`` do not fit ``model``.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit this model "
                         f"({str(err).splitlines()[-1].strip()}); nothing was changed") from None


@dataclass
class RunState:
    """Where a training run stands: the completed epochs' rows, the best epoch so far
    (``{"epoch", "valid_ppl"}``) and the wall time in seconds (training + validation)."""

    history: list[schema.EpochRow] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "valid_ppl": math.inf})
    wall_s: float = 0.0


def begin(run_dir: Path, ckpt_dir: Path, config: Config, fp: str, start: Start,
          device: torch.device, model: RNNLM, optimizer: torch.optim.Optimizer,
          generator: torch.Generator) -> RunState:
    """Start a run as :func:`lmtie.identity.plan_start` decided: load ``start``'s checkpoint
    into ``model``, ``optimizer`` and ``generator`` (when resuming), then write
    ``config.json`` (with the fingerprint ``fp``), ``env.json`` (this start; a resume is
    appended to the first start's ``resumes``) and ``metrics.jsonl`` as they stand.

    Raises:
        ValueError: the checkpoint's weights do not fit ``model``.
    """
    env = {**environment(device), "from_checkpoint": start.source}
    state = RunState()
    if start.checkpoint is not None:
        ckpt, last_path = start.checkpoint, ckpt_dir / "last.pt"
        load_state(model, ckpt["model"], last_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        state = RunState([schema.EpochRow.from_dict(r, last_path) for r in ckpt["history"]],
                         ckpt["best"], ckpt["wall_s"])
        print(f"{config.run_id}: continuing from {last_path} (epoch {len(state.history)})",
              flush=True)
        if (run_dir / "env.json").is_file():  # keep the first start's record
            first = read_json(run_dir / "env.json")
            env = {**first, "resumes": [*first.get("resumes", []), env]}
    write_json(run_dir / "config.json", {**config.to_dict(), "fingerprint": fp})
    write_json(run_dir / "env.json", env)
    schema.write_metrics(run_dir, state.history)
    return state


def save_epoch(run_dir: Path, ckpt_dir: Path, config: Config, fp: str, row: schema.EpochRow,
               state: RunState, model: RNNLM, optimizer: torch.optim.Optimizer,
               generator: torch.Generator) -> None:
    """Record a completed epoch: append ``row`` to ``state``; ``best.pt`` when its
    validation perplexity is the best so far, ``last.pt`` (everything a resume needs), then
    ``metrics.jsonl``, in that order, so the files never record an epoch the checkpoints lack.

    Raises:
        OSError: the disk is full ("...; the last good checkpoint <path> is kept: free space,
            then --resume"), or another write error.
    """
    state.history.append(row)
    saved = {"config": config.to_dict(), "fingerprint": fp, "epoch": row.epoch}
    last_path = ckpt_dir / "last.pt"
    try:
        if row.valid_ppl < state.best["valid_ppl"]:
            state.best = {"epoch": row.epoch, "valid_ppl": row.valid_ppl}
            save_checkpoint(ckpt_dir / "best.pt", {**saved, "model": model.state_dict()})
        save_checkpoint(last_path, {
            **saved, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "history": [r.to_dict() for r in state.history], "best": state.best,
            "wall_s": state.wall_s})
        schema.write_metrics(run_dir, state.history)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"{err.strerror}; the last good checkpoint "
                      f"{last_path} is kept: free space, then --resume") from err


def diverged(config: Config, epoch: int, state: RunState, ckpt_dir: Path, what: str
             ) -> FloatingPointError:
    """The error for a run whose loss or validation perplexity (``what``) became NaN/inf in
    ``epoch``: names the last good checkpoint and what to change."""
    done = len(state.history)
    kept = (f"the last good checkpoint is {ckpt_dir / 'last.pt'} (epoch {done})" if done
            else "no epoch completed, so there is no checkpoint")
    return FloatingPointError(
        f"{config.run_id} epoch {epoch}: {what}; {kept}. The same settings would diverge "
        "again (a run is deterministic): start a changed run, e.g. with another --seed, or a "
        "smaller --alpha or larger --tau")
