"""Atomic writes and strict JSON reads: a reader sees the old or the new file, never a torn
one, and NaN/Infinity (which lmtie never writes) are refused on both sides."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
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


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a crash never leaves a torn file."""
    with replacing(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


class _NonFinite(ValueError):
    """NaN or Infinity in a JSON file (``json.loads`` accepts them; lmtie never writes them)."""


def _finite_only(constant: str) -> Any:
    """``json.loads``'s hook for NaN/Infinity: run files hold finite numbers only."""
    raise _NonFinite(constant)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf are refused: they are bugs here)."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically write ``rows`` as JSON lines (the whole file, so it is never torn)."""
    write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))


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
