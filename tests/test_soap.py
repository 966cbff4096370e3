"""The SOAP metric (giip_plugin.reference.soap): the distance against featomic's own power
spectrum, invariances, the species encodings, and the whole pipeline with ``--metric soap``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from giip_plugin.environments import EnvironmentSet, LocalEnvironments, SpeciesEncoding
from giip_plugin.reference import ReferenceMap
from giip_plugin.reference.soap import SOAPFeatures, SOAPMetric, SOAPSettings, soap_distance_rows

featomic = pytest.importorskip("featomic")

DATA = Path(__file__).parent / "data" / "ninb"
DUMP, DUMP2 = DATA / "quench100K.dump", DATA / "quench1M.dump"
NINB = ["--type-names", "1=Ni,2=Nb", "--centers", "Ni", "--species", "sign", "--r-inner", "3", "--r-outer", "4",
        "--sigma", "1"]


def gas(n=60, L=9.0, seed=0):
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, L, 3)
        if all(np.linalg.norm((p - q + L / 2) % L - L / 2) > 1.6 for q in pos):
            pos.append(p)
    sym = rng.choice(["Ni", "Nb"], n)
    return Atoms(list(sym), positions=pos, cell=np.eye(3) * L, pbc=True)


def metric(mode="vector", sigma=0.8, r_inner=2.5, r_outer=3.5, **kw):
    enc = SpeciesEncoding(mode, ("Ni", "Nb"), "Ni" if mode == "sign" else None)
    return SOAPMetric(sigma, r_inner, r_outer, enc, 3, "O3", **kw), LocalEnvironments(r_inner, r_outer, enc, dim=3)


def native_spectra(atoms, mode, sigma=0.8, r_inner=2.5, r_outer=3.5, n_max=8, l_max=6):
    """featomic's SoapPowerSpectrum, every species pair as properties, unit rows."""
    from featomic.basis import Gto, TensorProduct
    from featomic.cutoff import Cutoff, ShiftedCosine
    from featomic.density import Gaussian

    calc = featomic.SoapPowerSpectrum(cutoff=Cutoff(r_outer, ShiftedCosine(width=r_outer - r_inner)),
                                      density=Gaussian(width=sigma, center_atom_weight=0.0),
                                      basis=TensorProduct(max_angular=l_max, radial=Gto(max_radial=n_max - 1)))
    a = atoms.copy()
    if mode == "none":
        a.numbers[:] = 1
    tm = calc.compute(a).keys_to_samples("center_type").keys_to_properties(["neighbor_1_type", "neighbor_2_type"])
    block = tm.block()
    Y = np.asarray(block.values)[np.argsort(np.asarray(block.samples.column("atom")))]
    return Y / np.linalg.norm(Y, axis=1, keepdims=True)


# --------------------------------------------------------------------------- the distance
@pytest.mark.parametrize("mode", ["vector", "none"])
def test_distances_equal_those_of_featomics_power_spectrum(mode):
    atoms = gas()
    names = np.array(atoms.get_chemical_symbols())
    m, _ = metric(mode)
    X = m.features_of_structure(atoms, np.arange(len(atoms)), names).values
    Y = native_spectra(atoms, mode)
    D, ref = soap_distance_rows(X, X), soap_distance_rows(Y, Y)
    assert ref.max() > 0.1  # not a trivial comparison
    np.testing.assert_allclose(D, ref, atol=1e-6)
    assert np.allclose(np.diag(D), 0.0, atol=1e-6) and D.max() <= np.sqrt(2) + 1e-12


@pytest.mark.parametrize("mode", ["none", "sign", "vector"])
def test_structure_and_environment_paths_agree(mode):
    atoms = gas(seed=3)
    m, le = metric(mode)
    idx = np.arange(0, len(atoms), 2)
    envs = le.compute(atoms, indices=idx)
    a = m.features(envs).values
    b = m.features_of_structure(atoms, idx, atoms.get_chemical_symbols()).values
    assert a.shape == (len(idx), m.n_features)
    np.testing.assert_allclose(a, b, atol=1e-12)
    c = m.features_of_structure(atoms, idx, atoms.get_chemical_symbols(), chunk=7).values  # in parts
    np.testing.assert_allclose(c, b, atol=1e-14)


def _rotation(seed):
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    return q


@pytest.mark.parametrize("mode", ["sign", "vector"])
def test_rotation_reflection_permutation_translation_invariance(mode):
    m, le = metric(mode)
    envs = le.compute(gas(seed=5), indices=np.arange(12))
    base = m.features(envs).values
    R = _rotation(1)
    R[:, 0] *= -1 if np.linalg.det(R) > 0 else 1  # a reflection too
    for M in (R, _rotation(2)):
        moved = EnvironmentSet(envs.positions @ M.T, envs.weights, envs.offsets)
        np.testing.assert_allclose(m.features(moved).values, base, atol=1e-8)
    # neighbour order within each environment
    rng = np.random.default_rng(0)
    perm = np.concatenate([envs.offsets[k] + rng.permutation(envs.offsets[k + 1] - envs.offsets[k])
                           for k in range(len(envs))])
    shuffled = EnvironmentSet(envs.positions[perm], envs.weights[perm], envs.offsets)
    np.testing.assert_allclose(m.features(shuffled).values, base, atol=1e-12)
    # a translated (and wrapped) structure gives the same spectra
    atoms = gas(seed=5)
    shifted = atoms.copy()
    shifted.positions += [1.3, -2.1, 0.7]
    shifted.wrap()
    names = atoms.get_chemical_symbols()
    np.testing.assert_allclose(m.features_of_structure(shifted, np.arange(12), names).values,
                               m.features_of_structure(atoms, np.arange(12), names).values, atol=1e-10)


def test_sign_encoding_is_the_signed_density():
    m_sign, le_sign = metric("sign")
    m_none, le_none = metric("none")
    atoms = gas(seed=7)
    names = np.array(atoms.get_chemical_symbols())
    idx = np.arange(20)
    # all neighbours Ni (+1): the signed density is the plain density
    ni = np.full(len(atoms), "Ni")
    np.testing.assert_allclose(m_sign.features_of_structure(atoms, idx, ni).values,
                               m_none.features_of_structure(atoms, idx, ni).values, atol=1e-12)
    # swapping every species flips the sign of the density: the power spectrum is quadratic
    swapped = np.where(names == "Ni", "Nb", "Ni")
    np.testing.assert_allclose(m_sign.features_of_structure(atoms, idx, swapped).values,
                               m_sign.features_of_structure(atoms, idx, names).values, atol=1e-12)
    # mixed species: not the plain density
    d = np.linalg.norm(m_sign.features_of_structure(atoms, idx, names).values
                       - m_none.features_of_structure(atoms, idx, names).values, axis=1)
    assert d.min() > 1e-3


def test_smooth_at_the_cutoff_and_empty_environments():
    m, _ = metric("none", r_inner=2.0, r_outer=3.0)
    a = Atoms("Ar3", positions=[[0, 0, 0], [1.1, 0, 0], [0, 1.2, 0]], cell=np.eye(3) * 30, pbc=True)
    base = m.features_of_structure(a, [0], ["Ar"] * 3).values

    def with_third(r):
        b = Atoms("Ar4", positions=[[0, 0, 0], [1.1, 0, 0], [0, 1.2, 0], [0, 0, r]], cell=np.eye(3) * 30, pbc=True)
        return m.features_of_structure(b, [0], ["Ar"] * 4).values

    # a neighbour crossing the cutoff changes the spectrum continuously, and not at all beyond it
    assert soap_distance_rows(with_third(3.0 - 1e-6), base)[0, 0] < 1e-5
    np.testing.assert_allclose(with_third(3.2), base, atol=1e-14)
    steps = [soap_distance_rows(with_third(r), base)[0, 0] for r in np.linspace(2.9, 3.0, 6)]
    assert np.all(np.diff(steps) <= 1e-12) and steps[0] > steps[-1]
    # an isolated atom: zero spectrum, distance 1 to any other and 0 to another isolated one
    lone = Atoms("Ar2", positions=[[0, 0, 0], [10, 10, 10]], cell=np.eye(3) * 30, pbc=True)
    z = m.features_of_structure(lone, [0, 1], ["Ar"] * 2)
    assert np.all(z.values == 0) and z.counts.tolist() == [0, 0]
    D = soap_distance_rows(np.vstack([z.values, base]), np.vstack([z.values, base]))
    np.testing.assert_allclose(D, [[0, 0, 1], [0, 0, 1], [1, 1, 0]], atol=1e-12)


def test_parameters_soap_cannot_represent():
    enc = SpeciesEncoding("sign", ("Ni", "Nb"), "Ni")
    with pytest.raises(ValueError, match="reflections.*SO3"):
        SOAPMetric(1.0, 3, 4, enc, 3, "SO3")
    with pytest.raises(ValueError, match="fixed orientation"):
        SOAPMetric(1.0, 3, 4, enc, 3, None)
    with pytest.raises(ValueError, match="SO2"):
        SOAPMetric(1.0, 3, 4, enc, 2, "SO2")
    with pytest.raises(ValueError, match="per-species sigmas"):
        SOAPMetric(1.0, 3, 4, enc, 3, "O3", species_sigma={"Ni": 1.0, "Nb": 1.2})
    with pytest.raises(ValueError, match="n_max must be an integer"):
        SOAPSettings(n_max=0)
    with pytest.raises(ValueError, match="l_max"):
        SOAPSettings(l_max=2.5)
    m = SOAPMetric(1.0, 3, 4, enc, 3, "O3")
    with pytest.raises(ValueError, match="per-atom sigmas"):
        m.features(EnvironmentSet(np.ones((2, 3)), np.ones(2), [0, 1, 2], sigmas=np.ones(2)))
    with pytest.raises(ValueError, match="not those of the reference's species encoding"):
        m.features(EnvironmentSet(np.ones((2, 3)), np.full(2, 0.3), [0, 1, 2]))
    with pytest.raises(ValueError, match="not known to the 'sign' encoding"):
        m.features_of_structure(gas(), [0], ["Cu"] * 60)


# --------------------------------------------------------------------------- the pipeline
def _build_soap(structures, **kw):
    le = LocalEnvironments(2.5, 3.5, SpeciesEncoding("vector", ("Ni", "Nb")), dim=3)
    opts = dict(sigma=0.8, environments=le, n_train=40, metric="soap", n_classes=3, n_coords=2)
    opts.update(kw)
    return ReferenceMap.build(structures, **opts)


def test_map_on_soap_distances_transform_and_round_trip(tmp_path):
    train, new = gas(seed=11), gas(seed=12)
    ref = _build_soap([train])
    assert ref.metric_name == "soap" and isinstance(ref.metric, SOAPMetric)
    # the training matrix is the SOAP distance of the training environments
    X = ref.metric.features(ref.training).values
    np.testing.assert_allclose(ref.distances, soap_distance_rows(X, X), atol=1e-7)  # sqrt of rounding at d = 0
    assert ref.diffusion.epsilon_info["method"] == "knn_median"  # the same rule as for GIIP
    res = ref.transform(new)
    rows = soap_distance_rows(ref.metric.features_of_structure(new, np.arange(len(new)),
                                                               new.get_chemical_symbols()).values, X)
    np.testing.assert_allclose(res.ref_distance, rows.min(1), atol=1e-12)
    assert np.array_equal(res.classes, ref.labels[rows.argmin(1)])
    # environment sets and structures give the same results
    envs = ref.compute_environments(new)
    np.testing.assert_allclose(ref.transform(envs).coordinates, res.coordinates, atol=1e-10)
    # the file keeps the metric
    path = tmp_path / "soap.h5"
    ref.save(path)
    import h5py

    with h5py.File(path, "r") as f:  # the training spectra are stored: applying the map does not recompute them
        np.testing.assert_array_equal(f["training/soap_features"][()], X)
    back = ReferenceMap.load(path)
    assert back.metric_name == "soap" and back.soap_settings == SOAPSettings()
    assert back.metric.training_features(back.training).values is not None
    calls = []

    def counted(envs, **kw):
        if not isinstance(envs, SOAPFeatures):
            calls.append(len(envs))
        return SOAPMetric.features(back.metric, envs, **kw)

    back.metric.features = counted
    r2 = back.transform(new)
    assert not calls  # the stored spectra, and the new structure expanded directly
    assert np.array_equal(r2.classes, res.classes) and np.allclose(r2.coordinates, res.coordinates, atol=1e-12)
    s = back.summary()["parameters"]
    assert s["metric"] == "soap" and s["metric_parameters"]["library"] == "featomic"
    assert "SOAP reference map" in back.describe()
    with pytest.raises(ValueError, match="no rotation search"):
        back.transform(new, return_rotation=True)
    with pytest.raises(ValueError, match="SOAP metric"):
        back.engine_for(envs)


def test_basis_sizes_and_their_errors():
    ref = _build_soap([gas(seed=11)], soap_n_max=4, soap_l_max=3)
    assert ref.soap_settings == SOAPSettings(4, 3) and ref.metric.n_features == 4 * 8 * 9 // 2
    with pytest.raises(ValueError, match="metric='soap'"):
        ReferenceMap.build([gas(seed=11)], sigma=0.8, r_inner=2.5, r_outer=3.5, soap_n_max=4)
    with pytest.raises(ValueError, match="unknown metric"):
        ReferenceMap.build([gas(seed=11)], sigma=0.8, r_inner=2.5, r_outer=3.5, metric="acsf")
    with pytest.raises(ValueError, match="per-species sigmas"):
        ReferenceMap.build([gas(seed=11)], sigma=0.8, r_inner=2.5, r_outer=3.5, metric="soap",
                           species_sigma={"Ni": 0.8, "Nb": 0.9}, encoding="vector")


def test_a_file_written_before_soap_loads_as_giip(tmp_path):
    """A reference file without the metric attributes (written before the SOAP metric) is GIIP."""
    from giip_plugin.reference.fileformat import map_to_content, write_reference

    le = LocalEnvironments(2.5, 3.5, SpeciesEncoding("vector", ("Ni", "Nb")), dim=3)
    atoms = gas(seed=11)
    training = le.compute(atoms, indices=np.arange(10))
    D = np.abs(np.subtract.outer(np.arange(10.0), np.arange(10.0)))
    ref = ReferenceMap.from_distances(training, D, sigma=0.8, environments=le, n_classes=2, epsilon=2.0, n_coords=1)
    content = map_to_content(ref)
    for k in ("metric", "metric_parameters"):
        del content["parameters"]["attrs"][k]
    path = tmp_path / "old.h5"
    write_reference(path, content, {"package_version": "0.1"})
    back = ReferenceMap.load(path)
    assert back.metric_name == "giip" and back.metric.name == "giip"


def test_cli_build_info_apply_with_metric_soap(tmp_path, capsys):
    from giip_plugin.cli import main
    from giip_plugin.io import iter_frames

    ref = tmp_path / "soap.h5"
    rc = main(["build", str(DUMP), "-o", str(ref), *NINB, "--n-train", "120", "--metric", "soap", "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "SOAP power spectra of 120 training environments" in err
    assert main(["info", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "SOAP reference map" in out and "n_max = 8, l_max = 6" in out
    dump = tmp_path / "out.dump"
    assert main(["apply", str(ref), str(DUMP2), "-o", str(dump), "--type-names", "1=Ni,2=Nb", "--no-progress"]) == 0
    assert "atoms by SOAP distances" in capsys.readouterr().err
    frame = next(iter(iter_frames([str(dump)], type_names={1: "Ni", 2: "Nb"})))
    loaded = ReferenceMap.load(ref)
    cls = np.asarray(frame.atoms.arrays["d_giip_class"]).reshape(-1).astype(int)
    ni = frame.species == "Ni"
    assert (cls[ni] >= 0).all() and (cls[~ni] == -1).all()
    # the dump's values are those of the map applied in Python
    src = next(iter(iter_frames([str(DUMP2)], type_names={1: "Ni", 2: "Nb"})))
    res = loaded.transform(src.atoms, indices=np.flatnonzero(ni))
    assert np.array_equal(cls[ni], res.classes)
    np.testing.assert_allclose(np.asarray(frame.atoms.arrays["d_giip_ref_distance"]).reshape(-1)[ni], res.ref_distance, atol=1e-6)


def test_cli_metric_errors(tmp_path, capsys):
    from giip_plugin.cli import main

    out = str(tmp_path / "r.h5")
    cases = [
        (["--soap-n-max", "4"], "options of --metric soap"),
        (["--metric", "soap", "--group", "SO3"], "reflections too"),
        (["--metric", "soap", "--species-sigma", "Ni=1,Nb=1.2"], "--species-sigma cannot be represented"),
        (["--metric", "soap", "--exact"], "no search"),
        (["--metric", "soap", "--soap-n-max", "0"], "n_max must be an integer"),
    ]
    for extra, msg in cases:
        rc = main(["build", str(DUMP), "-o", out, *NINB, "--n-train", "10", *extra])
        assert rc != 0
        assert msg in capsys.readouterr().err
        assert not Path(out).exists()


def test_analyser_fills_atoms_arrays_with_soap(tmp_path):
    from giip_plugin.analysis import GIIPAnalyzer

    ref = _build_soap([gas(seed=11)])
    path = tmp_path / "soap.h5"
    ref.save(path)
    atoms = gas(seed=13)
    calc = GIIPAnalyzer(str(path))
    calc.annotate(atoms)
    res = ReferenceMap.load(path).transform(atoms)
    assert np.array_equal(atoms.arrays["giip_class"], res.classes)
    np.testing.assert_allclose(atoms.arrays["giip_ref_distance"], res.ref_distance, atol=1e-12)
    assert calc.search_report.soap_atoms == len(atoms)


def test_soap_map_in_2d():
    """A 2D map: the plane z = 0 in 3D (O(2) as the part of O(3) that keeps the plane)."""
    from giip_plugin.environments import LocalEnvironments as LE

    a = 1.12
    pts = np.array([[a * (i + 0.5 * (j % 2)), a * np.sqrt(3) / 2 * j] for j in range(12) for i in range(12)])
    rng = np.random.default_rng(0)
    pts = pts[rng.permutation(len(pts))[:130]] + rng.normal(scale=0.03, size=(130, 2))
    atoms = Atoms("Ar" * len(pts), positions=np.column_stack([pts + 5, np.zeros(len(pts))]),
                  cell=[a * 12 + 10, a * 12 + 10, 1.0], pbc=[True, True, False])
    le = LE(1.3, 1.75, SpeciesEncoding("none", ("Ar",)), dim=2)
    ref = ReferenceMap.build([atoms], sigma=0.5, environments=le, n_train=60, metric="soap", n_classes=3, epsilon=0.3,
                             n_coords=2, dim=2)
    assert ref.group == "O2" and ref.metric.dim == 2
    res = ref.transform(atoms)
    assert np.all(res.ref_distance[ref.training.centers] < 1e-6)  # training atoms find themselves
    # rotating and mirroring the plane changes nothing
    envs = ref.compute_environments(atoms)
    t = 0.7
    M = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1, -1])
    moved = EnvironmentSet(envs.positions @ M.T, envs.weights, envs.offsets)
    np.testing.assert_allclose(ref.metric.features(moved).values, ref.metric.features(envs).values, atol=1e-8)
    assert isinstance(ref.metric.features(envs), SOAPFeatures)
