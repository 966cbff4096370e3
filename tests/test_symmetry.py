"""The continuous symmetry measure from the GIIP overlap (interpret/symmetry.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from giip_plugin.environments import EnvironmentSet
from giip_plugin.interpret.symmetry import GROUPS, group_matrices, symmetry_measure, symmetry_measures

PHI = (1 + 5 ** 0.5) / 2
_V = np.array([[0, s1, s2 * PHI] for s1 in (-1, 1) for s2 in (-1, 1)], float)
ICO = np.concatenate([_V, _V[:, [1, 2, 0]], _V[:, [2, 0, 1]]]) * 2.6 / np.linalg.norm(_V[0])
TET = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) * 1.4


def _m(p, g, w=None, sigma=0.5):
    return symmetry_measure(p, np.ones(len(p)) if w is None else w, sigma=sigma, group=g)


def test_groups_are_closed_orthogonal_sets_of_the_right_order():
    orders = {"C2": 2, "C3": 3, "C4": 4, "C5": 5, "C6": 6, "D2h": 8, "D3h": 12, "T": 12, "Td": 24, "O": 24,
              "Oh": 48, "I": 60, "Ih": 120}
    assert set(GROUPS) == set(orders)
    for name, n in orders.items():
        G = group_matrices(name)
        assert len(G) == n
        np.testing.assert_allclose(np.einsum("gij,gkj->gik", G, G), np.broadcast_to(np.eye(3), G.shape), atol=1e-12)
    with pytest.raises(ValueError, match="unknown point group"):
        group_matrices("C7")


def test_icosahedron_and_tetrahedron_in_any_orientation():
    R = Rotation.random(random_state=3).as_matrix()
    ico, tet = ICO @ R.T, TET @ R.T
    for g in ("C2", "C3", "C5", "D2h", "T", "I", "Ih"):
        assert _m(ico, g) == pytest.approx(1.0, abs=1e-6), g
    for g in ("C4", "C6", "Td", "O"):
        assert _m(ico, g) < 0.75, g
    for g in ("C2", "C3", "T", "Td"):
        assert _m(tet, g) == pytest.approx(1.0, abs=1e-6), g
    for g in ("C4", "D2h", "I", "Oh"):
        assert _m(tet, g) < 0.7, g


def test_tricapped_trigonal_prism_is_prismatic():
    """The tricapped trigonal prism (9 neighbours: two triangles and three caps on the square
    faces) has D3h exactly, in any orientation; the icosahedron and tetrahedron do not."""
    ang = 2 * np.pi * np.arange(3) / 3
    tri = np.c_[np.cos(ang), np.sin(ang), np.zeros(3)]
    prism = np.vstack([tri + [0, 0, 0.75], tri + [0, 0, -0.75], -1.4 * tri])
    R = Rotation.random(random_state=7).as_matrix()
    assert _m(prism @ R.T, "D3h") == pytest.approx(1.0, abs=1e-6)
    assert _m(prism @ R.T, "C3") == pytest.approx(1.0, abs=1e-6)
    # a narrow width tells the shapes apart (at 0.5 the nine-neighbour shell is near spherical)
    assert _m(prism @ R.T, "Td", sigma=0.3) < 0.6 and _m(prism @ R.T, "I", sigma=0.3) < 0.6
    assert _m(TET, "D3h", sigma=0.3) < 0.6 and _m(ICO, "D3h", sigma=0.3) < 0.6


def test_invariant_to_rotation_reflection_permutation_and_smooth():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(9, 3)) * 1.5
    w = rng.choice([-1.0, 1.0], 9)
    ref = {g: symmetry_measure(p, w, sigma=0.8, group=g, n_starts=128) for g in ("C3", "T")}
    R = Rotation.random(random_state=5).as_matrix() @ np.diag([1, 1, -1])  # a rotoinversion
    perm = rng.permutation(9)
    for g, v in ref.items():
        assert 0 < v < 0.99
        assert symmetry_measure((p @ R.T)[perm], w[perm], sigma=0.8, group=g, n_starts=128) == pytest.approx(v, abs=1e-5)
    # a slightly distorted icosahedron is nearly icosahedral, a more distorted one less so
    noisy = [ICO + rng.normal(0, s, ICO.shape) for s in (0.05, 0.2)]
    near, far = (_m(x, "I") for x in noisy)
    assert 0.9 < near < 1.0 and far < near


def test_measures_of_an_environment_set():
    envs = EnvironmentSet.from_list([(ICO, np.ones(12)), (TET, np.ones(4))])
    out = symmetry_measures(envs, sigma=0.5, groups=("C5", "Td"))
    np.testing.assert_allclose(out["C5"][0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out["Td"][1], 1.0, atol=1e-6)
    assert out["C5"][1] < 0.75 and out["Td"][0] < 0.75
