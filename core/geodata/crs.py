"""Choosing a CRS in which areas in m² are right.

Landslide areas drive every statistic downstream, so geographic and Web-Mercator
rasters (whose map units are not ground metres) are read through an on-the-fly
reprojection to the UTM zone of their centre instead of being refused.
"""
from __future__ import annotations

import math
import re

from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

from ..errors import InputError

WEB_MERCATOR_CODES = {3857, 3785, 900913, 102100, 102113}


def is_web_mercator(crs: CRS) -> bool:
    code = crs.to_epsg()
    if code in WEB_MERCATOR_CODES:
        return True
    wkt = crs.to_wkt().lower()
    return "pseudo-mercator" in wkt or "popular visualisation" in wkt or "web_mercator" in wkt


_LOCAL = re.compile(r'^\s*(LOCAL_CS|ENGCRS|ENGINEERINGCRS)\[', re.IGNORECASE)
_LOCAL_METRE = re.compile(r'(UNIT|LENGTHUNIT)\["(metre|meter)"', re.IGNORECASE)


def is_local(crs: CRS) -> bool:
    """A local (engineering) CRS: plane coordinates not tied to the Earth."""
    return bool(_LOCAL.match(crs.to_wkt()))


def metric_problem(crs: CRS) -> str | None:
    """Why areas in this CRS would be wrong, or None when it is a metre-based projection
    (or a local engineering CRS in metres, which measures areas as well)."""
    if is_local(crs):
        return None if _LOCAL_METRE.search(crs.to_wkt()) else "a local CRS whose units are not metres"
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


def utm_for_bounds(crs: CRS, bounds, name: str = "The layer") -> CRS:
    """UTM zone (WGS 84) holding the centre of ``bounds`` given in ``crs``."""
    cx = (bounds[0] + bounds[2]) / 2.0
    cy = (bounds[1] + bounds[3]) / 2.0
    try:
        lon, lat = transform_points(crs, CRS.from_epsg(4326), [cx], [cy])
    except Exception as exc:  # GDAL's CPLE_* errors have no public base class
        raise InputError(f"{name} is in {describe(crs)}, which cannot be related to longitude and latitude "
                         f"({str(exc)[:120]}), so its areas cannot be measured in m². Assign its real CRS "
                         "(QGIS: Layer Properties > Source > Assigned CRS, or gdal_edit.py/ogr2ogr -a_srs).") from None
    if not (math.isfinite(lon[0]) and math.isfinite(lat[0]) and -180 <= lon[0] <= 180 and -90 <= lat[0] <= 90):
        raise InputError(f"{name} lies outside the area of use of {describe(crs)} (its centre is at "
                         f"{cx:.6g}, {cy:.6g}); check the layer's CRS and coordinates.")
    return utm_for_lonlat(lon[0], lat[0])


def describe(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else (crs.to_string()[:80] or "unknown CRS")
