"""Applying a reference: the ASE analyser and the `giip apply` command line, on real NiNb data."""
from __future__ import annotations

import warnings

import ase.io
import numpy as np
import pytest

from giip_plugin.analysis import GIIPAnalyzer
from giip_plugin.cli import main
from giip_plugin.io import iter_frames
from giip_plugin.reference import ReferenceMap

from pathlib import Path

DATA = Path(__file__).parent / "data" / "ninb"
TYPES = {1: "Ni", 2: "Nb"}


@pytest.fixture(scope="module")
def analysed(ref_path, cutout):
    an = GIIPAnalyzer(ref_path)
    return an, an.analyze(cutout)


def test_analyser_outputs(analysed, cutout):
    an, res = analysed
    names = cutout.arrays["species"]
    n = len(cutout)
    assert res.classes.shape == (n,) and res.coordinates.shape == (n, an.n_coords) and res.ref_distance.shape == (n,)
    ni = names == "Ni"
    # non-centre atoms (Nb) are not analysed
    assert np.all(res.classes[~ni] == -1) and np.all(np.isnan(res.coordinates[~ni])) and np.all(np.isnan(res.ref_distance[~ni]))
    ok = res.analysed
    assert ok.sum() >= 5 and np.all(ok <= ni)
    assert np.all((res.classes[ok] >= 0) & (res.classes[ok] < an.n_classes))
    assert np.all(np.isfinite(res.coordinates[ok])) and np.all(res.ref_distance[ok] > 0)


def test_analyser_matches_reference_transform(analysed, ref_path, cutout):
    an, res = analysed
    ref = ReferenceMap.load(ref_path)
    idx = np.flatnonzero(res.analysed)
    names = np.asarray(cutout.arrays["species"])
    envs = ref.compute_environments(cutout, indices=idx, species=names)
    direct = ref.transform(envs)
    np.testing.assert_array_equal(direct.classes, res.classes[idx])
    np.testing.assert_allclose(direct.coordinates, res.coordinates[idx], atol=1e-9)
    np.testing.assert_allclose(direct.ref_distance, res.ref_distance[idx], atol=1e-9)
    # the nearest-reference distance is the minimum over exact distances to all training envs
    rows = ref.distance_rows(envs, exact=True)
    np.testing.assert_allclose(rows.min(1), res.ref_distance[idx], atol=1e-9)


def _contract(default, exact, exact_rows, rows):
    """The accuracy contract of the default path against the exhaustive exact rows: classes equal
    for >= 99.9 % of the atoms, the nearest distance exact (1e-9) for >= 99.9 %, every atom's
    coordinates within 1 % of their range and the median within 0.1 %; rows never below exact."""
    assert np.all(rows >= exact_rows - 1e-9)
    assert np.mean(default.classes == exact.classes) >= 0.999
    assert np.mean(np.abs(default.ref_distance - exact.ref_distance) <= 1e-9) >= 0.999
    span = exact.coordinates.max(0) - exact.coordinates.min(0)
    err = np.abs(default.coordinates - exact.coordinates) / span
    assert err.max() <= 0.01 and np.median(err) <= 0.001


@pytest.mark.parametrize("n_train", [50, 200])
def test_default_path_meets_the_accuracy_contract(n_train):
    """transform() (coarse search of every pair, exact refinement of the nearest) against the
    exhaustive exact rows (exact=True), on 150 Ni atoms of another sample; the search report counts
    the refined atoms and the confirmed nearest references."""
    from giip_plugin.reference.metric import SearchReport

    ref = ReferenceMap.from_files(
        [str(DATA / "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=n_train, epsilon=1.5, n_classes=4, n_coords=3,
        progress=False,
    )
    atoms = next(iter_frames(str(DATA / "quench500K.dump"), type_names=TYPES)).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    idx = np.sort(np.random.default_rng(5).choice(ni, 150, replace=False))
    envs = ref.compute_environments(atoms, indices=idx)
    exact_rows = ref.distance_rows(envs, exact=True)
    report = SearchReport()
    rows = ref.distance_rows(envs, report=report)
    assert report.atoms == 150 and report.pairs == 150 * n_train
    assert 150 <= report.refined_pairs < 150 * 4 and 0 <= report.refined_atoms <= 150
    assert report.confirmed >= 140 and "refined" in report.line()
    exact = ref.transform(envs, exact=True)
    default = ref.transform(envs)
    np.testing.assert_allclose(ref.transform_from_distances(exact_rows).coordinates, exact.coordinates, atol=1e-12)
    _contract(default, exact, exact_rows, rows)
    # the analyser uses the same path, and reports it
    an = GIIPAnalyzer(ref)
    res = an.analyze(atoms, indices=idx[:10])
    np.testing.assert_allclose(res.coordinates[idx[:10]], default.coordinates[:10], atol=1e-9)
    assert an.search_report.atoms == 10
    res = GIIPAnalyzer(ref, exact=True).analyze(atoms, indices=idx[:10])
    np.testing.assert_allclose(res.coordinates[idx[:10]], exact.coordinates[:10], atol=1e-9)


def test_one_coarse_setting_at_every_reference_size():
    """No size threshold: small and large references get the same coarse search, compiled."""
    from giip_plugin.kernels import fused
    from giip_plugin.reference import metric

    assert metric.fast_settings(50) == metric.fast_settings(20000) == metric.COARSE_SETTINGS
    ref = ReferenceMap.from_files(
        [str(DATA / "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=40, epsilon=1.5, n_classes=3, n_coords=2, progress=False,
    )
    atoms = next(iter_frames(str(DATA / "quench500K.dump"), type_names=TYPES)).atoms
    envs = ref.compute_environments(atoms, indices=np.arange(0, 200, 7))
    eng = ref.engine_for(envs, coarse=True)
    fs = metric.COARSE_SETTINGS
    assert (eng.settings.candidates, eng.grid_pool, eng.L) == (fs.candidates, fs.pool, fs.l_max)
    assert eng.compiled == fused.available()


def test_deprecated_fast_keyword_still_works(ref_path, cutout):
    ref = ReferenceMap.load(ref_path)
    envs = ref.compute_environments(cutout, indices=np.arange(5))
    with pytest.warns(DeprecationWarning, match="exact=True"):
        old = ref.transform(envs, fast=False)
    np.testing.assert_allclose(old.coordinates, ref.transform(envs, exact=True).coordinates, atol=1e-12)
    with pytest.warns(DeprecationWarning, match="exact=True"):
        an = GIIPAnalyzer(ref, fast=False)
    assert an.exact


def test_training_environment_maps_to_itself(ref_path):
    """With exact rows the Nystrom extension reproduces a training point's coordinates; the default
    path finds the point itself (distance 0, its class) and its coordinates within the contract."""
    ref = ReferenceMap.load(ref_path)
    res = ref.transform(ref.training.subset([0, 3]), exact=True)
    np.testing.assert_allclose(res.ref_distance, 0.0, atol=1e-6)
    np.testing.assert_array_equal(res.classes, ref.labels[[0, 3]])
    np.testing.assert_allclose(res.coordinates, ref.coordinates[[0, 3]], atol=1e-6)
    res = ref.transform(ref.training.subset([0, 3]))
    np.testing.assert_allclose(res.ref_distance, 0.0, atol=1e-6)
    np.testing.assert_array_equal(res.classes, ref.labels[[0, 3]])
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    assert np.all(np.abs(res.coordinates - ref.coordinates[[0, 3]]) <= 0.001 * span)
    np.testing.assert_array_equal(res.nearest, [0, 3])  # the nearest training environment is itself


def test_nearest_index_recuts_the_classes(ref_path, cutout):
    """``nearest`` is the training environment a new one was assigned to: its class is the label,
    and the tree cut at any other K labels the new environments without a second search."""
    ref = ReferenceMap.load(ref_path)
    res = ref.transform(cutout, return_rotation=True)
    assert res.nearest.shape == res.classes.shape and res.nearest.dtype.kind == "i"
    np.testing.assert_array_equal(ref.labels[res.nearest], res.classes)
    rows = ref.distance_rows(ref.compute_environments(cutout), exact=True)
    np.testing.assert_array_equal(res.nearest, np.argmin(rows, axis=1))
    np.testing.assert_allclose(res.ref_distance, rows[np.arange(len(rows)), res.nearest], atol=1e-9)
    k = min(3, ref.n_train)
    recut = ref.clustering.labels(n_classes=k)[res.nearest]
    assert set(np.unique(recut)) <= set(range(k))


def test_n_classes_recuts_the_tree_in_the_analyser_and_the_cli(ref_path, cutout, cutout_dump, tmp_path, capsys):
    """``GIIPAnalyzer(n_classes=K)`` / ``giip apply --n-classes K``: the class of each atom is that
    of its nearest training environment under the tree cut at K classes; coordinates and distances
    do not change; a K out of range is refused with the range."""
    ref = ReferenceMap.load(ref_path)
    base = GIIPAnalyzer(ref).analyze(cutout)
    k = min(ref.n_train, ref.n_classes + 3)
    an = GIIPAnalyzer(ref, n_classes=k)
    assert an.n_classes == k and an.parameters["n_classes"] == k
    res = an.analyze(cutout)
    ok = base.analysed
    near = ref.transform(ref.metric_inputs(cutout, np.flatnonzero(ok), an.species_of(cutout))).nearest
    np.testing.assert_array_equal(res.classes[ok], ref.clustering.labels(n_classes=k)[near])
    assert (res.classes[~ok] == -1).all()
    np.testing.assert_allclose(res.coordinates, base.coordinates, equal_nan=True)
    np.testing.assert_allclose(res.ref_distance, base.ref_distance, equal_nan=True)
    # the map's own cut gives the map's classes
    np.testing.assert_array_equal(GIIPAnalyzer(ref, n_classes=ref.n_classes).analyze(cutout).classes, base.classes)
    for bad in (0, ref.n_train + 1, 2.5, "many", True):
        with pytest.raises(ValueError, match="n_classes must be an integer from 1"):
            GIIPAnalyzer(ref, n_classes=bad)
    out = tmp_path / "k.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "0:1", "--n-classes", str(k),
                 "--no-progress"]) == 0
    f0 = next(iter_frames(str(out), reader="ovito"))
    np.testing.assert_array_equal(f0.atoms.arrays["d_giip_class"].astype(int), res.classes)
    capsys.readouterr()
    bad_out = tmp_path / "bad.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(bad_out), "--n-classes", "0"]) == 1
    assert "--n-classes" in capsys.readouterr().err and not bad_out.exists()


def test_ase_calculator_interface_and_cache(analysed, cutout, monkeypatch):
    an, res = analysed
    atoms = cutout.copy()
    calc = GIIPAnalyzer(an.reference)
    calls = []
    orig = calc.analyze
    monkeypatch.setattr(calc, "analyze", lambda *a, **k: calls.append(1) or orig(*a, **k))
    atoms.calc = calc
    cls = atoms.calc.get_property("giip_class", atoms)
    dc = atoms.calc.get_property("giip_dc", atoms)
    np.testing.assert_array_equal(cls, res.classes)
    np.testing.assert_allclose(dc, res.coordinates, equal_nan=True)
    assert len(calls) == 1  # cached until the atoms change
    atoms.positions[0] += 0.3
    atoms.calc.get_property("giip_ref_distance", atoms)
    assert len(calls) == 2


def test_annotate_survives_extxyz(analysed, cutout, tmp_path):
    an, res = analysed
    atoms = cutout.copy()
    an.annotate(atoms)
    ase.io.write(tmp_path / "a.extxyz", atoms)
    back = ase.io.read(tmp_path / "a.extxyz")
    np.testing.assert_array_equal(back.arrays["giip_class"], res.classes)
    np.testing.assert_allclose(back.arrays["giip_dc"], res.coordinates, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(back.arrays["giip_ref_distance"], res.ref_distance, atol=1e-6, equal_nan=True)


def test_plain_ase_read_of_lammps_dump_is_understood(ref_path, cutout, cutout_dump):
    """ase.io.read maps LAMMPS types to H/He; the reference's type names map them back."""
    atoms = ase.io.read(cutout_dump, format="lammps-dump-text", index=0)
    res = GIIPAnalyzer(ref_path).analyze(atoms, indices=[0, 1, 2, 3])
    assert set(res.classes[:4].tolist()) <= set(range(-1, 3))


def test_isolated_centre_gets_minus_one_and_warning(ref_path, cutout):
    atoms = cutout.copy()
    ni = int(np.flatnonzero(atoms.arrays["species"] == "Ni")[0])
    atoms.positions[ni] += [100.0, 0, 0]
    with pytest.warns(RuntimeWarning, match="1 centre atoms have no neighbour"):
        res = GIIPAnalyzer(ref_path).analyze(atoms, indices=[ni, ni + 1])
    assert res.classes[ni] == -1 and np.all(np.isnan(res.coordinates[ni]))


def test_wrong_units_and_species_are_refused(ref_path, cutout):
    an = GIIPAnalyzer(ref_path)
    big = cutout.copy()
    big.positions *= 10.0  # nm-like confusion: no neighbours inside 4 A
    with pytest.raises(ValueError, match="length units"):
        an.analyze(big)
    other = cutout.copy()
    other.arrays["species"] = np.where(other.arrays["species"] == "Ni", "Cu", "Zr")
    with pytest.raises(ValueError, match="does not know"):
        an.analyze(other)


# ---------------------------------------------------------------------------- command line
def test_cli_apply_dump(ref_path, cutout_dump, analysed, tmp_path):
    out = tmp_path / "out.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--no-progress"]) == 0
    frames = list(iter_frames(str(out), reader="ovito"))
    assert len(frames) == 2
    an, res = analysed
    f0 = frames[0]
    # the names of the LAMMPS hook, after the input's columns
    assert f0.columns[-5:] == ["d_giip_class", "d2_giip_dc[1]", "d2_giip_dc[2]", "d2_giip_dc[3]", "d_giip_ref_distance"]
    np.testing.assert_array_equal(f0.atoms.arrays["d_giip_class"].astype(int), res.classes)
    np.testing.assert_allclose(f0.atoms.arrays["d2_giip_dc[2]"], res.coordinates[:, 1], atol=1e-6, equal_nan=True)
    # ASE's reader gets the same columns
    f0_ase = next(iter_frames(str(out), reader="ase"))
    np.testing.assert_array_equal(f0_ase.atoms.arrays["d_giip_class"].astype(int), res.classes)


def test_cli_apply_columns_survive_plain_ase(ref_path, cutout_dump, analysed, tmp_path):
    """The default columns survive a plain ase.io.read of the dump (ASE keeps d_ and d2_ columns)."""
    out = tmp_path / "out_d.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "0:1", "--no-progress"]) == 0
    atoms = ase.io.read(out, format="lammps-dump-text", index=0, order=False)  # keep the file's atom order
    an, res = analysed
    assert "d_giip_class" in atoms.arrays and "d_giip_ref_distance" in atoms.arrays
    np.testing.assert_array_equal(np.asarray(atoms.arrays["d_giip_class"]).reshape(-1).astype(int), res.classes)
    np.testing.assert_allclose(np.asarray(atoms.arrays["d2_giip_dc[1]"]).reshape(-1), res.coordinates[:, 0], atol=1e-6,
                               equal_nan=True)
    # another prefix keeps the columns of two references apart
    out2 = tmp_path / "two.dump"
    assert main(["apply", str(ref_path), str(out), "-o", str(out2), "--prefix", "ref2", "--no-progress"]) == 0
    f = next(iter_frames(out2))
    assert "d_giip_class" in f.columns and "d_ref2_class" in f.columns and "d2_ref2_dc[3]" in f.columns
    np.testing.assert_array_equal(f.atoms.arrays["d_ref2_class"], f.atoms.arrays["d_giip_class"])
    assert main(["apply", str(ref_path), str(out), "-o", str(tmp_path / "x.dump"), "--prefix", "a b"]) == 1


def test_cli_apply_exact(ref_path, cutout_dump, analysed, tmp_path, capsys):
    """--exact: the exhaustive search, the same classes and nearest distances as the default; the
    default path reports per frame what it refined."""
    out = tmp_path / "exact.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "0:1", "--exact",
                 "--no-progress"]) == 0
    assert "exhaustive exact search" in capsys.readouterr().err
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "d.dump"), "--frames", "0:1",
                 "--no-progress"]) == 0
    assert "nearest references confirmed" in capsys.readouterr().err
    f0 = next(iter_frames(str(out), reader="ovito"))
    an, res = analysed
    np.testing.assert_array_equal(f0.atoms.arrays["d_giip_class"].astype(int), res.classes)
    np.testing.assert_allclose(f0.atoms.arrays["d_giip_ref_distance"], res.ref_distance, atol=1e-6, equal_nan=True)


def test_cli_apply_frames_and_extxyz(ref_path, cutout_dump, analysed, tmp_path):
    out = tmp_path / "out.extxyz"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "1:2", "--no-progress"]) == 0
    back = ase.io.read(out, index=":")
    assert len(back) == 1
    assert back[0].arrays["giip_dc"].shape == (len(back[0]), 3)


def test_cli_apply_errors_leave_no_output(ref_path, cutout_dump, tmp_path, capsys):
    out = tmp_path / "bad.dump"
    rc = main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--type-names", "1=Cu,2=Zr", "--no-progress"])
    assert rc == 1 and not out.exists()
    assert "does not know" in capsys.readouterr().err
    rc = main(["apply", str(tmp_path / "missing.h5"), str(cutout_dump), "-o", str(out)])
    assert rc == 1 and "reference file not found" in capsys.readouterr().err
    foreign = tmp_path / "foreign.h5"
    foreign.write_text("not a reference")
    rc = main(["apply", str(foreign), str(cutout_dump), "-o", str(out)])
    assert rc == 1 and "reference" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_cli_apply_dask_matches_local(ref_path, cutout_dump, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = tmp_path / "local.dump"
    remote = tmp_path / "dask.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(local), "--no-progress"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(remote), "--no-progress",
                         "--scheduler", cluster.scheduler_address]) == 0
            # --exact reaches the workers
            assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "dask_exact.dump"),
                         "--no-progress", "--exact", "--scheduler", cluster.scheduler_address]) == 0
    assert local.read_text() == remote.read_text()
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "exact.dump"), "--no-progress",
                 "--exact"]) == 0
    assert (tmp_path / "exact.dump").read_text() == (tmp_path / "dask_exact.dump").read_text()
