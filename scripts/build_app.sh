#!/usr/bin/env bash
# Build the one-folder desktop app into dist/sr3-desktop (torch excluded), then print its size.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q 'pyinstaller>=6.6'
python -m PyInstaller --noconfirm --clean pyinstaller.spec
du -sh dist/sr3-desktop
