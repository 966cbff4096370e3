"""Complete-linkage (diameter-minimising) classes of training environments, and class assignment.

Step 2 of the pipeline (docs/design.md, section 3): agglomerative clustering of the training set on the raw
orientation-invariant distances with the *complete linkage* criterion, i.e. the distance between two
clusters is the largest distance between a member of one and a member of the other. scipy's
implementation (``scipy.cluster.hierarchy.linkage(..., method="complete")``) does the work.

With complete linkage the height of a merge is exactly the diameter (largest intra-class distance)
of the merged cluster, and merge heights never decrease. Hence the *cluster error* with ``K``
classes (the largest class diameter after the first ``n - K`` merges) is read directly off the
linkage matrix, and "the fewest classes with every diameter <= t" is one search in that curve. Merge
heights are copies of entries of ``D`` (no arithmetic), so comparisons with a threshold are exact.

Extension environments take the class of their nearest training environment
(:func:`assign_nearest`).

This module also holds the input checks shared by :mod:`giip_plugin.reference.diffusion`
(:func:`validate_distance_matrix`, :func:`validate_distance_rows`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.cluster.hierarchy import linkage as _scipy_linkage
from scipy.spatial.distance import squareform

__all__ = [
    "Clustering",
    "ClassSummary",
    "NearestAssignment",
    "complete_linkage",
    "class_summary",
    "assign_nearest",
    "validate_distance_matrix",
    "validate_distance_rows",
]

_ROW_BLOCK = 1024  # rows per block when checking an (n, n) matrix, to avoid (n, n) temporaries


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def validate_distance_matrix(D, *, name: str = "D", rtol: float = 1e-6) -> np.ndarray:
    """Check a training distance matrix and return it as a float64 array.

    Requirements (``ValueError`` otherwise): 2-D, square, at least one row, finite, non-negative,
    zero diagonal and symmetric, both within ``rtol * max(1, max(D))``. An exactly symmetric input
    with an exactly zero diagonal is returned as is (no copy when it is already float64); a
    slightly asymmetric one is replaced by ``(D + D.T) / 2`` with its diagonal set to 0.
    """
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix of distances, got shape {D.shape}")
    n = D.shape[0]
    if n == 0:
        raise ValueError(f"{name} is empty: at least one training point is needed")
    scale = 1.0
    for a in range(0, n, _ROW_BLOCK):
        blk = D[a : a + _ROW_BLOCK]
        if not np.all(np.isfinite(blk)):
            raise ValueError(f"{name} contains non-finite entries (NaN or inf)")
        if np.any(blk < 0):
            raise ValueError(f"{name} contains negative entries; distances must be >= 0")
        scale = max(scale, float(blk.max()))
    tol = rtol * scale
    diag = np.diagonal(D)
    if np.any(np.abs(diag) > tol):
        raise ValueError(
            f"{name} must have a zero diagonal (distance of a point to itself); largest diagonal "
            f"entry is {np.abs(diag).max():.3g}"
        )
    exact = not np.any(diag != 0)
    worst = 0.0
    for a in range(0, n, _ROW_BLOCK):
        diff = np.abs(D[a : a + _ROW_BLOCK] - D[:, a : a + _ROW_BLOCK].T)
        worst = max(worst, float(diff.max()))
    if worst > tol:
        raise ValueError(
            f"{name} is not symmetric: largest |D_ij - D_ji| = {worst:.3g} exceeds the tolerance "
            f"{tol:.3g}"
        )
    if worst > 0 or not exact:
        D = 0.5 * (D + D.T)
        np.fill_diagonal(D, 0.0)
    return D


def validate_distance_rows(D_new, n_train: int, *, name: str = "D_new", allow_inf: bool = False) -> np.ndarray:
    """Check distances of new points to the training points, shape ``(n_new, n_train)``.

    A single row of length ``n_train`` is accepted and returned with shape ``(1, n_train)``.
    Entries must be non-negative and not NaN; ``+inf`` (infinitely far) only with ``allow_inf``.
    """
    D_new = np.asarray(D_new, dtype=float)
    if D_new.ndim == 1:
        D_new = D_new[None, :]
    if D_new.ndim != 2 or D_new.shape[1] != n_train:
        raise ValueError(
            f"{name} must have shape (n_new, {n_train}) (distances to every training point), "
            f"got {D_new.shape}"
        )
    if np.isnan(D_new).any():
        raise ValueError(f"{name} contains NaN")
    if not allow_inf and not np.isfinite(D_new).all():
        raise ValueError(f"{name} contains infinite entries")
    if (D_new < 0).any():
        raise ValueError(f"{name} contains negative entries; distances must be >= 0")
    return D_new


def _check_labels(labels, n: int | None = None, name: str = "labels") -> tuple[np.ndarray, int]:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {labels.shape}")
    if n is not None and len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries, expected {n}")
    if len(labels) == 0:
        return labels.astype(np.int64), 0
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.asarray(labels, dtype=float) == np.round(np.asarray(labels, dtype=float))):
            raise ValueError(f"{name} must be integers")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices")
    k = int(labels.max()) + 1
    if np.bincount(labels, minlength=k).min() == 0:
        raise ValueError(f"{name} must use every class 0..{k - 1} at least once")
    return labels, k


def _relabel_by_size(raw: np.ndarray) -> np.ndarray:
    """Map arbitrary integer cluster ids to 0..K-1, largest class first, ties by first member index."""
    uniq, first, inv, counts = np.unique(raw, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # primary: size descending; secondary: first member
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inv.reshape(-1)]


# --------------------------------------------------------------------------------------------------
# clustering
# --------------------------------------------------------------------------------------------------
@dataclass
class Clustering:
    """Result of :func:`complete_linkage`.

    Attributes
    ----------
    linkage : ndarray, shape (n - 1, 4)
        scipy linkage matrix (rows: merged cluster ids, merge height, size of the new cluster);
        leaves are ``0..n-1``, the cluster formed at row ``i`` is ``n + i``.
    n : int
        Number of training points.
    """

    linkage: np.ndarray
    n: int

    def __post_init__(self):
        self.linkage = np.asarray(self.linkage, dtype=float).reshape(-1, 4)
        self.n = int(self.n)
        if self.n < 1 or len(self.linkage) != self.n - 1:
            raise ValueError(f"a linkage of {self.n} points must have {self.n - 1} rows, got {len(self.linkage)}")

    @property
    def heights(self) -> np.ndarray:
        """Merge heights in merge order, made non-decreasing (they already are for complete linkage)."""
        return np.maximum.accumulate(self.linkage[:, 2]) if len(self.linkage) else np.zeros(0)

    def error_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Cluster error against number of classes.

        Returns ``(n_classes, error)``: ``n_classes = [1, 2, ..., n]`` and ``error[K - 1]`` is the
        largest class diameter (maximum intra-class distance) when the tree is cut into ``K``
        classes; ``error`` is non-increasing and ``error[n - 1] = 0``.
        """
        n_classes = np.arange(1, self.n + 1)
        error = np.zeros(self.n)
        # K classes = first n-K merges done; largest diameter = height of the last of them.
        error[: self.n - 1] = self.heights[::-1]
        return n_classes, error

    def n_classes_for(self, max_diameter: float) -> int:
        """Fewest classes such that every class has diameter ``<= max_diameter``."""
        max_diameter = float(max_diameter)
        if not np.isfinite(max_diameter) and max_diameter != np.inf:
            raise ValueError(f"max_diameter must be a number, got {max_diameter}")
        if max_diameter < 0:
            raise ValueError(f"max_diameter must be >= 0, got {max_diameter}")
        merges_allowed = int(np.searchsorted(self.heights, max_diameter, side="right"))
        return self.n - merges_allowed

    def labels(self, n_classes: int | None = None, max_diameter: float | None = None) -> np.ndarray:
        """Integer class labels ``0..K-1`` of the training points, class 0 the largest.

        Give exactly one of ``n_classes`` (``1 <= K <= n``: exactly ``K`` classes, the first
        ``n - K`` merges of the tree, ties in height taken in scipy's merge order) or
        ``max_diameter`` (the fewest classes whose every class has diameter ``<= max_diameter``).
        Classes are numbered by decreasing size; equal sizes by their smallest member index.
        """
        if (n_classes is None) == (max_diameter is None):
            raise ValueError("give exactly one of n_classes and max_diameter")
        if max_diameter is not None:
            K = self.n_classes_for(max_diameter)
        else:
            if isinstance(n_classes, (bool, np.bool_)) or int(n_classes) != n_classes:
                raise ValueError(f"n_classes must be an integer, got {n_classes!r}")
            K = int(n_classes)
            if not 1 <= K <= self.n:
                raise ValueError(f"n_classes must be between 1 and {self.n}, got {K}")
        n_merges = self.n - K
        # parent pointers of the first n_merges merges, then pointer jumping to the roots
        parent = np.arange(2 * self.n - 1, dtype=np.int64)
        if n_merges:
            z = self.linkage[:n_merges, :2].astype(np.int64)
            new = self.n + np.arange(n_merges)
            parent[z[:, 0]] = new
            parent[z[:, 1]] = new
        root = parent
        while True:
            nxt = root[root]
            if np.array_equal(nxt, root):
                break
            root = nxt
        return _relabel_by_size(root[: self.n])


def complete_linkage(D) -> Clustering:
    """Complete-linkage hierarchical clustering of a symmetric distance matrix ``D`` (n x n).

    ``D`` is checked by :func:`validate_distance_matrix` (square, symmetric, finite, non-negative,
    zero diagonal); scipy's ``linkage(squareform(D, checks=False), method="complete")`` builds the
    tree. A single point gives an empty tree (one class).
    """
    D = validate_distance_matrix(D)
    n = D.shape[0]
    if n == 1:
        return Clustering(np.zeros((0, 4)), 1)
    Z = _scipy_linkage(squareform(D, checks=False), method="complete")
    return Clustering(Z, n)


# --------------------------------------------------------------------------------------------------
# class statistics and assignment
# --------------------------------------------------------------------------------------------------
@dataclass
class ClassSummary:
    """Per-class statistics from :func:`class_summary` (arrays indexed by class label).

    sizes: members per class. diameters: largest distance between two members (0 for a singleton).
    medoids: index (into the training set) of the *minimax* member, the one whose largest distance
    to the other members is smallest (ties: smaller sum of distances, then lower index).
    radii: that largest distance from the medoid (``diameter / 2 <= radius <= diameter``).
    """

    sizes: np.ndarray
    diameters: np.ndarray
    medoids: np.ndarray
    radii: np.ndarray


def class_summary(D, labels) -> ClassSummary:
    """Sizes, diameters, minimax medoids and radii of the classes ``labels`` (0..K-1) of ``D``."""
    D = validate_distance_matrix(D)
    labels, K = _check_labels(labels, D.shape[0])
    sizes = np.bincount(labels, minlength=K).astype(np.int64)
    diameters = np.zeros(K)
    medoids = np.zeros(K, dtype=np.int64)
    radii = np.zeros(K)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for c in range(K):
        idx = order[bounds[c] : bounds[c + 1]]  # ascending member indices
        sub = D[np.ix_(idx, idx)]
        mx = sub.max(axis=1)
        sm = sub.sum(axis=1)
        best = np.lexsort((idx, sm, mx))[0]
        diameters[c] = mx.max()
        medoids[c] = idx[best]
        radii[c] = mx[best]
    return ClassSummary(sizes, diameters, medoids, radii)


class NearestAssignment(NamedTuple):
    """Result of :func:`assign_nearest`: class, index and distance of the nearest training point."""

    labels: np.ndarray
    index: np.ndarray
    distance: np.ndarray


def assign_nearest(D_new, train_labels) -> NearestAssignment:
    """Class of the nearest training point for each new point.

    ``D_new`` has shape ``(n_new, n_train)`` (one row of distances per new point; a 1-D row is
    accepted as one point). Ties go to the lowest training index. Returns ``(labels, index,
    distance)`` as a named tuple.
    """
    train_labels, _ = _check_labels(train_labels, name="train_labels")
    if len(train_labels) == 0:
        raise ValueError("train_labels is empty")
    D_new = validate_distance_rows(D_new, len(train_labels), allow_inf=True)
    if D_new.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return NearestAssignment(empty, empty.copy(), np.zeros(0))
    index = np.argmin(D_new, axis=1).astype(np.int64)
    distance = D_new[np.arange(len(index)), index]
    return NearestAssignment(train_labels[index], index, distance)
