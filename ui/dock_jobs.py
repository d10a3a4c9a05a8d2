"""The dock's forms turned into job specs (core/jobs/specs.py), the same the command line and
Processing build, emitted as ``jobRequested``."""
from __future__ import annotations

from typing import Callable, Optional

from qgis.PyQt.QtWidgets import QLabel, QMessageBox

from ..core.mapping.bundled import AUTO
from ..core.mapping.cluster import parse_cluster
from ..core.errors import InputError
from ..core.jobs.specs import (DISTILL_WEIGHT, LARGE_JOB_PIXELS, AnalyseJob, AssessJob, InferenceJob, InventoryLayer,
                               SubtractJob, TrainingSource, TrainJob, YearInput, pixels_text)
from ..qgis_io import inputs
from ..qgis_io.inputs import Problem, blocking
from .dock_checks import MAP_SCOPE



class JobForms:
    """Part of the dock (ui/dock.py): a job from each tab, or the reason it cannot leave."""

    def _ready(self, problems: list[Problem], scope: tuple[str, ...], status: QLabel) -> bool:
        """Show ``problems`` next to their fields; True when none of them blocks the run."""
        self.show_problems(problems, scope)
        stop = bool(blocking(problems))
        self._status(status, self.tr("Not started: fix the marked inputs.") if stop else "", stop)
        return not stop

    def nodata_value(self) -> Optional[float]:
        """The Options' nodata value; None when empty. Raises ValueError for other text."""
        text = self.nodataEdit.text().strip().replace(",", ".")
        return float(text) if text else None

    def pixels_to_map(self) -> float:
        """About how many pixels the mapping job reads, all years together, within the Area."""
        total = 0.0
        for _year, layer, _bands in self.year_rows():
            if layer is None:
                continue
            share, area = 1.0, self.areaPicker.extent_in(layer.crs())
            if area is not None and not layer.extent().isEmpty():
                overlap = area.intersect(layer.extent())
                share = 0.0 if overlap.isEmpty() else overlap.area() / layer.extent().area()
            total += share * layer.width() * layer.height()
        return total

    def confirm_large_job(self, pixels: float) -> bool:
        """Ask before a job of more than LARGE_JOB_PIXELS pixels starts."""
        answer = QMessageBox.question(
            self, self.tr("A very large mapping job"),
            self.tr("These images hold about {} (the limit without asking is {}): mapping them can take many "
                    "hours. Map them all? (No: choose an Area to map part of them.)"
                    ).format(pixels_text(pixels), pixels_text(LARGE_JOB_PIXELS)),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def map_job(self) -> Optional[InferenceJob]:
        """The mapping job of the form, or None when an input is wrong (shown in the form)."""
        if not self._ready(self.check_map(), MAP_SCOPE, self.mapStatusLabel):
            return None
        try:
            nodata = self.nodata_value()
        except ValueError:
            self._status(self.mapStatusLabel, self.tr("Not started: the nodata value (Options) {!r} is not a "
                                                      "number; clear it to use the images' own.").format(
                                                          self.nodataEdit.text()), True)
            return None
        cluster = self.clusterCombo.currentText().strip() or InferenceJob.cluster
        try:
            parse_cluster(cluster)
        except InputError as exc:
            self._status(self.mapStatusLabel, self.tr("Not started: Run on (Options): {}").format(exc), True)
            return None
        years = [YearInput(year, inputs.raster_path(layer), bands, nodata=nodata)
                 for year, layer, bands in self.year_rows()]
        pixels = self.pixels_to_map()
        confirmed = pixels > LARGE_JOB_PIXELS and self.confirm_large_job(pixels)
        if pixels > LARGE_JOB_PIXELS and not confirmed:
            self._status(self.mapStatusLabel, self.tr("Not started: {} is a very large job; choose an Area to "
                                                      "map part of the images.").format(pixels_text(pixels)), True)
            return None
        return InferenceJob(max_pixels=None if confirmed else LARGE_JOB_PIXELS,
            years=years, model=AUTO if self.model_is_automatic() else str(self.selected_model().path),
            output_dir=self.outputFolderWidget.filePath(),
            run_name=self.runNameEdit.text().strip() or None, tile_size=self.tileSizeSpin.value() or None,
            overlap=self.overlapSpin.value(), batch_size=self.batchSpin.value(),
            threshold=self.thresholdSpin.value() or None, min_area_m2=self.minAreaSpin.value(),
            device=self.deviceCombo.currentText().lower(), analyse=self.analyseCheck.isChecked(),
            confirm_changes=self.confirmChangesCheck.isChecked(),
            uncertainty=self.uncertaintyCheck.isChecked(), tta=self.ttaCheck.isChecked(),
            resample="auto" if self.resampleCheck.isChecked() else "off", cluster=cluster,
            **self.areaPicker.job_fields())

    def train_job(self) -> Optional[TrainJob]:
        if not self._ready(self.check_train(), ("base", "sources", "name"), self.trainStatusLabel):
            return None
        sources = []
        for row in self.training_rows():
            labels, labels_layer = inputs.vector_source(row["labels"])
            reviewed = reviewed_layer = None
            if row["reviewed"] is not None:
                reviewed, reviewed_layer = inputs.vector_source(row["reviewed"])
            sources.append(TrainingSource(
                raster=inputs.raster_path(row["raster"]), labels=labels, labels_layer=labels_layer,
                reviewed=reviewed, reviewed_layer=reviewed_layer, bands=row["bands"],
                region=row["region"] or row["raster"].name(), year=row["year"]))
        loss = self.lossCombo.currentText()
        self.epochTable.setRowCount(0)
        self.trainingCurve.clear()
        return TrainJob(
            sources=sources, output_dir=str(self.checkpoint_dir), name=self.newNameEdit.text().strip(),
            base_checkpoint=self.baseCheckpointCombo.currentData(), patch_size=int(self.patchSizeCombo.currentText()),
            epochs=self.epochsSpin.value(), batch_size=self.trainBatchSpin.value(),
            learning_rate=self.learningRateSpin.value(), loss=None if loss == "default" else loss,
            freeze=self.freezeCombo.currentText(), patience=self.patienceSpin.value(),
            augment=self.augmentCheck.isChecked(), device=self.trainDeviceCombo.currentText().lower(),
            distill_weight=DISTILL_WEIGHT if self.keepBaseCheck.isChecked() else 0.0,
            trigger=self.triggerEdit.text().strip())

    def _inventory_layers(self, rows) -> list[InventoryLayer]:
        out = []
        for year, layer in rows:
            path, name = inputs.vector_source(layer)
            out.append(InventoryLayer(year, path, name))
        return out

    def analysis_job(self, kind: str):
        """A SubtractJob, AnalyseJob or AssessJob (``kind`` subtract / fad / assess), or None."""
        scope = ("inventories", "output") + (("references",) if kind == "assess" else ())
        if not self._ready(self.check_analysis(kind), scope, self.analyseStatusLabel):
            return None
        years = self._inventory_layers(self.inventory_rows())
        out = self.outputFolderWidget.filePath()
        if kind == "subtract":
            return SubtractJob(years=years, output_dir=out, pixel_size_m=self.pixelSizeSpin.value(),
                               sliver_px=self.sliverSpin.value(), min_remnant_px=self.minRemnantSpin.value())
        if kind == "fad":
            extent = self.extentLayerCombo.currentLayer()
            extent_spec = None
            if extent is not None:
                path, name = inputs.vector_source(extent)
                extent_spec = f"{path}|layername={name}" if name else path
            return AnalyseJob(years=years, output_dir=out, min_area_m2=self.fadMinAreaSpin.value(),
                              mapped_area_km2=self.mappedAreaSpin.value() or None, extent=extent_spec,
                              bootstrap=self.bootstrapSpin.value())
        area = self.areaLayerCombo.currentLayer()
        area_spec = None
        if area is not None:
            path, name = inputs.vector_source(area)
            area_spec = f"{path}|layername={name}" if name else path
        return AssessJob(predicted=years, reference=self._inventory_layers(self.reference_rows()), output_dir=out,
                         area=area_spec, pixel_size_m=self.pixelSizeSpin.value())

    def _emit(self, job_fn: Callable[[], object]) -> None:
        from .controller import run_title

        try:
            job = job_fn()
        except Exception as exc:  # e.g. a layer that cannot be copied for the worker
            self._status(self.outputProblemLabel, str(exc), True)
            return
        if job is not None:
            self.jobRequested.emit(job, run_title(job))

    def run_map(self) -> None:
        self._emit(self.map_job)

    def run_train(self) -> None:
        self._emit(self.train_job)

    def run_subtract(self) -> None:
        self._emit(lambda: self.analysis_job("subtract"))

    def run_fad(self) -> None:
        self._emit(lambda: self.analysis_job("fad"))

    def run_assess(self) -> None:
        self._emit(lambda: self.analysis_job("assess"))
