"""The inputs of `curate score`: one table, one row per usable image, keyed by path and content hash.

    folder --scan--> manifest (labels, content hash, split, fold)
    manifest + checkpoint --trainer.evaluate.predict_manifest--> predictions (shared schema)
    manifest --audits runner--> audits (quality, skin tone, duplicates)
    -> join on path (checked against the content hash) -> `score_table`

Every arrow is a file under the cache folder (`$CURATE_CACHE_DIR/score/`) whose name is a hash of what
produced it (the folder listing with sizes and mtimes; the model file's hash plus the manifest's paths
and content hashes), so a second `curate score` on unchanged inputs recomputes nothing. Predictions or
audits given as files are used as they are. A prediction or audit row whose content hash differs from
the image's current one is stale: it is dropped and the row gets a status saying so, never a wrong
value.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import write_parquet
from core.errors import CurateError
from core.schema import upgrade_columns

PREDICTION_REQUIRED = ("path", "age_pred", "gender_prob", "gender_logit_0", "gender_logit_1", "model")


class InputError(CurateError, ValueError):
    pass


def cache_dir() -> Path:
    from core.manifest import default_cache_dir

    d = default_cache_dir() / "score"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------------------- manifest
def folder_manifest(
    data_dir: Path, seed: int = 0, progress: bool = True, previous: dict[str, int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable rows with split and fold, rejected rows) for a UTKFace folder or a labels table (file, or a
    folder holding labels.csv / labels.parquet), as `curate split` would assign them; `previous`
    (content hash -> fold, e.g. the dataset's) keeps the folds images already have."""
    from curate.sources import labels_table
    from curate.splits import TEST_FOLDS, TEST_SPLIT, TRAIN_SPLIT, SplitError, assign_folds, scan_source

    data_dir = Path(data_dir)
    table = labels_table(data_dir)
    if table is None and not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a directory, nor a labels table")
    listing = _listing(data_dir) if table is None else _listing(table.parent, recursive=True)
    key = _key(str(data_dir.resolve()), repr(listing), f"seed={seed}", repr(sorted((previous or {}).items())))
    usable_p, rejected_p = cache_dir() / f"scan_{key}.parquet", cache_dir() / f"scan_{key}.rejected.parquet"
    if usable_p.exists() and rejected_p.exists():
        return pd.read_parquet(usable_p), pd.read_parquet(rejected_p)
    try:
        usable, rejected = scan_source(data_dir, progress=progress)
    except SplitError as e:
        raise InputError(str(e)) from None
    usable = usable.sort_values("filename", kind="stable").reset_index(drop=True)
    usable["fold"] = assign_folds(usable, seed=seed, previous=previous)
    usable["split"] = np.where(usable["fold"].isin(TEST_FOLDS), TEST_SPLIT, TRAIN_SPLIT)
    write_parquet(usable, usable_p)
    write_parquet(rejected, rejected_p)
    return usable, rejected


def _listing(folder: Path, recursive: bool = False) -> list[tuple]:
    """What identifies a folder's contents for the scan cache: names, sizes, mtimes (and, for a labels
    table's folder, those of its subfolders: the images may sit anywhere below it)."""
    if not recursive:
        return sorted(_entry_key(e) for e in os.scandir(folder))
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        with os.scandir(root) as it:
            out += [(os.path.relpath(root, folder), *_entry_key(e)) for e in it if e.name in files]
    return sorted(out)


def _entry_key(e: os.DirEntry) -> tuple:
    """What identifies a folder entry for the scan cache; a broken link or a loop has no size to read."""
    try:
        st = e.stat()
        return e.name, st.st_size, st.st_mtime_ns
    except OSError as err:
        return e.name, -1, err.errno or -1


def file_manifest(path: Path, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A manifest file or split folder; rows whose image is gone are returned as rejected ("missing file")."""
    from core.manifest import DataError, read_manifest
    from curate.splits import TEST_FOLDS, TEST_SPLIT, TRAIN_SPLIT, assign_folds

    try:
        df = read_manifest(path, check_files=False)
    except DataError as e:
        raise InputError(str(e)) from None
    df["path"] = [str(Path(p).resolve()) for p in df["path"]]
    if "filename" not in df:
        df["filename"] = [Path(p).name for p in df["path"]]
    if "fold" not in df:
        df["fold"] = assign_folds(df, seed=seed)
    if "split" not in df:
        df["split"] = np.where(df["fold"].isin(TEST_FOLDS), TEST_SPLIT, TRAIN_SPLIT)
    exists = np.array([os.path.exists(p) for p in df["path"]], bool)
    rejected = df.loc[~exists, ["path", "filename"]].assign(reason="missing file")
    return df[exists].reset_index(drop=True), rejected.reset_index(drop=True)


# ------------------------------------------------------------------------------------ predictions
def read_table(path: Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        return pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path, dtype={"content_hash": str})
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear error
        raise InputError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None


def check_predictions(pred: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in PREDICTION_REQUIRED if c not in pred.columns]
    if missing:
        raise InputError(f"{source}: not in the prediction schema, missing column(s) {', '.join(missing)}")
    pred = pred.copy()
    pred["path"] = [str(Path(p).resolve()) for p in pred["path"]]
    return pred.drop_duplicates("path", keep="last")


def compute_predictions(manifest: pd.DataFrame, checkpoint: Path, progress: bool = True) -> pd.DataFrame:
    """Predictions of `checkpoint` for every manifest row, cached by model hash + paths + content hashes."""
    from core.manifest import checkpoint_id
    from trainer.evaluate import predict_manifest

    model_id = checkpoint_id(checkpoint)
    key = _key(model_id, "\n".join(manifest["path"]), "\n".join(manifest["content_hash"].astype(str)))
    p = cache_dir() / f"predictions_{model_id}_{key}.parquet"
    if p.exists():
        return pd.read_parquet(p)
    pred = predict_manifest(
        checkpoint, manifest, batch_size=64, threads=int(os.environ.get("OMP_NUM_THREADS", 0) or 0), progress=progress
    )
    write_parquet(pred, p)
    return pred


# ----------------------------------------------------------------------------------------- audits
def audits_available() -> bool:
    try:
        import audits.runner  # noqa: F401
    except ImportError:
        return False
    return True


def compute_audits(manifest: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """Every audit for every manifest row through `audits.runner.run_audit` (which caches per content
    hash itself); the joined table is cached by audit version + paths + content hashes."""
    import audits.runner as runner

    key = _key(runner.AUDIT_VERSION, "\n".join(manifest["path"]), "\n".join(manifest["content_hash"].astype(str)))
    p = cache_dir() / f"audits_{key}.parquet"
    if p.exists():
        return pd.read_parquet(p)
    labels = manifest[[c for c in ("age", "gender", "race") if c in manifest]].reset_index(drop=True)
    workers = int(os.environ.get("CURATE_AUDIT_WORKERS", "0")) or None  # 1: in this process, no pool
    res = runner.run_audit(
        manifest["path"].tolist(), labels=labels, config=runner.AuditConfig(progress=progress, workers=workers)
    )
    write_parquet(res.table, p)
    return res.table


# ------------------------------------------------------------------------------------------- join
def join_inputs(manifest: pd.DataFrame, pred: pd.DataFrame | None, audit: pd.DataFrame | None) -> pd.DataFrame:
    """One row per manifest row: labels + prediction columns + audit columns (schema-1 audit tables are
    read under the one schema's names), with `pred_status` / `audit_status` saying "stale: content changed" where the
    stored row's content hash is not the image's."""
    out = manifest.reset_index(drop=True).copy()
    out["content_hash"] = out["content_hash"].astype(str)
    if pred is not None:
        keep = [c for c in pred.columns if c not in ("age", "gender", "filename", "fold")]
        p = pred[keep].rename(columns={"content_hash": "_pred_hash"})
        out = out.merge(p, on="path", how="left")
        stale = (
            out["_pred_hash"].notna() & (out["_pred_hash"].astype(str) != out["content_hash"])
            if "_pred_hash" in out
            else pd.Series(False, index=out.index)
        )
        have = out["age_pred"].notna() & ~stale
        out["pred_status"] = np.where(have, "ok", np.where(stale, "stale: content changed", "no prediction"))
        pcols = [c for c in p.columns if c not in ("path", "_pred_hash")]
        _blank(out, ~have, pcols)
        out = out.drop(columns=[c for c in ("_pred_hash",) if c in out])
    if audit is not None:
        a = upgrade_columns(audit.drop_duplicates("path", keep="last"), "audit table")
        a["path"] = [str(Path(x).resolve()) for x in a["path"]]
        a = a.rename(columns={"content_hash": "_audit_hash"})
        a = a.drop(columns=[c for c in a.columns if c in out.columns and c != "path"])
        out = out.merge(a, on="path", how="left")
        if "_audit_hash" in out:
            stale = out["_audit_hash"].notna() & (out["_audit_hash"].astype(str) != out["content_hash"])
            acols = [c for c in a.columns if c not in ("path", "_audit_hash")]
            _blank(out, stale, acols)
            status = out["audit_status"] if "audit_status" in out else pd.Series("ok", index=out.index)
            out["audit_status"] = np.where(
                stale, "stale: content changed", np.where(out["_audit_hash"].isna(), "no audit", status.fillna("ok"))
            )
            out = out.drop(columns=["_audit_hash"])
        out.attrs["audit_columns"] = [c for c in a.columns if c not in ("path", "_audit_hash")] + (
            ["audit_status"] if "audit_status" not in a.columns else []
        )
    return out


def _blank(df: pd.DataFrame, mask: pd.Series, cols: list[str]) -> None:
    """Set `cols` to missing where `mask` (object dtype where needed: pandas refuses NaN in bool)."""
    if not mask.any():
        return
    for c in cols:
        if df[c].dtype == bool or pd.api.types.is_integer_dtype(df[c]):
            df[c] = df[c].astype(object)
        df.loc[mask, c] = None
