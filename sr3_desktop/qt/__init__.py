"""The Qt layer: views, a worker adapter and a controller over ``sr3_desktop.core``."""
