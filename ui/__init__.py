"""Qt widgets of the Landslide Mapper plugin (imported only inside QGIS)."""
