"""The packaging rules pyproject.toml cannot state: the top-level ``resources/`` folder (bundled
models, icons, licence notices, desktop file; one copy in git) is installed as the package data
folder ``sr3_desktop/resources``, and the top-level LICENSE joins the notices there as
``licenses/SR3-Desktop.txt`` (the about dialog shows them all). Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

RESOURCES = {"sr3_desktop.resources": ["*.desktop"], "sr3_desktop.resources.icons": ["*.png", "*.svg"],
             "sr3_desktop.resources.licenses": ["*.txt"], "sr3_desktop.resources.models": ["*.onnx"]}
APP_LICENCE = Path("sr3_desktop", "resources", "licenses", "SR3-Desktop.txt")  # qt/about.py reads it


class BuildWithLicence(build_py):
    """build_py, plus the project's LICENSE copied beside the other notices."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / APP_LICENCE
        self.mkpath(str(target.parent))
        self.copy_file("LICENSE", str(target))


setup(
    packages=[*find_packages(include=["sr3_desktop", "sr3_desktop.*", "exporter", "exporter.*"]), *RESOURCES],
    package_dir={"sr3_desktop.resources": "resources"},  # its sub-folders follow
    package_data=RESOURCES,
    cmdclass={"build_py": BuildWithLicence},
)
