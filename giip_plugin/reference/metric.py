"""The distance between environments, as one pluggable piece of the reference map.

A *metric* gives the training distance matrix (:meth:`GIIPMetric.pairwise`) and the rows of
distances from new environments to the training ones (:meth:`GIIPMetric.rows`); the reference
map (classes, diffusion map, Nystrom extension) works from those numbers whatever produced them.
:class:`GIIPMetric` is the orientation-invariant GIIP distance (design.md, section 2): the exact
rotation search, exhaustive, or the default path (coarse search for every pair, exact refinement of
the nearest).
Another metric (SOAP, say) provides the same two methods and its own file parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..environments import EnvironmentSet

__all__ = ["GIIPMetric", "FastSettings", "fast_settings", "COARSE_SETTINGS", "SearchReport"]

# The default path of transform (and of every integration): every distance from a coarse search
# (band limit capped at l_max, the best `candidates` local maxima among the `pool` largest grid
# values per parity, `max_iter` Newton steps; the compiled kernel of kernels/fused.py on the CPU:
# upper bounds, exact or nearly so for most pairs), then the exact search for every reference whose
# coarse distance is within `margin` of the row's coarse minimum (at least the `refine` nearest).
# Chosen by measurement against the exhaustive exact rows (benchmarks/RESULTS.md, "default path";
# 300 NiNb atoms of another frame against 300 and 2,000 references): one start per parity (band
# limit 6 or 7) puts the exact nearest 0.1-0.37 atoms of difference above the coarse minimum for
# 1-2% of the atoms, which a margin of 0.3 still leaves at 99.67% exact nearest distances while
# refining 9 references per atom; two starts per parity at band limit 7 (half the speed) put the
# exact nearest at the coarse minimum for every atom, and the margin 0.05 refines 1.5 references
# per atom on average.


class FastSettings(NamedTuple):
    l_max: int
    candidates: int
    max_iter: int
    pool: int
    refine: int  # nearest of each row always recomputed by the exact search
    margin: float = 0.0  # and every reference whose coarse distance is within this of the row's minimum


COARSE_SETTINGS = FastSettings(l_max=7, candidates=2, max_iter=2, pool=8, refine=1, margin=0.05)


def fast_settings(n_train: int | None = None) -> FastSettings:
    """Coarse-search and refinement settings of the default path (one setting for every reference
    size; ``n_train`` is accepted for compatibility)."""
    return COARSE_SETTINGS


@dataclass
class SearchReport:
    """What the default path did, accumulated over calls: ``atoms`` mapped, ``pairs`` searched
    coarsely, ``refined_pairs`` recomputed exactly, ``refined_atoms`` (atoms with more than their
    coarse nearest refined: a second reference within the margin), ``confirmed`` (atoms whose
    nearest reference after refinement is the coarse search's nearest, confirmed by the exact
    search), ``exact_atoms`` (atoms of exhaustive exact rows), ``soap_atoms`` (atoms mapped by the
    SOAP metric, which has no search)."""

    atoms: int = 0
    pairs: int = 0
    refined_pairs: int = 0
    refined_atoms: int = 0
    confirmed: int = 0
    exact_atoms: int = 0
    soap_atoms: int = 0

    def add(self, other: "SearchReport") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def line(self) -> str:
        if self.soap_atoms:
            return f"{self.soap_atoms} atoms by SOAP distances (power spectra, no rotation search)"
        if self.exact_atoms:
            return f"{self.exact_atoms} atoms by the exhaustive exact search"
        return (f"{self.atoms} atoms: {self.refined_atoms} refined beyond their coarse nearest reference "
                f"({self.refined_pairs} exact searches), {self.confirmed} nearest references confirmed by the "
                "exact search")


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
        (side B) (``coarse=True``: the coarse search of the default path, whose distances are upper
        bounds)."""
        from ..kernels import DistanceEngine

        settings, extra = self.settings(), {}
        if coarse:
            fs = COARSE_SETTINGS
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
             exact: bool = False, report: SearchReport | None = None) -> np.ndarray:
        """Distances of each environment of ``envs`` to every training environment, ``(n, n_train)``.

        Default: every distance from the coarse search (an upper bound, exact for most pairs), then
        the exact search for the nearest references of each row: the coarse nearest and every
        reference within :data:`COARSE_SETTINGS` ``.margin`` of it. The nearest training environment
        and its distance are exact whenever the exact nearest is among those (every atom in the
        measurements, see above). ``exact=True``: the exhaustive exact rows. ``report``: a
        :class:`SearchReport` to add this call's figures to.
        """
        nA, nB = len(envs), len(training)
        ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
        rep = SearchReport()
        if exact or nA == 0 or nB == 0:
            out = self.engine(envs, training, device=device).distances(ia, ib, progress=progress).reshape(nA, nB)
            rep.exact_atoms = nA
            if report is not None:
                report.add(rep)
            return out
        from ..kernels import fused

        fs = COARSE_SETTINGS
        coarse = self.engine(envs, training, device=device, coarse=True)
        if coarse.compiled:  # the coarse search's own compiled mode (fixed Newton steps)
            rows = fused.coarse_distance_rows(coarse, progress=progress)
        else:
            rows = coarse.distances(ia, ib, progress=progress).reshape(nA, nB)
        k = int(min(max(int(fs.refine), 1), nB))
        near = np.argpartition(rows, k - 1, axis=1)[:, :k] if k < nB else np.tile(np.arange(nB), (nA, 1))
        first = rows.argmin(1)
        todo = rows <= rows[np.arange(nA), first][:, None] + fs.margin
        todo[np.repeat(np.arange(nA), k), near.reshape(-1)] = True
        ra, rb = np.nonzero(todo)
        exact_d = self.engine(envs, training, device=device).distances(ra, rb, progress=progress)
        rows[ra, rb] = np.minimum(rows[ra, rb], exact_d)
        per_atom = todo.sum(1)
        rep.atoms, rep.pairs, rep.refined_pairs = nA, nA * nB, len(ra)
        rep.refined_atoms = int(np.sum(per_atom > 1))
        rep.confirmed = int(np.sum(rows.argmin(1) == first))
        if report is not None:
            report.add(rep)
        return rows
