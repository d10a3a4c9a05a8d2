"""The Landslide Mapper Processing provider (``landslide_mapper:<algorithm>``)."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

PROVIDER_ID = "landslide_mapper"


class LandslideMapperProvider(QgsProcessingProvider):
    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Landslide Mapper"

    def longName(self):  # noqa: N802
        return "Landslide Mapper: multi-temporal landslide inventories"

    def icon(self):
        from ..qgis_io.icon import plugin_icon

        return plugin_icon()

    def loadAlgorithms(self):  # noqa: N802
        from .analysis_algorithms import AssessAccuracy, InventoryStatistics, SubtractInventories
        from .finetune import FinetuneCheckpoint
        from .map_landslides import MapLandslides

        for algorithm in (MapLandslides(), SubtractInventories(), InventoryStatistics(), AssessAccuracy(),
                          FinetuneCheckpoint()):
            self.addAlgorithm(algorithm)
