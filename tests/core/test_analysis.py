"""The inventory jobs end to end: subtract, fad and assess from the command line and as
worker jobs, on real GeoPackages, shapefiles and zipped shapefile folders."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from osgeo import ogr, osr

from conftest import shared
from test_cli import cli, events
from landslide_mapper.core.inventory.analysis import run_analyse
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.inventory.series import parse_layer_refs, read_series
from landslide_mapper.core.jobs.specs import (AnalyseJob, AssessJob, GridRaster, InventoryLayer, SubtractJob,
                                        job_from_json, job_to_json)
from landslide_mapper.core.geodata.vector_io import VectorLayer, list_layers, read_layer, write_geopackage

UTM45 = 32645


def srs_wkt(epsg: int) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def write_shapefile(path: Path, geoms, fields: dict, epsg: int = UTM45) -> Path:
    ogr.UseExceptions()
    ds = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    lyr = ds.CreateLayer(path.stem, srs, ogr.wkbPolygon)
    for name, values in fields.items():
        lyr.CreateField(ogr.FieldDefn(name, ogr.OFTInteger if isinstance(values[0], int) else ogr.OFTReal))
    for i, g in enumerate(geoms):
        feat = ogr.Feature(lyr.GetLayerDefn())
        for name, values in fields.items():
            feat.SetField(name, values[i])
        feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(g)))
        lyr.CreateFeature(feat)
    ds = None
    return path


def box(x0, y0, x1, y1, ox=500_000.0, oy=3_000_000.0):
    return shapely.box(ox + x0, oy + y0, ox + x1, oy + y1)


@pytest.fixture
def zipped_series(tmp_path):
    """Three years as shapefiles in a folder inside a zip, like the published inventories:
    differing schemas, a self-intersecting ring, a record whose Area attribute is 0."""
    folder = tmp_path / "Region"
    folder.mkdir()
    bowtie = shapely.Polygon([(500_300, 3_000_000), (500_340, 3_000_040), (500_340, 3_000_000),
                              (500_300, 3_000_040)])
    write_shapefile(folder / "2015.shp", [box(0, 0, 60, 60), box(200, 0, 230, 30)],
                    {"gridcode": [1, 1], "Year": [2015, 2015]})
    write_shapefile(folder / "2016.shp", [box(0, 0, 60, 90), box(201, 1, 231, 31), bowtie],
                    {"raster_val": [1, 1, 1], "Area": [0.0, 900.0, 1.0]})
    write_shapefile(folder / "2017.shp", [box(0, 0, 60, 90), box(400, 400, 430, 460)],
                    {"gridcode": [1, 1]})
    archive = tmp_path / "Region.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"Region/{f.name}")
    return archive


def test_subtract_command_on_a_zipped_folder_of_shapefiles(tmp_path, zipped_series):
    r = cli("subtract", zipped_series, "-o", tmp_path / "out", "--run-name", "wenchuan")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "out" / "wenchuan"
    assert "1 invalid geometries repaired" in r.stderr
    assert list_layers(run / "changes.gpkg") == ["new_2016", "new_2017"]
    new16 = read_layer(run / "changes.gpkg", "new_2016")
    # the 60 m × 30 m extension of the first scar (parent FID 0 of 2015.shp), the bow-tie
    # (two triangles of 400 m²); the 1 m jitter of the second scar is a sliver
    rows = sorted(zip(new16.fields["change"], new16.fields["parent_fid"], np.round(new16.fields["area_m2"])))
    assert rows == [("enlarged", 0, 1800.0), ("new", -1, 400.0), ("new", -1, 400.0)]
    new17 = read_layer(run / "changes.gpkg", "new_2017")
    assert new17.fields["change"].tolist() == ["new"] and new17.fields["area_m2"].tolist() == [1800.0]
    with open(run / "statistics.csv") as f:
        stats = list(csv.DictReader(f))
    assert [s["year"] for s in stats] == ["2015", "2016", "2017"]
    # areas come from the geometry, not from the Area attribute (0 for a 5,400 m² polygon)
    assert float(stats[1]["total_area_m2"]) == pytest.approx(5400 + 900 + 800)
    assert [(s["new"], s["enlarged"]) for s in stats] == [("", ""), ("2", "1"), ("1", "0")]
    summary = json.loads((run / "subtraction.json").read_text())
    assert summary["settings"] == {"sliver_buffer_m": 3.0, "min_remnant_m2": 81.0}
    assert [i["repaired"] for i in summary["inputs"]] == [0, 1, 0]
    for chart in ("fad", "fad_new", "trend"):
        for suffix in ("png", "svg", "json"):
            assert (run / "charts" / f"{chart}.{suffix}").stat().st_size > 0
    # a second run never touches the first
    again = cli("subtract", zipped_series, "-o", tmp_path / "out", "--run-name", "wenchuan", "--quiet")
    assert again.returncode == 0 and (tmp_path / "out" / "wenchuan_2").is_dir()


def test_fad_command_recovers_the_exponent_of_a_power_law_inventory(tmp_path):
    rng = np.random.default_rng(3)
    alpha, x_min = 2.3, 400.0
    areas = x_min * (1 - rng.random(600)) ** (-1 / (alpha - 1))
    sides = np.sqrt(areas)
    xs = np.arange(600) % 30 * 1500.0
    ys = np.arange(600) // 30 * 1500.0
    geoms = shapely.box(xs, ys, xs + sides, ys + sides)
    gpkg = write_geopackage(tmp_path / "inv.gpkg", {"mapped": VectorLayer(geoms, {}, srs_wkt(UTM45))})
    r = cli("fad", f"2020={gpkg}|mapped", "-o", tmp_path / "out", "--mapped-area-km2", 2025, "--jsonl")
    assert r.returncode == 0, r.stderr
    result = events(r.stdout)[-1]["result"]
    row = result["statistics"][0]
    assert row["count"] == 600 and row["density_per_km2"] == pytest.approx(600 / 2025, rel=1e-3)
    assert abs(row["alpha"] - alpha) < 3 * row["alpha_se"]
    assert x_min <= row["x_min_m2"] < 4 * x_min     # the KS criterion never cuts below the true x_min
    run = Path(result["run_dir"])
    data = json.loads((run / "charts" / "fad.json").read_text())
    assert data["series"][0]["fits"][0]["name"] == "power_law"


def test_assess_command_scores_pixels_and_objects(tmp_path):
    wkt = srs_wkt(UTM45)
    reference = [box(0, 0, 30, 30), box(100, 0, 130, 30)]          # 900 m² each
    predicted = [box(0, 0, 30, 60), box(300, 0, 330, 30)]           # one too long, one false alarm
    write_geopackage(tmp_path / "pred.gpkg", {"landslides_2017": VectorLayer(np.array(predicted), {}, wkt)})
    write_geopackage(tmp_path / "ref.gpkg", {"truth_2017": VectorLayer(np.array(reference), {}, wkt)})
    r = cli("assess", "--predicted", tmp_path / "pred.gpkg", "--reference", tmp_path / "ref.gpkg",
            "-o", tmp_path / "out", "--run-name", "acc")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "out" / "acc"
    with open(run / "accuracy.csv") as f:
        row = next(csv.DictReader(f))
    # 3 m pixels: tp 100, fp 100 + 100, fn 100
    assert float(row["precision"]) == pytest.approx(100 / 300, abs=1e-4)
    assert float(row["recall"]) == pytest.approx(0.5, abs=1e-4)
    assert float(row["f1"]) == pytest.approx(200 / 500, abs=1e-4)
    assert int(row["false_alarms"]) == 1 and int(row["missed_reference"]) == 1
    assert list_layers(run / "assessment.gpkg") == ["predicted_2017", "reference_2017"]
    status = read_layer(run / "assessment.gpkg", "predicted_2017").fields["status"].tolist()
    assert sorted(status) == ["false_alarm", "matched"]
    scatter = json.loads((run / "charts" / "area_scatter.json").read_text())
    assert scatter["pairs"][0]["predicted_m2"] == [1800.0] and scatter["pairs"][0]["reference_m2"] == [900.0]


def test_inventory_jobs_run_as_worker_jobs(tmp_path, zipped_series):
    job = SubtractJob(years=parse_layer_refs([str(zipped_series)]), output_dir=str(tmp_path / "out"),
                      run_name="from_qgis", sliver_px=0.5)
    assert job_from_json(job_to_json(job)).to_dict() == job.to_dict()
    r = cli("run-job", input=job_to_json(job))
    assert r.returncode == 0, r.stderr
    result = events(r.stdout)[-1]["result"]
    assert result["run_dir"].endswith("from_qgis") and len(result["changes"]) == 2
    for j in (AnalyseJob([InventoryLayer(2017, "a.gpkg", "x")], "out", bootstrap=5),
              AssessJob([InventoryLayer(2017, "a.gpkg")], [InventoryLayer(2017, "b.shp")], "out",
                        grids=[GridRaster(2017, "p.tif")], area="area.gpkg|area")):
        assert job_from_json(job_to_json(j)).to_dict() == j.to_dict()


def test_bad_inventories_get_specific_errors(tmp_path):
    pts = tmp_path / "points.gpkg"
    write_geopackage(pts, {"landslides_2017": VectorLayer(np.array([shapely.Point(500_000, 3_000_000)]), {},
                                                          srs_wkt(UTM45))})
    with pytest.raises(InputError, match=r"Year 2017: .*points.gpkg.* has no polygons"):
        read_series(parse_layer_refs([f"2017={pts}|landslides_2017"]))
    with pytest.raises(InputError, match="Year 2017 is given more than once"):
        parse_layer_refs([f"2017={pts}", f"2017={pts}"])
    with pytest.raises(InputError, match="No layer of .* is named after a year"):
        write_geopackage(tmp_path / "x.gpkg", {"scars": VectorLayer(np.array([box(0, 0, 1, 1)]), {}, None)})
        parse_layer_refs([str(tmp_path / "x.gpkg")])
    with pytest.raises(InputError, match="at least 2 year"):
        SubtractJob(years=[InventoryLayer(2017, "a.gpkg")], output_dir="o").validate()
    r = cli("subtract", f"2016={tmp_path / 'missing.gpkg'}", f"2017={pts}", "-o", tmp_path / "out")
    assert r.returncode == 2 and "missing.gpkg does not exist" in r.stderr


def test_geographic_inventories_are_measured_in_utm(tmp_path):
    # a 0.001° × 0.001° square at 27.9°N, 85.3°E (Nepal) is ~ 111 m × 98 m
    square = shapely.box(85.3, 27.9, 85.301, 27.901)
    path = write_geopackage(tmp_path / "geo.gpkg", {"landslides_2015": VectorLayer(np.array([square]), {},
                                                                                   srs_wkt(4326))})
    logs: list[str] = []
    (inv,) = read_series(parse_layer_refs([str(path)]), logs.append)
    assert inv.crs.to_epsg() == UTM45
    assert any("geographic" in m and "EPSG:32645" in m for m in logs)
    assert inv.areas[0] == pytest.approx(111_000 * 0.001 * 98_300 * 0.001, rel=0.01)


def test_real_nepal_and_china_inventories_through_statistics_and_fad(tmp_path):
    data = shared("bhuyan2023_inventories")
    for region, first_count in (("Nepal", 35), ("China", 10_471)):
        result = run_analyse(AnalyseJob(years=parse_layer_refs([str(data / f"{region}.zip")]),
                                        output_dir=str(tmp_path), run_name=region))
        rows = result.statistics
        assert rows[0]["count"] == first_count
        assert all(r["count"] > 0 and r["total_area_m2"] > 0 for r in rows)
        # every year gets a power-law fit (the smallest Nepal year has 12 polygons)
        assert all(r["alpha"] is not None and r["alpha"] > 1 for r in rows)
        assert (Path(result.run_dir) / "charts" / "fad.svg").exists()
    china = {r["year"]: r for r in rows}
    assert china[2009]["x_min_m2"] > 500 and 1.5 < china[2009]["alpha"] < 2.5
    assert china[2009]["mls"] > china[2011]["mls"]        # the co-seismic year dominates
