"""Deterministic procedural multi-year satellite scenes with known landslide truth.

The scenes stand in for yearly PlanetScope (3 m, B/G/R/NIR) or RapidEye (5 m,
B/G/R/RE/NIR) surface-reflectance mosaics over steep forested terrain, so the whole
pipeline (mapping, change detection, metrics, benchmarks) can be exercised without
downloading anything, and every number it reports can be checked against a truth
whose statistics (counts, power-law exponent of the areas) are known by construction.

Design choices that matter to users of the data:

* Every random quantity is a pure function of ``spec.seed`` and of global pixel or
  lattice coordinates (hash-based noise), so a pixel's value never depends on which
  block it was computed in, and memory stays bounded at any raster size.
* Landslides are vectors first.  The raster scars are burned from exactly the
  polygons written to ``truth.gpkg`` (pixel-centre rule), so raster and truth agree.
* Visibility rule: a scar part triggered in year ``e`` has recovery fraction
  ``r = 1 - exp(-k (t - e))`` in year ``t`` (``k`` per landslide); its reflectance is
  ``(1 - r) * bare + r * vegetation``.  It is *visible* (part of the truth) while
  ``r < 0.5``; after that it still shows as a fading scar but is no longer truth.
* Truth polygons are clipped to the year's valid footprint (nodata pixels are 0 in
  all bands).  Clouds and cloud shadows are *not* removed from the truth: they are a
  real occluder that a mapper has to cope with.
* ``new_<year>`` holds what is new relative to the previous year of the series:
  a whole polygon (``change="new"``) or ``union(P_T) - union(P_prev)``
  (``change="enlarged"``).  It is computed before footprint clipping, then clipped.
* History: five years before the first year get a background rate of landslides
  (so the first year shows a few old, partly healed scars), the event year a burst
  of ``landslide_density`` per km², every other year the background rate again, and
  each visible landslide may grow by a lobe at its crown or toe.  New landslides are
  whole, inside the scene and off rivers and roads, and their areas (not those of
  enlargement lobes) follow the truncated power law, so its exponent is known.
* Terrain, land cover and noise live on pixel lattices, so a 5 m scene with the same
  seed is a 5/3 enlargement of the 3 m one, not the same ground at a new resolution.
"""
from __future__ import annotations

from .generate import cloud_cover_polygons, generate_scene, load_or_generate
from .plan import ScenePlan, elevation_at, plan_scene, slope_at
from .render import render_block
from .shapes import fit_powerlaw_alpha, sample_landslide_areas
from .spec import (
                   DEFAULT_BLOCK,
                   GENERATOR_VERSION,
                   RENDER_RECOVERY,
                   SCENE_JSON,
                   TRUTH_NAME,
                   VISIBLE_RECOVERY,
                   SceneManifest,
                   SceneSpec,
)

__all__ = ["SceneSpec", "SceneManifest", "ScenePlan", "generate_scene", "load_or_generate", "cloud_cover_polygons",
           "plan_scene", "render_block", "sample_landslide_areas", "fit_powerlaw_alpha", "elevation_at", "slope_at",
           "DEFAULT_BLOCK", "GENERATOR_VERSION", "RENDER_RECOVERY", "SCENE_JSON", "TRUTH_NAME", "VISIBLE_RECOVERY"]
