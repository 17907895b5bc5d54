"""The one packaging rule pyproject.toml cannot state: the top-level ``resources/`` folder (bundled
models, icons, desktop file; one copy in git) is installed as the package data folder
``sr3_desktop/resources``. Everything else about the project is in pyproject.toml."""

from setuptools import find_packages, setup

RESOURCES = {"sr3_desktop.resources": ["*.desktop"], "sr3_desktop.resources.icons": ["*.png", "*.svg"],
             "sr3_desktop.resources.models": ["*.onnx"]}

setup(
    packages=[*find_packages(include=["sr3_desktop", "sr3_desktop.*", "exporter", "exporter.*"]), *RESOURCES],
    package_dir={"sr3_desktop.resources": "resources"},  # its sub-folders follow
    package_data=RESOURCES,
)
