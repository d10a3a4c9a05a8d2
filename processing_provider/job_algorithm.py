"""What every Landslide Mapper algorithm shares: parameters to a job spec, the job to the worker.

Each algorithm turns its Processing parameters into the same job spec (core.jobs.specs) the
dock and the command line build, and runs it in the worker process through
:class:`~..tasks.worker_process.WorkerRun`. The phases follow Processing's threading:

* ``checkParameterValues`` (main thread): every reason the inputs cannot work, so the
  Processing dialog, ``processing.run`` and ``qgis_process`` all say what is wrong
  (naming the layer) before anything starts;
* ``prepareAlgorithm`` (main thread): the job spec; layers the worker cannot read as
  files (memory, database, filtered) are written to a GeoPackage snapshot here;
* ``processAlgorithm`` (Processing's thread, or the only one in qgis_process): the
  worker, with its progress and log on the feedback and cancellation polled every
  0.1 s; results become Processing outputs, and layers to load into the project.
"""
from __future__ import annotations

import re
import tempfile
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from qgis.core import (QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsMapLayer, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterString)
from qgis.PyQt.QtCore import QCoreApplication

from .. import qgis_compat
from ..core.geodata.bands import PRESET_LABELS
from ..core.errors import InputError
from ..core.jobs.specs import InventoryLayer
from ..core.progress import WARNING_PREFIX
from ..core.inventory.report import run_report
from ..tasks.worker_process import WorkerRun, default_worker_python
from ..qgis_io import inputs
from ..qgis_io.run_layers import save_default_style

BAND_KEYS = ["auto", *PRESET_LABELS]
BAND_LABELS = ["Auto (from the band names, else the band count)", *PRESET_LABELS.values()]
DEVICES = ["auto", "cpu", "gpu"]


class ParameterProblem(Exception):
    """Inputs that cannot work; the message names the parameter and the layer."""


def advanced(param: QgsProcessingParameterDefinition, help_text: str = "") -> QgsProcessingParameterDefinition:
    param.setFlags(param.flags() | qgis_compat.PARAMETER_ADVANCED)
    return helped(param, help_text) if help_text else param


def helped(param: QgsProcessingParameterDefinition, help_text: str) -> QgsProcessingParameterDefinition:
    """A parameter with a short label and its explanation, which the dialog shows as the
    field's tooltip and the algorithm's help panel lists under Parameters."""
    param.setHelp(help_text)
    return param


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class JobAlgorithm(QgsProcessingAlgorithm):
    """Base of the algorithms: subclasses declare parameters, ``check``, ``build_job`` and
    ``outputs``; this class runs the job and turns failures into Processing errors."""

    HELP = ""
    NAME = DISPLAY_NAME = GROUP = GROUP_ID = ""     # each algorithm's identity (QGIS asks by methods)

    def __init__(self):
        super().__init__()
        self._job = None
        self._warnings: list[str] = []

    # -- identity -------------------------------------------------------------------
    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("LandslideMapper", text)

    def shortHelpString(self) -> str:  # noqa: N802
        """The algorithm's help, then every parameter's explanation (the help panel)."""
        text = "".join(f"<p>{_escape(part)}</p>" for part in self.tr(self.HELP).split("\n\n") if part)
        items = [f"<dt><b>{_escape(d.description())}</b></dt><dd>{_escape(d.help())}</dd>"
                 for d in self.parameterDefinitions() if d.help()]
        if items:
            text += f"<h3>{self.tr('Parameters')}</h3><dl>{''.join(items)}</dl>"
        return text

    def icon(self):
        from ..qgis_io.icon import plugin_icon

        return plugin_icon()

    # -- checking and building (main thread) ----------------------------------------
    def check(self, parameters, context) -> list[str]:
        """Reasons the parameters cannot work (errors only)."""
        return []

    def build_job(self, parameters, context, feedback):
        raise NotImplementedError

    def checkParameterValues(self, parameters, context):  # noqa: N802
        # QGIS 3.22's parameters may refuse a missing value even when they have a default,
        # which every parameterAs*() would use: check what will be used
        defaults = {d.name(): d.defaultValue() for d in self.parameterDefinitions()
                    if d.name() not in parameters and d.defaultValue() is not None}
        parameters = {**defaults, **parameters}
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        try:
            problems = self.check(parameters, context)
        except (ParameterProblem, InputError, QgsProcessingException) as exc:
            problems = [str(exc)]
        return (False, "\n".join(problems)) if problems else (True, "")

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            self._job = self.build_job(parameters, context, feedback)
            self._job.validate()
        except (ParameterProblem, InputError) as exc:
            raise QgsProcessingException(str(exc)) from None
        for text in self._warnings:
            feedback.pushWarning(text)
        return True

    # -- running (Processing's thread) ----------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        last_message = [""]

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(100.0 * fraction)
            if message and message != last_message[0]:
                last_message[0] = message
                feedback.setProgressText(message)

        def warning(event: dict) -> None:
            if event.get("event") == "warning":
                feedback.pushWarning(f"Warning: {event.get('message', '')}")

        worker = WorkerRun(self._job, default_worker_python(), on_progress=progress, on_event=warning,
                           on_log=lambda line: None if line.startswith(WARNING_PREFIX) else feedback.pushInfo(line))
        feedback.pushInfo(f"Worker Python: {worker.python}")
        ok = worker.run(feedback.isCanceled)
        if worker.cancelled or feedback.isCanceled():
            raise QgsProcessingException("Cancelled; no partial outputs were kept.")
        if not ok:
            if worker.stderr_tail.strip():
                feedback.pushDebugInfo(worker.stderr_tail.strip())
            raise QgsProcessingException(worker.failure_reason)
        results = self.outputs(worker.result, parameters, context, feedback)
        # a destination parameter's value is also an output (the modeler chains it)
        results["OUTPUT_FOLDER"] = self._job.output_dir
        return results

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        raise NotImplementedError

    # -- shared parameter helpers ---------------------------------------------------
    def add_output_folder(self, default: Optional[str] = None, description: Optional[str] = None,
                          run_name: bool = True) -> None:
        self.addParameter(helped(QgsProcessingParameterFolderDestination(
            "OUTPUT_FOLDER", description or self.tr("Output folder"),
            defaultValue=default or QgsProcessing.TEMPORARY_OUTPUT),
            self.tr("A new run folder is made inside it; nothing in it is overwritten.")))
        if not run_name:
            return
        self.addParameter(helped(QgsProcessingParameterString(
            "RUN_NAME", self.tr("Run name"), optional=True),
            self.tr("Name of the run folder; empty: from the date and time. A number is added if it is taken.")))

    def add_band_parameters(self) -> None:
        self.addParameter(helped(QgsProcessingParameterEnum(
            "BANDS", self.tr("Band mapping"), options=BAND_LABELS, defaultValue=0),
            self.tr("Which band holds blue, green, red and near infrared. Auto reads the band names and "
                    "otherwise assumes B, G, R, NIR (PlanetScope order).")))
        self.addParameter(helped(QgsProcessingParameterString(
            "BANDS_CUSTOM", self.tr("Custom band mapping"), optional=True),
            self.tr("Overrides the preset, e.g. B=3,G=2,R=1,NIR=4; one for all images, or one per image "
                    "separated by ';'.")))

    def add_years(self, name: str = "YEARS", of: str = "layers") -> None:
        self.addParameter(helped(QgsProcessingParameterString(name, self.tr("Years"), optional=True),
                                 self.tr(f"The years of the {of}, in their order, e.g. 2016,2017,2018; empty: "
                                         "read from the layer or file names (scene_2017.tif).")))

    def output_dir(self, parameters, context) -> str:
        folder = self.parameterAsFileOutput(parameters, "OUTPUT_FOLDER", context)
        if not folder:
            raise ParameterProblem("OUTPUT_FOLDER: choose an output folder.")
        return folder

    def run_name(self, parameters, context) -> Optional[str]:
        return self.parameterAsString(parameters, "RUN_NAME", context).strip() or None

    def band_specs(self, parameters, context, count: int) -> list[str]:
        """One band mapping per image: the custom text (one, or one per image) or the preset."""
        custom = self.parameterAsString(parameters, "BANDS_CUSTOM", context).strip()
        if not custom:
            return [BAND_KEYS[self.parameterAsEnum(parameters, "BANDS", context)]] * count
        specs = [s.strip() for s in custom.split(";") if s.strip()]
        if len(specs) == 1:
            return specs * count
        if len(specs) != count:
            raise ParameterProblem(f"BANDS_CUSTOM: {len(specs)} band mappings for {count} image(s); give "
                                   "one for all images or one per image, separated by ';'.")
        return specs

    def layers(self, parameters, name: str, context) -> list[QgsMapLayer]:
        return self.parameterAsLayerList(parameters, name, context) if parameters.get(name) else []

    def years_of(self, parameters, years_param: str, layers: list[QgsMapLayer], context,
                 what: str) -> list[int]:
        """The year of every layer: from the years parameter, else from each layer's name."""
        text = self.parameterAsString(parameters, years_param, context).strip()
        if text:
            parts = [p for p in re.split(r"[,;\s]+", text) if p]
            if len(parts) != len(layers):
                raise ParameterProblem(f"{years_param}: {len(parts)} year(s) given for {len(layers)} {what}; "
                                       "give one year per layer, in the same order.")
            try:
                years = [int(p) for p in parts]
            except ValueError:
                raise ParameterProblem(f"{years_param}: {text!r} is not a list of years such as "
                                       "2016,2017,2018.") from None
        else:
            years = []
            for layer in layers:
                year = inputs.year_from_name(layer.name(), layer.source())
                if year is None:
                    raise ParameterProblem(f"Layer {layer.name()} ({layer.source()}) has no year in its name "
                                           f"or file name: give the years of the {what} in {years_param}.")
                years.append(year)
        problems = inputs.blocking(inputs.check_years(list(zip(years, layers))))
        if problems:
            names = ", ".join(f"{y}: {lay.name()}" for y, lay in zip(years, layers))
            raise ParameterProblem(f"{years_param}: " + " ".join(p.message for p in problems)
                                   + f" (layers and years: {names})")
        return years

    def polygon_problems(self, layers: list[QgsMapLayer], what: str, param: str) -> list[str]:
        out = []
        for i, layer in enumerate(layers):
            out += [f"{param}: {p.message}" for p in inputs.check_polygons(layer, what, f"{param}[{i}]")
                    if p.severity == inputs.ERROR]
        return out

    def inventory_layers(self, parameters, param: str, years_param: str, context) -> list[InventoryLayer]:
        layers = self.layers(parameters, param, context)
        years = self.years_of(parameters, years_param, layers, context, "inventories")
        return [InventoryLayer(year, *self.vector_source(layer)) for year, layer in zip(years, layers)]

    def vector_source(self, layer: QgsMapLayer, selected: bool = False) -> tuple[str, Optional[str]]:
        """(path, layer name) the worker reads; a snapshot for layers that are not files."""
        return inputs.vector_source(layer, Path(tempfile.gettempdir()) / "landslide_mapper_inputs", selected)

    def vector_spec(self, layer: Optional[QgsMapLayer], selected: bool = False) -> Optional[str]:
        if layer is None:
            return None
        path, name = self.vector_source(layer, selected)
        return f"{path}|layername={name}" if name else path


# ----------------------------------------------------------------------------- outputs

class _Styler(QgsProcessingLayerPostProcessorInterface):
    """Styles a result layer once Processing has loaded it into the project, and unticks it
    in the layers panel when it should start hidden (like the dock's probability rasters)."""

    alive: deque = deque(maxlen=512)    # Processing keeps a bare pointer: Python must keep the object

    def __init__(self, style: Optional[Callable], visible: bool = True):
        super().__init__()
        self.style = style
        self.visible = visible
        _Styler.alive.append(self)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        try:
            if self.style is not None:
                self.style(layer)
                save_default_style(layer)
            if not self.visible:
                node = context.project().layerTreeRoot().findLayer(layer.id())
                if node is not None:
                    node.setItemVisibilityChecked(False)
            layer.triggerRepaint()
        except Exception as exc:  # a style must never fail the algorithm
            feedback.pushWarning(f"{layer.name()} could not be styled: {exc}")


def load_on_completion(context: QgsProcessingContext, uri: str, name: str, output: str,
                       style: Optional[Callable] = None, visible: bool = True,
                       group: Optional[str] = None, order: int = 0) -> None:
    """Ask Processing to add ``uri`` to the project (when it runs with one) under ``name``,
    styled by ``style`` and, unless ``visible``, unticked. From QGIS 3.32 on, a run's layers
    go into the layer group ``group`` like the dock's, the highest ``order`` on top."""
    if context.project() is None:
        return
    details = QgsProcessingContext.LayerDetails(name, context.project(), output)
    details.forceName = True
    if group and hasattr(details, "groupName"):
        details.groupName = group
        details.layerSortKey = order
    if style is not None or not visible:
        details.setPostProcessor(_Styler(style, visible))
    context.addLayerToLoadOnCompletion(uri, details)


def _field_type(values: list):
    """The field type for a column of values: the narrowest of bool, integer, real, text."""
    present = [v for v in values if v is not None and v != ""]
    if present and all(isinstance(v, bool) for v in present):
        return qgis_compat.FIELD_TYPES["bool"]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return qgis_compat.FIELD_TYPES["int"]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return qgis_compat.FIELD_TYPES["float"]
    return qgis_compat.FIELD_TYPES["str"]


def rows_to_sink(algorithm: QgsProcessingAlgorithm, rows: list[dict], parameters, name: str, context,
                 keep: Callable[[str, object], bool] = lambda k, v: not isinstance(v, (dict, list))
                 ) -> Optional[str]:
    """Write per-year rows as a table (no geometry) to the sink parameter ``name``;
    returns the sink's destination id, or None when the sink is not wanted."""
    if name in parameters and parameters[name] is None:     # the user skipped this output
        return None
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and keep(k, v)]
    fields = QgsFields()
    for key in keys:
        fields.append(QgsField(key, _field_type([r.get(key) for r in rows])))
    sink, dest = algorithm.parameterAsSink(parameters, name, context, fields, qgis_compat.WKB_NO_GEOMETRY)
    if sink is None:
        return None
    for row in rows:
        feature = QgsFeature(fields)
        for i, key in enumerate(keys):
            value = row.get(key)
            feature.setAttribute(i, None if value == "" else value)
        sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
    return dest


def report_output(result: dict, kind: str) -> Optional[str]:
    """The REPORT output: the run's HTML page (the same page the dock writes), or None."""
    report = run_report(result, kind)
    return str(report) if report else None
