"""Job specifications: plain, JSON-serialisable dataclasses.

The dock, the Processing algorithms and the command line all build these; the runner
executes them, in the QGIS process or in a worker process fed the JSON on stdin.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from ..mapping.cluster import LOCAL, parse_cluster
from ..errors import InputError
from .spec import Spec


RESAMPLE_CHOICES = ("auto", "off")
# A mapping job of more pixels (all years together) than this is refused unless confirmed
# (the CLI's --yes, the dock's question): about 30 PlanetScope scenes, hours on a CPU.
LARGE_JOB_PIXELS = 10**9


def pixels_text(pixels: float) -> str:
    """A pixel count for people: 8,192 pixels, 1,250 million pixels."""
    return f"{pixels / 1e6:,.0f} million pixels" if pixels >= 1e7 else f"{pixels:,.0f} pixels"
# Upper bounds, far beyond any real use, that keep a typo from asking for terabytes
MAX_PIXELS = 65536                     # tile sizes, overlaps, batch sizes, patch sizes
MAX_AREA_M2 = 1e10                     # 10,000 km²: larger than any landslide


def _at_most(obj, limits: dict) -> None:
    for name, limit in limits.items():
        value = getattr(obj, name)
        if value is not None and value > limit:
            raise InputError(f"{type(obj).__name__}.{name} is {value:g}, more than the {limit:g} any real use "
                             "needs; check the value.")


FOLDER_NAME_FORBIDDEN = set('/\\:*?"<>|')      # in no folder name, on any platform


MAX_COLOUR_JITTER = 1.0


def check_colour_jitter(value: float) -> None:
    """The warm-cool colour jitter's spread (TrainJob.colour_jitter): 0 (off) up to 1."""
    if not 0 <= value <= MAX_COLOUR_JITTER:
        raise InputError(f"The colour jitter must be 0 (off) or a spread up to {MAX_COLOUR_JITTER:g} (0.25: red "
                         f"and blue each move by about ±25 %, opposite ways), got {value}.")


def bad_folder_characters(name: str) -> list[str]:
    """What in ``name`` no folder name may hold on some platform: the run-name and
    checkpoint-name rule of the jobs, the dock and Processing."""
    bad = sorted(FOLDER_NAME_FORBIDDEN & set(name))
    if any(ord(c) < 32 for c in name):
        bad.append("a control character")
    return bad


def check_run_name(name) -> None:
    """A run (or checkpoint) name is one folder name, the same on every platform."""
    if name is None:
        return
    what = f"The run name {name!r}"
    if not name.strip() or name.strip() in (".", ".."):
        raise InputError(f"{what} is empty; give a name, or none to use the date and time.")
    bad = bad_folder_characters(name)
    if bad:
        raise InputError(f"{what} contains {', '.join(bad)}: a run name is one folder name inside the output "
                         "folder, not a path (choose the folder with the output option).")
    if len(name) > 120:
        raise InputError(f"{what[:40]}…' is {len(name)} characters long; use at most 120.")


def check_bounds(bounds, name: str = "The extent") -> None:
    """``bounds`` is None or four finite numbers xmin < xmax, ymin < ymax."""
    if bounds is None:
        return
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds):
        raise InputError(f"{name} must be four numbers, xmin, ymin, xmax, ymax; got {bounds!r}.")
    xmin, ymin, xmax, ymax = bounds
    if not all(math.isfinite(v) for v in bounds) or not (xmin < xmax and ymin < ymax):
        raise InputError(f"{name} ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is empty: xmin must be below xmax "
                         "and ymin below ymax.")


@dataclass
class YearInput(Spec):
    year: int
    path: str
    bands: str = "auto"                      # preset name, "auto", or "B=3,G=2,R=1,NIR=4"
    reflectance_scale: float | None = None   # value of reflectance 1.0; None: from the dtype
    nodata: float | None = None              # pixels of this value hold no data (images declaring none)

    NAN_OK: ClassVar[tuple[str, ...]] = ("nodata",)          # NaN is a legitimate nodata value


@dataclass
class InferenceJob(Spec):
    """Map landslides in one raster per year with one model."""

    kind: ClassVar[str] = "infer"
    years: list[YearInput]
    model: str
    output_dir: str
    run_name: str | None = None
    tile_size: int | None = None             # None: the model's own tile size
    overlap: int = 32
    batch_size: int = 8
    threshold: float | None = None           # None: the model's own threshold
    min_area_m2: float = 200.0
    device: str = "auto"
    analyse: bool = True                     # subtraction, statistics, FAD and charts after mapping
    confirm_changes: bool = True             # new parts only where the images changed (inventory.change_evidence)
    reference_exponent: float | None = None  # drawn on the FAD charts (e.g. a synthetic scene's truth)
    tta: bool = False                        # average the four flips of every tile (4× network time)
    uncertainty: bool = False                # per-year uncertainty raster and suggested review areas
    review_areas: int = 10                   # how many review areas to suggest per year
    resample: str = "auto"                   # "auto": to the model's pixel size when far off; "off"
    area: str | None = None                  # PATH[|LAYER] of polygons: map only inside them
    bounds: list[float] | None = None        # [xmin, ymin, xmax, ymax]: map only inside (e.g. the map view)
    bounds_crs: str | None = None            # CRS of bounds (EPSG:… or WKT); None: the first year's
    max_pixels: int | None = LARGE_JOB_PIXELS  # refuse larger jobs (all years); None: no limit (confirmed)
    cluster: str = LOCAL                     # where tiles are predicted (core.mapping.cluster: local, local:N, tcp://…)

    def validate(self) -> None:
        self.check_types()
        parse_cluster(self.cluster)
        if self.max_pixels is not None and self.max_pixels < 1:
            raise InputError(f"max_pixels must be at least 1 (or null for no limit), got {self.max_pixels}.")
        check_bounds(self.bounds)
        if self.resample not in RESAMPLE_CHOICES:
            raise InputError(f"Resample must be one of {', '.join(RESAMPLE_CHOICES)}, not {self.resample!r}.")
        if self.review_areas < 0:
            raise InputError(f"The number of review areas must not be negative, got {self.review_areas}.")
        check_run_name(self.run_name)
        if not self.years:
            raise InputError("No years given: add at least one YEAR=RASTER pair.")
        seen: dict[int, str] = {}
        for y in self.years:
            if y.year in seen:
                raise InputError(f"Year {y.year} is given twice ({seen[y.year]} and {y.path}).")
            seen[y.year] = y.path
        if self.tile_size is not None and self.tile_size < 16:
            raise InputError(f"Tile size must be at least 16 pixels, got {self.tile_size}.")
        if self.overlap < 0:
            raise InputError(f"Overlap must not be negative, got {self.overlap}.")
        if self.batch_size < 1:
            raise InputError(f"Batch size must be at least 1, got {self.batch_size}.")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise InputError(f"Threshold must lie strictly between 0 and 1, got {self.threshold}.")
        if self.min_area_m2 < 0:
            raise InputError(f"Minimum area must not be negative, got {self.min_area_m2}.")
        if self.device.lower() not in ("auto", "cpu", "gpu", "cuda"):
            raise InputError(f"Device must be auto, cpu or gpu, not {self.device!r}.")
        _at_most(self, {"tile_size": MAX_PIXELS, "overlap": MAX_PIXELS, "batch_size": MAX_PIXELS,
                        "min_area_m2": MAX_AREA_M2, "review_areas": 10000})
        for y in self.years:
            if y.reflectance_scale is not None and not y.reflectance_scale > 0:
                raise InputError(f"Year {y.year}: the reflectance scale must be positive (the value of reflectance "
                                 f"1.0, e.g. 10000), got {y.reflectance_scale}; leave it out to use the file's type.")


@dataclass
class TrainingSource(Spec):
    """One (raster, label polygons, reviewed-area polygons) set of a region and year.

    Label polygons are landslides; inside the reviewed-area polygons everything that is not
    a label is taken as a known negative. Without a reviewed-area layer the whole raster
    is taken as reviewed (the labels must then be complete). Layers may be in any CRS.
    """

    raster: str
    labels: str                              # any OGR source: GeoPackage, shapefile, zip
    labels_layer: str | None = None          # None: the first layer
    reviewed: str | None = None
    reviewed_layer: str | None = None
    bands: str = "auto"
    reflectance_scale: float | None = None
    region: str = ""                         # for the checkpoint's lineage
    year: int | None = None
    split: str = "auto"                      # "auto", or a place kept for "train" or "validation"


FREEZE_CHOICES = ("none", "encoder")         # or "upto:<block>", e.g. "upto:enc3"
LOSSES = ("adsms", "tversky", "focal_tversky", "dice", "bce", "bce_focal_tversky")
DEFAULT_LOSS = "dice"
# Loss weight of the base's own mapping on unreviewed ground when a fine-tuning keeps it,
# before it is scaled by the base's validation F1 (core/training/anchors.py; README
# "Fine-tuning where the model is already good").
DISTILL_WEIGHT = 1.0


# The modules a training job imports beyond mapping's: some worker Pythons cannot have them
# (TensorFlow has no Python 3.14 release), so the plugin and the worker check for them.
TRAINING_MODULES = ("tensorflow", "keras", "albumentations", "cv2")


@dataclass
class TrainJob(Spec):
    """Train a cascade checkpoint from scratch, or fine-tune one (``base_checkpoint``).

    The result is a new checkpoint folder ``output_dir/name`` (a suffix is added if the
    name is taken); the base checkpoint is never modified.
    """

    kind: ClassVar[str] = "train"
    sources: list[TrainingSource]
    output_dir: str
    name: str
    base_checkpoint: str | None = None       # None: train from scratch
    architecture: str = "adsms_unet"         # from scratch only
    base_filters: int = 32                   # from scratch only
    channels: list[str] | None = None        # from scratch only; None: B,G,R,NIR,NDVI
    patch_size: int = 128
    stride: int | None = None                # None: half a patch
    drop_empty: bool = False                 # drop patches without any landslide pixel
    validation: str = "blocked"              # "blocked" (spatial blocks) or "random"
    validation_fraction: float = 0.2
    augment: bool = True
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-4
    loss: str | None = None                  # None: DEFAULT_LOSS
    freeze: str = "none"
    patience: int = 8                        # early stopping; LR is reduced after patience // 2
    mixed_precision: str = "auto"            # auto: on a GPU only; "on" / "off"
    seed: int = 0
    trigger: str = ""                        # e.g. "earthquake", "monsoon rainfall" (lineage)
    description: str = ""
    max_steps_per_epoch: int | None = None   # cap for quick runs and tests
    steps: int | None = None                 # total optimisation steps; None: epochs × rounds
    hard_negative_weight: float = 3.0        # fine-tuning: loss weight of the base's false alarms
    distill_weight: float = 0.0              # fine-tuning: weight of the base's mapping on unreviewed ground
    colour_jitter: float = 0.0               # spread of the warm-cool colour jitter (augment.WARM_COOL); 0: off
    calibrate_threshold: bool = True         # store the validation-F1-optimal threshold
    device: str = "auto"

    def validate(self) -> None:
        self.check_types()
        for s in self.sources:
            if s.split not in ("auto", "train", "validation"):
                raise InputError(f"Training source {s.raster}: split must be auto, train or validation, "
                                 f"not {s.split!r}.")
        if not self.sources:
            raise InputError("No training data given: add at least one raster with its label polygons.")
        if not self.name.strip() or bad_folder_characters(self.name):
            raise InputError(f"Checkpoint name {self.name!r} is empty or contains a character not "
                             "allowed in a folder name.")
        if self.patch_size < 16 or self.patch_size % 16:
            raise InputError(f"Patch size must be a multiple of 16 and at least 16, got {self.patch_size}.")
        if self.stride is not None and not 0 < self.stride:
            raise InputError(f"Stride must be positive, got {self.stride}.")
        if self.validation not in ("blocked", "random"):
            raise InputError(f"Validation split must be 'blocked' or 'random', not {self.validation!r}.")
        if not 0.0 < self.validation_fraction < 1.0:
            raise InputError(f"Validation fraction must lie in (0, 1), got {self.validation_fraction}.")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise InputError("Epochs, batch size and patience must be at least 1.")
        if not self.learning_rate > 0:
            raise InputError(f"Learning rate must be positive, got {self.learning_rate}.")
        if self.loss is not None and self.loss not in LOSSES:
            raise InputError(f"Unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}.")
        if self.freeze not in FREEZE_CHOICES and not self.freeze.startswith("upto:"):
            raise InputError(f"Freeze must be none, encoder or upto:<block>, not {self.freeze!r}.")
        if self.mixed_precision not in ("auto", "on", "off"):
            raise InputError(f"Mixed precision must be auto, on or off, not {self.mixed_precision!r}.")
        if self.freeze != "none" and not self.base_checkpoint:
            raise InputError("Freezing layers only makes sense when fine-tuning: a network trained from "
                             "scratch would keep random weights in its frozen layers.")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise InputError(f"Steps per epoch must be at least 1, got {self.max_steps_per_epoch}.")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"Steps must be at least 1, got {self.steps}.")
        if not self.hard_negative_weight >= 1:
            raise InputError(f"The hard-negative weight must be at least 1, got {self.hard_negative_weight}.")
        if not self.distill_weight >= 0:
            raise InputError(f"The weight of the base's mapping on unreviewed ground must be 0 (off) or "
                             f"more, got {self.distill_weight}.")
        check_colour_jitter(self.colour_jitter)
        if self.colour_jitter and not self.augment:
            raise InputError("The colour jitter is an augmentation: with augmentation off it would do "
                             "nothing. Turn augmentation on, or set the colour jitter to 0.")
        if self.channels is not None and self.base_checkpoint is None and not self.channels:
            raise InputError("The channel list is empty.")
        if self.base_filters < 2:
            raise InputError(f"Base filters must be at least 2, got {self.base_filters}.")
        _at_most(self, {"patch_size": 4096, "stride": MAX_PIXELS, "batch_size": MAX_PIXELS, "epochs": 100000,
                        "patience": 100000, "steps": 10**8, "max_steps_per_epoch": 10**8, "base_filters": 512,
                        "learning_rate": 1.0, "hard_negative_weight": 1000,
                        "distill_weight": 1000})
        if self.device.lower() not in ("auto", "cpu", "gpu", "cuda"):
            raise InputError(f"Device must be auto, cpu or gpu, not {self.device!r}.")

    @property
    def effective_loss(self) -> str:
        """Dice by default: a false alarm costs as much as a miss. Measured on held-out real
        texture (bench/loss_choice.py, README "Loss"): the recall-leaning ADSMS loss
        over-predicts and saturates (calibrated threshold 0.998), BCE learns slowest, Dice
        gave the best validation and held-out F1."""
        return self.loss or DEFAULT_LOSS


def split_layer(value: str) -> tuple[str, str | None]:
    """``path|layername=NAME`` (QGIS' notation) or ``path|NAME`` -> (path, layer)."""
    path, sep, layer = value.partition("|")
    if not sep:
        return path, None
    return path, layer.split("=", 1)[1] if layer.startswith("layername=") else layer


@dataclass
class InventoryLayer(Spec):
    """One year's landslide polygons: any OGR source and a layer (None: the first)."""

    year: int
    path: str
    layer: str | None = None

    @property
    def name(self) -> str:
        return f"layer {self.layer!r} of {self.path}" if self.layer else str(self.path)


def _validate_layers(layers: list[InventoryLayer], what: str, minimum: int = 1) -> None:
    if len(layers) < minimum:
        raise InputError(f"The {what} need at least {minimum} year(s); got {len(layers)}.")
    years = [item.year for item in layers]
    dup = sorted({y for y in years if years.count(y) > 1})
    if dup:
        raise InputError(f"Year {dup[0]} is given more than once in the {what}.")


@dataclass
class InventoryJob(Spec):
    """What the jobs on a series of inventories share: a layer per year, and where their
    run folder goes."""

    MIN_YEARS: ClassVar[int] = 1
    years: list[InventoryLayer]
    output_dir: str
    run_name: str | None = None

    def validate(self) -> None:
        self.check_types()
        _validate_layers(self.years, "inventory years", self.MIN_YEARS)
        check_run_name(self.run_name)


@dataclass
class SubtractJob(InventoryJob):
    """New and enlarged landslides of every year against the year before (E_T = P_T − P_{T−1})."""

    kind: ClassVar[str] = "subtract"
    MIN_YEARS: ClassVar[int] = 2
    pixel_size_m: float = 3.0                # of the imagery the inventories were mapped on
    sliver_px: float = 1.0                   # buffer of the opening, in pixels
    min_remnant_px: float = 9.0              # smallest part kept, in pixels (~3×3 px)

    def validate(self) -> None:
        super().validate()
        if self.pixel_size_m <= 0:
            raise InputError(f"Pixel size must be positive, got {self.pixel_size_m}.")
        if self.sliver_px < 0 or self.min_remnant_px < 0:
            raise InputError("Sliver buffer and minimum remnant must not be negative.")


@dataclass
class AnalyseJob(InventoryJob):
    """Per-year statistics, frequency-area distributions and their fits, and charts."""

    kind: ClassVar[str] = "analyse"
    min_area_m2: float = 0.0                 # polygons below it are left out (and counted)
    mapped_area_km2: float | None = None     # for densities; None: from `extent` or the bounding box
    extent: str | None = None                # PATH[:LAYER] of the mapped-area polygon(s)
    bootstrap: int = 0                       # bootstrap resamples for x_min/exponent uncertainty
    true_exponent: float | None = None       # drawn on the FAD chart when known (synthetic scenes)

    def validate(self) -> None:
        super().validate()
        if self.min_area_m2 < 0:
            raise InputError(f"Minimum area must not be negative, got {self.min_area_m2}.")
        if self.mapped_area_km2 is not None and self.mapped_area_km2 <= 0:
            raise InputError(f"The mapped area must be positive, got {self.mapped_area_km2} km².")
        if self.bootstrap < 0:
            raise InputError(f"Bootstrap count must not be negative, got {self.bootstrap}.")


@dataclass
class GridRaster(Spec):
    """The raster whose grid (and nodata) the pixel accuracy of one year is counted on."""

    year: int
    path: str


@dataclass
class AssessJob(Spec):
    """Accuracy of predicted inventories against reference inventories, year by year."""

    kind: ClassVar[str] = "assess"
    predicted: list[InventoryLayer]
    reference: list[InventoryLayer]
    output_dir: str
    run_name: str | None = None
    grids: list[GridRaster] = field(default_factory=list)   # optional, per year
    area: str | None = None                  # PATH[:LAYER] of the assessment-area polygon(s)
    pixel_size_m: float = 3.0                # grid when a year has no grid raster

    def validate(self) -> None:
        self.check_types()
        _validate_layers(self.predicted, "predicted inventories")
        _validate_layers(self.reference, "reference inventories")
        check_run_name(self.run_name)
        if self.pixel_size_m <= 0:
            raise InputError(f"Pixel size must be positive, got {self.pixel_size_m}.")
        common = {p.year for p in self.predicted} & {r.year for r in self.reference}
        if not common:
            raise InputError(
                f"No year has both a predicted and a reference inventory (predicted: "
                f"{sorted(p.year for p in self.predicted)}, reference: "
                f"{sorted(r.year for r in self.reference)}).")


JOB_TYPES: dict[str, type] = {InferenceJob.kind: InferenceJob, TrainJob.kind: TrainJob,
                              SubtractJob.kind: SubtractJob, AnalyseJob.kind: AnalyseJob,
                              AssessJob.kind: AssessJob}


def job_from_json(text: str):
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"The job specification is not valid JSON: {exc}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or data["kind"] not in JOB_TYPES:
        got = repr(data.get("kind")) if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise InputError(f"The job specification must be a JSON object whose 'kind' is one of "
                         f"{', '.join(JOB_TYPES)}; got {got}.")
    cls = JOB_TYPES[data["kind"]]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise InputError(f"The {data['kind']} job specification lacks the field(s) {', '.join(missing)}.")
    try:
        job = cls.from_dict(data)
    except TypeError as exc:                 # a nested object without a required field
        raise InputError(f"Incomplete job specification: {exc}.") from None
    job.validate()
    return job


# fields that hold a file or folder (a vector source may end in |layername=…)
PATH_FIELDS = {"path", "model", "output_dir", "area", "extent", "raster", "labels", "reviewed", "base_checkpoint"}


def _absolute(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _absolute(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v, key if not isinstance(v, (dict, list)) else None) for v in value]
    if key in PATH_FIELDS and isinstance(value, str) and value.strip() and value.strip().lower() != "auto":
        path, sep, layer = value.partition("|")
        return str(Path(path).absolute()) + sep + layer
    return value


def job_to_json(job, indent: int | None = 2, absolute: bool = False) -> str:
    """The job spec as JSON; ``indent=None`` gives one line (the worker's control protocol);
    ``absolute`` makes every path absolute, so that a run's job.json reproduces it from
    any folder."""
    data = job.to_dict()
    return json.dumps(_absolute(data) if absolute else data, indent=indent)
