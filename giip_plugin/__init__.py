"""GIIP structure analysis for disordered materials (Hardin et al., 2022).

The pipeline, one sub-package per stage:

* :mod:`giip_plugin.environments` -- local atomic environments (neighbours, smooth weights, species);
* :mod:`giip_plugin.kernels` -- the GIIP inner product and the exact orientation-invariant distance;
* :mod:`giip_plugin.reference` -- the reference map: classes, diffusion map, Nystrom extension, file;
* :mod:`giip_plugin.analysis` -- applying a reference (or a softness model) to new structures (ASE analysers);
* :mod:`giip_plugin.softness` -- softness (Cubuk et al.): rearrangements, structure functions, SVM, model file;
* :mod:`giip_plugin.io` -- reading trajectories and writing annotated frames;
* :mod:`giip_plugin.cli` -- the ``giip`` command line.

Shared by every stage and integration: :mod:`giip_plugin.species` (which species an atom has),
:mod:`giip_plugin.systems` (a user's system to atoms), :mod:`giip_plugin.config` (every switch,
threads), :mod:`giip_plugin.validation` (input checks). The method as implemented: docs/design.md.
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "distance": "giip_plugin.kernels",
    "pairwise_distances": "giip_plugin.kernels",
    "inner_product": "giip_plugin.kernels",
    "optimal_rotation": "giip_plugin.kernels",
    "EnvironmentSet": "giip_plugin.environments",
    "LocalEnvironments": "giip_plugin.environments",
    "SpeciesEncoding": "giip_plugin.environments",
    "ReferenceMap": "giip_plugin.reference",
    "MapBuilder": "giip_plugin.reference.builder",
    "GIIPAnalyzer": "giip_plugin.analysis",
    "SoftnessAnalyzer": "giip_plugin.analysis",
    "SoftnessModel": "giip_plugin.softness",
    "from_system": "giip_plugin.systems",
    "species_of": "giip_plugin.species",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):  # lazy imports keep `import giip_plugin` light (torch loads on first use)
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'giip_plugin' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
