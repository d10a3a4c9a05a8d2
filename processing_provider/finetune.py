"""Processing algorithm: fine-tune a cascade checkpoint on corrected polygons (the TrainJob)."""
from __future__ import annotations

from qgis.core import (QgsProcessingOutputBoolean, QgsProcessingOutputFolder,
                       QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from .. import qgis_compat
from ..core.training.checkpoint import INFO_NAME, improvement_text, unreviewed_text
from ..core.jobs.specs import DEFAULT_LOSS, LOSSES, TrainingSource, TrainJob
from ..qgis_io import inputs
from ..qgis_io.model_catalog import user_checkpoint_dir
from .job_algorithm import DEVICES, JobAlgorithm, ParameterProblem, advanced
from .map_landslides import model_channels, model_parameter

LOSS_CHOICES = [f"default ({DEFAULT_LOSS})", *LOSSES]
FREEZE_CHOICES = ["none", "encoder"]
PATCH_SIZES = ["64", "128", "256"]
VALIDATION_CHOICES = ["blocked", "random"]
PRECISION_CHOICES = ["auto", "on", "off"]


class FinetuneCheckpoint(JobAlgorithm):
    HELP = ("Fine-tunes a cascade checkpoint on your landslide polygons and writes a new checkpoint, the next "
            "stage of the cascade: its checkpoint.json records the base checkpoint and every earlier stage "
            "with its validation scores, and MODEL_CARD.md describes it. The base checkpoint is never "
            "changed. Training runs with TensorFlow in the worker Python; each epoch's loss and validation "
            "F1 appear in the log.\n\n"
            "Give one label layer per image, in the same order. A reviewed-area layer per image (optional) "
            "says where you checked everything: there, whatever is not a landslide polygon is taught as "
            "not landslide; without it the whole image is taken as reviewed, so the labels must be "
            "complete. Images must be in a projected CRS.\n\n"
            "New checkpoints go to the checkpoints folder of the Landslide Mapper dock by default, so the "
            "dock lists them.")

    NAME, DISPLAY_NAME = "finetune_checkpoint", "Fine-tune a checkpoint on corrected landslides"
    GROUP, GROUP_ID = "Training", "training"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(model_parameter("BASE_CHECKPOINT", self.tr("Base checkpoint (empty: the bundled one)")))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "IMAGES", self.tr("Training images"), qgis_compat.SOURCE_RASTER))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LABELS", self.tr("Landslide polygons, one layer per image (same order)"), qgis_compat.SOURCE_POLYGON))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "REVIEWED", self.tr("Reviewed areas, one layer per image (same order; optional)"),
            qgis_compat.SOURCE_POLYGON, optional=True))
        self.add_band_parameters()
        self.addParameter(QgsProcessingParameterString(
            "NAME", self.tr("Name of the new checkpoint"), "finetuned"))
        self.addParameter(QgsProcessingParameterString(
            "REGION", self.tr("Region of the training data (empty: the image layer names)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            "TRIGGER", self.tr("Trigger of the landslides (e.g. earthquake, monsoon rainfall)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            "YEARS", self.tr("Years of the images, in their order (empty: from the names; none: leave out)"),
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "EPOCHS", self.tr("Rounds (each at least 25 optimisation steps, then validated)"),
            qgis_compat.NUMBER_INTEGER, 30, False, 1, 10000))
        self.addParameter(QgsProcessingParameterNumber(
            "LEARNING_RATE", self.tr("Learning rate"), qgis_compat.NUMBER_DOUBLE, 1e-4, False, 1e-8, 1.0))
        self.addParameter(QgsProcessingParameterEnum(
            "FREEZE", self.tr("Freeze"), options=FREEZE_CHOICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("LOSS", self.tr("Loss"), options=LOSS_CHOICES, defaultValue=0))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "PATCH_SIZE", self.tr("Patch size (pixels)"), options=PATCH_SIZES, defaultValue=1)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "BATCH_SIZE", self.tr("Batch size"), qgis_compat.NUMBER_INTEGER, 16, False, 1, 1024)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "PATIENCE", self.tr("Early-stopping patience (rounds)"), qgis_compat.NUMBER_INTEGER, 8,
            False, 1, 1000)))
        self.addParameter(advanced(QgsProcessingParameterBoolean("AUGMENT", self.tr("Augment patches"), True)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "VALIDATION", self.tr("Validation split"), options=VALIDATION_CHOICES, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "VALIDATION_FRACTION", self.tr("Validation fraction"), qgis_compat.NUMBER_DOUBLE, 0.2,
            False, 0.01, 0.99)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "MAX_STEPS", self.tr("Steps per epoch at most (empty: all patches)"),
            qgis_compat.NUMBER_INTEGER, None, True, 1)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "STEPS", self.tr("Optimisation steps in all (empty: rounds × round length)"),
            qgis_compat.NUMBER_INTEGER, None, True, 1)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "HARD_NEGATIVE_WEIGHT", self.tr("Weight of deleted false alarms (pixels the base maps as landslide "
                                            "inside reviewed areas but the polygons do not)"),
            qgis_compat.NUMBER_DOUBLE, TrainJob.hard_negative_weight, False, 1.0, 100.0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "DISTILL_WEIGHT", self.tr("Weight of the base's own mapping outside the reviewed areas (keeps the "
                                      "new checkpoint close to its base where nobody corrected it; 0: off)"),
            qgis_compat.NUMBER_DOUBLE, TrainJob.distill_weight, False, 0.0, 100.0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "SEED", self.tr("Random seed"), qgis_compat.NUMBER_INTEGER, 0, False, 0)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "MIXED_PRECISION", self.tr("Mixed precision"), options=PRECISION_CHOICES, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            "DEVICE", self.tr("Device"), options=DEVICES, defaultValue=0)))
        # the checkpoint's NAME names its folder; the dock's checkpoints folder lists it
        self.add_output_folder(str(user_checkpoint_dir()), self.tr("Checkpoints folder"), run_name=False)
        self.addOutput(QgsProcessingOutputFolder("CHECKPOINT", self.tr("New checkpoint")))
        self.addOutput(QgsProcessingOutputString("CHECKPOINT_ID", self.tr("Checkpoint id")))
        self.addOutput(QgsProcessingOutputNumber("STAGE", self.tr("Cascade stage")))
        self.addOutput(QgsProcessingOutputNumber("VALIDATION_F1", self.tr("Validation F1")))
        self.addOutput(QgsProcessingOutputBoolean("IMPROVED", self.tr("Better than the base checkpoint")))

    def _sources(self, parameters, context):
        images = self.layers(parameters, "IMAGES", context)
        labels = self.layers(parameters, "LABELS", context)
        reviewed = self.layers(parameters, "REVIEWED", context)
        if not images:
            raise ParameterProblem("IMAGES: choose at least one training image.")
        if len(labels) != len(images):
            raise ParameterProblem(f"LABELS: {len(labels)} label layer(s) for {len(images)} image(s); give one "
                                   "layer of landslide polygons per image, in the same order.")
        if reviewed and len(reviewed) != len(images):
            raise ParameterProblem(f"REVIEWED: {len(reviewed)} reviewed-area layer(s) for {len(images)} image(s); "
                                   "give none, or one per image in the same order.")
        return images, labels, reviewed or [None] * len(images)

    def _years(self, parameters, context, images) -> list:
        text = self.parameterAsString(parameters, "YEARS", context).strip()
        if text.lower() == "none":
            return [None] * len(images)
        if text:
            return self.years_of(parameters, "YEARS", images, context, "images")
        return [inputs.year_from_name(layer.name(), layer.source()) for layer in images]

    def check(self, parameters, context) -> list[str]:
        base = self.parameterAsFile(parameters, "BASE_CHECKPOINT", context)
        channels = model_channels(base, "BASE_CHECKPOINT")
        if base.lower().endswith(".onnx"):
            return [f"BASE_CHECKPOINT: {base} is an ONNX model, which cannot be trained; choose a cascade "
                    f"checkpoint ({INFO_NAME} in its folder)."]
        images, labels, reviewed = self._sources(parameters, context)
        self._years(parameters, context, images)
        problems = []
        bands = self.band_specs(parameters, context, len(images))
        for i, (image, b) in enumerate(zip(images, bands)):
            problems += [f"IMAGES: {p.message}" for p in inputs.check_raster(
                image, b, channels, f"Training image {i + 1}", f"IMAGES[{i}]", geographic=inputs.ERROR)
                if p.severity == inputs.ERROR]
        problems += self.polygon_problems(labels, "Landslide polygons", "LABELS")
        problems += self.polygon_problems([r for r in reviewed if r is not None], "Reviewed area", "REVIEWED")
        return problems

    def build_job(self, parameters, context, feedback) -> TrainJob:
        images, labels, reviewed = self._sources(parameters, context)
        years = self._years(parameters, context, images)
        region = self.parameterAsString(parameters, "REGION", context).strip()
        sources = []
        for image, label, area, bands, year in zip(images, labels, reviewed,
                                                   self.band_specs(parameters, context, len(images)), years):
            label_path, label_layer = self.vector_source(label)
            area_path, area_layer = self.vector_source(area) if area is not None else (None, None)
            sources.append(TrainingSource(raster=inputs.raster_path(image), labels=label_path,
                                          labels_layer=label_layer, reviewed=area_path, reviewed_layer=area_layer,
                                          bands=bands, region=region or image.name(), year=year))
        loss = self.parameterAsEnum(parameters, "LOSS", context)
        return TrainJob(
            sources=sources, output_dir=self.output_dir(parameters, context),
            name=self.parameterAsString(parameters, "NAME", context).strip(),
            base_checkpoint=self.parameterAsFile(parameters, "BASE_CHECKPOINT", context),
            patch_size=int(PATCH_SIZES[self.parameterAsEnum(parameters, "PATCH_SIZE", context)]),
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            learning_rate=self.parameterAsDouble(parameters, "LEARNING_RATE", context),
            loss=None if loss == 0 else LOSS_CHOICES[loss],
            freeze=FREEZE_CHOICES[self.parameterAsEnum(parameters, "FREEZE", context)],
            patience=self.parameterAsInt(parameters, "PATIENCE", context),
            augment=self.parameterAsBool(parameters, "AUGMENT", context),
            validation=VALIDATION_CHOICES[self.parameterAsEnum(parameters, "VALIDATION", context)],
            validation_fraction=self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context),
            max_steps_per_epoch=self.parameterAsInt(parameters, "MAX_STEPS", context) or None,
            steps=self.parameterAsInt(parameters, "STEPS", context) or None,
            hard_negative_weight=self.parameterAsDouble(parameters, "HARD_NEGATIVE_WEIGHT", context),
            distill_weight=self.parameterAsDouble(parameters, "DISTILL_WEIGHT", context),
            seed=self.parameterAsInt(parameters, "SEED", context),
            mixed_precision=PRECISION_CHOICES[self.parameterAsEnum(parameters, "MIXED_PRECISION", context)],
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            trigger=self.parameterAsString(parameters, "TRIGGER", context).strip())

    def outputs(self, result: dict, parameters, context, feedback) -> dict:
        f1 = (result.get("validation") or {}).get("f1")
        feedback.pushInfo(f"New checkpoint {result['name']} (cascade stage {result['stage']}, best round "
                          f"{result.get('best_epoch')} of {result.get('epochs_run')}) in {result['checkpoint']}.")
        verdict = improvement_text(result)
        if verdict:
            (feedback.pushInfo if result.get("improved") else feedback.reportError)(verdict)
        if unreviewed_text(result):
            feedback.pushInfo(unreviewed_text(result))
        return {"CHECKPOINT": result["checkpoint"], "CHECKPOINT_ID": result["id"], "STAGE": result["stage"],
                "VALIDATION_F1": f1 if isinstance(f1, (int, float)) else None,
                "IMPROVED": None if result.get("improved") is None else bool(result["improved"])}
