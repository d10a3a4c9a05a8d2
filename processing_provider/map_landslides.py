"""Processing algorithm: map landslides in one image per year (the InferenceJob)."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingFeatureSourceDefinition, QgsProcessingOutputFile,
                       QgsProcessingOutputFolder, QgsProcessingOutputHtml, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterString, QgsProcessingUtils,
                       QgsVectorLayer)

from .. import qgis_compat
from ..core.geodata.bands import DEFAULT_CHANNELS
from ..core.mapping.bundled import AUTO, auto_model, default_model
from ..core.training.checkpoint import INFO_NAME, model_name
from ..core.jobs.specs import LARGE_JOB_PIXELS, RESAMPLE_CHOICES, InferenceJob, YearInput
from ..qgis_io import inputs
from ..qgis_io.model_catalog import read_entry
from ..qgis_io.run_layers import RANKS, run_group_name, run_layer_specs
from .job_algorithm import DEVICES, JobAlgorithm, ParameterProblem, advanced, helped, load_on_completion, \
    report_output, rows_to_sink

def model_parameter(name: str, description: str, bundled_default: bool = True) -> QgsProcessingParameterFile:
    """A checkpoint (its checkpoint.json, or any file in its folder) or an ONNX model; the
    bundled cascade checkpoint by default, or (``bundled_default`` False) none: empty then
    means automatic. The filter ends in ``All files (*)``: without it QGIS 3.22 refuses a
    checkpoint folder (no suffix); ``model_channels`` says what is wrong with a path instead."""
    default = None
    if bundled_default:
        default = default_model()
        default = str(default / INFO_NAME if default.is_dir() else default)
    # optional: qgis_process 3.22 demands a value for a mandatory file parameter even when it
    # has a default; left empty, every parameterAs*() gives the default
    return QgsProcessingParameterFile(name, description, qgis_compat.FILE_BEHAVIOUR_FILE, "", default, True,
                                      "Landslide Mapper models (checkpoint.json *.onnx);;All files (*)")


def model_channels(path: str, param: str) -> list[str]:
    """The channels a model takes, read from its sidecar; a clear error when it is no model."""
    if not path:
        raise ParameterProblem(f"{param}: choose a checkpoint (checkpoint.json) or an ONNX model.")
    entry = read_entry(path)
    if entry is None:
        raise ParameterProblem(f"{param}: {path} is neither a cascade checkpoint (a folder with "
                               "checkpoint.json, or a file in it) nor an .onnx model.")
    return list(entry.channels or DEFAULT_CHANNELS)


class MapLandslides(JobAlgorithm):
    HELP = ("Maps landslides in one image per year with a cascade checkpoint (tiled ONNX inference in "
            "the worker Python) and writes a run folder with a GeoPackage of landslide polygons per "
            "year, the probability rasters and, when the analysis is on, the new and enlarged "
            "landslides of each year against the year before, statistics, frequency-area "
            "distributions with their power-law fits, charts and an HTML report.\n\n"
            "An existing run folder is never overwritten: a run name that is taken gets a number.")

    NAME, DISPLAY_NAME = "map_landslides", "Map landslides (one image per year)"
    GROUP, GROUP_ID = "Mapping", "mapping"

    def initAlgorithm(self, config=None):  # noqa: N802
        tr = self.tr
        self.addParameter(helped(QgsProcessingParameterMultipleLayers(
            "IMAGES", tr("Images, one per year"), qgis_compat.SOURCE_RASTER),
            tr("One image layer per year (PlanetScope B, G, R, NIR; RapidEye; or RGB orthophotos), in any CRS: "
               "every year is mapped in the first year's.")))
        self.add_years(of="images")
        self.add_band_parameters()
        self.addParameter(helped(model_parameter("MODEL", tr("Model (empty: automatic)"), bundled_default=False),
                                 tr("A checkpoint (its checkpoint.json) or an ONNX model. Empty: the bundled cascade "
                                    "checkpoint, or the bundled RGB checkpoint when an image has no near-infrared "
                                    "band.")))
        self.addParameter(helped(QgsProcessingParameterFeatureSource(
            "AREA", tr("Map only inside polygons"), [qgis_compat.SOURCE_POLYGON], None, True),
            tr("Optional: a polygon layer (a catchment, a study area). Only pixels inside are mapped and "
               "counted in the mapped area, so densities refer to it. With 'Selected features only' ticked, "
               "only those.")))
        self.addParameter(helped(QgsProcessingParameterExtent("EXTENT", tr("Map only inside extent"), None, True),
                                 tr("Optional: a rectangle, e.g. the map canvas extent. With polygons as well, "
                                    "only where both overlap.")))
        self.addParameter(helped(QgsProcessingParameterNumber(
            "THRESHOLD", tr("Probability threshold"), qgis_compat.NUMBER_DOUBLE, None, True, 0.01, 0.99),
            tr("Pixels of at least this probability are landslide; empty: the checkpoint's calibrated threshold.")))
        self.addParameter(helped(QgsProcessingParameterNumber(
            "MIN_AREA", tr("Smallest landslide (m²)"), qgis_compat.NUMBER_INTEGER,
            int(InferenceJob.min_area_m2), False, 0),      # whole m²: shown without decimals
            tr("Polygons smaller than this are dropped.")))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "NODATA", tr("Nodata value"), qgis_compat.NUMBER_DOUBLE, None, True),
            tr("For images that declare none: pixels of this value (e.g. 0 for a black collar) are not mapped.")))
        self.addParameter(helped(QgsProcessingParameterBoolean("ANALYSE", tr("Change and FAD analysis"), True),
                                 tr("Subtract consecutive years (new and enlarged landslides), per-year "
                                    "statistics, frequency-area distributions with power-law fits, and charts.")))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            "CONFIRM_CHANGES", tr("New only where the images changed"), InferenceJob.confirm_changes),
            tr("A new or enlarged polygon is kept only where the image changed from the year before, relative to "
               "the ground around it; the others (no change seen, or no data the year before) are returned as "
               "unconfirmed layers.")))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "TILE_SIZE", tr("Tile size (px)"), qgis_compat.NUMBER_INTEGER, None, True, 16, 8192),
            tr("Pixels per tile side; empty: the model's own.")))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "OVERLAP", tr("Tile overlap (px)"), qgis_compat.NUMBER_INTEGER, InferenceJob.overlap, False, 0, 1024),
            tr("Overlap between neighbouring tiles; their edges are discarded.")))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "BATCH_SIZE", tr("Tiles per batch"), qgis_compat.NUMBER_INTEGER, InferenceJob.batch_size, False, 1, 512),
            tr("Tiles predicted together; larger is faster on a GPU and takes more memory.")))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "DEVICE", tr("Device"), options=DEVICES, defaultValue=0),
            tr("Auto: the GPU when ONNX Runtime sees one, else the CPU.")))
        self.addParameter(helped(QgsProcessingParameterBoolean("UNCERTAINTY", tr("Uncertainty and review areas"),
                                                               False),
                                 tr("Per-year uncertainty rasters and suggested review areas: where correcting "
                                    "the map teaches a fine-tuning most.")))
        self.addParameter(advanced(QgsProcessingParameterBoolean("TTA", tr("Average four flips (4× slower)"), False),
                                   tr("Test-time augmentation: every tile is predicted as it is and flipped three "
                                      "ways, and the probabilities averaged.")))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "RESAMPLE", tr("Other pixel sizes"),
            options=[tr("resample to the model's"), tr("map as they are (warn)")], defaultValue=0),
            tr("Images whose pixel size is far from the one the model was trained on are resampled to it, "
               "or mapped as they are with a warning.")))
        self.addParameter(advanced(QgsProcessingParameterBoolean("ALLOW_LARGE", tr("Allow very large jobs"), False),
                                   tr(f"Without it a job of more than {LARGE_JOB_PIXELS / 1e6:,.0f} million pixels "
                                      "(all years together, within the area) is refused: it can take many hours.")))
        self.addParameter(advanced(QgsProcessingParameterString("CLUSTER", tr("Run on (Dask cluster)"),
                                                               InferenceJob.cluster, False, True),
                                   tr("Where tiles are predicted: local (this process), local:N (N worker processes "
                                      "on this machine), or a Dask scheduler address such as tcp://host:8786 whose "
                                      "workers see the same input, model and output paths.")))
        self.add_output_folder()
        self.addParameter(QgsProcessingParameterFeatureSink(
            "STATISTICS", tr("Statistics per year"), qgis_compat.SOURCE_VECTOR, QgsProcessing.TEMPORARY_OUTPUT,
            True, True))
        self.addOutput(QgsProcessingOutputFolder("RUN_FOLDER", tr("Run folder")))
        self.addOutput(QgsProcessingOutputMultipleLayers("LANDSLIDES", tr("Landslides per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("CHANGES", tr("New and enlarged landslides per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("UNCONFIRMED", tr("New parts the images do not support, "
                                                                            "per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("PROBABILITY", tr("Landslide probability per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("UNCERTAINTY_LAYERS", tr("Uncertainty per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("REVIEW", tr("Suggested review areas per year")))
        self.addOutput(QgsProcessingOutputFile("GEOPACKAGE", tr("GeoPackage of the run")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", tr("Report")))

    def check(self, parameters, context) -> list[str]:
        images = self.layers(parameters, "IMAGES", context)
        if not images:
            return ["IMAGES: choose at least one image layer."]
        self.years_of(parameters, "YEARS", images, context, "images")
        channels = self.channels(parameters, context, images)
        self.area_layer(parameters, context)
        self.bounds(parameters, context)
        problems = []
        for i, (layer, bands) in enumerate(zip(images, self.band_specs(parameters, context, len(images)))):
            problems += [f"IMAGES: {p.message}" for p in inputs.check_raster(
                layer, bands, channels, f"Image {i + 1}", f"IMAGES[{i}]") if p.severity == inputs.ERROR]
        return problems

    def nodata(self, parameters, context):
        """The NODATA parameter, None when unset (0 is a valid nodata value)."""
        if parameters.get("NODATA") in (None, ""):
            return None
        return self.parameterAsDouble(parameters, "NODATA", context)

    def build_job(self, parameters, context, feedback) -> InferenceJob:
        images = self.layers(parameters, "IMAGES", context)
        years = self.years_of(parameters, "YEARS", images, context, "images")
        bands = self.band_specs(parameters, context, len(images))
        channels = self.channels(parameters, context, images)
        self._warnings = [p.message for i, (layer, b) in enumerate(zip(images, bands))
                          for p in inputs.check_raster(layer, b, channels, f"Image {i + 1}", "")
                          if p.severity == inputs.WARNING]
        return InferenceJob(
            years=[YearInput(y, inputs.raster_path(layer), b, nodata=self.nodata(parameters, context))
                   for y, layer, b in zip(years, images, bands)],
            model=self.parameterAsFile(parameters, "MODEL", context) or AUTO,
            output_dir=self.output_dir(parameters, context), run_name=self.run_name(parameters, context),
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context) or None,     # unset: 0
            overlap=self.parameterAsInt(parameters, "OVERLAP", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context) or None,
            min_area_m2=self.parameterAsDouble(parameters, "MIN_AREA", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            analyse=self.parameterAsBool(parameters, "ANALYSE", context),
            confirm_changes=self.parameterAsBool(parameters, "CONFIRM_CHANGES", context),
            uncertainty=self.parameterAsBool(parameters, "UNCERTAINTY", context),
            tta=self.parameterAsBool(parameters, "TTA", context),
            resample=RESAMPLE_CHOICES[self.parameterAsEnum(parameters, "RESAMPLE", context)],
            area=self.area_spec(parameters, context), **self.bounds(parameters, context),
            max_pixels=None if self.parameterAsBool(parameters, "ALLOW_LARGE", context) else LARGE_JOB_PIXELS,
            cluster=(self.parameterAsString(parameters, "CLUSTER", context) or "").strip() or InferenceJob.cluster)

    def area_layer(self, parameters, context):
        """(layer, selected features only) of AREA, or (None, False) when unset; a
        ParameterProblem when it cannot delimit anything."""
        value = parameters.get("AREA")
        if value in (None, ""):
            return None, False
        definition = isinstance(value, QgsProcessingFeatureSourceDefinition)
        selected = definition and value.selectedFeaturesOnly
        ref = value.source.staticValue() if definition else value
        layer = ref if isinstance(ref, QgsVectorLayer) else QgsProcessingUtils.mapLayerFromString(str(ref), context)
        if layer is None:
            raise ParameterProblem(f"AREA: {ref} is not a polygon layer QGIS can open.")
        if selected and not layer.selectedFeatureCount():
            raise ParameterProblem(f"AREA: 'Selected features only' is ticked, but no feature of {layer.name()} is "
                                   "selected; select the area's polygons or untick it.")
        if not layer.featureCount():
            raise ParameterProblem(f"AREA: {layer.name()} has no features; choose a layer with the area's polygons.")
        return layer, selected

    def area_spec(self, parameters, context):
        """AREA as a source the worker reads: the layer's file, or a snapshot of a layer that
        is not one, of a filtered layer, or of its selected features."""
        layer, selected = self.area_layer(parameters, context)
        return None if layer is None else self.vector_spec(layer, selected)

    def bounds(self, parameters, context) -> dict:
        """EXTENT as the job's bounds and their CRS (the extent's own, else the project's)."""
        if parameters.get("EXTENT") in (None, ""):
            return {}
        rect = self.parameterAsExtent(parameters, "EXTENT", context)
        if rect.isNull() or rect.isEmpty():
            raise ParameterProblem("EXTENT: the extent is empty; draw one on the canvas or leave it unset.")
        crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
        if not crs.isValid() and context.project() is not None:
            crs = context.project().crs()
        return {"bounds": [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()],
                "bounds_crs": crs.toWkt() if crs.isValid() else None}

    def channels(self, parameters, context, images) -> list[str]:
        """The input channels of the chosen model; for automatic, of the bundled model the
        worker will pick for these images (the same rule, core.mapping.bundled.auto_model)."""
        path = self.parameterAsFile(parameters, "MODEL", context)
        if path:
            return model_channels(path, "MODEL")
        bands = self.band_specs(parameters, context, len(images))
        chosen = auto_model([inputs.layer_has_nir(layer, b) for layer, b in zip(images, bands)])
        return model_channels(str(chosen / INFO_NAME if chosen.is_dir() else chosen), "MODEL")

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        run_dir, gpkg = Path(result["run_dir"]), result["geopackage"]
        years = sorted(result.get("years", []), key=lambda y: y["year"])
        index = {y["year"]: i for i, y in enumerate(years)}
        specs = sorted(run_layer_specs(result), key=lambda spec: spec.year)      # the outputs: oldest first
        group = run_group_name(run_dir)                    # as the dock's: newest year on top
        for spec in specs:
            load_on_completion(context, spec.uri, spec.name, spec.output, spec.style, visible=spec.visible,
                               group=group, order=(RANKS + 1) * index[spec.year] + RANKS - spec.rank)
        uris = {key: [spec.uri for spec in specs if spec.output == key]
                for key in ("LANDSLIDES", "CHANGES", "UNCONFIRMED", "PROBABILITY", "UNCERTAINTY_LAYERS", "REVIEW")}
        out = {"RUN_FOLDER": str(run_dir), **uris, "GEOPACKAGE": gpkg, "STATISTICS": None, "REPORT": None}
        statistics = result.get("statistics") or []
        if statistics:
            out["STATISTICS"] = rows_to_sink(self, statistics, parameters, "STATISTICS", context)
        if self.parameterAsBool(parameters, "ANALYSE", context) or statistics:
            out["REPORT"] = report_output(result, "mapping")
        summary = ", ".join(f"{y['year']}: {y['polygons']} landslides" for y in years)
        feedback.pushInfo(f"Mapped {summary} with {model_name(result.get('model', ''))} into {run_dir}.")
        return out
