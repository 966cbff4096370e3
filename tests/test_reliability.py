"""Regression tests of the defects found by trying to break the tool (bad inputs, interruptions,
round trips): no user file is ever destroyed, and no wrong answer is given silently."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest

from giip_plugin.analysis import GIIPAnalyzer
from giip_plugin.cli import main
from giip_plugin.io import AnnotatedWriter, iter_frames
from giip_plugin.io.atomic import remove_stale
from giip_plugin.reference import ReferenceMap

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "ninb"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    return env


# ---------------------------------------------------------------- 1. no frames: output untouched
def test_a_run_that_selects_no_frames_leaves_the_output_as_it_was(ref_path, cutout_dump, tmp_path, capsys):
    keep = tmp_path / "keep.dump"
    keep.write_text("precious results\n")
    rc = main(["apply", str(ref_path), str(cutout_dump), "-o", str(keep), "--frames", "5", "--no-progress"])
    assert rc == 1 and "no frames were selected" in capsys.readouterr().err
    assert keep.read_text() == "precious results\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_a_writer_given_no_frame_writes_nothing(tmp_path):
    out = tmp_path / "x.dump"
    out.write_text("old\n")
    w = AnnotatedWriter(out)
    with pytest.raises(ValueError, match="no frame was written"):
        w.close()
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["x.dump"]


# ---------------------------------------------------------------- 2. -o naming an input
def test_an_output_that_names_an_input_is_refused(ref_path, cutout_dump, tmp_path, capsys):
    t = tmp_path / "t.dump"
    t.write_bytes(Path(cutout_dump).read_bytes())
    before = t.read_bytes()
    assert main(["apply", str(ref_path), str(t), "-o", str(t), "--frames", "0", "--no-progress"]) == 1
    assert "would destroy the input" in capsys.readouterr().err
    link = tmp_path / "hard.dump"
    os.link(t, link)  # the same inode under another name
    assert main(["apply", str(ref_path), str(t), "-o", str(link), "--no-progress"]) == 1
    sym = tmp_path / "sym.dump"
    sym.symlink_to(t)
    assert main(["apply", str(ref_path), str(sym), "-o", str(t), "--no-progress"]) == 1
    assert main(["apply", str(ref_path), str(t), "-o", str(ref_path), "--no-progress"]) == 1  # the reference
    assert main(["build", str(t), "-o", str(t), "--r-inner", "3", "--r-outer", "4", "--sigma", "1",
                 "--no-progress"]) == 1
    assert "would destroy the input" in capsys.readouterr().err
    assert t.read_bytes() == before


# ---------------------------------------------------------------- 3. species after a round trip
def test_extxyz_to_dump_round_trip_keeps_every_species(ref_path, cutout, tmp_path):
    xyz = tmp_path / "cluster.extxyz"
    a = cutout.copy()
    del a.arrays["species"]
    ase.io.write(xyz, a)  # symbols Ni / Nb; alphabetical numbering would make Nb type 1
    c = tmp_path / "c.dump"
    assert main(["apply", str(ref_path), str(xyz), "-o", str(c), "--no-progress"]) == 0
    f = next(iter_frames(c, reader="ase"))
    types = f.atoms.arrays["type"].astype(int)
    sym = np.array(cutout.get_chemical_symbols())
    assert np.all(types[sym == "Ni"] == 1) and np.all(types[sym == "Nb"] == 2)  # the reference's 1=Ni,2=Nb
    re_ = tmp_path / "re.dump"
    assert main(["apply", str(ref_path), str(c), "-o", str(re_), "--no-progress"]) == 0
    g = next(iter_frames(re_, reader="ase"))
    np.testing.assert_array_equal(g.atoms.arrays["d_giip_class"], f.atoms.arrays["d_giip_class"])
    np.testing.assert_array_equal(g.atoms.arrays["d_giip_ref_distance"], f.atoms.arrays["d_giip_ref_distance"])
    expected = GIIPAnalyzer(ref_path).analyze(cutout)
    np.testing.assert_array_equal(f.atoms.arrays["d_giip_class"].astype(int), expected.classes)


def test_an_element_column_wins_over_types_and_a_contradiction_is_an_error(ref_path, cutout, tmp_path, capsys):
    xyz = tmp_path / "cluster.extxyz"
    a = cutout.copy()
    del a.arrays["species"]
    ase.io.write(xyz, a)
    c = tmp_path / "c.dump"
    assert main(["apply", str(ref_path), str(xyz), "-o", str(c), "--no-progress"]) == 0
    text = c.read_text().splitlines()
    cols = text[8].split()[2:]
    assert "element" in cols
    it, ie = cols.index("type"), cols.index("element")
    swapped = text[:9] + [" ".join((w if k != it else {"1": "2", "2": "1"}[w]) for k, w in enumerate(ln.split()))
                          for ln in text[9:]]
    bad = tmp_path / "swapped.dump"
    bad.write_text("\n".join(swapped) + "\n")
    out = tmp_path / "o.dump"
    assert main(["apply", str(ref_path), str(bad), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "element column contradicts the type names 1=Ni,2=Nb" in err and "--type-names 1=Nb,2=Ni" in err
    assert not out.exists()
    # named as the file says, the element column gives the same results as before
    assert main(["apply", str(ref_path), str(bad), "-o", str(out), "--type-names", "1=Nb,2=Ni", "--no-progress"]) == 0
    assert [ln.split()[ie] for ln in out.read_text().splitlines()[9:]] == [ln.split()[ie] for ln in text[9:]]


# ---------------------------------------------------------------- 4. length scale far off
def test_structures_far_outside_the_reference_length_scale_are_refused(ref_path, cutout):
    an = GIIPAnalyzer(ref_path)
    frame = next(iter_frames(DATA / "quench10M.dump", type_names="1=Ni,2=Nb"))
    nm = frame.atoms.copy()
    nm.set_cell(nm.cell[:] * 0.1, scale_atoms=True)  # nm read as Angstrom
    with pytest.raises(ValueError, match="number density .* length units"):
        an.analyze(nm)
    squeezed = cutout.copy()
    squeezed.positions *= 0.3
    with pytest.raises(ValueError, match="overlapping atoms|length units"):
        an.analyze(squeezed)
    twin = cutout.copy()
    ni = int(np.flatnonzero(twin.arrays["species"] == "Ni")[0])
    twin.positions[ni + 1 if ni + 1 < len(twin) else ni - 1] = twin.positions[ni]  # two atoms on one site
    with pytest.raises(ValueError, match="overlapping atoms"):
        an.analyze(twin)
    # not strict (the LAMMPS hook): a warning, and the atoms are still classified
    with pytest.warns(RuntimeWarning, match="overlapping atoms"):
        res = an.analyze(twin, strict=False)
    assert np.any(res.classes >= 0)
    dense = cutout.copy()
    dense.positions *= 0.5  # denser than the training environments
    with pytest.raises(ValueError, match="length units|overlapping"):
        an.analyze(dense)
    an.analyze(cutout)  # the structure itself passes


# ---------------------------------------------------------------- 5. checksum of the parameters
@pytest.mark.parametrize("group, name, value", [
    ("parameters", "sigma", 1.1), ("parameters", "r_outer", 4.2), ("parameters", "positive", "Nb"),
    ("diffusion", "epsilon", 1.7), ("parameters", "epsilon", 1.7),
])
def test_editing_a_parameter_attribute_is_detected(ref_path, tmp_path, group, name, value):
    p = tmp_path / "edited.h5"
    p.write_bytes(Path(ref_path).read_bytes())
    with h5py.File(p, "r+") as f:
        f[group].attrs[name] = value
    with pytest.raises(ValueError, match="attribute checksum mismatch"):
        ReferenceMap.load(p)


def test_a_schema_1_file_still_loads(ref_path, tmp_path):
    p = tmp_path / "old.h5"
    p.write_bytes(Path(ref_path).read_bytes())
    with h5py.File(p, "r+") as f:
        del f.attrs["attrs_checksum"]
        f.attrs["schema_version"] = np.int64(1)
    old, new = ReferenceMap.load(p), ReferenceMap.load(ref_path)
    assert old.sigma == new.sigma and np.array_equal(old.distances, new.distances)


# ---------------------------------------------------------------- 6. cut dumps
def _two_frames(tmp_path, cutout):
    from giip_plugin.io import Frame

    p = tmp_path / "two.dump"
    with AnnotatedWriter(p) as w:
        w.write(Frame.from_atoms(cutout, type_names={1: "Ni", 2: "Nb"}), {})
        b = cutout.copy()
        b.positions += 0.01
        w.write(Frame.from_atoms(b, type_names={1: "Ni", 2: "Nb"}, index=1), {})
    return p


def test_a_dump_cut_inside_its_last_number_skips_that_frame(ref_path, cutout, tmp_path):
    p = _two_frames(tmp_path, cutout)
    text = p.read_text()
    assert text.endswith("\n")
    last = text.rstrip("\n").rsplit(" ", 1)[1]
    assert len(last) > 1
    cut = tmp_path / "cut.dump"
    cut.write_text(text.rstrip("\n")[:-(len(last) - 1)])  # "16.91" -> "1", no line end
    with pytest.warns(UserWarning, match="frame 1 .* is incomplete.*cut last line"):
        frames = list(iter_frames(cut))
    assert len(frames) == 1
    with pytest.warns(UserWarning, match="incomplete"):
        assert len(list(iter_frames(cut, reader="ovito"))) == 1


def test_a_dump_cut_mid_line_in_its_last_frame_keeps_the_frames_before(ref_path, cutout, tmp_path, capsys):
    p = _two_frames(tmp_path, cutout)
    lines = p.read_text().splitlines()
    cut = tmp_path / "cut.dump"
    cut.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:5])  # the last frame ends inside a line
    out = tmp_path / "o.dump"
    assert main(["apply", str(ref_path), str(cut), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "giip apply: warning:" in err and "frame 1" in err and "skipped" in err
    assert len(list(iter_frames(out))) == 1
    ref2 = tmp_path / "r.h5"
    assert main(["build", str(cut), "-o", str(ref2), "--type-names", "1=Ni,2=Nb", "--centers", "Ni",
                 "--species", "sign", "--r-inner", "3", "--r-outer", "4", "--sigma", "1", "--n-train", "6",
                 "--classes", "2", "--epsilon", "1.5", "--n-coords", "1", "--no-progress"]) == 0
    assert ReferenceMap.load(ref2).provenance["n_frames"] == 1


# ---------------------------------------------------------------- 7. SIGTERM, SIGKILL
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_sigterm_leaves_no_partial_file_and_the_old_output(ref_path, tmp_path):
    out = tmp_path / "out.dump"
    out.write_text("old output\n")
    proc = subprocess.Popen([sys.executable, "-m", "giip_plugin.cli", "apply", str(ref_path),
                             str(DATA / "quench10M.dump"), "-o", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in os.listdir(tmp_path) if p.endswith(".part")]:
        time.sleep(0.1)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")], "the run never opened its output"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err
    assert os.listdir(tmp_path) == ["out.dump"] and out.read_text() == "old output\n"


def test_partial_files_of_dead_processes_are_removed_on_the_next_run(ref_path, cutout_dump, tmp_path):
    out = tmp_path / "out.dump"
    host = "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in socket.gethostname())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.dump.{host}.{dead}.0a1b2c3d.part"  # left by a SIGKILLed run
    alive = tmp_path / f".out.dump.{host}.1.0a1b2c3d.part"  # pid 1 runs: another run writing now
    other_host = tmp_path / ".out.dump.elsewhere.12345.0a1b2c3d.part"  # a shared file system
    other_target = tmp_path / f".other.dump.{host}.{dead}.0a1b2c3d.part"
    for p in (stale, alive, other_host, other_target):
        p.write_text("partial")
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--no-progress", "--frames", "0"]) == 0
    assert not stale.exists() and alive.exists() and other_host.exists() and other_target.exists()
    assert out.exists()
    assert remove_stale(out) == []


def test_files_are_written_with_the_umask_mode(ref_path, cutout_dump, tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "out.dump"
        assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--no-progress", "--frames", "0"]) == 0
        ReferenceMap.load(ref_path).save(tmp_path / "copy.h5")
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o640
    assert ((tmp_path / "copy.h5").stat().st_mode & 0o777) == 0o640


# ---------------------------------------------------------------- 9. the smaller ones
def test_bad_options_get_clear_errors_before_any_work(ref_path, cutout_dump, tmp_path, capsys):
    out = tmp_path / "o.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--device", "foo"]) == 1
    err = capsys.readouterr().err
    assert "unknown compute device 'foo'" in err and "Traceback" not in err
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "missing" / "o.dump")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(tmp_path / "o.png")]) == 1
    assert "cannot tell the output format" in capsys.readouterr().err
    broken = tmp_path / "broken.dump"
    broken.write_text("ITEM: TIMESTEP\nnot a number\n")
    common = ["-o", str(tmp_path / "r.h5"), "--r-inner", "3", "--r-outer", "4", "--no-progress"]
    assert main(["build", str(broken), *common, "--sigma", "-1"]) == 1
    assert "--sigma" in capsys.readouterr().err  # before the (unreadable) frames are read
    assert main(["build", str(broken), *common, "--sigma", "1", "--block-size", "0"]) == 1
    assert "--block-size must be a positive" in capsys.readouterr().err
    assert main(["build", str(broken), *common, "--sigma", "1", "--device", "gpu0"]) == 1
    assert "unknown compute device" in capsys.readouterr().err
    assert main(["build", str(broken), "-o", str(tmp_path), "--r-inner", "3", "--r-outer", "4", "--sigma", "1"]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_folder_fails_before_the_computation(ref_path, cutout_dump, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(ro / "o.dump")]) == 1
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def _without_column(src, dst, name):
    lines = Path(src).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        n = int(lines[i + 3])
        cols = lines[i + 8].split()[2:]
        k = cols.index(name)
        out += lines[i:i + 8] + ["ITEM: ATOMS " + " ".join(c for c in cols if c != name)]
        out += [" ".join(w for j, w in enumerate(ln.split()) if j != k) for ln in lines[i + 9:i + 9 + n]]
        i += 9 + n
    Path(dst).write_text("\n".join(out) + "\n")
    return dst


def test_type_names_and_centres_that_contradict_are_warned(ref_path, cutout_dump, tmp_path, capsys):
    out = tmp_path / "o.dump"
    typed = _without_column(cutout_dump, tmp_path / "typed.dump", "element")  # numeric types only
    assert main(["apply", str(ref_path), str(typed), "-o", str(out), "--type-names", "1=Nb,2=Ni",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "giip apply: warning: --type-names contradicts the reference's type names" in err
    assert "type 1 = Nb (the reference: Ni)" in err
    ref2 = tmp_path / "r.h5"
    assert main(["build", str(cutout_dump), "-o", str(ref2), "--type-names", "1=Ni,2=Nb", "--centers", "Ni,Cu",
                 "--species", "sign", "--r-inner", "3", "--r-outer", "4", "--sigma", "1", "--n-train", "6",
                 "--classes", "2", "--epsilon", "1.5", "--n-coords", "1", "--no-progress"]) == 0
    assert "the centre species ['Cu'] are not in the input" in capsys.readouterr().err


@pytest.mark.slow
def test_warnings_name_the_frame_and_show_no_source_lines(ref_path, cutout, tmp_path):
    from giip_plugin.io import Frame

    a = cutout.copy()
    ni = int(np.flatnonzero(a.arrays["species"] == "Ni")[0])
    a.positions[ni] += [30.0, 0, 0]  # an isolated centre
    p = tmp_path / "iso.dump"
    with AnnotatedWriter(p) as w:
        w.write(Frame.from_atoms(a, type_names={1: "Ni", 2: "Nb"}), {})
    res = subprocess.run([sys.executable, "-m", "giip_plugin.cli", "apply", str(ref_path), str(p), "-o",
                          str(tmp_path / "o.dump"), "--no-progress"], capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "warning:" in ln or "Warning" in ln]
    assert lines and all(ln.startswith("giip apply: warning: ") for ln in lines), res.stderr
    assert any(f"{p} frame 0: 1 centre atoms have no neighbour" in ln for ln in lines), res.stderr
    assert "warnings.warn" not in res.stderr and ".part" not in res.stderr


def test_a_dump_read_and_written_back_keeps_every_digit(tmp_path):
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 30, (400, 3))
    src = tmp_path / "full.dump"
    rows = "".join(f"{i + 1} 1 {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}\n" for i, p in enumerate(pos))
    src.write_text("ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n400\nITEM: BOX BOUNDS pp pp pp\n0 30\n0 30\n0 30\n"
                   "ITEM: ATOMS id type x y z\n" + rows)
    back = tmp_path / "back.dump"
    with AnnotatedWriter(back) as w:
        w.write(next(iter_frames(src)), {})
    assert back.read_text().splitlines()[9:] == src.read_text().splitlines()[9:]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_sigterm_during_a_build_keeps_the_checkpoint_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "ref.h5"
    cmd = [sys.executable, "-m", "giip_plugin.cli", "build", str(DATA / "quench10M.dump"), "-o", str(out),
           "--type-names", "1=Ni,2=Nb", "--centers", "Ni", "--species", "sign", "--r-inner", "3", "--r-outer", "4",
           "--sigma", "1", "--n-train", "120", "--block-size", "8", "--classes", "3", "--epsilon", "1.5",
           "--no-progress", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    ck = Path(str(out) + ".partial")
    deadline = time.time() + 120
    while time.time() < deadline and not (ck.is_dir() and len(list(ck.glob("b*.npy"))) >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "blocks of the training distance matrix are saved" in err and not out.exists()
    saved = len(list(ck.glob("b*.npy")))
    assert saved >= 2
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stderr and out.exists() and not ck.exists()
