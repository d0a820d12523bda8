"""Run directories and checkpoints: atomic writes, environment record, safe loading.

A run dir (``results/runs/<run_id>/``) holds small JSON files that are committed; checkpoints
(``*.pt``) live in a separate directory outside the git tree and are never committed.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

DEFAULT_CHECKPOINT_ROOT = Path("~/.cache/lmtie/checkpoints")
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path ``.<name>.<random>.tmp`` beside ``path``; on success it replaces
    ``path`` atomically (``os.replace``), on any error it is removed: readers see the old or
    the new file, never a torn one. A process killed in between leaves the temporary file:
    :func:`remove_orphans` clears it on the next start.

    Raises:
        OSError: ``errno.ENOSPC`` says "no space left on <folder>" (``path`` is unchanged).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on {path.parent}: {path.name} was "
                          "not written (the previous version is unchanged)") from err
        raise


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that writes killed midway left in
    ``folder``; returns them. Call it only while holding the folder's lock (:mod:`lmtie.lock`):
    a living writer's temporary file looks the same. Raises: nothing for a missing folder."""
    orphans = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a crash never leaves a torn file."""
    with _atomic(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


class _NonFinite(ValueError):
    """NaN or Infinity in a JSON file (``json.loads`` accepts them; lmtie never writes them)."""


def _finite_only(constant: str) -> Any:
    """``json.loads``'s hook for NaN/Infinity: run files hold finite numbers only."""
    raise _NonFinite(constant)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf are refused: they are bugs here)."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write ``rows`` as JSON lines (the whole file, so it is never torn)."""
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    """Read a JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON, or holds NaN/Infinity, which lmtie never
            writes (names the file and says to re-run).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_finite_only)
    except _NonFinite as err:
        raise ValueError(f"{path} holds {err} where a number belongs, which lmtie never "
                         "writes (the file was edited or corrupted); re-run the command that "
                         "writes it") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and re-run the "
                         "command that writes it") from err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file such as ``metrics.jsonl``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not valid JSON or holds NaN/Infinity (names the file and line).
    """
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line, parse_constant=_finite_only))
            except _NonFinite as err:
                raise ValueError(f"{path}:{number} holds {err} where a number belongs, which "
                                 "lmtie never writes; re-run the command that writes it"
                                 ) from None
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON ({err})") from err
    return rows


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically ``torch.save`` ``payload`` (tensors, dicts, lists, numbers, strings only).

    Raises:
        OSError: ``errno.ENOSPC`` "no space left on <folder>"; the old file is kept. (Saved
            through a Python file object: torch's own writer reports a full disk as an
            unspecific RuntimeError.)
    """
    with _atomic(Path(path)) as tmp, open(tmp, "wb") as file:
        torch.save(payload, file)


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("config", "epoch", "model")
                    ) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code runs), on the CPU.

    Args:
        keys: entries the checkpoint must hold (``last.pt`` also holds the optimizer, the
            dropout generator and the history).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is truncated or corrupt, holds Python objects a checkpoint never
            holds, or lacks ``keys`` (names the file and what to do; nothing is changed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (lmtie train ...)")
    fix = (f"nothing was changed. Move {path} away, then point --checkpoint-dir at another "
           "copy of the run's checkpoints, or start the run again (lmtie train ... --force)")
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
