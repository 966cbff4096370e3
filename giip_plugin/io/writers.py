"""Writing frames with extra per-atom columns: LAMMPS text dumps and extxyz, atomically.

The dump keeps every column of the input with its input values (scaled coordinates stay scaled),
then the extra columns; OVITO (Basic included) and ASE read it back. Output goes to a temporary
file beside the target, renamed over it on a clean close: a run that fails or is interrupted never
leaves a truncated or half-written output, and an older output stays untouched.
"""
from __future__ import annotations

import gzip
import io
import os
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from .atomic import open_temp, remove_stale
from .frames import _ALL_POSITION_COLUMNS, _SCALED, LAMMPS_POSITION_COLUMNS, Frame

__all__ = ["AnnotatedWriter", "writer_format", "format_lammps_dump_frame"]

_FORMATS = ("lammps-dump", "extxyz")
_ALIASES = {
    "lammps-dump": "lammps-dump",
    "lammps-dump-text": "lammps-dump",
    "lammps": "lammps-dump",
    "dump": "lammps-dump",
    "lammpstrj": "lammps-dump",
    "extxyz": "extxyz",
    "xyz": "extxyz",
}


def writer_format(path, fmt=None) -> str:
    """The output format for ``path``: ``"lammps-dump"`` or ``"extxyz"``.

    By extension: ``.dump``, ``.lammpstrj``, ``.txt`` (or any name containing "dump") give a
    LAMMPS text dump, ``.xyz`` / ``.extxyz`` extxyz; a trailing ``.gz`` compresses either.
    """
    if fmt is not None:
        key = str(fmt).lower()
        if key not in _ALIASES:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {list(_FORMATS)}")
        return _ALIASES[key]
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith((".dump", ".lammpstrj", ".lammpsdump", ".txt")) or "dump" in name:
        return "lammps-dump"
    raise ValueError(
        f"cannot tell the output format from the name {str(path)!r}: use a .dump / .lammpstrj "
        "(LAMMPS text dump) or .xyz / .extxyz (extxyz) name, or give the format"
    )


# --------------------------------------------------------------------------- formatting


def _as_text_column(v, float_format=None) -> list:
    """Text of one column: integers as integers, floats exact (shortest repr) or by format."""
    v = np.asarray(v)
    kind = v.dtype.kind
    if kind == "b":
        v, kind = v.astype(np.int64), "i"
    if kind in "iu":
        return list(map(str, v.tolist()))
    if kind == "f":
        vals = v.astype(float).tolist()
        if float_format:
            return [float_format % x for x in vals]
        out = list(map(repr, vals))  # shortest text that reads back to the same double; nan -> "nan"
        return [s[:-2] if s.endswith(".0") else s for s in out]  # "3.0" -> "3", like %g
    # text (species, element names): one token each
    return ["".join(str(s).split()) or "_" for s in v.tolist()]


def _lammps_box(cell, origin, positions):
    """LAMMPS form of a cell: (lo, (lx, ly, lz), (xy, xz, yz), positions in that frame).

    A cell that is not already lower-triangular (a along x, b in the xy plane) is rotated, and the
    positions with it. A missing cell (non-periodic structure) becomes the atoms' bounding box.
    """
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    origin = np.asarray(origin, dtype=float).reshape(3)
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        lo = pos.min(axis=0) if len(pos) else np.zeros(3)
        hi = pos.max(axis=0) if len(pos) else np.ones(3)
        ext = np.where(hi - lo > 0, hi - lo, 1.0)
        return lo, ext, np.zeros(3), pos, False
    scale = np.abs(cell).max()
    if max(abs(cell[0, 1]), abs(cell[0, 2]), abs(cell[1, 2])) > 1e-12 * scale or np.any(np.diag(cell) <= 0):
        q, r = np.linalg.qr(cell.T)  # cell.T = q r  ->  cell = r.T q.T
        signs = np.sign(np.diag(r))
        signs[signs == 0] = 1
        q, r = q * signs, (r.T * signs).T
        if np.linalg.det(q) < 0:
            raise ValueError("a left-handed cell cannot be written as a LAMMPS box")
        cell = r.T
        pos = origin + (pos - origin) @ q
    lengths = np.array([cell[0, 0], cell[1, 1], cell[2, 2]])
    tilts = np.array([cell[1, 0], cell[2, 0], cell[2, 1]])
    return origin, lengths, tilts, pos, True


def _boundary(frame: Frame) -> tuple:
    pbc = np.asarray(frame.atoms.pbc, dtype=bool)
    flags = tuple(frame.boundary) if frame.boundary else ()
    if len(flags) == 3 and all((f[:1] == "p") == bool(p) for f, p in zip(flags, pbc)):
        return flags
    return tuple("pp" if p else "ff" for p in pbc)


def _flat_extra(extra: dict, n: int, prefix: str = "") -> dict:
    """Per-atom extra arrays -> {column name: 1-D array}; 2-D arrays give name1 ... namek."""
    out = {}
    for name, v in (extra or {}).items():
        name = prefix + str(name)
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"extra column name {name!r} must be non-empty without blanks")
        v = np.asarray(v)
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(f"extra column {name!r} has shape {v.shape}, expected ({n}, ...) per atom")
        if v.ndim == 1:
            out[name] = v
        elif v.ndim == 2:
            for k in range(v.shape[1]):
                out[f"{name}{k + 1}"] = v[:, k]
        else:
            raise ValueError(f"extra column {name!r} has {v.ndim} dimensions; 1 or 2 are written")
    return out


def _default_columns(frame: Frame, species) -> list:
    """The input's columns; for a frame not read from a dump: id, type, [element,] x, y, z, arrays."""
    if frame.boundary is not None and frame.columns:
        return list(frame.columns)
    skip = {"numbers", "positions", "species", "id", "type", "element", "x", "y", "z"}
    others = [c for c in (frame.columns or frame.atoms.arrays) if c not in skip and c in frame.atoms.arrays]
    uniq = np.unique(np.asarray(species, dtype=str))
    element = ["element"] if len(uniq) and all(s in chemical_symbols[1:] for s in uniq) else []
    return ["id", "type"] + element + ["x", "y", "z"] + others


class _TypeNumbers:
    """Numeric types for frames without LAMMPS types, stable across the frames of one output.

    ``type_names`` ({1: "Ni", 2: "Nb"}, e.g. a reference's) fixes the numbers of those species, so
    that a dump written from an extxyz input numbers its types as the reference does; species not
    named there get the next free numbers in order of appearance.
    """

    def __init__(self, type_names=None):
        self.map = {}
        for t, name in sorted((type_names or {}).items()):
            self.map.setdefault(str(name), int(t))

    def __call__(self, species) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(species, dtype=str), return_inverse=True)
        for s in uniq:
            if s not in self.map:
                self.map[s] = max(self.map.values(), default=0) + 1
        return np.array([self.map[s] for s in uniq], dtype=np.int64)[inv.reshape(-1)]


def format_lammps_dump_frame(
    frame: Frame, extra: dict | None = None, float_format=None, type_numbers=None, extra_prefix: str = ""
) -> str:
    """Text of one LAMMPS dump frame: the input's columns then the extra columns.

    ``extra_prefix`` goes in front of the extra columns' names (``"d_"`` makes ASE's dump reader,
    which keeps only ``c_ f_ v_ d_ i_`` columns, read them too).
    """
    atoms = frame.atoms
    n = len(atoms)
    flat = _flat_extra(extra, n, extra_prefix)
    origin = frame.origin
    lo, lengths, tilts, pos, periodic_cell = _lammps_box(atoms.cell[:], origin, atoms.positions)
    species = atoms.arrays.get("species")
    if species is None:
        species = np.array(atoms.get_chemical_symbols(), dtype=str)
    cols = [c for c in _default_columns(frame, species) if c not in flat]
    triclinic = bool(np.any(tilts != 0) or frame.triclinic)

    triplet = next((t for t in LAMMPS_POSITION_COLUMNS if all(c in cols for c in t)), None)
    raw = dict(frame.raw or {})
    scaled = None
    if triplet is not None and triplet[0] in _SCALED:
        if all(c in raw and len(raw[c]) == n for c in triplet):
            s = np.column_stack([raw[c] for c in triplet])
            back = origin + s @ atoms.cell[:]
            tol = 1e-9 * max(1.0, float(np.abs(atoms.cell[:]).max()))
            if not np.allclose(back, atoms.positions, rtol=0, atol=tol):
                raw = {k: v for k, v in raw.items() if k not in triplet}  # positions were changed
        if not all(c in raw for c in triplet):
            if not periodic_cell:
                raise ValueError("scaled coordinates need a cell; this frame has none")
            cellm = np.diag(lengths)
            cellm[1, 0], cellm[2, 0], cellm[2, 1] = tilts
            scaled = (pos - lo) @ np.linalg.inv(cellm)
    text_cols, names = [], []
    for c in cols:
        a = atoms.arrays
        if c == "id":
            v = a["id"] if "id" in a else np.arange(1, n + 1)
        elif c == "type":
            if "type" in a:
                v = a["type"]
            elif frame.boundary is None and type_numbers is not None:
                v = type_numbers(species)  # not from a dump: number the species
            else:
                v = species  # type labels of the input dump
        elif c == "element":
            v = species
        elif c in _ALL_POSITION_COLUMNS:
            axis = "xyz".index(c[0])
            if c in raw and len(raw[c]) == n:
                v = raw[c]
            elif c in _SCALED:
                if scaled is None or triplet is None or c not in triplet:
                    raise ValueError(f"no values for the input column {c!r}")
                v = scaled[:, axis]
            else:
                v = pos[:, axis]
        elif c in a:
            v = a[c]
        else:
            raise ValueError(
                f"the input column {c!r} is not in the frame's atoms.arrays; cannot write it"
            )
        v = np.asarray(v)
        if v.ndim == 2:
            for k in range(v.shape[1]):
                names.append(f"{c}{k + 1}")
                text_cols.append(_as_text_column(v[:, k], float_format))
        else:
            names.append(c)
            text_cols.append(_as_text_column(v, float_format))
    for c, v in flat.items():
        names.append(c)
        text_cols.append(_as_text_column(v, float_format))

    r = repr
    head = []
    units = (frame.info or {}).get("units")
    if units:
        head += ["ITEM: UNITS", str(units)]
    if (frame.info or {}).get("time"):
        head += ["ITEM: TIME", str(frame.info["time"])]
    timestep = frame.timestep if frame.timestep is not None else frame.index
    head += ["ITEM: TIMESTEP", str(int(timestep)), "ITEM: NUMBER OF ATOMS", str(n)]
    flags = " ".join(_boundary(frame))
    hi = lo + lengths
    if triclinic:
        xy, xz, yz = (float(t) for t in tilts)
        xlo_b = lo[0] + min(0.0, xy, xz, xy + xz)
        xhi_b = hi[0] + max(0.0, xy, xz, xy + xz)
        ylo_b = lo[1] + min(0.0, yz)
        yhi_b = hi[1] + max(0.0, yz)
        head += [
            f"ITEM: BOX BOUNDS xy xz yz {flags}",
            f"{r(float(xlo_b))} {r(float(xhi_b))} {r(xy)}",
            f"{r(float(ylo_b))} {r(float(yhi_b))} {r(xz)}",
            f"{r(float(lo[2]))} {r(float(hi[2]))} {r(yz)}",
        ]
    else:
        head += [f"ITEM: BOX BOUNDS {flags}"] + [f"{r(float(lo[k]))} {r(float(hi[k]))}" for k in range(3)]
    head.append("ITEM: ATOMS " + " ".join(names))
    body = "\n".join(map(" ".join, zip(*text_cols))) if n else ""
    return "\n".join(head) + "\n" + (body + "\n" if n else "")


# --------------------------------------------------------------------------- extxyz


def _extxyz_atoms(frame: Frame, extra: dict | None) -> Atoms:
    a = frame.atoms.copy()
    a.calc = None
    a.arrays.pop("species", None)  # extxyz keeps the species in its own "species" column
    for name, v in (extra or {}).items():
        v = np.asarray(v)
        if v.ndim == 0 or v.shape[0] != len(a):
            raise ValueError(f"extra column {name!r} has shape {v.shape}, expected ({len(a)}, ...) per atom")
        if v.dtype.kind == "b":
            v = v.astype(np.int64)
        if name in a.arrays:
            del a.arrays[name]
        a.new_array(str(name), v)
    info = {k: v for k, v in a.info.items() if np.isscalar(v)}
    if frame.timestep is not None:
        info["timestep"] = int(frame.timestep)
    a.info = info
    return a


# --------------------------------------------------------------------------- the writer


class AnnotatedWriter:
    """Write frames plus extra per-atom columns to ``path``, atomically.

    >>> with AnnotatedWriter("out.dump") as w:          # doctest: +SKIP
    ...     for frame in iter_frames("in.dump"):
    ...         w.write(frame, {"giip_class": cls, "giip_dc": dc})

    ``fmt``: ``"lammps-dump"`` or ``"extxyz"`` (default: from the extension, see
    :func:`writer_format`). ``float_format`` (e.g. ``"%.6g"``) shortens float columns; by default
    floats are written exactly (the shortest text that reads back to the same number).
    ``extra_prefix`` (dump only, e.g. ``"d_"``) goes in front of the extra columns' names: ASE's
    dump reader drops columns whose names do not start with ``c_ f_ v_ d_ i_`` (OVITO keeps all).
    ``type_names`` ({1: "Ni", 2: "Nb"}) numbers the ``type`` column of frames that have no LAMMPS
    types (read from extxyz, say) by those names, as the reference map does.
    The output appears only when the writer closes without error after at least one frame; until
    then it is a hidden temporary file beside the target, removed if the ``with`` block raises.
    Temporary files of the same target left by killed processes are removed when a writer opens
    (:func:`giip_plugin.io.atomic.remove_stale`).
    """

    def __init__(self, path, fmt=None, *, float_format=None, extra_prefix: str = "", type_names=None):
        self.path = Path(path)
        self.format = writer_format(path, fmt)
        self.float_format = float_format
        self.extra_prefix = str(extra_prefix or "")
        self.n_frames = 0
        self._fh = None
        self._tmp = None
        self._types = _TypeNumbers(type_names)
        self._open()

    def _open(self):
        parent = self.path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"cannot write {self.path}: the folder {parent} does not exist")
        if self.path.is_dir():
            raise IsADirectoryError(f"cannot write {self.path}: it is a directory; give a file name")
        remove_stale(self.path, ".part")
        fd, tmp = open_temp(self.path, ".part")
        self._tmp = tmp
        self._file = os.fdopen(fd, "wb")
        self._bin = self._file
        if self.path.name.lower().endswith(".gz"):
            self._bin = gzip.GzipFile(fileobj=self._file, mode="wb", filename="", mtime=0)
        self._fh = io.TextIOWrapper(self._bin, encoding="utf-8", newline="\n")

    @property
    def closed(self) -> bool:
        return self._fh is None

    def write(self, frame, extra: dict | None = None) -> None:
        """Append one frame (a :class:`Frame` or an ``ase.Atoms``) with its extra per-atom arrays."""
        if self._fh is None:
            raise ValueError(f"the writer of {self.path} is closed")
        if isinstance(frame, Atoms):
            frame = Frame.from_atoms(frame, index=self.n_frames)
        if self.format == "lammps-dump":
            self._fh.write(
                format_lammps_dump_frame(
                    frame, extra, self.float_format, type_numbers=self._types, extra_prefix=self.extra_prefix
                )
            )
        else:
            import ase.io

            ase.io.write(self._fh, _extxyz_atoms(frame, extra), format="extxyz")
        self.n_frames += 1

    def close(self) -> None:
        """Finish: flush, then rename the temporary file onto the target.

        A writer that was given no frame writes nothing: the target is left as it was and
        ``ValueError`` is raised.
        """
        if self._fh is None:
            return
        if self.n_frames == 0:
            self.abort()
            raise ValueError(f"no frame was written; {self.path} was left as it was")
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            if self._bin is not self._file:
                fh.close()  # ends the gzip stream; the file beneath stays open
            self._file.flush()
            os.fsync(self._file.fileno())
            if not fh.closed:
                fh.close()
            if not self._file.closed:
                self._file.close()
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException as exc:
            self._remove_tmp()
            if isinstance(exc, OSError):  # name the target, not the hidden temporary file
                raise OSError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
            raise

    def abort(self) -> None:
        """Drop what was written; the target is left as it was."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            for f in (fh, self._file):
                try:
                    f.close()
                except Exception:  # noqa: BLE001
                    pass
        self._remove_tmp()

    def _remove_tmp(self):
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):  # a writer dropped without close() leaves no output, never a partial one
        try:
            if self._fh is not None:
                warnings.warn(
                    f"AnnotatedWriter({str(self.path)!r}) was never closed; nothing was written",
                    ResourceWarning,
                    stacklevel=2,
                )
            self.abort()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"AnnotatedWriter({str(self.path)!r}, fmt={self.format!r}, {self.n_frames} frame(s), {state})"
