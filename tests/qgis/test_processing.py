"""The Processing algorithms through ``processing.run``: real QGIS Processing, real layers, the
real worker process (this test session's Python), the bundled checkpoint on small demo scenes."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from qgis.core import (Qgis, QgsApplication, QgsCategorizedSymbolRenderer, QgsFeature,
                       QgsProcessing, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterMultipleLayers,
                       QgsProject, QgsRasterLayer, QgsSingleBandPseudoColorRenderer, QgsVectorLayer)

from conftest import ROOT, forest_with_scars, needs_training, write_raster
from landslide_mapper import qgis_compat
from landslide_mapper.core.jobs.specs import InferenceJob
from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT, RGB_CHECKPOINT
from landslide_mapper.core.demo import SceneSpec, generate_scene
from landslide_mapper.core.geodata.vector_io import read_layer
from landslide_mapper.plugin import LandslideMapperPlugin
from landslide_mapper.processing_provider.provider import PROVIDER_ID

BUNDLED = CASCADE_CHECKPOINT
BASELINE = ROOT / "models" / "spectral_baseline.onnx"
ALGORITHMS = ("map_landslides", "subtract_inventories", "inventory_statistics", "assess_accuracy",
              "finetune_checkpoint")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two small procedural areas (different seeds), three years each, the event in 2017."""
    return [generate_scene(tmp_path_factory.mktemp(f"area{seed}"),
                           SceneSpec(size=192, years=(2016, 2017, 2018), seed=seed)) for seed in (3, 4)]


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    """The plugin registers its provider the way QGIS and qgis_process do: initProcessing()."""
    plugin = LandslideMapperPlugin(None)
    plugin.initProcessing()
    yield plugin
    plugin.unload()


@pytest.fixture(autouse=True)
def layer_tree_view(qgis_iface, monkeypatch):
    """Loading results on QGIS >= 3.32 asks the main window's layer tree view where to insert
    them; pytest-qgis' iface stub has none, so it gets a real view on the project's tree."""
    if hasattr(qgis_iface, "layerTreeView"):
        yield None
        return
    from qgis.gui import QgsLayerTreeView
    from qgis.core import QgsLayerTreeModel

    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
    view = QgsLayerTreeView()
    view.setModel(model)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view, raising=False)
    yield view
    view.setModel(None)


@pytest.fixture(autouse=True)
def worker_python(monkeypatch):
    """The worker is this test session's Python (it has ONNX Runtime and TensorFlow)."""
    monkeypatch.setenv("LANDSLIDE_MAPPER_PYTHON", sys.executable)


def run(algorithm: str, parameters: dict, feedback=None, context=None) -> dict:
    import processing

    return processing.run(f"{PROVIDER_ID}:{algorithm}", parameters, feedback=feedback, context=context)


def remove_results(project: QgsProject, before: set) -> None:
    """Take the layers added since ``before`` out of the project, and their run groups."""
    project.removeMapLayers(list(set(project.mapLayers()) - before))
    root = project.layerTreeRoot()
    for group in [g for g in root.children() if g.name().startswith("Landslide Mapper — ")]:
        root.removeChildNode(group)


def truth(scene, year: int) -> str:
    return f"{scene.truth_path}|layername=landslides_{year}"


def test_the_plugin_registers_every_algorithm_with_proper_parameters(plugin):
    registry = QgsApplication.processingRegistry()
    assert registry.providerById(PROVIDER_ID) is plugin.provider
    algs = {a.name(): a for a in plugin.provider.algorithms()}
    assert set(algs) == set(ALGORITHMS)
    for alg in algs.values():
        assert alg.shortHelpString() and alg.group() and alg.displayName()
        assert alg.flags() & alg.FlagCanCancel
        assert isinstance(alg.parameterDefinition("OUTPUT_FOLDER"), QgsProcessingParameterFolderDestination)
    images = algs["map_landslides"].parameterDefinition("IMAGES")
    assert isinstance(images, QgsProcessingParameterMultipleLayers) and images.layerType() == QgsProcessing.TypeRaster
    assert isinstance(algs["map_landslides"].parameterDefinition("MODEL"), QgsProcessingParameterFile)
    bands = algs["map_landslides"].parameterDefinition("BANDS")
    assert isinstance(bands, QgsProcessingParameterEnum) and "PlanetScope 4-band (B, G, R, NIR)" in bands.options()
    tile = algs["map_landslides"].parameterDefinition("TILE_SIZE")
    assert tile.minimum() == 16 and tile.flags() & tile.FlagAdvanced
    min_area = algs["map_landslides"].parameterDefinition("MIN_AREA")        # whole m², no decimals shown
    assert min_area.dataType() == qgis_compat.NUMBER_INTEGER and min_area.defaultValue() == 200
    nodata = algs["map_landslides"].parameterDefinition("NODATA")          # unset: the images' own
    assert nodata.flags() & nodata.FlagOptional and nodata.flags() & nodata.FlagAdvanced
    context = QgsProcessingContext()
    mapper = algs["map_landslides"]
    assert mapper.nodata({"NODATA": 0}, context) == 0.0 and mapper.nodata({}, context) is None   # 0 is a value
    cluster = mapper.parameterDefinition("CLUSTER")
    assert cluster.defaultValue() == "local" and cluster.flags() & cluster.FlagAdvanced
    # the defaults are the job spec's, as in the dock and on the command line
    defaults = {"OVERLAP": InferenceJob.overlap, "BATCH_SIZE": InferenceJob.batch_size,
                "MIN_AREA": InferenceJob.min_area_m2, "CLUSTER": InferenceJob.cluster}
    assert {k: mapper.parameterDefinition(k).defaultValue() for k in defaults} == defaults
    labels = algs["finetune_checkpoint"].parameterDefinition("LABELS")
    assert labels.layerType() == QgsProcessing.TypeVectorPolygon
    # unload takes the provider away again (and initProcessing twice registers it once)
    again = LandslideMapperPlugin(None)
    again.initProcessing()
    again.initProcessing()
    assert registry.providerById(PROVIDER_ID) is plugin.provider     # the second one was refused
    again.unload()


def test_mapping_writes_a_run_and_loads_styled_layers(plugin, scenes, tmp_path):
    import processing

    scene = scenes[0]
    project = QgsProject.instance()
    before = set(project.mapLayers())
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    progress: list[float] = []
    feedback.progressChanged.connect(progress.append)
    result = processing.runAndLoadResults(
        f"{PROVIDER_ID}:map_landslides",
        {"IMAGES": [str(p) for p in scene.rasters.values()], "OUTPUT_FOLDER": str(tmp_path / "out"),
         "RUN_NAME": "valley", "BANDS": 1, "STATISTICS": QgsProcessing.TEMPORARY_OUTPUT,
         "CLUSTER": "local:2"},              # the worker maps on a LocalCluster of two processes
        feedback=feedback, context=context)
    try:
        run_dir = Path(result["RUN_FOLDER"])
        assert run_dir == tmp_path / "out" / "valley"
        assert json.loads((run_dir / "job.json").read_text())["cluster"] == "local:2"
        assert [Path(u.split("|")[0]).name for u in result["LANDSLIDES"]] == ["landslides.gpkg"] * 3
        assert [u.split("=")[-1] for u in result["LANDSLIDES"]] == [f"landslides_{y}" for y in (2016, 2017, 2018)]
        assert [u.split("=")[-1] for u in result["CHANGES"]] == ["new_2017", "new_2018"]
        assert json.loads((run_dir / "job.json").read_text())["confirm_changes"] is True
        assert all(u.split("=")[-1].startswith("unconfirmed_") for u in result["UNCONFIRMED"])
        assert all(Path(p).is_file() for p in result["PROBABILITY"])
        assert max(progress) == pytest.approx(100.0) and len(progress) > 3
        mapped = read_layer(str(run_dir / "landslides.gpkg"), "landslides_2017")
        assert len(mapped.geometries) > 0
        # loaded into the project with their names and styles
        added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
        names = {lay.name(): lay for lay in added}
        assert {"landslides 2016", "landslides 2017", "landslides 2018", "new or enlarged 2017",
                "new or enlarged 2018", "probability 2016", "probability 2017", "probability 2018",
                "Statistics per year"} <= set(names)
        colours = {names[f"landslides {y}"].renderer().symbol().color().name() for y in (2016, 2017, 2018)}
        assert len(colours) == 3                          # one colour per year, the charts' colours
        assert isinstance(names["new or enlarged 2017"].renderer(), QgsCategorizedSymbolRenderer)
        # the probability rasters come styled and unticked, as the dock adds them
        probability = names["probability 2017"]
        assert isinstance(probability.renderer(), QgsSingleBandPseudoColorRenderer)
        assert not project.layerTreeRoot().findLayer(probability.id()).itemVisibilityChecked()
        tree = project.layerTreeRoot()                    # only the newest year starts ticked
        assert tree.findLayer(names["landslides 2018"].id()).itemVisibilityChecked()
        assert not tree.findLayer(names["landslides 2017"].id()).itemVisibilityChecked()
        if Qgis.QGIS_VERSION_INT >= 33200:    # Processing groups results from 3.32 on: like the dock's group
            group = project.layerTreeRoot().findGroup("Landslide Mapper — valley")
            assert [n.name() for n in group.children()] == [
                f"{kind} {year}" for year in (2018, 2017, 2016)
                for kind in ("new or enlarged", "landslides", "probability") if (kind, year) != ("new or enlarged", 2016)]
        stats = names["Statistics per year"]
        rows = {f["year"]: f for f in stats.getFeatures()}
        assert set(rows) == {2016, 2017, 2018}
        assert rows[2017]["count"] == len(mapped.geometries) and rows[2017]["alpha"] is not None
        report = Path(result["REPORT"]).read_text()
        assert "data:image/png;base64," in report and "2018" in report
    finally:
        remove_results(project, before)


def test_batch_style_runs_over_several_areas(plugin, scenes, tmp_path):
    """What the batch dialog does: the same algorithm, one row per area, each its own run."""
    results = []
    for i, scene in enumerate(scenes):
        results.append(run("map_landslides", {
            "IMAGES": [str(scene.rasters[2016]), str(scene.rasters[2017])], "OUTPUT_FOLDER": str(tmp_path),
            "RUN_NAME": f"area_{i}", "ANALYSE": False, "STATISTICS": None}))
    assert [Path(r["RUN_FOLDER"]).name for r in results] == ["area_0", "area_1"]
    counts = [[len(read_layer(*u.split("|layername="))) for u in r["LANDSLIDES"]] for r in results]
    assert counts[0] != counts[1]                  # two different areas, mapped separately
    assert all(r["CHANGES"] == [] and r["REPORT"] is None for r in results)
    # the same run name again gets a new folder, never the old one
    again = run("map_landslides", {"IMAGES": [str(scenes[0].rasters[2016])], "OUTPUT_FOLDER": str(tmp_path),
                                   "RUN_NAME": "area_0", "ANALYSE": False})
    assert Path(again["RUN_FOLDER"]).name == "area_0_2"


def test_subtraction_statistics_and_accuracy_on_inventory_layers(plugin, scenes, tmp_path):
    scene = scenes[0]
    # one year is a freshly digitised memory layer: it is snapshotted for the worker
    source = QgsVectorLayer(truth(scene, 2018), "t", "ogr")
    memory = QgsVectorLayer(f"Polygon?crs={source.crs().authid()}", "digitised 2018", "memory")
    copies = []
    for f in source.getFeatures():
        copy = QgsFeature()
        copy.setGeometry(f.geometry())
        copies.append(copy)
    memory.dataProvider().addFeatures(copies)
    memory.updateExtents()
    QgsProject.instance().addMapLayer(memory)
    try:
        sub = run("subtract_inventories", {"INVENTORIES": [truth(scene, 2016), truth(scene, 2017), memory.id()],
                                           "OUTPUT_FOLDER": str(tmp_path), "RUN_NAME": "changes"})
        assert [u.split("=")[-1] for u in sub["CHANGES"]] == ["new_2017", "new_2018"]
        new_2017 = read_layer(sub["GEOPACKAGE"], "new_2017")
        assert len(new_2017) > 0 and set(new_2017.fields["change"]) <= {"new", "enlarged"}
        stats_layer = sub["STATISTICS"]
        assert sorted(f["year"] for f in stats_layer.getFeatures()) == [2016, 2017, 2018]
    finally:
        QgsProject.instance().removeMapLayer(memory.id())

    stats = run("inventory_statistics", {"INVENTORIES": [truth(scene, 2016), truth(scene, 2017)],
                                         "MAPPED_AREA": 0.33, "OUTPUT_FOLDER": str(tmp_path),
                                         "STATISTICS": str(tmp_path / "stats.gpkg")})
    layer = QgsVectorLayer(stats["STATISTICS"], "stats", "ogr")
    rows = {f["year"]: f for f in layer.getFeatures()}
    assert rows[2017]["mapped_area_km2"] == pytest.approx(0.33)
    assert rows[2017]["count"] == len(read_layer(str(scene.truth_path), "landslides_2017"))
    assert (Path(stats["RUN_FOLDER"]) / "charts" / "fad.png").is_file()
    assert "<img" in Path(stats["REPORT"]).read_text()

    # a prediction against the truth: the truth against itself is perfect, a shifted copy is not
    acc = run("assess_accuracy", {"PREDICTED": [truth(scene, 2017)], "REFERENCE": [truth(scene, 2016),
                                                                                   truth(scene, 2017)],
                                  "OUTPUT_FOLDER": str(tmp_path), "RUN_NAME": "accuracy"})
    rows = list(acc["ACCURACY"].getFeatures())
    assert [r["year"] for r in rows] == [2017] and rows[0]["f1"] == pytest.approx(1.0)
    assert [u.split("=")[-1] for u in acc["ASSESSED"]] == ["predicted_2017", "reference_2017"]


@needs_training
def test_fine_tuning_adds_a_cascade_stage(plugin, scenes, tmp_path):
    scene = scenes[0]
    messages: list[str] = []
    feedback = QgsProcessingFeedback()
    feedback.pushInfo = messages.append          # keeps the log for the test
    result = run("finetune_checkpoint", {
        "IMAGES": [str(scene.rasters[2017])], "LABELS": [truth(scene, 2017)], "NAME": "valley_stage",
        "REGION": "Demo valley", "TRIGGER": "earthquake", "EPOCHS": 1, "BATCH_SIZE": 4, "PATCH_SIZE": 0,
        "MAX_STEPS": 2, "DISTILL_WEIGHT": 0.25, "OUTPUT_FOLDER": str(tmp_path / "checkpoints")}, feedback=feedback)
    new = Path(result["CHECKPOINT"])
    assert new == tmp_path / "checkpoints" / "valley_stage"
    info = json.loads((new / "checkpoint.json").read_text())
    base = json.loads((BUNDLED / "checkpoint.json").read_text())
    assert result["STAGE"] == len(base["lineage"]) + 1 == len(info["lineage"])
    assert info["lineage"][-1]["base_id"] == base["id"] and info["lineage"][-1]["region"] == "Demo valley"
    assert info["lineage"][-1]["years"] == [2017] and info["lineage"][-1]["trigger"] == "earthquake"
    assert info["lineage"][-1]["distill_weight"] == 0.25
    assert result["CHECKPOINT_ID"] == info["id"]
    assert any(m.startswith("round 1 (step ") for m in messages)
    # the new stage maps: it is a complete checkpoint
    mapped = run("map_landslides", {"IMAGES": [str(scene.rasters[2017])], "MODEL": str(new),
                                    "OUTPUT_FOLDER": str(tmp_path / "runs"), "ANALYSE": False})
    assert Path(mapped["GEOPACKAGE"]).is_file()


def test_cancelling_stops_the_worker_and_leaves_nothing(plugin, tmp_path):
    big = write_raster(tmp_path / "big_2017.tif", forest_with_scars(1500, 1500))
    out = tmp_path / "out"
    out.mkdir()
    feedback = QgsProcessingFeedback()
    cancelled_at: list[float] = []

    def cancel_once_running(progress: float) -> None:
        if progress > 0 and not cancelled_at:
            cancelled_at.append(time.monotonic())
            feedback.cancel()

    feedback.progressChanged.connect(cancel_once_running)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run("map_landslides", {"IMAGES": [str(big)], "MODEL": str(BASELINE), "TILE_SIZE": 32, "OVERLAP": 8,
                               "BATCH_SIZE": 1, "OUTPUT_FOLDER": str(out)}, feedback=feedback)
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 30
    assert list(out.iterdir()) == []          # no run folder, no staging folder


@pytest.mark.parametrize("case", ["duplicate_year", "no_year", "years_count", "three_bands", "labels_count",
                                  "onnx_base", "one_inventory", "not_a_model"])
def test_bad_parameters_are_refused_with_a_specific_message(plugin, scenes, tmp_path, case):
    scene = scenes[0]
    imgs = [str(p) for p in scene.rasters.values()]
    three = write_raster(tmp_path / "rgb_2017.tif", forest_with_scars(64, 64)[:3])
    unnamed = write_raster(tmp_path / "image.tif", forest_with_scars(64, 64))
    algorithm, params, expected = {
        "duplicate_year": ("map_landslides", {"IMAGES": imgs[:2], "YEARS": "2016,2016"},
                           "year 2016 is already given"),
        "no_year": ("map_landslides", {"IMAGES": [str(unnamed)]}, "image.tif) has no year in its name"),
        "years_count": ("map_landslides", {"IMAGES": imgs, "YEARS": "2016,2017"}, "2 year(s) given for 3"),
        "three_bands": ("map_landslides", {"IMAGES": [str(three)], "MODEL": str(BUNDLED / "checkpoint.json")},
                        "(rgb_2017): the band mapping has no NIR, which the model needs"),
        "labels_count": ("finetune_checkpoint", {"IMAGES": imgs[:2], "LABELS": [truth(scene, 2017)]},
                         "1 label layer(s) for 2 image(s)"),
        "onnx_base": ("finetune_checkpoint", {"IMAGES": imgs[:1], "LABELS": [truth(scene, 2016)],
                                              "BASE_CHECKPOINT": str(BASELINE)}, "cannot be trained"),
        "one_inventory": ("subtract_inventories", {"INVENTORIES": [truth(scene, 2016)]},
                          "at least 2 polygon layer(s)"),
        "not_a_model": ("map_landslides", {"IMAGES": imgs[:1], "MODEL": str(tmp_path / "rgb_2017.tif")},
                        "neither a cascade checkpoint"),
    }[case]
    out = tmp_path / "out"
    with pytest.raises(QgsProcessingException) as err:
        run(algorithm, {**params, "OUTPUT_FOLDER": str(out)})
    assert expected in str(err.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_mapping_only_selected_polygons_inside_an_extent(plugin, scenes, tmp_path):
    """AREA (a memory layer, its selected feature only) and EXTENT (Processing's text form,
    in another CRS): only the top-left quarter of the scene is mapped."""
    import rasterio
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry, \
        QgsProcessingFeatureSourceDefinition, QgsRectangle

    scene = scenes[0]
    image = str(scene.rasters[2017])
    with rasterio.open(image) as src:
        (x0, y0, x1, y1), crs = tuple(src.bounds), src.crs.to_string()
        h, w = src.shape
        quarter_km2 = (src.dataset_mask()[:h // 2, :w // 2] > 0).sum() * src.res[0] * src.res[1] / 1e6
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    area = QgsVectorLayer(f"Polygon?crs={crs}", "catchment", "memory")
    left = QgsFeature()
    left.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y0, xm, y1)))
    right = QgsFeature()
    right.setGeometry(QgsGeometry.fromRect(QgsRectangle(xm, y0, x1, y1)))
    area.dataProvider().addFeatures([left, right])
    QgsProject.instance().addMapLayer(area)
    try:
        area.selectByIds([next(f.id() for f in area.getFeatures() if f.geometry().boundingBox().xMinimum() == x0)])
        to_geo = QgsCoordinateTransform(QgsCoordinateReferenceSystem(crs), QgsCoordinateReferenceSystem("EPSG:4326"),
                                        QgsProject.instance())
        top = to_geo.transformBoundingBox(QgsRectangle(x0, ym, x1, y1))
        extent = f"{top.xMinimum()},{top.xMaximum()},{top.yMinimum()},{top.yMaximum()} [EPSG:4326]"
        result = run("map_landslides", {
            "IMAGES": [image], "BANDS": 1, "ANALYSE": False, "OUTPUT_FOLDER": str(tmp_path / "out"),
            "AREA": QgsProcessingFeatureSourceDefinition(area.id(), True), "EXTENT": extent})
        summary = json.loads((Path(result["RUN_FOLDER"]) / "summary.json").read_text())
        # valid pixels of the top-left quarter (the scene has nodata gaps), give or take the
        # lon/lat extent's turn
        assert summary["years"][0]["mapped_area_km2"] == pytest.approx(quarter_km2, rel=0.06)
        job = json.loads((Path(result["RUN_FOLDER"]) / "job.json").read_text())
        assert job["area"].endswith("|layername=catchment") and "_selected.gpkg" in job["area"]
        area.removeSelection()
        with pytest.raises(QgsProcessingException, match="no feature of catchment is selected"):
            run("map_landslides", {"IMAGES": [image], "BANDS": 1, "OUTPUT_FOLDER": str(tmp_path / "out2"),
                                   "AREA": QgsProcessingFeatureSourceDefinition(area.id(), True)})
    finally:
        QgsProject.instance().removeMapLayer(area.id())


def test_the_mapping_dialog_has_short_labels_and_explains_them_in_its_help(plugin):
    alg = QgsApplication.processingRegistry().algorithmById(f"{PROVIDER_ID}:map_landslides")
    long_labels = [d.description() for d in alg.parameterDefinitions() if len(d.description()) > 36]
    assert long_labels == []
    help_html = alg.shortHelpString()
    for d in alg.parameterDefinitions():
        if d.name() != "STATISTICS":
            assert d.help(), d.name()
            assert f"<b>{d.description()}</b>" in help_html.replace("&amp;", "&")


def test_automatic_model_maps_a_colour_only_image_with_the_rgb_checkpoint(plugin, scenes, tmp_path):
    import rasterio

    with rasterio.open(scenes[0].rasters[2017]) as src:          # B, G, R, NIR -> R, G, B
        data, profile = src.read([3, 2, 1]), src.profile
    rgb = tmp_path / "ortho_2017.tif"
    with rasterio.open(rgb, "w", **{**profile, "count": 3}) as dst:
        dst.write(data)
    feedback = QgsProcessingFeedback()
    logs = []
    feedback.pushInfo = lambda text: logs.append(text)
    res = run("map_landslides", {"IMAGES": [str(rgb)], "OUTPUT_FOLDER": str(tmp_path / "out"), "UNCERTAINTY": True,
                                 "ANALYSE": False}, feedback=feedback)
    summary = json.loads((Path(res["RUN_FOLDER"]) / "summary.json").read_text())
    assert RGB_CHECKPOINT.name in summary["model"]
    assert any(f"with {RGB_CHECKPOINT.name} into" in line for line in logs)
    assert len(res["UNCERTAINTY_LAYERS"]) == 1 and res["REVIEW"] == [f"{res['GEOPACKAGE']}|layername=review_2017"]


def test_a_worker_python_without_packages_is_named_with_the_fix(plugin, scenes, tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSLIDE_MAPPER_PYTHON", "/usr/bin/python3")   # Debian's: no ONNX Runtime
    with pytest.raises(QgsProcessingException) as err:
        run("map_landslides", {"IMAGES": [str(scenes[0].rasters[2016])], "OUTPUT_FOLDER": str(tmp_path)})
    assert "/usr/bin/python3" in str(err.value) and "lacks packages" in str(err.value)


def test_a_layer_edited_but_not_saved_is_refused(plugin, scenes, tmp_path):
    layer = QgsVectorLayer(truth(scenes[0], 2017), "landslides 2017", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        layer.startEditing()
        layer.deleteFeature(next(layer.getFeatures()).id())
        with pytest.raises(QgsProcessingException, match="unsaved edits"):
            run("inventory_statistics", {"INVENTORIES": [layer.id()], "YEARS": "2017",
                                         "OUTPUT_FOLDER": str(tmp_path)})
    finally:
        layer.rollBack()
        QgsProject.instance().removeMapLayer(layer.id())


def test_raster_layers_of_the_project_are_read_from_their_files(plugin, scenes, tmp_path):
    """Layers picked in the dialog are project layers: their files go to the worker."""
    layers = [QgsRasterLayer(str(p), f"planet {y}") for y, p in scenes[1].rasters.items()]
    QgsProject.instance().addMapLayers(layers)
    try:
        result = run("map_landslides", {"IMAGES": [lay.id() for lay in layers[:2]], "OUTPUT_FOLDER": str(tmp_path),
                                        "ANALYSE": False})
        job = json.loads((Path(result["RUN_FOLDER"]) / "job.json").read_text())
        assert [(y["year"], y["path"]) for y in job["years"]] == [
            (y, str(p)) for y, p in list(scenes[1].rasters.items())[:2]]
    finally:
        QgsProject.instance().removeMapLayers([lay.id() for lay in layers])


def test_runs_as_a_background_task_like_the_toolbox_dialog(plugin, scenes, tmp_path):
    """The toolbox runs an algorithm in a QgsProcessingAlgRunnerTask (another thread) and
    loads its layers on the main thread afterwards; the event loop keeps turning meanwhile."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsProcessingAlgRunnerTask, QgsProcessingOutputLayerDefinition

    project = QgsProject.instance()
    before = set(project.mapLayers())
    alg = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:subtract_inventories")
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    params = {"INVENTORIES": [truth(scenes[1], y) for y in (2016, 2017, 2018)], "OUTPUT_FOLDER": str(tmp_path),
              "STATISTICS": QgsProcessingOutputLayerDefinition(QgsProcessing.TEMPORARY_OUTPUT, project)}
    ok, message = alg.checkParameterValues(params, context)
    assert ok, message
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    done: list = []
    task.executed.connect(lambda success, results: done.append((success, results)))
    QgsApplication.taskManager().addTask(task)
    spins, deadline = 0, time.monotonic() + 120
    while not done and time.monotonic() < deadline:
        QgsApplication.processEvents()
        spins += 1
        time.sleep(0.01)
    assert done and done[0][0], feedback.textLog()
    assert spins > 10                                     # the main thread was free meanwhile
    try:
        assert handleAlgorithmResults(alg, context, feedback, parameters=params)   # 3.22 and 3.40 alike
        names = {project.mapLayer(i).name() for i in set(project.mapLayers()) - before}
        assert {"new or enlarged 2017", "new or enlarged 2018", "Statistics per year"} <= names
    finally:
        remove_results(project, before)


def test_a_model_chains_mapping_into_subtraction(plugin, scenes, tmp_path):
    """In the graphical modeler, the mapping's LANDSLIDES output feeds the subtraction."""
    from qgis.core import (QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelParameter,
                           QgsProcessingModelOutput)

    model = QgsProcessingModelAlgorithm("map then subtract", "landslides")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("images", "Images", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("images"))
    mapping = QgsProcessingModelChildAlgorithm(f"{PROVIDER_ID}:map_landslides")
    mapping.setChildId("map")
    mapping.addParameterSources("IMAGES", [QgsProcessingModelChildParameterSource.fromModelParameter("images")])
    mapping.addParameterSources("ANALYSE", [QgsProcessingModelChildParameterSource.fromStaticValue(False)])
    mapping.addParameterSources("OUTPUT_FOLDER", [QgsProcessingModelChildParameterSource.fromStaticValue(
        str(tmp_path / "maps"))])
    model.addChildAlgorithm(mapping)
    subtract = QgsProcessingModelChildAlgorithm(f"{PROVIDER_ID}:subtract_inventories")
    subtract.setChildId("subtract")
    subtract.addParameterSources("INVENTORIES", [QgsProcessingModelChildParameterSource.fromChildOutput(
        "map", "LANDSLIDES")])
    folder = QgsProcessingModelOutput("changes_folder", "Changes folder")
    folder.setChildOutputName("OUTPUT_FOLDER")           # the subtraction's folder is the model's output
    subtract.setModelOutputs({"changes_folder": folder})
    model.addChildAlgorithm(subtract)
    model.updateDestinationParameters()

    import processing

    # the model's own parameter for that output: "subtract:changes_folder" on 3.22,
    # "changes_folder" on later releases
    (destination,) = [d.name() for d in model.destinationParameterDefinitions()]
    result = processing.run(model, {"images": [str(p) for p in scenes[0].rasters.values()],
                                    destination: str(tmp_path / "changes")})
    assert result[destination] == str(tmp_path / "changes")
    (run_dir,) = (tmp_path / "changes").iterdir()
    new = {n: read_layer(str(run_dir / "changes.gpkg"), n) for n in ("new_2017", "new_2018")}
    assert len(new["new_2017"]) > 0         # the event year; 2018 may add nothing
    assert len(list((tmp_path / "maps").iterdir())) == 1
