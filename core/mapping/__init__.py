"""Mapping: tiles, the ONNX model and the bundled ones, inference into probability rasters,
vectorising, the Dask cluster, suggested review areas, and the mapping job (``job.py``)."""
