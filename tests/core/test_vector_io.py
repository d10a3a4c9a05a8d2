import numpy as np
import pytest
import shapely

from landslide_mapper.core.errors import InputError, OutputError
from landslide_mapper.core.geodata.vector_io import VectorLayer, list_layers, read_layer, write_geopackage

WKT = 'PROJCS["WGS 84 / UTM zone 45N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",87],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32645"]]'


def test_round_trip_with_mixed_polygon_types(tmp_path):
    geoms = np.array([shapely.box(0, 0, 10, 10), shapely.MultiPolygon([shapely.box(20, 0, 30, 5), shapely.box(40, 0, 45, 5)])])
    layer = VectorLayer(geoms, {"year": np.array([2017, 2018]), "area_m2": np.array([100.0, 75.0]),
                                "change": np.array(["new", "enlarged"])}, WKT)
    path = write_geopackage(tmp_path / "x.gpkg", {"a": layer, "empty": VectorLayer(np.empty(0, object), {}, WKT)})
    assert list_layers(path) == ["a", "empty"]
    back = read_layer(path, "a")
    assert shapely.equals(back.geometries, geoms).all()
    assert (shapely.get_type_id(back.geometries) == 6).all()  # promoted to one MultiPolygon type
    assert back.fields["year"].tolist() == [2017, 2018] and back.fields["change"].tolist() == ["new", "enlarged"]
    assert "32645" in back.crs_wkt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gpkg"]


def test_refuses_to_overwrite_and_reports_missing_layers(tmp_path):
    path = write_geopackage(tmp_path / "x.gpkg", {"a": VectorLayer(np.array([shapely.box(0, 0, 1, 1)]), {}, WKT)})
    with pytest.raises(OutputError, match="already exists"):
        write_geopackage(path, {})
    with pytest.raises(InputError, match=r"has no layer 'b'"):
        read_layer(path, "b")
    with pytest.raises(InputError, match="does not exist"):
        read_layer(tmp_path / "missing.gpkg")


def test_a_failed_write_leaves_no_file(tmp_path):
    bad = VectorLayer(np.array([shapely.box(0, 0, 1, 1)]), {"v": np.array([object()])}, WKT)
    with pytest.raises(Exception):
        write_geopackage(tmp_path / "x.gpkg", {"ok": VectorLayer(np.empty(0, object), {}, WKT), "bad": bad})
    assert list(tmp_path.iterdir()) == []
