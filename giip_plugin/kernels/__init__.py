"""Stage 2 of the pipeline: GIIP inner products and the exact orientation-invariant distance."""
from .engine import DistanceEngine, SearchSettings, distance, inner_product, optimal_rotation, pairwise_distances

__all__ = ["DistanceEngine", "SearchSettings", "distance", "inner_product", "optimal_rotation", "pairwise_distances"]
