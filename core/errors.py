"""Exceptions whose messages are written for the user.

Every message names the file or layer concerned and what is wrong with it, so the CLI,
the QGIS task and the Processing algorithms can show it as it is.
"""


class LandslideMapperError(Exception):
    """Base class: the message is meant to be shown to the user unchanged."""


class InputError(LandslideMapperError):
    """A raster, vector or parameter given by the user cannot be used."""


class ModelError(LandslideMapperError):
    """A model or checkpoint file is missing, corrupt or incompatible with the input."""


class OutputError(LandslideMapperError):
    """An output location cannot be written."""


class Cancelled(LandslideMapperError):
    """The user cancelled the job; nothing partial was left behind."""

    def __init__(self, message: str = "Cancelled by the user; no partial outputs were kept."):
        super().__init__(message)
