"""Trajectory input/output for the ``giip build`` and ``giip apply`` command lines.

* :func:`iter_frames` streams :class:`Frame` objects from LAMMPS text dumps (OVITO's reader, or
  ASE's), extxyz, ASE .traj and the other formats of ``ase.io``;
* :class:`AnnotatedWriter` writes frames with extra per-atom columns (LAMMPS text dump or extxyz),
  atomically.
"""
from .frames import Frame, iter_frames, parse_frames, parse_type_names
from .writers import AnnotatedWriter, writer_format

__all__ = ["Frame", "iter_frames", "parse_frames", "parse_type_names", "AnnotatedWriter", "writer_format"]
