"""Motifs: local environments as a fixed number of neighbour slots, the input of the generative model.

A motif holds the ``n`` nearest neighbours of a centre within the cutoff of the environment
settings (:class:`~giip_plugin.environments.LocalEnvironments`), sorted by distance, as positions
relative to the centre and species codes; an environment with fewer neighbours fills its last
slots with *absent* atoms (position 0, species -1). With ``n`` at least the largest neighbour
count, a motif is the environment itself: :meth:`Motifs.to_environments` gives back the GIIP
environment (the same smooth-cutoff weights and species channels), so generated motifs can be
measured with the GIIP distance and placed on a reference map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..environments import EnvironmentSet, LocalEnvironments
from ..environments.cutoff import smooth_cutoff

__all__ = ["Motifs", "species_of_weights"]


def species_of_weights(weights: np.ndarray, encoding) -> np.ndarray:
    """Species index (into :func:`species_names_of`) of each neighbour from its weight channels."""
    w = np.asarray(weights, dtype=float)
    if encoding.mode == "none":
        return np.zeros(len(w), dtype=np.int64)
    if encoding.mode == "sign":
        pos = encoding.species.index(encoding.positive or encoding.species[0])
        return np.where(w[:, 0] > 0, pos, 1 - pos).astype(np.int64)
    return np.argmax(w, axis=1).astype(np.int64)


def species_names_of(encoding) -> tuple:
    """The species a motif distinguishes: the encoding's, or one unnamed species ("X") for ``none``."""
    return tuple(encoding.species) if encoding.mode != "none" else ("X",)


@dataclass(frozen=True, eq=False)
class Motifs:
    """``N`` motifs of ``n`` slots: ``positions`` ``(N, n, dim)`` relative to the centre (0 for an
    absent slot), ``species`` ``(N, n)`` indices into ``species_names`` (-1: absent)."""

    positions: np.ndarray
    species: np.ndarray
    species_names: tuple

    def __post_init__(self):
        pos = np.array(self.positions, dtype=float)
        spc = np.array(self.species, dtype=np.int64)
        if pos.ndim != 3 or pos.shape[2] not in (2, 3):
            raise ValueError(f"motif positions must have shape (N, n, 2 or 3), got {pos.shape}")
        if spc.shape != pos.shape[:2]:
            raise ValueError(f"motif species must have shape {pos.shape[:2]}, got {spc.shape}")
        if spc.size and (spc.max() >= len(self.species_names) or spc.min() < -1):
            raise ValueError(f"motif species codes must lie in -1 .. {len(self.species_names) - 1}")
        pos[spc < 0] = 0.0
        pos.setflags(write=False)
        spc.setflags(write=False)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "species", spc)
        object.__setattr__(self, "species_names", tuple(str(s) for s in self.species_names))

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n(self) -> int:
        return self.positions.shape[1]

    @property
    def dim(self) -> int:
        return self.positions.shape[2]

    @property
    def present(self) -> np.ndarray:
        return self.species >= 0

    @property
    def counts(self) -> np.ndarray:
        return self.present.sum(1)

    def subset(self, index) -> "Motifs":
        return Motifs(self.positions[index], self.species[index], self.species_names)

    @classmethod
    def concatenate(cls, parts) -> "Motifs":
        parts = list(parts)
        return cls(np.concatenate([p.positions for p in parts]), np.concatenate([p.species for p in parts]),
                   parts[0].species_names)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_environments(cls, envs: EnvironmentSet, encoding, n: int | None = None) -> "Motifs":
        """Motifs of the environments ``envs`` computed with species ``encoding``: the ``n`` nearest
        neighbours of each (default ``n``: the largest count, so nothing is dropped)."""
        counts = envs.counts
        if n is None:
            n = int(counts.max()) if len(counts) else 1
        n = int(n)
        if n < 1:
            raise ValueError(f"a motif needs at least 1 neighbour slot, got n = {n}")
        N, dim = len(envs), envs.dim
        pos = np.zeros((N, n, dim))
        spc = np.full((N, n), -1, dtype=np.int64)
        codes = species_of_weights(envs.weights, encoding)
        r = np.linalg.norm(envs.positions, axis=1)
        for k in range(N):
            a, b = envs.offsets[k], envs.offsets[k + 1]
            order = a + np.argsort(r[a:b], kind="stable")[:n]
            m = len(order)
            pos[k, :m] = envs.positions[order]
            spc[k, :m] = codes[order]
        return cls(pos, spc, species_names_of(encoding))

    @classmethod
    def from_structure(cls, atoms, local: LocalEnvironments, n: int | None = None, indices=None,
                       species=None) -> "Motifs":
        """Motifs of the centre atoms (or ``indices``) of a structure under the settings ``local``."""
        return cls.from_environments(local.compute(atoms, indices=indices, species=species), local.encoding, n)

    @classmethod
    def from_points(cls, positions, species, species_names, n: int) -> "Motifs":
        """One motif from neighbour positions relative to the centre (sorted here by distance) and
        their species names."""
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 2:
            raise ValueError(f"neighbour positions must have shape (m, dim), got {positions.shape}")
        names = [str(s) for s in species]
        if len(names) != len(positions):
            raise ValueError(f"{len(names)} species for {len(positions)} neighbours")
        unknown = sorted(set(names) - set(species_names))
        if unknown:
            raise ValueError(f"species {unknown} are unknown to the model, which knows {list(species_names)}")
        if len(positions) > n:
            raise ValueError(f"{len(positions)} neighbours, more than the model's {n} slots")
        order = np.argsort(np.linalg.norm(positions, axis=1), kind="stable")
        pos = np.zeros((1, n, positions.shape[1]))
        spc = np.full((1, n), -1, dtype=np.int64)
        pos[0, : len(order)] = positions[order]
        spc[0, : len(order)] = [list(species_names).index(names[i]) for i in order]
        return cls(pos, spc, species_names)

    # ------------------------------------------------------------------ orders
    def sorted_by_distance(self) -> "Motifs":
        """Each motif's present neighbours by distance from the centre, absent slots last."""
        r = np.where(self.present, np.linalg.norm(self.positions, axis=2), np.inf)
        order = np.argsort(r, axis=1, kind="stable")
        return Motifs(np.take_along_axis(self.positions, order[..., None], 1),
                      np.take_along_axis(self.species, order, 1), self.species_names)

    def aligned_to(self, prototype: np.ndarray, progress: bool = False) -> "Motifs":
        """Each motif's neighbours reordered to follow the slots of ``prototype`` (``(n, dim)``
        positions): the motif is matched to the prototype by rotation, reflection and assignment
        (:func:`~giip_plugin.generate.gram.synchronise` with ``match``), and the neighbour matched
        to the prototype's slot ``j`` goes to slot ``j`` (unmatched slots are absent). Positions
        are not rotated; only their order changes, which the input order cannot affect."""
        from .gram import synchronise

        proto = np.asarray(prototype, dtype=float)
        if proto.shape != (self.n, self.dim):
            raise ValueError(f"the prototype must have shape {(self.n, self.dim)}, got {proto.shape}")
        pos = np.zeros_like(self.positions)
        spc = np.full_like(self.species, -1)
        it = range(len(self))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="aligning motifs", unit="motif")
        for k in it:
            m = np.flatnonzero(self.present[k])
            if len(m) == 0:
                continue
            _, _, (a, b) = synchronise(self.positions[k][m], proto, match=True)
            pos[k, b] = self.positions[k][m[a]]
            spc[k, b] = self.species[k][m[a]]
        return Motifs(pos, spc, self.species_names)

    # ------------------------------------------------------------------ conversion
    def to_environments(self, local: LocalEnvironments) -> EnvironmentSet:
        """The GIIP environments of these motifs under ``local`` (its smooth cutoff and species
        encoding), as :meth:`LocalEnvironments.compute` would give them."""
        if local.dim != self.dim:
            raise ValueError(f"the motifs are {self.dim}D, the environment settings {local.dim}D")
        present = self.present
        pos = self.positions[present]
        names = np.asarray(self.species_names, dtype=object)[self.species[present]].astype(str)
        f = smooth_cutoff(np.linalg.norm(pos, axis=1), local.r_inner, local.r_outer)
        weights = f[:, None] * local.encoding.encode(names) if len(pos) else np.zeros((0, local.encoding.n_channels))
        offsets = np.concatenate([[0], np.cumsum(present.sum(1))]).astype(np.int64)
        sigmas = None
        if local.species_sigma is not None:
            sigmas = np.array([local.species_sigma[s] for s in names], dtype=float)
        return EnvironmentSet(pos, weights, offsets, sigmas)

    def to_atoms(self, k: int, center: str | None = None, spacing: float = 0.0):
        """Motif ``k`` as ``ase.Atoms``: the centre (species ``center``, default the motif's first
        species) at the origin, then its present neighbours; species names that are not chemical
        symbols are stored as ``atoms.arrays['species']`` with placeholder elements."""
        from ase import Atoms

        m = self.present[k]
        pos = np.zeros((1 + int(m.sum()), 3))
        pos[1:, : self.dim] = self.positions[k][m]
        names = [center or self.species_names[0]] + [self.species_names[s] for s in self.species[k][m]]
        symbols = [_symbol(s, i) for i, s in enumerate(names)]
        atoms = Atoms(symbols=[s for s in symbols], positions=pos)
        atoms.arrays["species"] = np.array(names)
        return atoms

    def nearest_pair_distances(self, include_center: bool = True) -> np.ndarray:
        """The smallest distance between two atoms of each motif (the centre counted as an atom at
        the origin unless ``include_center=False``; ``inf`` for fewer than two atoms)."""
        out = np.full(len(self), np.inf)
        for k in range(len(self)):
            p = self.positions[k][self.present[k]]
            if include_center:
                p = np.vstack([np.zeros((1, self.dim)), p])
            if len(p) < 2:
                continue
            d = np.linalg.norm(p[:, None] - p[None], axis=2)
            out[k] = d[np.triu_indices(len(p), 1)].min()
        return out


def _symbol(name: str, i: int) -> str:
    from ase.data import chemical_symbols

    if name in chemical_symbols[1:]:
        return name
    return "X"
