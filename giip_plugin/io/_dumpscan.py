"""Light scan of LAMMPS text dump *headers* (frames, columns, box), streaming.

This module never interprets atom lines: it only counts them to find where each frame ends (the
atom data are read by OVITO or ASE). It reads the file in large binary chunks, so memory stays
bounded however long the trajectory is, and skipping the atom lines of a frame costs about as much
as reading them from disk.
"""
from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_CHUNK = 1 << 22  # 4 MiB


def open_binary(path):
    """Open a possibly gzip-compressed file for binary reading."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def looks_like_lammps_dump(path) -> bool:
    """True when the first non-blank line of the file is a LAMMPS dump ``ITEM:`` line."""
    try:
        with open_binary(path) as f:
            head = f.read(4096)
    except (OSError, EOFError):
        return False
    for line in head.splitlines():
        s = line.strip()
        if s:
            return s.startswith(b"ITEM:") and (
                b"TIMESTEP" in s or b"UNITS" in s or b"TIME" in s or b"NUMBER OF ATOMS" in s
            )
    return False


@dataclass
class DumpHeader:
    """What the header of one frame of a LAMMPS text dump says."""

    index: int  # frame index in the file
    line: int  # 1-based line number of the frame's first line
    timestep: int | None
    natoms: int
    box_items: list  # words after "ITEM: BOX BOUNDS", e.g. ["xy", "xz", "yz", "pp", "pp", "pp"]
    box_lines: list  # the three bound lines, as text
    columns: list  # column names after "ITEM: ATOMS"
    start: int  # byte offset of the frame in the (uncompressed) stream
    end: int  # byte offset just after its last atom line
    info: dict = field(default_factory=dict)  # other header items (UNITS, TIME)
    block: bytes | None = None  # the frame's text, when asked for

    @property
    def boundary(self) -> tuple:
        """Boundary flags per axis, e.g. ("pp", "pp", "ff")."""
        flags = [w for w in self.box_items if w not in ("xy", "xz", "yz", "abc", "origin")]
        if len(flags) >= 3:
            return tuple(flags[-3:])
        return ("pp", "pp", "pp")

    @property
    def triclinic(self) -> bool:
        return "xy" in self.box_items or any(len(l.split()) > 2 for l in self.box_lines)


class _Lines:
    """Buffered line reader over a binary stream that can skip or take n lines quickly."""

    def __init__(self, f):
        self.f = f
        self.buf = b""
        self.pos = 0
        self.offset = 0  # stream offset of buf[0]
        self.eof = False
        self._nl = None
        self.partial = False  # the stream ended inside a line

    def tell(self) -> int:
        return self.offset + self.pos

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(_CHUNK)
        if not data:
            self.eof = True
            return False
        self.offset += self.pos
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        self._nl = None
        return True

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos : i + 1]
                self.pos = i + 1
                return line
            if not self._fill():
                line = self.buf[self.pos :]
                self.pos = len(self.buf)
                return line

    def _newlines(self):
        if self._nl is None:  # positions of all newlines of the buffer, once per fill
            self._nl = np.flatnonzero(np.frombuffer(self.buf, np.uint8) == 10)
        return self._nl

    def take(self, n: int, keep: bool):
        """Advance over ``n`` lines; return (lines taken, their bytes or None)."""
        parts = [] if keep else None
        taken = 0
        while taken < n:
            nl = self._newlines()
            k0 = int(np.searchsorted(nl, self.pos))
            available = len(nl) - k0
            need = n - taken
            if available >= need:
                stop = int(nl[k0 + need - 1]) + 1
                if keep:
                    parts.append(self.buf[self.pos : stop])
                self.pos = stop
                taken = n
                break
            if available:
                stop = int(nl[-1]) + 1
                if keep:
                    parts.append(self.buf[self.pos : stop])
                self.pos = stop
                taken += available
            if not self._fill():
                # a last line without a newline is not taken: LAMMPS ends every line with one, so
                # the file was cut inside that line (possibly inside a number: "16.91" -> "1")
                self.partial = self.pos < len(self.buf)
                break
        return taken, (b"".join(parts) if keep else None)


def scan_dump(path, keep=None, warn_truncated: bool = True):
    """Yield a :class:`DumpHeader` for each complete frame of a LAMMPS text dump, lazily.

    ``keep(index) -> bool`` asks for the frame's text (``header.block``). An incomplete last frame
    (a trajectory still being written, or cut short) is skipped with a warning: one with fewer atom
    lines than its header says, or whose last line has no line end (LAMMPS ends every line with
    one; a file cut inside a number would otherwise read as complete with a wrong last value).
    Anything else that is not a LAMMPS dump raises ``ValueError`` naming the file and line.
    """
    path = str(path)
    with open_binary(path) as f:
        r = _Lines(f)
        lineno = 0
        index = 0
        while True:
            start = r.tell()
            first_line = lineno + 1
            header_parts = []
            timestep, natoms, box_items, box_lines, columns, info = None, None, None, None, None, {}
            truncated = False
            while True:  # header items up to and including "ITEM: ATOMS"
                line = r.readline()
                if not line:
                    truncated = bool(header_parts)
                    break
                lineno += 1
                s = line.strip()
                if not s:
                    if not header_parts:
                        start = r.tell()
                        first_line = lineno + 1
                    continue
                if not s.startswith(b"ITEM:"):
                    raise ValueError(
                        f"{path}: line {lineno} is not a LAMMPS dump 'ITEM:' line "
                        f"(found {s[:60].decode(errors='replace')!r}); is this a LAMMPS text dump?"
                    )
                header_parts.append(line)
                item = s[5:].decode(errors="replace").strip()
                if item.startswith("ATOMS"):
                    columns = item.split()[1:]
                    break
                if item.startswith("BOX BOUNDS"):
                    box_items = item.split()[2:]
                    lines = [r.readline() for _ in range(3)]
                    if not all(l.endswith(b"\n") for l in lines):
                        truncated = True
                        break
                    header_parts.extend(lines)
                    lineno += 3
                    box_lines = [l.decode().strip() for l in lines]
                    continue
                value = r.readline()
                if not value.endswith(b"\n"):
                    truncated = True
                    break
                lineno += 1
                header_parts.append(value)
                text = value.decode(errors="replace").strip()
                try:
                    if item.startswith("TIMESTEP"):
                        timestep = int(text.split()[0])
                    elif item.startswith("NUMBER OF ATOMS"):
                        natoms = int(text.split()[0])
                    else:
                        info[item.lower()] = text
                except (ValueError, IndexError):
                    raise ValueError(
                        f"{path}: line {lineno}: cannot read the value of 'ITEM: {item}' "
                        f"(found {text[:60]!r})"
                    ) from None
            if truncated:
                if warn_truncated:
                    warnings.warn(
                        f"{path}: frame {index} (from line {first_line}) is incomplete, the file "
                        "ends inside it (still being written, or cut short); it is skipped",
                        stacklevel=3,
                    )
                return
            if columns is None:  # clean end of file
                return
            missing = [n for n, v in (("NUMBER OF ATOMS", natoms), ("BOX BOUNDS", box_lines)) if v is None]
            if missing:
                raise ValueError(
                    f"{path}: frame {index} (line {first_line}) has no 'ITEM: {missing[0]}' "
                    "section; is this a LAMMPS text dump?"
                )
            want = bool(keep(index)) if keep is not None else False
            taken, block = r.take(natoms, want)
            lineno += taken
            if taken < natoms:
                if warn_truncated:
                    cut = (" and a cut last line (no line end: the file ends inside a line)"
                           if r.partial else "")
                    warnings.warn(
                        f"{path}: frame {index} (from line {first_line}) is incomplete: "
                        f"{taken} of {natoms} atom lines{cut} before the end of the file (still "
                        "being written, or cut short); it is skipped, the frames before it are kept",
                        stacklevel=3,
                    )
                return
            yield DumpHeader(
                index=index,
                line=first_line,
                timestep=timestep,
                natoms=natoms,
                box_items=box_items,
                box_lines=box_lines,
                columns=columns,
                start=start,
                end=r.tell(),
                info=info,
                block=(b"".join(header_parts) + block) if want else None,
            )
            index += 1


def read_block(path, start: int, end: int) -> bytes:
    """The bytes ``[start, end)`` of the (uncompressed) file."""
    with open_binary(path) as f:
        f.seek(start)
        return f.read(end - start)
