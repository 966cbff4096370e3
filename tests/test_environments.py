"""Local atomic environments: neighbours (against ASE), cutoff weights, species encodings, centres,
2D structures, per-species widths, padded batches and input errors."""
import time
import zlib

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from giip_plugin.environments import (
    EnvironmentSet,
    LocalEnvironments,
    SpeciesEncoding,
    neighbor_pairs,
    smooth_cutoff,
)

TRICLINIC = np.array([[7.0, 0.0, 0.0], [2.5, 6.5, 0.0], [1.5, -2.0, 7.2]])


def _sorted_pairs(i, j, D):
    """Pairs in a canonical order (by centre, neighbour, then vector)."""
    Dr = np.round(D, 6)
    order = np.lexsort((Dr[:, 2], Dr[:, 1], Dr[:, 0], j, i))
    return i[order], j[order], D[order]


def _assert_same_pairs(ours, theirs):
    i1, j1, D1 = _sorted_pairs(*ours)
    i2, j2, D2 = _sorted_pairs(*theirs)
    assert len(i1) == len(i2), f"{len(i1)} pairs, ASE finds {len(i2)}"
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(j1, j2)
    np.testing.assert_allclose(D1, D2, atol=1e-9)


def _structure(case, rng):
    if case == "periodic-orthogonal":
        return Atoms("H40", positions=rng.uniform(0, 8, (40, 3)), cell=[8, 8, 8], pbc=True)
    if case == "periodic-triclinic":
        return Atoms("H40", scaled_positions=rng.uniform(0, 1, (40, 3)), cell=TRICLINIC, pbc=True)
    if case == "periodic-outside-cell":  # unwrapped coordinates
        return Atoms("H40", positions=rng.uniform(-4, 12, (40, 3)), cell=[8, 8, 8], pbc=True)
    if case == "free":
        return Atoms("H40", positions=rng.uniform(0, 8, (40, 3)), pbc=False)
    if case == "mixed":
        return Atoms("H40", positions=rng.uniform(0, 8, (40, 3)), cell=[8, 8, 8], pbc=[True, False, True])
    if case == "mixed-outside-free-direction":
        return Atoms("H40", positions=rng.uniform(0, 8, (40, 3)) + [0, 25, 0], cell=[8, 8, 8], pbc=[True, False, True])
    if case == "mixed-zero-cell-vector":  # a slab with no z cell vector at all
        return Atoms("H40", positions=rng.uniform(0, 8, (40, 3)) - [0, 0, 30], cell=[8, 8, 0], pbc=[True, True, False])
    if case == "mixed-triclinic":
        return Atoms("H40", scaled_positions=rng.uniform(0, 1, (40, 3)), cell=TRICLINIC, pbc=[True, True, False])
    if case == "small-cell":  # box 2.5 < cutoff 3: several images of the same atom
        return Atoms("H3", positions=rng.uniform(0, 2.5, (3, 3)), cell=[2.5, 2.5, 2.5], pbc=True)
    if case == "small-triclinic":
        return Atoms("H3", scaled_positions=rng.uniform(0, 1, (3, 3)), cell=TRICLINIC / 3, pbc=True)
    if case == "small-mixed":
        return Atoms("H3", positions=rng.uniform(0, 2.5, (3, 3)), cell=[2.5, 2.5, 2.5], pbc=[True, False, False])
    raise KeyError(case)


CASES = [
    "periodic-orthogonal", "periodic-triclinic", "periodic-outside-cell", "free", "mixed",
    "mixed-outside-free-direction", "mixed-zero-cell-vector", "mixed-triclinic", "small-cell",
    "small-triclinic", "small-mixed",
]


# ------------------------------------------------------------------------------------------------
# neighbours
@pytest.mark.parametrize("case", CASES)
def test_neighbours_match_ase(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    atoms = _structure(case, rng)
    cutoff = 3.0
    _assert_same_pairs(neighbor_pairs(atoms, cutoff), neighbor_list("ijD", atoms, cutoff))
    if case.startswith("small"):
        i, j, _ = neighbor_pairs(atoms, cutoff)
        _, counts = np.unique(np.stack([i, j]), axis=1, return_counts=True)
        assert counts.max() > 1, "several images of one atom should be neighbours"
        if case != "small-mixed":
            assert np.any(i == j), "an atom's own periodic images are neighbours in a small cell"


@pytest.mark.parametrize("case", ["periodic-triclinic", "mixed", "small-cell", "free"])
def test_environments_match_ase(case):
    """compute(): neighbour vectors within r_outer, weights f(|D|), one environment per centre."""
    rng = np.random.default_rng(7)
    atoms = _structure(case, rng)
    le = LocalEnvironments(2.0, 3.0)
    envs = le.compute(atoms)
    assert len(envs) == len(atoms)
    np.testing.assert_array_equal(envs.centers, np.arange(len(atoms)))
    i, j, D = neighbor_list("ijD", atoms, 3.0)
    ci = np.repeat(envs.centers, envs.counts)
    keep = np.linalg.norm(D, axis=1) < 3.0
    # neighbour indices are not stored: compare (centre, vector) sets
    a = _sorted_pairs(ci, np.zeros_like(ci), envs.positions)
    b = _sorted_pairs(i[keep], np.zeros_like(i[keep]), D[keep])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[2], b[2], atol=1e-9)
    np.testing.assert_allclose(envs.weights[:, 0], smooth_cutoff(np.linalg.norm(envs.positions, axis=1), 2.0, 3.0))
    assert np.all(envs.weights > 0)


def test_large_random_structure_builds_quickly():
    """100,000 atoms at a metallic density (about 20 neighbours within 4 A) in well under a minute."""
    rng = np.random.default_rng(0)
    n, rho = 100_000, 0.069  # atoms / A^3, as the NiNb glass
    L = (n / rho) ** (1 / 3)
    atoms = Atoms(numbers=np.ones(n, int), positions=rng.uniform(0, L, (n, 3)), cell=[L, L, L], pbc=True)
    t = time.perf_counter()
    envs = LocalEnvironments(3.0, 4.0).compute(atoms)
    elapsed = time.perf_counter() - t
    assert elapsed < 60.0, f"{elapsed:.1f} s for 100k atoms"
    assert len(envs) == n
    # smooth coordination of an ideal gas: rho * int f(r) 4 pi r^2 dr
    r = np.linspace(0, 4, 4001)
    expected = rho * np.trapezoid(smooth_cutoff(r, 3.0, 4.0) * 4 * np.pi * r**2, r)
    assert abs(envs.coordination().mean() / expected - 1) < 0.01


# ------------------------------------------------------------------------------------------------
# centres
def _binary_cluster():
    """A free cluster: Ni at the origin and a mixed shell."""
    pos = np.array(
        [[0, 0, 0], [2.0, 0, 0], [0, 2.5, 0], [0, 0, 3.5], [-3.2, 0, 0], [0, -5.0, 0], [1.5, 1.5, 0.0]],
        dtype=float,
    )
    species = np.array(["Ni", "Nb", "Ni", "Nb", "Ni", "Nb", "Nb"])
    return Atoms(numbers=np.ones(len(pos), int), positions=pos), species


def test_centres_by_species_and_indices():
    rng = np.random.default_rng(3)
    atoms = Atoms(numbers=np.ones(30, int), positions=rng.uniform(0, 7, (30, 3)), cell=[7, 7, 7], pbc=True)
    species = np.where(np.arange(30) % 3 == 0, "Ni", "Nb")
    enc = SpeciesEncoding("sign", ("Ni", "Nb"))
    every = LocalEnvironments(2.5, 3.5, encoding=enc).compute(atoms, species=species)
    ni = LocalEnvironments(2.5, 3.5, encoding=enc, centers=("Ni",)).compute(atoms, species=species)
    np.testing.assert_array_equal(ni.centers, np.flatnonzero(species == "Ni"))
    assert LocalEnvironments(2.5, 3.5, encoding=enc, centers="Nb").center_indices(atoms, species).tolist() == \
        np.flatnonzero(species == "Nb").tolist()
    # explicit indices: their order is kept, and each environment equals the full computation's
    idx = [17, 2, 9]
    sub = LocalEnvironments(2.5, 3.5, encoding=enc).compute(atoms, indices=idx, species=species)
    np.testing.assert_array_equal(sub.centers, idx)
    for k, c in enumerate(idx):
        p1, w1 = sub[k]
        p2, w2 = every[c]
        o1, o2 = np.lexsort(np.round(p1, 8).T), np.lexsort(np.round(p2, 8).T)
        np.testing.assert_allclose(p1[o1], p2[o2])
        np.testing.assert_allclose(w1[o1], w2[o2])
    # the species of centres does not restrict the neighbours
    for k, c in enumerate(ni.centers):
        np.testing.assert_allclose(np.sort(ni[k][1][:, 0]), np.sort(every[c][1][:, 0]))
    with pytest.raises(ValueError, match="centre species"):
        LocalEnvironments(2.5, 3.5, centers=("Cu",)).compute(atoms, species=species)
    with pytest.raises(IndexError):
        LocalEnvironments(2.5, 3.5).compute(atoms, indices=[30], species=species)


# ------------------------------------------------------------------------------------------------
# species encodings
def test_species_encoding_values():
    atoms, species = _binary_cluster()
    r = np.linalg.norm(atoms.positions[1:], axis=1)
    f = smooth_cutoff(r, 3.0, 4.0)  # 1, 1, 0.5 (at 3.5), f(3.2), 0 (at 5), 1
    assert f[2] == pytest.approx(0.5)

    def env0(encoding):
        envs = LocalEnvironments(3.0, 4.0, encoding=encoding).compute(atoms, indices=[0], species=species)
        pos, w = envs[0]
        # map rows back to atoms by their position
        rows = [int(np.argmin(np.linalg.norm(atoms.positions[1:] - p, axis=1))) for p in pos]
        return np.array(rows), w

    rows, w = env0(SpeciesEncoding("none"))
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 5]  # the atom at 5 A has weight 0 and is dropped
    np.testing.assert_allclose(w[:, 0], f[rows])

    rows, w = env0(SpeciesEncoding("sign", ("Ni", "Nb")))
    sign = np.where(species[1:] == "Ni", 1.0, -1.0)
    np.testing.assert_allclose(w[:, 0], f[rows] * sign[rows])

    rows, w = env0(SpeciesEncoding("sign", ("Ni", "Nb"), positive="Nb"))
    np.testing.assert_allclose(w[:, 0], -f[rows] * sign[rows])

    rows, w = env0(SpeciesEncoding("vector", ("Nb", "Ni")))
    assert w.shape[1] == 2
    onehot = np.stack([species[1:] == "Nb", species[1:] == "Ni"], 1).astype(float)
    np.testing.assert_allclose(w, f[rows, None] * onehot[rows])

    enc = SpeciesEncoding("vector", ("Ni", "Nb", "Cu"))
    np.testing.assert_array_equal(enc.encode(["Cu", "Ni", "Nb"]), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert enc.n_channels == 3 and SpeciesEncoding("sign", ("A", "B")).n_channels == 1
    assert SpeciesEncoding.from_dict(enc.to_dict()) == enc


def test_species_encoding_errors():
    with pytest.raises(ValueError, match="Cu"):
        SpeciesEncoding("sign", ("Ni", "Nb")).encode(["Ni", "Cu"])
    with pytest.raises(ValueError, match="Cu"):
        SpeciesEncoding("vector", ("Ni", "Nb")).encode(["Cu"])
    with pytest.raises(ValueError, match="two"):
        SpeciesEncoding("sign", ("Ni", "Nb", "Cu"))
    with pytest.raises(ValueError):
        SpeciesEncoding("sign", ("Ni", "Nb"), positive="Cu")
    with pytest.raises(ValueError):
        SpeciesEncoding("vector")
    with pytest.raises(ValueError, match="unknown species encoding"):
        SpeciesEncoding("onehot", ("Ni", "Nb"))
    # an unknown species in the structure is an error of compute(), not a silent weight
    atoms, species = _binary_cluster()
    species = species.copy()
    species[3] = "Cu"
    with pytest.raises(ValueError, match="Cu"):
        LocalEnvironments(3.0, 4.0, encoding=SpeciesEncoding("sign", ("Ni", "Nb"))).compute(atoms, species=species)
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, 4.0).compute(atoms, species=species[:3])


def test_per_species_sigma():
    atoms, species = _binary_cluster()
    le = LocalEnvironments(3.0, 4.0, species_sigma={"Ni": 0.8, "Nb": 1.2})
    envs = le.compute(atoms, species=species)
    assert envs.sigmas is not None and envs.sigmas.shape == (len(envs.positions),)
    pos, w, sig = envs[0]
    for p, s in zip(pos, sig):
        k = 1 + int(np.argmin(np.linalg.norm(atoms.positions[1:] - p, axis=1)))
        assert s == {"Ni": 0.8, "Nb": 1.2}[species[k]]
    assert LocalEnvironments.from_dict(le.to_dict()) == le
    with pytest.raises(ValueError, match="Nb"):
        LocalEnvironments(3.0, 4.0, species_sigma={"Ni": 0.8}).compute(atoms, species=species)
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, 4.0, species_sigma={"Ni": -0.8, "Nb": 1.0})
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, 4.0, species_sigma={"Ni": 0.0, "Nb": 1.0})


# ------------------------------------------------------------------------------------------------
# cutoff
def test_cutoff_values_continuity_and_slopes():
    ri, ro = 3.0, 4.0
    r = np.array([0.0, 1.0, 2.999, 3.0, 3.5, 4.0, 4.001, 10.0])
    np.testing.assert_allclose(smooth_cutoff(r, ri, ro), [1, 1, 1, 1, 0.5, 0, 0, 0], atol=1e-12)
    x = np.linspace(2.5, 4.5, 20001)
    f = smooth_cutoff(x, ri, ro)
    assert np.all(np.diff(f) <= 0) and f.max() == 1 and f.min() == 0
    h = 1e-6
    for r0 in (ri, ro):  # continuous, with zero slope from both sides
        left, mid, right = smooth_cutoff([r0 - h, r0, r0 + h], ri, ro)
        assert abs(left - mid) < 1e-9 and abs(right - mid) < 1e-9
        assert abs(mid - left) / h < 1e-4 and abs(right - mid) / h < 1e-4
    # C1 everywhere: the numerical derivative has no jumps (largest slope 1.5 / (ro - ri) at the middle)
    df = np.diff(f) / np.diff(x)
    assert np.abs(np.diff(df)).max() < 1e-3
    assert df.min() == pytest.approx(-1.5 / (ro - ri), rel=1e-3)
    with pytest.raises(ValueError):
        smooth_cutoff(r, 4.0, 3.0)
    with pytest.raises(ValueError):
        smooth_cutoff(r, 3.0, 3.0)


def test_bad_cutoffs_and_nan_positions():
    with pytest.raises(ValueError, match="r_inner"):
        LocalEnvironments(4.0, 3.0)
    with pytest.raises(ValueError, match="r_inner"):
        LocalEnvironments(3.0, 3.0)
    with pytest.raises(ValueError):
        LocalEnvironments(-1.0, 3.0)
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, np.inf)
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, 4.0, dim=4)
    atoms, species = _binary_cluster()
    atoms.positions[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LocalEnvironments(3.0, 4.0).compute(atoms, species=species)
    atoms.positions[2, 1] = np.inf
    with pytest.raises(ValueError):
        LocalEnvironments(3.0, 4.0).compute(atoms, species=species)


# ------------------------------------------------------------------------------------------------
# 2D
def test_2d_structure():
    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 9, (40, 2))
    # z constant (not 0), and a short periodic z cell: the 2D analysis must ignore z images
    pos = np.column_stack([xy, np.full(40, 5.0)])
    atoms = Atoms("H40", positions=pos, cell=[9, 9, 1.0], pbc=True)
    envs = LocalEnvironments(1.5, 2.5, dim=2).compute(atoms)
    assert envs.dim == 2 and envs.positions.shape[1] == 2
    flat = Atoms("H40", positions=pos, cell=[9, 9, 50.0], pbc=[True, True, False])
    i, j, D = neighbor_list("ijD", flat, 2.5)
    assert np.allclose(D[:, 2], 0)
    a = _sorted_pairs(np.repeat(envs.centers, envs.counts), np.zeros(len(envs.positions), int),
                      np.column_stack([envs.positions, np.zeros(len(envs.positions))]))
    b = _sorted_pairs(i, np.zeros_like(i), D)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[2], b[2], atol=1e-9)
    np.testing.assert_allclose(envs.weights[:, 0], smooth_cutoff(np.linalg.norm(envs.positions, axis=1), 1.5, 2.5))
    # free 2D cluster
    free = Atoms("H40", positions=pos, pbc=False)
    assert LocalEnvironments(1.5, 2.5, dim=2).compute(free).dim == 2
    # non-planar input is rejected
    bumpy = pos.copy()
    bumpy[3, 2] += 0.2
    with pytest.raises(ValueError, match="plane"):
        LocalEnvironments(1.5, 2.5, dim=2).compute(Atoms("H40", positions=bumpy, cell=[9, 9, 10], pbc=True))


# ------------------------------------------------------------------------------------------------
# storage
def test_padded_batches_and_coordination():
    atoms, species = _binary_cluster()
    le = LocalEnvironments(3.0, 4.0, encoding=SpeciesEncoding("vector", ("Ni", "Nb")), species_sigma={"Ni": 0.8, "Nb": 1.2})
    envs = le.compute(atoms, species=species)
    counts = envs.counts
    assert counts.min() < counts.max()
    pos, w, sig = envs.padded()
    assert pos.shape == (len(envs), counts.max(), 3) and w.shape == (len(envs), counts.max(), 2)
    assert sig.shape == pos.shape[:2]
    for k in range(len(envs)):
        p, ww, s = envs[k]
        n = counts[k]
        np.testing.assert_array_equal(pos[k, :n], p)
        np.testing.assert_array_equal(w[k, :n], ww)
        np.testing.assert_array_equal(sig[k, :n], s)
        assert np.all(w[k, n:] == 0), "padding must have zero weight"
        assert np.all(sig[k, n:] > 0), "padding widths must stay valid"
    # a subset, padded to a minimum size
    pos2, w2, _ = envs.padded([2, 0], min_size=10)
    assert pos2.shape[1] == 10
    np.testing.assert_array_equal(w2[1, : counts[0]], envs[0][1])
    np.testing.assert_array_equal(w2[1, counts[0]:], 0)
    # coordination = sum of |weights|
    np.testing.assert_allclose(envs.coordination(), [np.abs(envs[k][1]).sum() for k in range(len(envs))])
    # list round trip and subsets
    again = EnvironmentSet.from_list(envs.to_list())
    np.testing.assert_array_equal(again.positions, envs.positions)
    np.testing.assert_array_equal(again.sigmas, envs.sigmas)
    sub = envs.subset([3, 1])
    np.testing.assert_array_equal(sub[0][0], envs[3][0])
    np.testing.assert_array_equal(sub.centers, envs.centers[[3, 1]])
