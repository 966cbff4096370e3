"""One set of species rules (giip_plugin.species) and one conversion from a user's system
(giip_plugin.systems), reached by every integration: the same dump gets the same labels and
results through the command line, ASE, OVITO and LAMMPS."""
from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms

from giip_plugin.analysis import GIIPAnalyzer
from giip_plugin.cli import main
from giip_plugin.io import iter_frames
from giip_plugin.species import (check_species, names_from_types, parse_type_names, reference_type_numbers,
                                 species_of)
from giip_plugin.systems import from_system
from giip_plugin.reference import ReferenceMap


def test_type_names_are_parsed_in_one_place():
    assert parse_type_names("1=Cu,2=Zr") == {1: "Cu", 2: "Zr"}
    assert parse_type_names("1 = Cu  2=Zr") == {1: "Cu", 2: "Zr"}
    assert parse_type_names(["Cu", "Zr"]) == {1: "Cu", 2: "Zr"}
    assert parse_type_names({"2": "Zr"}) == {2: "Zr"}
    assert parse_type_names(None) == {} and parse_type_names("") == {}
    for bad in ("Cu", "0=Cu", "1=Cu,1=Zr", "a=Cu", "1="):
        with pytest.raises(ValueError, match="type"):
            parse_type_names(bad)
    from giip_plugin import io, lammps

    assert io.parse_type_names is parse_type_names and lammps.parse_type_names is parse_type_names


def test_species_rules(ref_path):
    ref = ReferenceMap.load(ref_path)
    a = Atoms("Ni2Nb", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])
    assert species_of(a).tolist() == ["Ni", "Ni", "Nb"]  # symbols
    a.new_array("type", np.array([2, 2, 1]))
    assert species_of(a, reference=ref).tolist() == ["Nb", "Nb", "Ni"]  # types named by the reference
    assert species_of(a, type_names="1=Nb,2=Ni").tolist() == ["Ni", "Ni", "Nb"]  # explicit names win
    a.new_array("species", np.array(["Ni", "Nb", "Ni"]))
    assert species_of(a, reference=ref).tolist() == ["Ni", "Nb", "Ni"]  # a species array (readers) first
    assert species_of(a, species=["Nb"] * 3).tolist() == ["Nb"] * 3  # given explicitly
    plain = Atoms(numbers=[1, 2, 1], positions=np.eye(3) * 2.5)  # what plain ase.io.read gives
    assert species_of(plain, reference=ref).tolist() == ["Ni", "Nb", "Ni"]
    numeric = Atoms("X3", positions=np.eye(3) * 2.5)
    numeric.new_array("type", np.array([1, 3, 2]))
    names = species_of(numeric, reference=ref)
    assert names.tolist() == ["Ni", "3", "Nb"]  # an unnamed type keeps its number ...
    with pytest.raises(ValueError, match=r"species \['3'\] that the reference does not know"):
        check_species(names, ref)  # ... and is reported against the reference
    assert names_from_types([2, 1], None).tolist() == ["2", "1"]
    assert reference_type_numbers(ref) == {1: "Ni", 2: "Nb"}


def test_from_system_accepts_each_kind(cutout):
    assert from_system(cutout) is cutout
    frame = next(iter_frames(str(__import__("pathlib").Path(__file__).parent / "data" / "ninb" / "quench10M.dump")))
    assert from_system(frame) is frame.atoms
    t = from_system((np.eye(3) * 10, np.zeros((2, 3)) + [[1, 1, 1], [2, 2, 2]], True, [1, 2]))
    assert t.pbc.all() and t.arrays["type"].tolist() == [1, 2]
    t = from_system((None, [[0, 0, 0], [1, 0, 0]], False, ["Ni", "Nb"]))
    assert t.arrays["species"].tolist() == ["Ni", "Nb"] and not t.pbc.any()
    with pytest.raises(ValueError, match="needs a cell"):
        from_system((None, [[0, 0, 0]], True, None))
    with pytest.raises(TypeError, match="cannot analyse a list"):
        from_system([1, 2, 3])


# ------------------------------------------------------------------ ASE's calculator contract
def test_the_analyser_follows_ases_calculator_contract(ref_path, cutout):
    calc = GIIPAnalyzer(ref_path)
    assert calc.parameters["exact"] is False and calc.parameters["strict"] is True
    atoms = cutout.copy()
    atoms.calc = calc
    first = atoms.calc.get_property("giip_class", atoms).copy()
    n0 = calc.last_result
    assert atoms.calc.get_property("giip_class", atoms) is not None and calc.last_result is n0  # cached
    # a change of the species arrays is a change of the system: no stale results
    swapped = atoms.arrays["species"].copy()
    swapped[swapped == "Ni"], swapped[swapped == "Nb"] = "Nb", "Ni"
    atoms.arrays["species"] = swapped
    assert "species" in calc.check_state(atoms)
    second = atoms.calc.get_property("giip_class", atoms)
    assert calc.last_result is not n0
    assert not np.array_equal(np.flatnonzero(first >= 0), np.flatnonzero(second >= 0))  # other centres now
    # set() changes parameters and drops the cached results
    changed = calc.set(exact=True)
    assert changed == {"exact": True} and calc.exact is True and calc.results == {}
    calc.exact = False  # attributes go through set()
    assert calc.parameters["exact"] is False
    with pytest.raises(TypeError, match="no parameter"):
        calc.set(fsat=True)
    with pytest.raises(ValueError, match="unknown compute device"):
        calc.set(device="gpu")
    assert GIIPAnalyzer(ref_path, exact=True).todict()["exact"] is True


# ------------------------------------------------------------------ every integration, one answer
def _lammps_results(ref_path, dump):
    lammps_support = pytest.importorskip("giip_plugin.lammps_support")
    from giip_plugin.lammps import attach

    lammps = lammps_support.load_lammps()
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        f = next(iter_frames(dump))
        lo = f.atoms.positions.min(0) - 1.0
        hi = f.atoms.positions.max(0) + 1.0
        lmp.commands_string(f"""
units metal
atom_style atomic
boundary f f f
region box block {lo[0]} {hi[0]} {lo[1]} {hi[1]} {lo[2]} {hi[2]}
create_box 2 box
mass * 60.0
pair_style zero 4.0
pair_coeff * *
""")
        for (x, y, z), t in zip(f.atoms.positions.tolist(), f.atoms.arrays["type"].tolist()):
            lmp.command(f"create_atoms {int(t)} single {x!r} {y!r} {z!r} units box")
        hook = attach(lmp, ref_path, every=1)
        lmp.command("run 0")
        g = hook.gather()
        order = np.argsort(g["ids"])
        return g["classes"][order], g["coordinates"][order], g["ref_distance"][order]
    finally:
        lmp.close()


def test_the_same_dump_gives_the_same_results_everywhere(ref_path, cutout_dump, tmp_path):
    # command line
    out = tmp_path / "cli.dump"
    assert main(["apply", str(ref_path), str(cutout_dump), "-o", str(out), "--frames", "0", "--no-progress"]) == 0
    cli = next(iter_frames(out)).atoms.arrays
    k = ReferenceMap.load(ref_path).n_coords
    cli_cls = cli["d_giip_class"].astype(int) if "d_giip_class" in cli else cli["giip_class"].astype(int)
    # ASE: a plain ase.io.read of the same dump (types as atomic numbers)
    plain = ase.io.read(cutout_dump, format="lammps-dump-text", index=0, order=False)
    ase_res = GIIPAnalyzer(ref_path).analyze(plain)
    np.testing.assert_array_equal(ase_res.classes, cli_cls)
    # OVITO
    ovito_io = pytest.importorskip("ovito.io")
    from ovito_modifier import GIIPModifier

    pipeline = ovito_io.import_file(str(cutout_dump))
    pipeline.modifiers.append(GIIPModifier(reference_file=str(ref_path)))
    data = pipeline.compute(0)
    np.testing.assert_array_equal(np.asarray(data.particles["GIIP Class"]), ase_res.classes)
    np.testing.assert_allclose(np.asarray(data.particles["GIIP Reference Distance"]), ase_res.ref_distance,
                               atol=1e-12, equal_nan=True)
    # LAMMPS (the atoms created in file order, so LAMMPS ids follow it)
    cls, dc, dist = _lammps_results(ref_path, cutout_dump)
    np.testing.assert_array_equal(cls, ase_res.classes)
    np.testing.assert_allclose(dist, ase_res.ref_distance, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(dc, ase_res.coordinates.reshape(len(cls), k), atol=1e-9, equal_nan=True)
