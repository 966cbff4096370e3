"""Fused CPU kernel of the fast path's coarse rotation search (numba), for whole frames.

:meth:`ReferenceMap.distance_rows(fast=True) <giip_plugin.reference.ReferenceMap.distance_rows>`
needs a coarse distance for every (atom, training environment) pair: ~1.35e7 pairs for a
13,500-atom NiNb frame against 2,000 references. The PyTorch path (:mod:`.search`) runs the same
algorithm on large batched tensors, where the per-pair arrays are tiny and the time goes into memory
traffic and kernel launches. Here one compiled kernel does everything for one atom against all
references, ``LANES`` references side by side in the innermost loop (SIMD lanes):

1. **Grid** (single precision, as in :func:`.search.grid_candidates_3d_coef`): the coupling
   ``G^l = C_A^l^T conj(C_B^l)`` from the harmonic coefficients (:mod:`.radial`); for every beta of
   the Euler grid, ``H = sum_l d^l(beta) G^l`` split into even and odd l (proper rotations and
   rotoinversions from one transform: ``f = f_even +- f_odd``), then the two real Fourier sums
   over ``m'`` (gamma) and ``m`` (alpha). The best grid point of each parity is kept (the best
   local maximum of the grid: the ``candidates = 1`` search of :data:`FAST_SETTINGS_LARGE`).
2. **Newton polish** (double precision, on the exact sum of Gaussians): from each start,
   ``n_iter`` Newton steps with the analytic gradient and Hessian (Cholesky of ``-H`` where it is
   negative definite, else a gradient step; 0.3 rad trust radius); a step that lowers the overlap
   is not taken and the next one is damped. Every value is the overlap at an actual rotation, so
   the distances are upper bounds of the exact ones, as on the PyTorch path.

The Gaussians use a vectorisable ``exp`` (a degree-16 Taylor polynomial around -0.78 of ``x/128``,
squared seven times; relative error below 1e-13 for ``x`` in [-200, 0], checked in the tests).

Only the 3D case with one common sigma and the groups O(3) / SO(3) is covered (that of every
reference built from a structure); others use the PyTorch path. Calls are serialised by a lock
(numba's default thread pool does not accept concurrent launches).
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

try:  # optional: without numba the PyTorch path is used
    import numba as nb
except ImportError:  # pragma: no cover - numba is in requirements.txt
    nb = None

LANES = 16  # pairs side by side in the innermost loops
B = LANES  # short name inside the kernels
_C0 = -0.78125
_E0 = math.exp(_C0)
_TRUST = 0.3
_LOCK = threading.Lock()


def available() -> bool:
    """Whether the fused kernel can run (numba importable)."""
    return nb is not None


if nb is not None:
    @nb.njit(inline="always", fastmath=True, cache=True)
    def _exp_neg(x):
        """``exp(x)`` for ``x <= 0`` without a library call (so that loops over lanes vectorise).
        Written out on purpose: as loops over a tuple of coefficients and the squarings, numba
        neither unrolls nor vectorises it (6 times slower, measured)."""
        y = max(x, -200.0) * 0.0078125 - _C0
        p = 1.0 / 20922789888000.0
        p = p * y + 1.0 / 1307674368000.0
        p = p * y + 1.0 / 87178291200.0
        p = p * y + 1.0 / 6227020800.0
        p = p * y + 1.0 / 479001600.0
        p = p * y + 1.0 / 39916800.0
        p = p * y + 1.0 / 3628800.0
        p = p * y + 1.0 / 362880.0
        p = p * y + 1.0 / 40320.0
        p = p * y + 1.0 / 5040.0
        p = p * y + 1.0 / 720.0
        p = p * y + 1.0 / 120.0
        p = p * y + 1.0 / 24.0
        p = p * y + 1.0 / 6.0
        p = p * y + 0.5
        p = p * y + 1.0
        p = p * y + 1.0
        p = p * _E0
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        return p


    @nb.njit(fastmath=True, cache=True)
    def _grid_block(i, blk, L, ca_r, ca_i, cb_r, cb_i, g_offa, g_offb, g_w, g_k, g_t, dval, cw, sw, cal, sal,
                    G_r, G_i, H_r, H_i, U_r, U_i, Fe, Fo, best_v, best_i):
        """Grid search of one atom against one block of B references: best value and flat grid index
        per lane and parity (best_v, best_i: (2, B))."""
        D = g_offa.shape[0]
        M = 2 * L + 1
        L1 = L + 1
        N = cw.shape[1]
        n_beta = dval.shape[0]
        # coupling, lane-parallel
        for d in range(D):
            for k in range(B):
                G_r[d, k] = 0.0
                G_i[d, k] = 0.0
            oa, ob, w = g_offa[d], g_offb[d], g_w[d]
            for n in range(g_k[d]):
                xr = ca_r[i, oa + n * w]
                xi = ca_i[i, oa + n * w]
                for k in range(B):
                    yr = cb_r[blk, ob + n * w, k]
                    yi = cb_i[blk, ob + n * w, k]
                    G_r[d, k] += xr * yr + xi * yi
                    G_i[d, k] += xi * yr - xr * yi
        for p in range(2):
            for k in range(B):
                best_v[p, k] = -1e30
                best_i[p, k] = 0
        for bb in range(n_beta):
            for t in range(2 * M * L1):
                for k in range(B):
                    H_r[t, k] = 0.0
                    H_i[t, k] = 0.0
            for d in range(D):
                dv = dval[bb, d]
                t = g_t[d]
                for k in range(B):
                    H_r[t, k] += dv * G_r[d, k]
                    H_i[t, k] += dv * G_i[d, k]
            # U_m(gamma) for m >= 0, both parities
            for par in range(2):
                for m in range(L1):
                    tp = (par * M + L + m) * L1  # H[m, .]
                    tn = (par * M + L - m) * L1  # H[-m, .]
                    for g in range(N):
                        u = ((par * L1 + m) * N + g)
                        for k in range(B):
                            U_r[u, k] = 0.0
                            U_i[u, k] = 0.0
                    for mp in range(L1):
                        for g in range(N):
                            c = cw[mp, g]
                            s = sw[mp, g]
                            u = ((par * L1 + m) * N + g)
                            if m == 0:
                                for k in range(B):
                                    hr = H_r[tp + mp, k]
                                    hi = H_i[tp + mp, k]
                                    U_r[u, k] += hr * c + hi * s
                                    U_i[u, k] += hi * c - hr * s
                            else:
                                for k in range(B):
                                    pr = H_r[tp + mp, k] + H_r[tn + mp, k]
                                    pi = H_i[tp + mp, k] - H_i[tn + mp, k]
                                    qr = H_r[tp + mp, k] - H_r[tn + mp, k]
                                    qi = H_i[tp + mp, k] + H_i[tn + mp, k]
                                    U_r[u, k] += pr * c + qi * s
                                    U_i[u, k] += pi * c - qr * s
            for a in range(N):
                for g in range(N):
                    for k in range(B):
                        Fe[k] = 0.0
                        Fo[k] = 0.0
                    for m in range(L1):
                        c = cal[m, a]
                        s = sal[m, a]
                        ue = m * N + g
                        uo = (L1 + m) * N + g
                        for k in range(B):
                            Fe[k] += U_r[ue, k] * c + U_i[ue, k] * s
                            Fo[k] += U_r[uo, k] * c + U_i[uo, k] * s
                    idx = (bb * N + a) * N + g
                    for k in range(B):
                        vp = Fe[k] + Fo[k]
                        vm = Fe[k] - Fo[k]
                        if vp > best_v[0, k]:
                            best_i[0, k] = idx
                        best_v[0, k] = max(best_v[0, k], vp)
                        if vm > best_v[1, k]:
                            best_i[1, k] = idx
                        best_v[1, k] = max(best_v[1, k], vm)


    @nb.njit(fastmath=True, cache=True)
    def _eval_lanes(a, na, bq, nq, W, kap, R, cq, want, acc, f, gH):
        """Overlap ``f (B)`` of one atom's neighbours ``a`` with B rotated environments, and with
        ``want`` its gradient and Hessian in ``gH (18, B)``: rows 0-2 the gradient, 3-8 the Hessian
        (00 01 02 11 12 22), 9-17 work space. ``bq (nq, 3, B)`` neighbour positions per lane,
        ``W (na, nq, B)`` weights, ``R (9, B)`` rotations (row-major)."""
        for q in range(nq):
            for k in range(B):
                bx, by, bz = bq[q, 0, k], bq[q, 1, k], bq[q, 2, k]
                cq[q, 0, k] = R[0, k] * bx + R[1, k] * by + R[2, k] * bz
                cq[q, 1, k] = R[3, k] * bx + R[4, k] * by + R[5, k] * bz
                cq[q, 2, k] = R[6, k] * bx + R[7, k] * by + R[8, k] * bz
        for k in range(B):
            f[k] = 0.0
        if want:
            for t in range(18):
                for k in range(B):
                    gH[t, k] = 0.0
        h = -0.5 * kap
        for q in range(nq):
            if want:
                for t in range(10):
                    for k in range(B):
                        acc[t, k] = 0.0
                for p in range(na):
                    ax, ay, az = a[p, 0], a[p, 1], a[p, 2]
                    axx, axy, axz, ayy, ayz, azz = ax * ax, ax * ay, ax * az, ay * ay, ay * az, az * az
                    for k in range(B):
                        dx = ax - cq[q, 0, k]
                        dy = ay - cq[q, 1, k]
                        dz = az - cq[q, 2, k]
                        e = W[p, q, k] * _exp_neg(h * (dx * dx + dy * dy + dz * dz))
                        acc[0, k] += e
                        acc[1, k] += e * ax
                        acc[2, k] += e * ay
                        acc[3, k] += e * az
                        acc[4, k] += e * axx
                        acc[5, k] += e * axy
                        acc[6, k] += e * axz
                        acc[7, k] += e * ayy
                        acc[8, k] += e * ayz
                        acc[9, k] += e * azz
                for k in range(B):
                    cx, cy, cz = cq[q, 0, k], cq[q, 1, k], cq[q, 2, k]
                    f[k] += acc[0, k]
                    tx, ty, tz = acc[1, k], acc[2, k], acc[3, k]
                    # gradient: c x At
                    gH[0, k] += cy * tz - cz * ty
                    gH[1, k] += cz * tx - cx * tz
                    gH[2, k] += cx * ty - cy * tx
                    # S = At c^T (9 entries)
                    gH[9, k] += tx * cx
                    gH[10, k] += tx * cy
                    gH[11, k] += tx * cz
                    gH[12, k] += ty * cx
                    gH[13, k] += ty * cy
                    gH[14, k] += ty * cz
                    gH[15, k] += tz * cx
                    gH[16, k] += tz * cy
                    gH[17, k] += tz * cz
                    # [c]x M [c]x^T, M symmetric
                    m00, m01, m02, m11, m12, m22 = acc[4, k], acc[5, k], acc[6, k], acc[7, k], acc[8, k], acc[9, k]
                    # K = C M, C = [[0,-cz,cy],[cz,0,-cx],[-cy,cx,0]]
                    k00 = -cz * m01 + cy * m02
                    k01 = -cz * m11 + cy * m12
                    k02 = -cz * m12 + cy * m22
                    k10 = cz * m00 - cx * m02
                    k11 = cz * m01 - cx * m12
                    k12 = cz * m02 - cx * m22
                    k20 = -cy * m00 + cx * m01
                    k21 = -cy * m01 + cx * m11
                    k22 = -cy * m02 + cx * m12
                    # X = K C^T: X_ab = sum_c K_ac C_bc
                    gH[3, k] += -k01 * cz + k02 * cy
                    gH[4, k] += k00 * cz - k02 * cx
                    gH[5, k] += -k00 * cy + k01 * cx
                    gH[6, k] += k10 * cz - k12 * cx
                    gH[7, k] += -k10 * cy + k11 * cx
                    gH[8, k] += -k20 * cy + k21 * cx
            else:
                for p in range(na):
                    ax, ay, az = a[p, 0], a[p, 1], a[p, 2]
                    for k in range(B):
                        dx = ax - cq[q, 0, k]
                        dy = ay - cq[q, 1, k]
                        dz = az - cq[q, 2, k]
                        f[k] += W[p, q, k] * _exp_neg(h * (dx * dx + dy * dy + dz * dz))
        if want:
            k2 = kap * kap
            for k in range(B):
                s00, s01, s02 = gH[9, k], gH[10, k], gH[11, k]
                s10, s11, s12 = gH[12, k], gH[13, k], gH[14, k]
                s20, s21, s22 = gH[15, k], gH[16, k], gH[17, k]
                tr = s00 + s11 + s22
                gH[0, k] *= kap
                gH[1, k] *= kap
                gH[2, k] *= kap
                gH[3, k] = k2 * gH[3, k] + kap * (s00 - tr)
                gH[4, k] = k2 * gH[4, k] + kap * 0.5 * (s01 + s10)
                gH[5, k] = k2 * gH[5, k] + kap * 0.5 * (s02 + s20)
                gH[6, k] = k2 * gH[6, k] + kap * (s11 - tr)
                gH[7, k] = k2 * gH[7, k] + kap * 0.5 * (s12 + s21)
                gH[8, k] = k2 * gH[8, k] + kap * (s22 - tr)


    @nb.njit(fastmath=True, cache=True)
    def _newton_lanes(gH, damp, step):
        """Newton ascent steps (Cholesky of -H where H is negative definite, else a gradient step),
        scaled by ``damp`` and clipped to the trust radius. step (3, B)."""
        for k in range(B):
            g0, g1, g2 = gH[0, k], gH[1, k], gH[2, k]
            a00, a01, a02, a11, a12, a22 = -gH[3, k], -gH[4, k], -gH[5, k], -gH[6, k], -gH[7, k], -gH[8, k]
            scale = abs(a00) + abs(a11) + abs(a22) + 2.0 * (abs(a01) + abs(a02) + abs(a12)) + 1e-300
            tiny = 1e-12 * scale
            l00 = math.sqrt(max(a00, tiny))
            l10 = a01 / l00
            l20 = a02 / l00
            t1 = a11 - l10 * l10
            l11 = math.sqrt(max(t1, tiny))
            l21 = (a12 - l20 * l10) / l11
            t2 = a22 - l20 * l20 - l21 * l21
            l22 = math.sqrt(max(t2, tiny))
            y0 = g0 / l00
            y1 = (g1 - l10 * y0) / l11
            y2 = (g2 - l20 * y0 - l21 * y1) / l22
            x2 = y2 / l22
            x1 = (y1 - l21 * x2) / l11
            x0 = (y0 - l10 * x1 - l20 * x2) / l00
            ok = (a00 > tiny) and (t1 > tiny) and (t2 > tiny)
            gn = math.sqrt(g0 * g0 + g1 * g1 + g2 * g2) + 1e-300
            sg = min(_TRUST / gn, 1.0 / scale)
            s0 = x0 if ok else g0 * sg
            s1 = x1 if ok else g1 * sg
            s2 = x2 if ok else g2 * sg
            n = math.sqrt(s0 * s0 + s1 * s1 + s2 * s2) + 1e-300
            c = min(1.0, _TRUST / n) * damp[k]
            step[0, k] = s0 * c
            step[1, k] = s1 * c
            step[2, k] = s2 * c


    @nb.njit(fastmath=True, cache=True)
    def _rotate_lanes(step, R, Rn):
        for k in range(B):
            w0, w1, w2 = step[0, k], step[1, k], step[2, k]
            th2 = w0 * w0 + w1 * w1 + w2 * w2
            th = math.sqrt(th2)
            small = th < 1e-8
            ths = 1.0 if small else th
            s = math.sin(th) / ths if not small else 1.0 - th2 / 6.0
            c = (1.0 - math.cos(th)) / (ths * ths) if not small else 0.5 - th2 / 24.0
            # E = I + s [w] + c [w]^2
            E00 = 1.0 - c * (w1 * w1 + w2 * w2)
            E01 = -s * w2 + c * w0 * w1
            E02 = s * w1 + c * w0 * w2
            E10 = s * w2 + c * w0 * w1
            E11 = 1.0 - c * (w0 * w0 + w2 * w2)
            E12 = -s * w0 + c * w1 * w2
            E20 = -s * w1 + c * w0 * w2
            E21 = s * w0 + c * w1 * w2
            E22 = 1.0 - c * (w0 * w0 + w1 * w1)
            for q in range(3):
                r0, r1, r2 = R[q, k], R[3 + q, k], R[6 + q, k]
                Rn[q, k] = E00 * r0 + E01 * r1 + E02 * r2
                Rn[3 + q, k] = E10 * r0 + E11 * r1 + E12 * r2
                Rn[6 + q, k] = E20 * r0 + E21 * r1 + E22 * r2


    @nb.njit(parallel=True, fastmath=True, cache=True)
    def coarse_rows(pa, wa, cnt_a, self_a, ca_r, ca_i,
                    pb, wb, cnt_b, self_b, cb_r, cb_i,
                    kap, L, g_offa, g_offb, g_w, g_k, g_t, dval, cw, sw, cal, sal, rgrid,
                    parities, n_iter, out):
        """Coarse distances ``out (nA, nB)`` of every atom (side A) to every reference (side B,
        sorted by neighbour count; coefficients in blocks of B lanes): the grid per block of
        references, then the Newton polish of the best grid point of each parity, B starts at a
        time. Atoms run in parallel (prange)."""
        nA = pa.shape[0]
        nB = pb.shape[0]
        nblk = cb_r.shape[0]
        D = g_offa.shape[0]
        M = 2 * L + 1
        L1 = L + 1
        N = cw.shape[1]
        C = wa.shape[2]
        qmax = pb.shape[1]
        for i in nb.prange(nA):
            na = cnt_a[i]
            a = pa[i]
            G_r = np.zeros((D, B), np.float32)
            G_i = np.zeros((D, B), np.float32)
            H_r = np.zeros((2 * M * L1, B), np.float32)
            H_i = np.zeros((2 * M * L1, B), np.float32)
            U_r = np.zeros((2 * L1 * N, B), np.float32)
            U_i = np.zeros((2 * L1 * N, B), np.float32)
            Fe = np.zeros(B, np.float32)
            Fo = np.zeros(B, np.float32)
            best_v = np.zeros((2, B), np.float32)
            best_i = np.zeros((2, B), np.int64)
            cand_j = np.zeros(2 * nB, np.int64)
            cand_g = np.zeros(2 * nB, np.int64)
            nc = 0
            for blk in range(nblk):
                _grid_block(i, blk, L, ca_r, ca_i, cb_r, cb_i, g_offa, g_offb, g_w, g_k, g_t, dval, cw, sw, cal, sal,
                            G_r, G_i, H_r, H_i, U_r, U_i, Fe, Fo, best_v, best_i)
                for k in range(B):
                    j = blk * B + k
                    if j >= nB:
                        break
                    for par in range(parities):
                        cand_j[nc] = j
                        cand_g[nc] = best_i[par, k] if par == 0 else -1 - best_i[par, k]
                        nc += 1
            # polish, B candidates at a time
            bq = np.zeros((qmax, 3, B))
            W = np.zeros((na, qmax, B))
            cq = np.zeros((qmax, 3, B))
            acc = np.zeros((10, B))
            f = np.zeros(B)
            fn = np.zeros(B)
            gH = np.zeros((18, B))
            gH2 = np.zeros((18, B))
            R = np.zeros((9, B))
            Rn = np.zeros((9, B))
            step = np.zeros((3, B))
            damp = np.ones(B)
            fbest = np.full(nB, -1e300)
            for c0 in range(0, nc, B):
                nq = 0
                for k in range(B):
                    c = min(c0 + k, nc - 1)
                    nq = max(nq, cnt_b[cand_j[c]])
                for k in range(B):
                    c = min(c0 + k, nc - 1)
                    j = cand_j[c]
                    gi = cand_g[c]
                    sg = 1.0
                    if gi < 0:
                        gi = -1 - gi
                        sg = -1.0
                    for t in range(9):
                        R[t, k] = sg * rgrid[gi, t]
                    damp[k] = 1.0
                    for q in range(nq):
                        for x in range(3):
                            bq[q, x, k] = pb[j, q, x]
                        for p in range(na):
                            s = 0.0
                            for ch in range(C):
                                s += wa[i, p, ch] * wb[j, q, ch]
                            W[p, q, k] = s
                _eval_lanes(a, na, bq, nq, W, kap, R, cq, n_iter > 0, acc, f, gH)
                for it in range(n_iter):
                    _newton_lanes(gH, damp, step)
                    _rotate_lanes(step, R, Rn)
                    last = it == n_iter - 1
                    _eval_lanes(a, na, bq, nq, W, kap, Rn, cq, not last, acc, fn, gH2)
                    for k in range(B):
                        if fn[k] >= f[k] - 1e-13 * abs(f[k]):
                            f[k] = fn[k]
                            for t in range(9):
                                R[t, k] = Rn[t, k]
                            for t in range(9):
                                gH[t, k] = gH2[t, k]
                        else:
                            damp[k] *= 0.25
                for k in range(B):
                    c = c0 + k
                    if c < nc:
                        j = cand_j[c]
                        fbest[j] = max(fbest[j], f[k])
            for j in range(nB):
                d2 = self_a[i] + self_b[j] - 2.0 * fbest[j]
                out[i, j] = math.sqrt(d2) if d2 > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# host side: tables, per-set arrays, and the call in chunks of atoms
@lru_cache(maxsize=8)
def _grid_tables(L: int):
    """Tables of the grid stage for band limit ``L`` (see :func:`_grid_block`): Wigner values, the
    Fourier factors over gamma (``m' > 0`` counted twice: f is real) and alpha, and the rotation of
    every grid point."""
    import torch

    from .search import SO3Grid
    from .special import wigner_small_d_table

    grid = SO3Grid(L, "cpu", torch.float64)
    ang = 2 * np.pi * np.arange(grid.N) / grid.N
    two = np.where(np.arange(L + 1) == 0, 1.0, 2.0)[:, None]
    mm = np.outer(np.arange(L + 1), ang)
    bi, ai, gi = np.meshgrid(np.arange(grid.n_beta), np.arange(grid.N), np.arange(grid.N), indexing="ij")
    f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
    return {"dtab": wigner_small_d_table(L, tuple(grid.betas.tolist())), "cw": f32(two * np.cos(mm)),
            "sw": f32(two * np.sin(mm)), "cal": f32(np.cos(mm)), "sal": f32(np.sin(mm)),
            "rgrid": np.ascontiguousarray(grid.rotations(ai, bi, gi).reshape(-1, 9))}


def _coupling_index(L: int, sizes, tables):
    """Entries ``(l, m, m' >= 0)`` of the coupling: coefficient offsets, strides, radial counts,
    target rows of ``H`` (parity of l, m, m') and the Wigner values per beta."""
    M, L1 = 2 * L + 1, L + 1
    off = np.concatenate([[0], np.cumsum([sizes[l] * (2 * l + 1) for l in range(L1)])[:-1]])
    ga, gb, gw, gk, gt, dv = [], [], [], [], [], []
    for l in range(L1):
        for mi in range(2 * l + 1):
            for mp in range(l + 1):
                ga.append(off[l] + mi)
                gb.append(off[l] + l + mp)
                gw.append(2 * l + 1)
                gk.append(sizes[l])
                gt.append(((l % 2) * M + (L - l + mi)) * L1 + mp)
                dv.append(tables["dtab"][:, l, L - l + mi, L + mp])
    i64 = lambda x: np.asarray(x, dtype=np.int64)
    return i64(ga), i64(gb), i64(gw), i64(gk), i64(gt), np.ascontiguousarray(np.stack(dv, 1), dtype=np.float32)


def _side(tensors, coefficients, counts, order=None):
    """Numpy views of one side of an engine (its memoised padded tensors, self overlaps and
    harmonic coefficients), rows in ``order``; the coefficients flattened to real and imaginary
    single-precision parts."""
    import torch

    flat = torch.cat([c.reshape(len(c), -1) for c in coefficients], 1)
    side = {"p": tensors["p"].cpu().numpy(), "w": tensors["w"].cpu().numpy(), "n": np.asarray(counts, np.int64),
            "self": tensors["self"].cpu().numpy(), "re": flat.real.cpu().numpy(), "im": flat.imag.cpu().numpy()}
    if order is not None:
        side = {k: v[order] for k, v in side.items()}
    side = {k: np.ascontiguousarray(v, dtype=np.float32 if k in ("re", "im") else v.dtype) for k, v in side.items()}
    side["sizes"] = [c.shape[1] for c in coefficients]
    return side


def _reference_side(engine):
    """The engine's side B sorted by neighbour count (lanes of a block pad to similar sizes), its
    coefficients laid out per block of LANES environments; memoised per set."""
    from .engine import _memo

    def make():
        order = np.argsort(engine._counts_b, kind="stable")
        side = _side(engine._pb, engine._cb, engine._counts_b, order)
        n = len(order)
        nblk = (n + B - 1) // B
        for key in ("re", "im"):
            x = np.zeros((nblk * B, side[key].shape[1]), np.float32)
            x[:n] = side[key]
            side[key] = np.ascontiguousarray(x.reshape(nblk, B, -1).transpose(0, 2, 1))
        side["order"] = order
        return side

    b = engine.basis
    return _memo(engine.B, ("fused", engine.sigma, b.kappa, b.r_max, b.L, b.tol), make)


def _check_covered(engine):
    """Raise ValueError unless the fused kernel covers the engine's search."""
    if nb is None:
        raise RuntimeError("the fused kernel needs numba (pip install numba)")
    if engine.group not in ("O3", "SO3"):
        raise ValueError(f"the fused kernel covers the groups O3 and SO3, not {engine.group!r}")
    if engine.device.type != "cpu" or not engine._coef:
        raise ValueError("the fused kernel covers 3D environments with one common sigma, on the CPU")
    if engine.settings.candidates != 1 or engine.settings.oversample != 1.0:
        raise ValueError("the fused kernel polishes one start per parity on a grid that is not oversampled")


def coarse_distance_rows(engine, *, workers=None, progress=None, rows_per_call: int = 16) -> np.ndarray:
    """Coarse distances ``(len(engine.A), len(engine.B))`` of every pair: the search of ``engine``
    (a :class:`~giip_plugin.kernels.DistanceEngine` with ``candidates=1``: the best grid point of
    each parity, one for SO(3), and ``settings.max_iter`` Newton steps), fused. Upper bounds of the
    exact distances. The engine's padded tensors, self overlaps and harmonic coefficients are used
    as they are.

    ``workers``: threads (default: all of PyTorch's); ``progress``: a tqdm bar, advanced by pairs.
    Work goes in calls of ``rows_per_call`` atoms, so Ctrl-C stops it between calls."""
    import torch

    _check_covered(engine)
    nA, nB = len(engine.A), len(engine.B)
    out = np.empty((nA, nB))
    if nA == 0 or nB == 0:
        return out
    L = engine.L
    ref = _reference_side(engine)
    atoms = _side(engine._pa, engine._ca, engine._counts_a)
    tables = _grid_tables(L)
    ga, gb, gw, gk, gt, dval = _coupling_index(L, ref["sizes"], tables)
    kappa = 1.0 / (2.0 * engine.sigma * engine.sigma)
    parities = 2 if engine.group == "O3" else 1
    sorted_rows = np.empty((min(rows_per_call, nA), nB))
    threads = int(workers) if workers else torch.get_num_threads()
    with _LOCK:
        previous = nb.get_num_threads()
        nb.set_num_threads(max(1, min(threads, nb.config.NUMBA_NUM_THREADS)))
        try:
            for s in range(0, nA, rows_per_call):
                e = min(nA, s + rows_per_call)
                buf = sorted_rows[: e - s]
                coarse_rows(atoms["p"][s:e], atoms["w"][s:e], atoms["n"][s:e], atoms["self"][s:e], atoms["re"][s:e],
                            atoms["im"][s:e], ref["p"], ref["w"], ref["n"], ref["self"], ref["re"], ref["im"],
                            kappa, L, ga, gb, gw, gk, gt, dval, tables["cw"], tables["sw"], tables["cal"],
                            tables["sal"], tables["rgrid"], parities, int(engine.settings.max_iter), buf)
                out[s:e, ref["order"]] = buf
                if progress is not None:
                    progress.update((e - s) * nB)
        finally:
            nb.set_num_threads(previous)
    return out


def applies(engine) -> bool:
    """Whether the coarse search of ``engine`` (a :class:`~giip_plugin.kernels.DistanceEngine`) runs
    on the fused kernel: numba present, a search it covers (CPU, 3D with one common sigma, O(3) or
    SO(3), one start per parity on a grid that is not oversampled), and ``GIIP_NO_FUSED`` unset in
    the environment (``GIIP_NO_FUSED=1`` keeps the PyTorch path, for comparisons)."""
    import os

    if os.environ.get("GIIP_NO_FUSED"):
        return False
    try:
        _check_covered(engine)
    except (RuntimeError, ValueError):
        return False
    return True
