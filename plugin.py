"""The QGIS plugin object: menu entry, toolbar button and the Landslide Mapper dock."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from .qgis_io.icon import ICON_FILE, PLUGIN_DIR, plugin_icon  # noqa: F401  (ICON_FILE, PLUGIN_DIR: re-exported)

PLUGIN_NAME = "Landslide Mapper"
MENU_NAME = "&Landslide Mapper"


class LandslideMapperPlugin:
    """Plugin instance created by :func:`landslide_mapper.classFactory`."""

    def __init__(self, iface, models_dir: Union[str, Path, None] = None):
        self.iface = iface
        self.models_dir = models_dir
        """Folder listed by the dock; None means the plugin's own ``models/`` folder."""
        self.action: Optional[QAction] = None
        self.diagnostics_action: Optional[QAction] = None
        self.dock = None
        self.controller = None
        self.chart_panel = None
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        """Register the Processing provider (``landslide_mapper:<algorithm>``).

        metadata.txt declares ``hasProcessingProvider=yes``, so qgis_process calls this
        without :meth:`initGui` (and without a main window); QGIS calls both.
        """
        if self.provider is not None:
            return
        from qgis.core import QgsApplication

        from .processing_provider.provider import LandslideMapperProvider

        provider = LandslideMapperProvider()
        # refused (and deleted by the registry) when another copy is registered already
        if QgsApplication.processingRegistry().addProvider(provider):
            self.provider = provider

    def initGui(self):  # noqa: N802 (QGIS API name)
        """Create the dock, the menu entry under Raster and the toolbar button."""
        from .ui.dock import LandslideMapperDock

        self.initProcessing()
        main_window = self.iface.mainWindow()

        # Shown when the plugin is enabled; afterwards QGIS remembers whether the user
        # keeps it open (the dock has a fixed objectName, so it is part of the saved state).
        self.dock = LandslideMapperDock(self.models_dir, main_window)
        self.dock.map_canvas = self.iface.mapCanvas()         # for mapping only the current map extent
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.controller = make_controller(self.dock, self.iface.messageBar(), self._chart_panel)
        self.dock.check_worker()     # in the background: the Worker tab says whether jobs can run

        self.action = QAction(plugin_icon(), PLUGIN_NAME, main_window)
        self.action.setObjectName("landslideMapperShowDock")
        self.action.setToolTip("Show or hide the Landslide Mapper panel")
        # Keeps the checked state of the action and the open state of the dock in step.
        self.dock.setToggleVisibilityAction(self.action)

        self.iface.addPluginToRasterMenu(MENU_NAME, self.action)
        self.iface.addToolBarIcon(self.action)
        # for bug reports: versions, worker Python, packages, providers, GPU -> clipboard
        self.diagnostics_action = QAction("Copy diagnostics report", main_window)
        self.diagnostics_action.setObjectName("landslideMapperDiagnostics")
        self.diagnostics_action.triggered.connect(lambda: self.dock.copy_diagnostics())
        self.iface.addPluginToRasterMenu(MENU_NAME, self.diagnostics_action)

    def _chart_panel(self):
        """The chart panel, created the first time a run has charts, docked below the map
        (charts need width more than height; the user may float or move it)."""
        if self.chart_panel is None:
            from .ui.chart_panel import ChartPanel

            self.chart_panel = ChartPanel(self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.chart_panel)
        return self.chart_panel

    def unload(self):
        """Remove everything initGui and initProcessing added; safe to call more than once."""
        if self.provider is not None:
            from qgis.core import QgsApplication

            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.controller is not None:
            self.controller.cancel_pending()
            self.controller = None
        if self.chart_panel is not None:
            self.iface.removeDockWidget(self.chart_panel)
            self.chart_panel.deleteLater()
            self.chart_panel = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU_NAME, self.action)
            self.iface.removeToolBarIcon(self.action)
        if self.diagnostics_action is not None:
            self.iface.removePluginRasterMenu(MENU_NAME, self.diagnostics_action)
            self.diagnostics_action.deleteLater()
            self.diagnostics_action = None
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.hide()
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.action.deleteLater()
            self.action = None


def make_controller(dock, message_bar, chart_panel, project=None):
    """Connect a dock to a new JobController: jobs out, queue state and training events back."""
    from .ui.controller import JobController

    controller = JobController(message_bar, dock.worker_python, project=project, chart_panel=chart_panel,
                               on_checkpoint=dock.on_checkpoint, on_train_event=dock.on_train_event,
                               parent=dock)
    dock.jobRequested.connect(controller.submit)
    dock.cancelQueuedRequested.connect(controller.cancel_pending)
    controller.queueChanged.connect(dock.set_queue_text)
    controller.runningChanged.connect(dock.set_running)
    controller.progressChanged.connect(dock.set_progress)
    dock.cancelRunningRequested.connect(controller.cancel_running)
    return controller
