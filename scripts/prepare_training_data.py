"""Lay out the bundled models' training and validation photos (run once before training).

train/: 13 of the 15 photos in ../shared/datasets/photos-train, and every photo of the further --photos
        folders (scripts/fetch_photos.py: data/photos-extra, when present), at full size and at half size
        (Lanczos), so crops see both fine texture and larger structures.
val/:   the 2 held-out photos at full size (long side 2048 px: enough 256 px cells for disjoint report and
        search crops), plus the colour photos shipped in scikit-image.
train/CREDITS.md: recipes/photo-credits.txt, where the training photos come from, with their licences
        (``exporter train`` copies it into the card's ``training.credits``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HELD_OUT = ("bridge.jpg", "umang.jpg")
CREDITS = Path("recipes/photo-credits.txt")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")  # hubble: dark sky shows grain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, action="append",
                        help="a folder of .jpg photos; repeat for more [../shared/datasets/photos-train, "
                             "plus data/photos-extra when present]")
    parser.add_argument("--out", type=Path, default=Path("/work/runs/data"))
    args = parser.parse_args()
    train, val = args.out / "train", args.out / "val"
    train.mkdir(parents=True, exist_ok=True)
    val.mkdir(parents=True, exist_ok=True)
    folders = args.photos or [Path("../shared/datasets/photos-train"),
                              *([Path("data/photos-extra")] if Path("data/photos-extra").is_dir() else [])]
    for path in sorted(p for folder in folders for p in folder.glob("*.jpg")):
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
        if path.name in HELD_OUT:
            image.save(val / f"{path.stem}.png")
        else:
            image.save(train / f"{path.stem}.png")
            half.save(train / f"{path.stem}_half.png")
    import skimage.data as photos  # the exporter extra installs scikit-image

    for name in SKIMAGE_PHOTOS:
        Image.fromarray(np.asarray(getattr(photos, name)())).convert("RGB").save(val / f"skimage_{name}.png")
    left, _, _ = photos.stereo_motorcycle()
    Image.fromarray(left).save(val / "skimage_motorcycle.png")
    shutil.copyfile(CREDITS, train / "CREDITS.md")
    print(f"train: {len(list(train.glob('*.png')))} images, val: {len(list(val.glob('*.png')))} images")


if __name__ == "__main__":
    main()
