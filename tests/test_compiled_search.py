"""The compiled exact rotation search (giip_plugin/kernels/fused.py, exact=True) against the PyTorch
reference implementation of the same algorithm (kernels/search.py), on random and real
environments of every setting it covers, and the settings it leaves to PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from giip_plugin.environments import EnvironmentSet
from giip_plugin.kernels import DistanceEngine, fused

from test_distance import overlap_np, random_env, random_orthogonal

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C compiler for the compiled search")


def _random_set(rng, n_env, **kw):
    return EnvironmentSet.from_list([random_env(rng, int(rng.integers(6, 17)), **kw) for _ in range(n_env)])


def _both(A, B, group, sigma, pairs=None):
    """Distances (and rotations) of the compiled and the PyTorch search for the same pairs."""
    comp = DistanceEngine(A, B, sigma=sigma, group=group)
    ref = DistanceEngine(A, B, sigma=sigma, group=group, compiled=False)
    assert comp.compiled and not ref.compiled
    if pairs is None:
        ia, ib = np.repeat(np.arange(len(A)), len(B)), np.tile(np.arange(len(B)), len(A))
    else:
        ia, ib = pairs
    dc, Rc = comp.distances(ia, ib, return_rotation=True)
    dt = ref.distances(ia, ib)
    return ia, ib, dc, Rc, dt


def _check_rotations(A, B, ia, ib, d, R, sigma, group):
    """Every returned matrix is orthogonal, of the group, and gives the returned distance."""
    for k in range(0, len(ia), max(1, len(ia) // 40)):
        (a, wa), (b, wb) = A[int(ia[k])][:2], B[int(ib[k])][:2]
        np.testing.assert_allclose(R[k] @ R[k].T, np.eye(3), atol=1e-10)
        if group == "SO3":
            assert np.linalg.det(R[k]) > 0
        f = overlap_np(a, wa, b, wb, sigma, R=R[k])
        d2 = overlap_np(a, wa, a, wa, sigma) + overlap_np(b, wb, b, wb, sigma) - 2 * f
        assert np.sqrt(max(d2, 0.0)) == pytest.approx(d[k], abs=1e-9)


@pytest.mark.parametrize("group", ["O3", "SO3"])
@pytest.mark.parametrize("species", ["none", "sign", "vector"])
def test_compiled_matches_pytorch_on_random_environments(group, species):
    rng = np.random.default_rng(7)
    kw = {"none": {}, "sign": {"signs": True}, "vector": {"channels": 3}}[species]
    A, B = _random_set(rng, 9, **kw), _random_set(rng, 23, **kw)  # 23: a partial block of lanes
    ia, ib, dc, Rc, dt = _both(A, B, group, 0.9)
    assert np.all(dc <= dt + 1e-9)  # never worse than the reference implementation
    np.testing.assert_allclose(dc, dt, atol=1e-9)
    _check_rotations(A, B, ia, ib, dc, Rc, 0.9, group)


def test_compiled_matches_pytorch_on_real_environments(ninb_envs):
    """Random pairs of NiNb first shells (the paper's parameters), lanes of different atoms side by
    side, and one atom against many references."""
    rng = np.random.default_rng(11)
    n = len(ninb_envs)
    pairs = (rng.integers(0, n, 500), rng.integers(0, n, 500))
    ia, ib, dc, Rc, dt = _both(ninb_envs, ninb_envs, "O3", 1.0, pairs)
    assert np.all(dc <= dt + 1e-9)
    np.testing.assert_allclose(dc, dt, atol=1e-9)
    _check_rotations(ninb_envs, ninb_envs, ia, ib, dc, Rc, 1.0, "O3")
    same = ia == ib
    np.testing.assert_allclose(dc[same], 0.0, atol=1e-6)
    row = (np.zeros(300, dtype=np.int64), rng.choice(n, 300, replace=False))
    _, _, dc, _, dt = _both(ninb_envs, ninb_envs, "O3", 1.0, row)
    np.testing.assert_allclose(dc, dt, atol=1e-9)


def test_compiled_results_do_not_depend_on_threads_or_order(ninb_envs):
    rng = np.random.default_rng(5)
    ia, ib = rng.integers(0, len(ninb_envs), 200), rng.integers(0, len(ninb_envs), 200)
    eng = DistanceEngine(ninb_envs, sigma=1.0)
    one = fused.search_pairs(eng, ia, ib, exact=True, workers=1)
    two = fused.search_pairs(eng, ia, ib, exact=True, workers=2)
    perm = rng.permutation(200)
    shuffled = fused.search_pairs(eng, ia[perm], ib[perm], exact=True, workers=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(shuffled, one[perm], atol=1e-12)


@pytest.mark.parametrize("group", ["O2", "SO2"])
@pytest.mark.parametrize("species", ["none", "sign", "vector"])
def test_compiled_2d_search_matches_pytorch(group, species):
    """The compiled 2D search (an exact grid of angles, 1D Newton ascents) against the PyTorch
    implementation (the Fourier series of the grid, batched Newton): the same distances to 1e-9,
    never above them, and rotations of the group that give the returned distance."""
    rng = np.random.default_rng(17)
    kw = {"none": {}, "sign": {"signs": True}, "vector": {"channels": 3}}[species]
    mk = lambda n: EnvironmentSet.from_list([random_env(rng, int(rng.integers(2, 11)), dim=2, **kw) for _ in range(n)])
    A, B = mk(11), mk(19)
    comp = DistanceEngine(A, B, sigma=0.6, group=group)
    ref = DistanceEngine(A, B, sigma=0.6, group=group, compiled=False)
    assert comp.compiled and not ref.compiled
    ia, ib = np.repeat(np.arange(len(A)), len(B)), np.tile(np.arange(len(B)), len(A))
    dc, R = comp.distances(ia, ib, return_rotation=True)
    dt = ref.distances(ia, ib)
    assert np.all(dc <= dt + 1e-9)
    np.testing.assert_allclose(dc, dt, atol=1e-9)
    assert R.shape == (len(ia), 2, 2)
    for k in range(0, len(ia), 7):
        (a, wa), (b, wb) = A[int(ia[k])][:2], B[int(ib[k])][:2]
        np.testing.assert_allclose(R[k] @ R[k].T, np.eye(2), atol=1e-12)
        if group == "SO2":
            assert np.linalg.det(R[k]) > 0
        d2 = (overlap_np(a, wa, a, wa, 0.6) + overlap_np(b, wb, b, wb, 0.6) - 2 * overlap_np(a, wa, b, wb, 0.6, R=R[k]))
        assert np.sqrt(max(d2, 0.0)) == pytest.approx(dc[k], abs=1e-9)


def test_compiled_2d_search_is_invariant_and_exact_on_rotated_copies():
    """A 2D environment against rotated, reflected and permuted copies of itself: distance 0 (O(2));
    under SO(2) a reflected asymmetric copy stays apart."""
    rng = np.random.default_rng(4)
    pos, w = random_env(rng, 7, dim=2)
    copies = []
    for det in (1, -1):
        for _ in range(3):
            R = random_orthogonal(rng, dim=2, det=det)
            perm = rng.permutation(7)
            copies.append((pos[perm] @ R.T, w[perm]))
    A, B = EnvironmentSet.from_list([(pos, w)]), EnvironmentSet.from_list(copies)
    d = DistanceEngine(A, B, sigma=0.5, group="O2").distances(np.zeros(6, int), np.arange(6))
    np.testing.assert_allclose(d, 0.0, atol=1e-6)
    d_so2 = DistanceEngine(A, B, sigma=0.5, group="SO2").distances(np.zeros(6, int), np.arange(6))
    np.testing.assert_allclose(d_so2[:3], 0.0, atol=1e-6)
    assert np.all(d_so2[3:] > 0.05)


def test_settings_the_compiled_search_leaves_to_pytorch():
    """Per-atom sigma (2D and 3D), single precision and a fixed orientation run on PyTorch
    (compiled=True says why); GIIP_NO_FUSED=1 keeps PyTorch everywhere."""
    rng = np.random.default_rng(2)
    two_d = _random_set(rng, 3, dim=2)
    assert DistanceEngine(two_d, sigma=0.8, group="O2").compiled
    assert not DistanceEngine(two_d, sigma=0.8, group=None).compiled
    env2 = random_env(rng, 5, dim=2)
    per_atom_2d = EnvironmentSet.from_list([(env2[0], env2[1], np.full(5, 0.7))])
    assert not DistanceEngine(per_atom_2d, sigma=0.8, group="O2").compiled
    env = random_env(rng, 8)
    per_atom = EnvironmentSet.from_list([(env[0], env[1], np.full(8, 0.7))])
    assert not DistanceEngine(per_atom, sigma=0.8).compiled
    plain = _random_set(rng, 3)
    assert not DistanceEngine(plain, sigma=0.8, dtype="float32").compiled
    assert not DistanceEngine(plain, sigma=0.8, group=None).compiled
    with pytest.raises(ValueError, match="one common sigma"):
        DistanceEngine(per_atom, sigma=0.8, compiled=True)
    assert DistanceEngine(plain, sigma=0.8).compiled


def test_no_fused_environment_keeps_pytorch(monkeypatch):
    rng = np.random.default_rng(3)
    monkeypatch.setenv("GIIP_NO_FUSED", "1")
    assert not DistanceEngine(_random_set(rng, 3), sigma=0.8).compiled


def test_build_uses_the_compiled_search_and_reference_search_cross_checks(tmp_path):
    """The default build runs the compiled search; reference_search=True (giip build --exact) runs
    PyTorch for the training matrix (the calibration of the default path runs the coarse search it
    chooses, compiled); both training distance matrices agree to 1e-9."""
    from pathlib import Path

    from giip_plugin.reference import ReferenceMap

    dump = Path(__file__).parent / "data" / "ninb" / "quench100K.dump"
    kw = dict(r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign", centers=["Ni"], type_names="1=Ni,2=Nb",
              n_train=40, epsilon=1.5, n_classes=3, n_coords=2)
    calls = []
    real = fused.search_pairs
    try:
        fused.search_pairs = lambda *a, **k: calls.append(k["exact"]) or real(*a, **k)
        fast = ReferenceMap.from_files([str(dump)], **kw)
        assert True in calls
        n_calls = calls.count(True)
        slow = ReferenceMap.from_files([str(dump)], reference_search=True, **kw)
        assert calls.count(True) == n_calls
    finally:
        fused.search_pairs = real
    assert np.max(fast.distances - slow.distances) <= 1e-9
    np.testing.assert_allclose(fast.distances, slow.distances, atol=1e-9)


def test_cuda_search_matches_the_compiled_one(ninb_envs):
    """device="cuda" runs the PyTorch implementation of the same search: on a GPU it must give the
    compiled kernel's distances (float64). Runs where PyTorch sees a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    rng = np.random.default_rng(13)
    ia, ib = rng.integers(0, len(ninb_envs), 400), rng.integers(0, len(ninb_envs), 400)
    gpu = DistanceEngine(ninb_envs, sigma=1.0, device="cuda")
    assert not gpu.compiled
    cpu = DistanceEngine(ninb_envs, sigma=1.0)
    np.testing.assert_allclose(gpu.distances(ia, ib), cpu.distances(ia, ib), atol=1e-9)


def test_out_of_range_pairs_are_refused():
    rng = np.random.default_rng(4)
    eng = DistanceEngine(_random_set(rng, 3), sigma=0.8)
    with pytest.raises(IndexError, match="outside"):
        eng.distances([0, 3], [1, 1])
    with pytest.raises(IndexError, match="outside"):
        eng.distances([0], [-1])


@pytest.mark.parametrize("dim", [3, 2])
def test_pairs_without_a_common_species_skip_the_search_exactly(dim):
    """With vector species, a pair whose environments share no neighbour species overlaps nowhere:
    its distance is sqrt(<A,A> + <B,B>) without a search. Against both searches run on every pair."""
    rng = np.random.default_rng(11)
    envs = []
    for k in range(18):
        pos, w = random_env(rng, int(rng.integers(2, 7)), dim=dim, channels=3)
        if k % 3 < 2:  # one species only (channel 0 or 1); every third environment mixed
            w = np.zeros_like(w)
            w[:, k % 3] = rng.uniform(0.5, 1.0, len(w))
        envs.append((pos, w))
    S = EnvironmentSet.from_list(envs)
    group = "O3" if dim == 3 else "O2"
    comp = DistanceEngine(S, sigma=0.7, group=group)
    torch_ = DistanceEngine(S, sigma=0.7, group=group, compiled=False)
    ia, ib = np.triu_indices(len(S), 1)
    skip = comp.disjoint(ia, ib)
    assert 0.3 < skip.mean() < 0.6  # channel 0 against channel 1 only
    d, R = comp.distances(ia, ib, return_rotation=True)
    full = fused._searched_pairs(comp, ia, ib, exact=True, workers=1, progress=None, return_rotation=False,
                                 pairs_per_call=64)
    np.testing.assert_allclose(d, full, atol=1e-12)
    np.testing.assert_allclose(torch_.distances(ia, ib), torch_._searched(ia, ib, False, None, 1), atol=1e-12)
    np.testing.assert_allclose(torch_.distances(ia, ib), d, atol=1e-9)
    s = comp.self_overlaps()
    np.testing.assert_allclose(d[skip], np.sqrt(s[ia[skip]] + s[ib[skip]]), rtol=1e-14)
    assert np.all(R[skip] == np.eye(dim))
    # one-channel encodings never skip
    one = EnvironmentSet.from_list([random_env(rng, 4, dim=dim) for _ in range(3)])
    assert DistanceEngine(one, sigma=0.7, group=group).disjoint([0, 1], [1, 2]) is None
