"""The softness model: a linear SVM hyperplane per centre species over standardised structure
functions, and its HDF5 file.

Softness of a particle with features ``F``: ``S = (w . (F - mean) / scale + b) / |w|``, the signed
distance to the hyperplane in the standardised feature space (positive: on the side of the
particles about to rearrange). File layout (format ``giip-softness``, schema version 1)::

    /            attrs: format, schema_version, package_version, created, checksum, attrs_checksum
    /features    attrs: the StructureFunctions (species, mu, width, angular, angular_cutoff,
                        length, dim, angular_species), names
    /svm         datasets: species_index (S,), mean (S, F), scale (S, F), weights (S, F),
                 intercept (S,), C (S,), cv_accuracy (S,), n_train (S, 2)
                 attrs: centers (species names with a hyperplane)
    /labels      attrs: how rearrangements were found (method, p_c, window, ...)
    /provenance  attrs: command line, input files, date, held-out figures

Data only (no pickle); loading checks the checksums and the shapes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .features import StructureFunctions, features_from_dict

__all__ = ["SoftnessModel", "SOFTNESS", "is_softness_file"]


def _check(path, c):
    from ..reference.fileformat import _damaged

    s = c["svm"]["datasets"]
    S = len(s["intercept"])
    F = len(c["features"]["attrs"]["names"])
    for k in ("mean", "scale", "weights"):
        if s[k].shape != (S, F):
            raise _damaged(path, f"/svm/{k} has shape {s[k].shape}, expected ({S}, {F})", SOFTNESS)
    if len(c["svm"]["attrs"]["centers"]) != S:
        raise _damaged(path, "the centre species do not match the hyperplanes", SOFTNESS)


def _kind():
    from ..reference.fileformat import FileKind

    return FileKind("giip-softness", 1, ("features", "svm", "labels", "provenance"),
                    {"svm": ("mean", "scale", "weights", "intercept", "C", "cv_accuracy", "n_train")},
                    {"features": ("names",), "svm": ("centers",)},
                    "softness model file", "giip softness train", check=_check)


SOFTNESS = _kind()


def is_softness_file(path) -> bool:
    from ..reference.fileformat import file_format

    return file_format(path) == SOFTNESS.format


@dataclass
class SoftnessModel:
    """Hyperplanes of a trained softness model (build one with :func:`~giip_plugin.softness.train`
    or ``giip softness train``; :meth:`load` a file). ``centers``: the species with a hyperplane;
    per centre: ``mean`` and ``scale`` of the features, ``weights`` and ``intercept`` in the
    standardised space, the SVM's ``C`` and its cross-validated accuracy."""

    features: object  # StructureFunctions, MapCoordinates or a FeatureSet of them
    centers: tuple
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    C: np.ndarray
    cv_accuracy: np.ndarray
    n_train: np.ndarray  # (S, 2): rearranging, non-rearranging training particles
    labels: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def species(self) -> tuple:
        return self.features.species

    @property
    def type_names(self) -> dict:
        """Names of numeric LAMMPS types of the training trajectories (the provenance's)."""
        return {int(k): str(v) for k, v in (self.provenance.get("type_names") or {}).items()}

    def softness_of_features(self, F: np.ndarray, center: str) -> np.ndarray:
        k = self.centers.index(center)
        w = self.weights[k]
        return (((np.asarray(F) - self.mean[k]) / self.scale[k]) @ w + self.intercept[k]) / np.linalg.norm(w)

    def softness(self, atoms, indices=None, species=None) -> np.ndarray:
        """Softness of every atom of ``atoms`` (NaN for species without a hyperplane, and for
        atoms not in ``indices`` when given)."""
        from ..environments.neighbors import species_names

        names = species_names(atoms, species)
        out = np.full(len(atoms), np.nan)
        sel = np.zeros(len(atoms), dtype=bool)
        sel[np.arange(len(atoms)) if indices is None else np.asarray(indices, dtype=np.int64)] = True
        todo = np.flatnonzero(sel & np.isin(names, list(self.centers)))
        if len(todo) == 0:
            return out
        F = self.features.compute(atoms, todo, names)
        for c in self.centers:
            m = names[todo] == c
            out[todo[m]] = self.softness_of_features(F[m], c)
        return out

    # ------------------------------------------------------------------ file
    def save(self, path) -> None:
        from ..reference.fileformat import write_model_file

        content = {
            "features": {"attrs": {**self.features.to_dict(), "names": list(self.features.names)}},
            "svm": {"datasets": {"mean": self.mean, "scale": self.scale, "weights": self.weights,
                                 "intercept": self.intercept, "C": self.C, "cv_accuracy": self.cv_accuracy,
                                 "n_train": self.n_train},
                    "attrs": {"centers": list(self.centers)}},
            "labels": {"attrs": dict(self.labels)},
            "provenance": {"attrs": dict(self.provenance)},
        }
        write_model_file(path, content, SOFTNESS)

    @classmethod
    def load(cls, path) -> "SoftnessModel":
        from ..reference.fileformat import read_reference

        c, _ = read_reference(os.fspath(path), kind=SOFTNESS)
        fa, s = c["features"]["attrs"], c["svm"]["datasets"]
        feats = features_from_dict(fa)
        if list(feats.names) != list(fa["names"]):
            raise ValueError(f"{path}: the feature definitions do not give the stored feature names (a model of "
                             "another version of giip-plugin?); retrain it with 'giip softness train'")
        return cls(feats, tuple(c["svm"]["attrs"]["centers"]), s["mean"], s["scale"], s["weights"], s["intercept"],
                   s["C"], s["cv_accuracy"], s["n_train"], dict(c["labels"]["attrs"]), dict(c["provenance"]["attrs"]))

    def describe(self) -> str:
        f = self.features
        L = ["softness model (linear SVM)",
             f"  species         {', '.join(f.species)}; hyperplanes for {', '.join(self.centers)}"]
        for part in getattr(f, "parts", (f,)):
            if isinstance(part, StructureFunctions):
                L.append(f"  radial          G_Y(mu), mu = {min(part.mu):g} .. {max(part.mu):g} ({len(part.mu)} per "
                         f"species), width {part.width:g}, length unit {part.length:g}")
                per = (f" per pair of neighbour species ({', '.join(a + b for a, b in part.species_pairs)})"
                       if part.angular_species else "")
                L.append(f"  angular         {len(part.angular)} functions Psi(xi, lambda, zeta){per}, cutoff "
                         f"{part.angular_cutoff:g}")
            else:
                L.append(f"  GIIP map        {part.n_coords} diffusion coordinates of {part.reference}")
        L += [f"  features        {f.n_features}",
             f"  labels          {self.labels.get('method', '?')}: " + ", ".join(
                 f"{k} = {v}" for k, v in self.labels.items() if k != "method")]
        for k, c in enumerate(self.centers):
            L.append(f"  centre {c:<8} C = {self.C[k]:g}, cross-validated accuracy {self.cv_accuracy[k]:.3f}, "
                     f"trained on {int(self.n_train[k, 0])} rearranging + {int(self.n_train[k, 1])} other particles")
        for k, v in self.provenance.items():
            if k.startswith("held_out"):
                L.append(f"  {k:<15} {v}")
        return "\n".join(L)
