"""Stage 3 of the pipeline: the reference map (training set, classes, diffusion map, Nystrom
extension) and its file.

* :class:`ReferenceMap` -- build (from files, structures or environments), save, load, transform;
* :func:`training_distance_matrix` -- the training distances in checkpointed blocks, locally or on Dask;
* :mod:`.clustering`, :mod:`.diffusion`, :mod:`.regression` -- the numerics;
* :mod:`.sampling` -- choosing the training atoms; :mod:`.fileformat` -- the HDF5 layout.
"""
from .clustering import assign_nearest, class_summary, complete_linkage
from .diffusion import DiffusionMap, auto_epsilon
from .fileformat import SCHEMA_VERSION, ReferenceFileError
from .refmap import MapResult, MapResultWithRotation, ReferenceMap, knee_n_classes
from .regression import local_linear_regression_r2, select_parsimonious
from .training import CheckpointMismatch, training_distance_matrix

__all__ = [
    "ReferenceMap",
    "MapResult",
    "MapResultWithRotation",
    "knee_n_classes",
    "training_distance_matrix",
    "CheckpointMismatch",
    "ReferenceFileError",
    "SCHEMA_VERSION",
    "DiffusionMap",
    "auto_epsilon",
    "complete_linkage",
    "class_summary",
    "assign_nearest",
    "local_linear_regression_r2",
    "select_parsimonious",
]
