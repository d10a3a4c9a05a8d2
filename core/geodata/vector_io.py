"""Reading and writing polygon layers (GeoPackage and any OGR source) as shapely arrays.

Uses the GDAL/OGR bindings that QGIS itself ships, so the plugin, the worker and the
tests all write files with the same library version.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import shapely
from osgeo import gdal, ogr, osr

from ..errors import InputError, OutputError



@contextmanager
def _gdal_exceptions():
    """OGR/OSR raise exceptions inside, and the process-wide setting is restored after
    (inside QGIS other code relies on the default)."""
    was_ogr, was_osr = ogr.GetUseExceptions(), osr.GetUseExceptions()
    ogr.UseExceptions()
    osr.UseExceptions()
    try:
        yield
    finally:  # GDAL keeps a stack of error handlers: undo in reverse order
        if not was_osr:
            osr.DontUseExceptions()
        if not was_ogr:
            ogr.DontUseExceptions()


@dataclass
class VectorLayer:
    """Geometries (a shapely array) plus one numpy array per attribute, in the same order."""

    geometries: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    crs_wkt: str | None = None
    fids: np.ndarray | None = None    # the source's feature ids, when read from a file

    def __len__(self) -> int:
        return len(self.geometries)


def _ogr_field_type(values: np.ndarray) -> int:
    kind = np.asarray(values).dtype.kind
    if kind in "iub":
        return ogr.OFTInteger64
    if kind == "f":
        return ogr.OFTReal
    return ogr.OFTString


def _geometry_type(geoms: np.ndarray) -> tuple[int, bool]:
    """OGR layer type for the geometries, and whether polygons must be promoted to multi."""
    types = set(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]).tolist())
    if types <= {3}:  # only Polygon (or nothing)
        return ogr.wkbPolygon, False
    if types <= {3, 6}:
        return ogr.wkbMultiPolygon, True
    return ogr.wkbUnknown, False


def write_geopackage(path: str | os.PathLike, layers: Mapping[str, VectorLayer]) -> Path:
    with _gdal_exceptions():
        return _write_geopackage(path, layers)


def _write_geopackage(path: str | os.PathLike, layers: Mapping[str, VectorLayer]) -> Path:
    """Write all ``layers`` into one new GeoPackage, atomically.

    The file is built under ``.<stem>.partial.gpkg`` and renamed into place only when every
    layer is complete, so a crash or cancel never leaves a half-written GeoPackage.
    An existing file is never overwritten.
    """
    path = Path(path)
    if path.exists():
        raise OutputError(f"{path} already exists; refusing to overwrite it.")
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    if tmp.exists():
        tmp.unlink()
    driver = ogr.GetDriverByName("GPKG")
    try:
        ds = driver.CreateDataSource(str(tmp))
    except RuntimeError as exc:
        raise OutputError(f"Cannot create the GeoPackage {path}: {exc}") from exc
    error = None
    try:
        for name, layer in layers.items():
            _write_layer(ds, name, layer)
        ds.FlushCache()
    except BaseException as exc:  # keep no traceback: its frames would keep the file open
        error = exc.with_traceback(None)
    ds = None  # closes the GeoPackage
    if error is not None:
        tmp.unlink(missing_ok=True)
        raise error
    os.replace(tmp, path)
    return path


def _write_layer(ds, name: str, layer: VectorLayer) -> None:
    srs = None
    if layer.crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(layer.crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geoms = np.asarray(layer.geometries, dtype=object)
    gtype, promote = _geometry_type(geoms)
    if promote:
        single = shapely.get_type_id(geoms) == 3
        geoms = geoms.copy()
        if single.any():
            geoms[single] = shapely.multipolygons(geoms[single], indices=np.arange(single.sum()))
    lyr = ds.CreateLayer(name, srs, gtype, options=["SPATIAL_INDEX=YES"])
    names = list(layer.fields)
    columns = [np.asarray(layer.fields[n]) for n in names]
    for fname, values in zip(names, columns):
        lyr.CreateField(ogr.FieldDefn(fname, _ogr_field_type(values)))
    wkbs = shapely.to_wkb(geoms, hex=False)
    defn = lyr.GetLayerDefn()
    lyr.StartTransaction()
    pycols = [c.tolist() for c in columns]
    for i, wkb in enumerate(wkbs):
        feat = ogr.Feature(defn)
        for j in range(len(names)):
            value = pycols[j][i]
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                feat.SetField(j, value)
        if wkb is not None:
            feat.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
        lyr.CreateFeature(feat)
    lyr.CommitTransaction()


def list_layers(path: str | os.PathLike) -> list[str]:
    with _gdal_exceptions():
        ds = _open(path)
        return [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]


def _open(path: str | os.PathLike):
    path = str(path)
    src = path
    if path.lower().endswith(".zip") and not path.startswith("/vsizip/"):
        src = "/vsizip/" + path
    if not path.startswith("/vsi") and not os.path.exists(path):
        raise InputError(f"{path} does not exist.")
    try:
        try:
            ds = ogr.Open(src)
        except RuntimeError:        # GDAL >= 3.7 raises here where 3.6 returned None
            if not src.startswith("/vsizip/"):
                raise
            ds = None
        if ds is None and src.startswith("/vsizip/"):
            ds = _open_zip_folder(src)
            if ds is None:
                ds = ogr.Open(src)          # GDAL >= 3.7 raises with its own reason
    except RuntimeError as exc:
        raise InputError(f"{path} is not a readable vector dataset: {exc}") from exc
    if ds is None:
        raise InputError(f"{path} is not a readable vector dataset.")
    return ds


def _open_zip_folder(src: str):
    """A zip whose shapefiles sit in one folder inside it (as zipped folders usually are)."""
    entries = gdal.ReadDir(src) or []
    folders = [e for e in entries if gdal.VSIStatL(f"{src}/{e}") is not None
               and gdal.VSIStatL(f"{src}/{e}").IsDirectory()]
    if len(folders) == 1 and len(entries) == 1:
        return ogr.Open(f"{src}/{folders[0]}")
    return None


def read_layer(path: str | os.PathLike, layer: str | int | None = None) -> VectorLayer:
    """Read one layer (by name or index; the first when None) into a :class:`VectorLayer`."""
    with _gdal_exceptions():
        return _read_layer(path, layer)


def _read_layer(path, layer) -> VectorLayer:
    ds = _open(path)
    if layer is None:
        lyr = ds.GetLayerByIndex(0)
    elif isinstance(layer, int):
        lyr = ds.GetLayerByIndex(layer)
    else:
        lyr = ds.GetLayerByName(layer)
    if lyr is None:
        raise InputError(f"{path} has no layer {layer!r}; it has {list_layers(path)}.")
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    wkbs, fids, values = [], [], {n: [] for n in names}
    for feat in lyr:
        fids.append(feat.GetFID())
        g = feat.GetGeometryRef()
        wkbs.append(bytes(g.ExportToIsoWkb()) if g is not None else None)
        for i, n in enumerate(names):
            values[n].append(feat.GetField(i))
    srs = lyr.GetSpatialRef()
    geoms = shapely.from_wkb(np.array(wkbs, dtype=object)) if wkbs else np.empty(0, dtype=object)
    fields = {n: np.array(v) for n, v in values.items()}
    return VectorLayer(geoms, fields, srs.ExportToWkt() if srs is not None else None,
                       np.array(fids, dtype=np.int64))
