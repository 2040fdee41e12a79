"""Manifests in, augmented batches out, with every image decoded exactly once.

Decoding JPEGs costs more CPU than a MobileNetV3-Small step at 128-160 px, so the first epoch decodes
each image into a memory-mapped uint8 cache (N x S x S x 3) keyed by the manifest's content hashes;
later epochs, evaluation and re-runs read pixels straight from the cache and augment whole batches as
tensors. No DataLoader workers: on 2 cores they only steal threads from the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.atomic import write_text
from core.images import decode_image
from core.manifest import DataError, default_cache_dir

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def load_image(path: str | Path, size: int) -> np.ndarray:
    """RGB uint8 (size x size x 3); raises DataError naming the file if it cannot be decoded."""
    img, reason = decode_image(Path(path))
    if img is None:
        raise DataError(f"{path}: {reason}")
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decoded_cache(df: pd.DataFrame, size: int, cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """Memory-mapped uint8 pixels for every row of `df`, decoding only what is not cached yet."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(("\n".join(df["content_hash"].astype(str)) + f"|{size}").encode()).hexdigest()[:20]
    arr_path, done_path = cache_dir / f"{key}_{size}.u8", cache_dir / f"{key}_{size}.json"
    shape = (len(df), size, size, 3)
    if done_path.exists() and arr_path.exists():
        return np.memmap(arr_path, dtype=np.uint8, mode="r", shape=shape)
    tmp = arr_path.with_name(arr_path.name + f".{os.getpid()}.tmp")
    arr = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
    try:
        for i, p in enumerate(
            tqdm(df["path"], desc=f"decode {size}px", unit="img", disable=not progress, mininterval=1.0)
        ):
            arr[i] = load_image(p, size)
        arr.flush()
    except BaseException:
        tmp.unlink(missing_ok=True)  # up to GBs: a failed decode must not leave it behind
        raise
    finally:
        del arr
    os.replace(tmp, arr_path)
    write_text(done_path, json.dumps({"n": len(df), "size": size}))
    return np.memmap(arr_path, dtype=np.uint8, mode="r", shape=shape)


SCALE_HWC, SHIFT_HWC = 1 / STD.view(3), -(MEAN / STD).view(3)


def to_input(batch_u8: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> normalised float (B, 3, H, W), channels_last memory if asked.

    Normalising in the pixels' own (B, H, W, 3) layout and then permuting the view gives a
    channels_last tensor for free; the old permute-then-normalise path cost 0.3 s per 256 images at
    200 px on 2 cores (a tenth of a training step).
    """
    b, h, w, c = batch_u8.shape
    # in place, and with the per-channel constants tiled along a whole row: broadcasting a length-3
    # innermost axis does not vectorise (3x slower)
    x = batch_u8.float().view(b, h, w * c).mul_(SCALE_HWC.repeat(w)).add_(SHIFT_HWC.repeat(w))
    x = x.view(b, h, w, c).permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index into a length-n axis as F.pad(mode="reflect") would (edge not repeated)."""
    i = torch.where(i < 0, -i, i)
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def basic_augment(x: torch.Tensor, gen: torch.Generator, pad: int = 8) -> torch.Tensor:
    """Random horizontal flip, then a random crop after reflect-padding by `pad`, per sample.

    Works on a (B, H, W, C) batch of any dtype (the uint8 pixels, before normalisation) as one gather:
    flip, padding and crop are only index arithmetic, so no padded copy is ever made. Draws the same
    random numbers in the same order as flip -> F.pad(reflect) -> crop on a float batch, and gives the
    same pixels (tests check it).
    """
    b, h, w = x.shape[:3]
    flip = torch.rand(b, generator=gen) < 0.5
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    rows = _reflect(offs[:, :1] - pad + torch.arange(h), h)  # (B, H)
    cols = _reflect(offs[:, 1:] - pad + torch.arange(w), w)  # (B, W), in the flipped image's frame
    cols = torch.where(flip.view(b, 1), w - 1 - cols, cols)
    return x[torch.arange(b).view(b, 1, 1), rows.view(b, h, 1), cols.view(b, 1, w)]


def dynamic_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Stronger per-sample augmentation on a normalised float batch that `basic_augment` already
    flipped and cropped: small rotation/scale and colour jitter."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) - 0.5) * 2 * (15 * np.pi / 180)
    scale = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6  # in normalised units
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean + brightness


@dataclass(frozen=True)
class CropAugment:
    """Random crop geometry, so the model survives crops other than UTKFace's tight aligned one.

    With probability `p` a sample is resampled from a square of side s x the image (s log-uniform in
    [scale_min, scale_max]: above 1 the face is smaller, with looser margins, as most datasets crop),
    its centre shifted by up to `shift` of the side in x and y and turned by up to `rotation` degrees:
    what a face detector's residual misalignment and other datasets' margins look like. Outside the
    image the edge pixels are repeated (grid_sample's border mode): mirroring would put half faces there.

    Independently, with probability `tight_p` a sample loses its outer border: only a centred square
    of side t x the image (t uniform in [tight_min, tight_max]) is kept and its edge pixels are repeated
    outside it. That is what `curate predict` feeds the model for a crop tighter than UTKFace's once
    the face is re-aligned (a 0.8x crop has no chin, hair or ears to put back), which the geometric
    resampling alone never shows it.
    """

    p: float = 0.0
    scale_min: float = 0.8
    scale_max: float = 1.6
    shift: float = 0.1
    rotation: float = 15.0
    tight_p: float = 0.0
    tight_min: float = 0.75
    tight_max: float = 1.0

    def theta(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 2, 3) affine matrices (output -> input, normalised coordinates) for n samples."""
        u = torch.rand(n, 4, generator=gen)
        lo, hi = np.log(self.scale_min), np.log(self.scale_max)
        s = torch.exp(lo + (hi - lo) * u[:, 0])
        a = (u[:, 1] - 0.5) * 2 * np.deg2rad(self.rotation)
        dx, dy = (u[:, 2] - 0.5) * 4 * self.shift, (u[:, 3] - 0.5) * 4 * self.shift  # +-shift of the side
        cos, sin = s * torch.cos(a), s * torch.sin(a)
        return torch.stack([torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Applied to a normalised float (B, 3, H, W) batch; the other samples are left as they are."""
        moved = torch.rand(x.shape[0], generator=gen) < self.p
        if self.tight_p <= 0:  # draws exactly what the geometric augmentation alone always drew
            chosen, tight = torch.nonzero(moved).flatten(), None
        else:
            cut = torch.rand(x.shape[0], generator=gen) < self.tight_p
            chosen = torch.nonzero(moved | cut).flatten()
            side = self.tight_min + (self.tight_max - self.tight_min) * torch.rand(x.shape[0], generator=gen)
            tight = torch.where(cut, side, torch.ones_like(side))[chosen]
        if not len(chosen):
            return x
        sub = x[chosen]
        theta = torch.eye(2, 3).repeat(len(chosen), 1, 1)
        is_moved = moved[chosen]
        if is_moved.any():
            theta[is_moved] = self.theta(int(is_moved.sum()), gen)
        grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
        if tight is not None:
            grid = _clamp(grid, tight)
        out = x.clone()
        out[chosen] = F.grid_sample(sub, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out


def _clamp(grid: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Input coordinates outside each sample's centred square (side x the image) moved to its edge."""
    lim = side.view(-1, 1, 1, 1).to(grid.dtype)
    return torch.maximum(torch.minimum(grid, lim), -lim)


def keep_centre(x: torch.Tensor, side: float) -> torch.Tensor:
    """A (B, 3, H, W) batch with only its centred square of `side` x the image kept (edges repeated):
    CropAugment's tight crop at a fixed side, for checking it against a real re-aligned tight crop."""
    grid = F.affine_grid(torch.eye(2, 3).repeat(len(x), 1, 1), list(x.shape), align_corners=False)
    grid = _clamp(grid, torch.full((len(x),), float(side)))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Batches:
    """Shuffled (or ordered) batches of (inputs, age, gender, row index) from a decoded cache."""

    def __init__(
        self,
        pixels: np.ndarray,
        ages: np.ndarray,
        genders: np.ndarray,
        batch_size: int,
        channels_last: bool = True,
        label_weights: np.ndarray | None = None,
    ):
        self.pixels, self.batch_size, self.channels_last = pixels, batch_size, channels_last
        self.ages = torch.tensor(np.asarray(ages, dtype=np.float32))
        self.genders = torch.tensor(np.asarray(genders, dtype=np.int64))
        # (N, 2) weights of the gender and age labels in the loss (core.manifest.label_weights); None = all 1
        self.label_weights = None if label_weights is None else torch.tensor(np.asarray(label_weights, np.float32))

    def weights_at(self, idx: np.ndarray) -> torch.Tensor | None:
        """The (B, 2) label weights of a batch's rows (its `idx`), or None when every label counts fully."""
        return None if self.label_weights is None else self.label_weights[idx]

    def __len__(self) -> int:
        return (len(self.ages) + self.batch_size - 1) // self.batch_size

    def iterate(
        self,
        order: np.ndarray | None = None,
        augment: str = "none",
        gen: torch.Generator | None = None,
        crop: CropAugment | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]]:
        order = np.arange(len(self.ages)) if order is None else order
        for s in range(0, len(order), self.batch_size):
            idx = np.sort(order[s : s + self.batch_size])  # sorted reads are kinder to the memmap
            u8 = torch.from_numpy(np.ascontiguousarray(self.pixels[idx]))
            if augment in ("basic", "dynamic"):
                u8 = basic_augment(u8, gen)
            x = to_input(u8, self.channels_last)
            resampled = augment == "dynamic" or (crop is not None and crop.p > 0)
            if augment == "dynamic":
                x = dynamic_augment(x, gen)
            if crop is not None and crop.p > 0:
                x = crop(x, gen)
            if resampled and self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.ages[idx], self.genders[idx], idx
