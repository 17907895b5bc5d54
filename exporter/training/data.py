"""LR/HR training pairs from any folder of photos.

Each image is decoded once into RAM (uint8 RGB, EXIF orientation applied). A batch is made of
random HR crops with flip + rot90 augmentation; LR = antialiased bicubic downsample and the
condition lr_up = bicubic upsample, both with ``sr3_desktop.core.imageio.resample`` so the app conditions
exactly as training did. Arrays leave here NCHW float32 in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from exporter.training import degrade
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio.formats import SUPPORTED_EXTENSIONS
from sr3_desktop.core.imageio.resample import downscale, upscale
from sr3_desktop.core.upscale import flow

IMAGE_SUFFIXES = SUPPORTED_EXTENSIONS
"""The suffixes the app's loader accepts: training finds images by the app's one rule."""
CREDIT_FILES = ("CREDITS.md", "CREDITS.txt", "CREDITS", "README.md", "README.txt")


class DataError(SR3Error):
    """The training folder has no usable images, or too few to hold some out."""


def find_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` by the app's rule (``core.upscale.flow.find_images``: recursive, the
    loader's suffixes, hidden files and folders left out), sorted for a deterministic order."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"training data folder not found: {root}")
    return flow.find_images(root)


def load_rgb(path: Path) -> np.ndarray:
    """Decode to an (H, W, 3) uint8 array, honouring EXIF orientation."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read training image {path}: {err}") from None


def split_images(paths: list[Path], val_images: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``val_images`` whole images, chosen by a fixed permutation of the sorted paths."""
    if val_images <= 0:
        return list(paths), []
    if len(paths) <= val_images:
        raise DataError(
            f"found {len(paths)} image(s) but {val_images} are held out for validation; add images "
            "or lower --val-images"
        )
    order = np.random.default_rng(12345).permutation(len(paths))
    val = sorted(paths[i] for i in order[:val_images])
    train = sorted(paths[i] for i in order[val_images:])
    return train, val


def to_model(image_01: np.ndarray) -> np.ndarray:
    """HWC [0, 1] -> CHW [-1, 1]."""
    return np.ascontiguousarray(image_01.transpose(2, 0, 1) * 2.0 - 1.0, dtype=np.float32)


def make_pair(
    hr_uint8: np.ndarray, scale: int, degradation: degrade.Degradation | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lr, lr_up, hr) as CHW float32 in [-1, 1] from an HR uint8 crop.

    Without ``degradation`` the LR is the clean protocol (antialiased bicubic, unquantised); with
    one it is what ``degrade.degrade`` makes (8-bit levels, maybe JPEG), and the target stays the HR.
    """
    hr = hr_uint8.astype(np.float32) / 255.0
    if degradation is None:
        lr = downscale(hr, scale)
    else:
        lr = degrade.degrade(hr, scale, degradation, rng or np.random.default_rng())
    lr_up = upscale(lr, scale)
    return to_model(lr), to_model(lr_up), to_model(hr)


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and rotation by a multiple of 90 degrees (the 8 dihedral views)."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.rot90(crop, int(rng.integers(4)))


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    top = int(rng.integers(h - size + 1))
    left = int(rng.integers(w - size + 1))
    return image[top : top + size, left : left + size]


@dataclass
class ImageSet:
    """Decoded images kept in RAM, and the folder's credits text when there is one."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    train_names: list[str]
    val_names: list[str]
    credits: str

    @classmethod
    def load(cls, folder: str | Path, crop: int, val_images: int) -> ImageSet:
        paths = find_images(folder)
        if not paths:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
        train_paths, val_paths = split_images(paths, val_images)
        train = [load_rgb(p) for p in train_paths]
        small = [p.name for p, im in zip(train_paths, train, strict=True) if min(im.shape[:2]) < crop]
        kept = [(p, im) for p, im in zip(train_paths, train, strict=True) if min(im.shape[:2]) >= crop]
        if not kept:
            raise DataError(f"every training image is smaller than the crop ({crop} px): {', '.join(small)}")
        val = [load_rgb(p) for p in val_paths]
        return cls(
            train=[im for _, im in kept],
            val=[im for im in val if min(im.shape[:2]) >= crop],
            train_names=[p.name for p, _ in kept],
            val_names=[p.name for p in val_paths],
            credits=_read_credits(Path(folder)),
        )


def _read_credits(folder: Path) -> str:
    for name in CREDIT_FILES:
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")[:4000]
    return ""


class CropStream(torch.utils.data.IterableDataset):
    """An endless stream of (lr_up, hr) batches; each worker / rank gets its own seed."""

    def __init__(
        self, images: list[np.ndarray], crop: int, scale: int, batch_size: int, seed: int,
        degradation: float = 0.0, jpeg_range: tuple[int, int] = (30, 95), second_order: float = 0.0,
    ) -> None:
        super().__init__()
        self.images = images
        self.crop = crop
        self.scale = scale
        self.batch_size = batch_size
        self.seed = seed
        self.degradation = degradation
        self.jpeg_range = jpeg_range
        self.second_order = second_order
        # Pick images in proportion to their area, so big photos are not under-sampled.
        areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        while True:
            yield self.batch(rng)

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        lr_ups, hrs = [], []
        for index in rng.choice(len(self.images), size=self.batch_size, p=self.weights):
            crop = augment(random_crop(self.images[index], self.crop, rng), rng)
            degraded = rng.random() < self.degradation
            chain = degrade.draw(rng, self.jpeg_range, self.second_order) if degraded else None
            _, lr_up, hr = make_pair(np.ascontiguousarray(crop), self.scale, chain, rng)
            lr_ups.append(lr_up)
            hrs.append(hr)
        return torch.from_numpy(np.stack(lr_ups)), torch.from_numpy(np.stack(hrs))


def validation_batch(images: list[np.ndarray], crop: int, scale: int, count: int) -> dict[str, torch.Tensor]:
    """Fixed crops (same every call) from the held-out images: lr, lr_up and hr tensors."""
    rng = np.random.default_rng(2024)
    lrs, lr_ups, hrs = [], [], []
    for i in range(count):
        image = images[i % len(images)]
        lr, lr_up, hr = make_pair(np.ascontiguousarray(random_crop(image, crop, rng)), scale)
        lrs.append(lr)
        lr_ups.append(lr_up)
        hrs.append(hr)
    return {k: torch.from_numpy(np.stack(v)) for k, v in (("lr", lrs), ("lr_up", lr_ups), ("hr", hrs))}


def loader(stream: CropStream, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate batches, in-process (workers=0) or from background worker processes."""
    if workers <= 0:
        return iter(stream)
    data = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, persistent_workers=True)
    return iter(data)
