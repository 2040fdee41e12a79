"""Image-quality audits: BRISQUE, sharpness, blur, exposure, contrast, information, colour, size.

Why this module exists: a face photo that is blurred, black, washed out, grayscale or a thumbnail
carries little of the signal an age/gender model needs, and a production pipeline must be able to refuse
it with a reason ("too dark; blurry") before trusting a prediction. Everything here works on one decoded
image (OpenCV BGR uint8) at a time, except BRISQUE, which is batched.

The one schema (core/schema.py): per check, raw measurement(s) (`laplacian_var`), a score in [0, 1]
where LOWER means WORSE (`blurry_score`), and a flag (`is_blurry_issue`) whose threshold
(audits/thresholds.py) is recorded; `is_low_quality_issue` / `low_quality_reason` sum them up.

BRISQUE lives in audits/brisque.py, thresholds in audits/thresholds.py; the column names come from
the one schema (core/schema.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from audits.brisque import brisque_batch
from audits.thresholds import DEFAULT_THRESHOLDS, QualityThresholds
from core.images import MIN_SIDE, decode_image, is_constant, reduce_to
from core.schema import LOW_QUALITY, QUALITY_CHECKS

# 2: the one schema's names (values as in quality-1, plus odd_size_score); 3: images above AUDIT_PIXELS
# measured on a reduced copy (UTKFace's crops and anything up to 1 MP: the same values as in 2)
QUALITY_VERSION = "quality-3"
# Quality, BRISQUE and skin tone measure an image above this on an INTER_AREA copy of this size: each
# costs tens of bytes per pixel (a 4 MP photo took the audit to ~0.6 GB of private memory, 1 MP ~0.46)

# Raw measurements: `measure_quality` gives all but BRISQUE, which comes from `brisque_batch`.
RAW_COLUMNS = [col.name for chk in QUALITY_CHECKS for col in chk.raw]
SCORE_COLUMNS = [chk.score for chk in QUALITY_CHECKS]
ISSUE_COLUMNS = [chk.issue for chk in QUALITY_CHECKS]
# Words used in `low_quality_reason`, per check.
REASON_WORDS = {
    "blurry": "blurry",
    "brisque": "poor BRISQUE quality",
    "dark": "too dark",
    "overexposed": "over-exposed",
    "low_contrast": "low contrast",
    "low_information": "low information",
    "grayscale": "grayscale",
    "odd_size": "odd size",
}
# Fixed (dataset-independent) maps from raw measures to [0, 1] scores, for the sidecar.
SCORE_DEFINITIONS = {chk.score: chk.score_doc for chk in (*QUALITY_CHECKS, LOW_QUALITY)}

AUDIT_PIXELS = 1_000_000


def working_copy(img: np.ndarray) -> np.ndarray:
    """The image the pixel measures see: itself up to AUDIT_PIXELS, else reduced to that (INTER_AREA)."""
    return reduce_to(img, AUDIT_PIXELS)


_HF_MASKS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
_MAX_MASKS = 16


def _fft_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (high band, everything but DC) over the rfft2 grid, cached per shape."""
    key = (h, w)
    if key not in _HF_MASKS:
        if len(_HF_MASKS) >= _MAX_MASKS:  # a folder of many sizes must not keep a pair of masks for each
            _HF_MASKS.pop(next(iter(_HF_MASKS)))
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        r = np.sqrt(fy**2 + fx**2) / 0.5  # radius as a fraction of Nyquist
        nondc = r > 0
        _HF_MASKS[key] = (r > 0.5, nondc)
    return _HF_MASKS[key]


def _rfft2(x: np.ndarray) -> np.ndarray:
    try:  # scipy's pocketfft keeps float32 (complex64): ~1.4x faster than numpy's float64 path
        import scipy.fft

        return scipy.fft.rfft2(x, workers=1)
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return np.fft.rfft2(x)


def fft_blur(gray: np.ndarray) -> float:
    """log10 share of spectral energy above half the Nyquist frequency (higher = sharper).

    Why: blur removes high frequencies whatever the image content; the share (not the absolute
    energy) makes it independent of contrast, and radius relative to Nyquist makes it independent
    of resolution. A constant image has no non-DC energy: NaN.
    """
    g = gray.astype(np.float32)
    g -= g.mean()
    spec = _rfft2(g)
    p = spec.real**2 + spec.imag**2
    hi, nondc = _fft_masks(*gray.shape)
    total = float(p[nondc].sum())
    if total <= 0:
        return float("nan")
    return float(np.log10(max(float(p[hi].sum()) / total, 1e-12)))


def measure_quality(img: np.ndarray) -> dict[str, float]:
    """Raw quality measurements of one BGR uint8 image (BRISQUE excluded, see `brisque_batch`).

    Why one function: the audit pass decodes each image once and derives every measurement from the
    same pixels; the 256-bin gray histogram alone gives percentiles, contrast and entropy.
    """
    h, w = img.shape[:2]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    # cv2.calcHist counts in place (np.bincount first copies the pixels to int64: 32 MB for a 4 MP photo)
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    n = hist.sum()
    cdf = np.cumsum(hist) / n
    levels = np.arange(256, dtype=np.float64)
    mean = float((hist * levels).sum() / n)
    var = float((hist * (levels - mean) ** 2).sum() / n)
    pnz = hist[hist > 0] / n
    b, g, r = cv2.split(img)
    chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=1)
    _, lap_std = cv2.meanStdDev(lap)
    return {
        "width": int(w),
        "height": int(h),
        "aspect": float(w / h),
        "laplacian_var": float(lap_std[0, 0]) ** 2,
        "fft_blur": fft_blur(gray),
        "brightness_p5": float(np.searchsorted(cdf, 0.05)),
        "brightness_p50": float(np.searchsorted(cdf, 0.50)),
        "brightness_p95": float(np.searchsorted(cdf, 0.95)),
        "contrast": math.sqrt(var),
        "entropy": float(-(pnz * np.log2(pnz)).sum()),
        "chroma": float(cv2.mean(chroma)[0]),
    }


def quality_scores(num: dict[str, pd.Series]) -> dict[str, np.ndarray]:
    """Per quality check, its score in [0, 1] (lower = worse; NaN where the measure is missing)."""

    def clip(x) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)

    side = np.minimum(num["width"], num["height"])
    return {
        "blurry": clip(np.log10(1 + num["laplacian_var"].clip(lower=0)) / 4),
        "brisque": clip(1 - num["brisque"] / 100),
        "dark": clip(num["brightness_p95"] / 255),
        "overexposed": clip(1 - num["brightness_p5"] / 255),
        "low_contrast": clip(num["contrast"] / 64),
        "low_information": clip(num["entropy"] / 8),
        "grayscale": clip(num["chroma"] / 20),
        "odd_size": clip(side / 200) * clip(1 - np.abs(np.log(num["aspect"]))),
    }


def quality_issues(num: dict[str, pd.Series], t: QualityThresholds) -> dict[str, np.ndarray]:
    """Per quality check, its issue flag (False where the measure is missing)."""

    def lt(col: str, thr: float) -> np.ndarray:
        return (num[col] < thr).fillna(False).to_numpy(dtype=bool)

    def gt(col: str, thr: float) -> np.ndarray:
        return (num[col] > thr).fillna(False).to_numpy(dtype=bool)

    side = np.minimum(num["width"], num["height"])
    aspect_off = (num["aspect"] / t.aspect_expected - 1).abs() > t.aspect_tolerance
    # Blur flag from the Laplacian alone: on face crops a low high-frequency share (fft_blur) marks
    # smooth, clean skin as often as blur, while JPEG blocking keeps it high on blurry upscaled crops.
    return {
        "blurry": lt("laplacian_var", t.laplacian_var_min),
        "brisque": gt("brisque", t.brisque_max),
        "dark": lt("brightness_p95", t.brightness_p95_max_dark),
        "overexposed": gt("brightness_p5", t.brightness_p5_min_over),
        "low_contrast": lt("contrast", t.contrast_min),
        "low_information": lt("entropy", t.entropy_min),
        "grayscale": lt("chroma", t.chroma_max_gray),
        "odd_size": ((side < t.min_side) | aspect_off).fillna(False).to_numpy(dtype=bool),
    }


def add_quality_flags(df: pd.DataFrame, thresholds: QualityThresholds) -> pd.DataFrame:
    """Add every quality check's score and issue, and the low_quality summary, to measurements.

    Why separate from measuring: flags depend on thresholds (dataset statistics or config), raw
    measurements do not; cached measurements can be re-flagged in milliseconds.
    A row whose `audit_status` is not "ok" is always a low-quality issue, with the status first.
    """
    out = df.copy()
    num = {c: pd.to_numeric(out[c], errors="coerce") for c in RAW_COLUMNS if c in out}
    scores, issues = quality_scores(num), quality_issues(num, thresholds)
    for chk in QUALITY_CHECKS:
        out[chk.score] = scores[chk.name]
        out[chk.issue] = issues[chk.name]
    status = out["audit_status"].astype(str).to_numpy() if "audit_status" in out else np.full(len(out), "ok")
    flags = out[ISSUE_COLUMNS].to_numpy(dtype=bool)
    words = [REASON_WORDS[chk.name] for chk in QUALITY_CHECKS]
    reasons = []
    for st, row in zip(status, flags):
        r = [] if st == "ok" else [st]
        r.extend(w for w, f in zip(words, row) if f)
        reasons.append("; ".join(r))
    with np.errstate(invalid="ignore"):
        worst = np.fmin.reduce(out[SCORE_COLUMNS].to_numpy(dtype=np.float64), axis=1)
    out[LOW_QUALITY.score] = np.where(status != "ok", 0.0, worst)
    out[LOW_QUALITY.issue] = (status != "ok") | flags.any(axis=1)
    out[LOW_QUALITY.reason] = reasons
    return out


@dataclass
class Verdict:
    """Whether one image is usable, and why not (human words: "too dark; blurry")."""

    ok: bool
    status: str
    reasons: list[str]
    measurements: dict[str, float]


def quality_verdict(
    images: Iterable[np.ndarray | str | os.PathLike], thresholds: QualityThresholds | str | os.PathLike | None = None
) -> list[Verdict]:
    """Judge a few images (BGR arrays or paths) against thresholds (object, JSON path, or None for
    the built-in UTKFace defaults).

    Why: `curate predict` refuses an unusable photo with its reason before trusting the model, using
    the thresholds saved from the training set's audit.
    """
    if thresholds is None:
        thr = DEFAULT_THRESHOLDS
    elif isinstance(thresholds, QualityThresholds):
        thr = thresholds
    else:
        thr = QualityThresholds.load(thresholds)
    rows: list[dict[str, Any]] = []
    arrays: list[np.ndarray | None] = []
    for item in images:
        if isinstance(item, np.ndarray):
            img, status = item, ""
        else:
            img, status = decode_image(Path(item))
        status = status or image_status(img)
        row = {"audit_status": status}
        if status == "ok":  # measured as the audit measures (at most AUDIT_PIXELS), sized as the image is
            h, w = img.shape[:2]
            img = working_copy(img)
            row.update(measure_quality(img), width=w, height=h, aspect=w / h)
        rows.append(row)
        arrays.append(img if status == "ok" else None)
    ok_idx = [i for i, a in enumerate(arrays) if a is not None]
    br = brisque_batch([arrays[i] for i in ok_idx]) if ok_idx else np.zeros(0)
    for i, v in zip(ok_idx, br):
        rows[i]["brisque"] = float(v)
    df = pd.DataFrame(rows)
    for c in RAW_COLUMNS:
        if c not in df:
            df[c] = np.nan
    flagged = add_quality_flags(df, thr)
    out = []
    for rec, raw in zip(flagged.to_dict("records"), rows):
        reasons = [r for r in rec[LOW_QUALITY.reason].split("; ") if r]
        meas = {k: float(v) for k, v in raw.items() if k != "audit_status" and v is not None}
        out.append(
            Verdict(ok=not rec[LOW_QUALITY.issue], status=rec["audit_status"], reasons=reasons, measurements=meas)
        )
    return out


def image_status(img: np.ndarray | None) -> str:
    """ "ok", or why the image cannot be audited as a photo ("too small (1x1)", "constant image").

    Why: piq asserts on a constant image and a 1x1 image has no texture to measure; such files get a
    clear per-image status instead of crashing the whole run.
    """
    if img is None:
        return "corrupt image (decoder failed)"
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return f"too small ({w}x{h})"
    if is_constant(img):
        return "constant image"
    return "ok"
