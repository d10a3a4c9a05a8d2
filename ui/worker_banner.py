"""The one place where the dock says that the worker Python is not ready, and fixes it.

A first run has no worker: the banner above the tabs says so once, offers one button that
creates the worker environment (with the size of the download), shows its progress with a
Cancel button, and on failure the reason with a button for the whole log. The dock hides
it once a check of the worker succeeds. It only shows state; the dock owns the task.
"""
from __future__ import annotations

from typing import Callable, Optional

from qgis.PyQt.QtWidgets import (QFrame, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton,
                                 QVBoxLayout, QWidget)


class WorkerBanner(QFrame):
    """Message, *Set up the worker* button, progress bar with Cancel, and *Show log*."""

    def __init__(self, on_setup: Callable[[], None], on_cancel: Callable[[], None],
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setObjectName("workerBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#workerBanner { background: #fff4e5; border: 1px solid #f0b35a; }")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.setup_button = QPushButton(self.tr("Set up the worker"))
        self.setup_button.setObjectName("workerSetupButton")
        self.setup_button.clicked.connect(on_setup)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.setObjectName("workerSetupCancelButton")
        self.cancel_button.clicked.connect(on_cancel)
        self.log_button = QPushButton(self.tr("Show log"))
        self.log_button.setObjectName("workerSetupLogButton")
        self.log_button.clicked.connect(self._show_log)
        self._log = ""
        row = QHBoxLayout()
        for widget in (self.setup_button, self.progress, self.cancel_button, self.log_button):
            row.addWidget(widget, 1 if widget is self.progress else 0)     # the bar takes the width
        row.addStretch(0)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.setVisible(False)

    def _buttons(self, setup: bool, running: bool, log: bool) -> None:
        self.setup_button.setVisible(setup)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.log_button.setVisible(log)

    def show_needed(self, reason: str, download: str) -> None:
        """No usable worker: why, and the button (labelled with the download size)."""
        self.message.setText(self.tr("Landslide Mapper runs its models in a separate worker Python, which is "
                                     "not ready: {}").format(reason))
        self.setup_button.setText(self.tr("Set up the worker ({})").format(download))
        self._buttons(setup=True, running=False, log=bool(self._log))
        self.setVisible(True)

    def show_running(self, folder: str) -> None:
        self.message.setText(self.tr("Setting up the worker in {} (downloads the packages from PyPI; a few "
                                     "minutes)…").format(folder))
        self.progress.setValue(0)
        self._buttons(setup=False, running=True, log=False)
        self.setVisible(True)

    def set_progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def show_failed(self, reason: str, log: str) -> None:
        """The set-up failed or was cancelled: the reason, the button again, the log."""
        self._log = log
        self.message.setText(reason)
        self._buttons(setup=True, running=False, log=bool(log))
        self.setVisible(True)

    def _show_log(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, self.tr("Worker set-up"), self.message.text(),
                          QMessageBox.StandardButton.Close, self)
        box.setDetailedText(self._log)
        box.exec()
