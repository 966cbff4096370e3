"""Analysed atoms of a set of frames: their diffusion coordinates, classes and physical quantities.

:func:`collect_samples` reads frames and gives every analysed atom (a centre atom of the
reference with at least one neighbour)

* its class and selected diffusion coordinates: read from the result columns when the input was
  written by ``giip apply`` or the LAMMPS hook (``d_giip_class``, ``d2_giip_dc[1..k]``; so the
  expensive step is done once), computed with :class:`~giip_plugin.analysis.GIIPAnalyzer`
  otherwise (optionally for a random subset of the centre atoms: ``max_atoms`` per frame);
* the quantities of :mod:`.quantities` (coordination, neighbour species fractions, Voronoi
  volume, the input's per-atom columns).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .quantities import frame_quantities

__all__ = ["Samples", "collect_samples", "annotation_columns"]


@dataclass
class Samples:
    """Analysed atoms of some frames, concatenated (row = atom)."""

    coordinates: np.ndarray  # (n, k) selected diffusion coordinates (dc1..dck)
    classes: np.ndarray  # (n,)
    ref_distance: np.ndarray  # (n,)
    quantities: dict  # name -> (n,)
    frame: np.ndarray  # (n,) running frame number over all inputs
    atom_index: np.ndarray  # (n,) index of the atom in its frame
    sources: list = field(default_factory=list)  # "file:frame" of each running frame number
    annotated: bool = False  # coordinates read from giip apply columns

    def __len__(self) -> int:
        return len(self.classes)

    def subset(self, mask) -> "Samples":
        return Samples(self.coordinates[mask], self.classes[mask], self.ref_distance[mask],
                       {k: v[mask] for k, v in self.quantities.items()}, self.frame[mask], self.atom_index[mask],
                       list(self.sources), self.annotated)

    @classmethod
    def concatenate(cls, parts) -> "Samples":
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        names = [k for k in parts[0].quantities if all(k in p.quantities for p in parts)]
        offs = np.cumsum([0] + [len(p.sources) for p in parts[:-1]])
        return cls(
            np.concatenate([p.coordinates for p in parts]),
            np.concatenate([p.classes for p in parts]),
            np.concatenate([p.ref_distance for p in parts]),
            {k: np.concatenate([p.quantities[k] for p in parts]) for k in names},
            np.concatenate([p.frame + o for p, o in zip(parts, offs)]),
            np.concatenate([p.atom_index for p in parts]),
            [s for p in parts for s in p.sources],
            all(p.annotated for p in parts),
        )


def annotation_columns(atoms, n_coords: int | None = None):
    """``(classes, coordinates, distance)`` from the result columns of ``atoms`` (those of
    ``giip apply`` or the LAMMPS hook: :func:`giip_plugin.analysis.columns.read_columns`), or None
    when the atoms carry none. Raises when the number of coordinates differs from ``n_coords``."""
    from ..analysis.columns import read_columns

    got = read_columns(atoms.arrays, len(atoms))
    if got is None:
        return None
    cls, dc, dist = got
    if n_coords is not None and dc.shape[1] != n_coords:
        raise ValueError(
            f"the input has {dc.shape[1]} diffusion-coordinate columns but the reference has {n_coords} "
            "diffusion coordinates: it was annotated with another reference (use --recompute, or the "
            "reference it was made with)"
        )
    return cls, dc, dist


def collect_samples(reference, inputs, *, frames=None, type_names=None, dim=None, max_atoms: int | None = None,
                    seed: int = 0, recompute: bool = False, voronoi: bool = True, columns: bool = True,
                    device=None, progress: bool = False, log=None, symmetry: dict | None = None,
                    strain: dict | None = None) -> Samples:
    """Analysed atoms of the frames of ``inputs`` (paths, or ``ase.Atoms`` / ``Frame`` objects).

    ``max_atoms``: analyse (or, for annotated inputs, keep) at most this many randomly chosen
    analysed atoms per frame (seeded by ``seed``; None = all). ``recompute`` ignores ``giip_*``
    columns of the input. ``type_names`` defaults to the reference's. ``dim``: None detects 2D
    frames (all z equal), which must match the reference; 2 or 3 forces it. ``symmetry``: the
    symmetry measures to add (:func:`.quantities.frame_quantities`). ``strain``: ``{"reference":
    path or ase.Atoms, "cutoff": c}``, the atomic strain of every frame against that reference
    configuration (a path: its first frame, read with the same type names and dimension).
    """
    from ..analysis import GIIPAnalyzer
    from ..species import check_species, species_of
    from ..io import Frame, iter_frames

    ref = reference
    if ref.environments is None:
        raise ValueError("this reference has no environment settings (built from an environment set); "
                         "it cannot analyse structures")
    say = log or (lambda msg: None)
    tnames = type_names if type_names else (dict(ref.type_names) or None)
    if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__"):
        inputs = [inputs]
    inputs = list(inputs)
    if inputs and all(isinstance(p, (str, bytes)) or hasattr(p, "__fspath__") for p in inputs):
        frame_iter = iter_frames([str(p) for p in inputs], frames=frames if frames is not None else slice(None),
                                 type_names=tnames, dim=dim)
    else:
        frame_iter = (f if isinstance(f, Frame) else Frame.from_atoms(f, source="<atoms>", index=k,
                                                                      type_names=tnames, dim=dim)
                      for k, f in enumerate(inputs))
    if strain and not hasattr(strain["reference"], "arrays"):
        path = os.fspath(strain["reference"])
        if not os.path.exists(path):
            raise ValueError(f"strain reference not found: {path}")
        first = next(iter_frames(path, type_names=tnames, dim=dim), None)
        if first is None:
            raise ValueError(f"the strain reference {path} holds no frame")
        strain = {**strain, "reference": first.atoms}
    rng = np.random.default_rng(seed)
    analyzer = None
    parts = []
    for nf, frame in enumerate(frame_iter):
        if frame.dim != ref.dim:
            raise ValueError(f"{frame.source} frame {frame.index} is {frame.dim}D but the reference is {ref.dim}D")
        atoms = frame.atoms
        names = species_of(atoms, reference=ref)
        check_species(names, ref, f"{frame.source} frame {frame.index}")
        ann = None if recompute else annotation_columns(atoms, ref.n_coords)
        if ann is not None:
            cls, dc, dist = ann
            ok = np.flatnonzero((cls >= 0) & np.all(np.isfinite(dc), axis=1))
            if max_atoms is not None and len(ok) > max_atoms:
                ok = np.sort(rng.choice(ok, size=int(max_atoms), replace=False))
            cls, dc, dist = cls[ok], dc[ok], dist[ok]
            say(f"{frame.source} frame {frame.index}: {len(ok)} annotated atoms")
        else:
            if analyzer is None:
                analyzer = GIIPAnalyzer(ref, device=device, progress=progress)
            centres = np.flatnonzero(analyzer.center_mask(atoms, names))
            if len(centres) == 0:
                raise ValueError(f"{frame.source} frame {frame.index} has no atoms of the reference's centre "
                                 f"species {list(ref.centers or [])}")
            sub = centres
            if max_atoms is not None and len(centres) > max_atoms:
                sub = np.sort(rng.choice(centres, size=int(max_atoms), replace=False))
            say(f"{frame.source} frame {frame.index}: analysing {len(sub)} of {len(centres)} centre atoms")
            res = analyzer.analyze(atoms, indices=sub, species=names)
            ok = np.flatnonzero(res.analysed)
            cls, dc, dist = res.classes[ok], res.coordinates[ok], res.ref_distance[ok]
        q = frame_quantities(atoms, ref.environments, ok, names, species=list(ref.species) or None,
                             voronoi=voronoi, columns=columns, dim=frame.dim, symmetry=symmetry, strain=strain)
        parts.append(Samples(np.asarray(dc, float).reshape(len(ok), -1), cls, dist, q, np.full(len(ok), 0),
                             ok, [f"{frame.source}:{frame.index}"], ann is not None))
    if not parts:
        raise ValueError("no frames were read from the inputs (check --frames)")
    out = Samples.concatenate(parts)
    if len(out) == 0:
        raise ValueError("no analysed atoms in the inputs (no centre atom of the reference has neighbours)")
    return out
