"""The plugin's icon and folder, for the plugin, the dock and the Processing provider alike."""
from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = Path(__file__).resolve().parent.parent
ICON_FILE = PLUGIN_DIR / "icons" / "icon.svg"


def plugin_icon() -> QIcon:
    """The plugin icon, read from its file (no compiled Qt resources: Qt6 has no pyrcc)."""
    return QIcon(str(ICON_FILE))
