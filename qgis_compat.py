"""QGIS enum values that moved between QGIS 3.22 and QGIS 4, resolved once.

QGIS 3.30–3.38 moved many class enums into ``Qgis`` and renamed their members (e.g.
``QgsProcessing.TypeVectorPolygon`` became ``Qgis.ProcessingSourceType.VectorPolygon``); the
old names live on in 3.x as aliases, and QGIS 4 (Qt6) is built from the new ones. Each value
here is taken from the new place where it exists and from the 3.22 place otherwise, so the
plugin uses one spelling on every release. Enums that did not move are written scoped in
place (``QgsTask.Flag.CanCancel``); tests/core/test_qt6_ready.py checks both rules.
"""
from __future__ import annotations

import qgis.core as _core
import qgis.gui as _gui
from qgis.core import Qgis
from qgis.PyQt.QtCore import QMetaType, QVariant


def _pick(new: str, old: str):
    """The value at dotted path ``new`` (from ``Qgis``) if this QGIS has it, else ``old``."""
    for path in (new, old):
        head, *rest = path.split(".")
        value = getattr(_core, head, None) or getattr(_gui, head, None)
        try:
            for part in rest:
                value = getattr(value, part)
        except AttributeError:
            continue
        if value is not None:
            return value
    raise AttributeError(f"neither {new} nor {old} exists in this QGIS")


SOURCE_VECTOR = _pick("Qgis.ProcessingSourceType.Vector", "QgsProcessing.SourceType.TypeVector")
SOURCE_POLYGON = _pick("Qgis.ProcessingSourceType.VectorPolygon", "QgsProcessing.SourceType.TypeVectorPolygon")
SOURCE_RASTER = _pick("Qgis.ProcessingSourceType.Raster", "QgsProcessing.SourceType.TypeRaster")
NUMBER_INTEGER = _pick("Qgis.ProcessingNumberParameterType.Integer", "QgsProcessingParameterNumber.Type.Integer")
NUMBER_DOUBLE = _pick("Qgis.ProcessingNumberParameterType.Double", "QgsProcessingParameterNumber.Type.Double")
FILE_BEHAVIOUR_FILE = _pick("Qgis.ProcessingFileParameterBehavior.File", "QgsProcessingParameterFile.Behavior.File")
PARAMETER_ADVANCED = _pick("Qgis.ProcessingParameterFlag.Advanced",
                           "QgsProcessingParameterDefinition.Flag.FlagAdvanced")
LAYER_FILTER_POLYGON = _pick("Qgis.LayerFilter.PolygonLayer", "QgsMapLayerProxyModel.Filter.PolygonLayer")
LAYER_FILTER_RASTER = _pick("Qgis.LayerFilter.RasterLayer", "QgsMapLayerProxyModel.Filter.RasterLayer")
GEOMETRY_POLYGON = _pick("Qgis.GeometryType.Polygon", "QgsWkbTypes.GeometryType.PolygonGeometry")
WKB_NO_GEOMETRY = _pick("Qgis.WkbType.NoGeometry", "QgsWkbTypes.Type.NoGeometry")
SHADER_LINEAR = _pick("Qgis.ShaderInterpolationMethod.Linear", "QgsColorRampShader.Type.Interpolated")

# Field types: QGIS 3.38 types fields with QMetaType and deprecates the QVariant types that
# 3.22 needs; Qt6 has no QVariant.Type at all.
if Qgis.QGIS_VERSION_INT >= 33800:
    FIELD_TYPES = {"bool": QMetaType.Type.Bool, "int": QMetaType.Type.LongLong,
                   "float": QMetaType.Type.Double, "str": QMetaType.Type.QString}
else:
    FIELD_TYPES = {"bool": QVariant.Type.Bool, "int": QVariant.Type.LongLong,
                   "float": QVariant.Type.Double, "str": QVariant.Type.String}
