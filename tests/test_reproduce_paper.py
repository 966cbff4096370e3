"""The paper's reproduction script at a scale CI affords (benchmarks/reproduce_paper.py, NiNb part):
the whole pipeline runs and the effects have the paper's sign, not its numbers."""
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
    for name in ("ninb_eigenvalues_r2.png", "ninb_eigenvalues_r2_paper.png", "ninb_density_slow_minus_fast.png"):
        assert (work / "figures" / name).stat().st_size > 1000, name
