"""QGIS code that is not a widget, shared by the dock (ui/) and the Processing algorithms
(processing_provider/): layers in (:mod:`.inputs`), a run's results out as styled layers
(:mod:`.run_layers`), the model catalogue (:mod:`.model_catalog`) and the plugin's icon
(:mod:`.icon`). It may import ``core`` and QGIS, never ``ui`` or ``processing_provider``."""
