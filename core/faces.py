"""Find faces in ordinary photos and align them to UTKFace's geometry, offline on CPU.

Why: the model has only seen UTKFace's tight, landmark-aligned 200x200 crops; fed a whole photo it
guesses (gender near chance, age error several times its test error). The detector is YuNet
(`core/models/yunet_s_640_640.onnx`, 232 KB, Apache-2.0, `LICENSE.yunet`; WIDER Face AP 0.88 / 0.87 /
0.75), which OpenCV runs with `cv2.FaceDetectorYN`: no download at run time, no extra package, no
torch pin. Each face comes with five landmarks; a similarity transform from them (averaged with those
found on the mirrored image) to UTKFace's mean landmarks (REFERENCE_LANDMARKS) warps the face to the
crop the model was trained on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import CurateError

MODEL_PATH = Path(__file__).parent / "models" / "yunet_s_640_640.onnx"
CROP_SIZE = 200  # UTKFace's aligned crops
# Where YuNet puts the five landmarks (eye, eye, nose tip, mouth corner, mouth corner; x, y in a 200x200
# crop) on UTKFace's own images: the median over 1,500 random images of the full set, each padded by 50
# grey pixels (the detector then sees some context, as in a photo), averaged with its mirror image so
# the reference is left-right symmetric (training flips faces). Measured 2026-12-01: detector found a
# face on 1,499 of the 1,500; median absolute deviation 2-4 px per coordinate.
REFERENCE_LANDMARKS = np.array(
    [[59.6, 56.9], [139.4, 56.9], [99.5, 103.3], [65.1, 134.7], [133.9, 134.7]], dtype=np.float32
)
# An image whose only face lies within this mean landmark distance (px of a 200x200 crop) of
# REFERENCE_LANDMARKS is already an aligned crop. Measured on 600 random UTKFace images (2026-12-01):
# their own crops, median 6.5 px (90% within 9.6, 99% within 13.4); re-cropped at 1.2x the side,
# median 10.0; at 1.4x, 13.9; at 1.6x, 17.6; shifted by 10% of the side, 18-22; turned 15 degrees, 11.4.
ALIGNED_MAX_OFFSET = 12.0
# ... and its face's size within this ratio of the reference either way (the scale of the similarity
# transform that maps its landmarks onto REFERENCE_LANDMARKS). The offset alone let half of 1.2x looser
# crops through (their median offset is 10 px) and they cost 1.6 pp of gender accuracy fed as they were.
# Measured on 400 random UTKFace images (2026-12-01, seed 1): own crops' scale 1.01 median, 90% within
# 0.92-1.12; 1.1x crops 1.11; 1.2x crops 1.21 (5% below 1.08); 0.9x crops 0.93.
ALIGNED_MAX_SCALE = 1.10
# ... and turned by at most this many degrees from it (the transform's rotation). Offset and size let 2 in
# 3 crops turned 15 degrees through (median offset 11.4 px), fed unturned: 6.65 years / 91.91% on the test
# split. Measured on 400 random UTKFace images (2026-12-02, seed 1): own crops' turn median 2.5 degrees,
# 94.5% within 8 (90% within 6.8); crops turned 5 / 10 / 15 degrees: 86.5% / 49.5% / 13% within 8.
ALIGNED_MAX_TURN = 8.0
SCORE_THRESHOLD = 0.6  # YuNet's own default (OpenCV model zoo: 0.9 for demos, 0.6 for recall)
DETECT_MAX_SIDE = 640  # larger photos are detected on a reduced copy (the network's native size)


class FaceError(CurateError):
    """The face detector cannot be used (its weights are missing or unreadable)."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x, y, w, h in the image's pixels
    landmarks: np.ndarray  # (5, 2)
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class FaceCrop:
    """What `find_face` says about one image: a status a person can read, and the aligned crop if any."""

    status: str  # "one face", "no face found", "N faces: the largest used"
    n_faces: int
    score: float  # detector confidence of the face used (NaN without one)
    box: tuple[float, float, float, float] | None
    crop: np.ndarray | None  # CROP_SIZE x CROP_SIZE BGR, aligned; None without a face
    fill: float = float("nan")  # share of the crop outside the source image (edge pixels repeated there)


_local = threading.local()


def _detector() -> cv2.FaceDetectorYN:
    """One detector per thread (its input size is state): built once, reused for every image."""
    det = getattr(_local, "det", None)
    if det is None:
        if not MODEL_PATH.is_file():
            raise FaceError(f"{MODEL_PATH}: face detector weights missing (reinstall utkface-curate)")
        try:
            det = cv2.FaceDetectorYN.create(str(MODEL_PATH), "", (320, 320), SCORE_THRESHOLD, 0.3, 100)
        except cv2.error as e:
            raise FaceError(f"{MODEL_PATH}: cannot load the face detector ({str(e).strip()[:100]})") from None
        _local.det = det
    return det


def detect_faces(img: np.ndarray) -> list[Face]:
    """Faces in a BGR image, largest first (a photo's subject is usually its largest face)."""
    h, w = img.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = img if scale == 1.0 else cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    det = _detector()
    det.setInputSize((small.shape[1], small.shape[0]))
    _, rows = det.detect(small)
    faces = [
        Face(tuple(float(v) / scale for v in r[:4]), (r[4:14].reshape(5, 2) / scale).astype(np.float32), float(r[14]))
        for r in (rows if rows is not None else [])
    ]
    return sorted(faces, key=lambda f: -f.area)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """The least-squares similarity transform (2x3: rotation, uniform scale, shift) taking the points
    `src` onto `dst` (Umeyama 1991), over every point: with five averaged landmarks none is an outlier
    to drop, as a robust fit (LMEDS) would. None when the points are degenerate (all in one place)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    s, d = src - src.mean(0), dst - dst.mean(0)
    var = (s**2).sum(1).mean()
    if not np.isfinite(var) or var < 1e-6:
        return None
    u, sv, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sv) @ sign) / var
    shift = dst.mean(0) - scale * rot @ src.mean(0)
    return np.hstack([scale * rot, shift[:, None]]).astype(np.float32)


def mirrored_landmarks(img: np.ndarray, face: Face) -> np.ndarray:
    """The face's landmarks averaged with those the detector finds on the mirrored image (mirrored back,
    left and right swapped); the face's own where the mirror shows no face at its place.

    Why: the detector's landmark noise is what re-aligning costs; two looks at the face average part of it
    out. On 300 random test crops the aligned crop's mean distance from UTKFace's own alignment fell from
    6.85 to 5.19 px (0.8x crops 7.56 -> 6.40, 1.2x 7.55 -> 5.46), and a UTKFace crop re-aligned loses 0.30
    pp of gender accuracy instead of 0.74, for a second detection per face; docs/faces.md."""
    w = img.shape[1]
    x, y, bw, bh = face.box
    best, best_iou = None, 0.5
    for g in detect_faces(cv2.flip(img, 1)):
        gx = w - g.box[0] - g.box[2]  # its box, mirrored back
        ix = max(0.0, min(x + bw, gx + g.box[2]) - max(x, gx))
        iy = max(0.0, min(y + bh, g.box[1] + g.box[3]) - max(y, g.box[1]))
        iou = ix * iy / (face.area + g.area - ix * iy)
        if iou > best_iou:
            best, best_iou = g, iou
    if best is None:
        return face.landmarks
    back = best.landmarks.copy()
    back[:, 0] = w - 1 - back[:, 0]
    return ((face.landmarks + back[[1, 0, 2, 4, 3]]) / 2).astype(np.float32)


def face_transform(face: Face, size: int = CROP_SIZE, landmarks: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) that puts the face's five landmarks
    (or `landmarks`, e.g. mirrored_landmarks') on UTKFace's; from the box, centred and scaled, when the
    landmarks are degenerate."""
    ref = REFERENCE_LANDMARKS * (size / CROP_SIZE)
    m = similarity(face.landmarks if landmarks is None else landmarks, ref)
    if m is None:
        x, y, bw, bh = face.box
        s = size / (1.25 * max(bw, bh))
        m = np.array([[s, 0, size / 2 - s * (x + bw / 2)], [0, s, size / 2 - s * (y + bh / 2)]], np.float32)
    return m


def align_face(img: np.ndarray, face: Face, size: int = CROP_SIZE, m: np.ndarray | None = None) -> np.ndarray:
    """The face warped to UTKFace's geometry (eyes level, same scale and centre), size x size BGR (by `m`,
    its face_transform, when already fitted).

    Outside the photo the edge pixels are repeated, as the training's crop augmentation pads."""
    m = face_transform(face, size) if m is None else m
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_fill(img_shape: tuple[int, ...], m: np.ndarray, size: int = CROP_SIZE, grid: int = 64) -> float:
    """Share of the size x size crop that the transform `m` (image -> crop) takes from outside the image,
    0-1: how much of what the model sees was made up by repeating edge pixels. About 0 for a face in a
    photo or a re-aligned UTKFace crop; about 0.3 for a crop 0.8x UTKFace's (its chin, hair and ears are
    not in the image). Counted on a grid x grid sample of the crop's pixel centres mapped back."""
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    c = (np.arange(grid) + 0.5) * size / grid
    xs, ys = np.meshgrid(c, c)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    h, w = img_shape[:2]
    return float(1.0 - ((sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)).mean())


def find_face(img: np.ndarray, size: int = CROP_SIZE, faces: list[Face] | None = None) -> FaceCrop:
    """Detect (unless `faces` were already detected), choose the largest face and align it (by its
    landmarks averaged with the mirrored image's); the status says what was found."""
    faces = detect_faces(img) if faces is None else faces
    if not faces:
        return FaceCrop("no face found", 0, float("nan"), None, None)
    f = faces[0]
    status = "one face" if len(faces) == 1 else f"{len(faces)} faces: the largest used"
    m = face_transform(f, size, mirrored_landmarks(img, f))
    return FaceCrop(status, len(faces), f.score, f.box, align_face(img, f, size, m), crop_fill(img.shape, m, size))


def misalignment(face: Face, width: int, height: int) -> float:
    """How far an image's face is from UTKFace's geometry: the mean landmark distance, in pixels of a
    200x200 crop, after scaling the image to 200x200. About 3 px on UTKFace's own crops; a loose crop or
    a whole photo is tens of pixels off."""
    scaled = face.landmarks * np.array([CROP_SIZE / width, CROP_SIZE / height], np.float32)
    return float(np.linalg.norm(scaled - REFERENCE_LANDMARKS, axis=1).mean())


def _to_reference(face: Face, width: int, height: int) -> np.ndarray | None:
    """The similarity transform from the face's landmarks (image scaled to 200x200) to REFERENCE_LANDMARKS."""
    scaled = face.landmarks * np.array([CROP_SIZE / width, CROP_SIZE / height], np.float32)
    return cv2.estimateAffinePartial2D(scaled, REFERENCE_LANDMARKS)[0]


def face_scale(face: Face, width: int, height: int) -> float:
    """How much the image (scaled to 200x200) must be enlarged to put its face at UTKFace's size: the scale
    of the similarity transform from its landmarks to REFERENCE_LANDMARKS (1.2 for a crop 1.2x looser)."""
    m = _to_reference(face, width, height)
    return float("nan") if m is None else float(np.hypot(m[0, 0], m[1, 0]))


def face_turn(face: Face, width: int, height: int) -> float:
    """Degrees the image must be turned to level its face as UTKFace's are (the same transform's rotation;
    about +-15 for a crop turned 15 degrees either way)."""
    m = _to_reference(face, width, height)
    return float("nan") if m is None else float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))


def is_aligned_crop(faces: list[Face], width: int, height: int) -> bool:
    """True when an image already is a UTKFace-style crop, to be fed as it is: one face, its landmarks within
    ALIGNED_MAX_OFFSET of UTKFace's, its size within ALIGNED_MAX_SCALE of theirs and its turn within
    ALIGNED_MAX_TURN degrees. Re-aligning such a
    crop costs accuracy (the detector's landmarks are noisier than UTKFace's own alignment: 93.54% ->
    93.24% on the test split, 92.80% with one look), feeding a looser crop as it is costs more."""
    if len(faces) != 1 or misalignment(faces[0], width, height) > ALIGNED_MAX_OFFSET:
        return False
    if not 1 / ALIGNED_MAX_SCALE <= face_scale(faces[0], width, height) <= ALIGNED_MAX_SCALE:
        return False
    return abs(face_turn(faces[0], width, height)) <= ALIGNED_MAX_TURN


def recrop(img: np.ndarray, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0, angle: float = 0.0) -> np.ndarray:
    """An aligned crop re-cropped as another dataset might: a square of side `scale` x the image's,
    centre shifted by (dx, dy) x the side, turned by `angle` degrees; edge pixels repeat outside.
    Same size as the input. The geometry of trainer.data.CropAugment, for measuring robustness."""
    h, w = img.shape[:2]
    c = np.array([w / 2 + dx * w, h / 2 + dy * h])
    rot = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, 1 / scale)  # maps the source to the crop
    rot[:, 2] += np.array([w / 2, h / 2]) - c
    return cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
