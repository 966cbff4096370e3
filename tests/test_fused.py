"""The fused CPU kernel of the fast path (giip_plugin/kernels/fused.py) against the PyTorch coarse
search it replaces and against the exact distances."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from giip_plugin.io import iter_frames
from giip_plugin.kernels import DistanceEngine, fused
from giip_plugin.reference import ReferenceMap

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C compiler for the fused kernel")

DATA = Path(__file__).parent / "data" / "ninb"
TYPES = "1=Ni,2=Nb"


@pytest.fixture(scope="module")
def small_case():
    ref = ReferenceMap.from_files(
        [str(DATA / "quench100K.dump")], r_inner=3.0, r_outer=4.0, sigma=1.0, encoding="sign",
        centers=["Ni"], type_names=TYPES, n_train=48, epsilon=1.5, n_classes=3, n_coords=2, progress=False,
    )
    atoms = next(iter_frames(str(DATA / "quench1M.dump"), type_names=TYPES)).atoms
    ni = np.flatnonzero(atoms.arrays["species"] == "Ni")
    envs = ref.compute_environments(atoms, indices=np.sort(np.random.default_rng(3).choice(ni, 21, replace=False)))
    return ref, envs, ref.distance_rows(envs, exact=True)


def _coarse_engine(ref, envs, group=None, L=6, candidates=1, window=0.0, compiled=None):
    settings = replace(ref.search_settings, candidates=candidates, max_iter=2)
    return DistanceEngine(envs, ref.training, sigma=ref.sigma, group=group or ref.group, settings=settings, l_max=L,
                          grid_pool=8, grid_window=window, compiled=compiled)


def _torch_coarse(ref, envs, L=6):
    eng = _coarse_engine(ref, envs, L=L)
    nA, nB = len(envs), ref.n_train
    ia, ib = np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)
    return eng, eng.distances(ia, ib).reshape(nA, nB)


def _assert_nearest_refined(rows, exact):
    """The fast rows' nearest distance: never below the exact one, and equal to it where the exact
    nearest was among the coarse nearest refined (all but about 1% of NiNb atoms; here at most 1
    of 21 atoms)."""
    near, true = rows.min(1), exact.min(1)
    assert np.all(near >= true - 1e-9)
    assert np.sum(np.abs(near - true) > 1e-9) <= 1


@pytest.mark.parametrize("variant", [1, 2])  # the 3D search's exp and the 2D search's
def test_vectorisable_exp_is_exact_to_rounding(variant):
    x = np.concatenate([-np.linspace(0.0, 200.0, 20001), -np.logspace(-12, 0, 50)])
    y = np.array([fused.exp_neg(v, variant) for v in x[::50]] + [fused.exp_neg(v, variant) for v in x[-50:]])
    ref = np.exp(np.concatenate([x[::50], x[-50:]]))
    np.testing.assert_allclose(y, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("L", [5, 6, 7])  # the generic grid, and the two specialised band limits
def test_fused_matches_the_pytorch_coarse_search(small_case, L):
    """Same algorithm (best grid point of each parity, 2 Newton steps): upper bounds of the exact
    distances, equal to the PyTorch coarse distances for nearly every pair (rows of 21 atoms, 48
    references; 21 rows make two calls of 16, and 48 references three lanes blocks)."""
    ref, envs, exact = small_case
    eng, torch_rows = _torch_coarse(ref, envs, L=L)
    assert fused.applies(eng)
    rows = fused.coarse_distance_rows(eng)
    assert rows.shape == exact.shape
    assert np.all(rows >= exact - 1e-9)
    if L >= 6:  # (band limit 5 misses more basins, in both implementations)
        assert np.mean(rows - exact < 1e-3) > 0.8 and np.mean(rows - exact) < 0.02
    assert np.mean(np.abs(rows - torch_rows) < 1e-6) > 0.95
    # one worker gives the same numbers
    one = fused.coarse_distance_rows(eng, workers=1)
    np.testing.assert_array_equal(one, rows)


def test_fused_proper_rotations_only(small_case):
    """SO(3): only proper rotations, so the distances are never below the O(3) ones."""
    ref, envs, exact = small_case
    so3 = fused.coarse_distance_rows(_coarse_engine(ref, envs, "SO3"))
    o3 = fused.coarse_distance_rows(_coarse_engine(ref, envs, "O3"))
    assert np.all(so3 >= o3 - 1e-12) and np.any(so3 > o3 + 1e-3)


def test_default_path_uses_the_compiled_kernel(small_case, monkeypatch):
    """The default path runs the compiled coarse search; GIIP_NO_FUSED=1 gives the PyTorch path;
    both refine the nearest references exactly."""
    ref, envs, exact = small_case
    calls = []
    real = fused.coarse_distance_rows
    monkeypatch.setattr(fused, "coarse_distance_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = ref.distance_rows(envs)
    assert calls
    monkeypatch.setenv("GIIP_NO_FUSED", "1")
    torch_rows = ref.distance_rows(envs)
    assert len(calls) == 1
    _assert_nearest_refined(rows, exact)
    _assert_nearest_refined(torch_rows, exact)
    assert np.mean(np.abs(rows - torch_rows) < 1e-6) > 0.95


def test_fused_rejects_what_it_does_not_cover(small_case):
    ref, envs, _ = small_case
    with pytest.raises(ValueError, match="O3 and SO3"):
        fused.coarse_distance_rows(DistanceEngine(envs, ref.training, sigma=ref.sigma, group=None))


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The kernel built into an empty cache directory; the process's library restored afterwards."""
    monkeypatch.setenv("GIIP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GIIP_NO_INSTALLED_KERNEL", "1")  # the first-use build, not the one of pip install
    monkeypatch.setattr(fused, "_FAILURE", [])
    monkeypatch.setattr(fused, "_WARNED", [])
    fused.library.cache_clear()
    yield tmp_path
    fused.library.cache_clear()


def test_the_kernel_is_compiled_once_into_the_cache(fresh_build):
    lib = fused.library()
    built = sorted(fresh_build.glob("fused_kernel-*"))
    assert len(built) == 1 and lib.giip_exp_neg(-1.0) == pytest.approx(np.exp(-1.0), rel=1e-14)
    stamp = built[0].stat().st_mtime_ns
    fused.library.cache_clear()
    fused.library()  # loads the cached file, no second build
    assert sorted(fresh_build.glob("fused_kernel-*")) == built and built[0].stat().st_mtime_ns == stamp
    assert not list(fresh_build.glob("*.so.tmp*")) and len(list(fresh_build.iterdir())) == 1


def test_loading_the_kernel_keeps_denormals(fresh_build):
    """The library is linked without -ffast-math, whose start-up code would flush denormal numbers
    to zero in the whole process."""
    fused.library()
    tiny = np.array([1e-310])
    assert (tiny * 1.0)[0] == 1e-310 and float(np.float64(3e-320) * 1.0) > 0


def test_without_a_compiler_the_fast_path_keeps_pytorch(fresh_build, monkeypatch, small_case):
    """No C compiler: one warning naming the fix, and the fast path still gives the right nearest
    references (on the PyTorch search)."""
    ref, envs, exact = small_case
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="C compiler"):
        eng = _coarse_engine(ref, envs)
    assert not eng.compiled and not fused.applies(eng)
    with pytest.raises(RuntimeError, match="install one"):
        fused.library()
    rows = ref.distance_rows(envs)
    _assert_nearest_refined(rows, exact)
    assert not list(fresh_build.iterdir())


def test_a_failing_compiler_is_reported(fresh_build, monkeypatch):
    fake = fresh_build / "cc"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\necho 'error: no such thing' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(RuntimeError, match="no such thing"):
        fused.library()
    assert sorted(p.name for p in fresh_build.iterdir()) == ["cc"]


def test_an_unwritable_cache_is_reported(fresh_build, monkeypatch):
    blocker = fresh_build / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GIIP_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(RuntimeError, match="GIIP_CACHE_DIR"):
        fused.library()


def test_fused_with_a_partial_block_of_references(small_case):
    """37 references: two full blocks of LANES and a partial one (padded lanes must not leak)."""
    ref, envs, exact = small_case
    part = ref.training.subset(np.arange(37))
    settings = replace(ref.search_settings, candidates=1, max_iter=2)
    eng = DistanceEngine(envs, part, sigma=ref.sigma, group=ref.group, settings=settings, l_max=6, grid_pool=8)
    nA = len(envs)
    ia, ib = np.repeat(np.arange(nA), 37), np.tile(np.arange(37), nA)
    torch_rows = eng.distances(ia, ib).reshape(nA, 37)
    rows = fused.coarse_distance_rows(eng)
    assert rows.shape == (nA, 37) and np.all(np.isfinite(rows))
    assert np.all(rows >= exact[:, :37] - 1e-9)
    assert np.mean(np.abs(rows - torch_rows) < 1e-6) > 0.95


@pytest.mark.slow
def test_pip_install_builds_the_kernel(tmp_path):
    """A wheel built from the project holds the compiled search, and an installation of it loads
    that library (its identity matches); without a compiler the wheel still builds, with a message,
    and the kernel is then compiled at first use."""
    import subprocess
    import sys
    import zipfile

    import shutil

    root = Path(__file__).resolve().parents[1]

    def wheel(dest, env=None, quiet="-q"):
        src = dest.with_name(dest.name + "-src")  # a clean copy: no build folder of an earlier build
        shutil.copytree(root, src, ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "_search_kernel*",
                                                                  "__pycache__", ".git", "out", "tests"))
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", quiet, "-w",
                              str(dest), str(src)], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr
        (whl,) = dest.glob("giip_plugin-*.whl")
        return whl, res

    whl, _ = wheel(tmp_path / "w1")
    names = zipfile.ZipFile(whl).namelist()
    assert any(n.startswith("giip_plugin/kernels/_search_kernel") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
                   check=True, capture_output=True, timeout=600)
    code = ("from giip_plugin.kernels import fused; p = fused.installed_library(); "
            "assert p is not None and str(p).startswith(%r), p; assert fused.library()._name == str(p); print('ok')"
            % str(target))
    env = dict(os.environ, PYTHONPATH=str(target), GIIP_CACHE_DIR=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    assert not (tmp_path / "cache").exists()  # nothing compiled at first use
    # no compiler at install time: the wheel builds without the library
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), LDSHARED=str(tmp_path / "no-such-cc") + " -shared")
    whl, res = wheel(tmp_path / "w2", env=env, quiet="-v")
    assert not any(n.startswith("giip_plugin/kernels/_search_kernel") for n in zipfile.ZipFile(whl).namelist())
    assert "compiled at first use" in res.stderr + res.stdout


def _all_pairs(eng):
    nA, nB = len(eng.A), len(eng.B)
    return np.repeat(np.arange(nA), nB), np.tile(np.arange(nB), nA)


def test_grid_window_drops_starts_only(small_case):
    """The window leaves unpolished the starts far below a pair's best grid value: the other
    starts run as before, so every distance is at least the one with every start polished (and
    an upper bound of the exact one); most pairs keep their distance; a window that excludes
    nothing gives the same numbers; the compiled kernel and PyTorch apply the same rule; the
    result does not depend on the number of workers."""
    ref, envs, exact = small_case
    full = fused.coarse_distance_rows(_coarse_engine(ref, envs, L=7, candidates=2))
    eng = _coarse_engine(ref, envs, L=7, candidates=2, window=0.04)
    win = fused.coarse_distance_rows(eng)
    assert np.all(win >= full - 1e-12) and np.all(win >= exact - 1e-9)
    assert np.mean(np.abs(win - full) < 1e-9) > 0.9
    wide = fused.coarse_distance_rows(_coarse_engine(ref, envs, L=7, candidates=2, window=1e6))
    np.testing.assert_array_equal(wide, full)
    np.testing.assert_array_equal(fused.coarse_distance_rows(eng, workers=1), win)
    torch_eng = _coarse_engine(ref, envs, L=7, candidates=2, window=0.04, compiled=False)
    torch_rows = torch_eng.distances(*_all_pairs(torch_eng)).reshape(win.shape)
    assert np.mean(np.abs(win - torch_rows) < 1e-6) > 0.95


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_grid_window_must_be_a_finite_non_negative_number(small_case, bad):
    ref, envs, _ = small_case
    with pytest.raises(ValueError, match="grid_window"):
        _coarse_engine(ref, envs, window=bad)
