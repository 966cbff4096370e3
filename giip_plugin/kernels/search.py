"""Exact maximisation of the GIIP overlap over rotations (and rotoinversions).

``f(R) = <A, R B> = sum_ij W_ij exp(-kappa_ij |a_i - R b_j|^2 / 2)`` is maximised in two stages:

1. **Global stage (band-limited grid search).** With ``exp(k cos t) = sum_l (2l+1) i_l(k) P_l(cos t)``
   and the addition theorem, ``f`` is a band-limited function on the rotation group. In 3D, on
   Euler angles ``R = R_z(alpha) R_y(beta) R_z(gamma)``,

       f = 4 pi sum_l sum_mm' e^{-i m alpha} d^l_mm'(beta) e^{-i m' gamma} G^l_mm',
       G^l_mm' = sum_ij W_ij e^{-kappa (r_i - r_j)^2 / 2} [e^{-k} i_l(k)]_{k = kappa r_i r_j} Y_lm(a_i) conj(Y_lm'(b_j)),

   so for every beta of a grid one 2D FFT gives f on a full (alpha, gamma) grid. Rotoinversions
   are free: ``-R`` flips the sign of the odd-l terms. In 2D the same is a 1D Fourier series with
   modified Bessel coefficients. The band limit is chosen from the largest ``k`` so that the
   neglected terms are below ``band_tol`` (1e-4) of the leading one; the grid only locates basins.
   Coarser band limits are faster but miss basins: on 1,500 random NiNb pairs, 1e-2 (L = 9) and
   1e-3 (L = 11) missed the optimum of a 6-candidate, 1.5x oversampled search on 2 pairs (by up
   to 0.005 atoms), whatever the number of candidates. At 1e-4 (L = 13), 4 candidates per parity
   missed one optimum in 1,500 pairs (by 0.006 atoms); 6 (the default) missed none of 4,500 pairs
   checked against an 8-candidate, 1.5x oversampled search.
2. **Local stage (Newton polish on the exact function).** From the best local maxima of the grid
   (several per parity), Newton steps on a rotation-vector parameterisation with the analytic
   gradient and Hessian of the exact sum of Gaussians converge quadratically to the maximum.

The result is the exact optimum (to floating-point precision) whenever the global maximum's basin
is among the polished candidates; tests check it against dense searches.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch

from .special import GRID_OVERSAMPLE_2D, euler_zyz, scaled_bessel_in, scaled_spherical_in, so3_grid_geometry, wigner_small_d_table


# ---------------------------------------------------------------------------------------------
# rotations
def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``exp([omega]_x)`` for rotation vectors ``omega (..., 3)`` (Rodrigues)."""
    theta = torch.linalg.norm(omega, dim=-1, keepdim=True)
    small = theta < 1e-12
    axis = omega / torch.where(small, torch.ones_like(theta), theta)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = torch.zeros_like(x)
    K = torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2)
    s = torch.sin(theta)[..., None]
    c = (1 - torch.cos(theta))[..., None]
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand(K.shape)
    return eye + s * K + c * (K @ K)


def so2_matrix(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


# ---------------------------------------------------------------------------------------------
# local stage
def _overlap_with(a, c, W, kappa):
    """Terms ``e_ij = W_ij exp(-kappa |a_i - c_j|^2 / 2)``: a (..., na, d), c (..., nb, d).

    Broadcast arithmetic rather than batched matmuls: the matrices are tiny (d = 2 or 3), where
    elementwise kernels over the whole batch are far faster than one small GEMM per pair.
    """
    if _tiny(a, c):
        d2 = ((a[..., :, None, :] - c[..., None, :, :]) ** 2).sum(-1)
    else:
        d2 = ((a * a).sum(-1)[..., :, None] + (c * c).sum(-1)[..., None, :] - 2.0 * (a @ c.transpose(-1, -2))).clamp_min(0.0)
    return W * torch.exp(-0.5 * kappa * d2)


def _tiny(a, c) -> bool:
    """Whether the per-pair matrices are so small that broadcasting beats batched GEMMs."""
    return a.shape[-2] * c.shape[-2] < 100


def _skew(v):
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2)


def _newton_step(a, c, e, kap, dim):
    """Ascent step (rotation vector, or angle in 2D) from the analytic gradient and Hessian.

    With ``c_j = R b_j`` and ``R -> exp([w]) R``: ``grad = sum_ij k e_ij (c_j x a_i)`` and
    ``Hess = sum_ij e_ij [k^2 u u^T + k ((a c^T + c a^T)/2 - (a.c) I)]``, ``u = c_j x a_i``; the
    sums over i are contracted first (``O(na nb)`` work). The step uses ``|eigenvalues|`` of the
    Hessian (a saddle-free Newton step) inside a 0.3 rad trust region.
    """
    ek = e * kap
    ekk = ek * kap
    if _tiny(a, c):
        At = (ek[..., :, :, None] * a[..., :, None, :]).sum(-3)  # (n, nb, d): sum_i ek_ij a_i
        aa = a[..., :, None, :, None] * a[..., :, None, None, :]  # (n, na, 1, d, d)
        Mj = (ekk[..., None, None] * aa).sum(-4)  # (n, nb, d, d): sum_i ekk_ij a_i a_i^T
        S = (At[..., :, :, None] * c[..., :, None, :]).sum(-3)  # (n, d, d): sum_ij ek_ij a_i c_j^T
    else:
        At = ek.transpose(-1, -2) @ a
        aa = (a[..., :, None] * a[..., None, :]).flatten(-2)
        Mj = (ekk.transpose(-1, -2) @ aa).unflatten(-1, (dim, dim))
        S = a.transpose(-1, -2) @ (ek @ c)
    tr = S.diagonal(dim1=-2, dim2=-1).sum(-1)
    if dim == 3:
        g = torch.cross(c, At, dim=-1).sum(-2)
        C = _skew(c)
        H = (C @ Mj @ C.transpose(-1, -2)).sum(-3) + 0.5 * (S + S.transpose(-1, -2))
        H = H - tr[..., None, None] * torch.eye(3, dtype=a.dtype, device=a.device)
        lam, V = torch.linalg.eigh(H)
        scale = lam.abs().clamp_min(1e-12 * (lam.abs().amax(-1, keepdim=True) + 1e-300))
        gv = (V.transpose(-1, -2) @ g[..., None])[..., 0]
        step = (V @ (gv / scale)[..., None])[..., 0]
        gain = 0.5 * (gv * gv / scale).sum(-1)
        concave = (lam < 0).all(-1)
    else:
        cx, cy = c[..., 0], c[..., 1]
        g = (cx * At[..., 1] - cy * At[..., 0]).sum(-1, keepdim=True)
        H = (cx * cx * Mj[..., 1, 1] - 2 * cx * cy * Mj[..., 0, 1] + cy * cy * Mj[..., 0, 0]).sum(-1) - tr
        step = g / H.abs().clamp_min(1e-300)[..., None]
        gain = 0.5 * g[..., 0] * step[..., 0]
        concave = H < 0
    norm = torch.linalg.norm(step, dim=-1, keepdim=True)
    concave = concave & (norm[..., 0] <= _TRUST)
    return step * torch.clamp(_TRUST / norm.clamp_min(1e-300), max=1.0), gain, concave


_TRUST = 0.3  # trust radius of a Newton step (rad)
_PRUNE_FROM = 0  # first iteration after which hopeless starts are dropped


def _rotate(step, R, dim):
    return (so3_exp(step) if dim == 3 else so2_matrix(step[..., 0])) @ R


def polish(a, b, W, kappa, R0, max_iter: int = 50, tol: float | None = None):
    """Newton ascent of ``f(R) = sum_ij W_ij exp(-kappa |a_i - R b_j|^2 / 2)`` from ``R0``.

    ``a (P, na, d)``, ``b (P, nb, d)``, ``W (P, na, nb)``, ``kappa`` a tensor broadcastable to
    ``W``, ``R0 (P, K, d, d)`` starting orthogonal matrices (det -1 allowed: the parity is kept).
    Returns ``f (P, K)`` and ``R (P, K, d, d)`` at the local maxima. Converged starts leave the
    active batch, so the cost follows the slowest few only where they are.
    """
    P, K, dim = R0.shape[0], R0.shape[1], a.shape[-1]
    if tol is None:  # step size (rad) below which the maximum is reached to rounding precision
        tol = 1e-7 if a.dtype == torch.float64 else 1e-4  # quadratic convergence: the last step leaves ~1e-14 rad
    rel = 1e-13 if a.dtype == torch.float64 else 1e-6
    pidx = torch.arange(P, device=a.device).repeat_interleave(K)
    R = R0.reshape(P * K, dim, dim).clone()
    kap_full = kappa.expand(P, -1, -1) if kappa.shape[0] == 1 else kappa

    def terms(idx, Rs):
        p = pidx[idx]
        aa, bb, WW, kk = a[p], b[p], W[p], kap_full[p]
        cc = bb @ Rs.transpose(-1, -2)
        return aa, cc, _overlap_with(aa, cc, WW, kk), kk, bb

    idx = torch.arange(P * K, device=a.device)
    f = torch.empty(P * K, dtype=a.dtype, device=a.device)
    aa, cc, e, kk, bb = terms(idx, R)
    f[idx] = e.sum((-1, -2))
    best = torch.full((P,), -math.inf, dtype=a.dtype, device=a.device)
    for it in range(max_iter):
        step, gain, concave = _newton_step(aa, cc, e, kk, dim)
        f_before = f[idx].clone()
        Rn = _rotate(step, R[idx], dim)
        cn = bb @ Rn.transpose(-1, -2)
        en = _overlap_with(aa, cn, W[pidx[idx]], kk)
        fn = en.sum((-1, -2))
        ok = fn >= f[idx] - rel * f[idx].abs()
        for _bt in range(10):  # backtracking where the step overshot
            if bool(ok.all()):
                break
            bad = torch.nonzero(~ok)[:, 0]
            step[bad] *= 0.5
            Rb = _rotate(step[bad], R[idx[bad]], dim)
            cb = bb[bad] @ Rb.transpose(-1, -2)
            eb = _overlap_with(aa[bad], cb, W[pidx[idx[bad]]], kk[bad])
            fb = eb.sum((-1, -2))
            Rn[bad], cn[bad], en[bad], fn[bad] = Rb, cb, eb, fb
            ok[bad] = fb >= f[idx[bad]] - rel * f[idx[bad]].abs()
        keep_old = ~ok
        step[keep_old] = 0.0
        Rn[keep_old] = R[idx[keep_old]]
        R[idx] = Rn
        f[idx] = torch.where(ok, fn, f[idx])
        cc = torch.where(ok[:, None, None], cn, cc)
        e = torch.where(ok[:, None, None], en, e)
        active = torch.linalg.norm(step, dim=-1) > tol
        # Starts that cannot win: inside a concave quadratic model whose (unclipped) Newton step
        # predicts a local maximum of f_before + gain, and even twice that gain stays below the
        # best value already reached by another start of the same pair.
        best = best.scatter_reduce(0, pidx[idx], f[idx], reduce="amax")
        if it >= _PRUNE_FROM:
            hopeless = concave & (f_before + 2.0 * gain + 1e-12 * f_before.abs() < best[pidx[idx]] - 1e-9)
            active &= ~hopeless
        if not bool(active.any()):
            break
        sel = torch.nonzero(active)[:, 0]
        idx, aa, cc, e, kk, bb = idx[sel], aa[sel], cc[sel], e[sel], kk[sel], bb[sel]
    return f.reshape(P, K), R.reshape(P, K, dim, dim)


# ---------------------------------------------------------------------------------------------
# global stage, 3D
class SO3Grid:
    """Euler-angle grid and Wigner tables for band limit ``L`` (cached per (L, device, dtype))."""

    _cache: dict = {}

    def __new__(cls, L: int, device, dtype, oversample: float = 1.0):
        key = (L, str(device), dtype, oversample)
        if key not in cls._cache:
            obj = super().__new__(cls)
            obj._init(L, device, dtype, oversample)
            cls._cache[key] = obj
        return cls._cache[key]

    def _init(self, L, device, dtype, oversample):
        self.L = L
        M = 2 * L + 1
        self.N, self.n_beta, self.betas = so3_grid_geometry(L, oversample)  # alpha, gamma samples; betas
        d = wigner_small_d_table(L, tuple(self.betas.tolist()))  # (nb, L+1, M, M)
        parity = (-1.0) ** np.arange(L + 1)
        # rows ordered (beta, parity): proper rotations R use d, rotoinversions -R use (-1)^l d
        stacked = np.stack([d, d * parity[None, :, None, None]], axis=1)  # (nb, 2, L+1, M, M)
        # only the orders m' >= 0 are needed: f is real, and the inverse real FFT over gamma reads
        # half of the spectrum (see grid_from_coupling)
        half = stacked.transpose(3, 4, 0, 1, 2)[:, L:].reshape(M * (L + 1), 2 * self.n_beta, L + 1)
        self.table = torch.from_numpy(np.ascontiguousarray(half)).to(device=device, dtype=dtype)
        self.table_proper = torch.from_numpy(np.ascontiguousarray(half.reshape(M * (L + 1), self.n_beta, 2, L + 1)[:, :, 0])).to(device=device, dtype=dtype)

    def rotations(self, a_idx, b_idx, g_idx):
        al = 2 * np.pi * a_idx / self.N
        be = self.betas[b_idx]
        ga = 2 * np.pi * g_idx / self.N
        return euler_zyz(al, be, ga)

    def rotation_table(self) -> torch.Tensor:
        """The rotation of every grid point, ``(N * N * n_beta, 3, 3)`` in float64 on the grid's
        device, in the flat order of the grid values (alpha, gamma, beta): candidates are gathered
        from it where they are found (no round trip through host memory on a GPU)."""
        if getattr(self, "_rot", None) is None:
            ai, gi, bi = np.meshgrid(np.arange(self.N), np.arange(self.N), np.arange(self.n_beta), indexing="ij")
            table = self.rotations(ai.reshape(-1), bi.reshape(-1), gi.reshape(-1))
            self._rot = torch.from_numpy(np.ascontiguousarray(table)).to(self.table.device)
        return self._rot


def _local_maxima_topk(flat: torch.Tensor, shape, K: int, pool: int = 48):
    """Up to ``K`` local maxima per column of ``flat (G, B)``, grids of ``shape`` flattened in
    C order on the first axis: ``(N, N, nbeta)`` (circular in the two angles, edges in beta) or
    ``(N,)`` (circular). Returns values and flat indices ``(K, B)``, best first.

    Only the ``pool`` largest values are examined: each is compared with its 26 (or 2) grid
    neighbours, and the best ``K`` local maxima are returned (padded with the best remaining
    values when fewer are found).
    """
    pool = min(pool, flat.shape[0])
    vals, idx = torch.topk(flat, pool, dim=0)
    is_max = torch.ones_like(vals, dtype=torch.bool)
    if len(shape) == 3:
        N, _, nb = shape
        ai, rem = idx // (N * nb), idx % (N * nb)
        gi, bi = rem // nb, rem % nb
        for db in (-1, 0, 1):
            bn = bi + db
            valid = (bn >= 0) & (bn < nb)
            bn = bn.clamp(0, nb - 1)
            for da in (-1, 0, 1):
                an = (ai + da) % N
                for dg in (-1, 0, 1):
                    if db == 0 and da == 0 and dg == 0:
                        continue
                    nv = flat.gather(0, (an * N + (gi + dg) % N) * nb + bn)
                    is_max &= ~valid | (vals >= nv)
    else:
        N = shape[0]
        is_max = (vals >= flat.gather(0, (idx + 1) % N)) & (vals >= flat.gather(0, (idx - 1) % N))
    rank = torch.arange(pool, device=flat.device)[:, None] + pool * (~is_max).to(torch.long)
    order = torch.argsort(rank, dim=0)[: min(K, pool)]
    return vals.gather(0, order), idx.gather(0, order)


_FFT_BUFFERS = threading.local()


def _fft_buffer(shape, dtype, device):
    """A zeroed buffer, reused between calls of one thread, for arrays of which a fixed set of
    entries is fully overwritten at each call while the rest must stay 0 (the FFT input: its first
    L+1 / last L rows and first L+1 columns; the coupling G: its entries with |m|, m' <= l).
    Off the CPU a fresh buffer each call: zeroing is one cheap launch there, and buffers of large
    GPU chunks (gigabytes) kept for every chunk size seen would hold the memory the chunks need."""
    if torch.device(device).type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    cache = getattr(_FFT_BUFFERS, "d", None)
    if cache is None:
        cache = _FFT_BUFFERS.d = {}
    key = (tuple(shape), dtype, str(device))
    buf = cache.get(key)
    if buf is None:
        if len(cache) > 8:
            cache.clear()
        buf = cache[key] = torch.zeros(shape, dtype=dtype, device=device)
    return buf


def grid_candidates_3d(ra, Ya, rb, Yb, W, kappa, L: int, parities: int, K: int, oversample: float = 1.0):
    """Candidate rotations (P, parities*K, 3, 3) from the band-limited grid search, with the coupling
    ``G`` summed over the pairs of neighbours (any per-atom widths)."""
    P, na, nb = W.shape
    M = 2 * L + 1
    k = kappa * ra[:, :, None] * rb[:, None, :]
    base = W * torch.exp(-0.5 * kappa * (ra[:, :, None] - rb[:, None, :]) ** 2)
    ie = scaled_spherical_in(k.expand(P, na, nb), L)  # (L+1, P, na, nb)
    c = ((4 * math.pi) * base[None] * ie).transpose(0, 1)  # (P, L+1, na, nb) real
    # G^l_mm' = sum_ij Y_lm(a_i) c^l_ij conj(Y_lm'(b_j)) for m' >= 0; the real factor first, as a
    # real matmul one l at a time, on the non-zero orders only
    G = _fft_buffer((M, L + 1, L + 1, P), Ya.dtype, Ya.device)  # (m, m' >= 0, l, pair)
    for l in range(L + 1):
        s, w = slice(L - l, L + l + 1), l + 1
        yb = Yb[:, :, l, L : L + l + 1]  # (P, nb, l+1): m' >= 0
        Tr = c[:, l] @ torch.cat([yb.real, -yb.imag], -1)  # (P, na, 2(l+1)): c conj(Yb), real|imag
        G[s, :w, l] = (Ya[:, :, l, s].transpose(1, 2) @ torch.complex(Tr[..., :w], Tr[..., w:])).permute(1, 2, 0)
    return grid_from_coupling(G, L, parities, K, oversample)


def grid_candidates_3d_coef(Ca, Cb, L: int, parities: int, K: int, oversample: float = 1.0, out_dtype=None,
                            pool: int = 48):
    """As :func:`grid_candidates_3d`, from per-environment harmonic coefficients
    (:func:`~giip_plugin.kernels.radial.harmonic_coefficients`, gathered per pair: ``Ca[l] (P, k_l,
    2l+1)``): ``G^l = Ca^l^T conj(Cb^l)``, one small product per pair and l. The grid runs in the
    precision of the coefficients; the rotations are returned as ``out_dtype``."""
    P = Ca[0].shape[0]
    M = 2 * L + 1
    G = _fft_buffer((M, L + 1, L + 1, P), Ca[0].dtype, Ca[0].device)  # (m, m' >= 0, l, pair)
    for l in range(L + 1):
        G[L - l : L + l + 1, : l + 1, l] = (Ca[l].transpose(1, 2) @ Cb[l][:, :, l:].conj()).permute(1, 2, 0)
    return grid_from_coupling(G, L, parities, K, oversample, out_dtype, pool)


def grid_from_coupling(G, L: int, parities: int, K: int, oversample: float = 1.0, out_dtype=None, pool: int = 48):
    """Grid search of ``f = sum_l sum_mm' e^{-i m alpha} d^l_mm'(beta) e^{-i m' gamma} G^l_mm'``
    from ``G (2L+1, L+1, L+1, P)``, indexed ``[L + m, m', l, pair]`` (orders ``m' >= 0`` only; the
    factor 4 pi included; entries with ``|m| > l`` or ``m' > l`` zero). Returns candidate rotations
    ``(P, parities*K, 3, 3)`` (rotoinversions ``-R`` for the second parity; computed in float64 from
    the grid angles, returned as ``out_dtype``, default G's precision) and their grid values.
    ``pool``: the largest grid values examined for local maxima."""
    P = G.shape[-1]
    dtype = G.real.dtype
    grid = SO3Grid(L, G.device, dtype, oversample)
    M, N, nbeta = 2 * L + 1, grid.N, grid.n_beta
    Gr = torch.view_as_real(G).reshape(M * (L + 1), L + 1, 2 * P)  # a view: no copy
    table = grid.table if parities == 2 else grid.table_proper
    H = torch.bmm(table, Gr)  # (M*(L+1), nbeta*parities, 2P)
    H = torch.view_as_complex(H.reshape(M, L + 1, nbeta * parities, P, 2))  # (M, L+1, nbeta*par, P)
    # f(alpha, gamma) = sum_mm' H_mm' e^{-i m alpha - i m' gamma} is real; an inverse real FFT of
    # H'_mm' = H_{-m,-m'} over half the m' range gives f on the grid. By the symmetries
    # d^l_{-m,-m'} = (-1)^(m-m') d^l_mm' and G^l_{-m,-m'} = (-1)^(m+m') conj(G^l_mm'), H' = conj(H).
    Hp = _fft_buffer((N, N // 2 + 1) + H.shape[2:], H.dtype, H.device)
    Hp[: L + 1, : L + 1] = H[L:].conj()
    Hp[N - L :, : L + 1] = H[:L].conj()
    # two 1D transforms (as irfft2 does, but about 2x faster than it on this strided layout)
    Fg = torch.fft.irfft(torch.fft.ifft(Hp, dim=0, norm="forward"), n=N, dim=1, norm="forward")  # (N, N, nbeta*par, P)
    Fg = Fg.reshape(N, N, nbeta, parities, P).reshape(N * N * nbeta, parities * P)
    vals, idx = _local_maxima_topk(Fg, (N, N, nbeta), K, pool)  # (K, parities*P)
    idx = idx.reshape(-1, parities, P).permute(2, 1, 0)  # (P, parities, K): flat (alpha, gamma, beta)
    Rm = grid.rotation_table()[idx]  # (P, parities, K, 3, 3), float64, on the device
    if parities == 2:
        Rm[:, 1] *= -1.0
    R0 = Rm.reshape(P, -1, 3, 3).to(dtype=out_dtype or dtype)
    return R0, vals.reshape(-1, parities, P).permute(2, 1, 0).reshape(P, -1)


def grid_candidates_2d(ra, Ea, rb, Eb, W, kappa, n_max: int, parities: int, K: int,
                       oversample: float = GRID_OVERSAMPLE_2D):
    """Candidate 2x2 orthogonal matrices (P, parities*K, 2, 2) from the Fourier series of f."""
    P, na, nb = W.shape
    k = kappa * ra[:, :, None] * rb[:, None, :]
    base = W * torch.exp(-0.5 * kappa * (ra[:, :, None] - rb[:, None, :]) ** 2)
    ie = scaled_bessel_in(k.expand(P, na, nb), n_max)  # (n+1, P, na, nb)
    c = (base[None] * ie).permute(1, 0, 2, 3).to(Ea.dtype)  # (P, n+1, na, nb)
    Ea_ = torch.conj(Ea).permute(0, 2, 1)[..., None, :]  # (P, n+1, 1, na)
    N = int(2 * math.ceil(oversample * (n_max + 1)))
    grids = []
    for par in range(parities):
        Eb_ = (Eb if par == 0 else torch.conj(Eb)).permute(0, 2, 1)[..., :, None]  # (P, n+1, nb, 1)
        Fn = (Ea_ @ c @ Eb_)[..., 0, 0]  # (P, n+1)
        grids.append(torch.fft.irfft(Fn, n=N) * N)
    Fg = torch.stack(grids, 1)  # (P, parities, N)
    vals, idx = _local_maxima_topk(Fg.reshape(P * parities, N).T, (N,), K)
    vals, idx = vals.T, idx.T
    theta = (2 * np.pi * idx.to(torch.float64) / N).to(dtype=W.dtype).reshape(P, parities, -1)
    Rm = so2_matrix(theta)
    if parities == 2:
        refl = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=W.dtype, device=W.device)
        Rm = torch.cat([Rm[:, :1], Rm[:, 1:] @ refl], 1)
    return Rm.reshape(P, -1, 2, 2), vals.reshape(P, -1)
