"""The `face` check: is there exactly one face, and does it sit where UTKFace's aligned crops put it?

Why: every other audit (skin tone from the face centre, the age/gender model itself) assumes a UTKFace-style
crop of one face. An eye close-up, a page of digits, a group photo or a loose crop from another dataset
passes the quality checks yet gives meaningless skin tones and predictions; the detector (YuNet,
core/faces.py) says so per image, with a reason a reviewer can act on (`curate split --align` re-crops).

`measure_face` gives the raw, threshold-free columns (cached per content by audits/runner.py);
`face_issues` turns them into the score, flag and reason (core/checks.yaml defines all three).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from core.faces import ALIGNED_MAX_OFFSET, MODEL_PATH, SCORE_THRESHOLD, detect_faces, misalignment
from core.schema import FACE

FACE_VERSION = "face-1"
RAW_COLUMNS = [col.name for col in FACE.raw]  # n_faces, face_confidence, face_offset
# Above this mean landmark distance (px of a 200x200 crop) a face is off UTKFace's geometry. Measured on the
# full UTKFace (2026-12): 42 of its 23,708 crops (0.18 %) lie beyond 20 px, most of them really odd (a badge,
# very tight or turned crops); 12 hold no face (eye close-ups, digits, a painting), 1 two. Of 300 of its crops
# re-cropped 2x looser 98 % are flagged, shifted by 10 % of the side 73 %, 1.4x looser 0.7 % (the model
# copes with those). At 18 px: 0.30 % of UTKFace; at 16 px: 0.52 %.
FACE_OFFSET_MAX = 20.0
SCORE_ZERO_OFFSET = 3 * ALIGNED_MAX_OFFSET  # the offset at which the score reaches 0 (36 px)


def measure_face(img: np.ndarray) -> dict[str, float | int]:
    """Number of faces, and confidence and offset of the largest one (NaN without a face), for one BGR image.

    Detected at the image's own resolution: the offsets' reference figures were measured so, and a
    reduced copy shifts YuNet's landmarks by several pixels.
    """
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    faces = detect_faces(img)
    if not faces:
        return {"n_faces": 0, "face_confidence": float("nan"), "face_offset": float("nan")}
    h, w = img.shape[:2]
    return {"n_faces": len(faces), "face_confidence": faces[0].score, "face_offset": misalignment(faces[0], w, h)}


def face_issues(table: pd.DataFrame, offset_max: float = FACE_OFFSET_MAX) -> pd.DataFrame:
    """`face_score`, `is_face_issue` and `face_reason` per row from the raw columns.

    A row without measurements (the image did not decode, or is too small) gets a NaN score and no
    face issue: the low_quality check already says what is wrong with it.
    """
    n = pd.to_numeric(table["n_faces"], errors="coerce").to_numpy(np.float64)
    conf = pd.to_numeric(table["face_confidence"], errors="coerce").to_numpy(np.float64)
    off = pd.to_numeric(table["face_offset"], errors="coerce").to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = np.clip(1 - (off - ALIGNED_MAX_OFFSET) / (SCORE_ZERO_OFFSET - ALIGNED_MAX_OFFSET), 0.0, 1.0)
        score = np.where(n == 0, 0.0, conf * fit / n)  # NaN stays NaN where nothing was measured
    reasons = [_reason(k, o, offset_max) for k, o in zip(n, off)]
    issue = np.array([bool(r) for r in reasons])
    return pd.DataFrame({FACE.score: score, FACE.issue: issue, FACE.reason: reasons}, index=table.index)


def _reason(n_faces: float, offset: float, offset_max: float) -> str:
    """What is wrong with the image's face(s), in words; "" when nothing is (or nothing was measured)."""
    if n_faces != n_faces:  # NaN: not measured
        return ""
    if n_faces == 0:
        return "no face found"
    words = [f"{int(n_faces)} faces"] if n_faces > 1 else []
    if offset > offset_max:
        words.append(
            f"face off the aligned geometry by {offset:.0f} px (not a UTKFace-style crop: use `curate split --align`)"
        )
    return "; ".join(words)


def face_summary(table: pd.DataFrame, offset_max: float = FACE_OFFSET_MAX) -> dict:
    """The run metadata of the check: detector, threshold, and how many images each reason flags."""
    reasons = table[FACE.reason].astype("string").fillna("")
    kinds = reasons.str.replace(r" by \d+ px.*", "", regex=True).str.replace(r"^\d+ faces", "several faces", regex=True)
    return {
        "detector": f"{MODEL_PATH.name} (score >= {SCORE_THRESHOLD})",
        "face_offset_max": offset_max,
        "score_definition": FACE.score_doc,
        "flagged": int(table[FACE.issue].sum()),
        "reasons": {str(k): int(v) for k, v in kinds[kinds != ""].value_counts().items()},
        "n_faces_counts": {
            str(k): int(v)
            for k, v in pd.to_numeric(table["n_faces"], errors="coerce").value_counts().sort_index().items()
        },
    }
