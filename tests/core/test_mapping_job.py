"""The multi-year job: run folders, GeoPackage, CRS policy and every bad input."""
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import forest_with_scars, shared, write_raster
from onnx_factory import conv_model, metadata
from landslide_mapper.core.errors import Cancelled, InputError, ModelError, OutputError
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput, job_from_json, job_to_json
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer


def two_years(tmp_path):
    a = write_raster(tmp_path / "y2017.tif", forest_with_scars(200, 240, scars=[(20, 60, 20, 80)]))
    b = write_raster(tmp_path / "y2018.tif", forest_with_scars(200, 240, scars=[(20, 60, 20, 80), (120, 150, 150, 200)], seed=1))
    return [YearInput(2018, str(b)), YearInput(2017, str(a))]


def job_for(tmp_path, years, model, **kw):
    return InferenceJob(years=years, model=str(model), output_dir=str(tmp_path / "out"), tile_size=64, **kw)


def outputs(tmp_path):
    out = tmp_path / "out"
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []


def test_two_years_end_to_end(tmp_path, baseline_model):
    job = job_for(tmp_path, two_years(tmp_path), baseline_model)
    result = run_inference(job)
    run = Path(result.run_dir)
    assert sorted(p.name for p in run.iterdir()) == [
        "charts", "job.json", "landslides.gpkg", "probability_2017.tif", "probability_2018.tif",
        "statistics.csv", "statistics.json", "summary.json"]
    assert list_layers(result.geopackage) == ["landslides_2017", "landslides_2018", "new_2018"]
    assert [y.polygons for y in result.years] == [1, 2]
    layer = read_layer(result.geopackage, "landslides_2018")
    assert sorted(layer.fields["area_m2"]) == [30 * 50 * 9.0, 40 * 60 * 9.0]
    assert set(layer.fields) == {"year", "area_m2", "perimeter_m", "mean_prob"}
    assert "32645" in layer.crs_wkt or "UTM zone 45N" in layer.crs_wkt
    # the scar of 2017 is still visible in 2018: only the second one is new
    new = read_layer(result.geopackage, "new_2018")
    assert new.fields["change"].tolist() == ["new"] and new.fields["area_m2"].tolist() == [30 * 50 * 9.0]
    assert new.fields["mean_prob"][0] > 0.5
    # and the images changed under it (core.inventory.change_evidence): forest became bare ground
    assert new.fields["evidence"].tolist() == ["confirmed"] and new.fields["ndvi_change"][0] < -0.3
    assert [s["count"] for s in result.statistics] == [1, 2]
    assert [s["new"] for s in result.statistics] == [None, 1]
    assert result.statistics[0]["density_per_km2"] == pytest.approx(1 / (200 * 240 * 9e-6), rel=1e-3)
    assert {"charts/fad.png", "charts/trend.svg", "charts/fad_new.json"} <= set(result.charts)
    # the job spec in the run folder reproduces the run
    assert job_from_json((run / "job.json").read_text()).to_dict() == job.to_dict()


def test_a_scar_on_ground_unseen_the_year_before_is_set_aside_unless_asked(tmp_path, baseline_model):
    """2017 has no data where 2018 shows a second scar: nobody can say it is new in 2018."""
    first = forest_with_scars(200, 240, scars=[(20, 60, 20, 80)])
    first[:, 100:170, 130:220] = 0
    years = [YearInput(2017, str(write_raster(tmp_path / "a.tif", first))),
             YearInput(2018, str(write_raster(tmp_path / "b.tif", forest_with_scars(
                 200, 240, scars=[(20, 60, 20, 80), (120, 150, 150, 200)], seed=1))))]
    checked = run_inference(job_for(tmp_path, years, baseline_model, run_name="checked"))
    assert list_layers(checked.geopackage) == ["landslides_2017", "landslides_2018", "new_2018", "unconfirmed_2018"]
    assert len(read_layer(checked.geopackage, "new_2018")) == 0
    aside = read_layer(checked.geopackage, "unconfirmed_2018")
    assert aside.fields["evidence"].tolist() == ["not observed before"] and aside.fields["seen_before"][0] == 0
    assert checked.changes[0]["unconfirmed_parts"] == 1 and checked.changes[0]["not_observed_parts"] == 1
    assert checked.statistics[1]["new"] == 0
    kept = run_inference(job_for(tmp_path, years, baseline_model, run_name="kept", confirm_changes=False))
    assert list_layers(kept.geopackage) == ["landslides_2017", "landslides_2018", "new_2018"]
    assert len(read_layer(kept.geopackage, "new_2018")) == 1 and kept.statistics[1]["new"] == 1


def test_rerun_never_overwrites_a_previous_run(tmp_path, baseline_model):
    job = job_for(tmp_path, two_years(tmp_path), baseline_model, run_name="mapping")
    first = run_inference(job)
    edited = Path(first.geopackage)
    stamp = edited.stat().st_mtime_ns
    second = run_inference(job)
    assert Path(second.run_dir).name == "mapping_2" and edited.stat().st_mtime_ns == stamp


def test_job_json_round_trip_and_unknown_fields():
    job = InferenceJob(years=[YearInput(2017, "a.tif", "rgbnir", 255.0)], model="m.onnx", output_dir="o")
    assert job_from_json(job_to_json(job)) == job
    with pytest.raises(InputError, match="Unknown field"):
        job_from_json('{"kind": "infer", "years": [], "model": "m", "output_dir": "o", "tiles": 3}')
    with pytest.raises(InputError, match="kind"):
        job_from_json('{"years": []}')


# -- bad input -------------------------------------------------------------------------
def test_missing_file(tmp_path, baseline_model):
    job = job_for(tmp_path, [YearInput(2017, str(tmp_path / "nope.tif"))], baseline_model)
    with pytest.raises(InputError, match=r"Year 2017: the raster file .*nope\.tif does not exist"):
        run_inference(job)


def test_non_raster_file(tmp_path, baseline_model):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image")
    with pytest.raises(InputError, match=r"notes\.tif is not a raster GDAL can read"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(bad))], baseline_model))


def test_fewer_bands_than_the_mapping_needs(tmp_path, baseline_model):
    src = write_raster(tmp_path / "rgb.tif", forest_with_scars(50, 50)[:3])
    with pytest.raises(InputError, match=r"rgb\.tif has 3 band\(s\), but the band mapping .* needs band 4 for NIR"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src), "planetscope4")], baseline_model))


def test_all_nodata_raster(tmp_path, baseline_model):
    src = write_raster(tmp_path / "empty.tif", np.zeros((4, 60, 60), np.uint16))
    with pytest.raises(InputError, match=r"empty\.tif contains no valid pixels"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model))
    assert outputs(tmp_path) == []


def test_duplicate_year(tmp_path, baseline_model):
    a = write_raster(tmp_path / "a.tif", forest_with_scars(30, 30))
    with pytest.raises(InputError, match="Year 2017 is given twice"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(a)), YearInput(2017, str(a))], baseline_model))


def test_raster_without_crs(tmp_path, baseline_model):
    src = write_raster(tmp_path / "nocrs.tif", forest_with_scars(30, 30), crs=None)
    with pytest.raises(InputError, match=r"nocrs\.tif has no coordinate reference system"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model))


def test_model_needing_a_band_the_mapping_lacks(tmp_path):
    model = conv_model(tmp_path / "re.onnx", n_in=6,
                       meta=metadata(channels=("B", "G", "R", "RE", "NIR", "NDVI")))
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(40, 40))
    with pytest.raises(InputError, match=r"needs a red-edge band \(RE\), but the band mapping for .*ps\.tif"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src), "planetscope4")], model))


def test_model_whose_network_and_metadata_disagree(tmp_path):
    model = conv_model(tmp_path / "bad.onnx", n_in=4, meta=metadata())
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(40, 40))
    with pytest.raises(ModelError, match=r"bad\.onnx: the network takes 4 channels but its metadata lists 5"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], model))


def test_corrupt_and_foreign_onnx_files(tmp_path):
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(40, 40))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(2048))
    with pytest.raises(ModelError, match=r"corrupt\.onnx is not a valid ONNX model"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], corrupt))
    foreign = conv_model(tmp_path / "foreign.onnx", bare=True)
    with pytest.raises(ModelError, match=r"foreign\.onnx has no Landslide Mapper metadata"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], foreign))
    with pytest.raises(ModelError, match="does not exist"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], tmp_path / "missing.onnx"))


def test_gpu_requested_without_cuda(tmp_path, baseline_model):
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(40, 40))
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="A GPU was requested"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model, device="gpu"))


def test_unwritable_output_folder(tmp_path, baseline_model):
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(40, 40))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):  # chmod cannot stop root, a file in the path can
        job = InferenceJob(years=[YearInput(2017, str(src))], model=str(baseline_model), output_dir=str(out))
        with pytest.raises(OutputError, match=r"a_file"):
            run_inference(job)


def test_cancel_mid_run_leaves_nothing(tmp_path, baseline_model):
    calls = []

    def on_progress(fraction, message):
        calls.append(fraction)
        if len(calls) == 3:
            reporter.cancel()

    reporter = Reporter(on_progress=on_progress)
    job = job_for(tmp_path, two_years(tmp_path), baseline_model, batch_size=1)
    with pytest.raises(Cancelled):
        run_inference(job, reporter)
    assert outputs(tmp_path) == []  # no staging folder, no GeoTIFF, no GeoPackage


# -- CRS and grids -----------------------------------------------------------------
def test_years_in_another_crs_are_reprojected_to_the_first(tmp_path, baseline_model):
    img = forest_with_scars(100, 100, scars=[(30, 70, 30, 70)])
    a = write_raster(tmp_path / "a.tif", img, crs="EPSG:32645", transform=from_origin(300000, 3100000, 3, 3))
    # the same ground in UTM 44N (the next zone west), via GDAL's warp
    from rasterio.warp import calculate_default_transform, reproject
    dst_crs = rasterio.crs.CRS.from_epsg(32644)
    with rasterio.open(a) as s:
        tf, w, h = calculate_default_transform(s.crs, dst_crs, s.width, s.height, *s.bounds, resolution=3)
        out = np.zeros((4, h, w), np.uint16)
        reproject(img, out, src_transform=s.transform, src_crs=s.crs, dst_transform=tf, dst_crs=dst_crs,
                  src_nodata=0, dst_nodata=0)
    b = write_raster(tmp_path / "b.tif", out, crs="EPSG:32644", transform=tf)
    logs = []
    result = run_inference(job_for(tmp_path, [YearInput(2017, str(a)), YearInput(2018, str(b))], baseline_model),
                           Reporter(on_log=logs.append))
    assert result.years[1].reprojected_from == "EPSG:32644"
    assert any("reprojected on the fly from EPSG:32644 to EPSG:32645" in m for m in logs)
    with rasterio.open(Path(result.run_dir) / "probability_2018.tif") as ds:
        assert ds.crs.to_epsg() == 32645
    areas = [read_layer(result.geopackage, f"landslides_{y}").fields["area_m2"].sum() for y in (2017, 2018)]
    assert areas[0] == 40 * 40 * 9.0
    assert areas[1] == pytest.approx(areas[0], rel=0.08)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_geographic_and_web_mercator_input_is_mapped_in_utm(tmp_path, baseline_model, crs):
    """A 40×40 scar of 3 m pixels at 27.7°N must still measure ~14,400 m², not degrees² or inflated m²."""
    from rasterio.warp import transform as tx
    lon, lat = 85.3, 27.7   # Nepal: UTM 45N
    if crs == "EPSG:4326":
        dx, dy = 3.0 / (111320 * np.cos(np.radians(lat))), 3.0 / 110574
        x0, y0 = lon, lat
    else:
        (x0,), (y0,) = tx("EPSG:4326", "EPSG:3857", [lon], [lat])
        dx = dy = 3.0 / np.cos(np.radians(lat))  # Web-Mercator metres per ground metre
    src = write_raster(tmp_path / "geo.tif", forest_with_scars(120, 120, scars=[(40, 80, 40, 80)]),
                       crs=crs, transform=from_origin(x0, y0, dx, dy))
    logs = []
    result = run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model),
                           Reporter(on_log=logs.append))
    assert result.crs == "EPSG:32645"
    assert any("mapping in EPSG:32645" in m for m in logs)
    area = read_layer(result.geopackage, "landslides_2017").fields["area_m2"].sum()
    assert area == pytest.approx(40 * 40 * 9.0, rel=0.06)


# -- real data (skipped without ../shared/data) --------------------------------------
def test_naip_years_keep_their_own_grids(tmp_path, baseline_model):
    folder = shared("naip_multiyear")
    files = sorted(folder.glob("*.tif"))[:3]
    years = [YearInput(int(f.name.split("_")[5][:4]), str(f), "rgbnir") for f in files]
    result = run_inference(InferenceJob(years=years, model=str(baseline_model),
                                        output_dir=str(tmp_path / "out"), tile_size=256))
    for y, f in zip(result.years, files):
        with rasterio.open(f) as a, rasterio.open(Path(result.run_dir) / y.probability) as b:
            assert a.transform == b.transform and a.shape == b.shape and a.crs == b.crs
            valid = a.read_masks(1) > 0
            assert ((b.read(1) == b.nodata) == ~valid).all() and b.nodata == 255
    assert [y.year for y in result.years] == sorted(y.year for y in years)


@pytest.mark.parametrize("name,bands,error", [
    ("all-nodata.tif", "auto", r"all-nodata\.tif contains no valid pixels"),
    ("RGB.byte.tif", "auto", r"needs a near-infrared band \(NIR\), but the band mapping for .*RGB\.byte\.tif"),
    ("RGB.byte.tif", "planetscope4", r"RGB\.byte\.tif has 3 band\(s\)"),
    ("RGBA.uint16.tif", "planetscope4", r"band 4 of .*RGBA\.uint16\.tif is an alpha"),
    ("alpha.tif", "rgbnir", r"band 4 of .*alpha\.tif is an alpha"),
    ("rotated.tif", "auto", r"rotated\.tif has no coordinate reference system"),
    ("float_nan.tif", "auto", r"float_nan\.tif has no coordinate reference system"),
])
def test_real_edge_case_rasters_fail_clearly(tmp_path, baseline_model, name, bands, error):
    path = shared("raster_edge_cases") / name
    with pytest.raises(InputError, match=error):
        run_inference(job_for(tmp_path, [YearInput(2017, str(path), bands)], baseline_model))
    assert outputs(tmp_path) == []


def test_real_web_mercator_raster_is_reprojected(tmp_path, baseline_model):
    path = shared("raster_edge_cases") / "rgb1_fake_nir_epsg3857.tif"
    logs = []
    result = run_inference(job_for(tmp_path, [YearInput(2017, str(path), "B=1,G=1,R=1,NIR=1")], baseline_model),
                           Reporter(on_log=logs.append))
    assert result.crs.startswith("EPSG:326") and any("Web Mercator" in m for m in logs)


def test_reprojected_corners_outside_the_footprint_are_nodata(tmp_path, baseline_model):
    """A source without nodata value: the warp's fill must not be read as valid ground."""
    dx, dy = 3.0 / (111320 * np.cos(np.radians(27.7))), 3.0 / 110574
    src = write_raster(tmp_path / "geo.tif", forest_with_scars(150, 150), crs="EPSG:4326",
                       transform=from_origin(85.3, 27.7, dx, dy), nodata=None)
    result = run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model))
    with rasterio.open(Path(result.run_dir) / "probability_2017.tif") as ds:
        prob = ds.read(1)
    assert (prob == 255).any() and (prob[prob != 255] < 0.5 * 254).all()
    assert result.years[0].mapped_area_km2 == pytest.approx(150 * 150 * 9 / 1e6, rel=0.03)


def test_models_with_fixed_input_sizes(tmp_path):
    import onnx
    fixed = onnx.load(str(conv_model(tmp_path / "c.onnx")))
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, 64, 64
    path = tmp_path / "fixed.onnx"
    onnx.save(fixed, str(path))
    src = write_raster(tmp_path / "ps.tif", forest_with_scars(150, 130, scars=[(20, 60, 20, 70)]))
    result = run_inference(InferenceJob(years=[YearInput(2017, str(src))], model=str(path),
                                        output_dir=str(tmp_path / "out"), overlap=8, batch_size=4))
    assert result.tile_size == 64  # the model's fixed size, batches of 4 split into batches of 1
    with pytest.raises(InputError, match=r"fixed\.onnx takes fixed 64×64 tiles; tile size 128"):
        run_inference(InferenceJob(years=[YearInput(2017, str(src))], model=str(path),
                                   output_dir=str(tmp_path / "out"), tile_size=128))


def test_job_fields_of_the_wrong_type():
    with pytest.raises(InputError, match=r"InferenceJob.overlap must be a whole number; got None"):
        job_from_json('{"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "m", '
                      '"output_dir": "o", "overlap": null}').validate()


def test_two_runs_with_one_name_in_one_process_do_not_collide(tmp_path):
    from landslide_mapper.core.jobs.run_folder import RunFolder
    with RunFolder(tmp_path, "same") as a, RunFolder(tmp_path, "same") as b:
        a.path("x").write_text("a")
        b.path("x").write_text("b")
        assert a.commit().name == "same" and b.commit().name == "same_2"
    assert (tmp_path / "same" / "x").read_text() == "a" and (tmp_path / "same_2" / "x").read_text() == "b"


def test_truncated_geotiff(tmp_path, baseline_model):
    src = write_raster(tmp_path / "cut.tif", forest_with_scars(300, 300), tiled=True, blockxsize=64,
                       blockysize=64, compress="deflate")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.tif"):
        run_inference(job_for(tmp_path, [YearInput(2017, str(src))], baseline_model))
    assert outputs(tmp_path) == []
