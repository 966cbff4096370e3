"""Applying a softness model to structures: the ASE calculator-style analyser of softness.

``SoftnessAnalyzer(model)`` gives every atom of a structure its ``softness`` (the signed distance
to the model's hyperplane; NaN for species without one). The species of the atoms are resolved as
for :class:`~giip_plugin.analysis.GIIPAnalyzer` (:func:`giip_plugin.species.species_of`, with the
type names stored in the model).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from ..species import parse_type_names, species_of
from ..systems import from_system

__all__ = ["SoftnessAnalyzer", "SoftnessResult", "load_softness"]

SOFTNESS_PROPERTIES = ("softness",)


@dataclass
class SoftnessResult:
    """Per-atom softness of one structure (NaN where not analysed)."""

    softness: np.ndarray
    analysed: np.ndarray

    def as_arrays(self, prefix: str = "giip") -> dict:
        """``softness`` (``P_softness`` for another prefix than giip): the name for
        ``atoms.arrays`` and extxyz."""
        from .columns import softness_name

        return {softness_name(prefix)[2:]: self.softness}

    def dump_columns(self, prefix: str = "giip") -> dict:
        """``d_softness`` (``d_P_softness`` for another prefix): the LAMMPS dump column, as the
        LAMMPS hook writes it."""
        from .columns import softness_name

        return {softness_name(prefix): self.softness}


def load_softness(model):
    from ..softness import SoftnessModel

    return model if isinstance(model, SoftnessModel) else SoftnessModel.load(model)


class SoftnessAnalyzer(Calculator):
    """Softness of every atom (an ASE calculator: ``atoms.calc = SoftnessAnalyzer("soft.h5")``,
    then ``atoms.calc.get_property("softness", atoms)``; or :meth:`annotate`, :meth:`analyze`).
    Parameter: ``type_names`` (names of numeric LAMMPS types; default the model's)."""

    implemented_properties = list(SOFTNESS_PROPERTIES)
    name = "SoftnessAnalyzer"
    discard_results_on_any_change = True
    default_parameters = {"type_names": None}

    def __init__(self, model, **kwargs):
        params = {k: kwargs.pop(k) for k in list(kwargs) if k in self.default_parameters}
        super().__init__(**kwargs)
        self.model = load_softness(model)
        self.set(**params)

    def set(self, **kwargs) -> dict:
        unknown = sorted(set(kwargs) - set(self.default_parameters))
        if unknown:
            raise TypeError(f"SoftnessAnalyzer has no parameter {unknown}; its parameters are "
                            f"{sorted(self.default_parameters)}")
        if kwargs.get("type_names") is not None:
            kwargs["type_names"] = parse_type_names(kwargs["type_names"])
        return super().set(**kwargs)

    def species_of(self, system, species=None) -> np.ndarray:
        return species_of(from_system(system), species=species, type_names=self.parameters["type_names"],
                          reference=self.model)

    def analyze(self, system, indices=None, species=None) -> SoftnessResult:
        """Softness of every atom of ``system`` (only ``indices`` if given)."""
        atoms = from_system(system)
        names = self.species_of(atoms, species)
        if self.model.features.dim == 2 and len(atoms):
            z = np.asarray(atoms.positions)[:, 2]
            if np.ptp(z) > 1e-6 * max(1.0, float(np.abs(atoms.positions).max())):
                raise ValueError("the softness model is 2D but the structure is not planar")
        S = self.model.softness(atoms, indices=indices, species=names)
        return SoftnessResult(S, np.isfinite(S))

    def annotate(self, atoms, indices=None):
        """Write ``softness`` into ``atoms.arrays`` and return ``atoms``."""
        res = self.analyze(atoms, indices=indices)
        if "softness" in atoms.arrays:
            del atoms.arrays["softness"]
        atoms.set_array("softness", res.softness)
        return atoms

    def calculate(self, atoms=None, properties=SOFTNESS_PROPERTIES, system_changes=all_changes):
        for p in properties or ():
            if p not in SOFTNESS_PROPERTIES:
                raise PropertyNotImplementedError(f"SoftnessAnalyzer computes {SOFTNESS_PROPERTIES}, not {p!r}")
        super().calculate(atoms, properties, system_changes)
        self.results = {"softness": self.analyze(self.atoms).softness}
