"""Per-environment harmonic coefficients (kernels/radial.py) against the per-pair sums they replace."""
import dataclasses

import numpy as np
import pytest
import torch

from giip_plugin.environments import EnvironmentSet
from giip_plugin.kernels import DistanceEngine
from giip_plugin.kernels.overlap import pair_terms
from giip_plugin.kernels.radial import RadialBasis, _coupling, harmonic_coefficients
from giip_plugin.kernels.search import grid_candidates_3d_coef


@pytest.mark.parametrize("kappa,r_max,L", [(0.5, 4.0, 13), (2.0, 1.75, 16), (0.125, 6.0, 8)])
def test_radial_basis_reproduces_the_coupling(kappa, r_max, L):
    basis = RadialBasis.get(kappa, r_max, L)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, r_max, 40), rng.uniform(0, r_max, 40)
    exact = _coupling(a, b, kappa, L)
    pa = basis.values(torch.from_numpy(a)).numpy()
    pb = basis.values(torch.from_numpy(b)).numpy()
    for l in range(L + 1):
        k = basis.sizes[l]
        approx = pa[:, l, :k] @ pb[:, l, :k].T
        assert np.abs(approx - exact[l]).max() < 1e-6 * exact[0].max()
    # low rank: far fewer terms than grid points
    assert max(basis.sizes) <= 16


def test_coefficient_grid_is_the_overlap_at_the_grid_rotations():
    """G from per-environment coefficients gives the same band-limited grid as the per-pair sums:
    its values are the exact overlap at the returned rotations (L large, truncation negligible)."""
    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.normal(size=(2, 5, 3)) * 0.9)
    b = torch.from_numpy(rng.normal(size=(2, 6, 3)) * 0.9)
    wa = torch.from_numpy(rng.choice([-1.0, 1.0], size=(2, 5, 1)))
    wb = torch.from_numpy(rng.choice([-1.0, 1.0], size=(2, 6, 1)))
    L = 22
    r_max = float(max(a.norm(dim=-1).max(), b.norm(dim=-1).max()))
    basis = RadialBasis.get(0.5, r_max, L)
    Ca, Cb = harmonic_coefficients(a, wa, basis), harmonic_coefficients(b, wb, basis)
    R, vals = grid_candidates_3d_coef(Ca, Cb, L, 2, 5)
    W, kappa = pair_terms(wa, wb, None, None, 1.0, 3)
    for p in range(2):
        c = torch.einsum("kxy,jy->kjx", R[p], b[p])
        direct = (W[p] * torch.exp(-0.5 * kappa[0] * ((a[p][None, :, None] - c[:, None]) ** 2).sum(-1))).sum((-1, -2))
        np.testing.assert_allclose(vals[p].numpy(), direct.numpy(), atol=1e-6)
        det = np.linalg.det(R[p].numpy())
        assert np.allclose(det[:5], 1.0) and np.allclose(det[5:], -1.0)


def _envs(n, seed, channels=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = rng.integers(3, 15)
        pos = rng.normal(size=(m, 3)) * 1.5
        w = rng.choice([-1.0, 1.0], m) if channels == 1 else rng.uniform(0, 1, (m, channels))
        out.append((pos, w))
    return EnvironmentSet.from_list(out)


@pytest.mark.parametrize("channels", [1, 3])
def test_engine_with_and_without_coefficients_agree(channels):
    A, B = _envs(9, 1, channels), _envs(7, 2, channels)
    eng = DistanceEngine(A, B, sigma=0.8, chunk_pairs=10)
    assert eng._coef
    ia, ib = np.repeat(np.arange(9), 7), np.tile(np.arange(7), 9)
    fast = eng.distances(ia, ib)
    assert DistanceEngine(A, B, sigma=0.8)._cb is eng._cb  # coefficients of a set are computed once
    # sets are immutable, so the memo cannot go stale: in-place changes are refused, and a changed
    # copy is a new set with its own coefficients
    with pytest.raises(ValueError, match="read-only"):
        B.positions[:3] *= 1.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        B.positions = B.positions * 1.01
    pos = B.positions.copy()
    pos[:3] *= 1.01
    B2 = EnvironmentSet(pos, B.weights, B.offsets)
    assert DistanceEngine(A, B2, sigma=0.8)._cb is not eng._cb
    perm = EnvironmentSet(B.positions[::-1], B.weights[::-1], B.offsets)  # rows permuted: another set
    assert DistanceEngine(A, perm, sigma=0.8)._cb is not eng._cb
    eng._coef, eng.compiled = False, False  # the per-pair sums over neighbour pairs, in PyTorch
    slow = eng.distances(ia, ib)
    np.testing.assert_allclose(fast, slow, atol=1e-9)
