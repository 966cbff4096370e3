"""Interpretation of reference maps and analysed frames: ``giip report``, ``giip interpret``,
``giip compare`` and the :mod:`giip_plugin.interpret` package behind them.

Fast: the reference maps are synthetic (``ReferenceMap.from_distances`` on a made-up distance
matrix, no rotation search) and the inputs are annotated dumps whose ``giip_dc`` columns are
chosen, so exact answers are known; one test builds a tiny real 2D map and analyses a few atoms.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from giip_plugin.cli import main
from giip_plugin.environments import LocalEnvironments, SpeciesEncoding
from giip_plugin.interpret import (
    best_direction, class_populations, collect_samples, density_difference, neighbour_quantities, r2, r2_table,
    voronoi_analysis, voronoi_sizes,
)
from giip_plugin.io import AnnotatedWriter, Frame
from giip_plugin.reference import ReferenceMap

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- structures and maps


def lattice2d(n=11, a=1.12, remove=6, seed=0, margin=6.0):
    """A 2D triangular crystal with free surfaces (vacuum margins in a periodic box), a few
    vacancies and a per-atom column ``c_pe`` (made up: minus the number of close neighbours)."""
    rng = np.random.default_rng(seed)
    pts = np.array([[a * (i + 0.5 * (j % 2)), a * np.sqrt(3) / 2 * j] for j in range(n) for i in range(n)])
    keep = np.ones(len(pts), bool)
    inner = np.flatnonzero((pts[:, 0] > 2 * a) & (pts[:, 0] < (n - 3) * a) & (pts[:, 1] > 2 * a) & (pts[:, 1] < (n - 3) * a))
    keep[rng.choice(inner, size=remove, replace=False)] = False
    pts = pts[keep] + margin
    L = pts.max(axis=0) + margin
    atoms = Atoms("Ar" * len(pts), positions=np.column_stack([pts, np.zeros(len(pts))]),
                  cell=[L[0], L[1], 1.0], pbc=True)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    atoms.new_array("c_pe", -((d > 0) & (d < 1.5)).sum(axis=1).astype(float) + 0.01 * rng.normal(size=len(pts)))
    return atoms


def binary3d(n=100, L=10.0, seed=1):
    """A random periodic Ni/Nb 'gas' with a minimum separation (3D)."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, L, 3)
        if all(np.linalg.norm((p - q + L / 2) % L - L / 2) > 1.7 for q in pos):
            pos.append(p)
    sym = ["Ni" if k % 2 == 0 else "Nb" for k in range(n)]
    return Atoms(sym, positions=pos, cell=[L, L, L], pbc=True)


def synthetic_map(atoms, le, n_train=30, n_classes=3, n_coords=3, seed=0):
    """A reference map over real environments with a made-up (Euclidean) distance matrix."""
    rng = np.random.default_rng(seed)
    centres = le.center_indices(atoms)[:n_train]
    training = le.compute(atoms, indices=centres)
    feats = rng.normal(size=(n_train, 3))
    D = np.linalg.norm(feats[:, None] - feats[None], axis=2)
    group = "O2" if le.dim == 2 else "O3"
    return ReferenceMap.from_distances(training, D, sigma=0.5, group=group, environments=le, n_classes=n_classes,
                                       epsilon=1.0, n_coords=n_coords)


LE2D = LocalEnvironments(1.3, 1.75, SpeciesEncoding("none", ("Ar",)), dim=2)
LE3D = LocalEnvironments(3.0, 4.0, SpeciesEncoding("sign", ("Ni", "Nb"), positive="Ni"), centers=("Ni",), dim=3)


@pytest.fixture(scope="module")
def crystal():
    return lattice2d()


@pytest.fixture(scope="module")
def map2d(tmp_path_factory, crystal):
    ref = synthetic_map(crystal, LE2D)
    path = tmp_path_factory.mktemp("map2d") / "ref2d.h5"
    ref.save(path)
    return path


@pytest.fixture(scope="module")
def map3d(tmp_path_factory):
    ref = synthetic_map(binary3d(), LE3D, n_train=40, n_classes=4)
    path = tmp_path_factory.mktemp("map3d") / "ref3d.h5"
    ref.save(path)
    return path


def write_annotated(path, atoms, classes, dc, dist=None):
    with AnnotatedWriter(path) as w:
        w.write(Frame.from_atoms(atoms), {"giip_class": np.asarray(classes), "giip_dc": np.asarray(dc),
                                          "giip_ref_distance": np.zeros(len(atoms)) if dist is None else dist})
    return path


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, crystal):
    """An annotated dump of the crystal with known coordinates: dc1 = 2 * coordination + 1,
    dc2 = c_pe, dc3 = noise; atom 0 is 'not analysed' (class -1, NaN coordinates)."""
    coord = neighbour_quantities(crystal, LE2D, np.arange(len(crystal)), ["Ar"] * len(crystal))["coordination"]
    rng = np.random.default_rng(3)
    dc = np.column_stack([2 * coord + 1, crystal.arrays["c_pe"], rng.normal(size=len(crystal))])
    cls = (coord < 5.5).astype(int) + (coord < 3.5).astype(int)
    cls[0] = -1
    dc[0] = np.nan
    path = tmp_path_factory.mktemp("ann") / "crystal_giip.dump"
    return write_annotated(path, crystal, cls, dc), coord, cls, dc


# --------------------------------------------------------------------------- statistics


def test_r2_exact_linear_and_table():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    assert r2(x, 3 * x - 2) == pytest.approx(1.0, abs=1e-12)
    assert r2(x, -0.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert r2(x, rng.normal(size=200)) < 0.05
    assert np.isnan(r2(x, np.ones(200)))  # constant quantity
    y = 2 * x + 1
    y[:5] = np.nan  # NaN pairs are dropped
    assert r2(x, y) == pytest.approx(1.0)
    X = np.column_stack([x, rng.normal(size=200)])
    t = r2_table(X, {"lin": 4 * X[:, 1] + 3, "other": x ** 3}, labels=["dc1", "dc2"])
    assert t.values.shape == (2, 2)
    assert t.values[0, 1] == pytest.approx(1.0) and t.values[0, 0] < 0.05
    assert t.best("lin") == ("dc2", pytest.approx(1.0))
    assert t.best("other")[0] == "dc1"
    text = t.format(header_extra=["psi1", "psi3"])
    assert "1.000" in text and "psi3" in text
    with pytest.raises(ValueError, match="values for"):
        r2_table(X, {"short": np.ones(3)})


@pytest.mark.parametrize("angle", [35.0, -120.0, 90.0])
def test_best_direction_recovers_angle(angle):
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(400, 2))
    u = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    q = 2.5 * xy @ u + 7 + 1e-3 * rng.normal(size=400)
    d = best_direction(xy, q)
    assert d.angle_deg == pytest.approx(angle, abs=0.1)
    assert d.r2 == pytest.approx(1.0, abs=1e-5)
    assert d.r2_orthogonal < 0.05
    assert np.dot(d.direction, d.orthogonal) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(d.project(xy), xy @ np.asarray(d.direction))
    # the best direction is at least as good as each axis
    assert d.r2 >= max(d.r2_axes) - 1e-12
    with pytest.raises(ValueError, match="at least 4"):
        best_direction(xy[:3], q[:3])
    with pytest.raises(ValueError, match="zero gradient|does not vary"):
        best_direction(xy, np.ones(400))


def test_density_difference_integrates_to_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 2))
    b = rng.normal(size=(200, 2)) * [0.5, 1.5] + [1.0, 0.0]
    dd = density_difference(a, b, bins=100)
    s = dd.summary()
    assert s["integral_a"] == pytest.approx(1.0, abs=1e-3)
    assert s["integral_b"] == pytest.approx(1.0, abs=1e-3)
    assert abs(s["integral_difference"]) < 1e-3
    assert 0.1 < s["l1_half"] <= 1.0
    assert s["max_b_over_a_at"][0] > 0.3  # B is shifted to +x
    same = density_difference(a, a.copy(), bins=40)
    assert np.abs(same.difference).max() == 0.0 and same.summary()["l1_half"] == 0.0
    with pytest.raises(ValueError, match="at least 2 points"):
        density_difference(a[:1], b)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        density_difference(a[:, :1], b)


def test_difference_test_tells_a_real_shift_from_noise():
    """Two samples of one distribution: the permutation p-value is not small and no bootstrap-stable
    region carries much of the difference; a shifted blob in B: p at its floor and the shifted
    mass found where B is denser."""
    from giip_plugin.interpret import difference_test

    rng = np.random.default_rng(1)
    a, same = rng.normal(size=(800, 2)), rng.normal(size=(700, 2))
    null = difference_test(a, same, n_shuffles=60, n_boot=60, bins=40)
    assert null.p_shuffle > 0.05 and null.significant_mass_a + null.significant_mass_b < 0.5
    b = np.concatenate([rng.normal(size=(600, 2)), rng.normal(size=(100, 2)) * 0.3 + [2.5, 2.5]])
    t = difference_test(a, b, n_shuffles=60, n_boot=60, bins=40)
    assert t.p_shuffle == pytest.approx(1 / 61) and t.l1_half > 1.8 * t.null_l1_half
    x, y = np.meshgrid(t.observed.x, t.observed.y, indexing="ij")
    blob = (x - 2.5) ** 2 + (y - 2.5) ** 2 < 0.5
    assert np.any(t.significant & blob & (t.observed.difference > 0)) and t.significant_mass_b > 0.3
    assert set(t.summary()) >= {"l1_half", "p_shuffle", "significant_mass_b_over_a"}


def test_class_population_chi2():
    from giip_plugin.interpret import class_populations

    same = class_populations([np.repeat([0, 1, 2], 100), np.repeat([0, 1, 2], 90)], 4)
    assert same.chi2()["p"] > 0.99 and same.chi2()["dof"] == 2
    moved = class_populations([np.repeat([0, 1, 2], 100), np.repeat([0, 1, 2], [150, 100, 50])], 3)
    assert moved.chi2()["p"] < 1e-4 and "chi2" in moved.to_dict()


def test_class_populations_sum():
    A = np.array([0, 0, 1, 2, -1, 2, 2])
    B = np.array([1, 1, 1, 0])
    p = class_populations([A, B], 4, ["fast", "slow"])
    assert p.counts.tolist() == [[2, 1, 3, 0], [1, 3, 0, 0]]
    assert p.counts.sum(axis=1).tolist() == [6, 4]  # -1 (not analysed) is not counted
    assert np.allclose(p.fractions.sum(axis=1), 1.0)
    text = p.format()
    assert "fast" in text and "slow" in text and "change" in text
    with pytest.raises(ValueError, match="reference has 2 classes"):
        class_populations([A], 2)


# --------------------------------------------------------------------------- quantities


def test_neighbour_quantities_against_brute_force():
    at = binary3d()
    names = np.array(at.get_chemical_symbols())
    idx = np.arange(0, len(at), 7)
    q = neighbour_quantities(at, LE3D, idx, names, species=["Ni", "Nb"])
    L = at.cell[0, 0]
    for n, i in enumerate(idx):
        d = (at.positions - at.positions[i] + L / 2) % L - L / 2
        r = np.linalg.norm(d, axis=1)
        t = np.clip((r - 3.0) / 1.0, 0, 1)
        f = np.where(r > 0, (1 - t) ** 2 * (1 + 2 * t), 0.0)
        f[r >= 4.0] = 0
        assert q["coordination"][n] == pytest.approx(f.sum(), rel=1e-10)
        assert q["frac_Ni"][n] == pytest.approx(f[names == "Ni"].sum() / f.sum(), rel=1e-10)
        nb = np.flatnonzero(f > 0)
        num = den = 0.0
        for a in range(len(nb)):
            for b in range(a + 1, len(nb)):
                u, v = d[nb[a]], d[nb[b]]
                ang = np.degrees(np.arccos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))
                num, den = num + f[nb[a]] * f[nb[b]] * ang, den + f[nb[a]] * f[nb[b]]
        assert q["bond_angle"][n] == pytest.approx(num / den, rel=1e-9)
    assert np.allclose(q["frac_Ni"] + q["frac_Nb"], 1.0)


def test_bond_angle_of_known_shapes():
    # a bridging atom with two neighbours at 140 degrees, a regular tetrahedron, a lone atom
    t = np.radians(140.0)
    bridge = [[0, 0, 0], [1.6, 0, 0], [1.6 * np.cos(t), 1.6 * np.sin(t), 0]]
    tet = (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3) * 1.6 + [20, 0, 0]).tolist()
    at = Atoms("OSiSi" + "Si" + "O" * 4 + "O", positions=bridge + [[20, 0, 0]] + tet + [[40, 0, 0]],
               cell=[60, 30, 30], pbc=False)
    le = LocalEnvironments(2.0, 2.3, SpeciesEncoding("vector", ("O", "Si")))
    q = neighbour_quantities(at, le, [0, 3, 8], at.get_chemical_symbols())
    assert q["bond_angle"][0] == pytest.approx(140.0, abs=1e-9)
    assert q["bond_angle"][1] == pytest.approx(np.degrees(np.arccos(-1 / 3)), abs=1e-9)
    assert np.isnan(q["bond_angle"][2]) and q["coordination"][2] == 0
    # the last environment empty: the coordination of the set is still defined
    envs = le.compute(at, indices=[0, 3, 8], species=at.get_chemical_symbols())
    assert envs.coordination().tolist() == pytest.approx([2.0, 4.0, 0.0])


def test_voronoi_sizes_fill_the_cell():
    at = binary3d(n=40, L=8.0)
    v = voronoi_sizes(at, 3)
    assert v.sum() == pytest.approx(at.get_volume(), rel=1e-6)
    # a perfect periodic 2D triangular lattice: every cell has the same area, sqrt(3)/2 a^2
    a, n = 1.1, 6
    pts = [[a * (i + 0.5 * (j % 2)), a * np.sqrt(3) / 2 * j, 0.0] for j in range(n) for i in range(n)]
    lat = Atoms("Ar" * len(pts), positions=pts, cell=[n * a, n * a * np.sqrt(3) / 2, 1.0], pbc=True)
    area = voronoi_sizes(lat, 2)
    assert np.allclose(area, np.sqrt(3) / 2 * a * a, rtol=1e-6)
    # the centre of a 13-atom icosahedron: 12 pentagonal faces, Voronoi index <0,0,12,0>
    g = (1 + 5 ** 0.5) / 2
    v = np.array([[0, s1, s2 * g] for s1 in (-1, 1) for s2 in (-1, 1)], float)
    ico = np.concatenate([[[0, 0, 0]], v, v[:, [1, 2, 0]], v[:, [2, 0, 1]]]) * 1.3 + 10.0
    cl = Atoms("Ni13", positions=ico, cell=[20, 20, 20], pbc=True)
    res = voronoi_analysis(cl, 3, indices=True)
    assert res["n5"][0] == 12 and res["ico"][0] == 1.0 and res["ico"][1:].sum() == 0


# --------------------------------------------------------------------------- giip report


def _is_png(path):
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("which", ["map2d", "map3d"])
def test_report_writes_figures(which, request, tmp_path, capsys):
    ref_path = request.getfixturevalue(which)
    out = tmp_path / "report"
    assert main(["report", str(ref_path), "-o", str(out), "--coords", "1,3"]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("eigenvalues_r2.png", "training_plane.png", "cluster_error.png", "exemplars.png"):
        assert _is_png(out / name), name
        assert str(out / name) in printed


def test_report_in_the_papers_convention(map3d, tmp_path, capsys):
    """--criterion paper: the eigenvalue figure with the polynomial-regression r^2 as well, and both
    selections printed."""
    from giip_plugin.reference import ReferenceMap

    out = tmp_path / "report"
    assert main(["report", str(map3d), "-o", str(out), "--criterion", "paper"]) == 0
    cap = capsys.readouterr()
    assert _is_png(out / "eigenvalues_r2_paper.png") and str(out / "eigenvalues_r2_paper.png") in cap.out.split()
    ref = ReferenceMap.load(map3d)
    r2, sel = ref.paper_criterion()
    assert r2.shape == ref.eigenvalues.shape and np.all(r2 <= 1.0) and sel[0] == 0
    assert "paper's polynomial-regression criterion: " + ", ".join(str(i + 1) for i in sel) in cap.err


def test_report_errors(map2d, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "r")]) == 1
    assert "reference file not found" in capsys.readouterr().err
    assert main(["report", str(map2d), "-o", str(tmp_path / "r"), "--coords", "1,7"]) == 1
    assert "dc1..dc3" in capsys.readouterr().err
    assert main(["report", str(map2d), "-o", str(tmp_path / "r"), "--coords", "2,2"]) == 1
    assert "must differ" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["report", str(map2d), "-o", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- giip interpret


def test_interpret_annotated_exact(map2d, annotated, tmp_path, capsys):
    path, coord, cls, dc = annotated
    js = tmp_path / "out.json"
    figs = tmp_path / "figs"
    rc = main(["interpret", str(map2d), str(path), "--plane", "1,2", "--target", "coordination",
               "--figures", str(figs), "--json", str(js), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "(coordinates read from giip apply columns)" in out
    res = json.loads(js.read_text())
    n = len(coord) - 1  # atom 0 is not analysed
    assert res["n_atoms"] == n and res["annotated"]
    t = res["table"]
    row = dict(zip(t["quantities"], t["r2"]))
    assert t["coordinates"] == ["dc1", "dc2", "dc3"]
    assert row["coordination"][0] == pytest.approx(1.0, abs=1e-9)  # dc1 = 2 coordination + 1
    assert row["c_pe"][1] == pytest.approx(1.0, abs=1e-9)  # dc2 = c_pe
    assert row["coordination"][2] < 0.2  # noise
    assert "voronoi_area" in row and "frac_Ar" not in row  # one species: no fractions
    assert t["n"][t["quantities"].index("coordination")] == n
    d = res["direction"]
    assert d["r2"] == pytest.approx(1.0, abs=1e-9) and d["angle_deg"] == pytest.approx(0.0, abs=1e-6)
    for name in ("r2_coordination.png", "r2_c_pe.png", "direction_coordination.png"):
        assert _is_png(figs / name), name
    # the table is printed with the eigenvector numbers of the selected coordinates
    assert "psi1" in out and "1.000" in out


def test_interpret_render_and_quantity_filter(map2d, annotated, tmp_path, capsys):
    path = annotated[0]
    png = tmp_path / "ortho.png"
    rc = main(["interpret", str(map2d), str(path), "--plane", "1,2", "--target", "c_pe", "--render", str(png),
               "--quantities", "coordination,c_pe", "--no-voronoi", "--max-atoms", "40", "--json", "-",
               "--no-progress"])
    assert rc == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)  # only JSON on stdout with --json -
    assert res["table"]["quantities"] == ["coordination", "c_pe"] and res["n_atoms"] == 40
    assert res["direction"]["target"] == "c_pe"
    assert _is_png(png)


def test_collect_samples_computes_like_the_analyser(tmp_path, crystal):
    """A real (tiny) 2D map: analysing plain frames here gives what 'giip apply'-style annotation
    gives, and a subset of atoms is analysed when asked."""
    from giip_plugin.analysis import GIIPAnalyzer

    ref = ReferenceMap.build(crystal, sigma=0.5, r_inner=1.3, r_outer=1.75, epsilon=1.0, n_train=10, seed=1,
                             n_coords=2, n_classes=3)
    plain = tmp_path / "plain.dump"
    with AnnotatedWriter(plain) as w:
        w.write(Frame.from_atoms(crystal), {})
    s = collect_samples(ref, [plain], max_atoms=12, seed=4, voronoi=False)
    assert len(s) == 12 and not s.annotated and s.coordinates.shape == (12, 2)
    res = GIIPAnalyzer(ref).analyze(crystal, indices=s.atom_index)
    assert np.allclose(s.coordinates, res.coordinates[s.atom_index], atol=1e-8)
    assert np.array_equal(s.classes, res.classes[s.atom_index])
    # the same atoms read back from an annotated file
    ann = tmp_path / "ann.dump"
    with AnnotatedWriter(ann) as w:
        w.write(Frame.from_atoms(crystal), res.as_arrays())
    s2 = collect_samples(ref, [ann], voronoi=False)
    assert s2.annotated and np.array_equal(s2.atom_index, s.atom_index)
    assert np.allclose(s2.coordinates, s.coordinates, atol=1e-5)  # text round trip
    assert np.allclose(s2.quantities["coordination"], s.quantities["coordination"])


def test_interpret_symmetry_quantities(map3d, tmp_path, capsys):
    """--symmetry C3,Td: per-atom symmetry measures as quantities (r^2 rows, JSON), equal to the
    measure of each atom's environment on its positions alone."""
    import json

    from giip_plugin.interpret.symmetry import symmetry_measure
    from giip_plugin.reference import ReferenceMap

    atoms = binary3d(n=40, L=8.0)
    path = tmp_path / "plain.xyz"
    atoms.write(path)
    out = tmp_path / "r.json"
    assert main(["interpret", str(map3d), str(path), "--symmetry", "C3,Td", "--symmetry-sigma", "0.6", "--max-atoms",
                 "4", "--no-voronoi", "--no-progress", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    text = json.dumps(res)
    assert "symmetry_C3" in text and "symmetry_Td" in text
    ref = ReferenceMap.load(map3d)
    from giip_plugin.interpret import collect_samples

    smp = collect_samples(ref, [str(path)], max_atoms=4, voronoi=False,
                          symmetry={"groups": ["C3"], "sigma": 0.6, "species": False})
    envs = ref.compute_environments(atoms, indices=smp.atom_index)
    for k in range(len(envs)):
        sl = slice(envs.offsets[k], envs.offsets[k + 1])
        want = symmetry_measure(envs.positions[sl], np.abs(envs.weights[sl]), sigma=0.6, group="C3")
        assert smp.quantities["symmetry_C3"][k] == pytest.approx(want, abs=1e-6)  # (the xyz file rounds positions)
        assert 0 < want <= 1
    capsys.readouterr()
    assert main(["interpret", str(map3d), str(path), "--symmetry", "C7", "--no-progress"]) == 1
    assert "unknown point group" in capsys.readouterr().err


def test_atomic_strain_of_known_deformations():
    """OVITO's atomic strain against a reference: a uniform 1 % stretch of a 2D lattice gives the
    Green-Lagrange volumetric strain (1.01^2 - 1) / 2 for every atom and no shear; a shear gives no
    volumetric strain; atoms are matched by id whatever their order; another set of atoms is refused."""
    from giip_plugin.interpret.quantities import atomic_strain

    ref = lattice2d(n=12, remove=0)
    ref.new_array("id", np.arange(1, len(ref) + 1))
    cur = ref.copy()
    cur.positions[:, :2] *= 1.01
    out = atomic_strain(cur, ref, 1.5, dim=2)
    np.testing.assert_allclose(out["volumetric_strain"], (1.01 ** 2 - 1) / 2, atol=1e-12)
    np.testing.assert_allclose(out["shear_strain"], 0.0, atol=1e-12)
    sheared = ref.copy()
    sheared.positions[:, 0] += 0.02 * sheared.positions[:, 1]
    sh = atomic_strain(sheared, ref, 1.5, dim=2)
    assert np.all(sh["shear_strain"] > 0.005) and np.abs(sh["volumetric_strain"]).max() < 1e-3
    shuffled = cur[np.random.default_rng(0).permutation(len(cur))]
    again = atomic_strain(shuffled, ref, 1.5, dim=2)
    by_id = dict(zip(shuffled.arrays["id"].tolist(), again["volumetric_strain"]))
    np.testing.assert_allclose([by_id[i] for i in cur.arrays["id"]], out["volumetric_strain"], atol=1e-12)
    with pytest.raises(ValueError, match="other atoms than the frame"):
        atomic_strain(cur[:-3], ref, 1.5, dim=2)
    with pytest.raises(ValueError, match="positive neighbour cutoff"):
        atomic_strain(cur, ref, 0.0, dim=2)


def test_interpret_strain_reference(map2d, crystal, tmp_path, capsys):
    """--strain-reference: volumetric_strain and shear_strain as quantities of giip interpret."""
    import json

    from giip_plugin.io import Frame

    ref_atoms = crystal.copy()
    ref_atoms.new_array("id", np.arange(1, len(ref_atoms) + 1))
    cur = ref_atoms.copy()
    cur.positions[:, :2] = (cur.positions[:, :2] - 10.0) * 1.02 + 10.0
    paths = []
    for name, at in (("ref.dump", ref_atoms), ("cur.dump", cur)):
        with AnnotatedWriter(tmp_path / name) as w:
            w.write(Frame.from_atoms(at), {})
        paths.append(str(tmp_path / name))
    out = tmp_path / "s.json"
    assert main(["interpret", str(map2d), paths[1], "--strain-reference", paths[0], "--no-voronoi", "--no-progress",
                 "--json", str(out)]) == 0
    text = out.read_text()
    assert "volumetric_strain" in text and "shear_strain" in text
    json.loads(text)
    capsys.readouterr()
    assert main(["interpret", str(map2d), paths[1], "--strain-reference", str(tmp_path / "none.dump"),
                 "--no-progress"]) == 1
    assert "--strain-reference: file not found" in capsys.readouterr().err
    assert main(["interpret", str(map2d), paths[1], "--strain-cutoff", "1.5", "--no-progress"]) == 1
    assert "--strain-cutoff needs --strain-reference" in capsys.readouterr().err


def test_interpret_errors(map2d, map3d, annotated, crystal, tmp_path, capsys):
    path = str(annotated[0])
    cases = [
        (["interpret", str(map2d), str(tmp_path / "none.dump")], "input file not found"),
        (["interpret", str(map2d), path, "--plane", "1,2,3"], "two coordinate numbers"),
        (["interpret", str(map2d), path, "--plane", "1,4"], "dc1..dc3"),
        (["interpret", str(map2d), path, "--plane", "0,1"], "numbered from 1"),
        (["interpret", str(map2d), path, "--plane", "1,2", "--target", "nonsense", "--no-voronoi"], "unknown --target"),
        (["interpret", str(map2d), path, "--render", str(tmp_path / "x.png")], "--render needs --plane"),
        (["interpret", str(map2d), path, "--target", "c_pe"], "--target needs --plane"),
        (["interpret", str(map2d), path, "--quantities", "bogus", "--no-voronoi"], "unknown quantities"),
        (["interpret", str(map2d), path, "--max-atoms", "0"], "--max-atoms must be at least 1"),
        (["interpret", str(map3d), path, "--no-voronoi"], "2D but the reference is 3D"),
        (["interpret", str(map2d), path, "--symmetry", "C3", "--no-voronoi"], "for 3D environments"),
    ]
    for argv, msg in cases:
        assert main(argv + ["--no-progress"]) == 1, argv
        assert msg in capsys.readouterr().err, (argv, msg)
    # species the reference does not know (a Ni/Nb map, a Cu/Nb structure)
    cu = binary3d(n=40, L=8.0)
    cu.symbols[cu.symbols == "Ni"] = "Cu"
    cu_path = write_annotated(tmp_path / "cu.dump", cu, np.zeros(len(cu), int), np.zeros((len(cu), 3)))
    assert main(["interpret", str(map3d), str(cu_path), "--no-progress", "--no-voronoi"]) == 1
    assert "species ['Cu'] that the reference does not know" in capsys.readouterr().err
    # an annotation made with another map (two giip_dc columns for a 3-coordinate map)
    other = write_annotated(tmp_path / "two.dump", crystal, np.zeros(len(crystal), int), np.zeros((len(crystal), 2)))
    assert main(["interpret", str(map2d), str(other), "--no-progress", "--no-voronoi"]) == 1
    assert "annotated with another reference" in capsys.readouterr().err


# --------------------------------------------------------------------------- giip compare


def test_compare_populations_and_density(map2d, annotated, crystal, tmp_path, capsys):
    path_a, coord, cls_a, dc_a = annotated
    rng = np.random.default_rng(5)
    cls_b = rng.integers(0, 3, size=len(crystal))
    dc_b = dc_a.copy()
    dc_b[:, 1] += 0.5
    dc_b[:, 2] = rng.normal(size=len(crystal)) + 1.0
    dc_b[0] = dc_a[1]
    path_b = write_annotated(tmp_path / "b.dump", crystal, cls_b, dc_b)
    out = tmp_path / "cmp"
    js = tmp_path / "cmp.json"
    rc = main(["compare", str(map2d), "--a", str(path_a), "--b", str(path_b), "--labels", "fast,slow", "-o", str(out),
               "--json", str(js), "--bins", "60", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fast" in text and "slow" in text and "class populations" in text
    res = json.loads(js.read_text())
    assert res["plane"] == [2, 3]  # default: the two coordinates after the leading one
    counts = np.array(res["populations"]["counts"])
    assert counts[0].tolist() == np.bincount(cls_a[cls_a >= 0], minlength=3).tolist()
    assert counts[1].tolist() == np.bincount(cls_b, minlength=3).tolist()
    assert counts[0].sum() == len(crystal) - 1 and counts[1].sum() == len(crystal)
    d = res["density"]
    assert abs(d["integral_difference"]) < 1e-3 and d["n_a"] == len(crystal) - 1
    assert 0 < d["l1_half"] <= 1
    assert _is_png(out / "density_difference.png") and _is_png(out / "class_populations.png")


def test_compare_errors(map2d, annotated, tmp_path, capsys):
    p = str(annotated[0])
    base = ["compare", str(map2d), "--a", p, "--b", p, "-o", str(tmp_path / "c"), "--no-progress"]
    for extra, msg in [(["--labels", "one"], "two names"), (["--plane", "3,3"], "must differ"),
                       (["--plane", "1,5"], "dc1..dc3"), (["--bandwidth", "-1"], "positive numbers"),
                       (["--bins", "3"], "at least 8")]:
        assert main(base + extra) == 1, extra
        assert msg in capsys.readouterr().err, (extra, msg)
    with pytest.raises(SystemExit):  # --b is required
        main(["compare", str(map2d), "--a", p, "-o", str(tmp_path / "c")])


def test_help_of_the_three_commands(capsys):
    for cmd, words in (("report", "eigenvalues_r2.png"), ("interpret", "frac_<species>"),
                       ("compare", "density_difference.png")):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert words in capsys.readouterr().out


def test_hull_points_walk_the_hull_evenly():
    """Eight points around a square's hull: its corners and edge midpoints, counter-clockwise from
    the largest x; a far outlier left out by the trim does not move the hull."""
    from giip_plugin.interpret.figures import hull_points

    g = np.linspace(-1, 1, 41)
    xy = np.array([(x, y) for x in g for y in g])
    pts, poly = hull_points(np.vstack([xy, [[30.0, 30.0]]]), n_points=8, trim=0.001)
    assert len(poly) == 4 and np.abs(poly).max() == pytest.approx(1.0)
    perimeter_step = np.hypot(*np.diff(np.vstack([pts, pts[:1]]), axis=0).T)
    np.testing.assert_allclose(perimeter_step, 1.0, atol=1e-9)  # 8 steps of 1 round a perimeter of 8
    assert pts[0, 0] == pytest.approx(1.0)
    ang = np.unwrap(np.arctan2(pts[:, 1], pts[:, 0]))
    assert np.all(np.diff(ang) > 0)  # counter-clockwise
    with pytest.raises(ValueError, match="at least three 2D points"):
        hull_points(np.zeros((2, 2)))


def test_hull_exemplar_figure_and_class_rendering(map3d, tmp_path):
    from giip_plugin.interpret.figures import fig_hull_exemplars, hull_points
    from giip_plugin.interpret.render import render_values

    ref = ReferenceMap.load(map3d)
    xy = ref.coordinates[:, :2]
    pts, _ = hull_points(xy, n_points=6, trim=0.0)
    near = [int(np.argmin(np.hypot(*(xy - p).T))) for p in pts]
    png = fig_hull_exemplars(ref, xy, pts, [ref.training[k] for k in near], tmp_path / "hull.png",
                             titles=[f"corner {k}" for k in range(6)], colour=ref.labels)
    assert _is_png(Path(png))
    atoms = binary3d()
    classes = np.arange(len(atoms)) % 5 - 1  # -1: grey
    out, (lo, hi) = render_values(atoms, classes, tmp_path / "classes.png", categorical=True, size=(200, 200))
    assert _is_png(Path(out)) and (lo, hi) == (0.0, 3.0)
    with pytest.raises(ValueError, match="integer class labels"):
        render_values(atoms, classes + 0.5, tmp_path / "bad.png", categorical=True)


def test_the_hull_view_holds_the_bulk_and_the_hull_not_far_atoms():
    from giip_plugin.interpret.figures import hull_points, plane_view

    rng = np.random.default_rng(2)
    xy = np.vstack([rng.normal(size=(5000, 2)), [[23.0, 9.5]]])  # one far atom, as in the NiNb map
    pts, _ = hull_points(xy, n_points=8)
    lo, hi, outside = plane_view(xy, pts)
    assert outside >= 1 and hi[0] < 10  # the far atom is not in the view
    assert np.all(pts >= lo) and np.all(pts <= hi)  # every hull point is
    centre = (lo + hi) / 2  # the ring of environments is laid out around it: hull points on every side
    assert np.sum(pts[:, 0] < centre[0]) >= 2 and np.sum(pts[:, 0] > centre[0]) >= 2
