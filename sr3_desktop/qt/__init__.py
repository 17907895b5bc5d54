"""The Qt layer: views, a worker adapter and a controller over ``sr3_desktop.core``."""

from sr3_desktop.qt import compat as _compat  # noqa: F401  (repairs PySide6 6.12 reference leaks first)
