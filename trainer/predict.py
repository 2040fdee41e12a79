"""Predictions for loose image files (no manifest, no labels), one status per image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from core.images import DECODE_PIXELS, decode_image, source_size
from trainer.config import TrainConfig
from trainer.data import to_input
from trainer.model import model_from_checkpoint
from trainer.train import forward_tta, set_threads

FACE_MODES = ("auto", "detect", "none")
NO_PREDICTION = {"age_pred": np.nan, "gender_pred": None, "gender_prob": np.nan, "confidence": np.nan}


# A re-aligned face with at least this share of its crop outside the source image (core.faces.crop_fill) goes
# to the tight-crop model. Fixed before measuring, not tuned on the test split: a fifth of the crop made up
# (a 0.8x crop: 0.30 median, 90% above 0.20; re-aligned standard crops, looser crops and photos: 98-100%
# below it; crops shifted 10% one way: 3-4% above; measured on 300 test images, 2026-12-06).
TIGHT_FILL_MIN = 0.2


AS_IT_IS = "aligned crop, used as it is"  # face_status of an image fed unchanged (faces="auto")
BOX_COLUMNS = ("face_x", "face_y", "face_w", "face_h")  # the used face's box in the file's pixels


def prepare_image(path: Path, faces: str = "auto") -> tuple[np.ndarray | None, dict]:
    """(BGR image the model is to see, or None; the row's status and face columns) for one file.

    `faces`: "none" feeds the image as it is (an aligned face crop); "detect" finds the largest face and
    aligns it to UTKFace's geometry (core.faces); "auto" does that too, but keeps an image that already
    is an aligned crop as it is (core.faces.is_aligned_crop: its face at UTKFace's place and size), so
    UTKFace-style crops get exactly the predictions they always had. `crop_fill`: the share of a
    re-aligned crop that lay outside the image (0 for an image used as it is). BOX_COLUMNS: where the face
    used is in the file, so that with several faces a user can tell which one the prediction is for."""
    from core.faces import detect_faces, find_face, is_aligned_crop

    img, reason = decode_image(Path(path))
    if img is None:
        return None, {"path": str(path), "status": f"unreadable image: {reason}", **NO_PREDICTION}
    row: dict = {"path": str(path), "status": "ok"}
    if faces == "none":
        return img, row
    found = detect_faces(img)
    h, w = img.shape[:2]
    if faces == "auto" and is_aligned_crop(found, w, h):
        row.update(face_status=AS_IT_IS, n_faces=1, face_score=found[0].score, crop_fill=0.0)
        return img, row | source_box(found[0].box, path, img)
    fc = find_face(img, faces=found)
    row.update(face_status=fc.status, n_faces=fc.n_faces, face_score=fc.score, crop_fill=fc.fill)
    if fc.crop is None:
        return None, {**row, "status": "no face found", **NO_PREDICTION}
    return fc.crop, row | source_box(fc.box, path, img)


def source_box(box: tuple[float, float, float, float], path: Path, img: np.ndarray) -> dict[str, int]:
    """BOX_COLUMNS for a face box found on the decoded image, in the file's own pixels.

    Why: `decode_image` reduces a photo above DECODE_PIXELS (a phone's 12 MP photo to about 4 MP), and a box
    in the reduced copy's pixels would point at the wrong place in the file a user opens. The scale is taken
    from the long sides, so a JPEG that its EXIF orientation turned scales right too."""
    h, w = img.shape[:2]
    scale = 1.0
    if h * w >= DECODE_PIXELS // 5:  # a reduced image keeps at least a quarter of DECODE_PIXELS
        size = source_size(Path(path))
        scale = max(size) / max(h, w) if size else 1.0
    return {c: round(v * scale) for c, v in zip(BOX_COLUMNS, box)}


def model_input(img: np.ndarray, size: int) -> np.ndarray:
    """A BGR image as the model's RGB size x size input."""
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def predict_images(
    checkpoint: str | Path, files: list[Path], batch_size: int = 64, tta: bool = True, faces: str = "auto",
    tight_checkpoint: str | Path | Sequence[str | Path] | None = None, keep_crops: bool = False,
    progress: bool = False,
) -> list[dict]:  # fmt: skip
    """Age, gender and confidence per file; an unreadable file or a photo without a face gets a status
    instead of a crash or a guess.

    `tta`: mean of the image and its mirror image, as `curate evaluate` does by default. `faces`: see
    `prepare_image` (ordinary photos are detected and aligned; the model only knows aligned crops).
    `tight_checkpoint`: a model, or several whose answers are averaged, for faces cut tighter than UTKFace's
    (crop_fill >= TIGHT_FILL_MIN): their chin, hair and ears are missing, which the main model never saw;
    `model` names the one(s) used.
    `keep_crops`: a re-aligned face's row also holds, as "crop", the aligned crop (BGR) the model saw, so
    that its quality can be judged on what was used rather than on the whole photo (200x200, 120 KB each).
    A model's batch runs as soon as it is full (the same batches as collecting them all first, so the same
    numbers), so model inputs never pile up and `progress` can count images as they are answered."""
    from tqdm import tqdm

    paths = {"main": [checkpoint], "tight": tight_paths(tight_checkpoint)}
    models = {"main": [_load(checkpoint)]}  # the tight-crop models only once a face needs them
    rows: list[dict] = []
    todo: dict[str, list[tuple[int, list[np.ndarray]]]] = {"main": [], "tight": []}
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress, mininterval=0.5)
    for f in files:
        img, row = prepare_image(f, faces)
        if keep_crops and img is not None and row.get("face_status", AS_IT_IS) != AS_IT_IS:
            row["crop"] = img
        rows.append(row)
        if img is not None:
            tight = bool(paths["tight"]) and row.get("crop_fill", 0.0) >= TIGHT_FILL_MIN
            which = "tight" if tight else "main"
            if which not in models:
                models[which] = [_load(c) for c in paths[which]]
            row["model"] = "+".join(Path(c).name for c in paths[which])
            todo[which].append((len(rows) - 1, [model_input(img, cfg.image_size) for _, cfg in models[which]]))
            if len(todo[which]) == batch_size:
                _answer(rows, todo[which], models[which], tta)
        bar.update()
    for which, left in todo.items():
        if left:
            _answer(rows, left, models[which], tta)
    bar.close()
    return rows


def tight_paths(tight: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    """The tight-crop checkpoints as a list (none, one, or several to average)."""
    if tight is None:
        return []
    return [tight] if isinstance(tight, (str, Path)) else list(tight)


def _answer(rows: list[dict], batch: list[tuple[int, list[np.ndarray]]], models: list, tta: bool) -> None:
    """Fill in the rows of one batch of (row index, each model's input): the models' mean answer; empty it."""
    answers = [_forward(m, cfg, [ims[k] for _, ims in batch], tta) for k, (m, cfg) in enumerate(models)]
    age = np.mean([a for a, _ in answers], axis=0)
    prob = np.mean([p for _, p in answers], axis=0)
    for (i, _), a, p in zip(batch, age, prob):
        rows[i].update({"age_pred": float(a), "gender_pred": "female" if p >= 0.5 else "male",
                        "gender_prob": float(p), "confidence": float(max(p, 1 - p))})  # fmt: skip
    batch.clear()


def _load(checkpoint: str | Path):
    model, ckpt = model_from_checkpoint(checkpoint)
    cfg = TrainConfig(**ckpt.get("config", {}))
    set_threads(cfg)
    return model, cfg


def _forward(model, cfg: TrainConfig, images: list[np.ndarray], tta: bool) -> tuple[np.ndarray, np.ndarray]:
    """(age, P(female)) for a batch of model inputs (RGB, the model's size)."""
    x = to_input(torch.from_numpy(np.stack(images)), cfg.channels_last)
    with torch.no_grad():
        logits, age, _ = forward_tta(model, x, cfg, tta)
    return age.float().numpy().reshape(-1), torch.softmax(logits.float(), 1)[:, 1].numpy()


def predict_images_on_ray(
    checkpoint: str | Path, files: list[Path], batch_size: int = 64, tta: bool = True, address: str | None = None,
    shard: int = 1024, faces: str = "auto", tight_checkpoint: str | Path | Sequence[str | Path] | None = None,
    keep_crops: bool = False,
) -> list[dict]:  # fmt: skip
    """`predict_images` over shards of `shard` files, each a Ray task (core.ray_cluster) that loads the model
    once; rows in file order, as the local path returns them. Checkpoint and images on shared paths."""
    from core.ray_cluster import map_unordered

    shard = max(batch_size, shard - shard % batch_size)  # whole batches: the local path's batches, shard by shard
    shards = [(i, files[i : i + shard]) for i in range(0, len(files), shard)]
    out: dict[int, list[dict]] = {}
    tight = [str(c) for c in tight_paths(tight_checkpoint)] or None
    shared = (str(checkpoint), batch_size, tta, faces, tight, keep_crops)
    for i, rows in map_unordered(_predict_shard, shards, shared=shared, address=address):
        out[i] = rows
    return [row for i in sorted(out) for row in out[i]]


def _predict_shard(
    item: tuple[int, list[Path]], checkpoint: str, batch_size: int, tta: bool, faces: str, tight: list[str] | None,
    keep_crops: bool,
) -> tuple[int, list]:  # fmt: skip
    start, files = item
    kw = {"batch_size": batch_size, "tta": tta, "faces": faces, "tight_checkpoint": tight, "keep_crops": keep_crops}
    return start, predict_images(checkpoint, files, **kw)
