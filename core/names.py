"""The names of a run's files and layers, defined once: the jobs write them, the dock and
Processing load them, the demo and training scenes use the same ones for their truth."""
from __future__ import annotations

GEOPACKAGE = "landslides.gpkg"          # a mapping run's polygons, changes and review areas


def landslides_layer(year: int) -> str:
    """One year's landslide polygons (predicted, or a scene's truth)."""
    return f"landslides_{year}"


def changes_layer(year: int) -> str:
    """The new and enlarged landslides of ``year`` against the year before."""
    return f"new_{year}"


def unconfirmed_layer(year: int) -> str:
    """The parts subtraction found new in ``year`` that the images do not support
    (core.inventory.change_evidence): no change seen, or the ground not observed the year before."""
    return f"unconfirmed_{year}"


# the ``evidence`` of a new or enlarged part (core.inventory.change_evidence), as its layers hold it
CONFIRMED, NO_CHANGE, NOT_OBSERVED, UNMEASURED = "confirmed", "no change seen", "not observed before", "unmeasured"


def review_layer(year: int) -> str:
    """One year's suggested review areas."""
    return f"review_{year}"


def probability_file(year: int) -> str:
    return f"probability_{year}.tif"


def uncertainty_file(year: int) -> str:
    return f"uncertainty_{year}.tif"
