"""Smoothed densities of two sets of atoms in a plane of diffusion coordinates, their difference
(the paper's Fig. 3c), and class populations side by side.

Each set's density is a Gaussian kernel density estimate, normalised to integrate to 1 over the
plane: ``rho(x) = (1/n) sum_i N(x; x_i, diag(h1^2, h2^2))``, evaluated on a common grid that
extends 4 bandwidths beyond the points of both sets (so each density integrates to 1 on the grid
to better than 1e-4, and the difference to 0). The bandwidth is common to both sets (Scott's rule
on the pooled points, ``h_k = std_k * n^(-1/6)``, unless given), so that a difference of
densities reflects the data, not different smoothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DensityDifference", "density_difference", "smoothed_density", "scott_bandwidth",
           "ClassPopulations", "class_populations", "DifferenceTest", "difference_test"]


def scott_bandwidth(points) -> np.ndarray:
    """Scott's rule for a 2D Gaussian KDE: ``std_k * n^(-1/6)`` per axis."""
    p = np.asarray(points, dtype=float)
    n = len(p)
    if n < 2:
        raise ValueError("a bandwidth needs at least 2 points")
    sd = p.std(axis=0, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    return sd * n ** (-1.0 / 6.0)


def _gauss_1d(centres, x, h):
    z = (x[None, :] - centres[:, None]) / h
    return np.exp(-0.5 * z * z) / (np.sqrt(2.0 * np.pi) * h)


def smoothed_density(points, xgrid, ygrid, bandwidth, weights=None) -> np.ndarray:
    """Gaussian KDE of ``points`` (``(n, 2)``) at the grid points ``xgrid x ygrid``; returns an
    array of shape ``(len(xgrid), len(ygrid))`` that integrates to 1 over the whole plane."""
    p = np.asarray(points, dtype=float)
    h = np.broadcast_to(np.asarray(bandwidth, dtype=float), (2,))
    if np.any(h <= 0):
        raise ValueError(f"bandwidths must be positive, got {h.tolist()}")
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    gx = _gauss_1d(p[:, 0], np.asarray(xgrid, dtype=float), h[0])
    gy = _gauss_1d(p[:, 1], np.asarray(ygrid, dtype=float), h[1])
    return (gx * w[:, None]).T @ gy


@dataclass
class DensityDifference:
    """Result of :func:`density_difference` (densities indexed ``[ix, iy]``)."""

    x: np.ndarray  # grid points along the first coordinate
    y: np.ndarray
    density_a: np.ndarray
    density_b: np.ndarray
    bandwidth: np.ndarray
    n_a: int
    n_b: int

    @property
    def difference(self) -> np.ndarray:
        """``density_b - density_a`` (positive where set B is more frequent)."""
        return self.density_b - self.density_a

    @property
    def cell_area(self) -> float:
        return float((self.x[1] - self.x[0]) * (self.y[1] - self.y[0]))

    def integral(self, field: np.ndarray) -> float:
        return float(field.sum() * self.cell_area)

    def summary(self) -> dict:
        d = self.difference
        ia, ib = np.unravel_index(np.argmax(d), d.shape), np.unravel_index(np.argmin(d), d.shape)
        return {
            "n_a": self.n_a, "n_b": self.n_b, "bandwidth": self.bandwidth.tolist(),
            "integral_a": self.integral(self.density_a), "integral_b": self.integral(self.density_b),
            "integral_difference": self.integral(d),
            # half the L1 norm: the fraction of atoms that would have to move to turn A into B
            "l1_half": 0.5 * self.integral(np.abs(d)),
            "max_b_over_a_at": [float(self.x[ia[0]]), float(self.y[ia[1]])],
            "max_a_over_b_at": [float(self.x[ib[0]]), float(self.y[ib[1]])],
        }


def density_difference(points_a, points_b, *, bins: int = 120, bandwidth=None,
                       margin: float = 4.0) -> DensityDifference:
    """Smoothed densities of two point sets in a plane and their difference (module docstring)."""
    a = np.asarray(points_a, dtype=float)
    b = np.asarray(points_b, dtype=float)
    for name, p in (("first", a), ("second", b)):
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"the {name} set must be an (n, 2) array of points, got shape {p.shape}")
    a = a[np.all(np.isfinite(a), axis=1)]
    b = b[np.all(np.isfinite(b), axis=1)]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each set needs at least 2 points with finite coordinates (got {len(a)} and {len(b)})")
    if int(bins) < 8:
        raise ValueError("bins must be at least 8")
    pooled = np.concatenate([a, b])
    h = scott_bandwidth(pooled) if bandwidth is None else np.broadcast_to(np.asarray(bandwidth, float), (2,)).copy()
    lo = pooled.min(axis=0) - margin * h
    hi = pooled.max(axis=0) + margin * h
    x = np.linspace(lo[0], hi[0], int(bins))
    y = np.linspace(lo[1], hi[1], int(bins))
    return DensityDifference(x, y, smoothed_density(a, x, y, h), smoothed_density(b, x, y, h), np.asarray(h),
                             len(a), len(b))


@dataclass
class DifferenceTest:
    """Result of :func:`difference_test`: whether two sets of atoms differ in a plane of
    coordinates beyond sampling noise.

    ``l1_half``: half the L1 norm of the observed density difference (the fraction of atoms that
    would have to move); ``p_shuffle``: the fraction of label shuffles (the two sets pooled and
    split at random in the same sizes) whose ``l1_half`` reaches the observed one (``(k + 1) /
    (n + 1)``); ``null_l1_half``: the median of those; ``significant``: grid cells where at least
    ``1 - alpha / 2`` of the bootstrap differences (atoms resampled within each set) have the
    observed sign; ``significant_mass``: the share of ``|difference|`` that lies in those cells
    (positive: B more frequent, negative: A more frequent)."""

    observed: DensityDifference
    l1_half: float
    p_shuffle: float
    null_l1_half: float
    significant: np.ndarray
    significant_mass_b: float
    significant_mass_a: float
    n_shuffles: int
    n_boot: int

    def summary(self) -> dict:
        return {"l1_half": self.l1_half, "p_shuffle": self.p_shuffle, "null_l1_half_median": self.null_l1_half,
                "n_shuffles": self.n_shuffles, "n_boot": self.n_boot,
                "significant_mass_b_over_a": self.significant_mass_b,
                "significant_mass_a_over_b": self.significant_mass_a}


def difference_test(points_a, points_b, *, n_shuffles: int = 200, n_boot: int = 200, alpha: float = 0.05,
                    bins: int = 80, seed: int = 0) -> DifferenceTest:
    """Significance of the density difference of two point sets in a plane (:func:`density_difference`
    with one bandwidth and grid for every resample): a permutation test of ``l1_half`` (shuffled
    labels) and a bootstrap over atoms of the sign of the difference in each grid cell. Seeded."""
    obs = density_difference(points_a, points_b, bins=bins)
    a = np.asarray(points_a, dtype=float)
    b = np.asarray(points_b, dtype=float)
    a = a[np.all(np.isfinite(a), axis=1)]
    b = b[np.all(np.isfinite(b), axis=1)]
    h, x, y, area = obs.bandwidth, obs.x, obs.y, obs.cell_area
    rng = np.random.default_rng(seed)

    def diff(pa, pb):
        return smoothed_density(pb, x, y, h) - smoothed_density(pa, x, y, h)

    d0 = obs.difference
    l1 = 0.5 * float(np.abs(d0).sum() * area)
    pooled = np.concatenate([a, b])
    null = np.empty(int(n_shuffles))
    for k in range(int(n_shuffles)):
        perm = rng.permutation(len(pooled))
        null[k] = 0.5 * float(np.abs(diff(pooled[perm[:len(a)]], pooled[perm[len(a):]])).sum() * area)
    p = (1 + int(np.sum(null >= l1))) / (1 + len(null))
    agree = np.zeros(d0.shape)
    for _ in range(int(n_boot)):
        d = diff(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
        agree += np.sign(d) == np.sign(d0)
    sig = agree >= (1 - alpha / 2) * max(int(n_boot), 1)
    tot = float(np.abs(d0).sum()) or 1.0
    return DifferenceTest(obs, l1, float(p), float(np.median(null)) if len(null) else float("nan"), sig,
                          float(np.abs(d0)[sig & (d0 > 0)].sum() / tot), float(np.abs(d0)[sig & (d0 < 0)].sum() / tot),
                          int(n_shuffles), int(n_boot))


@dataclass
class ClassPopulations:
    """Counts of each class in each set."""

    labels: list  # set names
    counts: np.ndarray  # (n_sets, n_classes)

    @property
    def fractions(self) -> np.ndarray:
        tot = self.counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, self.counts / np.maximum(tot, 1), np.nan)

    def format(self) -> str:
        f = self.fractions
        w = max(10, *(len(s) for s in self.labels))
        head = f"{'class':>5}  " + "  ".join(f"{s:>{w}}" for s in self.labels)
        if len(self.labels) == 2:
            head += f"  {'change':>8}"
        lines = [head]
        for k in range(self.counts.shape[1]):
            cells = "  ".join(f"{int(c):>{w - 7}d} {100 * fr:5.1f}%" for c, fr in zip(self.counts[:, k], f[:, k]))
            row = f"{k:>5}  {cells}"
            if len(self.labels) == 2:
                row += f"  {100 * (f[1, k] - f[0, k]):+7.1f}%"
            lines.append(row)
        lines.append(f"{'all':>5}  " + "  ".join(f"{int(c):>{w - 7}d} {100.0:5.1f}%" for c in self.counts.sum(axis=1)))
        return "\n".join(lines)

    def chi2(self) -> dict:
        """Pearson's chi-square test that every set has the same class populations
        (``scipy.stats.chi2_contingency`` on the classes present): statistic, degrees of freedom, p."""
        from scipy.stats import chi2_contingency

        c = self.counts[:, self.counts.sum(axis=0) > 0]
        if c.shape[0] < 2 or c.shape[1] < 2:
            return {"statistic": 0.0, "dof": 0, "p": 1.0}
        res = chi2_contingency(c)
        return {"statistic": float(res.statistic), "dof": int(res.dof), "p": float(res.pvalue)}

    def to_dict(self) -> dict:
        return {"sets": list(self.labels), "counts": self.counts.tolist(),
                "fractions": [[float(v) for v in row] for row in self.fractions], "chi2": self.chi2()}


def class_populations(classes_by_set, n_classes: int, labels=None) -> ClassPopulations:
    """Class counts of each set (``classes_by_set``: a list of integer arrays; -1 = not analysed,
    ignored)."""
    rows = []
    for c in classes_by_set:
        c = np.asarray(c).astype(np.int64).reshape(-1)
        c = c[c >= 0]
        if len(c) and c.max() >= n_classes:
            raise ValueError(f"class {int(c.max())} found, but the reference has {n_classes} classes")
        rows.append(np.bincount(c, minlength=n_classes))
    labels = list(labels) if labels is not None else [f"set {k + 1}" for k in range(len(rows))]
    return ClassPopulations(labels, np.array(rows, dtype=np.int64).reshape(len(rows), n_classes))
