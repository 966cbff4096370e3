"""A continuous symmetry measure from the GIIP inner product itself.

For a point group ``G`` (a set of orthogonal matrices in a reference frame) and an environment
``A``, the measure is

    S_G(A) = max over orientations Q of (1 / |G|) sum_g <A, (Q g Q^T) A> / <A, A>,

with ``<A, R A> = sum_ij w_i w_j exp(-|a_i - R a_j|^2 / (4 sigma^2))`` the GIIP overlap of the
environment with its own image (docs/design.md, section 2). It is 1 exactly when ``A`` has the
symmetry ``G`` about some orientation (every image coincides with ``A``), and below 1 otherwise; it
is invariant to rotating, reflecting or permuting the environment, and smooth in the positions and
weights (so neighbours entering the cutoff change it continuously).

The orientation search: the measure at ``n_starts`` seeded random orientations (all images at once,
vectorised), then a local polish (scipy's Nelder-Mead on a rotation vector) from the best few. The
groups: ``C2`` .. ``C6`` (about the best axis), ``D2h``, ``D3h`` (the trigonal prism, with or without
caps on its three faces: the prismatic motif of metallic glasses), ``T`` and ``Td`` (tetrahedral),
``O`` and ``Oh``, ``I`` and ``Ih`` (icosahedral), generated from their generators by closure.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["GROUPS", "group_matrices", "symmetry_measure", "symmetry_measures"]

_PHI = (1 + 5 ** 0.5) / 2


def _rot(axis, angle):
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, dtype=float)
    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()


def _closure(gens) -> np.ndarray:
    els = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for a in frontier:
            for g in gens:
                m = g @ a
                if not any(np.abs(m - e).max() < 1e-8 for e in els):
                    els.append(m)
                    new.append(m)
        frontier = new
        if len(els) > 240:
            raise RuntimeError("group closure did not terminate")
    return np.array(els)


_GENERATORS = {
    **{f"C{n}": lambda n=n: [_rot([0, 0, 1], 2 * np.pi / n)] for n in range(2, 7)},
    "D2h": lambda: [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), -np.eye(3)],
    "D3h": lambda: [_rot([0, 0, 1], 2 * np.pi / 3), np.diag([1.0, 1, -1]), np.diag([1.0, -1, -1])],
    "T": lambda: [np.diag([1.0, -1, -1]), _rot([1, 1, 1], 2 * np.pi / 3)],
    "Td": lambda: [np.diag([1.0, -1, -1]), _rot([1, 1, 1], 2 * np.pi / 3),
                   np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])],  # a mirror plane x = y
    "O": lambda: [_rot([0, 0, 1], np.pi / 2), _rot([1, 1, 1], 2 * np.pi / 3)],
    "Oh": lambda: [_rot([0, 0, 1], np.pi / 2), _rot([1, 1, 1], 2 * np.pi / 3), -np.eye(3)],
    "I": lambda: [_rot([0, 1, _PHI], 2 * np.pi / 5), _rot([1, 1, 1], 2 * np.pi / 3)],
    "Ih": lambda: [_rot([0, 1, _PHI], 2 * np.pi / 5), _rot([1, 1, 1], 2 * np.pi / 3), -np.eye(3)],
}
GROUPS = tuple(_GENERATORS)
_ORDERS = {**{f"C{n}": n for n in range(2, 7)}, "D2h": 8, "D3h": 12, "T": 12, "Td": 24, "O": 24, "Oh": 48, "I": 60, "Ih": 120}


@lru_cache(maxsize=None)
def group_matrices(name: str) -> np.ndarray:
    """The elements of point group ``name`` (one of :data:`GROUPS`) in its reference frame, shape
    ``(|G|, 3, 3)``."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown point group {name!r}; known: {', '.join(GROUPS)}")
    g = _closure(_GENERATORS[name]())
    if len(g) != _ORDERS[name]:
        raise RuntimeError(f"group {name}: {len(g)} elements generated, expected {_ORDERS[name]}")
    g.setflags(write=False)
    return g


def _mean_overlap(pos, W, mats, c):
    """(1/|G|) sum_g <A, M_g A> for stacks of images ``mats`` (..., |G|, 3, 3); ``W[i, j]`` the
    products of the weights of neighbours i and j (summed over species channels)."""
    img = np.einsum("...gij,nj->...gni", mats, pos)  # images of the neighbours
    d2 = np.sum((pos[:, None, :] - img[..., None, :, :]) ** 2, axis=-1)  # (..., |G|, n, n)
    return np.einsum("ij,...gij->...", W, np.exp(-c * d2)) / mats.shape[-3]


def symmetry_measure(pos, w, *, sigma: float, group: str, n_starts: int = 64, n_polish: int = 3,
                     seed: int = 0, return_orientation: bool = False):
    """:math:`S_G` of one environment (module docstring): ``pos`` ``(n, 3)`` neighbour positions
    relative to the centre, ``w`` ``(n,)`` weights (or ``(n, channels)`` for vector species: the
    channels' overlaps are summed, as in the GIIP), ``sigma`` the GIIP width. Returns the measure in [0, 1] (or
    ``(measure, Q)`` with ``return_orientation``: the group's frame is ``Q``)."""
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation

    pos = np.asarray(pos, dtype=float).reshape(-1, 3)
    w = np.asarray(w, dtype=float)
    G = group_matrices(group)
    if len(pos) == 0:
        return (0.0, np.eye(3)) if return_orientation else 0.0
    W = w.reshape(len(pos), -1) @ w.reshape(len(pos), -1).T  # vector species: channels summed
    c = 1.0 / (4.0 * float(sigma) ** 2)
    self_ov = float(np.sum(W * np.exp(-c * np.sum((pos[:, None] - pos[None]) ** 2, -1))))
    if self_ov <= 0:
        return (0.0, np.eye(3)) if return_orientation else 0.0
    Q0 = Rotation.random(int(n_starts), random_state=seed).as_matrix()
    mats = np.einsum("sij,gjk,slk->sgil", Q0, G, Q0)
    vals = _mean_overlap(pos, W, mats, c) / self_ov
    best_v, best_Q = -np.inf, np.eye(3)
    for s in np.argsort(vals)[::-1][: int(n_polish)]:
        base = Q0[s]

        def neg(v, base=base):
            Q = Rotation.from_rotvec(v).as_matrix() @ base
            return -_mean_overlap(pos, W, np.einsum("ij,gjk,lk->gil", Q, G, Q), c) / self_ov

        res = minimize(neg, np.zeros(3), method="Nelder-Mead",
                       options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 2000, "initial_simplex": 0.15 * np.vstack(
                           [np.zeros(3), np.eye(3)])})
        if -res.fun > best_v:
            best_v, best_Q = -res.fun, Rotation.from_rotvec(res.x).as_matrix() @ base
    best_v = float(min(max(best_v, vals.max()), 1.0))
    return (best_v, best_Q) if return_orientation else best_v


def symmetry_measures(envs, *, sigma: float, groups=("C2", "C3", "C4", "C5", "C6", "D2h", "T", "I"),
                      species: bool = True, progress: bool = False, **kw) -> dict:
    """:func:`symmetry_measure` of every environment of an
    :class:`~giip_plugin.environments.EnvironmentSet` for each group: ``{group: array (n,)}``
    (``species=False``: of the positions alone, every weight replaced by its magnitude)."""
    if not species:
        envs = type(envs)(envs.positions, np.abs(envs.weights), envs.offsets, envs.sigmas, envs.centers)
    if envs.sigmas is not None:
        raise ValueError("the symmetry measure uses one common sigma; this set has per-atom sigmas")
    out = {g: np.zeros(len(envs)) for g in groups}
    it = range(len(envs))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="symmetry measures", unit="env")
    for i in it:
        sl = slice(envs.offsets[i], envs.offsets[i + 1])
        for g in groups:
            out[g][i] = symmetry_measure(envs.positions[sl], envs.weights[sl], sigma=sigma, group=g, **kw)
    return out
