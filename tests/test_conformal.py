"""The conformal autoencoder of giip interpret: on synthetic data built from known latent factors it
finds the one hidden factor the named quantities leave out; deterministic with a seed; clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from giip_plugin.cli import main
from giip_plugin.interpret.conformal import MIN_ATOMS, conformal_scan, fit_conformal

DATA = Path(__file__).parent / "data" / "ninb"


def _synthetic(n=700, seed=0):
    """Coordinates that are smooth functions of two named quantities a, b and one hidden c."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(-1, 1, (3, n))
    d = np.column_stack([a + 0.3 * c, np.sin(2 * b) + 0.2 * a, c - 0.5 * a * b, np.cos(a + c),
                         0.5 * b + 0.5 * c ** 2, a * b])
    return d, a, b, c


@pytest.mark.slow
def test_one_hidden_factor_is_found_and_named_factors_are_not_in_the_remainder():
    d, a, b, c = _synthetic()
    scan = conformal_scan(d, np.column_stack([a, b]), ["a", "b"], max_rest=2, seed=0, epochs=200)
    e = scan.errors
    assert e[0] > 0.1 and e[1] < 0.02  # the named quantities alone do not reconstruct the map, plus one does
    assert scan.n_unexplained == 1
    assert min(scan.chosen.r2.values()) > 0.98  # p_hat predicts the named quantities
    r2 = scan.remainder_r2({"a": a, "b": b, "c": c})["rest1"]
    assert r2["c"] > 0.8 and r2["a"] < 0.15 and r2["b"] < 0.15


def test_determinism_with_a_seed_and_no_global_random_state_changed():
    import torch

    d, a, b, _ = _synthetic(n=200)
    p = np.column_stack([a, b])
    state = torch.random.get_rng_state()
    r1 = fit_conformal(d, p, ["a", "b"], 1, seed=3, epochs=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    r2 = fit_conformal(d, p, ["a", "b"], 1, seed=3, epochs=5)
    assert r1.reconstruction_error == r2.reconstruction_error
    np.testing.assert_array_equal(r1.remainder, r2.remainder)
    r3 = fit_conformal(d, p, ["a", "b"], 1, seed=4, epochs=5)
    assert not np.array_equal(r1.remainder, r3.remainder)
    assert r1.remainder.shape == (200, 1) and r1.p_hat.shape == (200, 2)


def test_clear_errors():
    d, a, b, _ = _synthetic(n=MIN_ATOMS - 1)
    with pytest.raises(ValueError, match=f"at least {MIN_ATOMS} analysed atoms"):
        fit_conformal(d, np.column_stack([a, b]), ["a", "b"], 1)
    d, a, b, _ = _synthetic(n=100)
    with pytest.raises(ValueError, match="2 names for 1 quantities"):
        fit_conformal(d, a[:, None], ["a", "b"], 1)
    with pytest.raises(ValueError, match="one row per atom"):
        fit_conformal(d, np.column_stack([a, b])[:50], ["a", "b"], 1)


def test_command_line(ref_path, tmp_path, capsys):
    common = ["interpret", str(ref_path), str(DATA / "quench10M.dump"), "--type-names", "1=Ni,2=Nb",
              "--max-atoms", "120", "--no-voronoi", "--no-progress"]
    assert main([*common, "--conformal", "frac_Cu"]) == 1
    assert "--conformal: unknown quantities ['frac_Cu']" in capsys.readouterr().err
    out, js = tmp_path / "rest.dump", tmp_path / "c.json"
    assert main([*common, "--conformal", "frac_Ni", "--max-rest", "1", "--epochs", "15", "--json", str(js),
                 "--conformal-output", str(out), "--figures", str(tmp_path / "figs")]) == 0
    text = capsys.readouterr().out
    assert "unexplained parameters beyond the named quantities" in text
    res = json.loads(js.read_text())["conformal"]
    assert set(res["reconstruction_error"]) == {"0", "1"} and res["n_unexplained"] in (0, 1)
    assert (tmp_path / "figs" / "conformal_error.png").is_file()
    from giip_plugin.io import iter_frames

    f = next(iter_frames(out))
    if res["n_unexplained"]:
        rest = f.atoms.arrays["d2_giip_rest[1]"]
        assert np.sum(np.isfinite(rest)) == 120  # the analysed atoms; NaN elsewhere
