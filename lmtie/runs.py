"""Run directories and checkpoints: atomic writes, environment record, safe loading.

A run dir (``results/runs/<run_id>/``) holds small JSON files that are committed; checkpoints
(``*.pt``) live in a separate directory outside the git tree and are never committed.
"""

from __future__ import annotations

import json
import os
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
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically
    (``os.replace``), on any error it is removed: readers see the old or the new file, never
    a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a crash never leaves a torn file."""
    with _atomic(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


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
        ValueError: the file is not valid JSON (names the file and says to re-run).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and re-run the "
                         "command that writes it") from err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file such as ``metrics.jsonl``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not valid JSON (names the file and line).
    """
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON ({err})") from err
    return rows


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically ``torch.save`` ``payload`` (tensors, dicts, lists, numbers, strings only)."""
    with _atomic(Path(path)) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code runs), on the CPU.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (lmtie train ...)")
    return torch.load(path, map_location="cpu", weights_only=True)


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
