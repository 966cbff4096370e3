"""Smooth radial cutoff of neighbour weights.

``f(r) = 1`` for ``r <= r_inner``, a cubic spline falling to 0 at ``r_outer`` with zero slope at
both ends (``(1 - t)^2 (1 + 2 t)`` with ``t = (r - r_inner) / (r_outer - r_inner)``), and 0 beyond.
The weights, and hence the GIIP distance, are continuous and once differentiable in the positions.
"""
from __future__ import annotations

import numpy as np


def check_cutoffs(r_inner: float, r_outer: float) -> None:
    """Raise ``ValueError`` unless ``0 <= r_inner < r_outer`` are finite numbers."""
    if not (np.isfinite(r_inner) and np.isfinite(r_outer)):
        raise ValueError(f"cutoffs must be finite numbers, got r_inner={r_inner}, r_outer={r_outer}")
    if r_inner < 0:
        raise ValueError(f"r_inner must be >= 0, got {r_inner}")
    if not r_inner < r_outer:
        raise ValueError(
            f"r_inner ({r_inner}) must be smaller than r_outer ({r_outer}): the weight falls "
            "smoothly from 1 at r_inner to 0 at r_outer"
        )


def smooth_cutoff(r, r_inner: float, r_outer: float) -> np.ndarray:
    """Cutoff weight ``f(r)`` for an array of distances."""
    check_cutoffs(r_inner, r_outer)
    r = np.asarray(r, dtype=float)
    t = np.clip((r - r_inner) / (r_outer - r_inner), 0.0, 1.0)
    return (1.0 - t) ** 2 * (1.0 + 2.0 * t)
