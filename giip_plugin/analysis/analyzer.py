"""Applying a reference map to structures: the ASE calculator-style analyser.

``GIIPAnalyzer(reference)`` gives every atom of a structure

* ``giip_class`` -- the class of its nearest reference environment (-1: not analysed),
* ``giip_dc`` -- its selected diffusion coordinates (Nystrom extension; NaN: not analysed),
* ``giip_ref_distance`` -- its distance to the nearest reference environment (large: the
  environment is not represented in the reference; NaN: not analysed).

Atoms that are not centres under the reference (another species) are not analysed; nor are
centres with no neighbour inside the cutoff (a warning gives their count).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .species import check_species, resolve_species

PROPERTIES = ("giip_class", "giip_dc", "giip_ref_distance")


@dataclass
class AnalysisResult:
    """Per-atom results for one structure (arrays of length ``n_atoms``)."""

    classes: np.ndarray  # int, -1 where not analysed
    coordinates: np.ndarray  # (n_atoms, k), NaN where not analysed
    ref_distance: np.ndarray  # NaN where not analysed
    analysed: np.ndarray  # bool: centre atoms with at least one neighbour
    n_empty: int  # centres without neighbours inside the cutoff

    def as_arrays(self) -> dict:
        return {"giip_class": self.classes, "giip_dc": self.coordinates, "giip_ref_distance": self.ref_distance}

    def class_counts(self, n_classes: int) -> np.ndarray:
        c = self.classes[self.classes >= 0]
        return np.bincount(c, minlength=n_classes)


#: a structure whose centres have on average more than this many times the training set's mean
#: number of neighbours is not at the reference's length scale (nm against Angstrom, compressed)
DENSE_FACTOR = 2.5
#: a neighbour closer than this fraction of the closest neighbour distance of the whole training
#: set means overlapping atoms (or lengths in other units)
OVERLAP_FACTOR = 0.5


def _scale_problem(message: str, strict: bool):
    if strict:
        raise ValueError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_scale(envs, ref, strict: bool = True) -> None:
    """Compare the environments of a structure with the reference's training set; far outside it
    (other length units, a compressed or exploded structure, atoms on top of each other), raise
    ``ValueError`` (``strict``) or warn.

    * more than half of the centres without a neighbour inside ``r_outer`` (too sparse);
    * a mean neighbour count above :data:`DENSE_FACTOR` times the training set's (too dense);
    * any neighbour closer than :data:`OVERLAP_FACTOR` times the training set's closest one.

    The LAMMPS hook is not strict (a vapour or an evaporating surface is legitimate there); files
    and structures given by a user are.
    """
    n = len(envs)
    if n == 0:
        return
    r_outer = ref.environments.r_outer
    counts = envs.counts
    n_empty = int(np.sum(counts == 0))
    if n_empty > 0.5 * n and n >= 4:
        _scale_problem(
            f"{n_empty} of {n} centre atoms have no neighbour within the reference's cutoff "
            f"r_outer = {r_outer:g}: the length units probably differ from the "
            "reference's (e.g. nm or LJ units against Angstrom); convert the structure or use a "
            "matching reference", strict)
        return
    train_mean = float(np.mean(ref.training.counts))
    mean = float(np.mean(counts))
    if train_mean > 0 and mean > DENSE_FACTOR * train_mean:
        _scale_problem(
            f"the centre atoms have {mean:.1f} neighbours within r_outer = {r_outer:g} on average, the "
            f"reference's training environments {train_mean:.1f}: the length units probably differ from "
            "the reference's (e.g. nm against Angstrom) or the structure is compressed; convert the "
            "structure or use a matching reference", strict)
        return
    train_min = float(np.min(ref.training.nearest_distances()))
    if np.isfinite(train_min) and train_min > 0:
        near = envs.nearest_distances()
        close = int(np.sum(near < OVERLAP_FACTOR * train_min))
        if close:
            _scale_problem(
                f"{close} of {n} centre atoms have a neighbour closer than {OVERLAP_FACTOR * train_min:.3g} "
                f"(closest: {float(np.min(near)):.3g}; the reference's training environments have none "
                f"closer than {train_min:.3g}): overlapping atoms, or lengths in other units than the "
                "reference's; check the structure", strict)


def check_density(atoms, ref, strict: bool = True) -> None:
    """Before any neighbour list: a periodic structure whose number density would give far more
    neighbours inside ``r_outer`` than the training environments have (lengths in nm against an
    Angstrom reference give 1,000 times more, and a neighbour list of that size would exhaust the
    memory) raises ``ValueError`` (``strict``) or warns. Non-periodic structures are checked
    after their environments are computed (:func:`check_scale`)."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    dim = ref.dim
    if len(atoms) < 2 or not pbc[:dim].all():
        return
    cell = np.asarray(atoms.cell[:], dtype=float)
    size = abs(np.linalg.det(cell)) if dim == 3 else abs(np.linalg.det(cell[:2, :2]))
    if not size > 0:
        return
    r = ref.environments.r_outer
    expected = len(atoms) / size * (4.0 / 3.0 * np.pi * r**3 if dim == 3 else np.pi * r**2)
    train_mean = float(np.mean(ref.training.counts))
    if train_mean > 0 and expected > 2 * DENSE_FACTOR * train_mean:
        _scale_problem(
            f"the structure's number density gives about {expected:.0f} neighbours within r_outer = {r:g} "
            f"per atom, the reference's training environments have {train_mean:.1f}: the length units "
            "probably differ from the reference's (e.g. nm against Angstrom) or the structure is "
            "compressed; convert the structure or use a matching reference", strict)


def load_reference(reference):
    from ..reference import ReferenceMap

    if isinstance(reference, ReferenceMap):
        return reference
    return ReferenceMap.load(reference)


class GIIPAnalyzer(Calculator):
    """Classify and map every atom against a saved GIIP reference map.

    Parameters
    ----------
    reference : a :class:`~giip_plugin.ReferenceMap` or the path of a reference file.
    device : "cpu", "cuda" or None (CUDA when available).
    dtype : "float64" (default) or "float32".
    progress : show a progress bar while distances are computed.
    fast : coarse rotation searches for all distances, exact ones for the nearest few references
        of each atom (:meth:`ReferenceMap.transform` ``fast=True``): about 4 times faster (NiNb;
        about 100 with 1,500+ references and a C compiler), classes as the exact path for nearly
        every atom, coordinates within a fraction of a percent.

    Use it as an ASE calculator (``atoms.calc = GIIPAnalyzer(ref)``, then
    ``atoms.calc.get_property("giip_class", atoms)``; results are cached until the atoms change),
    or call :meth:`annotate` to write the results into ``atoms.arrays``, or :meth:`analyze`.
    """

    implemented_properties = list(PROPERTIES)
    name = "GIIPAnalyzer"

    def __init__(self, reference, *, device=None, dtype=None, progress: bool = False, fast: bool = False,
                 strict: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.reference = load_reference(reference)
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.fast = bool(fast)
        self.strict = bool(strict)
        self.last_result: AnalysisResult | None = None

    # -- the analysis -------------------------------------------------------------------------
    @property
    def n_coords(self) -> int:
        return int(self.reference.n_coords)

    @property
    def n_classes(self) -> int:
        return int(self.reference.n_classes)

    def center_mask(self, atoms, species=None) -> np.ndarray:
        names = resolve_species(atoms, self.reference) if species is None else np.asarray(species).astype(str)
        centers = self.reference.environments.centers
        if centers is None:
            return np.ones(len(atoms), dtype=bool)
        return np.isin(names, list(centers))

    def analyze(self, atoms, indices=None, species=None, *, strict: bool | None = None) -> AnalysisResult:
        """Results for every atom of ``atoms`` (only ``indices`` are analysed if given).

        ``strict`` (default: the analyser's) raises on a structure far outside the reference's
        length scale (:func:`check_scale`); ``strict=False`` warns instead."""
        ref = self.reference
        n = len(atoms)
        names = resolve_species(atoms, ref) if species is None else np.asarray(species).astype(str)
        check_species(names, ref)
        is_center = self.center_mask(atoms, names)
        if indices is not None:
            sel = np.zeros(n, dtype=bool)
            sel[np.asarray(indices, dtype=np.int64)] = True
            is_center &= sel
        elif not is_center.any():
            present = sorted(set(names.tolist()))
            raise ValueError(
                f"the structure has no atoms of the reference's centre species {list(ref.environments.centers)} "
                f"(it has {present}); check the type names or use a matching reference"
            )
        centers = np.flatnonzero(is_center)
        strict = self.strict if strict is None else bool(strict)
        check_density(atoms, ref, strict=strict)
        envs = ref.environments.compute(atoms, indices=centers, species=names)
        has_nb = envs.counts > 0
        n_empty = int((~has_nb).sum())
        check_scale(envs, ref, strict=strict)
        if n_empty:
            warnings.warn(
                f"{n_empty} centre atoms have no neighbour within r_outer = {ref.environments.r_outer:g}; "
                "they get class -1 and NaN coordinates",
                RuntimeWarning,
                stacklevel=2,
            )
        classes = np.full(n, -1, dtype=np.int64)
        coords = np.full((n, self.n_coords), np.nan)
        dist = np.full(n, np.nan)
        ok = centers[has_nb]
        if len(ok):
            res = ref.transform(envs.subset(np.flatnonzero(has_nb)), progress=self.progress, device=self.device,
                                fast=self.fast)
            classes[ok] = res.classes
            coords[ok] = res.coordinates
            dist[ok] = res.distance
        analysed = np.zeros(n, dtype=bool)
        analysed[ok] = True
        result = AnalysisResult(classes, coords, dist, analysed, n_empty)
        self.last_result = result
        return result

    def annotate(self, atoms, indices=None):
        """Write ``giip_class``, ``giip_dc`` (n x k) and ``giip_ref_distance`` into ``atoms.arrays``
        (names that survive extxyz round trips) and return ``atoms``."""
        res = self.analyze(atoms, indices=indices)
        for key, val in res.as_arrays().items():
            if key in atoms.arrays:
                del atoms.arrays[key]
            atoms.set_array(key, val)
        return atoms

    # -- ASE calculator interface -------------------------------------------------------------
    def calculate(self, atoms=None, properties=PROPERTIES, system_changes=all_changes):
        for p in properties or ():
            if p not in PROPERTIES:
                raise PropertyNotImplementedError(f"GIIPAnalyzer computes {PROPERTIES}, not {p!r}")
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self.analyze(self.atoms).as_arrays())
