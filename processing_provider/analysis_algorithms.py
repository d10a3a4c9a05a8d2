"""Processing algorithms over inventories: temporal subtraction, statistics and FAD, accuracy."""
from __future__ import annotations


from qgis.core import (QgsProcessing, QgsProcessingOutputFile, QgsProcessingOutputFolder,
                       QgsProcessingOutputHtml, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterVectorLayer)

from .. import qgis_compat
from ..core.jobs.specs import AnalyseJob, AssessJob, SubtractJob
from ..core.names import changes_layer
from ..qgis_io.run_layers import run_group_name, style_changes, style_status
from .job_algorithm import JobAlgorithm, advanced, load_on_completion, report_output, rows_to_sink


class _InventoryAlgorithm(JobAlgorithm):
    """Algorithms whose input is one polygon layer (an inventory) per year."""

    GROUP, GROUP_ID = "Inventory analysis", "analysis"

    def add_inventories(self, name: str = "INVENTORIES", years: str = "YEARS",
                        label: str = "Landslide inventories, one polygon layer per year") -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            name, self.tr(label), qgis_compat.SOURCE_POLYGON))
        self.add_years(years, of="inventories")

    def inventory_problems(self, parameters, context, name: str = "INVENTORIES", years: str = "YEARS",
                           minimum: int = 1) -> list[str]:
        layers = self.layers(parameters, name, context)
        if len(layers) < minimum:
            return [f"{name}: choose at least {minimum} polygon layer(s), one per year; got {len(layers)}."]
        self.years_of(parameters, years, layers, context, "inventories")
        return self.polygon_problems(layers, "Inventory", name)

    def add_statistics_outputs(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSink(
            "STATISTICS", self.tr("Statistics per year"), qgis_compat.SOURCE_VECTOR, QgsProcessing.TEMPORARY_OUTPUT,
            True, True))
        self.addOutput(QgsProcessingOutputFolder("RUN_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report")))

    def statistics_outputs(self, result: dict, parameters, context, kind: str) -> dict:
        return {"RUN_FOLDER": result["run_dir"],
                "STATISTICS": rows_to_sink(self, result.get("statistics") or [], parameters, "STATISTICS", context),
                "REPORT": report_output(result, kind)}


class SubtractInventories(_InventoryAlgorithm):
    HELP = ("New and enlarged landslides of every year against the year before (E_T = P_T − P_{T−1}): "
            "the parts of each year's polygons not covered by the previous year's, after a morphological "
            "opening that drops slivers along shared borders and remnants smaller than a few pixels. "
            "Writes a GeoPackage with one layer new_<year> per year after the first (each polygon says "
            "whether it is new or enlarges an older landslide), statistics and frequency-area charts.\n\n"
            "Give the pixel size of the imagery the inventories were mapped on: the sliver and remnant "
            "sizes are in its pixels.")

    NAME, DISPLAY_NAME = "subtract_inventories", "Temporal subtraction (new and enlarged landslides)"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_inventories()
        self.addParameter(QgsProcessingParameterNumber(
            "PIXEL_SIZE", self.tr("Pixel size of the mapped imagery (m)"), qgis_compat.NUMBER_DOUBLE,
            SubtractJob.pixel_size_m, False, 0.01, 1000.0))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "SLIVER_PX", self.tr("Sliver buffer (pixels)"), qgis_compat.NUMBER_DOUBLE, SubtractJob.sliver_px, False,
            0.0, 50.0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "MIN_REMNANT_PX", self.tr("Smallest part kept (pixels)"), qgis_compat.NUMBER_DOUBLE,
            SubtractJob.min_remnant_px, False, 0.0, 10000.0)))
        self.add_output_folder()
        self.add_statistics_outputs()
        self.addOutput(QgsProcessingOutputMultipleLayers("CHANGES", self.tr("New and enlarged landslides per year")))
        self.addOutput(QgsProcessingOutputFile("GEOPACKAGE", self.tr("GeoPackage of the changes")))

    def check(self, parameters, context) -> list[str]:
        return self.inventory_problems(parameters, context, minimum=2)

    def build_job(self, parameters, context, feedback) -> SubtractJob:
        return SubtractJob(years=self.inventory_layers(parameters, "INVENTORIES", "YEARS", context),
                           output_dir=self.output_dir(parameters, context),
                           run_name=self.run_name(parameters, context),
                           pixel_size_m=self.parameterAsDouble(parameters, "PIXEL_SIZE", context),
                           sliver_px=self.parameterAsDouble(parameters, "SLIVER_PX", context),
                           min_remnant_px=self.parameterAsDouble(parameters, "MIN_REMNANT_PX", context))

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        gpkg = result["geopackage"]
        changes = []
        for change in result.get("changes", []):
            uri = f"{gpkg}|layername={changes_layer(change['year'])}"
            changes.append(uri)
            load_on_completion(context, uri, f"new or enlarged {change['year']}", "CHANGES",
                               lambda layer, year=change["year"]: style_changes(layer, year),
                               group=run_group_name(result["run_dir"]), order=change["year"])
        return {**self.statistics_outputs(result, parameters, context, "subtract"),
                "CHANGES": changes, "GEOPACKAGE": gpkg}


class InventoryStatistics(_InventoryAlgorithm):
    HELP = ("Statistics of every year's inventory (count, total, median and largest area, density), its "
            "frequency-area distribution with the power-law exponent α fitted above x_min by maximum "
            "likelihood (Clauset et al.), the double-Pareto and inverse-gamma tail exponents and the "
            "landslide-event magnitude, with FAD and trend charts.\n\n"
            "Densities need the area that was mapped: give it in km², or a polygon layer of the mapped "
            "extent; otherwise the bounding box of all years is used, which overstates it.")

    NAME, DISPLAY_NAME = "inventory_statistics", "Inventory statistics and frequency-area distribution"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_inventories()
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_AREA", self.tr("Leave out polygons smaller than (m²)"), qgis_compat.NUMBER_DOUBLE,
            AnalyseJob.min_area_m2, False, 0.0))
        self.addParameter(QgsProcessingParameterNumber(
            "MAPPED_AREA", self.tr("Mapped area (km²; empty: from the extent layer or the bounding box)"),
            qgis_compat.NUMBER_DOUBLE, None, True, 0.0))
        self.addParameter(QgsProcessingParameterVectorLayer(
            "EXTENT", self.tr("Mapped extent (polygons)"), [qgis_compat.SOURCE_POLYGON], None, True))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "BOOTSTRAP", self.tr("Bootstrap resamples for the uncertainty of x_min and α"),
            qgis_compat.NUMBER_INTEGER, AnalyseJob.bootstrap, False, 0, 10000)))
        self.add_output_folder()
        self.add_statistics_outputs()

    def check(self, parameters, context) -> list[str]:
        problems = self.inventory_problems(parameters, context)
        extent = self.parameterAsVectorLayer(parameters, "EXTENT", context)
        if extent is not None:
            problems += self.polygon_problems([extent], "Mapped extent", "EXTENT")
        return problems

    def build_job(self, parameters, context, feedback) -> AnalyseJob:
        return AnalyseJob(years=self.inventory_layers(parameters, "INVENTORIES", "YEARS", context),
                          output_dir=self.output_dir(parameters, context),
                          run_name=self.run_name(parameters, context),
                          min_area_m2=self.parameterAsDouble(parameters, "MIN_AREA", context),
                          mapped_area_km2=self.parameterAsDouble(parameters, "MAPPED_AREA", context) or None,
                          extent=self.vector_spec(self.parameterAsVectorLayer(parameters, "EXTENT", context)),
                          bootstrap=self.parameterAsInt(parameters, "BOOTSTRAP", context))

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        for row in result.get("statistics", []):
            alpha = row.get("alpha")
            feedback.pushInfo(f"{row['year']}: {row.get('count')} landslides, α = "
                              + (f"{alpha:.2f}" if isinstance(alpha, (int, float)) else "not fitted"))
        return self.statistics_outputs(result, parameters, context, "statistics")


class AssessAccuracy(_InventoryAlgorithm):
    HELP = ("Accuracy of predicted inventories against reference inventories, year by year: pixel "
            "precision, recall, F1, IoU and MCC on a grid of the given pixel size, and object matching. "
            "The predicted and reference polygons are written with a status (matched, false alarm, "
            "missed) and loaded coloured by it.\n\n"
            "An assessment area (polygons) limits the comparison to where the reference is complete.")

    NAME, DISPLAY_NAME = "assess_accuracy", "Accuracy against reference inventories"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_inventories("PREDICTED", "PREDICTED_YEARS", "Predicted inventories, one per year")
        self.add_inventories("REFERENCE", "REFERENCE_YEARS", "Reference inventories, one per year")
        self.addParameter(QgsProcessingParameterVectorLayer(
            "AREA", self.tr("Assessment area (polygons)"), [qgis_compat.SOURCE_POLYGON], None, True))
        self.addParameter(QgsProcessingParameterNumber(
            "PIXEL_SIZE", self.tr("Pixel size of the comparison grid (m)"), qgis_compat.NUMBER_DOUBLE,
            AssessJob.pixel_size_m, False, 0.01, 1000.0))
        self.add_output_folder()
        self.addParameter(QgsProcessingParameterFeatureSink(
            "ACCURACY", self.tr("Accuracy per year"), qgis_compat.SOURCE_VECTOR, QgsProcessing.TEMPORARY_OUTPUT,
            True, True))
        self.addOutput(QgsProcessingOutputFolder("RUN_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report")))
        self.addOutput(QgsProcessingOutputMultipleLayers("ASSESSED", self.tr("Predicted and reference "
                                                                             "polygons with their status")))

    def check(self, parameters, context) -> list[str]:
        problems = self.inventory_problems(parameters, context, "PREDICTED", "PREDICTED_YEARS")
        problems += self.inventory_problems(parameters, context, "REFERENCE", "REFERENCE_YEARS")
        area = self.parameterAsVectorLayer(parameters, "AREA", context)
        if area is not None:
            problems += self.polygon_problems([area], "Assessment area", "AREA")
        return problems

    def build_job(self, parameters, context, feedback) -> AssessJob:
        return AssessJob(predicted=self.inventory_layers(parameters, "PREDICTED", "PREDICTED_YEARS", context),
                         reference=self.inventory_layers(parameters, "REFERENCE", "REFERENCE_YEARS", context),
                         output_dir=self.output_dir(parameters, context),
                         run_name=self.run_name(parameters, context),
                         area=self.vector_spec(self.parameterAsVectorLayer(parameters, "AREA", context)),
                         pixel_size_m=self.parameterAsDouble(parameters, "PIXEL_SIZE", context))

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        gpkg, rows = result.get("geopackage"), result.get("rows", [])
        assessed = []
        for row in sorted(rows, key=lambda r: r["year"]):
            feedback.pushInfo(f"{row['year']}: precision {row.get('precision')}, recall {row.get('recall')}, "
                              f"F1 {row.get('f1')}, IoU {row.get('iou')}")
            for side in ("predicted", "reference"):
                uri = f"{gpkg}|layername={side}_{row['year']}"
                assessed.append(uri)
                load_on_completion(context, uri, f"{side} {row['year']} (F1 {row.get('f1')})", "ASSESSED",
                                   style_status, group=run_group_name(result["run_dir"]),
                                   order=2 * row["year"] + (side == "predicted"))
        run_dir = result["run_dir"]
        return {"RUN_FOLDER": run_dir, "ASSESSED": assessed,
                "ACCURACY": rows_to_sink(self, rows, parameters, "ACCURACY", context),
                "REPORT": report_output(result, "accuracy")}
