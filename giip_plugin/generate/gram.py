"""Gram matrices of motifs, and positions back from a Gram matrix.

The Gram matrix ``G = X X^T`` of a motif's neighbour vectors ``X`` (``n x dim``, relative to the
centre) is invariant under every rotation and reflection of the motif: it is what the generative
model learns. Its upper triangle (with the diagonal: ``n (n + 1) / 2`` numbers) is the input,
standardised with one mean and spread for the diagonal (squared distances to the centre) and one
for the off-diagonal (products of two neighbour vectors), as in the seed (Uhrin & Paulish).

Back from ``G``: its ``dim`` leading eigenvectors, scaled by the square roots of their eigenvalues,
give positions ``X'`` with ``X' X'^T`` the nearest Gram matrix of rank ``dim``; ``X'`` is ``X`` up
to an orthogonal transformation, which :func:`synchronise` recovers by ``min_Q ||Y - X' Q||_F``
(orthogonal Procrustes, scipy) against a template ``Y``, optionally also matching the atoms
(the Hungarian algorithm, scipy) when their order is not known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["gram", "triu", "untriu", "GramScaling", "positions_from_gram", "synchronise"]


def gram(positions: np.ndarray) -> np.ndarray:
    """``(N, n, n)`` Gram matrices of ``(N, n, dim)`` neighbour vectors."""
    X = np.asarray(positions, dtype=float)
    return np.einsum("kid,kjd->kij", X, X)


def _iu(n):
    return np.triu_indices(n)


def triu(G: np.ndarray) -> np.ndarray:
    """Upper triangles (diagonal included) of ``(N, n, n)`` matrices: ``(N, n (n + 1) / 2)``."""
    i, j = _iu(G.shape[-1])
    return G[:, i, j]


def untriu(v: np.ndarray, n: int) -> np.ndarray:
    """Symmetric ``(N, n, n)`` matrices from their upper triangles."""
    v = np.asarray(v, dtype=float)
    i, j = _iu(n)
    G = np.zeros((len(v), n, n))
    G[:, i, j] = v
    G[:, j, i] = v
    return G


def diagonal_mask(n: int) -> np.ndarray:
    i, j = _iu(n)
    return i == j


@dataclass(frozen=True)
class GramScaling:
    """Standardisation of Gram upper triangles: diagonal and off-diagonal entries separately."""

    n: int
    diag_mean: float
    diag_scale: float
    off_mean: float
    off_scale: float

    @classmethod
    def fit(cls, features: np.ndarray, n: int) -> "GramScaling":
        d = diagonal_mask(n)
        F = np.asarray(features, dtype=float)
        scale = lambda a: float(a.std()) if a.size and a.std() > 0 else 1.0  # noqa: E731
        return cls(n, float(F[:, d].mean()), scale(F[:, d]), float(F[:, ~d].mean()) if (~d).any() else 0.0,
                   scale(F[:, ~d]))

    def _vectors(self):
        d = diagonal_mask(self.n)
        return np.where(d, self.diag_mean, self.off_mean), np.where(d, self.diag_scale, self.off_scale)

    def transform(self, features: np.ndarray) -> np.ndarray:
        m, s = self._vectors()
        return (np.asarray(features, dtype=float) - m) / s

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        m, s = self._vectors()
        return np.asarray(scaled, dtype=float) * s + m

    def to_dict(self) -> dict:
        return {"n": self.n, "diag_mean": self.diag_mean, "diag_scale": self.diag_scale,
                "off_mean": self.off_mean, "off_scale": self.off_scale}


def positions_from_gram(G: np.ndarray, dim: int) -> np.ndarray:
    """Positions ``(N, n, dim)`` whose Gram matrices are the nearest of rank ``dim`` to ``G``
    (``(N, n, n)``, symmetrised first; negative eigenvalues count as 0)."""
    G = np.asarray(G, dtype=float)
    G = 0.5 * (G + np.swapaxes(G, 1, 2))
    lam, V = np.linalg.eigh(G)  # ascending
    lam, V = lam[:, ::-1][:, :dim], V[:, :, ::-1][:, :, :dim]
    return V * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]


def _procrustes(X: np.ndarray, Y: np.ndarray, proper: bool):
    """Q minimising ``||X Q - Y||_F`` over orthogonal (``proper``: rotation) matrices."""
    from scipy.linalg import orthogonal_procrustes

    Q, _ = orthogonal_procrustes(X, Y)
    if proper and np.linalg.det(Q) < 0:
        U, _, Vt = np.linalg.svd(X.T @ Y)
        D = np.eye(X.shape[1])
        D[-1, -1] = -1
        Q = U @ D @ Vt
    return Q


def synchronise(X: np.ndarray, Y: np.ndarray, *, match: bool = False, proper: bool = False,
                max_iter: int = 20):
    """Align the points ``X`` (``m x dim``) onto the template ``Y`` (``k x dim``).

    Without ``match``, row ``i`` of ``X`` corresponds to row ``i`` of ``Y`` (``m == k``) and the
    answer is orthogonal Procrustes. With ``match``, the correspondence is unknown: alternate the
    best assignment of the rows (Hungarian algorithm on squared distances; ``min(m, k)`` pairs) and
    Procrustes on the assigned pairs, starting from the given order and from each reflection of
    the principal axes, and keep the best. Returns ``(X Q, Q, pairs)`` with ``pairs`` the
    ``(rows of X, rows of Y)`` matched and ``Q`` orthogonal (a rotation when ``proper``).
    """
    from scipy.optimize import linear_sum_assignment

    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    if not match:
        if X.shape != Y.shape:
            raise ValueError(f"synchronise without match needs equal shapes, got {X.shape} and {Y.shape}")
        Q = _procrustes(X, Y, proper)
        return X @ Q, Q, (np.arange(len(X)), np.arange(len(Y)))
    dim = X.shape[1]
    starts = [np.eye(dim)]
    if len(X) >= dim and len(Y) >= dim:  # principal axes of both, every sign choice
        _, _, Vx = np.linalg.svd(X, full_matrices=False)
        _, _, Vy = np.linalg.svd(Y, full_matrices=False)
        for signs in np.array(np.meshgrid(*[[1, -1]] * dim)).reshape(dim, -1).T:
            Q0 = Vx.T @ np.diag(signs) @ Vy
            if not proper or np.linalg.det(Q0) > 0:
                starts.append(Q0)
    best = None
    for Q in starts:
        prev = None
        for _ in range(max_iter):
            cost = ((X @ Q)[:, None, :] - Y[None]) ** 2
            a, b = linear_sum_assignment(cost.sum(2))
            if prev is not None and np.array_equal(a, prev[0]) and np.array_equal(b, prev[1]):
                break
            prev = (a, b)
            Q = _procrustes(X[a], Y[b], proper)
        a, b = prev
        err = float((((X[a] @ Q) - Y[b]) ** 2).sum())
        if best is None or err < best[0] - 1e-12:
            best = (err, Q, (a, b))
    _, Q, pairs = best
    return X @ Q, Q, pairs
