"""The command line's arguments: one sub-command per job and tool, each option's default
read from the job spec it fills (core/jobs/specs.py). ``core/jobs/cli.py`` runs what is parsed."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..mapping.bundled import BASELINE_MODEL
from ..mapping.cluster import CLUSTER_HELP
from .specs import DEFAULT_LOSS, RESAMPLE_CHOICES, InferenceJob, TrainJob

def _common(p) -> None:
    p.add_argument("--jsonl", action="store_true", help="print JSON-lines events instead of a progress bar")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m landslide_mapper",
                                     description="Multi-temporal landslide mapping from yearly satellite images.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infer", help="map landslides in one raster per year")
    p.add_argument("years", nargs="+", metavar="YEAR=PATH", help="one raster per year, e.g. 2017=planet_2017.tif")
    p.add_argument("--model", help="ONNX model or checkpoint folder (default auto: the bundled cascade, or the "
                                   "bundled RGB checkpoint when an image has no NIR band)")
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--bands", action="append", metavar="[YEAR:]MAPPING",
                   help="band mapping: auto, planetscope4, rapideye5, rgbnir, superdove8, rgb or 'B=3,G=2,R=1,NIR=4'; "
                        "prefix with YEAR: for one year only (repeatable)")
    p.add_argument("--reflectance-scale", type=float,
                   help="value of reflectance 1.0 in the files (default: 10000 for 16-bit, 255 for 8-bit)")
    p.add_argument("--nodata", action="append", metavar="[YEAR:]VALUE",
                   help="pixel value that means 'no data', for images that declare none (e.g. 0 for a "
                        "black collar); prefix with YEAR: for one year only (repeatable)")
    p.add_argument("--area", metavar="PATH[|LAYER]",
                   help="map only inside these polygons (a catchment, a study area); any OGR source")
    p.add_argument("--bounds", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="map only inside this rectangle (with --area: where both overlap)")
    p.add_argument("--bounds-crs", metavar="CRS", help="CRS of --bounds, e.g. EPSG:4326 (default: the first year's)")
    p.add_argument("--max-pixels", type=int, default=InferenceJob.max_pixels, metavar="N",
                   help=f"refuse a job of more pixels, all years together (default {InferenceJob.max_pixels:,})")
    p.add_argument("--yes", action="store_true", help="map however large the job is (no --max-pixels limit)")
    p.add_argument("--cluster", default=InferenceJob.cluster, metavar="WHERE",
                   help=f"{CLUSTER_HELP} (default {InferenceJob.cluster}); workers of a scheduler must see the "
                        "input, model and output paths")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--overlap", type=int, default=InferenceJob.overlap,
                   help=f"tile overlap in pixels (default {InferenceJob.overlap})")
    p.add_argument("--batch", type=int, default=InferenceJob.batch_size,
                   help=f"tiles per inference batch (default {InferenceJob.batch_size})")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--min-area", type=float, default=InferenceJob.min_area_m2,
                   help=f"minimum polygon area in m² (default {InferenceJob.min_area_m2:g})")
    p.add_argument("--device", default=InferenceJob.device, choices=["auto", "cpu", "gpu"],
                   help="where to run the model")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the four flips of every tile (4x the network time)")
    p.add_argument("--keep-unconfirmed", action="store_true",
                   help="keep every new or enlarged part subtraction finds, also where the two images show no "
                        "change (default: those go to unconfirmed_<year>)")
    p.add_argument("--uncertainty", action="store_true",
                   help="write uncertainty_<year>.tif and a review_<year> layer of suggested review areas")
    p.add_argument("--review-areas", type=int, default=InferenceJob.review_areas,
                   help=f"suggested review areas per year (default {InferenceJob.review_areas})")
    p.add_argument("--resample", default=InferenceJob.resample, choices=list(RESAMPLE_CHOICES),
                   help="auto (default): resample images whose pixel size is far from the model's; off: warn only")
    _common(p)

    for name, help_ in (("demo", "generate the demo scene, map it and score it"),
                        ("scene", "generate a procedural demo scene")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--size", type=int, default=1024, help="scene side in pixels (default 1024)")
        p.add_argument("--pixel-size", type=float, default=3.0, choices=[3.0, 5.0],
                       help="3 (PlanetScope-like, 4 bands) or 5 (RapidEye-like, 5 bands)")
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--years", dest="years_list", help="comma-separated years (default 2016-2019)")
        if name == "demo":
            p.add_argument("--data-dir", default="demo_data", help="where the scene is generated or reused")
            p.add_argument("--output", "-o", default="demo_output", help="where run folders are written")
            p.add_argument("--model", help="model to use (default: the bundled model)")
        else:
            p.add_argument("--output", "-o", required=True, help="folder for the scene")
        _common(p)

    for name, help_ in (("train", "train a new cascade checkpoint from scratch"),
                        ("finetune", "fine-tune a cascade checkpoint into a new stage")):
        p = sub.add_parser(name, help=help_)
        if name == "finetune":
            p.add_argument("--checkpoint", required=True, help="the base checkpoint (folder); it is not modified")
        p.add_argument("--raster", help="image of one training source")
        p.add_argument("--labels", help="landslide polygons for --raster (file, or file|layername=NAME)")
        p.add_argument("--reviewed", help="reviewed-area polygons: negatives are taken only inside them "
                                          "(default: the whole raster is taken as reviewed)")
        p.add_argument("--source", action="append", metavar="'raster=..;labels=..[;reviewed=..;region=..;year=..]'",
                       help="a further training source (repeatable)")
        p.add_argument("--bands", default="auto", help="band mapping of the rasters (default auto)")
        p.add_argument("--reflectance-scale", type=float, help="value of reflectance 1.0 (default from dtype)")
        p.add_argument("--region", default="", help="region name recorded in the lineage")
        p.add_argument("--year", type=int, help="year recorded in the lineage")
        p.add_argument("--trigger", default="", help="triggering event recorded in the lineage")
        p.add_argument("--description", default="", help="text for the model card")
        p.add_argument("--output", "-o", required=True, help="folder in which the new checkpoint folder is created")
        p.add_argument("--name", required=True, help="name of the new checkpoint (a suffix is added if taken)")
        if name == "train":
            p.add_argument("--architecture", default="adsms_unet",
                           choices=["adsms_unet", "unet", "resunet", "attention_unet"])
            p.add_argument("--base-filters", type=int, default=32, help="filters of the first block (default 32)")
            p.add_argument("--channels", help="input channels, default B,G,R,NIR,NDVI")
        else:
            p.add_argument("--channels", help="keep only these input channels of the checkpoint, e.g. R,G,B "
                                              "(to fine-tune for colour-only imagery)")
            p.add_argument("--hard-negative-weight", type=float, default=TrainJob.hard_negative_weight,
                           help="loss weight of pixels the base maps as landslide but the labels do not "
                                f"(deleted false alarms; default {TrainJob.hard_negative_weight:g})")
            p.add_argument("--distill-weight", type=float, default=TrainJob.distill_weight,
                           help="loss weight of the base's own mapping on the ground no reviewed area covers, "
                                "which keeps the new checkpoint close to its base where nobody corrected it "
                                f"(0: off; default {TrainJob.distill_weight:g})")
        p.add_argument("--steps", type=int, help="optimisation steps in all (default: epochs × rounds of at "
                                                  "least 25 steps); validated after every round")
        p.add_argument("--epochs", type=int, default=30, help="validation rounds (default 30): each one pass over "
                                                               "the training patches, or 25 steps if that is more")
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
        p.add_argument("--patch-size", type=int, default=128)
        p.add_argument("--stride", type=int, help="patch stride (default half a patch)")
        p.add_argument("--loss", choices=["adsms", "tversky", "focal_tversky", "dice", "bce", "bce_focal_tversky"],
                       help=f"default: {DEFAULT_LOSS}")
        p.add_argument("--freeze", default="none", help="none, encoder, or upto:<block> (e.g. upto:enc3)")
        p.add_argument("--patience", type=int, default=8, help="early-stopping patience in rounds")
        p.add_argument("--validation", default="blocked", choices=["blocked", "random"])
        p.add_argument("--val-fraction", type=float, default=0.2)
        p.add_argument("--no-augment", action="store_true")
        p.add_argument("--colour-jitter", type=float, default=TrainJob.colour_jitter, metavar="S",
                       help="also jitter each patch's colour along the warm-cool axis by a log-gain of spread S "
                            f"(0: off; default {TrainJob.colour_jitter:g})")
        p.add_argument("--drop-empty", action="store_true", help="drop patches without landslide pixels")
        p.add_argument("--mixed-precision", default="auto", choices=["auto", "on", "off"])
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--max-steps", type=int, help="cap on batches per epoch (quick runs)")
        p.add_argument("--fixed-threshold", action="store_true",
                       help="keep threshold 0.5 instead of the one with the best validation F1")
        _common(p)

    source_help = ("YEAR=PATH[|LAYER] per year (GeoPackage, shapefile, zipped shapefile, any OGR "
                   "source), or a multi-layer source whose layer names carry the years "
                   "(a run GeoPackage, a zip of YEAR.shp files)")
    p = sub.add_parser("subtract", help="new and enlarged landslides of every year (E_T = P_T - P_T-1)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help)
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--pixel-size", type=float, default=3.0,
                   help="pixel size (m) of the imagery the inventories come from (default 3)")
    p.add_argument("--sliver-px", type=float, default=1.0,
                   help="sliver buffer in pixels: strips narrower than twice it are removed (default 1)")
    p.add_argument("--min-remnant-px", type=float, default=9.0,
                   help="smallest new or enlarged part kept, in pixels (default 9, ~3×3 px)")
    _common(p)

    p = sub.add_parser("fad", help="per-year statistics, frequency-area distributions, power-law fits, charts")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help)
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--min-area", type=float, default=0.0, help="leave out polygons below this area in m² (default 0)")
    p.add_argument("--mapped-area-km2", type=float, help="area that was mapped, for densities per km²")
    p.add_argument("--extent", help="polygon layer of the mapped area (PATH[|LAYER]), for densities per km²")
    p.add_argument("--bootstrap", type=int, default=0,
                   help="bootstrap resamples for the uncertainty of x_min and the exponent (default 0)")
    _common(p)

    p = sub.add_parser("assess", help="accuracy of predicted against reference inventories, per year")
    p.add_argument("--predicted", nargs="+", required=True, metavar="SOURCE", help=source_help)
    p.add_argument("--reference", nargs="+", required=True, metavar="SOURCE", help=source_help)
    p.add_argument("--grid", action="append", metavar="YEAR=RASTER",
                   help="raster whose grid and nodata the pixel scores of a year use (repeatable; "
                        "e.g. the probability GeoTIFF); default: a --pixel-size grid over both inventories")
    p.add_argument("--area", help="assessment-area polygons (PATH[|LAYER]): only pixels inside count")
    p.add_argument("--pixel-size", type=float, default=3.0, help="grid pixel size in m without --grid (default 3)")
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    _common(p)

    p = sub.add_parser("run-job", help="run a JSON job specification, printing JSON-lines events (worker mode)")
    p.add_argument("spec", nargs="?", default="-", help="job JSON file, or - for stdin (default)")
    p.add_argument("--control", action="store_true",
                   help="read the job as one JSON line from stdin, then keep reading it: a 'cancel' "
                        "line or the end of stdin stops the job and removes its partial outputs "
                        "(how the plugin drives its worker on every platform)")

    p = sub.add_parser("build-pretrained", help="retrain the bundled checkpoints: the cascade over procedural, then "
                                                "real-texture regions, and the RGB checkpoint (needs ../shared/data)")
    p.add_argument("--output", default=str(Path(__file__).resolve().parents[2] / "models"))
    p.add_argument("--workdir", default="build/pretrained", help="scenes and intermediate stages")
    p.add_argument("--epochs", type=int, default=24, help="epochs of the first stage (default 24)")
    p.add_argument("--finetune-epochs", type=int, default=8, help="epochs of each later stage (default 8)")
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--regions", type=int, default=5, help="number of regions (stages), at most 5")
    p.add_argument("--max-steps", type=int, help="cap on batches per epoch")
    p.add_argument("--start-from", help="an existing procedural stage-5 checkpoint (e.g. landslide_cascade_v1 of "
                                        "release 0.3) instead of training stages 1-5 again")
    p.add_argument("--skip-real", type=int, default=0, metavar="K",
                   help="--start-from is the checkpoint of the first K real-texture stages: train only the rest")
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps of each real-texture stage")
    p.add_argument("--other-grounds", action="store_true",
                   help="add the optional stage on the training places dried and tinted (OTHER_GROUNDS; "
                        "not in the shipped cascade)")
    p.add_argument("--colour-jitter", type=float, default=TrainJob.colour_jitter, metavar="S",
                   help="jitter the patch colours of the real-texture stages (and of the RGB checkpoint's) "
                        "along the warm-cool axis by a log-gain of spread S "
                        f"(0: off; default {TrainJob.colour_jitter:g})")
    p.add_argument("--consolidation-steps", type=int, default=0, metavar="N",
                   help="end with a consolidation stage of N steps over every region's event year (default: none)")
    p.add_argument("--loss", help="loss of the real-texture stages "
                                  "(default: core.training.corpus.pretrained.REAL_LOSS)")
    p.add_argument("--data", help="the real data folder (default ../shared/data or $LANDSLIDE_MAPPER_DATA)")
    _common(p)

    p = sub.add_parser("compact-checkpoint", help="copy a checkpoint with its weights stored as float16 "
                                                   "(half the size, still computed in float32)")
    p.add_argument("checkpoint", help="the checkpoint folder (or a file in it)")
    p.add_argument("--output", required=True, help="folder to write the copy into")
    p.add_argument("--name", help="the copy's folder name (default: the source's)")
    _common(p)

    p = sub.add_parser("build-baseline", help="rebuild the bundled spectral baseline ONNX model")
    p.add_argument("--output", default=str(BASELINE_MODEL))
    return parser
