"""OVITO integration of giip-plugin: the ``GIIPModifier`` pipeline modifier.

Registered under the ``OVITO.Modifier`` entry point ("GIIP structure analysis"), so OVITO Pro lists
it once this package is installed into OVITO's Python interpreter. See docs/ovito.md.
"""
from .giip_modifier import (
    COLOR_BY_CHOICES,
    DEVICE_CHOICES,
    NOT_ANALYSED_COLOR,
    GIIPModifier,
    class_color,
    class_colors,
    clear_caches,
    coordinate_colors,
)

__all__ = [
    "GIIPModifier",
    "class_color",
    "class_colors",
    "coordinate_colors",
    "clear_caches",
    "NOT_ANALYSED_COLOR",
    "COLOR_BY_CHOICES",
    "DEVICE_CHOICES",
]
