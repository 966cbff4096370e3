"""Stage 2 of the pipeline: GIIP inner products and the exact orientation-invariant distance.

The names below are imported on first use (PyTorch loads then), so that importing the package, or
a module that needs only part of it, stays light.
"""
from importlib import import_module

_LAZY = {
    "DistanceEngine": ".engine",
    "SearchSettings": ".settings",
    "distance": ".engine",
    "inner_product": ".engine",
    "optimal_rotation": ".engine",
    "pairwise_distances": ".engine",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
