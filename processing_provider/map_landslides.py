"""Processing algorithm: map landslides in one image per year (the InferenceJob)."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingOutputFile, QgsProcessingOutputFolder,
                       QgsProcessingOutputHtml, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber)

from .. import qgis_compat
from ..core.bundled import AUTO, auto_model, default_model
from ..core.checkpoint import model_name
from ..core.jobs import RESAMPLE_CHOICES, InferenceJob, YearInput
from ..ui import inputs
from ..ui.model_catalog import DEFAULT_CHANNELS, read_entry
from ..ui.run_layers import (run_group_name, style_changes, style_landslides, style_probability, style_review,
                             style_uncertainty)
from .job_algorithm import DEVICES, JobAlgorithm, ParameterProblem, advanced, report_output, \
    load_on_completion, rows_to_sink

def model_parameter(name: str, description: str, bundled_default: bool = True) -> QgsProcessingParameterFile:
    """A checkpoint (its checkpoint.json, or any file in its folder) or an ONNX model; the
    bundled cascade checkpoint by default, or (``bundled_default`` False) none: empty then
    means automatic. The filter ends in ``All files (*)``: without it QGIS 3.22 refuses a
    checkpoint folder (no suffix); ``model_channels`` says what is wrong with a path instead."""
    default = None
    if bundled_default:
        default = default_model()
        default = str(default / "checkpoint.json" if default.is_dir() else default)
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
            "distributions with their power-law fits, and charts.\n\n"
            "Years are read from the layer or file names (scene_2017.tif) unless given in Years. "
            "The band mapping says which band holds blue, green, red and near infrared; Auto reads "
            "band names and otherwise assumes B, G, R, NIR (PlanetScope order).\n\n"
            "An existing run folder is never overwritten: a run name that is taken gets a number.")

    def name(self):
        return "map_landslides"

    def displayName(self):  # noqa: N802
        return self.tr("Map landslides (one image per year)")

    def group(self):
        return self.tr("Mapping")

    def groupId(self):  # noqa: N802
        return "mapping"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "IMAGES", self.tr("Images, one per year"), qgis_compat.SOURCE_RASTER))
        self.add_years(of="images")
        self.add_band_parameters()
        self.addParameter(model_parameter("MODEL", self.tr(
            "Checkpoint or ONNX model (empty: automatic, the bundled cascade checkpoint, or the bundled RGB "
            "checkpoint when an image has no near-infrared band)"), bundled_default=False))
        self.addParameter(QgsProcessingParameterNumber(
            "THRESHOLD", self.tr("Probability threshold (empty: the checkpoint's calibrated one)"),
            qgis_compat.NUMBER_DOUBLE, None, True, 0.01, 0.99))
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_AREA", self.tr("Smallest landslide kept (m²)"), qgis_compat.NUMBER_INTEGER,
            int(InferenceJob.min_area_m2), False, 0))      # whole m²: shown without decimals
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "NODATA", self.tr("Nodata value of images that declare none"), qgis_compat.NUMBER_DOUBLE, None, True)))
        self.addParameter(QgsProcessingParameterBoolean(
            "ANALYSE", self.tr("Subtract consecutive years, statistics and frequency-area charts"), True))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "TILE_SIZE", self.tr("Tile size in pixels (empty: the model's)"), qgis_compat.NUMBER_INTEGER,
            None, True, 16, 8192)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "OVERLAP", self.tr("Tile overlap in pixels"), qgis_compat.NUMBER_INTEGER, 32, False, 0, 1024)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "BATCH_SIZE", self.tr("Tiles per batch"), qgis_compat.NUMBER_INTEGER, 8, False, 1, 512)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "DEVICE", self.tr("Device"), options=DEVICES, defaultValue=0)))
        self.addParameter(QgsProcessingParameterBoolean(
            "UNCERTAINTY", self.tr("Uncertainty rasters and suggested review areas (where to correct next)"), False))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            "TTA", self.tr("Average the four flips of every tile (test-time augmentation, 4× slower)"), False)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "RESAMPLE", self.tr("Images far from the model's pixel size"),
            options=[self.tr("resample to it"), self.tr("map as they are (warn)")], defaultValue=0)))
        self.add_output_folder()
        self.addParameter(QgsProcessingParameterFeatureSink(
            "STATISTICS", self.tr("Statistics per year"), qgis_compat.SOURCE_VECTOR, QgsProcessing.TEMPORARY_OUTPUT,
            True, True))
        self.addOutput(QgsProcessingOutputFolder("RUN_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputMultipleLayers("LANDSLIDES", self.tr("Landslides per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("CHANGES", self.tr("New and enlarged landslides per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("PROBABILITY", self.tr("Landslide probability per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("UNCERTAINTY_LAYERS", self.tr("Uncertainty per year")))
        self.addOutput(QgsProcessingOutputMultipleLayers("REVIEW", self.tr("Suggested review areas per year")))
        self.addOutput(QgsProcessingOutputFile("GEOPACKAGE", self.tr("GeoPackage of the run")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report")))

    def check(self, parameters, context) -> list[str]:
        images = self.layers(parameters, "IMAGES", context)
        if not images:
            return ["IMAGES: choose at least one image layer."]
        self.years_of(parameters, "YEARS", images, context, "images")
        channels = self.channels(parameters, context, images)
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
            uncertainty=self.parameterAsBool(parameters, "UNCERTAINTY", context),
            tta=self.parameterAsBool(parameters, "TTA", context),
            resample=RESAMPLE_CHOICES[self.parameterAsEnum(parameters, "RESAMPLE", context)])

    def channels(self, parameters, context, images) -> list[str]:
        """The input channels of the chosen model; for automatic, of the bundled model the
        worker will pick for these images (the same rule, core.bundled.auto_model)."""
        path = self.parameterAsFile(parameters, "MODEL", context)
        if path:
            return model_channels(path, "MODEL")
        bands = self.band_specs(parameters, context, len(images))
        chosen = auto_model([inputs.layer_has_nir(layer, b) for layer, b in zip(images, bands)])
        return model_channels(str(chosen / "checkpoint.json" if chosen.is_dir() else chosen), "MODEL")

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        run_dir, gpkg = Path(result["run_dir"]), result["geopackage"]
        years = sorted(result.get("years", []), key=lambda y: y["year"])
        landslides = [f"{gpkg}|layername={y['layer']}" for y in years]
        changes = [f"{gpkg}|layername=new_{c['year']}" for c in result.get("changes", [])]
        probability = [str(run_dir / y["probability"]) for y in years]
        group = run_group_name(run_dir)      # per year, newest on top: changes, landslides, probability
        newest = years[-1]["year"] if years else None        # only the newest year starts ticked
        for i, (y, uri) in enumerate(zip(years, landslides)):
            load_on_completion(context, uri, f"landslides {y['year']}", "LANDSLIDES",
                               lambda layer, year=y["year"]: style_landslides(layer, year), group=group,
                               order=3 * i + 1, visible=y["year"] == newest)
        index = {y["year"]: i for i, y in enumerate(years)}
        for change, uri in zip(result.get("changes", []), changes):
            load_on_completion(context, uri, f"new or enlarged {change['year']}", "CHANGES",
                               lambda layer, year=change["year"]: style_changes(layer, year),
                               group=group, order=3 * index.get(change["year"], 0) + 2,
                               visible=change["year"] == newest)
        for i, (y, path) in enumerate(zip(years, probability)):
            load_on_completion(context, path, f"probability {y['year']}", "PROBABILITY", style_probability,
                               visible=False, group=group, order=3 * i)
        uncertainty = [str(run_dir / y["uncertainty"]) for y in years if y.get("uncertainty")]
        review = [f"{gpkg}|layername={y['review_layer']}" for y in years if y.get("review_layer")]
        for y, path in zip([y for y in years if y.get("uncertainty")], uncertainty):
            load_on_completion(context, path, f"uncertainty {y['year']}", "UNCERTAINTY_LAYERS", style_uncertainty,
                               visible=False, group=group, order=3 * index[y["year"]])
        for y, uri in zip([y for y in years if y.get("review_layer")], review):
            load_on_completion(context, uri, f"review areas {y['year']}", "REVIEW", style_review, group=group,
                               order=3 * index[y["year"]] + 2, visible=y["year"] == newest)
        out = {"RUN_FOLDER": str(run_dir), "LANDSLIDES": landslides, "CHANGES": changes,
               "PROBABILITY": probability, "UNCERTAINTY_LAYERS": uncertainty, "REVIEW": review,
               "GEOPACKAGE": gpkg, "STATISTICS": None, "REPORT": None}
        statistics = result.get("statistics") or []
        if statistics:
            out["STATISTICS"] = rows_to_sink(self, statistics, parameters, "STATISTICS", context)
        if self.parameterAsBool(parameters, "ANALYSE", context) or statistics:
            out["REPORT"] = report_output(result, "mapping")
        summary = ", ".join(f"{y['year']}: {y['polygons']} landslides" for y in years)
        feedback.pushInfo(f"Mapped {summary} with {model_name(result.get('model', ''))} into {run_dir}.")
        return out
