"""Interpreting GIIP reference maps and analysed frames (step 6 of the method; docs/design.md).

* :mod:`.quantities` -- per-atom physical quantities: smooth coordination, neighbour species
  fractions, Voronoi volume (OVITO), input columns;
* :mod:`.stats` -- r^2 of each diffusion coordinate against each quantity, best direction in a plane;
* :mod:`.density` -- smoothed densities of two sets in a plane, their difference, class populations;
* :mod:`.samples` -- analysed atoms of frames (from ``giip apply`` columns or computed);
* :mod:`.conformal` -- the conformal autoencoder: how many parameters of the map the named
  quantities leave unexplained, and what the remainder correlates with (PyTorch, loaded on use);
* :mod:`.figures` -- PNG figures (matplotlib); :mod:`.render` -- OVITO renderings.

The command lines ``giip report``, ``giip interpret`` and ``giip compare`` are thin layers over these.
"""
from .density import (ClassPopulations, DensityDifference, DifferenceTest, class_populations, density_difference,
                      difference_test, smoothed_density)
from .quantities import frame_quantities, input_columns, neighbour_quantities, voronoi_analysis, voronoi_sizes
from .samples import Samples, annotation_columns, collect_samples
from .stats import Direction, R2Table, best_direction, r2, r2_table

__all__ = [
    "ClassPopulations", "DensityDifference", "DifferenceTest", "class_populations", "density_difference",
    "difference_test", "smoothed_density",
    "frame_quantities", "input_columns", "neighbour_quantities", "voronoi_analysis", "voronoi_sizes",
    "Samples", "annotation_columns", "collect_samples",
    "Direction", "R2Table", "best_direction", "r2", "r2_table",
    "conformal_scan", "fit_conformal",
]


def __getattr__(name):  # the autoencoder imports PyTorch: only on use
    if name in ("conformal_scan", "fit_conformal"):
        from . import conformal

        return getattr(conformal, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
