"""QgsTasks of the plugin (QGIS-side; the heavy work runs in a worker process)."""
