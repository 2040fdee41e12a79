"""The quality verdict `curate predict` prints next to each prediction.

A production pipeline should not trust an age/gender prediction on a black, blurred or tiny photo:
the verdict says "usable" or why not ("too dark; blurry"), judged against thresholds from an audit of
the training data (`curate audit` writes them) or the built-in UTKFace defaults.

What is judged is what the model saw: for a face found in a photo and re-aligned, its aligned 200x200 crop
(`quality_of` "aligned face"); else the file itself (`quality_of` "image": a UTKFace-style crop used as it is).
Judged whole, every ordinary photo failed UTKFace's 200x200-square rule ("odd size") whatever its face looked
like. A photo without a face or a file that did not decode gets no prediction, and no verdict either.
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
    face crop, BGR, that the model saw instead of it). A row without a prediction (no face found, an unreadable
    file: `status` other than "ok") is not judged: there is no input of the model's to judge, and the whole
    photo's verdict ("odd size") would read as a reason for the missing answer."""
    judged = (df["status"] == "ok").to_numpy() if "status" in df else np.ones(len(df), bool)
    verdicts = iter(quality_verdict([i for i, j in zip(images, judged) if j], thresholds_path) if judged.any() else [])
    out = df.copy()
    ok, said, of = [], [], []
    for image, j in zip(images, judged):
        v = next(verdicts) if j else None
        ok.append(None if v is None else v.ok)
        said.append("not judged: no prediction" if v is None else _said(v))
        of.append("" if v is None else "aligned face" if isinstance(image, np.ndarray) else "image")
    out["quality_ok"], out["quality_verdict"], out["quality_of"] = ok, said, of
    return out


def _said(v) -> str:
    return "usable" if v.ok else "; ".join(v.reasons) or v.status
