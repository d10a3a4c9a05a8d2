"""From project layers to what a worker can read, with the reasons a layer cannot be used.

The worker is another process: it reads files, not QGIS layers. A file-based layer is
passed by path (and layer name); a memory, database or filtered vector layer is first
written to a GeoPackage snapshot on the main thread. Checks return :class:`Problem`s
that the dock shows next to the field they concern; errors block the run, warnings
only inform (e.g. a geographic raster is mapped in its UTM zone).
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qgis.core import (QgsCoordinateTransformContext, QgsMapLayer, QgsProviderRegistry,
                       QgsRasterLayer, QgsVectorFileWriter, QgsVectorLayer)

from .. import qgis_compat
from ..core.geodata.bands import BandMapping, guess_mapping, required_spectral
from ..core.mapping.bundled import RGB_ADVICE
from ..core.errors import InputError

ERROR, WARNING = "error", "warning"
YEAR_IN_NAME = re.compile(r"(?<!\d)(19[5-9]\d|20\d\d)(?!\d)")


@dataclass(frozen=True)
class Problem:
    field: str          # which field of the form it concerns, e.g. "years[2].layer"
    message: str
    severity: str = ERROR


def blocking(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


# ----------------------------------------------------------------------------- rasters

def raster_path(layer: QgsRasterLayer) -> str | None:
    """The file GDAL reads for this layer, or None (WMS, XYZ, a database…)."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    return path if Path(path).is_file() or path.startswith("/vsi") else None


def _colour_names(layer: QgsRasterLayer) -> list[str]:
    provider = layer.dataProvider()
    names = []
    for band in range(1, layer.bandCount() + 1):
        name = provider.colorInterpretationName(band).lower()
        names.append({"red band": "red", "green band": "green", "blue band": "blue",
                      "alpha band": "alpha"}.get(name, name))
    return names


def band_mapping_for(layer: QgsRasterLayer, bands: str) -> BandMapping:
    """What the worker will make of ``bands`` for this layer (``auto`` guessed the same way)."""
    if bands.strip().lower() != "auto":
        return BandMapping.parse(bands)
    provider = layer.dataProvider()
    descriptions = [provider.bandDescription(b) if hasattr(provider, "bandDescription") else None
                    for b in range(1, layer.bandCount() + 1)]
    return guess_mapping(layer.bandCount(), descriptions, _colour_names(layer))


def layer_has_nir(layer: QgsRasterLayer | None, bands: str) -> bool:
    """Whether the layer has a near-infrared band under this mapping (unknown counts as yes,
    so a broken layer is reported by :func:`check_raster`, not by a model switch)."""
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
        return True
    try:
        nir = dict(band_mapping_for(layer, bands).bands).get("NIR")
    except InputError:
        return True
    return nir is not None and nir <= layer.bandCount() and _colour_names(layer)[nir - 1] != "alpha"


def check_raster(layer: QgsMapLayer | None, bands: str, channels: list[str], what: str,
                 field: str, geographic: str = WARNING) -> list[Problem]:
    """Problems of one image layer for a model that takes ``channels``."""
    if layer is None:
        return [Problem(field, f"{what}: choose an image layer.")]
    name = f"{what} ({layer.name()})"
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
        return [Problem(field, f"{name} is not a valid raster layer.")]
    if raster_path(layer) is None:
        return [Problem(field, f"{name} is not a local raster file ({layer.providerType()}): "
                               "export it as a GeoTIFF first (Export > Save As…).")]
    problems = []
    try:
        mapping = band_mapping_for(layer, bands)
        need = required_spectral(channels)
        missing = [ch for ch in need if ch not in dict(mapping.bands)]
        if missing:
            problems.append(Problem(field, f"{name}: the band mapping has no {', '.join(missing)}, "
                                           f"which the model needs ({', '.join(channels)})."
                                           + (f" {RGB_ADVICE}" if "NIR" in missing else "")))
        too_high = [(ch, i) for ch, i in mapping.bands if ch in need and i > layer.bandCount()]
        if too_high:
            ch, i = too_high[0]
            problems.append(Problem(field, f"{name} has {layer.bandCount()} band(s), but {ch} is mapped "
                                           f"to band {i}: the model needs {', '.join(need)}. Pick the "
                                           "right preset or a custom mapping such as B=1,G=2,R=3,NIR=4."
                                           + (f" {RGB_ADVICE}" if ch == "NIR" else "")))
    except InputError as exc:
        problems.append(Problem(field, f"{name}: {exc}"))
    crs = layer.crs()
    if not crs.isValid():
        problems.append(Problem(field, f"{name} has no coordinate reference system: set one in "
                                       "Layer Properties > Source so areas can be measured."))
    elif crs.isGeographic():
        text = (f"{name} is in a geographic CRS ({crs.authid() or crs.description()}), "
                "with pixels in degrees")
        if geographic == WARNING:
            problems.append(Problem(field, text + ": it will be mapped in its UTM zone so that "
                                              "areas are in m².", WARNING))
        else:
            problems.append(Problem(field, text + ": reproject it to a projected CRS (e.g. its UTM "
                                              "zone, Raster > Projections > Warp) first."))
    return problems


def check_years(rows: list[tuple[int | None, QgsMapLayer | None]], field: str = "years") -> list[Problem]:
    """Missing and duplicate years of a year table; ``rows`` are (year, layer)."""
    problems = []
    if not rows:
        return [Problem(field, "Add at least one year.")]
    seen: dict[int, int] = {}
    for i, (year, _layer) in enumerate(rows):
        if not year:
            problems.append(Problem(f"{field}[{i}].year", f"Row {i + 1}: enter the year of this layer."))
        elif year in seen:
            problems.append(Problem(f"{field}[{i}].year", f"Row {i + 1}: year {year} is already given in "
                                                          f"row {seen[year] + 1}."))
        else:
            seen[year] = i
    return problems


def year_from_name(*names: str) -> int | None:
    """The year written in a layer or file name (``scene_2017``, ``2017_planet``…), if any."""
    for name in names:
        found = YEAR_IN_NAME.findall(Path(name).name if "/" in name else name)
        if found:
            return int(found[-1])
    return None


# ----------------------------------------------------------------------------- polygons

def is_polygon_layer(layer: QgsMapLayer | None) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.isValid() and \
        layer.geometryType() == qgis_compat.GEOMETRY_POLYGON


def check_polygons(layer: QgsMapLayer | None, what: str, field: str, required: bool = True) -> list[Problem]:
    if layer is None:
        return [Problem(field, f"{what}: choose a polygon layer.")] if required else []
    name = f"{what} ({layer.name()})"
    if not is_polygon_layer(layer):
        return [Problem(field, f"{name} is not a valid polygon layer.")]
    if layer.isModified():
        return [Problem(field, f"{name} has unsaved edits: save them (Layer > Save Layer Edits) so "
                               "the worker reads what you see.")]
    if not layer.crs().isValid():
        return [Problem(field, f"{name} has no coordinate reference system; set one in Layer "
                               "Properties > Source.")]
    if layer.featureCount() == 0:
        return [Problem(field, f"{name} has no polygons.", WARNING)]
    if layer.crs().isGeographic():
        return [Problem(field, f"{name} is in a geographic CRS ({layer.crs().authid()}): areas are "
                               "measured in its UTM zone.", WARNING)]
    return []


def vector_source(layer: QgsVectorLayer, snapshot_dir: Path | None = None,
                  selected: bool = False) -> tuple[str, str | None]:
    """(path, layer name) the worker can open for this layer (only its ``selected`` features).

    A layer the worker cannot read as is (memory, database, a filter on the layer, a
    selection) is written to a GeoPackage in ``snapshot_dir`` first; this runs on the main
    thread.
    """
    if layer.providerType() == "ogr" and not selected:
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path", "")
        layer_id = parts.get("layerId")
        if Path(path).exists() and not parts.get("subset") and not layer.subsetString() \
                and (parts.get("layerName") or layer_id in (None, "", 0, "0")):
            name = parts.get("layerName") or None
            return path, name
    snapshot_dir = Path(snapshot_dir or tempfile.mkdtemp(prefix="landslide_mapper_inputs_"))
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    target = snapshot_dir / f"{_safe(layer.name())}_{layer.id()[-8:]}{'_selected' if selected else ''}.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.onlySelectedFeatures = selected
    options.layerName = _safe(layer.name())
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(target), QgsCoordinateTransformContext(),
                                                       options)
    if result[0] != QgsVectorFileWriter.WriterError.NoError:
        raise InputError(f"Layer {layer.name()} could not be copied for the worker to {target}: {result[1]}")
    return str(target), options.layerName


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return cleaned or "layer"
