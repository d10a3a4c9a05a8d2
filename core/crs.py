"""Choosing a CRS in which areas in m² are right.

Landslide areas drive every statistic downstream, so geographic and Web-Mercator
rasters (whose map units are not ground metres) are read through an on-the-fly
reprojection to the UTM zone of their centre instead of being refused.
"""
from __future__ import annotations

import math

from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

WEB_MERCATOR_CODES = {3857, 3785, 900913, 102100, 102113}


def is_web_mercator(crs: CRS) -> bool:
    code = crs.to_epsg()
    if code in WEB_MERCATOR_CODES:
        return True
    wkt = crs.to_wkt().lower()
    return "pseudo-mercator" in wkt or "popular visualisation" in wkt or "web_mercator" in wkt


def metric_problem(crs: CRS) -> str | None:
    """Why areas in this CRS would be wrong, or None when it is a metre-based projection."""
    if crs.is_geographic:
        return "geographic (degrees, not metres)"
    if is_web_mercator(crs):
        return "Web Mercator (areas distorted by 1/cos²(latitude))"
    units = (crs.linear_units or "").lower()
    if units not in ("metre", "meter", "m", "metres", "meters"):
        return f"in {crs.linear_units or 'unknown'} units, not metres"
    return None


def utm_for_lonlat(lon: float, lat: float) -> CRS:
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def utm_for_bounds(crs: CRS, bounds) -> CRS:
    """UTM zone (WGS 84) holding the centre of ``bounds`` given in ``crs``."""
    cx = (bounds[0] + bounds[2]) / 2.0
    cy = (bounds[1] + bounds[3]) / 2.0
    lon, lat = transform_points(crs, CRS.from_epsg(4326), [cx], [cy])
    return utm_for_lonlat(lon[0], lat[0])


def describe(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else (crs.to_string()[:80] or "unknown CRS")
