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

__all__ = ["GIIPMetric", "FastSettings", "fast_settings", "COARSE_SETTINGS", "SHARP_SETTINGS", "COARSE_LADDER",
           "SearchReport", "refine_mask"]

# The default path of transform (and of every integration): every distance from a coarse search
# (band limit capped at l_max, the best `candidates` local maxima among the `pool` largest grid
# values per parity, `max_iter` Newton steps; the compiled kernel of kernels/fused.py on the CPU:
# upper bounds, exact or nearly so for most pairs), then the exact search for every reference whose
# coarse distance is within `margin` of the row's coarse minimum (at least the `refine` nearest).
# Which coarse search a map uses is measured on the map itself when it is built (calibration.py:
# leave-one-out rows of its training environments against its own exact distance matrix), from the
# cheapest rung of COARSE_LADDER up, or the exhaustive exact rows where no rung meets the accuracy
# contract. The cheapest rung is the one measured on NiNb (benchmarks/RESULTS.md, "default path";
# 300 NiNb atoms of another frame against 300 and 2,000 references): one start per parity (band
# limit 6 or 7) puts the exact nearest 0.1-0.37 atoms of difference above the coarse minimum for
# 1-2% of the atoms, which a margin of 0.3 still leaves at 99.67% exact nearest distances while
# refining 9 references per atom; two starts per parity at band limit 7 (half the speed) put the
# exact nearest at the coarse minimum for every atom, and the margin 0.05 refines 1.5 references
# per atom on average. The band limit 7 is far below what sharp Gaussians of few-atom environments
# need (32 for sigma 0.3 A at 3 A): the higher rungs keep the exact search's band limit and search
# more starts (benchmarks/default_vs_exact_small_envs.py).


class FastSettings(NamedTuple):
    l_max: int | None  # band-limit cap of the grid (None: the exact search's band limit)
    candidates: int
    max_iter: int
    pool: int
    refine: int  # nearest of each row always recomputed by the exact search
    margin: float = 0.0  # and every reference whose coarse distance is within this of the row's minimum
    window: float = 0.0  # starts this far below the pair's best grid value are not polished (SearchProblem)


# The cheapest rung also leaves unpolished the starts whose grid value lies more than 0.05 (self_a +
# self_b) / 2 below the pair's best (benchmarks/RESULTS.md, "Issue 16: the coarse kernel"; 150 NiNb
# atoms against 2,000 references: 1.09x the speed of polishing every start, mean coarse error 0.0004
# against 0.0003, no row whose coarse minimum is not the exact nearest; 0.04 showed 5 near misses in
# the 400 calibration rows of that map, above the 1 % allowed); the rung after it polishes every start.
COARSE_SETTINGS = FastSettings(l_max=7, candidates=2, max_iter=2, pool=8, refine=1, margin=0.05, window=0.05)

# The last rung, for sharp Gaussians with many neighbours: a grid capped at band limit 12 (it only
# locates basins; the Newton steps are on the true function), 16 starts per parity among its 64
# largest values, 3 Newton steps. Measured on a Kob-Andersen map (200 A-centred first shells within
# 1.5, vector species, sigma 0.2: the exact band limit is 23; benchmarks/RESULTS.md, "Issue 16: the
# Kob-Andersen map off the exhaustive search"): the rungs at the exact band limit cost as much as
# the exact search there and still left far pairs up to 0.3 above exact (coordinates off by 3.7 %
# of their range), where the smoother grid with more starts finds the exact value of every near
# pair (10 per row), coordinates within 0.9 %, at 3-4 times the exact search's speed. On a map
# whose exact band limit is at most 12 (NiNb) the cap changes nothing and the rung is the most
# thorough of the ladder.
SHARP_SETTINGS = FastSettings(l_max=12, candidates=16, max_iter=3, pool=64, refine=1, margin=0.05)

# the coarse searches a map's calibration tries, cheapest first (calibration.py)
COARSE_LADDER = (
    COARSE_SETTINGS,
    COARSE_SETTINGS._replace(window=0.0),
    FastSettings(l_max=None, candidates=4, max_iter=3, pool=16, refine=1, margin=0.05),
    FastSettings(l_max=None, candidates=6, max_iter=4, pool=32, refine=1, margin=0.05),
    SHARP_SETTINGS,
)


def fast_settings(n_train: int | None = None) -> FastSettings:
    """The cheapest coarse search of the default path (the same at every reference size; a map
    uses the rung its calibration chose, :attr:`ReferenceMap.default_path`; ``n_train`` is accepted
    for compatibility)."""
    return COARSE_SETTINGS


def refine_mask(rows: np.ndarray, fs: FastSettings) -> np.ndarray:
    """Which coarse distances of ``rows`` the default path recomputes exactly: the ``fs.refine``
    nearest of each row and every distance within ``fs.margin`` of the row's minimum."""
    nA, nB = rows.shape
    k = int(min(max(int(fs.refine), 1), nB))
    todo = rows <= rows.min(1)[:, None] + fs.margin
    if k < nB:
        near = np.argpartition(rows, k - 1, axis=1)[:, :k]
        todo[np.repeat(np.arange(nA), k), near.reshape(-1)] = True
    else:
        todo[:] = True
    return todo


@dataclass
class SearchReport:
    """What the default path did, accumulated over calls: ``atoms`` mapped, ``pairs`` searched
    coarsely, ``refined_pairs`` recomputed exactly, ``refined_atoms`` (atoms with more than their
    coarse nearest refined: a second reference within the margin), ``confirmed`` (atoms whose
    nearest reference after refinement is the coarse search's nearest, confirmed by the exact
    search), ``exact_atoms`` (atoms of exhaustive exact rows; ``calibrated_exact`` of them because the map's
    calibration chose the exhaustive search as its default path), ``soap_atoms`` (atoms mapped by the
    SOAP metric, which has no search)."""

    atoms: int = 0
    pairs: int = 0
    refined_pairs: int = 0
    refined_atoms: int = 0
    confirmed: int = 0
    exact_atoms: int = 0
    calibrated_exact: int = 0
    soap_atoms: int = 0

    def add(self, other: "SearchReport") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def line(self) -> str:
        if self.soap_atoms:
            return f"{self.soap_atoms} atoms by SOAP distances (power spectra, no rotation search)"
        if self.exact_atoms:
            why = (" (this map's calibration found no coarse search within the accuracy contract)"
                   if self.calibrated_exact else "")
            return f"{self.exact_atoms} atoms by the exhaustive exact search{why}"
        return (f"{self.atoms} atoms: {self.refined_atoms} refined beyond their coarse nearest reference "
                f"({self.refined_pairs} exact searches), {self.confirmed} nearest references confirmed by the "
                "exact search")


@dataclass(frozen=True)
class GIIPMetric:
    """The GIIP distance of a reference map: Gaussian width ``sigma``, orientation ``group`` ("O3",
    "SO3", "O2", "SO2" or None), the rotation search's :class:`~giip_plugin.kernels.SearchSettings`
    and the default path's ``coarse`` search (a :class:`FastSettings`; ``None``: the default path
    is the exhaustive exact search, as a map's calibration decides where no coarse search meets the
    accuracy contract)."""

    sigma: float
    group: str | None
    search_settings: object = None
    coarse: FastSettings | None = COARSE_SETTINGS

    name = "giip"

    def settings(self):
        from ..kernels import SearchSettings

        return self.search_settings or SearchSettings()

    def engine(self, envs: EnvironmentSet, training: EnvironmentSet, *, device=None, dtype=None,
               coarse: bool | FastSettings = False):
        """A :class:`~giip_plugin.kernels.DistanceEngine` between ``envs`` (side A) and ``training``
        (side B) (``coarse=True``: the coarse search of this metric's default path, whose distances
        are upper bounds; a :class:`FastSettings`: that coarse search)."""
        from ..kernels import DistanceEngine

        settings, extra = self.settings(), {}
        if coarse is not False:
            fs = coarse if isinstance(coarse, FastSettings) else (self.coarse or COARSE_SETTINGS)
            settings = replace(settings, candidates=fs.candidates, max_iter=fs.max_iter)
            extra = {"l_max": fs.l_max, "grid_pool": fs.pool, "grid_window": fs.window}
        return DistanceEngine(envs, training, sigma=self.sigma, group=self.group, device=device,
                              dtype=dtype, settings=settings, **extra)

    def pairwise(self, training: EnvironmentSet, **compute) -> np.ndarray:
        """The training distance matrix, ``(n, n)``, in checkpointed blocks
        (:func:`~giip_plugin.reference.training.training_distance_matrix`; ``compute``: its
        ``checkpoint``, ``restart``, ``scheduler``, ``block_size``, ``n_workers``, ``device``,
        ``progress``, ``log``, ``compiled``)."""
        from .training import training_distance_matrix

        return training_distance_matrix(training, self.sigma, self.group, settings=self.search_settings, **compute)

    def coarse_rows(self, envs: EnvironmentSet, training: EnvironmentSet, fs: FastSettings, *, device=None,
                    progress=None) -> np.ndarray:
        """Coarse distances (upper bounds) of every environment of ``envs`` to every training
        environment with the coarse search ``fs``, ``(n, n_train)``."""
        from ..kernels import fused

        coarse = self.engine(envs, training, device=device, coarse=fs)
        if coarse.compiled:  # the coarse search's own compiled mode (fixed Newton steps)
            return fused.coarse_distance_rows(coarse, progress=progress)
        nA, nB = len(envs), len(training)
        ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
        return coarse.distances(ia, ib, progress=progress).reshape(nA, nB)

    def rows(self, envs: EnvironmentSet, training: EnvironmentSet, *, progress=None, device=None,
             exact: bool = False, report: SearchReport | None = None) -> np.ndarray:
        """Distances of each environment of ``envs`` to every training environment, ``(n, n_train)``.

        Default: every distance from the coarse search :attr:`coarse` (an upper bound, exact for
        most pairs), then the exact search for the nearest references of each row
        (:func:`refine_mask`: the coarse nearest and every reference within the margin of it). The
        nearest training environment and its distance are exact whenever the exact nearest is among
        those (every atom in the measurements, see above). ``exact=True``, or ``coarse=None``: the
        exhaustive exact rows. ``report``: a :class:`SearchReport` to add this call's figures to.
        """
        nA, nB = len(envs), len(training)
        rep = SearchReport()
        fs = self.coarse
        if exact or fs is None or nA == 0 or nB == 0:
            ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
            out = self.engine(envs, training, device=device).distances(ia, ib, progress=progress).reshape(nA, nB)
            rep.exact_atoms = nA
            rep.calibrated_exact = nA if (fs is None and not exact) else 0
            if report is not None:
                report.add(rep)
            return out
        rows = self.coarse_rows(envs, training, fs, device=device, progress=progress)
        first = rows.argmin(1)
        todo = refine_mask(rows, fs)
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
