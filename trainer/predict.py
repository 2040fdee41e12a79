"""Predictions for loose image files (no manifest, no labels), one status per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.manifest import DataError
from trainer.config import TrainConfig
from trainer.data import load_image, to_input
from trainer.model import model_from_checkpoint
from trainer.train import forward_tta, set_threads


def predict_images(checkpoint: str | Path, files: list[Path], batch_size: int = 64, tta: bool = True) -> list[dict]:
    """Age, gender and confidence per file; an unreadable file gets a status instead of a crash.

    `tta`: mean of the image and its mirror image, as `curate evaluate` does by default."""
    model, ckpt = model_from_checkpoint(checkpoint)
    cfg = TrainConfig(**ckpt.get("config", {}))
    set_threads(cfg)
    rows: list[dict] = []
    good: list[tuple[int, np.ndarray]] = []
    for f in files:
        try:
            good.append((len(rows), load_image(f, cfg.image_size)))
            rows.append({"path": str(f), "status": "ok"})
        except DataError as e:  # its message is "<path>: <reason>"
            rows.append(
                {
                    "path": str(f),
                    "status": f"unreadable image: {str(e).removeprefix(f'{f}: ')}",
                    "age_pred": np.nan,
                    "gender_pred": None,
                    "gender_prob": np.nan,
                    "confidence": np.nan,
                }
            )
    with torch.no_grad():
        for s in range(0, len(good), batch_size):
            chunk = good[s : s + batch_size]
            x = to_input(torch.from_numpy(np.stack([img for _, img in chunk])), cfg.channels_last)
            logits, age, _ = forward_tta(model, x, cfg, tta)
            prob = torch.softmax(logits.float(), 1)[:, 1].numpy()
            for (i, _), a, p in zip(chunk, age.float().numpy(), prob):
                rows[i].update(
                    age_pred=float(a),
                    gender_pred="female" if p >= 0.5 else "male",
                    gender_prob=float(p),
                    confidence=float(max(p, 1 - p)),
                )
    return rows


def predict_images_on_ray(
    checkpoint: str | Path, files: list[Path], batch_size: int = 64, tta: bool = True, address: str | None = None,
    shard: int = 1024,
) -> list[dict]:  # fmt: skip
    """`predict_images` over shards of `shard` files, each a Ray task (core.ray_cluster) that loads the model
    once; rows in file order, as the local path returns them. Checkpoint and images on shared paths."""
    from core.ray_cluster import map_unordered

    shard = max(batch_size, shard - shard % batch_size)  # whole batches: the local path's batches, shard by shard
    shards = [(i, files[i : i + shard]) for i in range(0, len(files), shard)]
    out: dict[int, list[dict]] = {}
    for i, rows in map_unordered(_predict_shard, shards, shared=(str(checkpoint), batch_size, tta), address=address):
        out[i] = rows
    return [row for i in sorted(out) for row in out[i]]


def _predict_shard(item: tuple[int, list[Path]], checkpoint: str, batch_size: int, tta: bool) -> tuple[int, list]:
    start, files = item
    return start, predict_images(checkpoint, files, batch_size=batch_size, tta=tta)
