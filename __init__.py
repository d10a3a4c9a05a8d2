"""Landslide Mapper: multi-temporal landslide inventories from yearly satellite images.

This package is both a QGIS plugin and a command line tool (``python -m landslide_mapper``).
Importing it must stay cheap and must not need QGIS, Qt or the inference stack: the QGIS
side is imported only when QGIS calls :func:`classFactory`.
"""


def classFactory(iface):  # noqa: N802 (name required by QGIS)
    """Entry point called by QGIS: return the plugin instance for this QGIS interface."""
    from .plugin import LandslideMapperPlugin

    return LandslideMapperPlugin(iface)
