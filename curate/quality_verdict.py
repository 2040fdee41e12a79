"""The quality verdict `curate predict` prints next to each prediction.

A production pipeline should not trust an age/gender prediction on a black, blurred or tiny photo:
the verdict says "usable" or why not ("too dark; blurry"), judged against thresholds from an audit of
the training data (`curate audit` writes them) or the built-in UTKFace defaults.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audits.quality import quality_verdict


def attach_verdict(df: pd.DataFrame, files: list[Path], thresholds_path: Path | None = None) -> pd.DataFrame:
    verdicts = quality_verdict(files, thresholds_path)
    out = df.copy()
    out["quality_ok"] = [v.ok for v in verdicts]
    out["quality_verdict"] = ["usable" if v.ok else ("; ".join(v.reasons) or v.status) for v in verdicts]
    return out
