"""The paper's baseline for the orientation-invariant GIIP distance: a brute-force search over a
fixed ~5-degree covering of O(3), evaluated with batched PyTorch on CPU threads (or a GPU).

* :func:`super_fibonacci` -- a near-uniform set of rotations of SO(3) (super-Fibonacci spirals,
  M. Alexa, "Super-Fibonacci Spirals: Fast, Low-Discrepancy Sampling of SO(3)", CVPR 2022).
  48,000 of them cover SO(3) with a radius of about 5 degrees (see :func:`covering_radius`);
  with their rotoinversions ``-R`` that is 96,000 orthogonal matrices, as in the paper.
* :class:`BruteForce` -- evaluates the exact overlap ``<A, R B>`` for every matrix of the grid and
  keeps the largest (the paper's method, and that of the published sandialabs/giip library).
* :func:`polish` -- local optimisation of a rotation (scipy BFGS on a rotation vector) on the exact
  overlap; polishing the best few grid rotations gives the dense-search reference optimum.

Run ``python benchmarks/bruteforce.py`` to print the covering radius of the default grid.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

# psi of Alexa (2022): the real root of psi^4 = psi + 4
_PSI = 1.533751168755204288118041
_PHI = math.sqrt(2.0)


# ------------------------------------------------------------------------------------------------
# grids of rotations
def super_fibonacci(n: int) -> np.ndarray:
    """``n`` unit quaternions ``(x, y, z, w)`` spread near-uniformly over SO(3) (Alexa 2022, alg. 1)."""
    s = np.arange(n, dtype=float) + 0.5
    r = np.sqrt(s / n)
    R = np.sqrt(1.0 - s / n)
    alpha = 2.0 * np.pi * s / _PHI
    beta = 2.0 * np.pi * s / _PSI
    return np.stack([r * np.sin(alpha), r * np.cos(alpha), R * np.sin(beta), R * np.cos(beta)], axis=1)


def so3_grid(n: int = 48000) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices of the super-Fibonacci grid."""
    return Rotation.from_quat(super_fibonacci(n)).as_matrix()


def covering_radius(quats: np.ndarray, n_samples: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Approximate covering radius of a set of rotations (unit quaternions), in degrees.

    Returns ``(max, mean)`` over ``n_samples`` uniformly random rotations of the angle
    ``2 arccos |<q, p>|`` to the nearest grid rotation. The maximum over random samples is a lower
    bound of the true covering radius (it converges to it as the samples grow).
    """
    rng = np.random.default_rng(seed)
    p = torch.from_numpy(Rotation.random(n_samples, random_state=rng).as_quat())
    q = torch.from_numpy(np.ascontiguousarray(quats))
    best = torch.empty(n_samples, dtype=torch.float64)
    for s in range(0, n_samples, 256):
        best[s : s + 256] = (p[s : s + 256] @ q.T).abs().amax(1)
    ang = 2.0 * torch.arccos(best.clamp(max=1.0)) * 180.0 / math.pi
    return float(ang.max()), float(ang.mean())


# ------------------------------------------------------------------------------------------------
# exact overlap (numpy, float64) and local polish
def overlap(a, wa, b, wb, sigma: float, R=None) -> float:
    """``<A, R B>`` for a common Gaussian width: ``sum_ij (w_i . w_j) exp(-|a_i - R b_j|^2 / 4 sigma^2)``."""
    wa = np.asarray(wa, float).reshape(len(a), -1)
    wb = np.asarray(wb, float).reshape(len(b), -1)
    c = b if R is None else b @ np.asarray(R).T
    d2 = ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    return float(((wa @ wb.T) * np.exp(-d2 / (4.0 * sigma * sigma))).sum())


def _skew(v):
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _left_jacobian(w):
    """``J`` with ``d exp([w]) = [J dw] exp([w])`` (left Jacobian of SO(3))."""
    th = float(np.linalg.norm(w))
    K = _skew(w)
    if th < 1e-6:
        return np.eye(3) + 0.5 * K + K @ K / 6.0
    return np.eye(3) + (1 - np.cos(th)) / th**2 * K + (th - np.sin(th)) / th**3 * (K @ K)


def polish(a, wa, b, wb, sigma: float, R0, gtol: float = 1e-11):
    """Local maximum of ``<A, R B>`` near ``R0`` (orthogonal, either parity): scipy BFGS on the
    rotation vector ``w`` of ``R = exp([w]) R0`` with the exact gradient, restarted once from its
    result. Returns ``(f, R)``."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    W = np.asarray(wa, float).reshape(len(a), -1) @ np.asarray(wb, float).reshape(len(b), -1).T
    k = 1.0 / (4.0 * sigma * sigma)

    def f_of(R):
        c = b @ R.T
        return float((W * np.exp(-k * ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1))).sum())

    def neg_f_grad(w, R_start):
        Rw = Rotation.from_rotvec(w).as_matrix()
        c = b @ (Rw @ R_start).T
        e = W * np.exp(-k * ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1))
        # perturbation exp([d]) R: d|a_i - c_j|^2 = -2 d . (c_j x a_i)
        g_left = 2.0 * k * np.cross(c[None, :, :], a[:, None, :]).__mul__(e[..., None]).sum((0, 1))
        return -float(e.sum()), -(_left_jacobian(w).T @ g_left)

    R = np.asarray(R0, float)
    for _ in range(2):
        R_start = R
        res = minimize(neg_f_grad, np.zeros(3), args=(R_start,), jac=True, method="BFGS",
                       options={"gtol": gtol, "maxiter": 200})
        R_new = Rotation.from_rotvec(res.x).as_matrix() @ R_start
        if f_of(R_new) >= f_of(R):
            R = R_new
    return f_of(R), R


# ------------------------------------------------------------------------------------------------
# the brute force
class BruteForce:
    """Brute-force ``max_R <A, R B>`` over a fixed grid of rotations (and rotoinversions).

    The overlap is evaluated exactly for every grid matrix:
    ``f(R) = sum_ij W_ij exp(-k (|a_i|^2 + |b_j|^2)) exp(2 k a_i . R b_j)`` with ``k = 1/(4 sigma^2)``;
    the dot products ``a_i . R b_j`` are one matrix product for all rotations, and the rotoinversion
    ``-R`` reuses them with the opposite sign (it costs the second exponential only).
    """

    def __init__(self, n_rotations: int = 48000, rotoinversions: bool = True, device="cpu",
                 dtype=torch.float64, chunk: int = 8192):
        self.device = torch.device(device)
        self.dtype = dtype
        self.quats = super_fibonacci(n_rotations)
        self.R = so3_grid(n_rotations)
        self.rotoinversions = rotoinversions
        self._Rf = torch.as_tensor(self.R.reshape(-1, 9), dtype=dtype, device=self.device)
        self.chunk = chunk

    @property
    def n_matrices(self) -> int:
        return len(self.R) * (2 if self.rotoinversions else 1)

    def grid_overlaps(self, a, wa, b, wb, sigma: float) -> torch.Tensor:
        """``f`` on the grid: shape ``(parities, n_rotations)`` (parity 1 is ``-R``)."""
        t = lambda x: torch.as_tensor(np.array(x, float), dtype=self.dtype, device=self.device)  # a copy: inputs may be read only
        a, b = t(a), t(b)
        W = t(np.asarray(wa, float).reshape(len(a), -1) @ np.asarray(wb, float).reshape(len(b), -1).T)
        k = 1.0 / (4.0 * sigma * sigma)
        base = (W * torch.exp(-k * ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]))).reshape(-1)
        # a_i . R b_j = sum_xy R_xy a_ix b_jy: (G, 9) @ (9, na nb)
        K = (2.0 * k) * (a[:, None, :, None] * b[None, :, None, :]).reshape(-1, 9).T
        out = torch.empty((2 if self.rotoinversions else 1, len(self.R)), dtype=self.dtype, device=self.device)
        for s in range(0, len(self.R), self.chunk):
            dots = self._Rf[s : s + self.chunk] @ K
            out[0, s : s + self.chunk] = torch.exp(dots) @ base
            if self.rotoinversions:
                out[1, s : s + self.chunk] = torch.exp(-dots) @ base
        return out

    def matrix(self, parity: int, index: int) -> np.ndarray:
        return self.R[index] * (-1.0 if parity else 1.0)

    def max_overlap(self, a, wa, b, wb, sigma: float):
        """``(f, R)``: the best grid matrix and its overlap."""
        F = self.grid_overlaps(a, wa, b, wb, sigma)
        flat = int(torch.argmax(F))
        p, i = divmod(flat, F.shape[1])
        return float(F[p, i]), self.matrix(p, i)

    def candidates(self, F: torch.Tensor, n: int = 6, min_angle_deg: float = 20.0, pool: int = 3000):
        """Up to ``n`` well-separated good grid matrices per parity (greedy non-maximum suppression
        among the ``pool`` largest values): starting points for :func:`polish`."""
        out = []
        cos_half = math.cos(math.radians(min_angle_deg) / 2.0)
        for p in range(F.shape[0]):
            vals, idx = torch.topk(F[p], min(pool, F.shape[1]))
            chosen = []
            for i in idx.cpu().numpy():
                q = self.quats[i]
                if all(abs(float(q @ self.quats[j])) < cos_half for j in chosen):
                    chosen.append(int(i))
                    if len(chosen) == n:
                        break
            out += [self.matrix(p, i) for i in chosen]
        return out

    def distance(self, a, wa, b, wb, sigma: float, polish_best: int = 0):
        """Brute-force distance (and the matrix). With ``polish_best > 0`` the best
        ``polish_best`` separated grid matrices per parity are polished by local optimisation."""
        F = self.grid_overlaps(a, wa, b, wb, sigma)
        saa = overlap(a, wa, a, wa, sigma)
        sbb = overlap(b, wb, b, wb, sigma)
        if polish_best <= 0:
            flat = int(torch.argmax(F))
            p, i = divmod(flat, F.shape[1])
            f, R = float(F[p, i]), self.matrix(p, i)
        else:
            f, R = -np.inf, None
            for R0 in self.candidates(F, polish_best):
                fp, Rp = polish(a, wa, b, wb, sigma, R0)
                if fp > f:
                    f, R = fp, Rp
        return math.sqrt(max(saa + sbb - 2.0 * f, 0.0)), R


def main(argv=None):
    ap = argparse.ArgumentParser(description="covering radius of the super-Fibonacci SO(3) grid")
    ap.add_argument("--rotations", type=int, nargs="+", default=[6000, 24000, 48000, 96000])
    ap.add_argument("--samples", type=int, default=50000)
    args = ap.parse_args(argv)
    for n in args.rotations:
        t = time.time()
        mx, mean = covering_radius(super_fibonacci(n), args.samples)
        print(f"{n:7d} rotations of SO(3): covering radius ~{mx:.2f} deg (max over {args.samples} random "
              f"rotations), mean distance to nearest {mean:.2f} deg  [{time.time() - t:.1f} s]")


if __name__ == "__main__":
    main()
