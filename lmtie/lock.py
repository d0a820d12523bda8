"""One writer per run: an operating-system lock in every folder a command writes, and who holds it.

``hold(folder, label)`` takes ``<folder>/.lmtie.lock`` with the maintained ``filelock`` package
(``flock`` on POSIX, ``msvcrt`` on Windows) and keeps it until the block ends. The operating
system drops such a lock when its process ends, however it ends (``kill -9`` included), so a
killed run never leaves its folder locked. While it holds the lock, the process describes
itself (pid, host, command, since when) in the sidecar ``.lmtie.lock.json``, so that a refused
process can name the holder. Taking the lock also proves the folder writable, before any work.

This module imports no torch: a test can hold a lock from a bare subprocess and kill it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

LOCK_NAME = ".lmtie.lock"
HOLDER_NAME = ".lmtie.lock.json"
LOCK_FILES = (LOCK_NAME, HOLDER_NAME)  # never deleted by --force: the lock must stay one file


class RunLockedError(RuntimeError):
    """Another living process holds the lock of a folder this command would write."""


def holder(folder: Path) -> str:
    """Who holds ``folder``'s lock, from its sidecar: ``"pid 123 on host h (lmtie train ...,
    since 2026-12-03T07:01:00Z)"``, or a sentence saying the holder did not describe itself.
    Raises: nothing."""
    try:
        info = json.loads((Path(folder) / HOLDER_NAME).read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on host {info['host']} ({info['command']}, since "
                f"{info['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not described itself yet"


@contextmanager
def hold(folder: str | Path, label: str) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing) for the duration of the block.

    Args:
        label: how messages name the folder, e.g. ``"run dir (--results-dir)"``.

    Raises:
        RunLockedError: another process holds it (names the holder, says what to do).
        ValueError: ``folder`` cannot be created or written (names it and the OS's reason).
    """
    folder = Path(folder)
    lock = filelock.FileLock(folder / LOCK_NAME, timeout=0)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        _describe_self(folder)
    except filelock.Timeout:
        raise RunLockedError(
            f"the {label} {folder} is in use by {holder(folder)}; nothing was changed. Wait "
            "for that command to end, or stop it (kill the pid; a killed run goes on from its "
            "last epoch: lmtie train with --resume, lmtie subspace as it is)") from None
    except OSError as err:
        lock.release()
        raise ValueError(f"cannot write to the {label} {folder} ({err.strerror or err}); "
                         "nothing was changed: choose another folder or make it writable"
                         ) from err
    try:
        yield
    finally:
        (folder / HOLDER_NAME).unlink(missing_ok=True)
        lock.release()


def _describe_self(folder: Path) -> None:
    """Write this process's pid, host, command and start time to the sidecar (atomically)."""
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = folder / f".{HOLDER_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    os.replace(tmp, folder / HOLDER_NAME)
