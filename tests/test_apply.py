"""Applying a reference: the ASE analyser and the `giip apply` command line, on real NiNb data."""
from __future__ import annotations

import warnings

import ase.io
import numpy as np
import pytest

from giip_plugin.analysis import GIIPAnalyzer
from giip_plugin.cli import main
from giip_plugin.io import AnnotatedWriter, Frame, iter_frames
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
    rows = ref.distance_rows(envs)
    np.testing.assert_allclose(rows.min(1), res.ref_distance[idx], atol=1e-9)


@pytest.mark.slow
def test_fast_path_agrees_with_exhaustive():
    """transform(fast=True) against every exact distance, on 120 Ni atoms of another sample and a
    60-environment reference: coarse distances are upper bounds, close for most pairs; the nearest
    reference and its distance are exact; classes agree for >= 99.5% of atoms and the coordinates
    within 1% of their range."""
    ref = ReferenceMap.from_files(
        [str(DATA / "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=60, epsilon=1.5, n_classes=4, n_coords=3, progress=False,
    )
    atoms = next(iter_frames(str(DATA / "quench500K.dump"), type_names=TYPES)).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    idx = np.sort(np.random.default_rng(5).choice(ni, 120, replace=False))
    envs = ref.compute_environments(atoms, indices=idx)
    exact_rows = ref.distance_rows(envs)
    fast_rows = ref.distance_rows(envs, fast=True)
    assert np.all(fast_rows >= exact_rows - 1e-9)
    # the coarse search (2 Newton steps) lands in the right basin for most pairs, close to its top
    assert np.mean(fast_rows - exact_rows < 1e-3) > 0.9 and np.mean(fast_rows - exact_rows) < 5e-3
    np.testing.assert_allclose(fast_rows.min(1), exact_rows.min(1), atol=1e-9)
    exact = ref.transform_from_distances(exact_rows)
    fast = ref.transform(envs, fast=True)
    assert np.mean(fast.classes == exact.classes) >= 0.995
    np.testing.assert_allclose(fast.ref_distance, exact.ref_distance, atol=1e-9)
    span = exact.coordinates.max(0) - exact.coordinates.min(0)
    err = np.abs(fast.coordinates - exact.coordinates) / span
    assert np.mean(np.all(err <= 0.01, axis=1)) >= 0.995
    # the analyser and the command line option use the same path
    an = GIIPAnalyzer(ref, fast=True)
    res = an.analyze(atoms, indices=idx[:10])
    np.testing.assert_allclose(res.coordinates[idx[:10]], fast.coordinates[:10], atol=1e-9)


def test_fast_settings_follow_the_reference_size(monkeypatch):
    """Large references get the cheaper coarse search (1 start per parity): still upper bounds,
    still exact for the nearest reference; small ones keep 3 starts per parity."""
    from giip_plugin.reference import metric as refmap  # where the fast settings live

    assert refmap.fast_settings(60) == refmap.FAST_SETTINGS
    assert refmap.fast_settings(refmap.FAST_LARGE_REFERENCE) == refmap.FAST_SETTINGS_LARGE
    assert refmap.FAST_SETTINGS_LARGE.candidates < refmap.FAST_SETTINGS.candidates
    ref = ReferenceMap.from_files(
        [str(DATA / "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names="1=Ni,2=Nb", n_train=40, epsilon=1.5, n_classes=3, n_coords=2, progress=False,
    )
    atoms = next(iter_frames(str(DATA / "quench500K.dump"), type_names=TYPES)).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    envs = ref.compute_environments(atoms, indices=np.sort(np.random.default_rng(7).choice(ni, 30, replace=False)))
    small = ref.engine_for(envs, coarse=True)
    assert (small.settings.candidates, small.grid_pool) == (3, 12)
    monkeypatch.setattr(refmap, "FAST_LARGE_REFERENCE", 40)
    large = ref.engine_for(envs, coarse=True)
    assert (large.settings.candidates, large.grid_pool, large.L) == (1, 8, 7)
    exact_rows = ref.distance_rows(envs)
    cheap_rows = ref.distance_rows(envs, fast=True)
    assert np.all(cheap_rows >= exact_rows - 1e-9)
    assert np.mean(cheap_rows - exact_rows < 1e-3) > 0.8 and np.mean(cheap_rows - exact_rows) < 0.02
    np.testing.assert_allclose(cheap_rows.min(1), exact_rows.min(1), atol=1e-9)


def test_training_environment_maps_to_itself(ref_path):
    ref = ReferenceMap.load(ref_path)
    res = ref.transform(ref.training.subset([0, 3]))
    np.testing.assert_allclose(res.ref_distance, 0.0, atol=1e-6)
    np.testing.assert_array_equal(res.classes, ref.labels[[0, 3]])
    np.testing.assert_allclose(res.coordinates, ref.coordinates[[0, 3]], atol=1e-6)


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


def test_cli_apply_fast(ref_path, cutout_dump, analysed, tmp_path):
    out = tmp_path / "fast.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "0:1", "--fast",
                 "--no-progress"]) == 0
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
            # --fast reaches the workers
            assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "dask_fast.dump"),
                         "--no-progress", "--fast", "--scheduler", cluster.scheduler_address]) == 0
    assert local.read_text() == remote.read_text()
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "fast.dump"), "--no-progress",
                 "--fast"]) == 0
    assert (tmp_path / "fast.dump").read_text() == (tmp_path / "dask_fast.dump").read_text()
