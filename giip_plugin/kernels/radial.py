"""Per-environment harmonic coefficients: a low-rank factorisation of the radial coupling.

The band-limited overlap of the grid search (see :mod:`.search`) couples neighbours ``a_i`` of A and
``b_j`` of B through

    G^l_mm' = sum_ij (w_i . w_j) f_l(|a_i|, |b_j|) Y_lm(a_i) conj(Y_lm'(b_j)),
    f_l(a, b) = 4 pi exp(-kappa (a^2 + b^2) / 2) i_l(kappa a b).

Each ``f_l`` is a positive semi-definite kernel on ``[0, r_max]`` (``i_l`` has a power series with
positive coefficients in ``a b``), and a smooth one: with the Gaussian width of the descriptor
(``kappa = 1 / (2 sigma^2)``) it is numerically of low rank (4-8 terms for NiNb first shells
at 1e-10). With ``f_l(a, b) ~= sum_n phi_ln(a) phi_ln(b)``:

    G^l = C_A^l^T conj(C_B^l),   C^l[c n, m] = sum_i w_ic phi_ln(|a_i|) Y_lm(a_i),

so the spherical harmonics and the radial functions are evaluated once per environment instead of
once per pair of neighbours of every pair of environments, and ``G`` costs one small product per
pair. The functions ``phi_ln`` come from the eigendecomposition of ``f_l`` on a uniform grid
(Nystrom interpolation onto a fine table, then linear interpolation); terms below ``tol`` times the
largest eigenvalue are dropped. The grid search only locates basins, and the Newton polish uses the
exact overlap, so this factorisation does not change the distances (tests check both).
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

from . import xp as _xp
from .special import scaled_spherical_in, spherical_harmonics

_LOCK = threading.Lock()
_CACHE: dict = {}


def _coupling(a: np.ndarray, b: np.ndarray, kappa: float, L: int) -> np.ndarray:
    """``f_l(a_p, b_q)`` for l = 0..L: shape ``(L+1, len(a), len(b))`` (float64)."""
    k = kappa * np.multiply.outer(a, b)
    ie = scaled_spherical_in(k, L)  # exp(-k) i_l(k)
    return (4 * math.pi) * np.exp(-0.5 * kappa * np.subtract.outer(a, b) ** 2)[None] * ie


class RadialBasis:
    """``phi_ln(r)`` tabulated on ``[0, r_max]`` with ``f_l(a, b) ~= sum_n phi_ln(a) phi_ln(b)``.

    ``sizes[l]`` terms are kept for each l (the table is zero-padded to ``n_max``). Instances are
    cached per ``(kappa, r_max, L, tol)``: use :meth:`get`.
    """

    def __init__(self, kappa: float, r_max: float, L: int, tol: float = 1e-10, n_grid: int = 240, n_table: int = 4096,
                 table: np.ndarray | None = None, sizes=None):
        """``table`` and ``sizes``: a basis computed before (:meth:`get` keeps them on disk)."""
        self.kappa, self.r_max, self.L, self.tol = float(kappa), float(r_max), int(L), float(tol)
        self.table_r = np.linspace(0.0, self.r_max, n_table)
        self._dev: dict = {}
        if table is not None:
            self.table, self.sizes = table, [int(k) for k in sizes]
            self.n_max = table.shape[2]
            return
        grid = np.linspace(0.0, self.r_max, n_grid)
        K = _coupling(grid, grid, self.kappa, self.L)  # (L+1, G, G)
        scale = None
        basis = []
        for l in range(self.L + 1):
            lam, U = np.linalg.eigh(K[l])
            lam, U = lam[::-1], U[:, ::-1]
            if scale is None:
                scale = lam[0]
            keep = int(np.sum(lam > self.tol * scale))
            basis.append((lam[:keep], U[:, :keep]))
        self.sizes = [len(b[0]) for b in basis]
        self.n_max = max(max(self.sizes), 1)
        table = np.zeros((n_table, self.L + 1, self.n_max))
        for s in range(0, n_table, 512):  # rows of the table in blocks: the coupling of all l is large
            Kt = _coupling(self.table_r[s : s + 512], grid, self.kappa, self.L)  # (L+1, rows, G)
            for l, (lam, U) in enumerate(basis):
                if len(lam):
                    # Nystrom: f(a, b) ~= k(a)^T K^-1 k(b) with k(r)_q = f(r, r_q), restricted to the
                    # kept eigenvectors: phi_n(r) = k(r) . u_n / sqrt(lam_n)
                    table[s : s + 512, l, : len(lam)] = Kt[l] @ U / np.sqrt(lam)
        self.table = table

    @classmethod
    def get(cls, kappa: float, r_max: float, L: int, tol: float = 1e-10) -> "RadialBasis":
        """The basis of ``(kappa, r_max, L, tol)``, from memory, else from the disk cache
        (:func:`giip_plugin.config.cache_dir`), else computed (about 0.5 s) and kept in both."""
        # r_max rounded up to a grid of half the Gaussian width, so that sets (and single pairs) of
        # similar sizes share one basis, and any r_max at least the largest radius gives a valid basis
        step = 0.5 * math.sqrt(0.5 / float(kappa))
        r_key = math.ceil(max(float(r_max), 1e-3) / step - 1e-9) * step
        key = (round(float(kappa), 12), r_key, int(L), float(tol))
        with _LOCK:
            obj = _CACHE.get(key)
            if obj is None:
                if len(_CACHE) > 16:
                    _CACHE.clear()
                obj = _CACHE[key] = _load(key, kappa) or _save(key, cls(kappa, r_key, L, tol))
        return obj

    def values(self, r):
        """``phi_ln(r)`` for radii ``r (...)`` (numpy array or tensor): shape ``(..., L+1, n_max)``
        (linear interpolation)."""
        xp = _xp.namespace(r)
        if _xp.is_torch(xp):
            key = (str(r.device), r.dtype)
            tab = self._dev.get(key)
            if tab is None:
                tab = self._dev[key] = _xp.asarray(xp, self.table, r)
        else:
            tab = self.table
        n = len(self.table_r) - 1
        x = xp.clip(r / self.r_max, 0.0, 1.0) * n
        i0 = _xp.astype(xp, xp.clip(xp.floor(x), 0, n - 1), xp.int64)
        t = (x - _xp.astype(xp, i0, r.dtype))[..., None, None]
        return tab[i0] * (1 - t) + tab[i0 + 1] * t


_FORMAT = 1  # of the cached files: a change of the basis's construction bumps it


def _path(key):
    import hashlib

    from .. import config

    digest = hashlib.sha1(repr((_FORMAT,) + tuple(key)).encode()).hexdigest()[:16]
    return config.cache_dir() / f"radial_basis_{digest}.npz"


def _load(key, kappa: float) -> "RadialBasis | None":
    """The cached basis of ``key``, or ``None`` (absent, unreadable or not this key's)."""
    try:
        with np.load(_path(key)) as f:
            if tuple(f["key"].tolist()) != tuple(float(k) for k in key):
                return None
            return RadialBasis(kappa, key[1], key[2], key[3], n_table=f["table"].shape[0],
                               table=f["table"], sizes=f["sizes"])
    except (OSError, ValueError, KeyError):
        return None


def _save(key, basis: "RadialBasis") -> "RadialBasis":
    """Write ``basis`` to the disk cache (atomically; a read-only home is fine) and return it."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        np.savez(tmp, key=np.array([float(k) for k in key]), table=basis.table, sizes=np.array(basis.sizes))
        os.replace(tmp, path)
    except OSError:
        pass
    return basis


def harmonic_coefficients(p, w, basis: RadialBasis, chunk: int = 2048):
    """Coefficients ``C[l] (E, C * sizes[l], 2l+1)`` (complex) of padded environments.

    ``p (E, n, 3)`` neighbour positions, ``w (E, n, C)`` weights (zero for padding), numpy arrays
    or tensors (the result is of the same kind). The rows of ``C[l]`` run over (channel, radial
    function of l).
    """
    xp = _xp.namespace(p)
    E, n, C = w.shape
    L = basis.L
    cdt = _xp.complex_dtype(xp, p)
    sizes = basis.sizes
    out = [_xp.zeros(xp, p, (E, C * max(sizes[l], 1), 2 * l + 1), cdt) for l in range(L + 1)]
    for s in range(0, E, chunk):
        pp, ww = p[s : s + chunk], w[s : s + chunk]
        e = pp.shape[0]
        r = xp.sqrt((pp * pp).sum(-1))
        Y = spherical_harmonics(pp, L)  # (e, n, L+1, 2L+1)
        phi = basis.values(r)  # (e, n, L+1, n_max)
        # (e, n, C, L+1, n_max): weight of each neighbour in each (channel, radial function)
        wphi = _xp.astype(xp, ww[..., :, None, None] * phi[..., None, :, :], cdt)
        for l in range(L + 1):
            y = Y[:, :, l, L - l : L + l + 1]  # (e, n, 2l+1)
            k = max(sizes[l], 1)
            # sum over neighbours: (e, C k, n) @ (e, n, 2l+1)
            out[l][s : s + chunk] = xp.matmul(xp.swapaxes(wphi[:, :, :, l, :k].reshape(e, n, C * k), 1, 2), y)
    return out
