"""Quality thresholds: where each quality check's issue flag starts, per dataset.

Why a module of its own: thresholds default to robust statistics of the audited dataset itself
(median -/+ k x 1.4826 x MAD, one-sided, on a log scale where the measure spans decades), can be
overridden, and are saved to / loaded from JSON so that `curate predict` judges single photos with the
thresholds of the training set. Measurements (audits.quality) do not depend on them; flags do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.atomic import write_text
from core.errors import CurateError

MAD_TO_SIGMA = 1.4826


class ThresholdError(CurateError, ValueError):
    """A thresholds file or override names a threshold that does not exist."""


@dataclass
class QualityThresholds:
    """Flag thresholds on the raw measurements; an image is flagged when it falls on the bad side.

    Why a dataclass with JSON I/O: thresholds derived from one dataset (robust statistics of the
    training set) must be reusable verbatim elsewhere, e.g. by `curate predict` on single photos.
    """

    # Defaults: the robust fences (k=3, see K_SCALE) of the full UTKFace set (23,708 images), rounded.
    laplacian_var_min: float = 5.6  # is_blurry_issue: Laplacian variance below this (fence on log10)
    brisque_max: float = 84.7  # is_brisque_issue: BRISQUE above this
    brightness_p95_max_dark: float = 106.6  # is_dark_issue: even the brightest 5 % are darker than this
    brightness_p5_min_over: float = 123.0  # is_overexposed_issue: even the darkest 5 % are brighter than this
    contrast_min: float = 10.9  # is_low_contrast_issue: std of gray levels below this
    entropy_min: float = 6.44  # is_low_information_issue: gray-level entropy (bits) below this
    chroma_max_gray: float = 3.0  # is_grayscale_issue: mean (max-min channel) below this (absolute)
    min_side: float = 100.0  # is_odd_size_issue: shorter side below this ...
    aspect_expected: float = 1.0  # ... or width/height off the dataset's typical aspect
    aspect_tolerance: float = 0.1  # by more than this fraction
    source: str = "built-in defaults (robust statistics of the full UTKFace set)"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict, for JSON sidecars (why: metadata must say which threshold made each flag)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityThresholds:
        """Build from a dict; accepts a sidecar dict holding a `quality_thresholds` key too."""
        if "quality_thresholds" in d:
            d = d["quality_thresholds"]
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ThresholdError(f"unknown quality threshold(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in d.items()})

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, so another process (predict) applies exactly these thresholds."""
        write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityThresholds:
        """Read thresholds from JSON written by `save` or from an audit sidecar (`*.meta.json`)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> QualityThresholds:
        """Copy with some values replaced (config overrides win over dataset statistics)."""
        if not overrides:
            return self
        d = self.to_dict()
        for k, v in overrides.items():
            if k not in d or k in ("source", "details"):
                raise ThresholdError(f"unknown quality threshold: {k}")
            d[k] = float(v)
        d["source"] = f"{self.source}; overridden: {', '.join(sorted(overrides))}"
        return QualityThresholds.from_dict(d)


DEFAULT_THRESHOLDS = QualityThresholds()

# Per-threshold multiplier of k. Sharpness: the low tail of log10(Laplacian variance) is cut off by
# the uint8 quantisation floor (~2: even a sigma-3 Gaussian blur of a 200x200 crop keeps ~2-3), so a
# 3-MAD fence sits on the floor and flags nothing; 2 MADs (x 2/3) lands at ~6x below the median,
# where UTKFace crops are visibly blurred (0.4 % of the set).
K_SCALE = {"laplacian_var_min": 2.0 / 3.0}


def _robust_fence(
    values: np.ndarray, k: float, side: str, log: bool = False, fallback_pct: float = 1.0
) -> tuple[float, dict]:
    """One-sided outlier fence median -/+ k*1.4826*MAD (log10 scale if `log`).

    Why robust statistics: the fence adapts to the dataset (a dim webcam set is not "too dark"
    everywhere), and median/MAD are not dragged by the very outliers we want to find. When MAD is
    zero (a degenerate distribution) we fall back to a percentile.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(np.maximum(v, 1e-12))
    if v.size == 0:
        return float("nan"), {"n": 0}
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    if mad > 0:
        fence = med - k * MAD_TO_SIGMA * mad if side == "low" else med + k * MAD_TO_SIGMA * mad
        how = "median-MAD"
    else:
        fence = float(np.percentile(v, fallback_pct if side == "low" else 100 - fallback_pct))
        how = f"percentile {fallback_pct}"
    info = {"median": med, "mad": mad, "k": k, "side": side, "log10": log, "method": how, "n": int(v.size)}
    return (10**fence if log else fence), info


def compute_thresholds(
    df: pd.DataFrame,
    k: float = 3.0,
    overrides: Mapping[str, Any] | None = None,
    base: QualityThresholds = DEFAULT_THRESHOLDS,
) -> QualityThresholds:
    """Thresholds from robust statistics of the audited images themselves (rows with status "ok").

    Why: what counts as "too dark" or "blurry" depends on the dataset; fences at k robust standard
    deviations from the median flag the images that are outliers *for this dataset*. The grayscale
    threshold stays absolute (grayscale is a property, not a degree). `overrides` (from config) win.
    Too few images (< 30) keep `base` (the UTKFace defaults), since statistics would be noise.
    """
    ok = df[df["audit_status"] == "ok"] if "audit_status" in df else df
    if len(ok) < 30:
        t = QualityThresholds(**{**base.to_dict(), "source": f"{base.source} (only {len(ok)} ok images)"})
        return t.with_overrides(overrides)
    details: dict[str, Any] = {}
    vals: dict[str, float] = {}
    specs = [
        ("laplacian_var_min", "laplacian_var", "low", True),
        ("brisque_max", "brisque", "high", False),
        ("brightness_p95_max_dark", "brightness_p95", "low", False),
        ("brightness_p5_min_over", "brightness_p5", "high", False),
        ("contrast_min", "contrast", "low", False),
        ("entropy_min", "entropy", "low", False),
    ]
    for name, col, side, log in specs:
        fence, info = _robust_fence(ok[col].to_numpy(), k * K_SCALE.get(name, 1.0), side, log=log)
        vals[name] = fence if math.isfinite(fence) else getattr(base, name)
        details[name] = {"column": col, **info}
    sides = np.minimum(ok["width"], ok["height"]).to_numpy(dtype=np.float64)
    aspects = ok["aspect"].to_numpy(dtype=np.float64)
    vals["min_side"] = float(0.5 * np.median(sides))
    vals["aspect_expected"] = float(np.median(aspects))
    details["min_side"] = {"rule": "half the median shorter side"}
    details["aspect_expected"] = {"rule": "median width/height"}
    t = QualityThresholds(
        **{
            **base.to_dict(),
            **vals,
            "source": f"robust statistics of this dataset (n={len(ok)}, k={k})",
            "details": details,
        }
    )
    return t.with_overrides(overrides)
