"""Special functions for the rotation search, batched, for numpy arrays and PyTorch tensors
(CPU or CUDA) alike (:mod:`.xp`: numpy input does not import PyTorch):

* scaled modified spherical Bessel functions ``exp(-k) i_l(k)`` (3D) and scaled modified Bessel
  functions ``exp(-k) I_n(k)`` (2D), from a backward continued fraction for the ratios (stable for
  every ``k >= 0``);
* complex orthonormal spherical harmonics ``Y_lm`` (Condon-Shortley phase);
* the band limit of the grid search, and the Euler-angle geometry of its grid;
* tables of the matrices ``d(beta)`` with ``Y_l(R_y(beta) x) = d(beta) Y_l(x)``, computed by exact
  quadrature from the same ``Y_lm`` so that no convention can disagree.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import xp as _xp


def _bessel_ratios(k, n_max: int, spherical: bool) -> list:
    """Ratios ``rho_n = B_n / B_{n-1}`` for n = 1..n_max by a backward continued fraction."""
    xp = _xp.namespace(k)
    kmax = float(k.max()) if _xp.size(k) else 0.0
    start = n_max + 10 + int(math.ceil(3.0 * math.sqrt(max(kmax, 1.0))))  # converged to ~1e-14
    rho = xp.zeros_like(k)
    out = [None] * (n_max + 1)
    for n in range(start, 0, -1):
        c = (2 * n + 1) if spherical else (2 * n)
        rho = k / (c + k * rho)
        if n <= n_max:
            out[n] = rho
    return out


def _from_ratios(first, k, n_max: int, spherical: bool):
    """Stack ``B_0 .. B_n_max`` from ``B_0`` and the ratios ``B_n / B_{n-1}``."""
    rho = _bessel_ratios(k, n_max, spherical=spherical)
    vals = [first]
    for n in range(1, n_max + 1):
        vals.append(vals[-1] * rho[n])
    return _xp.namespace(k).stack(vals)


def scaled_spherical_in(k, l_max: int):
    """``exp(-k) i_l(k)`` for l = 0..l_max, stacked on a new first axis. ``k >= 0``."""
    xp = _xp.namespace(k)
    small = k < 1e-8
    ks = xp.where(small, xp.ones_like(k), k)
    i0 = xp.where(small, xp.ones_like(k), -xp.expm1(-2.0 * ks) / (2.0 * ks))
    return _from_ratios(i0, k, l_max, spherical=True)


def scaled_bessel_in(k, n_max: int):
    """``exp(-k) I_n(k)`` for n = 0..n_max, stacked on a new first axis. ``k >= 0``."""
    xp = _xp.namespace(k)
    if _xp.is_torch(xp):
        i0e = xp.special.i0e(k)
    else:
        from scipy.special import i0e as scipy_i0e

        i0e = scipy_i0e(k)
    return _from_ratios(i0e, k, n_max, spherical=False)


def band_limit(k_max: float, tol: float = 1e-4, l_min: int = 4, l_max: int = 32, spherical=True) -> int:
    """Smallest ``l`` with ``i_l(k)/i_0(k) < tol`` at the largest ``k`` (clipped to a range).

    The cap (32) bounds the grid's cost; beyond it (a Gaussian width far below the cutoff, e.g.
    sigma < r_outer / 6) the grid sees a smoothed overlap, which still locates the basins, and the
    exact Newton polish gives the maximum of the true function."""
    k = np.array([max(k_max, 1e-6)], dtype=np.float64)
    f = scaled_spherical_in if spherical else scaled_bessel_in
    v = f(k, l_max)[:, 0]
    small = np.flatnonzero(v / v[0] < tol)
    L = int(small[0]) if len(small) else l_max
    return int(min(max(L, l_min), l_max))


GRID_OVERSAMPLE_2D = 4.0  # angles of the 2D grid per band-limited degree of freedom: 2 ceil(4 (L + 1)) angles


def so3_grid_geometry(L: int, oversample: float = 1.0):
    """The Euler-angle grid of band limit ``L``: ``N`` samples of alpha and of gamma (even, at
    least ``2L + 2``), and the ``n_beta`` midpoint angles beta in ``(0, pi)``."""
    N = int(2 * math.ceil(oversample * (L + 1)))
    n_beta = int(math.ceil(oversample * (L + 1)))
    return N, n_beta, np.pi * (np.arange(n_beta) + 0.5) / n_beta


def spherical_harmonics(u, l_max: int):
    """Complex orthonormal ``Y_lm`` of unit vectors ``u (..., 3)`` (numpy array or tensor).

    Returns ``(..., l_max + 1, 2 l_max + 1)``; entry ``[l, l_max + m]`` holds ``Y_lm`` and entries
    with ``|m| > l`` are zero. Zero vectors are treated as the +z direction (only ``l = 0`` matters
    for them since the radial factor of ``l > 0`` vanishes at the origin).
    """
    xp = _xp.namespace(u)
    real = _xp.real_dtype(xp, u)
    cdtype = _xp.complex_dtype(xp, u)
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    tiny = xp.finfo(real).tiny
    rxy = xp.sqrt(x * x + y * y)
    r = xp.sqrt(rxy * rxy + z * z)
    zero = r <= tiny
    r = xp.where(zero, xp.ones_like(r), r)
    ct = xp.where(zero, xp.ones_like(z), z / r)
    st = rxy / r
    on_axis = rxy <= tiny
    rxy_s = xp.where(on_axis, xp.ones_like(rxy), rxy)
    c = xp.where(on_axis, xp.ones_like(x), x / rxy_s)  # cos(phi), sin(phi)
    s = xp.where(on_axis, xp.zeros_like(y), y / rxy_s)
    shape = tuple(u.shape[:-1])
    out = _xp.zeros(xp, u, shape + (l_max + 1, 2 * l_max + 1), cdtype)
    # real and imaginary parts written separately, in real arithmetic (the fastest form in numpy
    # and in PyTorch alike)
    out_re, out_im = out.real, out.imag
    # normalised associated Legendre functions, column by column in m, times cos(m phi), sin(m phi)
    pmm = _xp.full(xp, u, shape, math.sqrt(1.0 / (4.0 * math.pi)), real)
    cm, sm = xp.ones_like(c), xp.zeros_like(c)
    for m in range(0, l_max + 1):
        if m > 0:
            pmm = -math.sqrt((2 * m + 1) / (2.0 * m)) * st * pmm
            cm, sm = cm * c - sm * s, sm * c + cm * s
        p_prev2, p_prev = None, pmm
        for l in range(m, l_max + 1):
            if l == m:
                p = pmm
            elif l == m + 1:
                p = math.sqrt(2 * m + 3) * ct * pmm
            else:
                a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
                p = a * (ct * p_prev - b * p_prev2)
            if l > m:
                p_prev2, p_prev = p_prev, p
            re, im = p * cm, p * sm
            out_re[..., l, l_max + m] = re
            out_im[..., l, l_max + m] = im
            if m > 0:  # Y_l,-m = (-1)^m conj(Y_lm)
                sign = -1.0 if m % 2 else 1.0
                out_re[..., l, l_max - m] = sign * re
                out_im[..., l, l_max - m] = -sign * im
    return out


def rot_y(beta):
    c, s = np.cos(beta), np.sin(beta)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(alpha):
    c, s = np.cos(alpha), np.sin(alpha)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def euler_zyz(alpha, beta, gamma):
    """Rotation matrices ``R_z(alpha) R_y(beta) R_z(gamma)`` (numpy, broadcasting)."""
    return rot_z(alpha) @ rot_y(beta) @ rot_z(gamma)


def _cache_dir():
    from .. import config

    return str(config.cache_dir())


@lru_cache(maxsize=16)
def wigner_small_d_table(l_max: int, betas: tuple) -> np.ndarray:
    """Cached (in memory, and on disk in :func:`giip_plugin.config.cache_dir` for
    band limits above 16, whose tables take seconds to compute) :func:`_wigner_small_d_table`."""
    import hashlib
    import os

    if l_max <= 16:
        return _wigner_small_d_table(l_max, betas)
    key = hashlib.sha1(np.asarray(betas, dtype=float).tobytes()).hexdigest()[:16]
    path = os.path.join(_cache_dir(), f"wigner_d_L{l_max}_{key}.npy")
    try:
        table = np.load(path)
        if table.shape == (len(betas), l_max + 1, 2 * l_max + 1, 2 * l_max + 1):
            return table
    except (OSError, ValueError):
        pass
    table = _wigner_small_d_table(l_max, betas)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npy"
        np.save(tmp, table)
        os.replace(tmp, path)
    except OSError:  # a read-only home is fine: the table is just not kept
        pass
    return table


def _wigner_small_d_table(l_max: int, betas: tuple) -> np.ndarray:
    """``d[k, l, L + m, L + m']`` with ``Y_lm(R_y(beta_k) x) = sum_m' d[k, l, m, m'] Y_lm'(x)``.

    Computed by product Gauss quadrature (exact for these band-limited integrands) from
    :func:`spherical_harmonics` itself. The matrices are real for rotations about y.
    """
    n_t, n_p = l_max + 2, 2 * l_max + 4
    xg, wg = np.polynomial.legendre.leggauss(n_t)
    phi = 2 * np.pi * np.arange(n_p) / n_p
    ct = np.repeat(xg, n_p)
    st = np.sqrt(1 - ct * ct)
    ph = np.tile(phi, n_t)
    pts = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1)
    wq = np.repeat(wg, n_p) * (2 * np.pi / n_p)
    Y = spherical_harmonics(pts, l_max)  # (Q, l+1, 2L+1)
    M = 2 * l_max + 1
    out = np.zeros((len(betas), l_max + 1, M, M))
    Yre = [np.ascontiguousarray(Y[:, l, l_max - l : l_max + l + 1].real) for l in range(l_max + 1)]
    Yim = [np.ascontiguousarray(Y[:, l, l_max - l : l_max + l + 1].imag) for l in range(l_max + 1)]
    for k, beta in enumerate(betas):
        Yr = spherical_harmonics(pts @ rot_y(beta).T, l_max) * wq[:, None, None]
        for l in range(l_max + 1):
            s = slice(l_max - l, l_max + l + 1)
            A = Yr[:, l, s].T  # (2l+1, Q)
            ar, ai = np.ascontiguousarray(A.real), np.ascontiguousarray(A.imag)
            # d[l, m, m'] = sum_q w_q Y_lm(R x_q) conj(Y_lm'(x_q)); real for rotations about y
            im = ai @ Yre[l] - ar @ Yim[l]
            if np.abs(im).max() > 1e-9:
                raise RuntimeError("Wigner d table is not real: spherical harmonics convention broken")
            out[k, l, s, s] = ar @ Yre[l] + ai @ Yim[l]
    # entries with |m| > l or |m'| > l are exactly zero
    return out
