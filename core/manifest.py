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
    return h.hexdigest()[:16]


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
