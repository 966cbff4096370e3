"""``giip build`` and ``giip info``: a NiNb build with the paper's parameters, resume after an
interruption, a 2D LAMMPS dump with a per-atom energy column (selection by column, Dask scheduler),
and the errors of bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from giip_plugin.cli import main
from giip_plugin.reference import ReferenceMap, training

NINB_FILE = Path(__file__).parent / "data" / "ninb" / "quench100K.dump"
PAPER_ARGS = [str(NINB_FILE), "--type-names", "1=Ni,2=Nb", "--centers", "Ni", "--species", "sign",
              "--r-inner", "3", "--r-outer", "4", "--sigma", "1", "--group", "O3"]
ARGS = PAPER_ARGS + ["--n-train", "18", "--epsilon", "1.5", "--seed", "5", "--block-size", "6", "--no-progress"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ref.h5"
    assert main(["build", *ARGS, "-o", str(out)]) == 0
    return out


def _contents(path):
    """Every dataset and the non-provenance attributes of a reference file."""
    out = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        for g in ("parameters", "classes", "diffusion"):
            for k, v in f[g].attrs.items():
                out[f"{g}@{k}"] = v
        out["checksum"] = f.attrs["checksum"]
    return out


def test_build_and_info(built, capsys):
    assert not Path(str(built) + ".partial").exists()  # the checkpoint is removed after success
    ref = ReferenceMap.load(built)
    assert ref.n_train == 18 and ref.epsilon == 1.5 and ref.group == "O3"
    assert ref.species == ("Ni", "Nb") and ref.encoding.mode == "sign" and ref.encoding.positive == "Ni"
    assert ref.provenance["command_line"].startswith("giip build ") and "--n-train 18" in ref.provenance["command_line"]
    assert main(["info", str(built)]) == 0
    text = capsys.readouterr().out
    for s in ("r_inner = 3", "r_outer = 4", "sigma           1", "sign (Ni, Nb, +1 = Ni)", "centres         Ni",
              "O3 / 3D", "epsilon         1.5 (given)", "18 (18 requested", "eigenvalue", "r^2", "size  diameter",
              "quench100K.dump"):
        assert s in text, s
    # the selected coordinates are marked in the table
    rows = [l.split() for l in text.splitlines() if l.strip().endswith("*")]
    assert [int(r[0]) for r in rows] == (ref.selected + 1).tolist()
    assert main(["info", "--json", str(built)]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["parameters"]["r_outer"] == 4.0 and js["training"]["n_train"] == 18
    assert sum(js["classes"]["sizes"]) == 18
    assert [r["selected"] for r in js["diffusion"]["table"]].count(True) == ref.n_coords


def test_interrupted_build_resumes_to_the_same_file(built, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ref.h5"
    real = training._compute_block
    calls = []

    def interrupting(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "_compute_block", interrupting)
    assert main(["build", *ARGS, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert "2 of 6 blocks" in err and "rerun the same command to resume" in err
    partial = Path(str(out) + ".partial")
    assert len(list(partial.glob("b*.npy"))) == 2 and not out.exists()
    calls.clear()
    monkeypatch.setattr(training, "_compute_block", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert main(["build", *ARGS, "-o", str(out)]) == 0
    assert "resuming" in capsys.readouterr().err
    assert len(calls) == 4 and not partial.exists()
    a, b = _contents(built), _contents(out)
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k


def test_numeric_type_as_centre_and_auto_epsilon(tmp_path, capsys):
    out = tmp_path / "auto.h5"
    args = [a if a != "Ni" else "1" for a in PAPER_ARGS]  # --centers 1 means type 1 = Ni
    assert main(["build", *args, "--n-train", "8", "--no-progress", "-o", str(out)]) == 0
    assert "chosen automatically" in capsys.readouterr().err
    ref = ReferenceMap.load(out)
    assert ref.centers == ("Ni",) and ref.diffusion.epsilon_info["method"] == "knn_median"
    assert main(["info", str(out)]) == 0
    assert "(auto: knn_median" in capsys.readouterr().out


def test_checkpoint_of_other_inputs_is_not_reused(tmp_path, capsys):
    out = tmp_path / "ref.h5"
    partial = Path(str(out) + ".partial")
    partial.mkdir()
    (partial / "manifest.json").write_text(json.dumps({"format": "giip-distance-checkpoint", "hash": "0" * 64}))
    assert main(["build", *ARGS, "-o", str(out)]) == 1
    assert "different inputs" in capsys.readouterr().err


def _write_2d_dump(path, n_side=8, seed=0):
    """A triangular 2D lattice with noise and vacancies, as a LAMMPS dump with an energy column."""
    rng = np.random.default_rng(seed)
    a = 1.1
    ij = np.array([(i, j) for j in range(n_side) for i in range(n_side)], float)
    xy = np.c_[(ij[:, 0] + 0.5 * (ij[:, 1] % 2)) * a, ij[:, 1] * a * np.sqrt(3) / 2]
    xy += rng.normal(0, 0.05, xy.shape)
    keep = rng.random(len(xy)) > 0.05
    xy = xy[keep]
    n = len(xy)
    Lx, Ly = n_side * a, n_side * a * np.sqrt(3) / 2
    pe = rng.normal(-3.0, 0.2, n)
    lines = ["ITEM: TIMESTEP", "100", "ITEM: NUMBER OF ATOMS", str(n), "ITEM: BOX BOUNDS pp pp pp",
             f"0 {Lx}", f"0 {Ly}", "-0.5 0.5", "ITEM: ATOMS id type x y z c_pe"]
    ids = rng.permutation(n) + 1
    for k in range(n):
        lines.append(f"{ids[k]} 1 {xy[k, 0] % Lx:.6f} {xy[k, 1] % Ly:.6f} 0.0 {pe[k]:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return ids, pe


def test_2d_dump_select_by_energy(tmp_path):
    dump = tmp_path / "lj2d.dump"
    ids, pe = _write_2d_dump(dump)
    out = tmp_path / "lj2d.h5"
    assert main(["build", str(dump), "-o", str(out), "--r-inner", "1.3", "--r-outer", "1.75", "--sigma", "0.5",
                 "--select-by", "c_pe", "--select-lowest", "2", "--select-highest", "4", "--classes", "2",
                 "--no-progress"]) == 0
    ref = ReferenceMap.load(out)
    assert ref.dim == 2 and ref.group == "O2" and ref.n_train == 6
    order = np.argsort(pe)
    assert sorted(ref.training_provenance["atom_index"].tolist()) == sorted(order[:2].tolist() + order[-4:].tolist())
    assert np.array_equal(ref.training_provenance["atom_id"], ids[ref.training_provenance["atom_index"]])
    assert ref.provenance["selection"]["column"] == "c_pe" and ref.n_classes == 2
    assert 4 < ref.training.counts.mean() <= 6


@pytest.mark.slow
def test_2d_build_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    dump = tmp_path / "lj2d.dump"
    _write_2d_dump(dump, seed=1)
    common = ["--r-inner", "1.3", "--r-outer", "1.75", "--sigma", "0.5", "--n-train", "14", "--dim", "2",
              "--block-size", "5", "--no-progress"]
    assert main(["build", str(dump), "-o", str(tmp_path / "local.h5"), *common]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        assert main(["build", str(dump), "-o", str(tmp_path / "dask.h5"), *common, "--scheduler", c.scheduler_address]) == 0
    a, b = ReferenceMap.load(tmp_path / "local.h5"), ReferenceMap.load(tmp_path / "dask.h5")
    assert np.allclose(a.distances, b.distances, rtol=0, atol=1e-12)
    assert np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--centers", "Cu"], "no atoms of the centre species ['Cu']"),
        (["--type-names", "1=Ni"], "have no name"),
        (["--epsilon", "big"], "--epsilon must be 'auto' or a number"),
        (["--n-coords", "0"], "--n-coords must be positive"),
        (["--select-lowest", "3"], "need --select-by"),
        (["--r-inner", "0.1", "--r-outer", "0.3"], "wrong units"),
        (["--positive", "Cu"], "positive species 'Cu'"),
    ],
)
def test_build_errors(tmp_path, capsys, extra, message):
    args = ["build", *PAPER_ARGS, "--n-train", "5", "--no-progress", "-o", str(tmp_path / "x.h5"), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_species_sigma_option(tmp_path, capsys):
    out = tmp_path / "ss.h5"
    assert main(["build", *PAPER_ARGS, "--n-train", "6", "--epsilon", "1.5", "--no-progress",
                 "--species-sigma", "Ni=0.9,2=1.2", "-o", str(out)]) == 0
    ref = ReferenceMap.load(out)
    assert ref.environments.species_sigma == {"Ni": 0.9, "Nb": 1.2}
    assert ref.training.sigmas is not None and set(np.unique(ref.training.sigmas)) <= {0.9, 1.2}
    assert main(["info", str(out)]) == 0
    assert "Ni = 0.9, Nb = 1.2" in capsys.readouterr().out
    for bad, message in (("Ni", "is not NAME=SIGMA"), ("Ni=-1", "must be positive"), ("Ni=x", "must be a number")):
        assert main(["build", *PAPER_ARGS, "--n-train", "5", "--no-progress", "--species-sigma", bad,
                     "-o", str(tmp_path / "bad.h5")]) == 1
        assert message in capsys.readouterr().err


def test_missing_input_and_bad_reference(tmp_path, capsys):
    assert main(["build", str(tmp_path / "none.dump"), "-o", str(tmp_path / "x.h5"), "--r-inner", "3",
                 "--r-outer", "4", "--sigma", "1"]) == 1
    assert "not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.h5"
    bogus.write_text("not hdf5")
    assert main(["info", str(bogus)]) == 1
    assert "is not a GIIP reference file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", *PAPER_ARGS, "-o", str(tmp_path / "x.h5"), "--classes", "3", "--max-diameter", "1"])


def test_build_exact_runs_the_pytorch_reference_search(built, tmp_path, monkeypatch):
    """giip build --exact: the training matrix by the PyTorch implementation of the search (no
    compiled exact search; the calibration of the default path runs the coarse search it will use),
    the same training distances to 1e-9."""
    from giip_plugin.kernels import fused
    from giip_plugin.reference import ReferenceMap

    calls = []
    real = fused.search_pairs
    monkeypatch.setattr(fused, "search_pairs", lambda *a, **k: calls.append(k["exact"]) or real(*a, **k))
    out = tmp_path / "exact.h5"
    assert main(["build", *ARGS, "--exact", "-o", str(out)]) == 0
    assert True not in calls
    np.testing.assert_allclose(ReferenceMap.load(out).distances, ReferenceMap.load(built).distances, atol=1e-9)


def test_apply_fast_is_accepted_with_a_warning(built, tmp_path, capsys):
    out = tmp_path / "a.dump"
    assert main(["apply", str(built), str(NINB_FILE), "-o", str(out), "--fast", "--no-progress"]) == 0
    assert "--fast is now the default" in capsys.readouterr().err
