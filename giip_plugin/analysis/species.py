"""Species names of a structure as the reference map knows them."""
from __future__ import annotations

import numpy as np


def resolve_species(atoms, reference) -> np.ndarray:
    """Species name of every atom, matched to the names used by ``reference``.

    Order of preference: an ``atoms.arrays['species']`` column (set by giip's readers); numeric
    LAMMPS types (``atoms.arrays['type']``) through the reference's ``type_names``; the chemical
    symbols; and, when the symbols are unknown to the reference but it names numeric types, the
    atomic numbers read as LAMMPS types (what ``ase.io.read(..., format="lammps-dump-text")``
    gives: type 1 -> H, type 2 -> He).
    """
    known = set(reference.species or ())
    type_names = {int(k): str(v) for k, v in (reference.type_names or {}).items()}
    if "species" in atoms.arrays:
        names = np.asarray(atoms.arrays["species"]).astype(str)
        if known and not set(names.tolist()) <= known and type_names:
            # numeric type strings ("1", "2") from a reader that was not given the names
            try:
                return np.array([type_names[int(s)] for s in names])
            except (KeyError, ValueError):
                pass
        return names
    if "type" in atoms.arrays and type_names:
        types = np.asarray(atoms.arrays["type"]).astype(int)
        missing = sorted(set(types.tolist()) - set(type_names))
        if missing:
            raise ValueError(
                f"LAMMPS types {missing} are not named by the reference (it knows {type_names}); "
                "the structure does not match the reference's species"
            )
        return np.array([type_names[t] for t in types])
    symbols = np.asarray(atoms.get_chemical_symbols()).astype(str)
    if known and not set(symbols.tolist()) <= known and type_names:
        numbers = atoms.get_atomic_numbers()
        if set(numbers.tolist()) <= set(type_names):
            return np.array([type_names[int(z)] for z in numbers])
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
