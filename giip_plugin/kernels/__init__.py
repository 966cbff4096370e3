"""Stage 2 of the pipeline: GIIP inner products and the exact orientation-invariant distance.

The names below are imported on first use, so that importing the package, or a module that
needs only part of it, stays light (PyTorch loads with the engine; a single pair that the compiled
search covers does not load it).
"""
from importlib import import_module

_LAZY = {
    "DistanceEngine": ".engine",
    "SearchSettings": ".settings",
    "SearchProblem": ".problem",
    "distance": ".pairs",
    "inner_product": ".pairs",
    "optimal_rotation": ".pairs",
    "pairwise_distances": ".engine",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
