"""The search as a GPU runs it (issue 22): the PyTorch implementation with the GPU's chunking,
checked on the CPU (the same code with ``device="cpu"``), and on CUDA where PyTorch sees a GPU.

On a GPU the engine takes chunks sized from the free memory (``gpu_chunk_pairs``), halves a chunk
that runs out of memory, gathers the grid's candidate rotations on the device, and the reference
map maps larger batches of rows; ``benchmarks/gpu_check.sh`` runs the whole check (its dry run
is tested here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from giip_plugin.kernels import DistanceEngine
from giip_plugin.kernels import engine as engine_mod
from giip_plugin.kernels.search import SO3Grid

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def test_gpu_chunk_size_follows_memory_and_grid():
    f = engine_mod.gpu_chunk_pairs
    big = f(80e9, 13, 2, 6, 400)
    assert 256 <= f(1e6, 13, 2, 6, 400) <= big <= 1 << 17
    assert f(1e6, 13, 2, 6, 400) == 256  # never below the floor
    assert f(1e15, 7, 2, 2, 400) == 1 << 17  # nor above the cap
    assert f(8e9, 7, 2, 2, 400) > f(8e9, 13, 2, 6, 400)  # the coarse search fits more pairs
    assert f(8e9, 13, 1, 6, 400) > f(8e9, 13, 2, 6, 400)  # one parity: half the grid and starts
    # the estimate covers the grid of a NiNb exact search: about 1.3 MB a pair
    assert 1.0e6 < 0.25 * 8e9 / f(8e9, 13, 2, 6, 400) < 2.0e6


def test_grid_rotations_gathered_on_the_device_are_the_grid_angles():
    grid = SO3Grid(5, "cpu", torch.float64)
    table = grid.rotation_table()
    N, nb = grid.N, grid.n_beta
    flat = np.array([0, 7, N * nb + 3, N * N * nb - 1, 123])
    ai, rem = np.divmod(flat, N * nb)
    gi, bi = np.divmod(rem, nb)
    assert table.shape == (N * N * nb, 3, 3) and table.dtype == torch.float64
    assert np.array_equal(table[torch.as_tensor(flat)].numpy(), grid.rotations(ai, bi, gi))


def test_out_of_memory_halves_the_chunk_without_changing_results(ninb_envs, monkeypatch):
    """A chunk that runs out of device memory is split and computed again: the same distances."""
    rng = np.random.default_rng(2)
    ia, ib = rng.integers(0, len(ninb_envs), 300), rng.integers(0, len(ninb_envs), 300)
    eng = DistanceEngine(ninb_envs, sigma=1.0, compiled=False, chunk_pairs=300)
    want = eng.distances(ia, ib, workers=1)
    real, sizes = eng._chunk, []

    def tight(a, b, rot):  # a device that holds 100 pairs at a time
        sizes.append(len(a))
        if len(a) > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(a, b, rot)

    monkeypatch.setattr(eng, "_chunk", tight)
    got = eng.distances(ia, ib, workers=1)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert max(s for s in sizes if s <= 100) <= 100 and eng.chunk <= 150
    monkeypatch.setattr(engine_mod, "_MIN_SPLIT", 200)
    eng.chunk = 300
    with pytest.raises(torch.OutOfMemoryError):  # below the smallest split, the error stands
        eng.distances(ia, ib, workers=1)


def test_default_path_on_the_pytorch_search_meets_the_contract(ninb_frame, monkeypatch):
    """The default path as CUDA runs it (the PyTorch search, here on the CPU) against the
    exhaustive exact rows of the compiled kernel: the accuracy contract."""
    from giip_plugin.reference import ReferenceMap

    atoms, species = ninb_frame
    ref = ReferenceMap.from_files(ROOT / "tests/data/ninb/quench100K.dump", r_inner=3.0, r_outer=4.0, sigma=1.0,
                                  encoding="sign", centers=["Ni"], type_names="1=Ni,2=Nb", n_train=50, epsilon=1.5,
                                  n_classes=4, n_coords=3)
    rng = np.random.default_rng(5)
    ni = np.flatnonzero(species == "Ni")
    envs = ref.environments.compute(atoms, species=species, indices=rng.choice(ni, 30, replace=False))
    truth = ref.distance_rows(envs, exact=True)
    monkeypatch.setenv("GIIP_NO_FUSED", "1")
    rows = ref.distance_rows(envs, device="cpu")
    assert np.all(rows >= truth - 1e-9)  # every value at an actual rotation
    a, t = ref.transform_from_distances(rows), ref.transform_from_distances(truth)
    np.testing.assert_array_equal(a.classes, t.classes)
    np.testing.assert_allclose(a.ref_distance, t.ref_distance, atol=1e-9)
    span = ref.coordinates.max(0) - ref.coordinates.min(0)
    assert np.max(np.abs(a.coordinates - t.coordinates) / span) <= 0.01


def test_gpu_check_dry_run(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: every stage of the GPU check on the CPU, its checks pass
    and its JSON is written."""
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--pairs", "60",
                          "--n-train", "30", "--contract-atoms", "12", "--frame-atoms", "16", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "pass: exact distances (1e-9)" in res.stdout and "pass: accuracy contract" in res.stdout
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["info"]["dry_run"] and out["exact"]["over_1e-9"] == 0 and out["contract"]["pass"]
    assert out["whole_frame"]["centres"] == 16


def test_gpu_check_says_when_there_is_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode == 2 and "sees no CUDA GPU" in res.stderr and "--dry-run" in res.stderr


@cuda
def test_cuda_default_path_matches_the_cpu(ninb_envs):
    """On a GPU: the default path's rows and the exhaustive rows of a small map against the CPU."""
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.from_files(ROOT / "tests/data/ninb/quench100K.dump", r_inner=3.0, r_outer=4.0, sigma=1.0,
                                  encoding="sign", centers=["Ni"], type_names="1=Ni,2=Nb", n_train=40, epsilon=1.5,
                                  n_classes=3, n_coords=2, device="cpu")
    envs = ninb_envs.subset(np.arange(0, 400, 10))
    truth = ref.distance_rows(envs, device="cpu", exact=True)
    np.testing.assert_allclose(ref.distance_rows(envs, device="cuda", exact=True), truth, atol=1e-9)
    rows = ref.distance_rows(envs, device="cuda")
    np.testing.assert_allclose(rows.min(1), truth.min(1), atol=1e-9)
    assert np.array_equal(ref.transform_from_distances(rows).classes, ref.transform_from_distances(truth).classes)


@cuda
def test_cuda_chunks_are_large():
    rng = np.random.default_rng(0)
    from giip_plugin.environments import EnvironmentSet

    envs = EnvironmentSet.from_list([(rng.normal(size=(12, 3)), np.ones(12)) for _ in range(4)])
    assert DistanceEngine(envs, sigma=1.0, device="cuda").chunk >= 256
