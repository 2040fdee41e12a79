"""One image decoder and one content hash for the whole project.

Why one: training, audits and `curate split` must agree on which files are usable (an image `split`
rejects is never trained on, a half-copied JPEG fails loudly instead of training as grey) and on the
content hash that joins audit rows, predictions and split manifests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def decode_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Decode (OpenCV BGR) or say why not: return (image, "") or (None, reason).

    Why not just cv2.imread: OpenCV silently pads a truncated JPEG with grey and returns None without
    a reason.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return None, f"unreadable file ({e.strerror})"
    if not data:
        return None, "empty file"
    is_jpeg = data[:2] == b"\xff\xd8"
    if not is_jpeg and data[:8] != b"\x89PNG\r\n\x1a\n" and data[:2] != b"BM" and data[8:12] != b"WEBP":
        return None, "not an image (no JPEG/PNG/BMP/WebP signature)"
    if is_jpeg and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return None, "truncated JPEG (no end-of-image marker)"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "corrupt image (decoder failed)"
    return img, ""


def pixel_hash(img: np.ndarray) -> str:
    """blake2b-128 of the array shape and decoded pixels (OpenCV BGR): equal for pixel-identical files
    whatever their names or encodings (the `content_hash` column everywhere)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(img.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.rstrip().lower().endswith(IMAGE_EXTS)
    )


def is_constant(img: np.ndarray) -> bool:
    """True when every pixel has the same value (BRISQUE and blur measures are undefined then)."""
    return bool(img.size) and int(img.max()) == int(img.min())
