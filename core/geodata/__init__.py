"""Geodata in and out: rasters (a year's image as reflectance channels, in a target CRS),
vector layers, band mappings, CRS rules, areas of interest."""
