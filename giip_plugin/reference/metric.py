"""The distance between environments, as one pluggable piece of the reference map.

A *metric* gives the training distance matrix (:meth:`GIIPMetric.pairwise`) and the rows of
distances from new environments to the training ones (:meth:`GIIPMetric.rows`); the reference
map (classes, diffusion map, Nystrom extension) works from those numbers whatever produced them.
:class:`GIIPMetric` is the orientation-invariant GIIP distance (design.md, section 2): the exact
rotation search, or the fast path (coarse search for every pair, exact refinement of the nearest).
Another metric (SOAP, say) provides the same two methods and its own file parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..environments import EnvironmentSet

__all__ = ["GIIPMetric", "FastSettings", "fast_settings", "FAST_SETTINGS", "FAST_SETTINGS_LARGE",
           "FAST_LARGE_REFERENCE"]

# The fast path of transform(fast=True): every distance from a coarse search (band limit capped at
# l_max, the best `candidates` local maxima among the `pool` largest grid values per parity, at most
# `max_iter` Newton steps: upper bounds, exact or nearly so for most pairs), then the `refine`
# nearest of each row by the exact search. The coordinates average the coarse errors of a whole row
# (Nystrom), so large references tolerate a cheaper search; chosen by measurement against the
# exhaustive path (benchmarks/RESULTS.md, "fast path"; NiNb, 120 atoms, max coordinate error in % of
# the range): 3 starts per parity, 0.07-0.18% (60 to 2,000 references); 1 start per parity and a
# smaller pool, 0.76% with 1,000 references and 0.42% with 2,000 (0.84% on 500 other atoms), but
# beyond 1% for many atoms with 60.
# The large-reference search runs on the fused CPU kernel (kernels/fused.py) where it applies, at
# band limit 7: against the exhaustive rows of all 6,750 Ni centres of a NiNb frame (2,000
# references), band limit 6 left 3 atoms beyond 1% (max 1.71%, classes 99.73%), band limit 7 none
# (max 0.998%, classes 99.91%) for 20-30% more time. Its coarse rows put the exact nearest first
# for 98.9% of the atoms, so the 2 nearest are refined there, 4 with the few-start search of small
# references.
FAST_LARGE_REFERENCE = 1500


class FastSettings(NamedTuple):
    l_max: int
    candidates: int
    max_iter: int
    pool: int
    refine: int  # nearest of each row recomputed by the exact search


FAST_SETTINGS = FastSettings(l_max=6, candidates=3, max_iter=2, pool=12, refine=4)
FAST_SETTINGS_LARGE = FastSettings(l_max=7, candidates=1, max_iter=2, pool=8, refine=2)


def fast_settings(n_train: int) -> FastSettings:
    """Coarse-search settings of the fast path for a reference of ``n_train`` environments."""
    return FAST_SETTINGS_LARGE if int(n_train) >= FAST_LARGE_REFERENCE else FAST_SETTINGS




@dataclass(frozen=True)
class GIIPMetric:
    """The GIIP distance of a reference map: Gaussian width ``sigma``, orientation ``group`` ("O3",
    "SO3", "O2", "SO2" or None) and the rotation search's :class:`~giip_plugin.kernels.SearchSettings`."""

    sigma: float
    group: str | None
    search_settings: object = None

    name = "giip"

    def settings(self):
        from ..kernels import SearchSettings

        return self.search_settings or SearchSettings()

    def engine(self, envs: EnvironmentSet, training: EnvironmentSet, *, device=None, dtype=None,
               coarse: bool = False):
        """A :class:`~giip_plugin.kernels.DistanceEngine` between ``envs`` (side A) and ``training``
        (side B) (``coarse=True``: the coarse search of the fast path, whose distances are upper
        bounds)."""
        from ..kernels import DistanceEngine

        settings, extra = self.settings(), {}
        if coarse:
            fs = fast_settings(len(training))
            settings = replace(settings, candidates=fs.candidates, max_iter=fs.max_iter)
            extra = {"l_max": fs.l_max, "grid_pool": fs.pool}
        return DistanceEngine(envs, training, sigma=self.sigma, group=self.group, device=device,
                              dtype=dtype, settings=settings, **extra)

    def pairwise(self, training: EnvironmentSet, **compute) -> np.ndarray:
        """The training distance matrix, ``(n, n)``, in checkpointed blocks
        (:func:`~giip_plugin.reference.training.training_distance_matrix`; ``compute``: its
        ``checkpoint``, ``restart``, ``scheduler``, ``block_size``, ``n_workers``, ``device``,
        ``progress``, ``log``, ``compiled``)."""
        from .training import training_distance_matrix

        return training_distance_matrix(training, self.sigma, self.group, settings=self.search_settings, **compute)

    def rows(self, envs: EnvironmentSet, training: EnvironmentSet, *, progress=None, device=None,
             fast: bool = False, refine: int | None = None) -> np.ndarray:
        """Distances of each environment of ``envs`` to every training environment, ``(n, n_train)``.

        Exact by default. ``fast=True``: every distance from the coarse search (an upper bound,
        exact for most pairs), then the ``refine`` smallest of each row (default: that of
        :func:`fast_settings`) recomputed exactly, so the nearest training environment and its
        distance are exact whenever the exact nearest is among the coarse ``refine`` nearest.
        """
        nA, nB = len(envs), len(training)
        ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
        if not fast:
            return self.engine(envs, training, device=device).distances(ia, ib, progress=progress).reshape(nA, nB)
        from ..kernels import fused

        coarse = self.engine(envs, training, device=device, coarse=True)
        if fused.applies(coarse):  # the same search, compiled per pair (kernels/fused.py)
            rows = fused.coarse_distance_rows(coarse, progress=progress)
        else:
            rows = coarse.distances(ia, ib, progress=progress).reshape(nA, nB)
        if refine is None:
            refine = fast_settings(nB).refine
        k = int(min(max(int(refine), 0), nB))
        if k and nA:
            near = np.argpartition(rows, k - 1, axis=1)[:, :k] if k < nB else np.tile(np.arange(nB), (nA, 1))
            ra, rb = np.repeat(np.arange(nA), k), near.reshape(-1)
            exact = self.engine(envs, training, device=device).distances(ra, rb, progress=progress)
            rows[ra, rb] = np.minimum(rows[ra, rb], exact)
        return rows
