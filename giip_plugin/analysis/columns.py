"""Names of the per-atom result columns, in one place for every output.

* **Dumps** (``giip apply``, the LAMMPS hook's ``dump custom``): ``d_giip_class``,
  ``d2_giip_dc[1] .. d2_giip_dc[k]``, ``d_giip_ref_distance``. These are LAMMPS' names of custom
  per-atom properties (``fix property/atom``), which OVITO, ASE's dump reader (it keeps only
  ``c_ f_ v_ d_ d2_ i_ i2_`` columns) and LAMMPS' ``read_dump`` all keep. ``prefix`` (default
  ``giip``) replaces ``giip``, to keep the columns of several references apart.
* **extxyz and ``atoms.arrays``**: ``giip_class``, ``giip_dc`` (an ``(n, k)`` array),
  ``giip_ref_distance`` (identifier-safe names that ASE's extxyz writer keeps).

:func:`read_columns` reads either back, and the ``giip_class`` / ``giip_dc1 .. giip_dck`` columns
of dumps written before these names.
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ["softness_name", "dump_names", "dump_columns", "array_columns", "read_columns", "check_prefix", "DEFAULT_PREFIX"]

DEFAULT_PREFIX = "giip"


def check_prefix(prefix: str) -> str:
    """The prefix of the result columns (and of the LAMMPS hook's fixes): letters, digits and
    underscores, not starting with a digit; else ``ValueError``."""
    prefix = str(prefix)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise ValueError(f"the column prefix must be letters, digits and underscores, got {prefix!r}")
    return prefix


def softness_name(prefix: str = DEFAULT_PREFIX) -> str:
    """The dump column of softness: ``d_softness`` (``d_P_softness`` for another prefix ``P``),
    written by ``giip apply SOFT.h5`` and the LAMMPS hook alike."""
    p = check_prefix(prefix)
    return "d_softness" if p == DEFAULT_PREFIX else f"d_{p}_softness"


def dump_names(n_coords: int, prefix: str = DEFAULT_PREFIX) -> dict:
    """``{"class": "d_P_class", "dc": ["d2_P_dc[1]", ...], "ref_distance": "d_P_ref_distance",
    "dc_array": "d2_P_dc"}`` for prefix ``P``."""
    p = check_prefix(prefix)
    return {"class": f"d_{p}_class", "dc": [f"d2_{p}_dc[{i + 1}]" for i in range(int(n_coords))],
            "ref_distance": f"d_{p}_ref_distance", "dc_array": f"d2_{p}_dc"}


def dump_columns(result, prefix: str = DEFAULT_PREFIX) -> dict:
    """``{column name: per-atom values}`` of an :class:`AnalysisResult` for a dump."""
    coords = np.asarray(result.coordinates, dtype=float).reshape(len(result.classes), -1)
    names = dump_names(coords.shape[1], prefix)
    out = {names["class"]: np.asarray(result.classes)}
    for j, name in enumerate(names["dc"]):
        out[name] = coords[:, j]
    out[names["ref_distance"]] = np.asarray(result.ref_distance, dtype=float)
    return out


def array_columns(result, prefix: str = DEFAULT_PREFIX) -> dict:
    """``{name: values}`` for extxyz and ``atoms.arrays``: ``P_class``, ``P_dc`` (n, k), ``P_ref_distance``."""
    p = check_prefix(prefix)
    return {f"{p}_class": np.asarray(result.classes), f"{p}_dc": np.asarray(result.coordinates, dtype=float),
            f"{p}_ref_distance": np.asarray(result.ref_distance, dtype=float)}


def read_columns(arrays: dict, n: int, prefix: str = DEFAULT_PREFIX):
    """``(classes, coordinates (n, k), ref_distance)`` from result columns in ``arrays`` (any of the
    namings above), or None when there are none."""
    p = check_prefix(prefix)
    for cls_name, dist_name, dc_names in (
        (f"d_{p}_class", f"d_{p}_ref_distance", lambda j: f"d2_{p}_dc[{j}]"),
        (f"{p}_class", f"{p}_ref_distance", lambda j: f"{p}_dc{j}"),  # dumps of earlier versions
        (f"d_{p}_class", f"d_{p}_ref_distance", lambda j: f"d_{p}_dc{j}"),  # --column-prefix d_
    ):
        if cls_name not in arrays:
            continue
        cols = []
        while dc_names(len(cols) + 1) in arrays:
            cols.append(np.asarray(arrays[dc_names(len(cols) + 1)], dtype=float).reshape(n))
        if not cols and f"{p}_dc" in arrays and cls_name == f"{p}_class":  # atoms.arrays / extxyz
            dc = np.asarray(arrays[f"{p}_dc"], dtype=float).reshape(n, -1)
        elif not cols and cls_name != f"{p}_class":
            continue
        else:
            dc = np.column_stack(cols) if cols else np.zeros((n, 0))
        cls = np.asarray(arrays[cls_name], dtype=float).reshape(n)
        cls = np.where(np.isfinite(cls), cls, -1).astype(np.int64)
        dist = np.asarray(arrays[dist_name], dtype=float).reshape(n) if dist_name in arrays else np.full(n, np.nan)
        return cls, dc, dist
    return None
