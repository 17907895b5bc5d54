"""Lay out the bundled models' training and validation photos (run once before training).

train/: 13 of the 15 photos in ../shared/datasets/photos-train, and every photo of the further --photos
        folders (scripts/fetch_photos.py: data/photos-extra, when present), at full size and at half size
        (Lanczos), so crops see both fine texture and larger structures.
val/:   the 2 held-out photos at full size (long side 2048 px: enough 256 px cells for disjoint report and
        search crops), plus the colour photos shipped in scikit-image.
train/CREDITS.md: where the training photos come from, with their licences (``exporter train`` copies it
        into the card's ``training.credits``): the shared set's credits table and the fetched photos'
        sources and licences, counted from recipes/photo-manifest.tsv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HELD_OUT = ("bridge.jpg", "umang.jpg")
MANIFEST = Path("recipes/photo-manifest.tsv")
SHARED_README = Path("../shared/datasets/README.md")
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
    (train / "CREDITS.md").write_text(credits(folders), encoding="utf-8")
    print(f"train: {len(list(train.glob('*.png')))} images, val: {len(list(val.glob('*.png')))} images")


def credits(folders: list[Path]) -> str:
    """The training photos' credits: the shared set's table (held-out photos named) and, for the fetched
    photos in use, their count per source package and licence from the manifest."""
    lines = [f"Training photos: {', '.join(str(f) for f in folders)} (held out for validation: "
             f"{', '.join(HELD_OUT)})."]
    if SHARED_README.is_file():
        text = SHARED_README.read_text(encoding="utf-8")
        lines += ["", "lomiri-wallpapers-16.04 (Debian), from ../shared/datasets/README.md:",
                  *[line for line in text.splitlines() if line.startswith("| ") and "---" not in line]]
    used = {p.name for folder in folders for p in folder.glob("*.jpg")}
    counts: dict[tuple[str, str], int] = {}
    if MANIFEST.is_file():
        for row in MANIFEST.read_text(encoding="utf-8").splitlines()[1:]:
            name, source, licence, _ = row.split("\t")
            if name in used:
                package = ":".join(source.split(":")[:2])
                counts[package, licence] = counts.get((package, licence), 0) + 1
    if counts:
        lines += ["", f"Fetched by scripts/fetch_photos.py (each file's source and sha256: {MANIFEST}):"]
        lines += [f"- {n} from {package}: {licence}" for (package, licence), n in sorted(counts.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
