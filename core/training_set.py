"""Which images a model was trained on, so that its predictions can count as out-of-sample.

Why: label scores are only honest from predictions of a model that never saw the label it judges.
Cross-fitting gives that for any dataset, at the cost of training K models. A shipped model whose card
lists the content hashes of its training images gives it for free on images it never saw: its
predictions are out-of-sample for exactly the images whose content hash is not in that list. The card
(`<checkpoint stem>.json`, beside the checkpoint) keeps a `training_images` record: the training
manifest's hash (core.manifest.manifest_hash), the image count and a sorted file of the first 64 bits of
every training image's content hash (core.images.pixel_hash), with its sha256 so a swapped file is
refused. Pixel hashes match re-encoded or renamed copies of a training image too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_path
from core.errors import CurateError
from core.manifest import file_sha256, manifest_hash


class TrainingSetError(CurateError, ValueError):
    """A model card's training-image record is missing, unreadable or does not match its file."""


def hash_keys(content_hashes) -> np.ndarray:
    """The first 64 bits of each hex content hash as uint64 (collisions: ~1e-11 for 20k x 20k images)."""
    return np.array([int(str(h)[:16], 16) for h in content_hashes], dtype=np.uint64)


def write_record(manifest: pd.DataFrame, out: Path, split: str) -> dict:
    """Write the training images' sorted hash keys to `out` (.npy); return the card's record of them."""
    keys = np.unique(hash_keys(manifest["content_hash"]))
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.save(f, keys, allow_pickle=False)
    return {
        "split": split,
        "images": len(manifest),
        "distinct_images": len(keys),
        "manifest_hash": manifest_hash(manifest),
        "content_hashes": out.name,
        "content_hashes_sha256": file_sha256(out),
        "hash": "first 64 bits of core.images.pixel_hash (the content_hash column)",
    }


@dataclass(frozen=True)
class TrainingSet:
    """The training images of one checkpoint, as its card records them."""

    checkpoint: Path
    record: dict
    keys: np.ndarray  # sorted uint64

    def seen(self, content_hashes) -> np.ndarray:
        """True for each content hash the model was trained on (missing hashes count as seen)."""
        hashes = pd.Series(list(content_hashes), dtype=object)
        ok = hashes.notna().to_numpy() & hashes.astype(str).str.fullmatch(r"[0-9a-fA-F]{16,}").to_numpy()
        out = np.ones(len(hashes), bool)
        if ok.any():
            k = hash_keys(hashes[ok])
            pos = np.clip(np.searchsorted(self.keys, k), 0, max(len(self.keys) - 1, 0))
            out[ok] = self.keys[pos] == k if len(self.keys) else False
        return out

    def describe(self) -> str:
        r = self.record
        return f"{r.get('images', len(self.keys))} training images ({r.get('split')}, manifest {r['manifest_hash']})"


def card_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def load(checkpoint: Path) -> TrainingSet | None:
    """The checkpoint's training set from its card, None when it has no card or the card no record."""
    card = card_path(checkpoint)
    if not card.is_file():
        return None
    try:
        record = json.loads(card.read_text()).get("training_images")
    except (OSError, ValueError) as e:
        raise TrainingSetError(f"{card}: unreadable model card ({e})") from e
    if not record:
        return None
    path = card.parent / str(record.get("content_hashes", ""))
    if not path.is_file():
        raise TrainingSetError(f"{card}: its training-image hashes {path.name!r} are missing")
    if file_sha256(path) != record.get("content_hashes_sha256"):
        raise TrainingSetError(f"{path}: does not match the sha256 its card {card.name} records")
    keys = np.load(path, allow_pickle=False)
    if keys.dtype != np.uint64 or keys.ndim != 1 or (len(keys) > 1 and (np.diff(keys) <= 0).any()):
        raise TrainingSetError(f"{path}: not a sorted uint64 array of hash keys")
    return TrainingSet(Path(checkpoint), record, keys)
