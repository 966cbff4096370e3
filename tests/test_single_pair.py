"""Single pairs without PyTorch (kernels/pairs.py, kernels/problem.py, kernels/xp.py): the same
special functions on numpy arrays and on tensors, the compiled search of one pair in a process
that never imports PyTorch, and the disk cache of the radial basis."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

import giip_plugin as gp
from giip_plugin.environments import EnvironmentSet
from giip_plugin.kernels import DistanceEngine
from giip_plugin.kernels import radial
from giip_plugin.kernels.overlap import self_overlap
from giip_plugin.kernels.radial import RadialBasis, harmonic_coefficients
from giip_plugin.kernels.special import scaled_bessel_in, scaled_spherical_in, spherical_harmonics

rng = np.random.default_rng(11)


def _shell(n, dim=3, signs=True):
    u = rng.normal(size=(n, dim))
    r = rng.uniform(2.2, 3.6, (n, 1))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * r, (rng.choice([-1.0, 1.0], n) if signs else np.ones(n))


def test_special_functions_agree_on_numpy_and_torch():
    u = rng.normal(size=(50, 3))
    u[0] = 0.0  # the origin
    u[1] = [0.0, 0.0, 2.0]  # on the axis
    Yn, Yt = spherical_harmonics(u, 12), spherical_harmonics(torch.from_numpy(u), 12).numpy()
    assert isinstance(Yn, np.ndarray) and Yn.dtype == np.complex128
    assert np.abs(Yn - Yt).max() < 1e-13
    k = rng.uniform(0, 30, 200)
    k[0] = 0.0
    for f in (scaled_spherical_in, scaled_bessel_in):
        assert np.abs(f(k, 20) - f(torch.from_numpy(k), 20).numpy()).max() < 1e-14
    p = rng.normal(size=(4, 9, 3)) * 1.5
    w = rng.choice([-1.0, 1.0], size=(4, 9, 2))
    s = rng.uniform(0.5, 1.0, (4, 9))
    t = torch.from_numpy
    for sig in (None, s):
        a = self_overlap(p, w, sig, 0.8)
        b = self_overlap(t(p), t(w), None if sig is None else t(sig), 0.8).numpy()
        assert np.abs(a - b).max() < 1e-12
    basis = RadialBasis.get(0.5, 4.0, 10)
    cn = harmonic_coefficients(p, w, basis)
    ct = harmonic_coefficients(t(p), t(w), basis)
    for x, y in zip(cn, ct):
        assert isinstance(x, np.ndarray) and np.abs(x - y.numpy()).max() < 1e-12


CHILD = r"""
import json, sys
import numpy as np
import giip_plugin as gp
cases = json.loads(sys.stdin.read())
out = []
for c in cases:
    a, wa, b, wb = (np.array(c[k]) for k in ("a", "wa", "b", "wb"))
    d, R = gp.distance(a, wa, b, wb, sigma=c["sigma"], group=c["group"], return_rotation=True)
    out.append({"d": d, "R": R.tolist(), "ip": gp.inner_product(a, wa, b, wb, sigma=c["sigma"])})
print(json.dumps({"torch": "torch" in sys.modules, "results": out}))
"""


def test_a_fresh_process_computes_single_pairs_without_pytorch(tmp_path):
    cases = []
    for dim, group, sigma in ((3, "O3", 1.0), (3, "SO3", 0.7), (2, "O2", 0.7), (2, "SO2", 1.0)):
        (a, wa), (b, wb) = _shell(8, dim), _shell(9, dim)
        cases.append({"a": a.tolist(), "wa": wa.tolist(), "b": b.tolist(), "wb": wb.tolist(), "sigma": sigma,
                      "group": group})
    env = dict(os.environ, GIIP_CACHE_DIR=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cases), capture_output=True, text=True,
                         env=env, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["torch"] is False, "a single pair that the compiled search covers must not load PyTorch"
    for c, r in zip(cases, got["results"]):
        A = EnvironmentSet.from_list([(np.array(c["a"]), np.array(c["wa"]))])
        B = EnvironmentSet.from_list([(np.array(c["b"]), np.array(c["wb"]))])
        ref = DistanceEngine(A, B, sigma=c["sigma"], group=c["group"], device="cpu", compiled=False)
        expected = ref.distances([0], [0])[0]
        assert r["d"] <= expected + 1e-9  # both are values at actual rotations
        assert abs(r["d"] - expected) < 1e-9
        R = np.array(r["R"])
        assert np.allclose(R @ R.T, np.eye(len(R)), atol=1e-12)
        if c["group"].startswith("SO"):
            assert np.linalg.det(R) > 0
        # the distance is the one of the returned rotation
        rotated = np.array(c["b"]) @ R.T
        at_R = gp.distance(np.array(c["a"]), np.array(c["wa"]), rotated, np.array(c["wb"]), sigma=c["sigma"], group=None)
        assert abs(at_R - r["d"]) < 1e-9
        assert abs(r["ip"] - gp.inner_product(np.array(c["a"]), np.array(c["wa"]), np.array(c["b"]), np.array(c["wb"]),
                                              sigma=c["sigma"])) < 1e-12


def test_settings_outside_the_compiled_search_use_the_engine():
    (a, wa), (b, wb) = _shell(7), _shell(8)
    sa, sb = rng.uniform(0.8, 1.2, 7), rng.uniform(0.8, 1.2, 8)
    # per-atom sigma, a fixed orientation, single precision: the PyTorch engine, same answers as before
    d = gp.distance(a, wa, b, wb, sigma=1.0, sigmas_a=sa, sigmas_b=sb)
    A = EnvironmentSet.from_list([(a, wa, sa)])
    B = EnvironmentSet.from_list([(b, wb, sb)])
    assert abs(d - DistanceEngine(A, B, sigma=1.0, device="cpu").distances([0], [0])[0]) < 1e-12
    fixed = gp.distance(a, wa, b, wb, sigma=1.0, group=None)
    ip = gp.inner_product(a, wa, b, wb, sigma=1.0)
    aa, bb = gp.inner_product(a, wa, a, wa, sigma=1.0), gp.inner_product(b, wb, b, wb, sigma=1.0)
    assert abs(fixed - np.sqrt(aa + bb - 2 * ip)) < 1e-9
    d32 = gp.distance(a, wa, b, wb, sigma=1.0, dtype="float32")
    assert abs(d32 - gp.distance(a, wa, b, wb, sigma=1.0)) < 1e-3


def test_the_radial_basis_is_kept_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("GIIP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(radial, "_CACHE", {})
    computed = RadialBasis.get(0.5, 3.9, 11)
    files = list(tmp_path.glob("radial_basis_*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(radial, "_CACHE", {})
    loaded = RadialBasis.get(0.5, 3.9, 11)
    assert loaded is not computed
    assert np.array_equal(loaded.table, computed.table) and loaded.sizes == computed.sizes
    assert (loaded.kappa, loaded.r_max, loaded.L) == (computed.kappa, computed.r_max, computed.L)
    # a damaged file is recomputed (and rewritten), never used
    files[0].write_bytes(b"not a basis")
    monkeypatch.setattr(radial, "_CACHE", {})
    again = RadialBasis.get(0.5, 3.9, 11)
    assert np.array_equal(again.table, computed.table)
    # a file of another key under this key's name is not used
    np.savez(files[0], key=np.array([9.0, 9.0, 9.0, 9.0]), table=np.zeros((4, 12, 3)), sizes=np.ones(12))
    monkeypatch.setattr(radial, "_CACHE", {})
    assert np.array_equal(RadialBasis.get(0.5, 3.9, 11).table, computed.table)


def test_an_unwritable_cache_still_gives_the_basis(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("GIIP_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(radial, "_CACHE", {})
    basis = RadialBasis.get(0.5, 3.9, 11)
    assert basis.table.shape[1] == 12
    (a, wa), (b, wb) = _shell(6), _shell(6)
    assert np.isfinite(gp.distance(a, wa, b, wb, sigma=1.0))
