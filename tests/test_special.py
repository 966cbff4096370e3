"""Special functions of the rotation search against scipy, and the FFT grid against direct sums."""
import numpy as np
import pytest
import torch
from scipy.special import iv, sph_harm_y, spherical_in

from giip_plugin.kernels.overlap import pair_terms
from giip_plugin.kernels.search import grid_candidates_3d
from giip_plugin.kernels.special import (scaled_bessel_in, scaled_spherical_in,
                                         spherical_harmonics, wigner_small_d_table)


def test_scaled_bessels_match_scipy():
    k = torch.linspace(0, 60, 400, dtype=torch.float64)
    kn = k.numpy()
    a = scaled_spherical_in(k, 25).numpy()
    b = np.array([np.exp(-kn) * spherical_in(l, kn) for l in range(26)])
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
    c = scaled_bessel_in(k, 25).numpy()
    d = np.array([np.exp(-kn) * iv(n, kn) for n in range(26)])
    np.testing.assert_allclose(c, d, rtol=1e-12, atol=1e-300)


def test_spherical_harmonics_match_scipy():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(40, 3))
    u[0] = [0, 0, 2.0]  # on the axis
    u[1] = [0, 0, -1.0]
    Y = spherical_harmonics(torch.from_numpy(u), 12).numpy()
    r = np.linalg.norm(u, axis=1)
    th, ph = np.arccos(u[:, 2] / r), np.arctan2(u[:, 1], u[:, 0])
    for l in range(13):
        for m in range(-l, l + 1):
            np.testing.assert_allclose(Y[:, l, 12 + m], sph_harm_y(l, m, th, ph), atol=1e-12)
        assert np.all(Y[:, l, : 12 - l] == 0) and np.all(Y[:, l, 13 + l :] == 0)


def test_wigner_tables_are_orthogonal():
    L = 7
    d = wigner_small_d_table(L, (0.3, 1.1, 2.9))
    for k in range(3):
        for l in range(L + 1):
            s = slice(L - l, L + l + 1)
            np.testing.assert_allclose(d[k, l, s, s] @ d[k, l, s, s].T, np.eye(2 * l + 1), atol=1e-12)


@pytest.mark.parametrize("parities", [1, 2])
def test_fft_grid_equals_direct_band_limited_overlap(parities):
    """The grid values are the overlap f(R) = sum_ij W exp(-kappa |a_i - R b_j|^2 / 2) at the grid's
    rotations (up to the band-limit truncation, negligible here with a large L)."""
    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.normal(size=(1, 5, 3)) * 0.9)
    b = torch.from_numpy(rng.normal(size=(1, 6, 3)) * 0.9)
    w = lambda n: torch.from_numpy(rng.choice([-1.0, 1.0], size=(1, n, 1)))
    W, kappa = pair_terms(w(5), w(6), None, None, 1.0, 3)
    L = 22
    ra, rb = a.norm(dim=-1), b.norm(dim=-1)
    R, vals = grid_candidates_3d(ra, spherical_harmonics(a, L), rb, spherical_harmonics(b, L), W, kappa, L, parities, 5)
    c = torch.einsum("kxy,jy->kjx", R[0], b[0])
    direct = (W[0] * torch.exp(-0.5 * kappa[0] * ((a[0][None, :, None] - c[:, None]) ** 2).sum(-1))).sum((-1, -2))
    np.testing.assert_allclose(vals[0].numpy(), direct.numpy(), atol=1e-9)
    assert np.allclose(np.linalg.det(R[0].numpy())[:5], 1.0)
    if parities == 2:
        assert np.allclose(np.linalg.det(R[0].numpy())[5:], -1.0)
