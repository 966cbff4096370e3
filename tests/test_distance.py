"""The orientation-invariant GIIP distance, checked against an independent brute force (dense
rotation sampling + local polish, in numpy/scipy), exact identities of the metric, invariances,
continuity at the cutoff, species encodings, per-atom widths (against numerical integrals),
float32, the batched API and input errors."""
import numpy as np
import pytest
from ase import Atoms
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

import giip_plugin as gp
from giip_plugin.environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding, smooth_cutoff
from giip_plugin.kernels import DistanceEngine


# ================================================================================================
# independent reference implementation
# ================================================================================================
def _as_w(w, n):
    return np.asarray(w, float).reshape(n, -1)


def _pair_factors(a, wa, b, wb, sigma, sa, sb):
    """W_ij g_ij and S_ij of the GIIP sum (per-atom widths, or the common sigma)."""
    d = a.shape[1]
    sa = np.full(len(a), sigma) if sa is None else np.asarray(sa, float)
    sb = np.full(len(b), sigma) if sb is None else np.asarray(sb, float)
    S = sa[:, None] ** 2 + sb[None, :] ** 2
    g = (2 * sa[:, None] * sb[None, :] / S) ** (d / 2)
    return (_as_w(wa, len(a)) @ _as_w(wb, len(b)).T) * g, S


def overlap_np(a, wa, b, wb, sigma, sa=None, sb=None, R=None):
    """<A, R B> evaluated directly."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    c = b if R is None else b @ np.asarray(R).T
    Wg, S = _pair_factors(a, wa, b, wb, sigma, sa, sb)
    d2 = ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    return float((Wg * np.exp(-d2 / (2 * S))).sum())


def overlap_on_grid(a, wa, b, wb, sigma, mats, sa=None, sb=None):
    """<A, R B> for a stack of matrices ``mats (G, d, d)``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    Wg, S = _pair_factors(a, wa, b, wb, sigma, sa, sb)
    base = Wg * np.exp(-((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]) / (2 * S))
    out = np.empty(len(mats))
    for s in range(0, len(mats), 4096):
        Rb = np.einsum("gxy,jy->gjx", mats[s : s + 4096], b)
        dots = np.einsum("ix,gjx->gij", a, Rb)
        out[s : s + 4096] = (base * np.exp(dots / S)).sum((1, 2))
    return out


def _rot2(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def brute_force_max(a, wa, b, wb, sigma, group, sa=None, sb=None, n_rot=30000, n_polish=5, seed=0):
    """max over the group of <A, R B>: dense sampling, then the best few well-separated samples of
    each parity polished with scipy (BFGS on a rotation vector / an angle). Returns (f, R)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    f_of = lambda R: overlap_np(a, wa, b, wb, sigma, sa, sb, R)
    best = (-np.inf, None)
    if dim == 3:
        R0 = Rotation.random(n_rot, random_state=rng).as_matrix()
        parities = [1.0, -1.0] if group == "O3" else [1.0]
        for par in parities:
            mats = par * R0
            F = overlap_on_grid(a, wa, b, wb, sigma, mats, sa, sb)
            chosen = []
            for i in np.argsort(-F)[:3000]:  # greedy non-maximum suppression (20 degrees)
                if all(np.trace(mats[i].T @ mats[j]) < 1 + 2 * np.cos(np.radians(20)) for j in chosen):
                    chosen.append(i)
                    if len(chosen) == n_polish:
                        break
            for i in chosen:
                R = mats[i]
                for _ in range(2):  # BFGS on R = exp([w]) R, restarted once
                    res = minimize(lambda w: -f_of(Rotation.from_rotvec(w).as_matrix() @ R), np.zeros(3),
                                   method="BFGS", options={"gtol": 1e-12})
                    R = Rotation.from_rotvec(res.x).as_matrix() @ R
                if f_of(R) > best[0]:
                    best = (f_of(R), R)
    else:
        theta = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
        refl = [np.eye(2), np.diag([1.0, -1.0])] if group == "O2" else [np.eye(2)]
        for M in refl:
            F = overlap_on_grid(a, wa, b, wb, sigma, _rot2(theta) @ M, sa, sb)
            is_max = (F >= np.roll(F, 1)) & (F >= np.roll(F, -1))
            for i in np.flatnonzero(is_max)[np.argsort(-F[is_max])][:n_polish]:
                res = minimize(lambda t: -f_of(_rot2(t[0]) @ M), [theta[i]], method="BFGS", options={"gtol": 1e-12})
                R = _rot2(res.x[0]) @ M
                if f_of(R) > best[0]:
                    best = (f_of(R), R)
    return best


def brute_force_distance(a, wa, b, wb, sigma, group, sa=None, sb=None, **kw):
    f, R = brute_force_max(a, wa, b, wb, sigma, group, sa, sb, **kw)
    d2 = overlap_np(a, wa, a, wa, sigma, sa, sa) + overlap_np(b, wb, b, wb, sigma, sb, sb) - 2 * f
    return np.sqrt(max(d2, 0.0)), R


def fixed_distance(a, wa, b, wb, sigma, sa=None, sb=None):
    d2 = overlap_np(a, wa, a, wa, sigma, sa, sa) + overlap_np(b, wb, b, wb, sigma, sb, sb) \
        - 2 * overlap_np(a, wa, b, wb, sigma, sa, sb)
    return np.sqrt(max(d2, 0.0))


def random_env(rng, n, dim=3, rmin=1.8, rmax=4.0, channels=None, signs=False):
    u = rng.normal(size=(n, dim))
    pos = u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(rmin, rmax, (n, 1))
    if channels:
        w = np.eye(channels)[rng.integers(0, channels, n)] * rng.uniform(0.5, 1.0, (n, 1))
    elif signs:
        w = rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
    else:
        w = rng.uniform(0.3, 1.0, n)
    return pos, w


def random_orthogonal(rng, dim=3, det=1):
    if dim == 3:
        R = Rotation.random(random_state=rng).as_matrix()
        return R if det > 0 else -R
    R = _rot2(rng.uniform(0, 2 * np.pi))
    return R if det > 0 else R @ np.diag([1.0, -1.0])


# ================================================================================================
# agreement with the brute force
# ================================================================================================
def _small_cases_3d():
    rng = np.random.default_rng(2024)
    cases = []
    for k in range(7):
        na, nb = rng.integers(3, 9, 2)
        kw = [dict(), dict(signs=True), dict(channels=2)][k % 3]
        sigma = [0.5, 0.7, 1.0][k % 3]
        # radii in units of sigma as in the NiNb environments (r / sigma <= 4)
        (pa, wa), (pb, wb) = random_env(rng, na, **kw), random_env(rng, nb, **kw)
        cases.append(((pa * sigma, wa), (pb * sigma, wb), sigma))
    # a similar pair: B is a rotated, jittered copy of A
    pa, wa = random_env(rng, 7, signs=True)
    pb = (pa + 0.15 * rng.normal(size=pa.shape)) @ random_orthogonal(rng).T
    cases.append(((pa, wa), (pb, wa.copy()), 1.0))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("group", ["O3", "SO3"])
def test_small_3d_cases_match_brute_force(group):
    for (pa, wa), (pb, wb), sigma in _small_cases_3d():
        d_bf, _ = brute_force_distance(pa, wa, pb, wb, sigma, group, n_rot=15000)
        d = gp.distance(pa, wa, pb, wb, sigma=sigma, group=group)
        assert d <= d_bf + 1e-9, f"library {d} worse than brute force {d_bf}"
        assert abs(d - d_bf) < 1e-6, (d, d_bf)


def test_per_atom_sigma_distance_matches_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(3):
        (pa, wa), (pb, wb) = random_env(rng, 5, 3, 1.5, 3.0, signs=True), random_env(rng, 6, 3, 1.5, 3.0, signs=True)
        sa, sb = rng.uniform(0.6, 1.0, 5), rng.uniform(0.6, 1.0, 6)
        d_bf, _ = brute_force_distance(pa, wa, pb, wb, 0.7, "O3", sa, sb, n_rot=15000)
        d = gp.distance(pa, wa, pb, wb, sigma=0.7, sigmas_a=sa, sigmas_b=sb)
        assert d <= d_bf + 1e-9 and abs(d - d_bf) < 1e-6, (d, d_bf)


@pytest.mark.parametrize("group", ["O2", "SO2"])
def test_small_2d_cases_match_brute_force(group):
    rng = np.random.default_rng(99)
    for k in range(8):
        kw = [dict(), dict(signs=True), dict(channels=3)][k % 3]
        (pa, wa), (pb, wb) = random_env(rng, rng.integers(3, 9), dim=2, **kw), random_env(rng, rng.integers(3, 9), dim=2, **kw)
        sigma = [0.4, 0.6, 0.8][k % 3]
        pa, pb = pa * sigma, pb * sigma
        d_bf, _ = brute_force_distance(pa, wa, pb, wb, sigma, group)
        d = gp.distance(pa, wa, pb, wb, sigma=sigma, group=group)
        assert d <= d_bf + 1e-9 and abs(d - d_bf) < 1e-6, (k, d, d_bf)
    # 2D per-atom widths
    (pa, wa), (pb, wb) = random_env(rng, 5, dim=2, rmax=2.5), random_env(rng, 4, dim=2, rmax=2.5)
    sa, sb = rng.uniform(0.4, 0.8, 5), rng.uniform(0.4, 0.8, 4)
    d_bf, _ = brute_force_distance(pa, wa, pb, wb, 0.5, group, sa, sb)
    d = gp.distance(pa, wa, pb, wb, sigma=0.5, group=group, sigmas_a=sa, sigmas_b=sb)
    assert abs(d - d_bf) < 1e-6, (d, d_bf)


@pytest.mark.slow
def test_ninb_pairs_match_brute_force(ninb_envs):
    """Real first-shell environments (about 15 neighbours, sign species): a batch of random pairs
    through the engine (several pairs per chunk), each against the brute force."""
    rng = np.random.default_rng(1)
    n = 20
    ia, ib = rng.integers(0, len(ninb_envs), n), rng.integers(0, len(ninb_envs), n)
    eng = DistanceEngine(ninb_envs, sigma=1.0, group="O3", device="cpu")
    d_lib = eng.distances(ia, ib)
    bad = []
    for k in range(n):
        (pa, wa), (pb, wb) = ninb_envs[ia[k]], ninb_envs[ib[k]]
        d_bf, _ = brute_force_distance(pa, wa, pb, wb, 1.0, "O3", n_rot=10000, n_polish=4, seed=k)
        if not (d_lib[k] <= d_bf + 1e-9 and abs(d_lib[k] - d_bf) < 1e-6):
            bad.append((k, d_lib[k], d_bf))
    assert not bad, f"{len(bad)} of {n} pairs differ from the brute force (k, library, brute force): {bad}"
    # the single-pair API agrees with the batched engine
    for k in range(3):
        d1 = gp.distance(*ninb_envs[ia[k]], *ninb_envs[ib[k]], sigma=1.0)
        assert abs(d1 - d_lib[k]) < 1e-9


# ================================================================================================
# exact properties of the metric
# ================================================================================================
def test_identity_symmetry_and_invariances():
    rng = np.random.default_rng(8)
    (pa, wa), (pb, wb) = random_env(rng, 9, signs=True), random_env(rng, 8, signs=True)
    d_ab = gp.distance(pa, wa, pb, wb, sigma=0.8)
    assert gp.distance(pa, wa, pa, wa, sigma=0.8) < 1e-6
    assert abs(gp.distance(pb, wb, pa, wa, sigma=0.8) - d_ab) < 1e-8
    for det in (1, -1):  # rotations and rotoinversions of either side
        R = random_orthogonal(rng, 3, det)
        assert gp.distance(pa, wa, pa @ R.T, wa, sigma=0.8) < 1e-6
        assert abs(gp.distance(pa, wa, pb @ R.T, wb, sigma=0.8) - d_ab) < 1e-8
        assert abs(gp.distance(pa @ R.T, wa, pb, wb, sigma=0.8) - d_ab) < 1e-8
    # a reflection through a plane (det -1) is in O(3)
    mirror = np.diag([1.0, -1.0, 1.0])
    assert abs(gp.distance(pa, wa, pb @ mirror, wb, sigma=0.8) - d_ab) < 1e-8
    # permutation of neighbours
    p = rng.permutation(len(pb))
    assert abs(gp.distance(pa, wa, pb[p], wb[p], sigma=0.8) - d_ab) < 1e-8
    assert gp.distance(pa, wa, pa[rng.permutation(len(pa))], wa[rng.permutation(len(pa))], sigma=0.8) > 0.1
    # zero-weight atoms change nothing (padding)
    pz, wz = np.vstack([pb, [[0.3, 2.0, -1.0]]]), np.append(wb, 0.0)
    assert abs(gp.distance(pa, wa, pz, wz, sigma=0.8) - d_ab) < 1e-8
    # triangle inequality of the exact metric
    pc, wc = random_env(rng, 7, signs=True)
    d_ac, d_bc = gp.distance(pa, wa, pc, wc, sigma=0.8), gp.distance(pb, wb, pc, wc, sigma=0.8)
    assert d_ab <= d_ac + d_bc + 1e-9 and d_ac <= d_ab + d_bc + 1e-9 and d_bc <= d_ab + d_ac + 1e-9


def test_translation_of_structure_changes_nothing():
    rng = np.random.default_rng(4)
    L = 9.0
    pos = rng.uniform(0, L, (60, 3))
    species = np.where(rng.random(60) < 0.5, "Ni", "Nb")
    le = LocalEnvironments(2.5, 3.5, encoding=SpeciesEncoding("sign", ("Ni", "Nb")))
    atoms = Atoms(numbers=np.ones(60, int), positions=pos, cell=[L, L, L], pbc=True)
    moved = Atoms(numbers=np.ones(60, int), positions=pos + [3.3, -7.1, 12.4], cell=[L, L, L], pbc=True)
    moved.wrap()
    e1, e2 = le.compute(atoms, species=species), le.compute(moved, species=species)
    idx = [0, 5, 11, 17]
    for k in idx:
        assert gp.distance(*e1[k], *e2[k], sigma=1.0) < 1e-6
    D1 = gp.pairwise_distances(e1.subset(idx), sigma=1.0)
    D2 = gp.pairwise_distances(e2.subset(idx), sigma=1.0)
    np.testing.assert_allclose(D1, D2, atol=1e-8)


def test_removed_atom_costs_one():
    """An atom whose Gaussian no rotation can move (at the centre of rotations) costs exactly one
    atom when removed, exactly two when its sign species is swapped, sqrt(2) for vector species:
    min_R |S + G0 - R(S' + G0')|^2 = min_R |S - R S'|^2 + |G0 - G0'|^2 since <S - R S', G0> = 0."""
    rng = np.random.default_rng(6)
    shell, _ = random_env(rng, 6, rmin=2.0, rmax=3.0)
    pb = np.vstack([shell, [[0.0, 0.0, 0.0]]])
    wb = np.ones(7)
    assert gp.distance(shell, np.ones(6), pb, wb, sigma=1.0) == pytest.approx(1.0, abs=1e-7)
    assert gp.distance(shell, np.ones(6), pb, wb, sigma=1.0, group=None) == pytest.approx(1.0, abs=1e-9)
    wneg = np.ones(7)
    wneg[-1] = -1
    assert gp.distance(pb, wb, pb, wneg, sigma=1.0) == pytest.approx(2.0, abs=1e-7)
    onehot = np.tile([1.0, 0.0], (7, 1))
    swapped = onehot.copy()
    swapped[-1] = [0.0, 1.0]
    assert gp.distance(pb, onehot, pb, swapped, sigma=1.0) == pytest.approx(np.sqrt(2), abs=1e-7)
    # with a different shell on the other side: <S - R S2, G0> = <S, G0> - <S2, G0> for every R
    shell2 = shell @ random_orthogonal(rng).T + 0.2 * rng.normal(size=shell.shape)
    d_shells = gp.distance(shell, np.ones(6), shell2, np.ones(6), sigma=1.0)
    d_full = gp.distance(pb, wb, np.vstack([shell2, [[0.0, 0.0, 0.0]]]), wneg, sigma=1.0)
    o = np.zeros((1, 3))
    cross = overlap_np(shell, np.ones(6), o, [1.0], 1.0) - overlap_np(shell2, np.ones(6), o, [1.0], 1.0)
    assert d_full == pytest.approx(np.sqrt(d_shells**2 + 4.0 + 4.0 * cross), abs=1e-7)



def test_removed_or_swapped_atom_in_real_environments(ninb_envs):
    """One removed neighbour of a real environment: at most 1 (the fixed-orientation distance),
    and close to it; one neighbour of the other species: at most 2, and well above 1."""
    rng = np.random.default_rng(2)
    removed, swapped = [], []
    for k in rng.integers(0, len(ninb_envs), 6):
        pos, w = ninb_envs[k]
        j = rng.choice(np.flatnonzero(np.abs(w[:, 0]) == 1.0))
        keep = np.arange(len(pos)) != j
        removed.append(gp.distance(pos, w, pos[keep], w[keep], sigma=1.0))
        w2 = w.copy()
        w2[j] *= -1
        swapped.append(gp.distance(pos, w, pos, w2, sigma=1.0))
    removed, swapped = np.array(removed), np.array(swapped)
    assert np.all(removed <= 1 + 1e-9) and np.all(removed > 0.6) and removed.mean() > 0.8, removed
    assert np.all(swapped <= 2 + 1e-9) and np.all(swapped > 1.2) and swapped.mean() > 1.6, swapped


def test_continuity_across_the_cutoff():
    """A neighbour moved radially through r_inner and r_outer: the weight follows f(r), the
    distance changes continuously (1-Lipschitz in the density, by the triangle inequality) and
    smoothly (no kink at r_inner or r_outer)."""
    rng = np.random.default_rng(10)
    ri, ro = 3.0, 4.0
    shell = rng.normal(size=(6, 3))
    shell = shell / np.linalg.norm(shell, axis=1, keepdims=True) * rng.uniform(2.2, 2.8, (6, 1))
    u = np.array([0.48, -0.6, 0.64])
    u /= np.linalg.norm(u)
    le = LocalEnvironments(ri, ro, encoding=SpeciesEncoding("sign", ("Ni", "Nb")))
    species = np.array(["Ni"] * 7 + ["Nb"])

    def env(r):
        atoms = Atoms(numbers=np.ones(8, int), positions=np.vstack([[0, 0, 0], shell, r * u]))
        return le.compute(atoms, indices=[0], species=species)[0]

    radii = np.round(np.arange(2.6, 4.4001, 0.02), 10)
    radii = np.union1d(radii, [ri - 1e-3, ri + 1e-3, ro - 1e-3, ro + 1e-3])
    envs = [env(r) for r in radii]
    base = env(10.0)
    assert len(base[0]) == 6 and len(env(ro + 1e-3)[0]) == 6 and len(env(ro - 1e-3)[0]) == 7
    ref = env(2.6)
    A = EnvironmentSet.from_list(envs)
    # fixed orientation against the environment without the moving atom: exactly f(r)
    d_fixed = DistanceEngine(A, EnvironmentSet.from_list([base]), sigma=1.0, group=None, device="cpu").distances(
        np.arange(len(envs)), np.zeros(len(envs), int))
    np.testing.assert_allclose(d_fixed, smooth_cutoff(radii, ri, ro), atol=1e-9)
    # invariant distance to a fixed environment
    d = DistanceEngine(A, EnvironmentSet.from_list([ref]), sigma=1.0, device="cpu").distances(
        np.arange(len(envs)), np.zeros(len(envs), int))
    step = np.array([fixed_distance(*envs[k], *envs[k + 1], 1.0) for k in range(len(envs) - 1)])
    assert np.all(np.abs(np.diff(d)) <= step + 1e-7), "the invariant distance jumped"
    assert np.all(d[radii >= ro] == d[radii >= ro][0])
    for r0 in (ri, ro):  # one-sided slopes agree at the cutoffs
        i = int(np.flatnonzero(np.isclose(radii, r0 - 1e-3))[0])
        j = i + 1 if np.isclose(radii[i + 1], r0) else None
        left = (d[i + 1] - d[i]) / (radii[i + 1] - radii[i])
        right = (d[i + 2] - d[i + 1]) / (radii[i + 2] - radii[i + 1])
        assert abs(left - right) < 0.05 * max(1.0, abs(left)), (r0, left, right, j)


def test_vector_species_sum_inside_the_search():
    """Vector species: the channel sum happens inside the rotation search. Each species' pattern
    alone matches perfectly (90 vs 180 degrees apart cannot both be matched by one rotation)."""
    a = np.array([[2.0, 0, 0], [0, 2.0, 0]])
    b = np.array([[2.0, 0, 0], [-2.0, 0, 0]])
    w = np.eye(2)  # atom 0 species X, atom 1 species Y
    d = gp.distance(a, w, b, w, sigma=0.8)
    d_bf, _ = brute_force_distance(a, w, b, w, 0.8, "O3", n_rot=5000)
    assert d > 1.0 and abs(d - d_bf) < 1e-6
    # channels searched separately would find a perfect match
    per_channel = [gp.distance(a[[c]], w[[c], c], b[[c]], w[[c], c], sigma=0.8) for c in range(2)]
    assert np.sqrt(np.sum(np.square(per_channel))) < 1e-6
    # species mismatch costs, whatever the geometry (X at 2 A and Y at 3 A, or the reverse)
    c = np.array([[2.0, 0, 0], [0, 3.0, 0]])
    assert gp.distance(c, w, c, w[::-1], sigma=0.8) > 1.0
    assert gp.distance(c, w[:, 0] + w[:, 1], c, w[::-1, 0] + w[::-1, 1], sigma=0.8) < 1e-6
    # one channel with vector encoding equals no encoding
    rng = np.random.default_rng(3)
    (pa, wa), (pb, wb) = random_env(rng, 6), random_env(rng, 5)
    assert abs(gp.distance(pa, wa[:, None], pb, wb[:, None], sigma=0.7) - gp.distance(pa, wa, pb, wb, sigma=0.7)) < 1e-10


def test_chirality_so3_vs_o3():
    chiral = np.array([[1.5, 0, 0], [0, 2.0, 0], [0, 0, 2.5], [1.0, 1.0, 1.0]])
    mirror = chiral * [-1, 1, 1]
    w = np.ones(4)
    assert gp.distance(chiral, w, mirror, w, sigma=0.5, group="O3") < 1e-6
    d_so3 = gp.distance(chiral, w, mirror, w, sigma=0.5, group="SO3")
    assert d_so3 > 0.3
    d_bf, _ = brute_force_distance(chiral, w, mirror, w, 0.5, "SO3", n_rot=20000)
    assert abs(d_so3 - d_bf) < 1e-6
    # an achiral environment is its own mirror image in SO(3) too
    achiral = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    assert gp.distance(achiral, np.ones(3), achiral * [-1, 1, 1], np.ones(3), sigma=0.5, group="SO3") < 1e-6


@pytest.mark.parametrize("group", ["O3", "SO3", "O2", "SO2"])
def test_return_rotation_achieves_the_distance(group):
    dim = int(group[-1])
    rng = np.random.default_rng(12)
    (pa, wa), (pb, wb) = random_env(rng, 7, dim=dim, signs=True), random_env(rng, 6, dim=dim, signs=True)
    d, R = gp.distance(pa, wa, pb, wb, sigma=0.7, group=group, return_rotation=True)
    assert R.shape == (dim, dim)
    np.testing.assert_allclose(R @ R.T, np.eye(dim), atol=1e-10)
    if group.startswith("SO"):
        assert np.linalg.det(R) == pytest.approx(1.0)
    assert abs(fixed_distance(pa, wa, pb @ R.T, wb, 0.7) - d) < 1e-8
    f = gp.inner_product(pa, wa, pb @ R.T, wb, sigma=0.7)
    assert abs(gp.inner_product(pa, wa, pa, wa, sigma=0.7) + gp.inner_product(pb, wb, pb, wb, sigma=0.7) - 2 * f - d * d) < 1e-8
    # a known rotation is recovered
    Q = random_orthogonal(rng, dim, det=1)
    d0, R0 = gp.distance(pa, wa, pa @ Q.T, wa, sigma=0.7, group=group, return_rotation=True)
    assert d0 < 1e-6
    np.testing.assert_allclose(R0 @ Q, np.eye(dim), atol=1e-5)
    assert np.allclose(gp.optimal_rotation(pa, wa, pa @ Q.T, wa, sigma=0.7, group=group) @ Q, np.eye(dim), atol=1e-5)


# ================================================================================================
# per-atom widths
# ================================================================================================
def test_equal_per_atom_sigmas_match_common_sigma():
    rng = np.random.default_rng(13)
    for dim, group in ((3, "O3"), (2, "O2")):
        (pa, wa), (pb, wb) = random_env(rng, 6, dim=dim, signs=True), random_env(rng, 7, dim=dim, signs=True)
        pa, pb = 0.6 * pa, 0.6 * pb
        d = gp.distance(pa, wa, pb, wb, sigma=0.6, group=group)
        d_s = gp.distance(pa, wa, pb, wb, sigma=1.3, group=group, sigmas_a=np.full(6, 0.6), sigmas_b=np.full(7, 0.6))
        assert abs(d - d_s) < 1e-8
        ip = gp.inner_product(pa, wa, pb, wb, sigma=0.6)
        assert abs(gp.inner_product(pa, wa, pb, wb, sigma=2.0, sigmas_a=np.full(6, 0.6), sigmas_b=np.full(7, 0.6)) - ip) < 1e-12
        # common sigma: exp(-|a - b|^2 / (4 sigma^2))
        assert abs(ip - overlap_np(pa, wa, pb, wb, 0.6)) < 1e-12


def _density(points, pos, w, sig, dim):
    """sum_i w_i G_{s_i}(x - a_i) with unit-L2-norm Gaussians."""
    out = np.zeros(len(points))
    for p, ww, s in zip(pos, w, sig):
        norm = (np.pi ** (dim / 4)) * s ** (dim / 2)
        out += ww * np.exp(-((points - p) ** 2).sum(1) / (2 * s * s)) / norm
    return out


@pytest.mark.parametrize("dim", [3, 2])
def test_per_atom_sigma_inner_product_is_the_integral_of_densities(dim):
    """<A, B> with per-atom widths = L2 inner product of the densities (grid quadrature)."""
    pa = np.array([[0.4, -0.3, 0.2], [-0.5, 0.6, -0.1]])[:, :dim]
    pb = np.array([[0.1, 0.5, -0.4], [0.7, -0.2, 0.3], [-0.6, -0.4, 0.0]])[:, :dim]
    wa, wb = np.array([1.0, -0.7]), np.array([0.8, 1.0, -0.5])
    sa, sb = np.array([0.45, 0.7]), np.array([0.5, 0.35, 0.6])
    h = 0.06 if dim == 3 else 0.03
    x = np.arange(-4.0, 4.0 + h / 2, h)
    pts = np.stack(np.meshgrid(*([x] * dim), indexing="ij"), -1).reshape(-1, dim)
    ra, rb = _density(pts, pa, wa, sa, dim), _density(pts, pb, wb, sb, dim)
    integral = float((ra * rb).sum() * h**dim)
    ip = gp.inner_product(pa, wa, pb, wb, sigma=1.0, sigmas_a=sa, sigmas_b=sb)
    assert abs(ip - integral) < 1e-8 * max(1.0, abs(integral)), (ip, integral)
    # and each density has the norm the formula gives
    assert abs(gp.inner_product(pa, wa, pa, wa, sigma=1.0, sigmas_a=sa, sigmas_b=sa) - float((ra * ra).sum() * h**dim)) < 1e-8


def test_mixed_per_atom_and_common_sigma_inner_product():
    """inner_product: a side without per-atom widths uses the common sigma."""
    rng = np.random.default_rng(14)
    (pa, wa), (pb, wb) = random_env(rng, 4), random_env(rng, 5)
    sa = rng.uniform(0.4, 1.0, 4)
    ip = gp.inner_product(pa, wa, pb, wb, sigma=0.8, sigmas_a=sa)
    assert abs(ip - overlap_np(pa, wa, pb, wb, 0.8, sa, np.full(5, 0.8))) < 1e-12


def test_mixed_per_atom_and_common_sigma_distance():
    rng = np.random.default_rng(14)
    (pa, wa), (pb, wb) = random_env(rng, 4, rmax=3.0), random_env(rng, 5, rmax=3.0)
    sa = rng.uniform(0.6, 1.0, 4)
    d = gp.distance(pa, wa, pb, wb, sigma=0.8, sigmas_a=sa)
    assert abs(d - gp.distance(pa, wa, pb, wb, sigma=0.8, sigmas_a=sa, sigmas_b=np.full(5, 0.8))) < 1e-9


# ================================================================================================
# precision, batched API, 2D structures, errors
# ================================================================================================
def test_float32_close_to_float64_single_pairs(ninb_envs):
    rng = np.random.default_rng(16)
    (pa, wa), (pb, wb) = random_env(rng, 8, signs=True), random_env(rng, 8, signs=True)
    d32 = gp.distance(pa, wa, pb, wb, sigma=1.0, dtype="float32")
    assert abs(d32 - gp.distance(pa, wa, pb, wb, sigma=1.0)) < 1e-3
    for k in (0,):
        d32 = gp.distance(*ninb_envs[k], *ninb_envs[k + 10], sigma=1.0, dtype="float32")
        assert abs(d32 - gp.distance(*ninb_envs[k], *ninb_envs[k + 10], sigma=1.0)) < 1e-3


def test_float32_close_to_float64(ninb_envs):
    rng = np.random.default_rng(15)
    ia, ib = rng.integers(0, len(ninb_envs), 12), rng.integers(0, len(ninb_envs), 12)
    ia[:3] = ib[:3]  # identical pairs too
    d64 = DistanceEngine(ninb_envs, sigma=1.0, device="cpu", dtype="float64").distances(ia, ib)
    d32 = DistanceEngine(ninb_envs, sigma=1.0, device="cpu", dtype="float32").distances(ia, ib)
    assert np.abs(d32 - d64)[3:].max() < 1e-3
    assert d32[:3].max() < 2e-2  # sqrt of a float32 round-off near 0


@pytest.mark.slow
def test_pairwise_distances_matches_single_calls():
    rng = np.random.default_rng(17)
    envs = [random_env(rng, int(rng.integers(2, 9)), signs=True) for _ in range(6)]
    D = gp.pairwise_distances(envs, sigma=0.8)
    assert D.shape == (6, 6)
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    for i in range(6):
        for j in range(6):
            if i != j:
                assert abs(D[i, j] - gp.distance(*envs[i], *envs[j], sigma=0.8)) < 1e-9
    # rectangular, and EnvironmentSet input
    D2 = gp.pairwise_distances(envs[:2], EnvironmentSet.from_list(envs[2:]), sigma=0.8)
    np.testing.assert_allclose(D2, D[:2, 2:], atol=1e-9)
    # per-atom widths in the tuples
    envs_s = [(p, w, np.full(len(p), 0.8)) for p, w in envs[:3]]
    np.testing.assert_allclose(gp.pairwise_distances(envs_s, sigma=5.0), D[:3, :3], atol=1e-8)


def test_float32_neighbour_on_the_z_axis():
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(6):
        (a, w), (b, _) = random_env(rng, 6, rmin=2.0, rmax=3.5), random_env(rng, 6, rmin=2.0, rmax=3.5)
        a[0] = [0.0, 0.0, 2.5]  # on the z axis (fine when moved by 0.01)
        w = np.ones(6)
        errors.append(gp.distance(a, w, b, w, sigma=1.0, dtype="float32") - gp.distance(a, w, b, w, sigma=1.0))
    assert np.abs(errors).max() < 1e-3, errors


def test_empty_environment():
    rng = np.random.default_rng(18)
    pb, wb = random_env(rng, 5)
    d = gp.distance(np.zeros((0, 3)), np.zeros(0), pb, wb, sigma=0.8)
    assert abs(d - np.sqrt(overlap_np(pb, wb, pb, wb, 0.8))) < 1e-9
    assert gp.distance(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), np.zeros(0), sigma=0.8) == 0.0


def test_2d_environments_from_a_structure():
    """A 2D hexagonal patch with a vacancy: environments are 2D, rotation-invariant under O(2)."""
    a0 = 1.1
    ij = np.array([(i, j) for i in range(-4, 5) for j in range(-4, 5)], float)
    xy = ij[:, :1] * [a0, 0] + ij[:, 1:] * [a0 / 2, a0 * np.sqrt(3) / 2]
    th = 0.37
    rot = Atoms("H%d" % len(xy), positions=np.column_stack([xy @ _rot2(th).T, np.zeros(len(xy))]))
    flat = Atoms("H%d" % len(xy), positions=np.column_stack([xy, np.zeros(len(xy))]))
    le = LocalEnvironments(1.3, 1.75, dim=2)
    centre = int(np.argmin(np.linalg.norm(xy, axis=1)))
    e1, e2 = le.compute(flat, indices=[centre]), le.compute(rot, indices=[centre])
    assert e1.dim == 2 and len(e1[0][0]) == 6
    assert gp.distance(*e1[0], *e2[0], sigma=0.5, group="O2") < 1e-6
    assert gp.distance(*e1[0], *e2[0], sigma=0.5, group="SO2") < 1e-6
    # remove a neighbour: about one atom of difference
    vac = Atoms("H%d" % (len(xy) - 1), positions=np.delete(flat.positions, centre + 1, axis=0))
    e3 = le.compute(vac, indices=[centre])
    assert 0.7 < gp.distance(*e1[0], *e3[0], sigma=0.5, group="O2") <= 1 + 1e-9
    with pytest.raises(ValueError):
        gp.distance(*e1[0], *e2[0], sigma=0.5, group="O3")


def test_bad_input_errors():
    rng = np.random.default_rng(19)
    (pa, wa), (pb, wb) = random_env(rng, 4), random_env(rng, 5)
    bad = pa.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.distance(bad, wa, pb, wb, sigma=1.0)
    with pytest.raises(ValueError, match="NaN"):
        gp.distance(pa, wa, pb, np.full(5, np.nan), sigma=1.0)
    with pytest.raises(ValueError, match="channels"):
        gp.distance(pa, np.ones((4, 2)), pb, np.ones((5, 3)), sigma=1.0)
    with pytest.raises(ValueError, match="channels"):
        gp.inner_product(pa, np.ones((4, 2)), pb, wb, sigma=1.0)
    with pytest.raises(ValueError):
        gp.pairwise_distances([(pa, np.ones((4, 2))), (pb, wb)], sigma=1.0)
    with pytest.raises(ValueError, match="weights"):
        gp.distance(pa, np.ones(3), pb, wb, sigma=1.0)
    for s in (-1.0, 0.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="sigma"):
            gp.distance(pa, wa, pb, wb, sigma=s)
    with pytest.raises(ValueError, match="sigma"):
        gp.distance(pa, wa, pb, wb, sigma=1.0, sigmas_a=np.array([1.0, -0.5, 1.0, 1.0]), sigmas_b=np.ones(5))
    with pytest.raises(ValueError):
        gp.distance(pa, wa, pb, wb, sigma=1.0, sigmas_a=np.ones(3), sigmas_b=np.ones(5))
    with pytest.raises(ValueError, match="group"):
        gp.distance(pa, wa, pb, wb, sigma=1.0, group="O4")
    with pytest.raises(ValueError, match="group"):
        gp.distance(pa, wa, pb, wb, sigma=1.0, group="SO2")
    with pytest.raises(ValueError, match="group"):
        gp.distance(pa[:, :2], wa, pb[:, :2], wb, sigma=1.0, group="O3")
    with pytest.raises(ValueError):
        gp.distance(pa[:, :2], wa, pb, wb, sigma=1.0)
    with pytest.raises(ValueError):
        gp.distance(pa, wa, pb, wb, sigma=1.0, dtype="float16")
    with pytest.raises(ValueError, match="r_inner"):
        LocalEnvironments(4.0, 3.0)
