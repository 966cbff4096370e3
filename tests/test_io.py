"""Trajectory input/output: giip_plugin.io (frames.py, writers.py)."""
from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

from giip_plugin.io import AnnotatedWriter, Frame, iter_frames, parse_frames, parse_type_names, writer_format
from giip_plugin.io.frames import _ovito_import_file

NINB = Path(__file__).parent / "data" / "ninb"
NINB_FILE = NINB / "quench100K.dump"
HAVE_OVITO = _ovito_import_file() is not None
READERS = ["ovito", "ase"] if HAVE_OVITO else ["ase"]
needs_ovito = pytest.mark.skipif(not HAVE_OVITO, reason="ovito is not installed")


@pytest.fixture(scope="module")
def ninb_frame():
    return next(iter_frames(NINB_FILE, type_names="1=Ni,2=Nb"))


def _dump_rows(path):
    """(header column names, rows of tokens) of the first frame of a dump written by the tests."""
    lines = Path(path).read_text().splitlines()
    k = next(i for i, l in enumerate(lines) if l.startswith("ITEM: ATOMS"))
    n = int(lines[lines.index("ITEM: NUMBER OF ATOMS") + 1])
    return lines[k].split()[2:], [l.split() for l in lines[k + 1 : k + 1 + n]]


def _small_atoms(n=12, seed=0, cell=None, origin=(0.0, 0.0, 0.0), pbc=True):
    rng = np.random.default_rng(seed)
    cell = np.diag([8.0, 9.0, 10.0]) if cell is None else np.asarray(cell, float)
    pos = np.asarray(origin) + rng.random((n, 3)) @ cell
    a = Atoms(numbers=np.zeros(n, int), positions=pos, cell=cell, pbc=pbc, celldisp=origin)
    a.new_array("id", np.arange(n, 0, -1))  # not sorted: the file order must be kept
    a.new_array("type", (np.arange(n) % 2 + 1).astype(np.int64))
    return a


# --------------------------------------------------------------------------- text options


def test_parse_type_names():
    assert parse_type_names("1=Ni,2=Nb") == {1: "Ni", 2: "Nb"}
    assert parse_type_names(" 1 = Ni , 2=Nb ") == {1: "Ni", 2: "Nb"}
    assert parse_type_names("1=Cu 2=Zr") == {1: "Cu", 2: "Zr"}
    assert parse_type_names({1: "A"}) == {1: "A"}
    assert parse_type_names("") == {} and parse_type_names(None) == {}
    for bad in ["Ni,Nb", "1=Ni,2", "a=Ni", "0=Ni", "1=Ni,1=Nb", "1=", "1=Ni=Nb", "1.5=Ni"]:
        with pytest.raises(ValueError, match="type names"):
            parse_type_names(bad)


def test_parse_frames():
    assert parse_frames("1:10:2") == slice(1, 10, 2)
    assert parse_frames("::5") == slice(None, None, 5)
    assert parse_frames("5:") == slice(5, None)
    assert parse_frames(":") == slice(None, None)
    assert parse_frames("") == slice(None) and parse_frames(None) == slice(None)
    assert parse_frames("3") == slice(3, 4) and parse_frames(3) == slice(3, 4)
    assert parse_frames("-1") == slice(-1, None)
    assert parse_frames(slice(2, 4)) == slice(2, 4)
    for bad in ["a:b", "1:2:3:4", "::0", "1.5"]:
        with pytest.raises(ValueError, match="frame selection"):
            parse_frames(bad)


# --------------------------------------------------------------------------- LAMMPS dumps


@pytest.mark.parametrize("reader", READERS)
def test_ninb_dump_agrees_with_ase_and_ovito(reader):
    frames = list(iter_frames(NINB_FILE, type_names="1=Ni,2=Nb", reader=reader))
    assert len(frames) == 1
    f = frames[0]
    a = f.atoms
    ref = ase.io.read(NINB_FILE, format="lammps-dump-text", order=False)
    assert len(a) == len(ref) == 13500
    assert f.source == str(NINB_FILE) and f.index == 0 and f.timestep == 300000
    assert f.columns == ["id", "type", "xs", "ys", "zs"]
    assert f.dim == 3 and f.boundary == ("pp", "pp", "pp") and a.pbc.all()
    np.testing.assert_allclose(a.cell[:], ref.cell[:], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.get_celldisp(), ref.get_celldisp(), atol=1e-12)
    # ASE leaves the box origin out of positions read from scaled columns; with it they agree
    np.testing.assert_allclose(a.positions, ref.positions + ref.get_celldisp().reshape(1, 3), atol=1e-10)
    np.testing.assert_array_equal(a.arrays["type"], ref.arrays["type"])
    # ids and atom order exactly as in the file
    first = NINB_FILE.read_text().splitlines()[9].split()
    assert a.arrays["id"][0] == int(first[0]) == 2996
    np.testing.assert_allclose(a.positions[0], f.origin + np.array(first[2:5], float) @ a.cell[:])
    assert len(np.unique(a.arrays["id"])) == 13500 and not np.all(np.diff(a.arrays["id"]) > 0)
    assert set(f.species) == {"Ni", "Nb"} and (f.species == "Ni").sum() == 6750
    assert np.array_equal(f.species == "Ni", a.arrays["type"] == 1)
    assert a.get_chemical_symbols()[:3] == list(f.species[:3])
    if HAVE_OVITO:
        from ovito.io import import_file

        d = import_file(str(NINB_FILE)).compute()
        np.testing.assert_allclose(a.positions, d.particles.positions[...], atol=1e-10)
        np.testing.assert_array_equal(a.arrays["id"], d.particles["Particle Identifier"][...])


@pytest.mark.parametrize("reader", READERS)
def test_type_names_mapping_and_unknown_type(reader):
    f = next(iter_frames(NINB_FILE, reader=reader))
    assert set(f.species) == {"1", "2"}  # no names: the type numbers
    assert set(f.atoms.numbers) == {0}  # chemical symbol X, not H and He
    g = next(iter_frames(NINB_FILE, type_names={1: "alpha", 2: "beta"}, reader=reader))
    assert set(g.species) == {"alpha", "beta"} and set(g.atoms.numbers) == {0}  # not elements: X
    with pytest.raises(ValueError, match=r"\[2\].*add them to --type-names") as e:
        next(iter_frames(NINB_FILE, type_names="1=Ni", reader=reader))
    assert str(NINB_FILE) in str(e.value)


def _write_multiframe(path, n_frames=6, n=20):
    with AnnotatedWriter(path) as w:
        for k in range(n_frames):
            a = _small_atoms(n, seed=k)
            fr = Frame.from_atoms(a, index=k)
            fr.timestep = 100 * k
            w.write(fr, {"c_step": np.full(n, float(k))})
    return path


@pytest.mark.parametrize("reader", READERS)
def test_frame_selection_on_multiframe_dump(tmp_path, reader):
    p = _write_multiframe(tmp_path / "traj.dump")
    q = _write_multiframe(tmp_path / "traj2.lammpstrj", n_frames=3)

    def pick(sel, paths=p):
        return [(Path(f.source).name, f.index, f.timestep) for f in iter_frames(paths, frames=sel, reader=reader)]

    assert [i for _, i, _ in pick(None)] == [0, 1, 2, 3, 4, 5]
    assert pick("1:5:2") == [("traj.dump", 1, 100), ("traj.dump", 3, 300)]
    assert [i for _, i, _ in pick("-2:")] == [4, 5]
    assert [i for _, i, _ in pick("::-2")] == [5, 3, 1]
    assert [i for _, i, _ in pick("3")] == [3]
    assert [i for _, i, _ in pick("-1")] == [5]
    assert pick("10:") == []
    # the selection applies to each file
    assert pick("1:", [p, q]) == [("traj.dump", i, 100 * i) for i in range(1, 6)] + [
        ("traj2.lammpstrj", 1, 100),
        ("traj2.lammpstrj", 2, 200),
    ]
    f = next(iter_frames(p, frames="2", reader=reader))
    np.testing.assert_allclose(f.atoms.arrays["c_step"], 2.0)
    np.testing.assert_allclose(f.atoms.positions, _small_atoms(20, seed=2).positions, atol=1e-12)


@pytest.mark.parametrize("reader", READERS)
def test_frames_are_streamed(tmp_path, reader):
    p = _write_multiframe(tmp_path / "traj.dump", n_frames=3)
    with open(p, "a") as fh:
        fh.write("this is not a dump line\n")
    gen = iter_frames(p, reader=reader)
    assert inspect.isgenerator(gen)
    got = [next(gen).index for _ in range(3)]  # the damaged tail is not read before it is needed
    assert got == [0, 1, 2]
    with pytest.raises(ValueError, match=r"traj\.dump: line \d+ is not a LAMMPS dump 'ITEM:' line"):
        next(gen)
    # a last frame cut short (a trajectory still being written) is skipped with a warning
    text = Path(_write_multiframe(tmp_path / "cut.dump", n_frames=3)).read_text()
    Path(tmp_path / "cut.dump").write_text(text[: len(text) - 200])
    with pytest.warns(UserWarning, match="frame 2 .*incomplete"):
        assert [f.index for f in iter_frames(tmp_path / "cut.dump", reader=reader)] == [0, 1]


TRICLINIC_CELL = np.array([[9.5, 0.0, 0.0], [2.0, 9.0, 0.0], [-0.5, 1.0, 10.0]])


@pytest.mark.parametrize("reader", READERS)
def test_triclinic_round_trip(tmp_path, reader):
    a = _small_atoms(30, cell=TRICLINIC_CELL, origin=(-0.5, 1.25, 2.0), pbc=[True, False, True])
    out = tmp_path / "tri.dump"
    with AnnotatedWriter(out) as w:
        w.write(Frame.from_atoms(a), {"giip_class": np.arange(30)})
    text = out.read_text()
    assert "ITEM: BOX BOUNDS xy xz yz pp ff pp" in text
    f = next(iter_frames(out, reader=reader))
    assert f.triclinic and f.boundary == ("pp", "ff", "pp")
    assert list(f.atoms.pbc) == [True, False, True]
    np.testing.assert_allclose(f.atoms.cell[:], TRICLINIC_CELL, atol=1e-12)
    np.testing.assert_allclose(f.origin, [-0.5, 1.25, 2.0], atol=1e-12)
    np.testing.assert_allclose(f.atoms.positions, a.positions, atol=1e-12)
    np.testing.assert_array_equal(f.atoms.arrays["id"], a.arrays["id"])
    # the other readers agree
    ref = ase.io.read(out, format="lammps-dump-text", order=False)
    np.testing.assert_allclose(ref.cell[:], TRICLINIC_CELL, atol=1e-12)
    np.testing.assert_allclose(ref.positions, a.positions, atol=1e-12)
    assert list(ref.pbc) == [True, False, True]
    if HAVE_OVITO:
        from ovito.io import import_file

        d = import_file(str(out)).compute()
        m = np.asarray(d.cell[...])
        np.testing.assert_allclose(m[:, :3].T, TRICLINIC_CELL, atol=1e-12)
        np.testing.assert_allclose(m[:, 3], [-0.5, 1.25, 2.0], atol=1e-12)
        np.testing.assert_allclose(d.particles.positions[...], a.positions, atol=1e-12)


@needs_ovito
def test_reads_ovito_exported_dump(tmp_path):
    """An independent writer: OVITO's own dump export (general-triclinic 'abc origin' box)."""
    from ovito.data import DataCollection
    from ovito.io import export_file

    a = _small_atoms(25, cell=TRICLINIC_CELL, origin=(-0.5, 0.0, 1.0))
    data = DataCollection()
    data.create_cell(np.column_stack([TRICLINIC_CELL.T, [-0.5, 0.0, 1.0]]), pbc=(True, True, False))
    parts = data.create_particles(count=25)
    parts.create_property("Position", data=a.positions)
    parts.create_property("Particle Type", data=a.arrays["type"])
    parts.create_property("Particle Identifier", data=a.arrays["id"])
    p = tmp_path / "ovito.dump"
    cols = ["Particle Identifier", "Particle Type", "Position.X", "Position.Y", "Position.Z"]
    export_file(data, str(p), "lammps/dump", columns=cols)
    for reader in READERS:
        f = next(iter_frames(p, type_names="1=Cu,2=Zr", reader=reader))
        np.testing.assert_allclose(f.atoms.cell[:], TRICLINIC_CELL, atol=1e-9)
        np.testing.assert_allclose(f.atoms.positions, a.positions, atol=1e-8)
        assert list(f.atoms.pbc) == [True, True, False]
        assert f.atoms.get_chemical_symbols()[:2] == ["Cu", "Zr"]


SCALED_TRICLINIC = """\
ITEM: TIMESTEP
5
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS xy xz yz pp ff pp
-1.0 11.0 2.0
0.0 10.0 -0.5
0.0 10.0 1.0
ITEM: ATOMS id type xs ys zs c_pe
3 2 0.1 0.2 0.3 -4.5
1 1 0.5 0.5 0.5 -4.125
2 2 0.9 0.123456789012345 0.2 nan
"""


@pytest.mark.parametrize("reader", READERS)
def test_scaled_triclinic_input_is_written_back_scaled(tmp_path, reader):
    p = tmp_path / "scaled.dump"
    p.write_text(SCALED_TRICLINIC)
    f = next(iter_frames(p, reader=reader))
    np.testing.assert_allclose(f.atoms.cell[:], TRICLINIC_CELL)
    np.testing.assert_allclose(f.origin, [-0.5, 0.0, 0.0])
    # x = xlo + xs lx + ys xy + zs xz (LAMMPS), and so on
    np.testing.assert_allclose(f.atoms.positions[0], [-0.5 + 0.95 + 0.4 - 0.15, 1.8 + 0.3, 3.0])
    out = tmp_path / "out.dump"
    with AnnotatedWriter(out) as w:
        w.write(f, {"giip_class": np.array([2, 0, 1])})
    names, rows = _dump_rows(out)
    assert names == ["id", "type", "xs", "ys", "zs", "c_pe", "giip_class"]
    _, rows_in = _dump_rows(p)
    assert [r[:6] for r in rows] == [[t.replace(".0", "") if t == "-4.0" else t for t in r] for r in rows_in]
    assert [r[6] for r in rows] == ["2", "0", "1"]
    # box bounds and flags as in the input
    assert "ITEM: BOX BOUNDS xy xz yz pp ff pp\n-1.0 11.0 2.0\n0.0 10.0 -0.5\n0.0 10.0 1.0\n" in out.read_text()


EXTRA_COLUMNS = """\
ITEM: TIMESTEP
7
ITEM: NUMBER OF ATOMS
4
ITEM: BOX BOUNDS pp pp ff
0.0 10.0
0.0 10.0
-5.0 5.0
ITEM: ATOMS id type xu yu zu c_pe vx element c_st[1] ix q v_x
10 2 1.5 2.5 -3.0 -4.5 0.125 Zr 1.5 0 0.25 7
4 1 11.0 5.0 0.0 -3.25 -0.5 Cu 2.5 1 -0.25 8
7 2 9.0 -1.0 2.0 nan 1e-05 Zr 3.5 -1 0 9
1 1 0.5 0.5 0.5 -3.0 0 Cu 4.5 0 0 10
"""


@pytest.mark.parametrize("reader", READERS)
def test_extra_columns_are_preserved(tmp_path, reader):
    p = tmp_path / "extra.dump"
    p.write_text(EXTRA_COLUMNS)
    f = next(iter_frames(p, reader=reader))
    a = f.atoms
    assert f.columns == "id type xu yu zu c_pe vx element c_st[1] ix q v_x".split()
    assert f.timestep == 7 and f.boundary == ("pp", "pp", "ff") and list(a.pbc) == [True, True, False]
    np.testing.assert_array_equal(a.arrays["id"], [10, 4, 7, 1])
    np.testing.assert_array_equal(a.arrays["type"], [2, 1, 2, 1])
    assert list(f.species) == ["Zr", "Cu", "Zr", "Cu"]  # from the element column
    assert a.get_chemical_symbols() == ["Zr", "Cu", "Zr", "Cu"]
    np.testing.assert_array_equal(a.positions[1], [11.0, 5.0, 0.0])  # unwrapped: kept as is
    np.testing.assert_array_equal(a.arrays["c_pe"][[0, 1, 3]], [-4.5, -3.25, -3.0])
    assert np.isnan(a.arrays["c_pe"][2])
    np.testing.assert_array_equal(a.arrays["vx"], [0.125, -0.5, 1e-05, 0.0])
    np.testing.assert_array_equal(a.arrays["c_st[1]"], [1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(a.arrays["ix"], [0, 1, -1, 0])
    for c in ("c_pe", "vx", "ix", "q", "v_x"):
        assert a.arrays[c].dtype == float
    # the element column wins over numeric types; type names that agree with it are fine, type
    # names that contradict it are an error naming the names the file has
    g = next(iter_frames(p, type_names="1=Cu,2=Zr", reader=reader))
    assert list(g.species) == ["Zr", "Cu", "Zr", "Cu"]
    with pytest.raises(ValueError, match=r"contradicts the type names 1=Ni,2=Nb.*--type-names 1=Cu,2=Zr"):
        next(iter_frames(p, type_names="1=Ni,2=Nb", reader=reader))

    out = tmp_path / "annotated.dump"
    cls = np.array([3, 1, 0, 2])
    dc = np.arange(8.0).reshape(4, 2) / 3
    with AnnotatedWriter(out) as w:
        w.write(f, {"giip_class": cls, "giip_dc": dc, "giip_ref_distance": np.array([0.5, np.nan, 1.0, 2.0])})
    names, rows = _dump_rows(out)
    assert names == f.columns + ["giip_class", "giip_dc1", "giip_dc2", "giip_ref_distance"]
    _, rows_in = _dump_rows(p)
    for r_out, r_in in zip(rows, rows_in):
        for name, t_out, t_in in zip(names, r_out, r_in):
            if name == "element":
                assert t_out == t_in
            else:
                assert float(t_out) == float(t_in) or (np.isnan(float(t_out)) and np.isnan(float(t_in)))
    assert [r[0] for r in rows] == ["10", "4", "7", "1"] and [r[1] for r in rows] == ["2", "1", "2", "1"]
    assert [r[len(f.columns)] for r in rows] == ["3", "1", "0", "2"]  # integers
    assert rows[1][-1] == "nan"
    np.testing.assert_array_equal([[float(x) for x in r[-3:-1]] for r in rows], dc)  # exact text
    # reading the annotated dump again and annotating anew replaces the giip columns
    h = next(iter_frames(out, reader=reader))
    np.testing.assert_allclose(h.atoms.arrays["giip_dc2"], dc[:, 1], rtol=1e-15)  # OVITO: 1 ulp
    with AnnotatedWriter(out) as w:
        w.write(h, {"giip_class": cls + 10, "giip_dc": dc})
    names2, rows2 = _dump_rows(out)
    assert names2.count("giip_class") == 1 and names2.count("giip_dc1") == 1
    assert names2[-3:] == ["giip_class", "giip_dc1", "giip_dc2"] and "giip_ref_distance" in names2
    assert [r[names2.index("giip_class")] for r in rows2] == ["13", "11", "10", "12"]


@pytest.mark.parametrize("reader", READERS)
def test_columns_may_change_between_frames(tmp_path, reader):
    second = SCALED_TRICLINIC.replace(" c_pe", "").replace("\n5\n", "\n6\n")
    second = "\n".join(l.rsplit(" ", 1)[0] if l[:1].isdigit() and l.count(" ") == 5 else l for l in second.splitlines())
    p = tmp_path / "mixed.dump"
    p.write_text(SCALED_TRICLINIC + second + "\n")
    frames = list(iter_frames(p, reader=reader))
    assert [f.timestep for f in frames] == [5, 6]
    assert "c_pe" in frames[0].atoms.arrays and "c_pe" not in frames[1].atoms.arrays
    assert frames[1].columns == ["id", "type", "xs", "ys", "zs"]
    np.testing.assert_allclose(frames[0].atoms.positions, frames[1].atoms.positions)


@needs_ovito
def test_type_labels_are_species(tmp_path):
    text = SCALED_TRICLINIC.replace("3 2 ", "3 Nb ").replace("1 1 ", "1 Ni ").replace("2 2 ", "2 Nb ")
    p = tmp_path / "labels.dump"
    p.write_text(text)
    f = next(iter_frames(p, reader="ovito"))
    assert list(f.species) == ["Nb", "Ni", "Nb"] and f.atoms.get_chemical_symbols() == ["Nb", "Ni", "Nb"]
    assert "type" not in f.atoms.arrays  # no numeric types in this file
    with AnnotatedWriter(tmp_path / "out.dump") as w:
        w.write(f, {"giip_class": np.arange(3)})
    names, rows = _dump_rows(tmp_path / "out.dump")
    assert [r[1] for r in rows] == ["Nb", "Ni", "Nb"]  # the labels are written back


def test_written_ninb_dump_read_by_ovito_and_ase(tmp_path, ninb_frame):
    f = ninb_frame
    n = len(f.atoms)
    rng = np.random.default_rng(1)
    cls = rng.integers(0, 9, n)
    dc = rng.normal(size=(n, 5))
    dist = rng.random(n)
    dist[::7] = np.nan
    out = tmp_path / "ninb_giip.dump"
    t0 = time.perf_counter()
    with AnnotatedWriter(out) as w:
        w.write(f, {"giip_class": cls, "giip_dc": dc, "giip_ref_distance": dist})
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"writing 13,500 atoms took {elapsed:.2f} s"
    names, rows = _dump_rows(out)
    assert names[:5] == ["id", "type", "xs", "ys", "zs"]
    # scaled coordinates keep the exact text of the input
    in_lines = NINB_FILE.read_text().splitlines()[9:]
    assert [" ".join(r[:5]) for r in rows[:200]] == [" ".join(l.split()) for l in in_lines[:200]]

    ref = ase.io.read(out, format="lammps-dump-text", order=False)
    np.testing.assert_allclose(ref.positions + ref.get_celldisp().reshape(1, 3), f.atoms.positions, atol=1e-10)
    np.testing.assert_array_equal(ref.arrays["type"], f.atoms.arrays["type"])
    np.testing.assert_allclose(ref.cell[:], f.atoms.cell[:], atol=1e-12)
    # ASE's dump reader keeps only columns named c_ f_ v_ d_ i_ ...: the giip ones come back with
    # an ASE-friendly prefix, and through giip's ASE-based reader under their own names
    out_d = tmp_path / "ninb_giip_d.dump"
    with AnnotatedWriter(out_d, extra_prefix="d_") as w:
        w.write(f, {"giip_class": cls, "giip_dc": dc, "giip_ref_distance": dist})
    ref_d = ase.io.read(out_d, format="lammps-dump-text", order=False)
    np.testing.assert_array_equal(ref_d.arrays["d_giip_class"], cls)
    np.testing.assert_array_equal(ref_d.arrays["d_giip_dc3"], dc[:, 2])
    np.testing.assert_array_equal(ref_d.arrays["d_giip_ref_distance"], dist)
    g = next(iter_frames(out, reader="ase"))
    np.testing.assert_array_equal(g.atoms.arrays["giip_class"], cls)
    np.testing.assert_array_equal(g.atoms.arrays["giip_dc5"], dc[:, 4])
    np.testing.assert_array_equal(g.atoms.arrays["giip_ref_distance"], dist)
    if HAVE_OVITO:
        from ovito.io import import_file

        d = import_file(str(out)).compute()
        p = d.particles
        np.testing.assert_array_equal(p["giip_class"][...], cls)
        # (OVITO's number parser may land 1 ulp away from 17-digit decimals)
        for k in range(5):
            np.testing.assert_allclose(p[f"giip_dc{k + 1}"][...], dc[:, k], rtol=1e-15, atol=0)
        np.testing.assert_allclose(p["giip_ref_distance"][...], dist, rtol=1e-15, atol=0)  # nan too
        np.testing.assert_array_equal(p["Particle Identifier"][...], f.atoms.arrays["id"])
        np.testing.assert_allclose(p.positions[...], f.atoms.positions, atol=1e-10)


def test_dump_2d_detection(tmp_path):
    a = _small_atoms(16)
    a.positions[:, 2] = 0.0
    a.set_cell(np.diag([8.0, 9.0, 1.0]))
    a.set_celldisp([0.0, 0.0, -0.5])
    p = tmp_path / "lj2d.dump"
    with AnnotatedWriter(p) as w:
        w.write(Frame.from_atoms(a))
    for reader in READERS:
        assert next(iter_frames(p, reader=reader)).dim == 2
        assert next(iter_frames(p, dim=3, reader=reader)).dim == 3
    assert next(iter_frames(NINB_FILE)).dim == 3
    assert next(iter_frames(NINB_FILE, dim=2)).dim == 2
    with pytest.raises(ValueError, match="dim"):
        next(iter_frames(NINB_FILE, dim=4))
    # a LAMMPS 2D run dumped with scaled coordinates: zs all equal
    text = SCALED_TRICLINIC.replace("0.3 -4.5", "0.5 -4.5").replace("0.2 nan", "0.5 nan")
    text = text.replace("xy xz yz pp ff pp\n-1.0 11.0 2.0\n0.0 10.0 -0.5\n0.0 10.0 1.0", "pp pp pp\n0 10\n0 10\n-0.5 0.5")
    (tmp_path / "s2d.dump").write_text(text)
    assert next(iter_frames(tmp_path / "s2d.dump")).dim == 2


# --------------------------------------------------------------------------- other formats


def test_extxyz_round_trip(tmp_path, ninb_frame):
    f = ninb_frame
    n = len(f.atoms)
    cls = np.arange(n) % 5
    dc = np.random.default_rng(2).normal(size=(n, 3))
    dist = np.linspace(0, 1, n)
    out = tmp_path / "annotated.extxyz"
    assert writer_format(out) == "extxyz"
    with AnnotatedWriter(out) as w:
        w.write(f, {"giip_class": cls, "giip_dc": dc, "giip_ref_distance": dist})
    b = ase.io.read(out)
    assert b.get_chemical_symbols() == list(f.species)
    np.testing.assert_allclose(b.positions, f.atoms.positions, atol=1e-6)
    np.testing.assert_array_equal(b.arrays["giip_class"], cls)
    assert b.arrays["giip_dc"].shape == (n, 3)
    np.testing.assert_allclose(b.arrays["giip_dc"], dc, rtol=0, atol=1e-8)  # ASE writes %16.8f
    np.testing.assert_allclose(b.arrays["giip_ref_distance"], dist, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(b.arrays["id"], f.atoms.arrays["id"])
    assert b.info.get("timestep") == 300000
    # and back through iter_frames
    g = next(iter_frames(out))
    assert list(g.species) == list(f.species) and g.timestep == 300000
    np.testing.assert_array_equal(g.atoms.arrays["giip_class"], cls)
    # numeric LAMMPS types without element names come back as species through the type array
    h = next(iter_frames(NINB_FILE))
    with AnnotatedWriter(tmp_path / "types.xyz") as w:
        w.write(h)
    assert set(next(iter_frames(tmp_path / "types.xyz")).species) == {"1", "2"}
    assert set(next(iter_frames(tmp_path / "types.xyz", type_names="1=Ni,2=Nb")).species) == {"Ni", "Nb"}


def test_traj_and_extxyz_inputs(tmp_path):
    images = []
    for k in range(5):
        a = Atoms("Cu3Zr", positions=np.random.default_rng(k).random((4, 3)) * 5, cell=[6, 6, 6], pbc=True)
        images.append(a)
    ase.io.write(tmp_path / "t.traj", images)
    ase.io.write(tmp_path / "t.extxyz", images)
    for name in ("t.traj", "t.extxyz"):
        frames = list(iter_frames(tmp_path / name, frames="1::2"))
        assert [f.index for f in frames] == [1, 3]
        assert list(frames[0].species) == ["Cu", "Cu", "Cu", "Zr"]
        np.testing.assert_allclose(frames[1].atoms.positions, images[3].positions, atol=1e-8)
        assert [f.index for f in iter_frames(tmp_path / name, frames="-2:")] == [3, 4]
        assert frames[0].dim == 3 and frames[0].columns[:4] == ["element", "x", "y", "z"]
    # a flat molecule is 2D
    flat = Atoms("C6", positions=[[np.cos(t), np.sin(t), 0.0] for t in np.arange(6) * np.pi / 3])
    ase.io.write(tmp_path / "flat.xyz", flat)
    assert next(iter_frames(tmp_path / "flat.xyz")).dim == 2
    # an extxyz frame with a general cell becomes a valid (rotated) LAMMPS box
    g = Atoms("Cu4", positions=np.random.default_rng(9).random((4, 3)) * 3, pbc=True,
              cell=[[4.0, 1.0, 0.5], [0.3, 5.0, 0.2], [0.1, -0.4, 6.0]])
    with AnnotatedWriter(tmp_path / "general.dump") as w:
        w.write(g)
    back = next(iter_frames(tmp_path / "general.dump")).atoms
    np.testing.assert_allclose(back.cell.cellpar(), g.cell.cellpar(), atol=1e-9)
    np.testing.assert_allclose(back.get_all_distances(mic=True), g.get_all_distances(mic=True), atol=1e-9)


# --------------------------------------------------------------------------- writer safety and errors


def test_atomic_write_leaves_no_partial_file(tmp_path, ninb_frame):
    out = tmp_path / "result.dump"
    out.write_text("previous result\n")

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with AnnotatedWriter(out) as w:
            w.write(ninb_frame, {"giip_class": np.zeros(len(ninb_frame.atoms), int)})
            assert out.read_text() == "previous result\n"  # nothing visible while writing
            raise Boom("interrupted")
    assert out.read_text() == "previous result\n"
    assert sorted(os.listdir(tmp_path)) == ["result.dump"]  # no temporary file left behind
    # a failure inside write() itself (a per-atom array of the wrong length)
    new = tmp_path / "new.dump"
    with pytest.raises(ValueError, match="giip_dc"):
        with AnnotatedWriter(new) as w:
            w.write(ninb_frame, {"giip_class": np.zeros(len(ninb_frame.atoms), int)})
            w.write(ninb_frame, {"giip_dc": np.zeros((5, 2))})
    assert not new.exists() and sorted(os.listdir(tmp_path)) == ["result.dump"]
    # a clean close replaces the old result in one step
    with AnnotatedWriter(out) as w:
        w.write(ninb_frame)
    assert out.read_text().startswith("ITEM: TIMESTEP\n300000\n")
    assert sorted(os.listdir(tmp_path)) == ["result.dump"]


def test_writer_formats_and_gzip(tmp_path, ninb_frame):
    assert writer_format("a.dump") == writer_format("a.lammpstrj") == "lammps-dump"
    assert writer_format("x.txt") == writer_format("my_dump_file") == "lammps-dump"
    assert writer_format("a.xyz") == writer_format("a.extxyz.gz") == "extxyz"
    with pytest.raises(ValueError, match="output format"):
        writer_format("a.png")
    with pytest.raises(ValueError, match="unknown output format"):
        writer_format("a.dump", "pdb")
    sub = ninb_frame.atoms[:50]
    fr = Frame(atoms=sub, source="x", index=0, timestep=3, columns=ninb_frame.columns,
               boundary=ninb_frame.boundary)
    with AnnotatedWriter(tmp_path / "small.dump.gz") as w:
        w.write(fr, {"giip_class": np.arange(50)})
    for reader in READERS:
        g = next(iter_frames(tmp_path / "small.dump.gz", reader=reader))
        np.testing.assert_allclose(g.atoms.positions, sub.positions, atol=1e-10)
        np.testing.assert_array_equal(g.atoms.arrays["giip_class"], np.arange(50))


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.dump"):
        next(iter_frames(tmp_path / "nothere.dump"))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        next(iter_frames(str(tmp_path / "none*.dump")))
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello world\nthis is not a trajectory\n")
    with pytest.raises(ValueError, match="notes.txt"):
        next(iter_frames(foreign))
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    with pytest.raises(ValueError, match="picture.png"):
        next(iter_frames(png))
    bad = tmp_path / "bad.dump"
    bad.write_text("ITEM: TIMESTEP\nabc\n")
    for reader in READERS:
        with pytest.raises(ValueError, match=r"bad\.dump: line 2"):
            next(iter_frames(bad, reader=reader))
    bad.write_text("some text\n")
    with pytest.raises(ValueError, match=r"bad\.dump: line 1 is not a LAMMPS dump"):
        next(iter_frames(bad))
    (tmp_path / "empty.dump").write_text("")
    with pytest.raises(ValueError, match="empty.dump: no complete LAMMPS dump frame"):
        next(iter_frames(tmp_path / "empty.dump"))
    nopos = tmp_path / "nopos.dump"
    nopos.write_text(EXTRA_COLUMNS.replace(" xu yu zu", " a b c"))
    with pytest.raises(ValueError, match="nopos.dump.*no atom positions"):
        next(iter_frames(nopos))
    # and glob patterns expand in order
    _write_multiframe(tmp_path / "run1.dump", 2)
    _write_multiframe(tmp_path / "run2.dump", 1)
    assert [(Path(f.source).name, f.index) for f in iter_frames(str(tmp_path / "run*.dump"))] == [
        ("run1.dump", 0),
        ("run1.dump", 1),
        ("run2.dump", 0),
    ]
