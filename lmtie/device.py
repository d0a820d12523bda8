"""The machine a run uses: CUDA or CPU, and glibc told to keep freed memory on the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

from lmtie.config import DEVICES


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda``.

    Raises:
        ValueError: unknown name, or ``cuda`` without a CUDA device.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is visible; use --device cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS after each step.

    Every training step allocates and frees (N, V) float tensors of ~28 MB (small PTB); glibc
    serves those with mmap and gives them back at once, so the kernel zeroes fresh pages on
    every step: 15% of a CPU step in system time on this project's 2-core machine. Raising
    the mmap and trim thresholds (``mallopt``) removes that. A no-op without glibc.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None)
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
        mallopt(m_mmap_threshold, 1 << 30)
        mallopt(m_trim_threshold, 1 << 31)


def prepare_device(device: str = "auto") -> torch.device:
    """:func:`resolve_device`, with glibc told to keep freed memory on the CPU
    (:func:`keep_freed_memory`): the machine set up for a training run.

    Raises:
        ValueError: as :func:`resolve_device`.
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    return dev
