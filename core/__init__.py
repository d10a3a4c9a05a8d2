"""Landslide Mapper core: pure Python, no QGIS or Qt imports allowed in this package."""
