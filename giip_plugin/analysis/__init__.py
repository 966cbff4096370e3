"""Stage 4 of the pipeline: applying a reference map to new structures."""
from .analyzer import PROPERTIES, AnalysisResult, GIIPAnalyzer
from .species import check_species, resolve_species

__all__ = ["GIIPAnalyzer", "AnalysisResult", "PROPERTIES", "check_species", "resolve_species"]
