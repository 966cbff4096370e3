"""Reference map: building from NiNb dumps, transform, file round trip and checks, checkpointed and
Dask distance blocks, training-atom sampling, and the errors of bad inputs.

Distances cost about 50-100 pairs/s on 2 cores, so the training sets here are small (<= 32)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms

import giip_plugin
from giip_plugin.io import Frame, iter_frames
from giip_plugin.reference import (
    CheckpointMismatch,
    ReferenceFileError,
    ReferenceMap,
    knee_n_classes,
    training_distance_matrix,
)
from giip_plugin.reference import sampling, training
from giip_plugin.reference.fileformat import SCHEMA_VERSION

NINB = Path(__file__).parent / "data" / "ninb"
FILES = [NINB / "quench100K.dump", NINB / "quench10M.dump"]
PAPER = dict(r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign", centers=("Ni",), type_names="1=Ni,2=Nb")


@pytest.fixture(scope="module")
def ref():
    return ReferenceMap.from_files(FILES, n_train=32, seed=3, epsilon=1.5, **PAPER)


@pytest.fixture(scope="module")
def frames():
    return [next(iter_frames(f, type_names="1=Ni,2=Nb")) for f in FILES]


@pytest.fixture(scope="module")
def small_set(ref):
    """8 training environments of the map (28 pairs; 6 blocks of 3 rows)."""
    return ref.training.subset(np.arange(0, 32, 4))


# --------------------------------------------------------------------------- building


def test_reference_map_is_exported():
    assert giip_plugin.ReferenceMap is ReferenceMap


def test_build_from_files(ref, frames):
    n = 32
    assert ref.n_train == n and ref.distances.shape == (n, n)
    assert np.allclose(ref.distances, ref.distances.T) and np.all(np.diag(ref.distances) == 0)
    # sampled evenly over the two files, Ni centres only
    tp = ref.training_provenance
    assert np.bincount(tp["file_index"]).tolist() == [16, 16]
    assert ref.species == ("Ni", "Nb") and ref.encoding.positive == "Ni" and ref.centers == ("Ni",)
    for f, fr in enumerate(frames):
        sel = tp["file_index"] == f
        idx = tp["atom_index"][sel]
        assert np.all(fr.atoms.arrays["species"][idx] == "Ni")
        assert np.array_equal(tp["atom_id"][sel], fr.atoms.arrays["id"][idx])
        assert np.all(tp["timestep"][sel] == fr.timestep)
        # the stored environments are those of the chosen atoms
        env = ref.environments.compute(fr.atoms, indices=idx)
        sub = ref.training.subset(np.flatnonzero(sel))
        assert np.allclose(env.positions, sub.positions) and np.allclose(env.weights, sub.weights)
    # about 15 neighbours within 4 A, weights +-1 inside 3 A
    assert 10 < ref.training.counts.mean() < 25
    assert set(np.unique(np.round(ref.training.weights[np.linalg.norm(ref.training.positions, axis=1) < 3], 9))) <= {-1.0, 1.0}
    # classes, error curve, diffusion map, selection
    ks, err = ref.error_curve
    assert ks[0] == 1 and err[-1] == 0 and np.all(np.diff(err) <= 0)
    assert ref.class_selection["method"] == "knee" and ref.n_classes == ref.class_selection["value"]
    assert ref.classes.sizes.sum() == n and len(ref.classes.medoids) == ref.n_classes
    assert ref.epsilon == 1.5 and ref.diffusion.epsilon_info["method"] == "given"
    assert ref.n_coords == len(ref.selected) >= 1 and ref.selected[0] == 0
    assert ref.coordinates.shape == (n, ref.n_coords)
    text = ref.describe()
    assert "eigenvalue" in text and "r^2" in text and "sign (Ni, Nb, +1 = Ni)" in text


def test_transform_training_environments_gives_their_own_coordinates(ref, frames):
    k = np.array([0, 9, 17, 30])
    res = ref.transform(ref.training.subset(k), exact=True)  # exact rows: the Nystrom extension reproduces them
    assert np.array_equal(res.classes, ref.labels[k])
    assert np.all(res.ref_distance < 1e-6)
    assert np.allclose(res.coordinates, ref.coordinates[k], atol=1e-6)
    # the same from the structure itself (atoms -> environments -> map), with rotations
    sel = np.flatnonzero(ref.training_provenance["file_index"] == 0)[:2]
    res2 = ref.transform(frames[0].atoms, indices=ref.training_provenance["atom_index"][sel], return_rotation=True, exact=True)
    assert np.array_equal(res2.classes, ref.labels[sel])
    assert np.allclose(res2.coordinates, ref.coordinates[sel], atol=1e-6)
    R = res2.rotation
    assert R.shape == (2, 3, 3) and np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-8)


def test_transform_from_distances_matches_rows(ref):
    rows = ref.distances[[1, 7]]
    res = ref.transform_from_distances(rows)
    assert np.array_equal(res.classes, ref.labels[[1, 7]])
    assert np.allclose(res.coordinates, ref.coordinates[[1, 7]], atol=1e-10)
    assert np.all(res.ref_distance == 0)
    allc = ref.transform_from_distances(rows, all_coordinates=True)
    assert allc.coordinates.shape == (2, len(ref.eigenvalues))
    eng = ref.engine_for(ref.training.subset([3]))
    assert len(eng.A) == 1 and len(eng.B) == ref.n_train


def test_save_load_round_trip(ref, tmp_path):
    path = tmp_path / "ref.h5"
    ref.save(path)
    with h5py.File(path) as f:
        assert f.attrs["format"] == "giip-reference" and int(f.attrs["schema_version"]) == SCHEMA_VERSION
        for g in ("parameters", "training", "distances", "classes", "diffusion", "provenance"):
            assert g in f
        assert f["distances/matrix"].shape == (32, 32)
        assert f["parameters"].attrs["r_outer"] == 4.0
    back = ReferenceMap.load(path)
    for name in ("distances", "labels", "selected", "residuals"):
        assert np.array_equal(getattr(back, name), getattr(ref, name))
    for name in ("eigenvalues", "eigenvectors", "P", "Dvec"):
        assert np.array_equal(getattr(back.diffusion, name), getattr(ref.diffusion, name))
    for name in ("positions", "weights", "offsets", "centers"):
        assert np.array_equal(getattr(back.training, name), getattr(ref.training, name))
    for k, v in ref.training_provenance.items():
        assert np.array_equal(back.training_provenance[k], v)
    assert back.environments.to_dict() == ref.environments.to_dict()
    assert back.sigma == ref.sigma and back.group == "O3" and back.epsilon == 1.5
    assert back.type_names == {1: "Ni", 2: "Nb"}
    assert back.provenance["input_files"] == [os.path.abspath(f) for f in FILES]
    assert back.provenance["selection"]["seed"] == 3
    assert back.describe() == ref.describe()
    res_a = ref.transform_from_distances(ref.distances[:5])
    res_b = back.transform_from_distances(ref.distances[:5])
    for a, b in zip(res_a, res_b):  # equal up to BLAS summation order (array layouts differ)
        assert np.allclose(a, b, rtol=1e-12, atol=1e-12)
    # saving twice gives the same arrays (no temporary file left behind)
    ref.save(tmp_path / "again.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.h5", "ref.h5"]


def test_fitting_options(ref):
    D, T = ref.distances, ref.training
    kw = dict(sigma=1.0, environments=ref.environments)
    r3 = ReferenceMap.from_distances(T, D, n_classes=3, epsilon="auto", n_coords=2, **kw)
    assert r3.n_classes == 3 and r3.n_coords == 2
    assert r3.diffusion.epsilon_info["method"] == "knn_median" and r3.epsilon > 0
    rd = ReferenceMap.from_distances(T, D, max_diameter=3.0, **kw)
    assert np.all(rd.classes.diameters <= 3.0)
    assert ReferenceMap.from_distances(T, D, max_diameter=0.0, **kw).n_classes == 32
    with pytest.raises(ValueError, match="not both"):
        ReferenceMap.from_distances(T, D, n_classes=3, max_diameter=1.0, **kw)
    with pytest.raises(ValueError, match="coordinates"):
        ReferenceMap.from_distances(T, D, n_coords=50, **kw)


def test_knee_of_error_curve():
    err = np.array([10, 9, 8, 3, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4, 0.0])
    assert knee_n_classes(err) == 4
    assert knee_n_classes(np.array([1.0, 0.0])) == 1


def test_build_from_environment_set_and_structures(small_set, frames):
    r = ReferenceMap.build(small_set, sigma=1.0, n_classes=2, epsilon=1.5, n_coords=1)
    assert r.n_train == 8 and r.environments is None and r.n_classes == 2
    with pytest.raises(ValueError, match="environment set"):
        r.transform(frames[0].atoms)


# --------------------------------------------------------------------------- distance blocks


def test_blocks_cover_the_upper_triangle():
    n, bs = 11, 4
    seen = np.zeros((n, n), int)
    for I, J in training.block_layout(n, bs):
        ia, ib = training.block_pairs(n, bs, I, J)
        assert np.all(ia < ib)
        seen[ia, ib] += 1
    assert np.array_equal(seen, np.triu(np.ones((n, n), int), 1))


def test_interrupted_distance_matrix_resumes(small_set, tmp_path, monkeypatch):
    full = training_distance_matrix(small_set, 1.0, "O3", block_size=3, progress=False)
    ck = tmp_path / "ref.h5.partial"
    calls = []
    real = training._compute_block

    def interrupting(*a, **k):
        calls.append(a[3:5])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "_compute_block", interrupting)
    messages = []
    with pytest.raises(KeyboardInterrupt):
        training_distance_matrix(small_set, 1.0, "O3", block_size=3, checkpoint=ck, progress=False, log=messages.append)
    assert any("rerun the same command to resume" in m for m in messages)
    assert len(list(ck.glob("b*.npy"))) == 2
    calls.clear()
    monkeypatch.setattr(training, "_compute_block", lambda *a, **k: (calls.append(a[3:5]), real(*a, **k))[1])
    D = training_distance_matrix(small_set, 1.0, "O3", block_size=3, checkpoint=ck, progress=False, log=messages.append)
    assert len(calls) == 4  # 6 blocks, 2 were on disk
    assert any("resuming" in m for m in messages)
    assert np.array_equal(D, full)
    # a checkpoint of other inputs is never reused
    with pytest.raises(CheckpointMismatch, match="different inputs"):
        training_distance_matrix(small_set, 0.8, "O3", block_size=3, checkpoint=ck, progress=False)
    D8 = training_distance_matrix(small_set.subset(np.arange(4)), 0.8, "O3", block_size=3, checkpoint=ck,
                                  restart=True, progress=False, keep_checkpoint=False)
    assert D8.shape == (4, 4) and not ck.exists()


@pytest.mark.slow
def test_dask_cluster_gives_the_same_matrix(small_set, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = training_distance_matrix(small_set, 1.0, "O3", block_size=3, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        ck = tmp_path / "dask.partial"
        D = training_distance_matrix(small_set, 1.0, "O3", block_size=3, checkpoint=ck,
                                     scheduler=cluster.scheduler_address, progress=False)
        assert len(list(ck.glob("b*.npy"))) == 6
    assert np.allclose(D, local, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- the file


@pytest.fixture(scope="module")
def saved(ref, tmp_path_factory):
    path = tmp_path_factory.mktemp("file") / "ref.h5"
    ref.save(path)
    return path


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        ReferenceMap.load(tmp_path / "nope.h5")


def test_load_foreign_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    with pytest.raises(ReferenceFileError, match="is not a GIIP reference file"):
        ReferenceMap.load(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="is not a GIIP reference file"):
        ReferenceMap.load(other)
    with h5py.File(other, "a") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="is not a GIIP reference file.*something-else"):
        ReferenceMap.load(other)


def test_load_newer_schema(saved, tmp_path):
    path = tmp_path / "new.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION + 1)
    with pytest.raises(ValueError, match="upgrade giip-plugin"):
        ReferenceMap.load(path)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_load_truncated_file(saved, tmp_path, keep):
    data = saved.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="damaged or truncated.*rebuild it"):
        ReferenceMap.load(path)


def test_load_altered_or_incomplete_file(saved, tmp_path):
    path = tmp_path / "altered.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "a") as f:
        ev = f["diffusion/eigenvectors"]
        v = ev[()]
        v[0, 0] += 0.5
        ev[...] = v
    with pytest.raises(ValueError, match="damaged.*checksum"):
        ReferenceMap.load(path)
    shutil.copy(saved, path)
    with h5py.File(path, "a") as f:
        del f["diffusion/P"]
    with pytest.raises(ValueError, match="damaged.*diffusion/P"):
        ReferenceMap.load(path)


# --------------------------------------------------------------------------- sampling


def test_even_quotas():
    rng = np.random.default_rng(0)
    q = sampling.even_quotas([10, 10, 10], 7, rng)
    assert q.sum() == 7 and q.max() - q.min() <= 1
    q = sampling.even_quotas([1, 50, 50], 41, rng)
    assert q.tolist()[0] == 1 and q.sum() == 41 and abs(q[1] - q[2]) <= 1
    assert sampling.even_quotas([3, 2], 100, rng).tolist() == [3, 2]


def _energy_frames(frames, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k, fr in enumerate(frames):
        a = fr.atoms.copy()
        a.new_array("c_pe", rng.normal(-4.0, 0.3, len(a)))
        out.append(Frame.from_atoms(a, source=f"mem{k}", index=0))
    return out


def test_select_by_column(frames):
    efr = _energy_frames(frames)
    scan = sampling.scan_frames(efr, ("Ni",), "c_pe", 3, 5)
    sample = sampling.choose_by_column(scan, "c_pe", 3, 5)
    chosen = []
    for seq, ords in sample.per_frame.items():
        a = efr[seq].atoms
        ni = np.flatnonzero(a.arrays["species"] == "Ni")
        chosen += [a.arrays["c_pe"][ni[o]] for o in ords]
    allv = np.sort(np.concatenate([f.atoms.arrays["c_pe"][f.atoms.arrays["species"] == "Ni"] for f in efr]))
    assert sorted(chosen) == sorted(list(allv[:3]) + list(allv[-5:]))
    with pytest.raises(ValueError, match="no per-atom column 'c_ke'.*c_pe"):
        sampling.scan_frames(efr, ("Ni",), "c_ke", 3, 5)


def test_even_sampling_is_seeded(frames):
    scan = sampling.scan_frames(frames, ("Ni",))
    a = sampling.choose_even(scan, 30, seed=1)
    b = sampling.choose_even(scan, 30, seed=1)
    c = sampling.choose_even(scan, 30, seed=2)
    assert all(np.array_equal(a.per_frame[k], b.per_frame[k]) for k in a.per_frame)
    assert not all(np.array_equal(a.per_frame[k], c.per_frame[k]) for k in a.per_frame)
    assert [len(v) for v in a.per_frame.values()] == [15, 15]


# --------------------------------------------------------------------------- bad inputs


def test_no_atoms_of_the_centre_species():
    with pytest.raises(ValueError, match=r"no atoms of the centre species \['Cu'\].*'Nb', 'Ni'"):
        ReferenceMap.from_files(FILES[0], n_train=10, **{**PAPER, "centers": ("Cu",)})


def test_cutoff_smaller_than_every_neighbour_distance():
    with pytest.raises(ValueError, match="every training environment is empty.*wrong units"):
        ReferenceMap.from_files(FILES[0], n_train=10, **{**PAPER, "r_inner": 0.2, "r_outer": 0.5})


def test_unknown_type_names():
    with pytest.raises(ValueError, match=r"type\(s\) \[2\] have no name"):
        ReferenceMap.from_files(FILES[0], n_train=10, **{**PAPER, "type_names": "1=Ni"})


def _cluster(n, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(n, 3)) * 1.2
    return Atoms("Ar" * n, positions=pos)


def test_n_train_larger_than_available_takes_all_with_a_warning():
    with pytest.warns(UserWarning, match="only 5 centre atoms; taking all"):
        r = ReferenceMap.build([_cluster(5)], r_inner=1.5, r_outer=3.0, sigma=0.5, n_train=50, epsilon=2.0)
    assert r.n_train == 5 and r.provenance["selection"]["n_available"] == 5
    assert r.species == ("Ar",) and r.centers is None


def test_fewer_than_two_training_environments():
    atoms = _cluster(4)
    atoms.symbols[1:] = "Kr"
    with pytest.raises(ValueError, match="at least 2"), pytest.warns(UserWarning, match="only 1 centre atoms"):
        ReferenceMap.build([atoms], r_inner=1.5, r_outer=3.0, sigma=0.5, centers="Ar", n_train=5)


def test_environments_sharing_no_species_are_reported_as_such():
    """Environments in groups that share no weight channel (silica's Si- and O-centred first
    shells, vector species) make a diffusion map disconnected at any epsilon: the build says
    which groups and how to fix it (one reference per centre species), beside the generic warning."""
    import warnings

    from giip_plugin.environments import EnvironmentSet
    from giip_plugin.reference.refmap import channel_groups

    rng = np.random.default_rng(3)

    def shell(n, channel):
        u = rng.normal(size=(n, 3))
        w = np.zeros((n, 2))
        w[:, channel] = 1.0
        return u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(1.5, 1.7, (n, 1)), w

    envs = [shell(4, 1) for _ in range(6)] + [shell(2, 0) for _ in range(6)]
    training = EnvironmentSet.from_list(envs)
    np.testing.assert_array_equal(channel_groups(training), [0] * 6 + [1] * 6)
    # one environment with both species links the groups
    mixed = EnvironmentSet.from_list(envs + [(np.eye(3)[:2] * 1.6, np.eye(2))])
    assert set(channel_groups(mixed).tolist()) == {0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ReferenceMap.build(training, sigma=0.6, n_classes=2, epsilon=0.05, n_eigenpairs=4, group="O3")
    text = " ".join(str(w.message) for w in caught)
    assert "2 groups that share no neighbour species" in text and "--centers" in text
    assert "6 environments with neighbours channel 1" in text
