"""Datasets that are not UTKFace-named, built by the tests from the sample's real faces.

`labels_dataset`: a labels.csv over images in subfolders with repeated base names (a/001.jpg, b/001.jpg),
an `id` column (two images per person) and one bad row of each kind. `photo_dataset`: the faces pasted
into larger synthetic photos (480x360, scale 0.8-1.8, a small rotation), a few with two faces, one with
none, for `curate split --align`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "dataset" / "sample"
# What the bad rows of `labels_dataset` must be rejected for (filename -> words of the reason).
BAD_ROWS = {
    "c/missing.jpg": "missing file",
    "a/neg_age.jpg": "age -1 outside 0-120",
    "b/x_gender.jpg": "gender 'x'",
    "a/word_age.jpg": "age 'old' is not a number",
    "b/race9.jpg": "race '9' outside",
    "c/text.jpg": "not an image",
}
DUPLICATE = "a/001.jpg"  # listed twice: the second row is rejected as a duplicate


def sample_faces(n: int, offset: int = 0) -> list[Path]:
    """`n` sample images with well-formed names, every third one from `offset` (sorted by age: the
    same ones every run, spread over the ages)."""
    faces = sorted(p for p in SAMPLE.glob("*.jpg") if p.name[0].isdigit() and p.name.count("_") == 3)
    return faces[offset::3][:n]


def _labels_of(p: Path) -> dict:
    age, gender, race = p.name.split("_")[:3]
    return {"age": int(age), "gender": ("male", "female")[int(gender)], "race": int(race)}


def labels_dataset(root: Path, n_people: int = 20) -> Path:
    """root/labels.csv plus images: person k's two photos are a/NNN.jpg and b/NNN.jpg (so every base name
    appears twice), then one bad row of each kind and a duplicate row; returns the table."""
    rows = []
    faces = sample_faces(2 * n_people + 2)
    for k in range(n_people):
        for sub, src in (("a", faces[2 * k]), ("b", faces[2 * k + 1])):
            dst = root / sub / f"{k + 1:03d}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
            rows.append({"path": f"{sub}/{dst.name}", **_labels_of(src), "id": f"person{k + 1}"})
    spare = faces[-1].read_bytes()
    for name in ("a/neg_age.jpg", "b/x_gender.jpg", "a/word_age.jpg", "b/race9.jpg"):
        (root / name).write_bytes(spare)
    (root / "c").mkdir()
    (root / "c" / "text.jpg").write_text("not a photo\n")
    bad = [
        {"path": "c/missing.jpg", "age": 30, "gender": "f", "race": 0, "id": "person90"},
        {"path": "a/neg_age.jpg", "age": -1, "gender": "M", "race": 0, "id": "person91"},
        {"path": "b/x_gender.jpg", "age": 30, "gender": "x", "race": 0, "id": "person92"},
        {"path": "a/word_age.jpg", "age": "old", "gender": 1, "race": 0, "id": "person93"},
        {"path": "b/race9.jpg", "age": 30, "gender": 0, "race": 9, "id": "person94"},
        {"path": "c/text.jpg", "age": 30, "gender": "Female", "race": "Asian", "id": "person95"},
        {**rows[0], "age": 99},  # the same path again (with another age): a duplicate
    ]
    table = root / "labels.csv"
    pd.DataFrame(rows[:5] + bad + rows[5:]).to_csv(table, index=False)
    return table


def photo_dataset(root: Path, n: int = 12, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """root/labels.csv over root/photos/pNN.jpg: faces pasted into 480x360 photos. Returns the table and
    the number of faces pasted into each photo (file name -> 0, 1 or 2)."""
    rng = np.random.default_rng(seed)
    faces = sample_faces(n + 3, offset=1)
    (root / "photos").mkdir(parents=True, exist_ok=True)
    rows, n_faces = [], {}
    for i in range(n):
        k = 0 if i == n - 1 else 2 if i % 5 == 1 else 1
        img = _background(rng)
        if k == 1:
            _paste(img, cv2.imread(str(faces[i])), rng.uniform(0.8, 1.8), rng.uniform(-8, 8), rng)
        elif k == 2:  # a large face and a smaller one beside it: the large one is the subject
            _paste(img, cv2.imread(str(faces[i])), 1.1, rng.uniform(-6, 6), rng, x_range=(0.0, 0.08))
            _paste(img, cv2.imread(str(faces[n + 1])), 0.7, 0.0, rng, x_range=(0.92, 1.0))
        name = f"photos/p{i:02d}.jpg"
        cv2.imwrite(str(root / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        rows.append({"path": name, **_labels_of(faces[i])})
        n_faces[name] = k
    table = root / "labels.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, n_faces


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth, faceless 480x360 scene: a colour gradient with a little blurred noise."""
    h, w = 360, 480
    a, b = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    img = (a * (1 - t) + b * t) * np.ones((h, 1, 1))
    img += cv2.GaussianBlur(rng.normal(0, 12, (h, w, 3)), (0, 0), 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _paste(
    img: np.ndarray,
    face: np.ndarray,
    scale: float,
    angle: float,
    rng: np.random.Generator,
    x_range: tuple[float, float] = (0.1, 0.9),
) -> None:
    """Paste `face` scaled and turned by `angle` degrees at a random place (its corners filled from the
    face's own edges, so no black wedge looks like a feature)."""
    side = int(round(face.shape[0] * scale))
    m = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, 1.0)
    face = cv2.warpAffine(face, m, face.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    side = min(side, img.shape[0])
    h, w = img.shape[:2]
    cx = rng.uniform(*x_range) * (w - side)
    x, y = int(cx), int(rng.uniform(0, 1) * (h - side))
    img[y : y + side, x : x + side] = face[:side, :side]
