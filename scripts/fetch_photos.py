"""Fetch more real photographs for training from the package registries, with a manifest of sources.

    python scripts/fetch_photos.py [--out data/photos-extra] [--manifest recipes/photo-manifest.tsv]

Sources (each downloaded by name with the ordinary client, then unpacked; nothing is installed):
- Debian's ``opencv-doc``: the real photographs among its example data and tutorial images, a curated
  list (figures, screenshots, annotated results, processed outputs, grey calibration boards and the
  upscaled ``bicubicOutput.jpg`` are left out), near-duplicates dropped;
- the sample photos inside the ``matplotlib`` and ``scikit-learn`` wheels.

Tried and left out: ``ukui-wallpapers`` (rendered graphics, not photographs). Never used, whatever the
list says: ``mate-backgrounds``, ``plasma-workspace-wallpapers`` and ``lomiri-wallpapers-20.04``, held out
for evaluation (the script refuses them).

Each photo is saved upright as RGB JPEG quality 95 (4:4:4), long side at most 2048 px. The manifest gives
name, source (package, version, path inside it), licence (from the package's copyright or licence file)
and the sha256 of the saved file; ``--check`` re-verifies the sha256s of an existing folder.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HELD_OUT_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-20.04")
OPENCV_DOC = "usr/share/doc/opencv-doc"
OPENCV_PHOTOS = (
    *(f"examples/data/{n}" for n in (
        "HappyFish.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
        "ela_original.jpg", "fruits.jpg", "home.jpg", "left.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
        "squirrel_cls.jpg", "aero1.jpg", "stuff.jpg", "pca_test1.jpg")),
    "examples/hfs/data/000.jpg", "examples/hfs/data/001.jpg", "examples/hfs/data/002.jpg",
    "examples/alphamat/input_images/plant.jpg",
    *(f"examples/text/scenetext0{i}.jpg" for i in (1, 3, 4, 5, 6)),
    *(f"opencv4/html/{n}" for n in (
        "230501201_1.jpg", "4_barcodes.jpg", "Background_Subtraction_Tutorial_frame.jpg",
        "Threshold_inRange_Tutorial_Result_input.jpeg", "affinepano.jpg", "astra_color.jpg",
        "feature_building.jpg", "fusion_mertens.jpg", "handSrc.jpg")),
)
WHEEL_PHOTOS = {
    "matplotlib": (("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
                   "a US Navy photograph (public domain), distributed with matplotlib's sample data"),
    "scikit-learn": (("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
                     "CC-BY-2.0 (sklearn/datasets/images/README.txt: china.jpg by danielbuechele, "
                     "flower.jpg by vultilion, via Flickr)"),
}
MAX_SIDE = 2048
MIN_SIDE = 240


@dataclass(frozen=True)
class Photo:
    name: str
    source: str
    licence: str
    sha256: str


def run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.strip()}")


def save_photo(image: Image.Image, out: Path, name: str) -> str | None:
    """Save ``image`` as an upright RGB JPEG q95; None when it is too small or grey (not a colour photo)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    if min(image.size) < MIN_SIDE:
        return None
    thumb = np.asarray(image.resize((64, 64)), dtype=np.float32)
    if float((thumb.max(2) - thumb.min(2)).mean()) < 8.0:
        return None
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, subsampling=0)
    (out / name).write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def signature(path: Path) -> np.ndarray:
    grey = np.asarray(Image.open(path).convert("L").resize((24, 24)), dtype=np.float64).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-9)


def drop_near_duplicates(out: Path, photos: list[Photo]) -> list[Photo]:
    """Keep the first of any two photos whose 24 px thumbnails correlate above 0.95 (the same scene)."""
    kept: list[tuple[Photo, np.ndarray]] = []
    for photo in photos:
        sig = signature(out / photo.name)
        if any(float(sig @ other) > 0.95 for _, other in kept):
            (out / photo.name).unlink()
            continue
        kept.append((photo, sig))
    return [photo for photo, _ in kept]


def debian_licence(copyright_text: str) -> str:
    """The licence of the ``Files: *`` stanza of a machine-readable Debian copyright file."""
    match = re.search(r"^Files: \*\n(?:[ \t].*\n|Copyright:.*\n)*License: (.+)$", copyright_text, re.M)
    return match.group(1).strip() if match else "see the package's copyright file"


def fetch_debian(package: str, work: Path, out: Path) -> list[Photo]:
    if package in HELD_OUT_PACKAGES:
        raise SystemExit(f"{package} is held out for evaluation and is never used for training")
    run(["apt-get", "download", package], work)
    deb = next(work.glob(f"{package}_*.deb"))
    version = deb.name.split("_")[1]
    root = work / package
    run(["dpkg-deb", "-x", str(deb), str(root)], work)
    licence = debian_licence((root / OPENCV_DOC / "copyright").read_text(encoding="utf-8"))
    photos = []
    for rel in OPENCV_PHOTOS:
        path = root / OPENCV_DOC / rel
        if not path.is_file():
            print(f"  missing in {package} {version}: {rel}", file=sys.stderr)
            continue
        name = f"opencv_{Path(rel).stem}.jpg"
        digest = save_photo(Image.open(path), out, name)
        if digest:
            photos.append(Photo(name, f"debian:{package}={version}:/{OPENCV_DOC}/{rel}", licence, digest))
    return photos


def fetch_wheel(package: str, work: Path, out: Path) -> list[Photo]:
    run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), package], work)
    wheel = next(p for p in work.glob("*.whl") if p.name.lower().startswith(package.replace("-", "_")))
    version = wheel.name.split("-")[1]
    members, licence = WHEEL_PHOTOS[package]
    photos = []
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            name = f"{package.split('-')[-1]}_{Path(member).stem}.jpg"
            digest = save_photo(Image.open(io.BytesIO(archive.read(member))), out, name)
            if digest:
                photos.append(Photo(name, f"pypi:{package}=={version}:{member}", licence, digest))
    return photos


def write_manifest(path: Path, photos: list[Photo]) -> None:
    lines = ["name\tsource\tlicence\tsha256", *(f"{p.name}\t{p.source}\t{p.licence}\t{p.sha256}" for p in photos)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(out: Path, manifest: Path) -> int:
    bad = 0
    for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
        name, _, _, digest = line.split("\t")
        path = out / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            print(f"mismatch: {name}")
            bad += 1
    print(f"{bad} mismatches")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/photos-extra"))
    parser.add_argument("--manifest", type=Path, default=Path("recipes/photo-manifest.tsv"))
    parser.add_argument("--check", action="store_true", help="verify the sha256s of --out against --manifest")
    args = parser.parse_args()
    if args.check:
        return check(args.out, args.manifest)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = fetch_debian("opencv-doc", work, args.out)
        for package in WHEEL_PHOTOS:
            photos += fetch_wheel(package, work, args.out)
    photos = drop_near_duplicates(args.out, photos)
    write_manifest(args.manifest, photos)
    print(f"{len(photos)} photos in {args.out}; manifest {args.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
