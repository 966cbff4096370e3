"""Settings of the rotation search: a plain dataclass, importable without PyTorch."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SearchSettings"]


@dataclass
class SearchSettings:
    """Tuning of the rotation search (defaults are exact on the tests and benchmarks).

    candidates : local maxima of the grid polished per parity. 8: with 6, 5 of 200,000 NiNb pairs
        (100 atoms against 2,000 references) ended in a lower basin than the global maximum, by up to
        0.015 atoms of difference; with 8 none, for 9 % of the exact search's speed
        (benchmarks/RESULTS.md).
    oversample : grid refinement factor over the band limit.
    band_tol : relative size of the neglected harmonics that sets the band limit.
    """

    candidates: int = 8
    oversample: float = 1.0
    band_tol: float = 1e-4
    max_iter: int = 50

    def __post_init__(self):
        if int(self.candidates) < 1:
            raise ValueError("candidates must be >= 1")
        if not self.oversample >= 1.0:
            raise ValueError("oversample must be >= 1 (the grid must resolve the band limit)")
        if not 0 < self.band_tol < 1:
            raise ValueError("band_tol must be in (0, 1)")
