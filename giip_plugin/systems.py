"""One conversion from a user's system to the ``ase.Atoms`` that the analysis works on (like
freud's ``from_system``): every integration calls :func:`from_system` instead of converting on its
own.

Accepted systems:

* an ``ase.Atoms`` (used as it is);
* a :class:`giip_plugin.io.Frame` (its atoms);
* an OVITO ``DataCollection`` (positions, the cell and its periodicity, particle types: named types
  give the species, unnamed ones are numeric types);
* a tuple ``(cell, positions, pbc, types)``: a ``(3, 3)`` cell (rows; None for no cell), ``(n, 3)``
  positions, periodicity (a bool or three), per-atom numeric LAMMPS types or species names (None:
  all atoms alike). The LAMMPS hook passes its local and ghost atoms this way.

The species of the atoms are then decided by :func:`giip_plugin.species.species_of`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["from_system"]


def _from_tuple(system):
    from ase import Atoms

    if len(system) != 4:
        raise ValueError(
            f"a system tuple is (cell, positions, pbc, types), got {len(system)} items"
        )
    cell, positions, pbc, types = system
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"positions must have shape (n, 3), got {pos.shape}")
    if pos.shape[1] == 2:
        pos = np.column_stack([pos, np.zeros(len(pos))])
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).tolist()
    if cell is None:
        if any(pbc):
            raise ValueError("a periodic system needs a cell")
        atoms = Atoms(positions=pos, pbc=False)
    else:
        atoms = Atoms(positions=pos, cell=np.asarray(cell, dtype=float).reshape(3, 3), pbc=pbc)
    if types is not None:
        t = np.asarray(types)
        if len(t) != len(pos):
            raise ValueError(f"{len(t)} types for {len(pos)} atoms")
        if t.dtype.kind in "iu" or (t.dtype.kind == "f" and np.all(t == np.rint(t))):
            atoms.new_array("type", t.astype(np.int64))
        else:
            atoms.new_array("species", t.astype(str))
    return atoms


def _from_ovito(data):
    from ase import Atoms

    from .species import symbols_for

    parts = data.particles
    pos = np.array(parts.positions, dtype=float)
    cell = data.cell
    if cell is None:
        atoms = Atoms(positions=pos, pbc=False)
    else:
        atoms = Atoms(positions=pos, cell=np.array(cell[:, :3], dtype=float).T, pbc=[bool(p) for p in cell.pbc],
                      celldisp=np.array(cell[:, 3], dtype=float))
    if "Particle Type" in parts:
        ptypes = parts.particle_types
        ids = np.asarray(ptypes[...], dtype=np.int64)
        atoms.new_array("type", ids)
        named = {int(t.id): str(t.name) for t in ptypes.types if t.name}
        if named:  # named types give the species; unnamed ones their number as text
            uniq, inv = np.unique(ids, return_inverse=True)
            species = np.array([named.get(int(i), str(int(i))) for i in uniq], dtype=str)[inv.reshape(-1)]
            atoms.new_array("species", species)
            atoms.numbers = symbols_for(species)
    return atoms


def from_system(system):
    """The ``ase.Atoms`` of a system (see the module docstring); raises ``TypeError`` for anything
    else, naming what is accepted."""
    from ase import Atoms

    if isinstance(system, Atoms):
        return system
    if hasattr(system, "atoms") and hasattr(system, "source") and isinstance(system.atoms, Atoms):  # a Frame
        return system.atoms
    if hasattr(system, "particles") and hasattr(system, "cell"):  # an OVITO DataCollection
        if system.particles is None or system.particles.count == 0:
            raise ValueError("the system has no particles")
        return _from_ovito(system)
    if isinstance(system, tuple):
        return _from_tuple(system)
    raise TypeError(
        f"cannot analyse a {type(system).__name__}: give an ase.Atoms, a giip_plugin.io.Frame, an OVITO "
        "DataCollection or a (cell, positions, pbc, types) tuple"
    )
