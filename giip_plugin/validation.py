"""Input checks shared by every stage (environments, kernels, reference, command line): clear errors
instead of silent wrong answers. Imports nothing heavy."""
from __future__ import annotations

import re

import numpy as np

GROUPS = ("O3", "SO3", "O2", "SO2", None)


def check_environment(pos, w, name: str = "environment"):
    """Return ``pos`` as ``(n, d)`` float array and ``w`` as ``(n, channels)``; raise on bad input."""
    pos = np.asarray(pos, dtype=float)
    if pos.ndim == 1 and pos.size == 0:
        pos = pos.reshape(0, 3)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"{name}: positions must have shape (n, 2) or (n, 3), got {pos.shape}")
    w = np.asarray(w, dtype=float)
    if w.ndim == 1:
        w = w[:, None]
    if w.ndim != 2 or w.shape[0] != pos.shape[0]:
        raise ValueError(
            f"{name}: weights must have shape (n,) or (n, channels) with n = {pos.shape[0]} "
            f"neighbours, got {w.shape}"
        )
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{name}: positions contain NaN or infinite values")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name}: weights contain NaN or infinite values")
    return pos, w


def check_sigma(sigma) -> float:
    s = float(sigma)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a positive number (the Gaussian width), got {sigma}")
    return s


def check_group(group, dim: int):
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; choose one of 'O3', 'SO3', 'O2', 'SO2' or None")
    if group is not None and int(group[-1]) != dim:
        raise ValueError(f"group {group!r} does not act on {dim}D environments")
    return group


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|auto)$")


def check_device(device):
    """``None``, ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (or a ``torch.device``); a clear
    ``ValueError`` for anything else. Checks the spelling only (not whether a GPU is there), and
    imports nothing heavy, so command lines can check it before reading any input."""
    if device is None or not isinstance(device, str):
        return device
    if not _DEVICE.match(device.strip()):
        raise ValueError(f"unknown compute device {device!r}; use 'cpu', 'cuda' or 'cuda:N' (or leave it unset)")
    return device.strip()
