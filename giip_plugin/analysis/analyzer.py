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

from ..species import check_species, parse_type_names, species_of
from ..systems import from_system
from ..validation import check_device

PROPERTIES = ("giip_class", "giip_dc", "giip_ref_distance")


@dataclass
class AnalysisResult:
    """Per-atom results for one structure (arrays of length ``n_atoms``)."""

    classes: np.ndarray  # int, -1 where not analysed
    coordinates: np.ndarray  # (n_atoms, k), NaN where not analysed
    ref_distance: np.ndarray  # distance to the nearest reference environment; NaN where not analysed
    analysed: np.ndarray  # bool: centre atoms with at least one neighbour
    n_empty: int  # centres without neighbours inside the cutoff

    def as_arrays(self, prefix: str = "giip") -> dict:
        """``giip_class``, ``giip_dc`` (n, k), ``giip_ref_distance``: names for ``atoms.arrays`` and
        extxyz (:func:`giip_plugin.analysis.columns.array_columns`)."""
        from .columns import array_columns

        return array_columns(self, prefix)

    def dump_columns(self, prefix: str = "giip") -> dict:
        """``d_giip_class``, ``d2_giip_dc[1..k]``, ``d_giip_ref_distance``: the columns of a dump
        (:func:`giip_plugin.analysis.columns.dump_columns`), as the LAMMPS hook writes them."""
        from .columns import dump_columns

        return dump_columns(self, prefix)

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
    """Classify and map every atom against a saved GIIP reference map (an ASE calculator).

    Parameters
    ----------
    reference : ReferenceMap or str or path-like
        The map, or the path of a reference file made by ``giip build``.
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        Compute device (None: CUDA when available).
    dtype : {None, "float64", "float32"}, optional
        Precision of the distance kernels (default float64).
    exact : bool, optional
        ``False`` (default): coarse rotation searches for all distances and the exact search for
        the nearest references of each atom (:meth:`ReferenceMap.transform`): the nearest reference,
        its distance and the class as the exhaustive search, coordinates within far less than 1 %
        of their range. ``True``: the exhaustive exact search (``giip apply --exact``).
    strict : bool, optional
        Refuse (``ValueError``) a structure far outside the reference's length scale (default);
        ``False`` warns instead (the LAMMPS hook; see :func:`check_scale`).
    progress : bool, optional
        Show a progress bar while distances are computed.
    type_names : dict or str, optional
        Names of numeric LAMMPS types (``{1: "Ni", 2: "Nb"}`` or ``"1=Ni,2=Nb"``); default the
        reference's.
    n_classes : int, optional
        Classes from the map's complete-linkage tree cut at this many classes (e.g. 20 for
        colour), each atom given the class of its nearest training environment; default the map's
        own classes. Class 0 is the largest, as in the map.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (``label``, ``atoms``, ...).

    Notes
    -----
    The settings are ASE calculator parameters: ``calc.parameters``, ``calc.set(exact=True)``
    (which drops cached results when a value changes) and ``calc.todict()``. Results are cached
    until the atoms change: positions, cell, periodicity, atomic numbers, or the ``species`` /
    ``type`` arrays that name the species (:meth:`check_state`).

    Use it as an ASE calculator (``atoms.calc = GIIPAnalyzer(ref)``, then
    ``atoms.calc.get_property("giip_class", atoms)``), or call :meth:`annotate` to write the results
    into ``atoms.arrays``, or :meth:`analyze` for an :class:`AnalysisResult` of any system that
    :func:`giip_plugin.systems.from_system` accepts (ASE Atoms, a Frame, an OVITO DataCollection, a
    ``(cell, positions, pbc, types)`` tuple).
    """

    implemented_properties = list(PROPERTIES)
    name = "GIIPAnalyzer"
    discard_results_on_any_change = True  # set() with a new value drops cached results
    default_parameters = {"device": None, "dtype": None, "exact": False, "strict": True, "progress": False,
                          "type_names": None, "n_classes": None}
    #: per-atom arrays that decide the species, compared by :meth:`check_state`
    species_arrays = ("species", "type")

    def __init__(self, reference, **kwargs):
        params = {k: kwargs.pop(k) for k in list(kwargs) if k in self.default_parameters or k == "fast"}
        super().__init__(**kwargs)
        self.reference = load_reference(reference)
        self.last_result: AnalysisResult | None = None
        #: what the search did in the last :meth:`analyze` (a :class:`~giip_plugin.reference.metric.SearchReport`)
        self.search_report = None
        self.set(**params)

    def set(self, **kwargs) -> dict:
        """Change parameters (see the class docstring); cached results are dropped when a value
        changes. Unknown names are an error (ASE would store them silently)."""
        if "fast" in kwargs:  # the former name: the refined coarse search is now the default
            warnings.warn("GIIPAnalyzer(fast=...) is deprecated: the refined coarse search is the default and "
                          "exact=True gives the exhaustive search", DeprecationWarning, stacklevel=2)
            kwargs["exact"] = not kwargs.pop("fast")
        unknown = sorted(set(kwargs) - set(self.default_parameters))
        if unknown:
            raise TypeError(f"GIIPAnalyzer has no parameter {unknown}; its parameters are "
                            f"{sorted(self.default_parameters)}")
        if "device" in kwargs:
            kwargs["device"] = check_device(kwargs["device"])
        if "type_names" in kwargs and kwargs["type_names"] is not None:
            kwargs["type_names"] = parse_type_names(kwargs["type_names"])
        if kwargs.get("n_classes") is not None:
            k = kwargs["n_classes"]
            n = self.reference.n_train
            try:
                good = not isinstance(k, (bool, np.bool_)) and float(k).is_integer() and 1 <= int(k) <= n
            except (TypeError, ValueError):
                good = False
            if not good:
                raise ValueError(f"n_classes must be an integer from 1 to the map's {n} training environments, "
                                 f"got {k!r} (None: the map's own {self.reference.n_classes} classes)")
            kwargs["n_classes"] = int(k)
        for flag in ("exact", "strict", "progress"):
            if flag in kwargs:
                kwargs[flag] = bool(kwargs[flag])
        return super().set(**kwargs)

    # parameters as attributes too (``calc.exact``; assigning goes through :meth:`set`)
    def _param(name):
        return property(lambda self: self.parameters[name], lambda self, v: self.set(**{name: v}),
                        doc=f"The ``{name}`` parameter (see the class docstring).")

    device = _param("device")
    dtype = _param("dtype")
    exact = _param("exact")
    strict = _param("strict")
    progress = _param("progress")
    type_names = _param("type_names")
    del _param

    def check_state(self, atoms, tol=1e-15):
        """ASE's checks (positions, cell, pbc, numbers, ...) and the arrays that name the species."""
        changes = super().check_state(atoms, tol=tol)
        if self.atoms is not None:
            for key in self.species_arrays:
                old, new = self.atoms.arrays.get(key), atoms.arrays.get(key)
                if (old is None) != (new is None) or (old is not None and (
                        old.shape != new.shape or not np.array_equal(old, new))):
                    changes.append(key)
        return changes

    # -- the analysis -------------------------------------------------------------------------
    @property
    def n_coords(self) -> int:
        return int(self.reference.n_coords)

    @property
    def n_classes(self) -> int:
        k = self.parameters.get("n_classes")
        return int(self.reference.n_classes if k is None else k)

    def species_of(self, system, species=None) -> np.ndarray:
        """Species name of every atom of ``system``, matched to the reference (giip_plugin.species)."""
        return species_of(from_system(system), species=species, type_names=self.parameters["type_names"],
                          reference=self.reference)

    def center_mask(self, system, species=None) -> np.ndarray:
        """Which atoms are centres under the reference (all atoms when it names no centre species)."""
        return self._centres_among(self.species_of(system, species))

    def _centres_among(self, names) -> np.ndarray:
        centers = self.reference.environments.centers
        if centers is None:
            return np.ones(len(names), dtype=bool)
        return np.isin(names, list(centers))

    def analyze(self, system, indices=None, species=None, *, strict: bool | None = None) -> AnalysisResult:
        """Results for every atom of ``system`` (only ``indices`` are analysed if given).

        Parameters
        ----------
        system : ase.Atoms, Frame, OVITO DataCollection or (cell, positions, pbc, types)
            The structure (:func:`giip_plugin.systems.from_system`).
        indices : array of int, optional
            Atoms to analyse (default: every centre atom); the others get class -1 and NaN.
        species : array of str, optional
            Species name of every atom (default: :func:`giip_plugin.species.species_of`).
        strict : bool, optional
            Override the ``strict`` parameter for this call.

        Returns
        -------
        AnalysisResult
            Arrays of length ``n_atoms``: ``classes`` (int, -1: not analysed), ``coordinates``
            ``(n_atoms, n_coords)`` (NaN: not analysed), ``ref_distance`` (atoms of difference; NaN:
            not analysed), ``analysed`` (bool) and ``n_empty``.
        """
        steps = self.analyze_steps(system, indices, species, strict=strict, chunk=None)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    def analyze_steps(self, system, indices=None, species=None, *, strict: bool | None = None,
                      chunk: int | None = 256):
        """:meth:`analyze` as a generator that yields its progress (floats from 0 to 1) after each
        ``chunk`` of centre atoms and returns the :class:`AnalysisResult` (``res = yield from
        analyzer.analyze_steps(...)``, as OVITO's modifiers do). ``chunk=None``: one step."""
        ref = self.reference
        atoms = from_system(system)
        n = len(atoms)
        names = self.species_of(atoms, species)
        check_species(names, ref)
        is_center = self._centres_among(names)
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
        strict = self.parameters["strict"] if strict is None else bool(strict)
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
                stacklevel=3,
            )
        classes = np.full(n, -1, dtype=np.int64)
        coords = np.full((n, self.n_coords), np.nan)
        dist = np.full(n, np.nan)
        ok = centers[has_nb]
        todo = ref.metric_inputs(atoms, ok, names, envs=envs.subset(np.flatnonzero(has_nb)))
        step = len(ok) if not chunk else int(chunk)
        p = self.parameters
        from ..reference.metric import SearchReport

        report = SearchReport()
        self.search_report = report
        # the tree cut at n_classes: the class of each training environment (None: the map's own)
        cut = None if p["n_classes"] is None else ref.clustering.labels(n_classes=p["n_classes"])
        yield 0.0
        for a in range(0, len(ok), max(step, 1)):
            part = slice(a, min(len(ok), a + step))
            res = ref.transform(todo.subset(np.arange(part.start, part.stop)), device=p["device"], exact=p["exact"],
                                report=report, progress=p["progress"] and step >= len(ok))
            idx = ok[part]
            classes[idx], coords[idx], dist[idx] = res.classes, res.coordinates, res.ref_distance
            if cut is not None:
                classes[idx] = cut[res.nearest]
            yield part.stop / len(ok)
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
