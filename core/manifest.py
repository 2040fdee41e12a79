"""Split manifests (one row per image: path, labels, content hash, fold) and the hashes that name
runs and models.

Why here: training, cross-fitting, evaluation, comparison and the FiftyOne ingest all read manifests
and must agree on which manifest (by hash) and which model (by file hash) produced a result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import CurateError

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("path", "age", "gender", "content_hash")
# A split manifest's columns, in order (`curate split`); datasets read from a labels table add id and
# labels_table, aligned photos (`curate split --align`) their face columns.
MANIFEST_COLUMNS = [
    "path",
    "filename",
    "age",
    "gender",
    "race",
    "fold",
    "split",
    "content_hash",
    "width",
    "height",
    "name_note",
]
# Optional per-row weights of each label in the training loss (1 = used, 0 = ignored; blank = 1): what
# `curate export --mask-suspects` writes, so a suspected gender stops teaching the gender head while the
# image still trains the age head (and vice versa), instead of the whole image being dropped.
LABEL_WEIGHTS = ("gender_label_weight", "age_label_weight")
TRAIN_SPLIT = "train_8_folds_first"
TEST_SPLIT = "test_2_folds_last"
N_FOLDS = 10
TEST_FOLDS = (8, 9)


class DataError(CurateError, ValueError):
    """A manifest, image or checkpoint cannot be used as given."""


def manifest_file(path: str | Path) -> Path:
    """A split folder (holding manifest.csv) or a manifest file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.csv"
    if not p.is_file():
        raise DataError(f"{p}: manifest not found (run `curate split` first)")
    return p


def read_manifest(path: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Read a manifest (CSV or Parquet) and check its columns, rows and (optionally) its files."""
    import numpy as np
    import pandas as pd

    p = manifest_file(path)
    try:
        df = (
            pd.read_parquet(p)
            if p.suffix == ".parquet"
            else pd.read_csv(p, dtype={"content_hash": str}, low_memory=False)
        )
    except Exception as e:  # pandas/pyarrow raise a zoo of types for a damaged or wrong file
        raise DataError(f"{p}: not a readable manifest ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from None
    missing_cols = [c for c in REQUIRED if c not in df.columns]
    if missing_cols:
        raise DataError(f"{p}: missing column(s) {', '.join(missing_cols)}")
    if df.empty:
        raise DataError(f"{p}: manifest has no rows")
    for c in LABEL_WEIGHTS:
        if c in df:
            w = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
            bad = (w.isna() & df[c].notna() & (df[c].astype(str).str.strip() != "")) | (w < 0) | (w > 1)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{p}: {c} must be a number in [0, 1] (blank = 1); row {i + 2} has {df[c].iloc[i]}")
            df[c] = w.fillna(1.0).astype(np.float32)
    if check_files:
        missing = [x for x in df["path"] if not os.path.exists(x)]
        if missing:
            raise DataError(f"{p}: {len(missing)} image(s) listed but missing, first: {missing[0]}")
    return df.reset_index(drop=True)


def manifest_hash(df: pd.DataFrame) -> str:
    """16 hex digits over content hashes and labels: two runs on the same images and labels match."""
    h = hashlib.sha256()
    for col in ("content_hash", "age", "gender"):
        h.update(df[col].astype(str).str.cat(sep="\n").encode())
    w = label_weights(df)
    if w is not None:  # masked labels train another model; unmasked manifests keep their old hashes
        h.update(w.tobytes())
    return h.hexdigest()[:16]


def label_weights(df: pd.DataFrame):
    """(N, 2) float32 weights of (gender, age) labels in the training loss, or None when every label counts
    fully (no weight columns, or all 1): the trainer then runs its unweighted loss unchanged."""
    import numpy as np

    if not any(c in df for c in LABEL_WEIGHTS):
        return None
    w = np.column_stack([np.asarray(df[c], np.float32) if c in df else np.ones(len(df), np.float32)
                         for c in LABEL_WEIGHTS])  # fmt: skip
    w = np.where(np.isnan(w), np.float32(1), w)
    return None if bool((w == 1).all()) else w


def masked_label_counts(df: pd.DataFrame) -> dict:
    """How many gender and age labels the training loss ignores or down-weights (weight < 1)."""
    w = label_weights(df)
    if w is None:
        return {"gender": 0, "age": 0}
    return {c.removesuffix("_label_weight"): int((w[:, i] < 1).sum()) for i, c in enumerate(LABEL_WEIGHTS)}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed (checkpoints are megabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_id(path: str | Path) -> str:
    """The `model` column of every prediction: the first 12 hex digits of the checkpoint's sha256."""
    return file_sha256(path)[:12]


def default_cache_dir() -> Path:
    """Decoded-image and audit caches: $CURATE_CACHE_DIR, else ~/.cache/utkface-curate."""
    return Path(os.environ.get("CURATE_CACHE_DIR", Path.home() / ".cache" / "utkface-curate"))
