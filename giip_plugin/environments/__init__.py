"""Stage 1 of the pipeline: local atomic environments (neighbours, smooth weights, species channels)."""
from .cutoff import smooth_cutoff
from .environment_set import EnvironmentSet
from .neighbors import LocalEnvironments, neighbor_pairs, species_names
from .species import SpeciesEncoding

__all__ = ["smooth_cutoff", "EnvironmentSet", "LocalEnvironments", "SpeciesEncoding", "neighbor_pairs", "species_names"]
