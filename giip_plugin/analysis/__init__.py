"""Stage 4 of the pipeline: applying a reference map to new structures."""
from ..species import check_species
from ..species import species_of as resolve_species
from .analyzer import PROPERTIES, AnalysisResult, GIIPAnalyzer, check_density, check_scale
from .softness import SoftnessAnalyzer, SoftnessResult

__all__ = ["GIIPAnalyzer", "AnalysisResult", "SoftnessAnalyzer", "SoftnessResult", "PROPERTIES", "check_species", "resolve_species", "check_scale",
           "check_density"]
