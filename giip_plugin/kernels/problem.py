"""The rotation search of pairs of environments, as a problem without device arrays.

:class:`SearchProblem` holds what every search of pairs ``(A[i], B[j])`` needs and what does not
depend on where it runs: the two environment sets, the Gaussian width, the group, the band limit
of the grid, the radial basis of the harmonic coefficients, the self overlaps, and which pairs
share no weight channel. The compiled search (:mod:`.fused`) runs on it directly, in numpy and C,
without importing PyTorch (a single pair in a fresh process: :func:`giip_plugin.distance`).
:class:`~giip_plugin.kernels.DistanceEngine` extends it with the tensors of the PyTorch search
(CPU or CUDA).
"""
from __future__ import annotations

import weakref

import numpy as np

from ..environments.environment_set import EnvironmentSet
from ..validation import check_group, check_sigma
from .overlap import self_overlap
from .radial import RadialBasis
from .settings import SearchSettings
from .special import band_limit

_SET_CACHE: dict = {}


def _set_cache(S) -> dict:
    """Per-set memo of derived arrays (padded arrays, self overlaps, harmonic coefficients, device
    tensors), so that searches built again on the same set (a reference's training set, batch
    after batch) reuse them. Sets are immutable (read-only arrays, fields that cannot be
    reassigned), so an entry cannot go stale; it goes when the set is garbage collected."""
    key = id(S)
    entry = _SET_CACHE.get(key)
    if entry is None:
        entry = _SET_CACHE[key] = {}
        weakref.finalize(S, _SET_CACHE.pop, key, None)
    return entry


def memo(S, key, make):
    """``make()``, computed once per set ``S`` and ``key`` (see :func:`_set_cache`)."""
    cache = _set_cache(S)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _r_max(S: EnvironmentSet) -> float:
    return memo(S, ("r_max",), lambda: float(np.sqrt((S.positions ** 2).sum(1)).max()) if len(S.positions) else 0.0)


def self_overlaps(S: EnvironmentSet, sigma: float) -> np.ndarray:
    """``<A, A>`` of every environment of ``S`` at width ``sigma`` (read only, memoised per set)."""
    return memo(S, ("self", float(sigma)), lambda: _self_overlaps(S, float(sigma)))


def _self_overlaps(S: EnvironmentSet, sigma: float, chunk: int = 2048) -> np.ndarray:
    out = np.empty(len(S))
    for s in range(0, len(S), chunk):
        p, w, sig = S.padded(np.arange(s, min(len(S), s + chunk)))
        out[s : s + len(p)] = self_overlap(p, w, sig, sigma)
    out.flags.writeable = False
    return out


class SearchProblem:
    """The search of invariant distances between environments of two sets, on the CPU in double
    precision (the compiled search runs it; :class:`~giip_plugin.kernels.DistanceEngine` adds a
    device and a precision).

    ``l_max`` caps the band limit of the grid, and ``grid_pool`` is the number of largest grid
    values examined for local maxima (3D with one common sigma; the other grids examine 48):
    smaller values give a coarse, faster search that can miss the global maximum (its distances are
    then upper bounds; the coarse search of ``ReferenceMap.transform``). ``grid_window`` (coarse
    search, 3D grids of one sigma; 0: off): starts whose grid value is below the pair's best grid
    value by more than ``grid_window * (self_a + self_b) / 2`` are not polished (they rarely reach
    the maximum; the calibration of a map measures what it costs, reference/calibration.py).
    """

    device_type = "cpu"
    double = True

    def __init__(self, A: EnvironmentSet, B: EnvironmentSet | None = None, *, sigma: float, group="O3",
                 settings: SearchSettings | None = None, l_max: int | None = None, grid_pool: int = 48,
                 grid_window: float = 0.0):
        self.grid_pool = max(1, int(grid_pool))
        self.grid_window = float(grid_window)
        if not (np.isfinite(self.grid_window) and self.grid_window >= 0):
            raise ValueError(f"grid_window must be a finite number >= 0 (0: every start), got {grid_window!r}")
        self.sigma = check_sigma(sigma)
        self.settings = settings or SearchSettings()
        self.A = A
        self.B = A if B is None else B
        if self.A.dim != self.B.dim:
            raise ValueError(f"cannot compare {self.A.dim}D with {self.B.dim}D environments")
        if self.A.n_channels != self.B.n_channels:
            raise ValueError(
                f"environments have {self.A.n_channels} and {self.B.n_channels} weight channels: "
                "both sides must use the same species encoding"
            )
        # a side without per-atom sigmas uses the common sigma for all its atoms
        for S in (self.A, self.B):
            if S.sigmas is not None and (np.any(S.sigmas <= 0) or not np.all(np.isfinite(S.sigmas))):
                raise ValueError("per-atom sigmas must be positive finite numbers")
        self.dim = self.A.dim
        self.group = check_group(group, self.dim)
        self._counts_a, self._counts_b = self.A.counts, self.B.counts
        # band limit from the largest kappa r_a r_b
        smin = min(self._min_sigma(self.A), self._min_sigma(self.B))
        ra, rb = _r_max(self.A), _r_max(self.B)
        self.L = band_limit(ra * rb / (2 * smin * smin), self.settings.band_tol, spherical=self.dim == 3)
        if l_max is not None:
            self.L = max(2, min(self.L, int(l_max)))
        # 3D with one common sigma: harmonic coefficients per environment (radial.py) replace the
        # per-pair sums over pairs of neighbours in the grid stage
        self._coef = self.dim == 3 and self.group is not None and self.A.sigmas is None and self.B.sigmas is None
        if self._coef:
            self.basis = RadialBasis.get(1.0 / (2.0 * self.sigma * self.sigma), max(ra, rb), self.L)

    def _min_sigma(self, S):
        return float(S.sigmas.min()) if S.sigmas is not None and len(S.sigmas) else self.sigma

    def self_overlaps(self, which="A") -> np.ndarray:
        """``<X, X>`` of every environment of side ``which`` ("A" or "B"), read only."""
        return self_overlaps(self.A if which == "A" else self.B, self.sigma)

    def disjoint(self, ia, ib) -> np.ndarray | None:
        """Which pairs ``(A[ia[k]], B[ib[k]])`` share no weight channel (with vector species: no
        neighbour species in common), or ``None`` for one-channel encodings. Such a pair overlaps
        nowhere: ``<A, R B> = 0`` at every rotation."""
        if self.A.n_channels < 2:
            return None
        occ_a = memo(self.A, ("channels",), self.A.channel_occupancy)
        occ_b = occ_a if self.B is self.A else memo(self.B, ("channels",), self.B.channel_occupancy)
        return ~np.any(occ_a[ia] & occ_b[ib], axis=1)

    def skipping_disjoint(self, ia, ib, compute, return_rotation=False, progress=None):
        """``compute(ia, ib)`` (distances, or ``(distances, rotations)``) for the pairs that share a
        weight channel; the others (:meth:`disjoint`) get their exact distance without a search,
        ``sqrt(<A, A> + <B, B>)``, and the identity (every rotation is optimal). With vector species
        this is every pair of environments of centres with different neighbour species (in silica,
        each Si-centred with each O-centred first shell)."""
        mask = self.disjoint(ia, ib)
        if mask is None or not mask.any():
            return compute(ia, ib)
        skip, keep = np.flatnonzero(mask), np.flatnonzero(~mask)
        out = np.empty(len(ia))
        rots = np.empty((len(ia), self.dim, self.dim)) if return_rotation else None
        out[skip] = np.sqrt(self.self_overlaps("A")[ia[skip]] + self.self_overlaps("B")[ib[skip]])
        if return_rotation:
            rots[skip] = np.eye(self.dim)
        if progress is not None:
            progress.update(len(skip))
        if len(keep):
            res = compute(ia[keep], ib[keep])
            if return_rotation:
                out[keep], rots[keep] = res
            else:
                out[keep] = res
        return (out, rots) if return_rotation else out
