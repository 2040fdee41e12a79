"""`curate split --align`: ordinary photos become aligned 200x200 face crops the model can read.

Why: the model has only seen UTKFace's landmark-aligned crops (core/faces.py says what a whole photo
does to it). Each usable image is decoded, its largest face found and aligned (`core.faces.find_face`),
and the crop written under OUT/aligned/ at the image's own relative name; the originals are never
touched. The manifests then point at the crops and keep `source_path`, `face_status`, `n_faces` and
`face_score`. An image without a face is rejected ("no face found"). OUT/aligned/faces.csv records
each crop with the source's content hash, so a re-run reuses every crop whose source is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.atomic import atomic_path, write_csv
from core.images import IMAGE_EXTS, decode_image, pixel_hash

JPEG_QUALITY = 95  # crops keep the source's format; JPEG at this quality
FACE_COLUMNS = ["source_path", "face_status", "n_faces", "face_score"]
_RECORD = ["filename", "source_hash", "crop", "crop_hash", "width", "height", "face_status", "n_faces", "face_score"]


def align_faces(usable: pd.DataFrame, out_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows pointing at aligned crops, rejected rows "no face found") for the usable rows of a scan."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _read_record(out_dir / "faces.csv")
    rows, rejected, entries = [], [], []
    for r in tqdm(usable.to_dict("records"), desc="align", unit="img", disable=not progress, mininterval=0.5):
        e = record.get((r["filename"], str(r["content_hash"])))
        if e is None or (e["crop"] and not (out_dir / e["crop"]).is_file()):
            e = _align_one(r, out_dir)
        entries.append(e)
        if not e["crop"]:
            rejected.append({"path": r["path"], "filename": r["filename"], "reason": e["face_status"]})
            continue
        rows.append(_crop_row(r, e, out_dir))
    write_csv(pd.DataFrame(entries, columns=_RECORD), out_dir / "faces.csv")
    columns = [c for c in usable.columns if c not in FACE_COLUMNS] + FACE_COLUMNS
    aligned = pd.DataFrame(rows, columns=columns)
    if "race" in aligned:  # rows as dicts lose the nullable integer: a missing race would turn 3 into 3.0
        aligned["race"] = aligned["race"].astype("Int64")
    return aligned, pd.DataFrame(rejected, columns=["path", "filename", "reason"])


def _read_record(p: Path) -> dict[tuple[str, str], dict]:
    """(filename, source content hash) -> what an earlier run wrote for it; {} without a record."""
    if not p.is_file():
        return {}
    text = {c: str for c in ("filename", "source_hash", "crop", "crop_hash")}
    rec = pd.read_csv(p, dtype=text, keep_default_na=False)
    return {(e["filename"], e["source_hash"]): e for e in rec.to_dict("records")}


def _align_one(r: dict, out_dir: Path) -> dict:
    """Detect and align one image's face and write the crop (atomically); its record entry."""
    from core.faces import find_face

    img, reason = decode_image(Path(r["path"]))
    entry = {"filename": r["filename"], "source_hash": str(r["content_hash"]), "crop": "", "crop_hash": ""}
    if img is None:  # changed since the scan: say so rather than guess
        return entry | {"width": 0, "height": 0, "face_status": reason, "n_faces": 0, "face_score": np.nan}
    face = find_face(img)
    entry |= {"face_status": face.status, "n_faces": face.n_faces, "face_score": round(float(face.score), 4)}
    if face.crop is None:
        return entry | {"width": 0, "height": 0}
    crop_name = crop_name_for(r["filename"])
    dst = out_dir / crop_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        if not cv2.imwrite(str(tmp), face.crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{dst}: cannot write the aligned crop")
    written, _ = decode_image(dst)  # the hash of what a later read sees (JPEG is lossy)
    h, w = written.shape[:2]
    return entry | {"crop": crop_name, "crop_hash": pixel_hash(written), "width": w, "height": h}


def crop_name_for(filename: str) -> str:
    """The crop's path under OUT/aligned/: the image's own relative name, in its own format when that is
    one OpenCV writes (else PNG); never outside the folder."""
    name = filename.lstrip("/")
    return name if name.rstrip().lower().endswith(IMAGE_EXTS) and name == name.rstrip() else name + ".png"


def _crop_row(r: dict, e: dict, out_dir: Path) -> dict:
    """The manifest row of an aligned image: the crop's path, hash and size; the source kept."""
    note = r.get("name_note") or ""
    if int(e["n_faces"]) > 1:
        note = "; ".join(x for x in (note, e["face_status"]) if x)
    return r | {
        "path": os.path.abspath(out_dir / e["crop"]),
        "content_hash": e["crop_hash"],
        "width": int(e["width"]),
        "height": int(e["height"]),
        "name_note": note,
        "source_path": r["path"],
        "face_status": e["face_status"],
        "n_faces": int(e["n_faces"]),
        "face_score": float(e["face_score"]),
    }
