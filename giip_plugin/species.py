"""Which species every atom has: one set of rules for every entry point (readers, environments,
the ASE analyser, the OVITO modifier, the LAMMPS hook, the command line).

* **Type names** ``{1: "Ni", 2: "Nb"}`` name numeric LAMMPS types; :func:`parse_type_names` reads
  them from ``"1=Ni,2=Nb"``, a dict, or a list of the names of types 1, 2, ...
* **An atom's species** (:func:`species_of`), in order of preference: names given explicitly; a
  ``species`` array (set by the readers: an ``element`` column, or named types; numeric strings
  ``"1"``, ``"2"`` are named by the type names); numeric ``type`` through the type names; the
  chemical symbols; and, for a structure whose symbols the reference does not know but whose
  atomic numbers it names as types, those numbers (what a plain
  ``ase.io.read(..., format="lammps-dump-text")`` gives: type 1 -> H, type 2 -> He).
* **An element column wins over numeric types**; type names that contradict it are an error
  (:func:`check_types_match_elements`).
* **Against a reference** (:func:`check_species`): species the reference's encoding does not
  know are an error naming the fix.
"""
from __future__ import annotations

import re

import numpy as np

__all__ = [
    "parse_type_names",
    "format_type_names",
    "names_from_types",
    "check_types_match_elements",
    "species_of",
    "check_species",
    "reference_type_numbers",
    "symbols_for",
]


def parse_type_names(text) -> dict:
    """``"1=Ni,2=Nb"`` -> ``{1: "Ni", 2: "Nb"}`` (a dict is checked and passed through; a list or
    tuple names types 1, 2, ...; ``None`` or ``""`` gives ``{}``).

    Pairs are separated by commas (or blanks); each is ``TYPE=NAME`` with a positive integer
    LAMMPS type and a name without blanks.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    elif isinstance(text, (list, tuple)):
        items = [(i + 1, v) for i, v in enumerate(text)]
    else:
        if not isinstance(text, str):
            raise ValueError(f"type names must be text like '1=Ni,2=Nb', got {text!r}")
        items = []
        for part in re.split(r"[,\s]+", re.sub(r"\s*=\s*", "=", text.strip())):
            if not part:
                continue
            if part.count("=") != 1:
                raise ValueError(
                    f"malformed type names {text!r}: {part!r} is not TYPE=NAME; "
                    "expected e.g. '1=Ni,2=Nb'"
                )
            items.append(tuple(s.strip() for s in part.split("=")))
    out = {}
    for t, name in items:
        try:
            ti = int(t)
            if isinstance(t, float) and t != ti:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(
                f"malformed type names {text!r}: type {t!r} is not an integer; expected e.g. '1=Ni,2=Nb'"
            ) from None
        name = str(name)
        if ti < 1:
            raise ValueError(f"malformed type names {text!r}: LAMMPS types start at 1, got {ti}")
        if not name or re.search(r"\s", name):
            raise ValueError(f"malformed type names {text!r}: type {ti} has an empty or blank name")
        if ti in out:
            raise ValueError(f"malformed type names {text!r}: type {ti} is named twice")
        out[ti] = name
    return out


def format_type_names(type_names: dict) -> str:
    """``{1: "Ni", 2: "Nb"}`` -> ``"1=Ni,2=Nb"``."""
    return ",".join(f"{k}={v}" for k, v in sorted((int(k), str(v)) for k, v in (type_names or {}).items()))


def symbols_for(species) -> np.ndarray:
    """Atomic numbers from species names that are element symbols (0, i.e. 'X', otherwise)."""
    from ase.data import atomic_numbers

    uniq, inv = np.unique(np.asarray(species).astype(str), return_inverse=True)
    nums = np.array([atomic_numbers.get(str(s), 0) for s in uniq], dtype=int)
    return nums[inv.reshape(-1)]


def names_from_types(types, type_names: dict | None, where: str = "the structure") -> np.ndarray:
    """Species names of numeric LAMMPS ``types`` through ``type_names`` (every type must be
    named), or the type numbers as text when no names are given."""
    types = np.asarray(types).astype(np.int64)
    uniq, inv = np.unique(types, return_inverse=True)
    if type_names:
        unknown = [int(t) for t in uniq if int(t) not in type_names]
        if unknown:
            suggestion = format_type_names(type_names) + "," + ",".join(f"{t}=NAME" for t in unknown)
            raise ValueError(
                f"{where}: LAMMPS type(s) {unknown} have no name in the type names given "
                f"({format_type_names(type_names)}); add them to --type-names, e.g. --type-names {suggestion}"
            )
        names = np.array([type_names[int(t)] for t in uniq], dtype=str)
    else:
        names = np.array([str(int(t)) for t in uniq], dtype=str)
    return names[inv.reshape(-1)] if len(uniq) else np.zeros(0, dtype=str)


def check_types_match_elements(types, element, type_names: dict, where: str) -> None:
    """Raise when a numeric type is named (``type_names``) otherwise than the element column says."""
    pairs = np.unique(np.column_stack([np.asarray(types).astype(str), np.asarray(element).astype(str)]), axis=0)
    bad = [(int(t), e) for t, e in pairs.tolist() if int(t) in type_names and type_names[int(t)] != e]
    if bad:
        found = ", ".join(f"type {t} is {e}" for t, e in bad)
        in_file = format_type_names({int(t): e for t, e in pairs.tolist()})
        raise ValueError(
            f"{where}: the element column contradicts the type names {format_type_names(type_names)} "
            f"({found} in the file); the element column is what the file says: pass --type-names "
            f"{in_file} (type_names=...) to read it, or correct the file"
        )


def reference_type_numbers(reference) -> dict:
    """The LAMMPS type numbers of a reference's species: its type names, else its species in order
    (1, 2, ...), for writing a ``type`` column that a later analysis reads back right."""
    if reference.type_names:
        return {int(k): str(v) for k, v in reference.type_names.items()}
    return {i + 1: str(s) for i, s in enumerate(reference.species)}


def species_of(atoms, *, species=None, type_names=None, reference=None) -> np.ndarray:
    """Species name of every atom of an ``ase.Atoms`` (see the module docstring for the rules).

    ``species``: names given explicitly (one per atom); ``type_names``: names of numeric types
    (default: the reference's); ``reference``: a :class:`~giip_plugin.ReferenceMap` whose species
    and type names the result is matched to.
    """
    n = len(atoms)
    if species is not None:
        names = np.asarray(species).astype(str)
        if len(names) != n:
            raise ValueError(f"{len(names)} species names for {n} atoms")
        return names
    known = set(reference.species or ()) if reference is not None else set()
    names_of = parse_type_names(type_names) if type_names is not None else {}
    if not names_of and reference is not None:
        names_of = {int(k): str(v) for k, v in (reference.type_names or {}).items()}
    arrays = atoms.arrays
    if "species" in arrays:
        names = np.asarray(arrays["species"]).astype(str)
        if names_of and (not known or not set(names.tolist()) <= known):
            # numeric type strings ("1", "2") from a reader that was not given the names
            uniq, inv = np.unique(names, return_inverse=True)
            named = [names_of.get(int(u), u) if u.isdigit() else u for u in uniq.tolist()]
            return np.array(named, dtype=str)[inv.reshape(-1)]
        return names
    if "type" in arrays and names_of and np.asarray(arrays["type"]).dtype.kind in "iuf":
        # named types get their names, unnamed ones their number as text ("3"), which
        # check_species then reports as a species the reference does not know
        types = np.asarray(arrays["type"]).astype(np.int64)
        uniq, inv = np.unique(types, return_inverse=True)
        return np.array([names_of.get(int(t), str(int(t))) for t in uniq], dtype=str)[inv.reshape(-1)]
    if "type" in arrays and np.asarray(arrays["type"]).dtype.kind in "iu" and not np.any(atoms.numbers):
        return names_from_types(arrays["type"], None)  # unnamed numeric types: "1", "2", ...
    symbols = np.asarray(atoms.get_chemical_symbols()).astype(str)
    if known and not set(symbols.tolist()) <= known and names_of:
        numbers = atoms.get_atomic_numbers()
        if set(numbers.tolist()) <= set(names_of):
            return np.array([names_of[int(z)] for z in numbers])
    return symbols


def check_species(names, reference, where: str = "the structure") -> None:
    """Raise ``ValueError`` if ``names`` has species that the reference's encoding does not know."""
    enc = reference.encoding
    if enc is None or enc.mode == "none":
        return
    unknown = sorted(set(np.asarray(names).astype(str).tolist()) - set(enc.species))
    if unknown:
        raise ValueError(
            f"{where} has species {unknown} that the reference does not know (it was built with "
            f"{list(enc.species)}); give the right type names (e.g. --type-names 1={enc.species[0]},...) "
            "or use a reference built for these species"
        )
