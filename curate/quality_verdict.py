"""The quality verdict `curate predict` prints next to each prediction.

A production pipeline should not trust an age/gender prediction on a black, blurred or tiny photo:
the verdict says "usable" or why not ("too dark; blurry"), judged against thresholds from an audit of
the training data (`curate audit` writes them) or the built-in UTKFace defaults.

What is judged is what the model saw: for a face found in a photo and re-aligned, its aligned 200x200 crop
(`quality_of` "aligned face"); else the file itself (`quality_of` "image": a UTKFace-style crop used as it is,
a photo without a face, a file that did not decode). Judged whole, every ordinary photo failed UTKFace's
200x200-square rule ("odd size") whatever its face looked like.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audits.quality import quality_verdict


def attach_verdict(
    df: pd.DataFrame, images: list[Path | np.ndarray], thresholds_path: Path | None = None
) -> pd.DataFrame:
    """`df` with quality_ok, quality_verdict and quality_of, one per row of `images` (a file, or the aligned
    face crop, BGR, that the model saw instead of it)."""
    verdicts = quality_verdict(images, thresholds_path)
    out = df.copy()
    out["quality_ok"] = [v.ok for v in verdicts]
    out["quality_verdict"] = ["usable" if v.ok else ("; ".join(v.reasons) or v.status) for v in verdicts]
    out["quality_of"] = ["aligned face" if isinstance(i, np.ndarray) else "image" for i in images]
    return out
