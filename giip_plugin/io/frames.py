"""Reading trajectories frame by frame: LAMMPS text dumps, extxyz, ASE .traj and what ``ase.io`` reads.

LAMMPS text dumps are read with ASE's ``lammps-dump-text`` reader by default (``reader="ase"``,
every number as written in the file: about 0.03 s for a 13,500-atom frame), or with OVITO's
``import_file`` (``reader="ovito"``, faster for very large frames, but its number parser gives
the last digit of about 1 in 8 seventeen-digit numbers one unit off, so a dump read and written
back would change).
Other formats go through ``ase.io.iread``. Each frame comes out as a :class:`Frame` whose
``atoms`` keep the atom order of the file, Cartesian positions in the file's units (Angstrom for
``metal`` / ``real`` runs), the cell and its origin, and every per-atom column of the input.
"""
from __future__ import annotations

import glob
import io
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from ase import Atoms

from ..species import check_types_match_elements, names_from_types, parse_type_names, symbols_for
from ._dumpscan import looks_like_lammps_dump, read_block, scan_dump

__all__ = ["Frame", "iter_frames", "parse_frames", "parse_type_names", "LAMMPS_POSITION_COLUMNS"]

# position column triplets, in the order of preference when a dump has several
LAMMPS_POSITION_COLUMNS = (
    ("x", "y", "z"),
    ("xu", "yu", "zu"),
    ("xs", "ys", "zs"),
    ("xsu", "ysu", "zsu"),
)
_SCALED = {"xs", "ys", "zs", "xsu", "ysu", "zsu"}
_ALL_POSITION_COLUMNS = {c for t in LAMMPS_POSITION_COLUMNS for c in t}
_DUMP_SUFFIXES = (".dump", ".lammpstrj", ".lammpsdump")


# --------------------------------------------------------------------------- text options


def parse_frames(text) -> slice:
    """``"start:stop:step"`` (Python slice semantics, each part optional) or ``"N"`` -> ``slice``.

    A single integer selects that one frame (``"-1"``: the last one). ``None`` or ``""``: all frames.
    """
    if text is None:
        return slice(None)
    if isinstance(text, slice):
        return text
    if isinstance(text, (int, np.integer)):
        i = int(text)
        return slice(i, i + 1 if i != -1 else None)
    s = str(text).strip()
    if not s:
        return slice(None)
    parts = s.split(":")
    if len(parts) > 3:
        raise ValueError(f"malformed frame selection {text!r}: expected 'start:stop:step' or an integer")
    try:
        vals = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise ValueError(
            f"malformed frame selection {text!r}: expected integers in 'start:stop:step', e.g. '0:100:10'"
        ) from None
    if len(vals) == 1:
        return parse_frames(vals[0])
    if len(vals) == 3 and vals[2] == 0:
        raise ValueError(f"malformed frame selection {text!r}: the step cannot be 0")
    return slice(*vals)


# --------------------------------------------------------------------------- the frame


@dataclass
class Frame:
    """One frame of a trajectory.

    ``atoms`` is an :class:`ase.Atoms` in the atom order of the file, with Cartesian positions, the
    cell (rows) and its origin (``atoms.get_celldisp()``, also ``origin``), ``pbc`` from the boundary
    flags, and per-atom arrays ``id`` / ``type`` (LAMMPS ids and numeric types, when present),
    ``species`` (names as strings) and every other input column under its own name.
    """

    atoms: Atoms
    source: str
    index: int
    timestep: int | None = None
    columns: list = field(default_factory=list)
    dim: int = 3
    boundary: tuple | None = None  # LAMMPS boundary flags per axis, e.g. ("pp", "pp", "ff")
    triclinic: bool | None = None  # the input box was written as triclinic
    info: dict = field(default_factory=dict)  # other dump header items (units, time)
    raw: dict = field(default_factory=dict, repr=False)  # input values of scaled position columns

    @property
    def natoms(self) -> int:
        return len(self.atoms)

    @property
    def species(self) -> np.ndarray:
        return self.atoms.arrays["species"]

    @property
    def origin(self) -> np.ndarray:
        return np.asarray(self.atoms.get_celldisp(), dtype=float).reshape(3)

    @classmethod
    def from_atoms(cls, atoms: Atoms, source: str = "", index: int = 0, type_names=None, dim=None):
        """Wrap (a copy of) an :class:`ase.Atoms`, adding its ``species`` array."""
        return _frame_from_ase_atoms(atoms.copy(), source, index, parse_type_names(type_names) or None, dim)


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1)
def _ovito_import_file():
    """OVITO's ``import_file``, or None when ovito is not installed / does not import."""
    try:
        import_ovito()
        from ovito.io import import_file
    except Exception:  # noqa: BLE001 - any import failure means: use ASE
        return None
    return import_file


def import_ovito():
    """Import the ``ovito`` package keeping the process's SIGINT disposition; every lazy ovito
    import of this package goes through here first. Where Python does not handle SIGINT (ignored,
    as for a background job of a script or under nohup), importing ovito installs a native handler,
    and a SIGINT then crashed the process (segmentation fault) instead of being ignored; the
    disposition is restored after the import. Python's own handler is left as it is (ovito does
    not replace it)."""
    with _keep_sigint():
        import ovito
    return ovito


@contextmanager
def _keep_sigint():
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and before in (signal.SIG_IGN, signal.SIG_DFL):
            signal.signal(signal.SIGINT, before)


def expand_paths(paths) -> list:
    """Paths as a list, glob patterns expanded (when no file has that very name)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        p = os.fspath(p)
        if not os.path.exists(p) and any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p))
            if not matches:
                raise FileNotFoundError(f"no file matches {p!r}")
            out.extend(matches)
        else:
            out.append(p)
    return out


def _is_lammps_dump(path: str) -> bool:
    name = os.path.basename(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if looks_like_lammps_dump(path):
        return True
    if name.endswith(_DUMP_SUFFIXES):
        # named like a dump but does not start like one: let the scanner explain what is wrong
        return True
    return False


def _check_dim(dim):
    if dim is None:
        return None
    if int(dim) not in (2, 3):
        raise ValueError(f"dim must be 2, 3 or None (detect), got {dim!r}")
    return int(dim)


def _detect_dim(positions: np.ndarray, dim) -> int:
    if dim is not None:
        return dim
    if len(positions) >= 2 and np.all(positions[:, 2] == positions[0, 2]):
        return 2
    return 3


def _no_positions(where: str, columns) -> ValueError:
    return ValueError(f"{where}: no atom positions among the columns {list(columns)}; a dump needs x y z, "
                      "xu yu zu, xs ys zs or xsu ysu zsu")


def _assemble_lammps_frame(path, hdr, values, cell, origin, type_names, dim) -> Frame:
    """Build a Frame from the columns of one dump frame (``values``: column name -> array)."""
    where = f"{path} (frame {hdr.index}, timestep {hdr.timestep})"
    cols = list(hdr.columns)
    n = hdr.natoms
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    origin = np.asarray(origin, dtype=float).reshape(3)

    triplet = next((t for t in LAMMPS_POSITION_COLUMNS if all(c in values for c in t)), None)
    if triplet is None:
        raise _no_positions(where, cols)
    coords = np.column_stack([np.asarray(values[c], dtype=float) for c in triplet]).reshape(n, 3)
    raw = {}
    if triplet[0] in _SCALED:
        positions = origin + coords @ cell
        raw = {c: np.asarray(values[c], dtype=float).copy() for c in triplet}
    else:
        positions = coords
    # other position columns (a dump with both x and xu, say) keep their input values too
    for c in cols:
        if c in _ALL_POSITION_COLUMNS and c not in triplet:
            raw[c] = np.asarray(values[c], dtype=float).copy()

    numeric_types = labels = None
    if "type" in values:
        t = np.asarray(values["type"])
        if t.dtype.kind in "iuf":
            numeric_types = t.astype(np.int64)
        else:
            labels = t.astype(str)
    element = np.asarray(values["element"]).astype(str) if "element" in values else None

    if element is not None:
        # an element column names the species itself; numeric types named otherwise contradict it
        species = element
        if numeric_types is not None and type_names:
            check_types_match_elements(numeric_types, element, type_names, where)
    elif numeric_types is not None and (type_names or labels is None):
        species = names_from_types(numeric_types, type_names, where)
    elif labels is not None:
        species = labels
    else:
        species = np.full(n, "X")

    pbc = [f[0] == "p" for f in hdr.boundary]
    atoms = Atoms(numbers=symbols_for(species), positions=positions, cell=cell, pbc=pbc, celldisp=origin)
    if "id" in values:
        atoms.new_array("id", np.asarray(values["id"]).astype(np.int64))
    if numeric_types is not None:
        atoms.new_array("type", numeric_types)
    atoms.new_array("species", np.asarray(species, dtype=str))
    for c in cols:
        if c in ("id", "type", "element") or c in _ALL_POSITION_COLUMNS:
            continue
        v = np.asarray(values[c])
        try:
            v = v.astype(float)
        except ValueError:
            raise ValueError(f"{where}: column {c!r} is not numeric") from None
        atoms.new_array(c, v)
    atoms.info["timestep"] = hdr.timestep

    return Frame(
        atoms=atoms,
        source=str(path),
        index=hdr.index,
        timestep=hdr.timestep,
        columns=cols,
        dim=_detect_dim(positions, dim),
        boundary=hdr.boundary,
        triclinic=hdr.triclinic,
        info=dict(hdr.info),
        raw=raw,
    )


# --------------------------------------------------------------------------- LAMMPS dumps


def _ovito_mapping(columns):
    """OVITO column mapping: id and type (or element) to its typed properties, the rest verbatim.

    Every other column goes to a neutral property name, so that no column is interpreted (OVITO
    would otherwise turn ``vx`` into Velocity, merge ``c_cna`` into Structure Type, convert
    ``xs`` itself...): the values come back exactly as written in the file.
    """
    mapping, props = [], {}
    for i, c in enumerate(columns):
        if c == "id":
            prop = "Particle Identifier"
        elif c == "element" or (c == "type" and "element" not in columns):
            prop = "Particle Type"
        else:
            prop = f"giipcol{i}"
        if prop in props.values():  # a repeated column: read it once
            prop = None
        mapping.append(prop)
        props[c] = prop if prop is not None else props.get(c)
    return mapping, props


def _typed_values(prop):
    """(numeric ids, names per atom or None) of an OVITO typed property."""
    ids = np.asarray(prop[...]).astype(np.int64)
    names = {t.id: t.name for t in prop.types}
    if names and all(names.values()):
        uniq, inv = np.unique(ids, return_inverse=True)
        lut = np.array([names.get(int(u), str(int(u))) for u in uniq], dtype=str)
        return ids, lut[inv.reshape(-1)] if len(uniq) else np.zeros(0, dtype=str)
    return ids, None


class _OvitoDump:
    """One OVITO pipeline per file (and per column layout)."""

    def __init__(self, path):
        self.path = path
        self.import_file = _ovito_import_file()
        self.pipeline = None
        self.columns = None
        self.props = None

    def _pipeline_for(self, hdr):
        if self.pipeline is None or hdr.columns != self.columns:
            mapping, props = _ovito_mapping(hdr.columns)
            try:
                self.pipeline = self.import_file(
                    self.path, input_format="lammps/dump", multiple_frames=True, columns=mapping
                )
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{self.path}: OVITO cannot read this LAMMPS dump: {e}") from e
            self.columns, self.props = list(hdr.columns), props
        return self.pipeline

    def has(self, hdr) -> bool:
        """Whether OVITO found this frame (it stops before a damaged part of a file)."""
        return hdr.index < self._pipeline_for(hdr).num_frames

    def frame(self, hdr, type_names, dim) -> Frame:
        self._pipeline_for(hdr)
        try:
            data = self.pipeline.compute(hdr.index)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self.path}: frame {hdr.index}: OVITO cannot read it: {e}") from e
        parts = data.particles
        if parts.count != hdr.natoms:
            raise ValueError(
                f"{self.path}: frame {hdr.index}: OVITO read {parts.count} atoms, the header says {hdr.natoms}"
            )
        values = {}
        for c in hdr.columns:
            prop = self.props[c]
            if prop is None or c in values:
                continue
            if prop == "Particle Identifier":
                values[c] = np.asarray(parts[prop][...]).astype(np.int64)
            elif prop == "Particle Type":
                ids, names = _typed_values(parts[prop])
                if names is None and c == "element":  # numbers in the element column
                    names = ids.astype(str)
                values[c] = names if names is not None else ids
            else:
                values[c] = np.array(parts[prop][...], dtype=float)
        m = np.asarray(data.cell[...], dtype=float)
        return _assemble_lammps_frame(self.path, hdr, values, m[:, :3].T, m[:, 3], type_names, dim)


def _ase_dump_frame(path, hdr, block: bytes, type_names, dim) -> Frame:
    """Read one dump frame (its text) with ASE's LAMMPS reader."""
    import ase.io

    if not any(all(c in hdr.columns for c in t) for t in LAMMPS_POSITION_COLUMNS):
        raise _no_positions(f"{path} (frame {hdr.index}, timestep {hdr.timestep})", list(hdr.columns))
    text = block.decode()
    try:
        a = ase.io.read(io.StringIO(text), format="lammps-dump-text", order=False)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: frame {hdr.index}: ASE cannot read it: {e}") from e
    cols = hdr.columns
    values = {}
    for c in cols:
        if c in a.arrays and c not in ("numbers", "positions"):
            values[c] = a.arrays[c]
    # the columns that ASE's reader turns into other quantities (or drops), as written in the file
    rest = [c for c in dict.fromkeys(cols) if c not in values]
    if rest:
        lines = text.splitlines()[-hdr.natoms :] if hdr.natoms else []
        usecols = [cols.index(c) for c in rest]
        dtype = [(f"f{k}", "U64" if c == "element" else float) for k, c in enumerate(rest)]
        try:
            data = np.loadtxt(lines, dtype=dtype, usecols=usecols, ndmin=1)
        except ValueError as e:
            raise ValueError(f"{path}: frame {hdr.index}: cannot read the columns {rest}: {e}") from e
        for k, c in enumerate(rest):
            values[c] = data[f"f{k}"]
    return _assemble_lammps_frame(path, hdr, values, a.cell[:], a.get_celldisp(), type_names, dim)


def _needs_length(sel: slice) -> bool:
    return any(v is not None and v < 0 for v in (sel.start, sel.stop)) or (sel.step or 1) < 0


def _iter_dump(path, sel: slice, type_names, dim, reader):
    use_ovito = reader == "ovito"  # "auto": ASE's reader, exact to the last digit
    if reader == "ovito" and _ovito_import_file() is None:
        raise ImportError("reader='ovito' asked for, but the ovito module does not import")
    ovito = _OvitoDump(path) if use_ovito else None

    def make(hdr, block):
        if ovito is not None and ovito.has(hdr):
            return ovito.frame(hdr, type_names, dim)
        # without OVITO, or a complete frame that OVITO gave up on (it drops the frame before a
        # damaged part of the file): ASE's reader
        if block is None:
            block = read_block(path, hdr.start, hdr.end)
        return _ase_dump_frame(path, hdr, block, type_names, dim)

    def empty():
        return ValueError(f"{path}: no complete LAMMPS dump frame in this file")

    if _needs_length(sel):
        # negative indices or a reversed order: list the frame headers first (no atom data)
        headers = list(scan_dump(path))
        if not headers:
            raise empty()
        for i in range(*sel.indices(len(headers))):
            yield make(headers[i], None)
        return
    start, stop, step = sel.start or 0, sel.stop, sel.step or 1

    def wanted(i):
        return i >= start and (i - start) % step == 0 and (stop is None or i < stop)

    seen = False
    for hdr in scan_dump(path, keep=(None if ovito is not None else wanted)):
        seen = True
        if stop is not None and hdr.index >= stop:
            break
        if wanted(hdr.index):
            yield make(hdr, hdr.block)
    if not seen:
        raise empty()


# --------------------------------------------------------------------------- other formats


def _frame_from_ase_atoms(atoms: Atoms, source, index, type_names, dim) -> Frame:
    dim = _check_dim(dim)
    where = f"{source} (frame {index})"
    arrays = atoms.arrays
    types = arrays.get("type")
    if types is not None and np.asarray(types).dtype.kind in "iu" and (
        type_names or not np.any(atoms.numbers)
    ):
        species = names_from_types(types, type_names, where)
        atoms.numbers = symbols_for(species)
    elif "species" in arrays and np.asarray(arrays["species"]).dtype.kind == "U":
        species = np.asarray(arrays["species"])
    else:
        species = np.array(atoms.get_chemical_symbols(), dtype=str)
    if "species" in arrays:
        del arrays["species"]
    atoms.new_array("species", np.asarray(species, dtype=str))
    columns = []
    for k in list(arrays):
        if k == "numbers":
            columns.append("element")
        elif k == "positions":
            columns.extend(["x", "y", "z"])
        elif k != "species":
            columns.append(k)
    timestep = atoms.info.get("timestep")
    try:
        timestep = int(timestep) if timestep is not None else None
    except (TypeError, ValueError):
        timestep = None
    return Frame(
        atoms=atoms,
        source=str(source),
        index=index,
        timestep=timestep,
        columns=columns,
        dim=_detect_dim(atoms.positions, dim),
        boundary=None,
        triclinic=None,
    )


def _iter_ase(path, sel: slice, type_names, dim):
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    def fail(e):
        if isinstance(e, UnknownFileTypeError):
            return ValueError(
                f"{path}: unknown or unsupported file format ({e}); giip reads LAMMPS text dumps, "
                "extxyz, ASE .traj and the other formats of ase.io"
            )
        return ValueError(f"{path}: cannot read this file with ase.io: {type(e).__name__}: {e}")

    try:
        if _needs_length(sel):  # negative indices: count the frames first (one at a time)
            n = sum(1 for _ in ase.io.iread(path, index=":"))
            indices = iter(range(*sel.indices(n)))
        else:
            indices = iter(range(sel.start or 0, sel.stop if sel.stop is not None else 2**62, sel.step or 1))
        it = ase.io.iread(path, index=sel)
    except (UnknownFileTypeError, ValueError, OSError, KeyError, IndexError, EOFError) as e:
        raise fail(e) from e
    while True:
        try:
            atoms = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - every reader error names the file
            raise fail(e) from e
        yield _frame_from_ase_atoms(atoms, path, next(indices), type_names, dim)


# --------------------------------------------------------------------------- public entry point


def iter_frames(paths, frames=slice(None), type_names=None, dim=None, reader: str = "auto"):
    """Stream the frames of one or more trajectory files (a generator).

    Parameters
    ----------
    paths : a path or a list of paths (glob patterns are expanded when no such file exists).
    frames : ``slice`` / ``"start:stop:step"`` / int, applied to each file separately.
    type_names : ``{1: "Ni", 2: "Nb"}`` or ``"1=Ni,2=Nb"``: species names of numeric LAMMPS types
        (every type of a frame must be named). Without it a type ``1`` is species ``"1"``.
    dim : ``None`` detects 2D frames (all z equal); 2 or 3 forces it.
    reader : ``"auto"`` or ``"ase"`` (ASE's reader: numbers exactly as in the file) or ``"ovito"``
        (OVITO's reader for LAMMPS dumps: faster on very large frames, the last digit of some
        seventeen-digit numbers one unit off).

    Only one frame of a file is in memory at a time.
    """
    sel = parse_frames(frames)
    if sel.step == 0:
        raise ValueError("the frame step cannot be 0")
    names = parse_type_names(type_names) or None
    dim = _check_dim(dim)
    if reader not in ("auto", "ovito", "ase"):
        raise ValueError(f"reader must be 'auto', 'ovito' or 'ase', got {reader!r}")
    for path in expand_paths(paths):
        if not os.path.exists(path):
            raise FileNotFoundError(f"trajectory file not found: {path}")
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a trajectory file")
        if _is_lammps_dump(path):
            yield from _iter_dump(path, sel, names, dim, reader)
        else:
            yield from _iter_ase(path, sel, names, dim)
