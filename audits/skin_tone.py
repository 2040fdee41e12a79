"""Skin-tone estimate per face crop: Individual Typology Angle (ITA) and Monk Skin Tone (MST).

Why: label audits and fairness reports need to know how a model behaves across skin tones, and
UTKFace's race labels are neither skin tones nor reliable. We measure tone from the skin pixels only
(not hair, background, eyes or lips): a YCrCb skin mask (Chai & Ngan's Cr/Cb box) inside the central
face region of the aligned crop, then CIELAB, then per-pixel ITA = atan((L* - 50) / b*) x 180 / pi and
its median (robust to specular highlights and shadows). ITA maps to the six ITA categories; the
median L*a*b* of the skin pixels maps to the nearest of the ten Monk Skin Tone swatches.

Caveats: ITA of a photo mixes skin with illumination and white balance, so it is a weak per-image
measure and a useful aggregate; "unknown" is returned for grayscale images and when too few skin
pixels are found (confidence = skin-pixel fraction of the central region).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from core.schema import SKIN_TONE

SKIN_VERSION = "skin-2"  # 2: the one schema's names (skin_tone_score), values as in skin-1

# (lower bound exclusive, name), checked from the top: ITA > 55 is "very light", etc.
ITA_CATEGORIES = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-math.inf, "dark"),
)
UNKNOWN = "unknown"

# Monk Skin Tone scale, tones 1 (lightest) to 10 (darkest), sRGB hex as published by Google.
MONK_HEX = ("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420")


def _hex_to_lab(hexes: tuple[str, ...]) -> np.ndarray:
    rgb = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in hexes], dtype=np.float32) / 255.0
    bgr = rgb[:, ::-1].reshape(1, -1, 3).copy()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).reshape(-1, 3).astype(np.float64)


MONK_LAB = _hex_to_lab(MONK_HEX)


@dataclass(frozen=True)
class SkinConfig:
    """Parameters of the skin estimate (recorded in the audit metadata).

    The region is a box of the aligned crop given as fractions (top, bottom, left, right); UTKFace
    crops are aligned on the eyes, so the box covers forehead, cheeks, nose and chin.
    """

    region: tuple[float, float, float, float] = (0.25, 0.85, 0.22, 0.78)
    cr_range: tuple[int, int] = (133, 173)
    cb_range: tuple[int, int] = (77, 127)
    y_range: tuple[int, int] = (25, 250)  # drop deep shadow and clipped highlights
    min_skin_fraction: float = 0.10  # below this: "unknown"
    pixel_step: int = 2  # use every 2nd row and column of the region (a quarter of
    # the pixels: same medians, 4x less colour conversion)
    grayscale_chroma_max: float = 3.0  # mean (max-min channel) below this: grayscale, "unknown"


DEFAULT_SKIN_CONFIG = SkinConfig()


def ita_category(ita: float) -> str:
    """Name of the ITA category holding `ita` (degrees); "unknown" for NaN.

    Why: the six categories (very light > 55 > light > 41 > intermediate > 28 > tan > 10 > brown >
    -30 > dark) are the dermatology convention that reports and papers use.
    """
    if ita is None or not math.isfinite(ita):
        return UNKNOWN
    for lo, name in ITA_CATEGORIES:
        if ita > lo:
            return name
    return ITA_CATEGORIES[-1][1]


def nearest_monk(lab: np.ndarray) -> int:
    """Monk Skin Tone (1..10) whose swatch is nearest in CIELAB (Delta E 1976) to `lab` (L*, a*, b*).

    Why: MST is the 10-tone scale designed to represent darker skin better than Fitzpatrick.
    """
    d = ((MONK_LAB - np.asarray(lab, dtype=np.float64)[None, :]) ** 2).sum(axis=1)
    return int(np.argmin(d)) + 1


def skin_mask(
    img: np.ndarray, cfg: SkinConfig = DEFAULT_SKIN_CONFIG, ycrcb: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Boolean skin mask over the central face region of a BGR crop, and that region's slices.

    Why YCrCb: skin of every tone clusters in a compact Cr/Cb box, while brightness (Y) varies with
    tone and light; we only drop extreme Y (shadow, clipped highlights).
    """
    h, w = img.shape[:2]
    t, b, l, r = cfg.region
    step = cfg.pixel_step if min(h, w) >= 32 * cfg.pixel_step else 1
    rows = slice(int(round(t * h)), max(int(round(b * h)), int(round(t * h)) + 1), step)
    cols = slice(int(round(l * w)), max(int(round(r * w)), int(round(l * w)) + 1), step)
    if ycrcb is None:
        ycrcb = cv2.cvtColor(img[rows, cols], cv2.COLOR_BGR2YCrCb)
    else:
        ycrcb = ycrcb[rows, cols]
    lo = np.array([cfg.y_range[0], cfg.cr_range[0], cfg.cb_range[0]], np.uint8)
    hi = np.array([cfg.y_range[1], cfg.cr_range[1], cfg.cb_range[1]], np.uint8)
    return cv2.inRange(ycrcb, lo, hi) > 0, (rows, cols)


def skin_tone(
    img: np.ndarray, cfg: SkinConfig = DEFAULT_SKIN_CONFIG, chroma: float | None = None, ycrcb: np.ndarray | None = None
) -> dict:
    """Skin tone of one BGR uint8 face crop.

    Returns ita (median per-pixel ITA, degrees), skin_category (ITA category or "unknown"), monk_tone (1..10,
    or None when unknown), skin_tone_score (skin fraction of the central region: what the estimate rests on),
    skin_L / skin_a / skin_b (median CIELAB of the skin pixels). `chroma` and `ycrcb` may be passed by the
    audit pass, which has them already.
    """
    out = {
        "ita": float("nan"),
        "skin_category": UNKNOWN,
        "monk_tone": None,
        "skin_tone_score": 0.0,
        "skin_L": float("nan"),
        "skin_a": float("nan"),
        "skin_b": float("nan"),
    }
    if img is None or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 2:
        return out
    if chroma is None:
        b_, g_, r_ = cv2.split(img)
        chroma = float(cv2.mean(cv2.subtract(cv2.max(cv2.max(b_, g_), r_), cv2.min(cv2.min(b_, g_), r_)))[0])
    mask, (rows, cols) = skin_mask(img, cfg, ycrcb)
    frac = float(mask.mean()) if mask.size else 0.0
    out["skin_tone_score"] = frac
    if chroma < cfg.grayscale_chroma_max or frac < cfg.min_skin_fraction:
        return out
    pix = img[rows, cols][mask].reshape(-1, 1, 3).astype(np.float32) / 255.0
    lab = cv2.cvtColor(pix, cv2.COLOR_BGR2Lab).reshape(-1, 3)
    keep = lab[:, 2] > 0  # ITA is defined for yellowish b*; skin always is
    if keep.sum() < max(10, 0.5 * cfg.min_skin_fraction * mask.size):
        return out
    kept = lab[keep]
    ita = np.degrees(np.arctan((kept[:, 0] - 50.0) / kept[:, 2]))
    med_ita = float(np.median(ita))
    med_lab = np.median(kept, axis=0).astype(np.float64)
    out.update(
        ita=med_ita,
        skin_category=ita_category(med_ita),
        monk_tone=nearest_monk(med_lab),
        skin_L=float(med_lab[0]),
        skin_a=float(med_lab[1]),
        skin_b=float(med_lab[2]),
    )
    return out


def skin_tone_issues(table: pd.DataFrame, cfg: SkinConfig = DEFAULT_SKIN_CONFIG) -> pd.DataFrame:
    """`is_skin_tone_issue` and `skin_tone_reason` per audited row (no estimate, and why not).

    Why a reason: an unknown skin tone from a grayscale photo and one from a face turned away are
    different problems for a reviewer, and the oversampling plan treats both as "unknown".
    """
    cat = table["skin_category"].astype("string").fillna(UNKNOWN)
    frac = pd.to_numeric(table[SKIN_TONE.score], errors="coerce").fillna(0.0)
    chroma = pd.to_numeric(table["chroma"], errors="coerce")
    status = table["audit_status"].astype("string").fillna("") if "audit_status" in table else "ok"
    unknown = (cat == UNKNOWN).to_numpy()
    reasons = np.where(
        status != "ok",
        "not audited",
        np.where(
            chroma < cfg.grayscale_chroma_max,
            "grayscale image",
            [f"too few skin pixels ({f:.0%} of the face centre)" for f in frac],
        ),
    )
    return pd.DataFrame({SKIN_TONE.issue: unknown, SKIN_TONE.reason: np.where(unknown, reasons, "")}, index=table.index)
