"""Local atomic environments from a structure (an ASE ``Atoms``, hence anything ASE or OVITO reads).

Neighbour search uses ``vesin`` (a compiled cell-list implementation that handles periodic,
free and mixed boundaries, triclinic cells and cells smaller than twice the cutoff).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cutoff import check_cutoffs, smooth_cutoff
from .environment_set import EnvironmentSet
from .species import SpeciesEncoding


def species_names(atoms, species=None) -> np.ndarray:
    """Species name of every atom, without a reference: :func:`giip_plugin.species.species_of`."""
    from ..species import species_of

    return species_of(atoms, species=species)


def _box_for_search(atoms, dim: int):
    """Positions, box and periodicity for the neighbour search, with a valid box for free directions."""
    pos = np.array(atoms.get_positions(), dtype=float)
    if not np.all(np.isfinite(pos)):
        bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
        raise ValueError(
            f"{len(bad)} atoms have NaN or infinite positions (first: index {bad[0]}); "
            "fix or remove them before the analysis"
        )
    cell = np.array(atoms.get_cell()[:], dtype=float)
    pbc = np.array(atoms.get_pbc(), dtype=bool)
    if dim == 2:
        if np.ptp(pos[:, 2]) > 1e-6 * max(1.0, np.abs(pos).max()):
            raise ValueError(
                "a 2D analysis needs all atoms in one plane (constant z); this structure has "
                f"z spread over {np.ptp(pos[:, 2]):.3g}"
            )
        if np.any(np.abs(cell[:2, 2]) > 1e-9) or np.any(np.abs(cell[2, :2]) > 1e-9):
            raise ValueError("a 2D analysis needs the z cell vector perpendicular to the plane")
        pos[:, 2] = 0.0
        pbc[2] = False
        cell[2] = [0.0, 0.0, 0.0]
    # Give free directions a cell vector (vesin wants a full box when any direction is periodic).
    lengths = np.linalg.norm(cell, axis=1)
    if not pbc.any():
        cell = np.zeros((3, 3))
    else:
        span = np.ptp(pos, axis=0).max() + 1.0 if len(pos) else 1.0
        for k in range(3):
            if not pbc[k] and lengths[k] < 1e-12:
                v = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
                if np.linalg.norm(v) < 1e-12:
                    v = np.eye(3)[k]
                cell[k] = v / np.linalg.norm(v) * (span + 1.0)
        if abs(np.linalg.det(cell)) < 1e-12:
            raise ValueError(f"the cell {cell.tolist()} is degenerate in a periodic direction")
    return pos, cell, pbc


def neighbor_pairs(atoms, cutoff: float, dim: int = 3):
    """All (i, j, D) with ``|D| < cutoff``, D = minimum-image-free vector from atom i to neighbour
    image j (every image within the cutoff is listed, also for cells smaller than 2*cutoff)."""
    from vesin import NeighborList

    pos, cell, pbc = _box_for_search(atoms, dim)
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, D = nl.compute(points=pos, box=cell, periodic=pbc if pbc.any() else False, quantities="ijD")
    return i.astype(np.int64), j.astype(np.int64), np.asarray(D, dtype=float)


@dataclass
class LocalEnvironments:
    """Compute object that extracts weighted local atomic environments.

    Parameters
    ----------
    r_inner, r_outer : weight 1 inside ``r_inner``, cubic spline to 0 at ``r_outer``.
    encoding : :class:`SpeciesEncoding` of neighbour species (default: ``none``).
    centers : species names to centre on (``None``: all atoms).
    dim : 3, or 2 for a 2D system (positions in the xy plane).
    species_sigma : optional ``{species: sigma}`` for per-atom Gaussian widths.

    ``compute(atoms)`` returns an :class:`EnvironmentSet` with one environment per centre.
    """

    r_inner: float
    r_outer: float
    encoding: SpeciesEncoding = field(default_factory=SpeciesEncoding)
    centers: tuple | None = None
    dim: int = 3
    species_sigma: dict | None = None

    def __post_init__(self):
        check_cutoffs(self.r_inner, self.r_outer)
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        if self.centers is not None:
            if isinstance(self.centers, str):
                self.centers = (self.centers,)
            self.centers = tuple(str(c) for c in self.centers)
        if self.species_sigma is not None:
            for s, v in self.species_sigma.items():
                if not (np.isfinite(v) and v > 0):
                    raise ValueError(f"sigma for species {s!r} must be positive, got {v}")

    def center_indices(self, atoms, species=None) -> np.ndarray:
        """Indices of the atoms that are centres under this setting."""
        names = species_names(atoms, species)
        if self.centers is None:
            return np.arange(len(atoms))
        missing = [c for c in self.centers if c not in set(names.tolist())]
        if len(missing) == len(self.centers):
            raise ValueError(
                f"the structure has no atoms of the centre species {list(self.centers)}; it has "
                f"{sorted(set(names.tolist()))} (check --centers and --type-names)"
            )
        return np.flatnonzero(np.isin(names, list(self.centers)))

    def compute(self, atoms, indices=None, species=None) -> EnvironmentSet:
        """Environments of ``indices`` (default: all centres) of ``atoms``."""
        names = species_names(atoms, species)
        if indices is None:
            indices = self.center_indices(atoms, names)
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(atoms)):
            raise IndexError(f"centre indices out of range for {len(atoms)} atoms")
        # channels of every atom (raises on species unknown to the encoding)
        w_species = self.encoding.encode(names)
        i, j, D = neighbor_pairs(atoms, self.r_outer, self.dim)
        # keep pairs whose centre is selected, in the order of `indices`
        order = np.full(len(atoms), -1, dtype=np.int64)
        order[indices] = np.arange(len(indices))
        keep = order[i] >= 0
        i, j, D = i[keep], j[keep], D[keep]
        r = np.linalg.norm(D, axis=1)
        f = smooth_cutoff(r, self.r_inner, self.r_outer)
        keep = f > 0
        i, j, D, f = i[keep], j[keep], D[keep], f[keep]
        k = order[i]
        srt = np.argsort(k, kind="stable")
        i, j, D, f, k = i[srt], j[srt], D[srt], f[srt], k[srt]
        counts = np.bincount(k, minlength=len(indices))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        weights = f[:, None] * w_species[j]
        sigmas = None
        if self.species_sigma is not None:
            missing = sorted(set(names[j].tolist()) - set(self.species_sigma))
            if missing:
                raise ValueError(f"no per-species sigma given for species {missing}")
            sigmas = np.array([self.species_sigma[s] for s in names[j]], dtype=float)
        return EnvironmentSet(D[:, : self.dim], weights, offsets, sigmas, indices)

    def to_dict(self) -> dict:
        return {
            "r_inner": float(self.r_inner),
            "r_outer": float(self.r_outer),
            "encoding": self.encoding.to_dict(),
            "centers": list(self.centers) if self.centers is not None else None,
            "dim": int(self.dim),
            "species_sigma": dict(self.species_sigma) if self.species_sigma else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LocalEnvironments":
        return cls(
            r_inner=d["r_inner"],
            r_outer=d["r_outer"],
            encoding=SpeciesEncoding.from_dict(d["encoding"]),
            centers=tuple(d["centers"]) if d.get("centers") else None,
            dim=int(d.get("dim", 3)),
            species_sigma=d.get("species_sigma") or None,
        )
