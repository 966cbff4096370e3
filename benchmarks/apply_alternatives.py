#!/usr/bin/env python
"""Measured alternatives for applying a reference to a whole frame faster (issue 4's 60 s target).

    python benchmarks/apply_alternatives.py REF.h5 --atoms 120 settings [--grid L,C,IT,POOL ...]
    python benchmarks/apply_alternatives.py REF.h5 --atoms 120 fused [--grid 6,1,2,8 5,1,2,8 ...]
    python benchmarks/apply_alternatives.py REF.h5 --atoms 120 landmarks
    python benchmarks/apply_alternatives.py REF.h5 --atoms 30 shared-grid [--l-grid 6 --n-rot 500 --l-polish 8]

Every experiment compares with the exhaustive exact rows of ``--atoms`` random Ni centres of
``--frame`` (computed once and cached in ``--cache``, ~0.4 ms per pair on 2 cores) and reports the
issue's criterion: classes equal, and every diffusion coordinate within 1% of its range over the
training set, after the fast path's exact refinement of the ``--refine`` nearest references of each
atom (default 4; the fast path refines 2 from 1,500 training environments on).

``settings``: the coarse search of ``transform(fast=True)`` with other band limits (L), starts per
parity (C), Newton steps (IT) and grid pools (POOL): CPU time per pair on one thread, excess over
the exact distance, agreement.

``fused``: the same coarse searches (one start per parity only) on the fused CPU kernel of
``giip_plugin/kernels/fused.py``, which the fast path uses for large references; also the rank of
each atom's exact nearest reference in its coarse row (what the refinement needs).

``landmarks``: exact distances to m landmark references only (pivoted QR of the training kernel),
the rest of the kernel row interpolated (``k_S K_SS^+ K_S.``) or regressed over the training rows.

``shared-grid``: the rotation grid shared by all references of an atom: the atom's harmonic
coefficients rotated by ``--n-rot`` near-uniform rotations (a super-Fibonacci spiral), one GEMM
with all references' coefficients (band limit ``--l-grid``), then Newton steps from the best grid
rotation on the band-limited overlap (band limit ``--l-polish``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "ninb")


def _setup(args):
    import torch

    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(args.reference)
    atoms = next(iter_frames(args.frame, type_names=ref.type_names or {1: "Ni", 2: "Nb"})).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    sub = np.sort(np.random.default_rng(args.seed).choice(ni, size=min(args.atoms, len(ni)), replace=False))
    envs = ref.compute_environments(atoms, indices=sub)
    cache = args.cache or f"{os.path.splitext(args.reference)[0]}_exact_{args.atoms}_{args.seed}.npy"
    if os.path.exists(cache):
        exact = np.load(cache)
    else:
        t0 = time.perf_counter()
        exact = ref.distance_rows(envs)
        print(f"exact rows of {len(sub)} atoms in {time.perf_counter() - t0:.1f} s -> {cache}")
        np.save(cache, exact)
    torch.set_num_threads(1)
    return ref, envs, exact


def agreement(ref, approx, exact, truth, refine: int = 4) -> str:
    """The issue's criterion for approximate rows, after the exact refinement of the nearest few
    (``truth``: the map of the exact rows)."""
    rows = approx.copy()
    near = np.argpartition(rows, refine - 1, axis=1)[:, :refine]
    ra, rb = np.repeat(np.arange(len(rows)), refine), near.reshape(-1)
    rows[ra, rb] = exact[ra, rb]
    a, e = ref.transform_from_distances(rows), truth
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    worst = (np.abs(a.coordinates - e.coordinates) / span).max(1) * 100
    return (f"classes {np.mean(a.classes == e.classes):.1%} equal; coordinates: max error {worst.max():.2f}% of range, "
            f"median {np.median(worst):.2f}%, atoms within 1% {np.mean(worst <= 1):.1%}")


def run_settings(ref, envs, exact, truth, args):
    from dataclasses import replace

    from giip_plugin.kernels import DistanceEngine

    nA, nB = exact.shape
    ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
    print(f"{'L,C,IT,POOL':12s} {'us/pair (1 thread)':>19s} {'mean excess':>12s} {'p99 excess':>11s}  agreement")
    for spec in args.grid:
        L, C, IT, POOL = (int(x) for x in spec.split(","))
        settings = replace(ref.search_settings, candidates=C, max_iter=IT)
        eng = DistanceEngine(envs, ref.training, sigma=ref.sigma, group=ref.group, settings=settings, l_max=L,
                             grid_pool=POOL)
        eng.distances(ia[:500], ib[:500], workers=1)  # warm-up
        t0 = time.process_time()
        d = eng.distances(ia, ib, workers=1).reshape(nA, nB)
        us = (time.process_time() - t0) / len(ia) * 1e6
        ex = d - exact
        print(f"{spec:12s} {us:19.1f} {ex.mean():12.4f} {np.percentile(ex, 99):11.4f}  "
              f"{agreement(ref, d, exact, truth, args.refine)}")


def run_fused(ref, envs, exact, truth, args):
    """The fused CPU kernel (kernels/fused.py) with the settings of ``--grid`` that it covers (one
    start per parity; the pool does not matter for one start): CPU time per pair on one thread."""
    from dataclasses import replace

    from giip_plugin.kernels import DistanceEngine, fused

    nA, nB = exact.shape
    print(f"{'L,C,IT,POOL':12s} {'us/pair (1 thread)':>19s} {'mean excess':>12s} {'p99 excess':>11s}  agreement")
    for spec in args.grid:
        L, C, IT, _ = (int(x) for x in spec.split(","))
        if C != 1:
            continue
        settings = replace(ref.search_settings, candidates=1, max_iter=IT)
        run = lambda e: fused.coarse_distance_rows(
            DistanceEngine(e, ref.training, sigma=ref.sigma, group=ref.group, settings=settings, l_max=L), workers=1)
        run(envs.subset([0]))  # compiles the kernel (first use) or loads it from the cache
        t0 = time.process_time()
        d = run(envs)
        us = (time.process_time() - t0) / (nA * nB) * 1e6
        ex = d - exact
        print(f"{spec:12s} {us:19.1f} {ex.mean():12.4f} {np.percentile(ex, 99):11.4f}  "
              f"{agreement(ref, d, exact, truth, args.refine)}")
        nearest = np.argmin(exact, axis=1)
        rank = np.sum(d < d[np.arange(nA), nearest][:, None], axis=1)
        print(f"{'':12s} rank of the exact nearest in the coarse rows (atoms with rank 0, 1, ...): "
              f"{np.bincount(rank).tolist()}")


def run_landmarks(ref, envs, exact, truth, args):
    import scipy.linalg as sl

    D = ref.distances
    diff = ref.diffusion
    c = -1.0 / (2.0 * diff.epsilon**2)
    K = np.exp(c * D * D)
    ev = np.linalg.eigvalsh(K)[::-1]
    print(f"training kernel: largest eigenvalue {ev[0]:.1f}; eigenvalue 100 / 400 relative "
          f"{ev[100] / ev[0]:.2e} / {ev[400] / ev[0]:.2e}; smallest {ev[-1]:.2f} (not PSD)")
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    sel, P = ref.selected, diff.P
    psi, lam = diff.eigenvectors[:, sel], diff.eigenvalues[sel]
    _, _, piv = sl.qr(K, pivoting=True, mode="economic")
    for how in ("interpolate", "regress"):
        for m in args.landmarks:
            S = piv[:m]
            if how == "interpolate":
                A = np.linalg.lstsq(K[np.ix_(S, S)], K[S], rcond=1e-8)[0]
            else:
                X = K[:, S]
                A = np.linalg.solve(X.T @ X + 1e-3 * np.eye(m), X.T @ K)
            k_row = np.exp(c * exact[:, S] ** 2) @ A
            dc = (k_row @ (psi / P[:, None])) / (k_row @ (1.0 / P))[:, None] / lam
            worst = (np.abs(dc - truth.coordinates) / span).max(1) * 100
            print(f"{how:11s} {m:4d} landmarks: coordinates max error {worst.max():.1f}% of range, median "
                  f"{np.median(worst):.2f}%, atoms within 1% {np.mean(worst <= 1):.1%}")


def _superfib(n):
    """n near-uniform rotations (super-Fibonacci spiral of unit quaternions)."""
    s = np.arange(n) + 0.5
    t = s / n
    r, R = np.sqrt(t), np.sqrt(1 - t)
    a, b = 2 * np.pi * s / math.sqrt(2.0), 2 * np.pi * s / 1.533751168755204288118041
    x, y, z, w = r * np.sin(a), r * np.cos(a), R * np.sin(b), R * np.cos(b)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(n, 3, 3)


def _real(C):
    """Complex coefficients per l (m = -l..l) -> real vectors with Re(Ca . conj Cb) = Xa . Xb, and l."""
    cols, ls = [], []
    for l, c in enumerate(C):
        E = c.shape[0]
        pos = c[:, :, l + 1 :]
        v = np.concatenate([c[:, :, l].real, math.sqrt(2) * pos.real.reshape(E, -1), math.sqrt(2) * pos.imag.reshape(E, -1)], 1)
        cols.append(v)
        ls += [l] * v.shape[1]
    return np.concatenate(cols, 1), np.array(ls)


def run_shared_grid(ref, envs, exact, truth, args):
    import torch

    from giip_plugin.kernels.overlap import self_overlap
    from giip_plugin.kernels.radial import RadialBasis, harmonic_coefficients
    from giip_plugin.kernels.search import so3_exp

    def coef(p, w):
        return _real([c.numpy() for c in harmonic_coefficients(p, w, basis)])

    pa, wa, _ = envs.padded()
    pb, wb, _ = ref.training.padded()
    pa, wa, pb, wb = (torch.from_numpy(x) for x in (pa, wa, pb, wb))
    sA = self_overlap(pa, wa, None, ref.sigma).numpy()
    sB = self_overlap(pb, wb, None, ref.sigma).numpy()
    Lg, Lp, ng = args.l_grid, args.l_polish, args.n_rot
    basis = RadialBasis.get(1.0 / (2 * ref.sigma**2), float(max(pa.norm(dim=-1).max(), pb.norm(dim=-1).max())), Lp)
    Y, ls = coef(pb, wb)
    # generators J_k of the rotations in coefficient space, X(R exp w) ~ (1 + w.J) X(R), fitted on random sets
    rng = np.random.default_rng(0)
    S = Y.shape[1] + 300
    q = torch.from_numpy(rng.normal(size=(S, 12, 3)))
    q = q * (torch.rand(S, 12, 1, dtype=q.dtype) * basis.r_max * 0.99 / q.norm(dim=-1, keepdim=True))
    qw = torch.from_numpy(rng.normal(size=(S, 12, 1)))
    V0 = coef(q, qw)[0]
    pinv = np.linalg.pinv(V0.T)
    J = []
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1e-4
        J.append(((coef(q @ so3_exp(e), qw)[0] - coef(q @ so3_exp(-e), qw)[0]).T / 2e-4) @ pinv)
    pairs = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    Jall = np.stack(J + [0.5 * (J[a] @ J[b] + J[b] @ J[a]) for a, b in pairs])
    Yd = np.einsum("qba,jb->jqa", Jall, Y)  # (nB, 9, K): (J X) . Y = X . (J^T Y)
    g_cols, odd = ls <= Lg, ls % 2 == 1
    Rg = torch.from_numpy(_superfib(ng))
    nA, nB = exact.shape
    d_grid, d_pol = np.zeros((nA, nB)), np.zeros((nA, nB))
    t_grid = 0.0
    for a in range(nA):
        t0 = time.process_time()
        X = coef((pa[a] @ Rg), wa[a].expand(ng, -1, -1))[0].astype(np.float32)
        Fe = X[:, g_cols & ~odd] @ Y[:, g_cols & ~odd].T.astype(np.float32)
        Fo = X[:, g_cols & odd] @ Y[:, g_cols & odd].T.astype(np.float32)
        F = np.concatenate([Fe + Fo, Fe - Fo], 0)
        best = F.argmax(0)
        t_grid += time.process_time() - t0
        d_grid[a] = np.sqrt(np.maximum(sA[a] + sB - 2 * F[best, np.arange(nB)], 0))
        R = Rg[best % ng] * torch.from_numpy(np.where(best >= ng, -1.0, 1.0))[:, None, None]
        for _ in range(args.steps):
            Xs = coef(torch.einsum("nk,jkl->jnl", pa[a], R), wa[a].expand(nB, -1, -1))[0]
            gh = np.einsum("ja,jqa->jq", Xs, Yd)
            g, h = gh[:, :3], gh[:, 3:]
            H = np.stack([h[:, [0, 3, 4]], h[:, [3, 1, 5]], h[:, [4, 5, 2]]], 1)
            lam, V = np.linalg.eigh(H)
            gv = np.einsum("jab,ja->jb", V, g)
            om = np.einsum("jab,jb->ja", V, gv / np.maximum(np.abs(lam), 1e-9))
            om *= np.minimum(1.0, 0.4 / np.maximum(np.linalg.norm(om, axis=1, keepdims=True), 1e-12))
            R = R @ so3_exp(torch.from_numpy(om))
        f = (coef(torch.einsum("nk,jkl->jnl", pa[a], R), wa[a].expand(nB, -1, -1))[0] * Y).sum(1)
        d_pol[a] = np.sqrt(np.maximum(sA[a] + sB - 2 * f, 0))
    print(f"band limit {Lg} grid of {ng} rotations x 2 parities, K = {int(g_cols.sum())} coefficients: "
          f"{t_grid / (nA * nB) * 1e6:.1f} us of CPU per pair for the grid alone")
    for name, d in (("grid maximum", d_grid), (f"+ {args.steps} Newton steps (band limit {Lp})", d_pol)):
        ex = d - exact
        print(f"{name:36s} excess mean {ex.mean():.4f}, 99.9th percentile {np.percentile(ex, 99.9):.3f}, max "
              f"{ex.max():.3f}; {agreement(ref, d, exact, truth)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference")
    p.add_argument("experiment", choices=["settings", "fused", "landmarks", "shared-grid"])
    p.add_argument("--frame", default=os.path.join(DATA, "quench10M.dump"))
    p.add_argument("--atoms", type=int, default=120)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--refine", type=int, default=4, help="nearest references refined exactly (default 4)")
    p.add_argument("--cache", help="file of the exact rows (default: beside the reference)")
    p.add_argument("--grid", nargs="+", default=["6,3,2,12", "6,2,2,12", "6,1,2,8", "5,1,2,8", "5,1,1,8"],
                   help="coarse settings L,C,IT,POOL to measure")
    p.add_argument("--landmarks", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    p.add_argument("--l-grid", type=int, default=6)
    p.add_argument("--l-polish", type=int, default=8)
    p.add_argument("--n-rot", type=int, default=500)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    ref, envs, exact = _setup(args)
    {"settings": run_settings, "fused": run_fused, "landmarks": run_landmarks, "shared-grid": run_shared_grid}[args.experiment](
        ref, envs, exact, ref.transform_from_distances(exact), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
