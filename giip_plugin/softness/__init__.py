"""Softness (Cubuk et al.): the structure-to-dynamics field, trained from trajectories.

* :mod:`.labels` -- which particles rearrange: ``p_hop`` over a window, ``D2min`` (OVITO),
  the relaxation time ``tau_alpha`` from ``F_s(k, t)``, and :class:`Trajectory` (a dump's frames,
  particles by id, positions unwrapped);
* :mod:`.features` -- the radial and angular structure functions, and a GIIP map's coordinates;
* :mod:`.training` -- balanced training sets, a linear SVM (scikit-learn) with C by cross-validation;
* :mod:`.model` -- the fitted :class:`SoftnessModel` and its HDF5 file.

Applying a model: :class:`giip_plugin.analysis.SoftnessAnalyzer`, ``giip apply SOFT.h5 ...``.
"""
from .features import DEFAULT_ANGULAR, DEFAULT_MU, PUBLISHED_ANGULAR, FeatureSet, MapCoordinates, StructureFunctions
from .labels import DEFAULT_FS_K, DEFAULT_P_C, DEFAULT_WINDOW, Trajectory, d2min, p_hop, tau_alpha
from .model import SoftnessModel, is_softness_file
from .training import rearrangement_labels, train

__all__ = ["StructureFunctions", "MapCoordinates", "FeatureSet", "DEFAULT_MU", "DEFAULT_ANGULAR",
           "PUBLISHED_ANGULAR", "p_hop", "d2min",
           "tau_alpha", "Trajectory", "DEFAULT_P_C", "DEFAULT_WINDOW", "DEFAULT_FS_K", "SoftnessModel",
           "is_softness_file", "train", "rearrangement_labels"]
