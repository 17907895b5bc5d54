"""Errors a user can act on. The CLI and the app show ``str(err)`` and never a traceback."""


class SR3Error(Exception):
    """Base class of every error the app reports to a user as a plain message."""


class ImageLoadError(SR3Error):
    """An input is not a supported image, is truncated, or is too large."""


class ImageSaveError(SR3Error):
    """An output cannot be written (bad path, would overwrite an input, disk full, ...)."""


class ModelError(SR3Error):
    """A model file is unusable: unreadable, unsafe, or its graph disagrees with its card."""
