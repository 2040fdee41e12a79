"""Out-of-sample predictions for every image by cross-fitting: a model never scores a label it trained on.

The rows are dealt into K folds (pixel-identical images, same `content_hash`, always share a fold;
stratified by age bin x gender). For each fold i a model is trained on the other K-1 folds and then
predicts fold i. With K=2: train on one half, score the other, and swap.

Strictly out-of-sample. `train()` selects `best.pt` by validation loss, and the validation set here
would be the held-out fold: that selection would peek at the very labels being audited. Cross-fitting
therefore scores with the LAST epoch's weights (`checkpoints/last.pt`), whose choice depends on the
config alone. The per-epoch validation metrics are still computed (on a small random subset of the
held-out fold, `val_max` rows, to keep their cost low) for monitoring only.

Layout of `out_dir`:
    fold_{i}/train.csv, fold_{i}/holdout.csv, fold_{i}/val.csv   the manifests the fold used
    fold_{i}/run/                                                 the trainer's run folder
    fold_{i}/predictions.parquet                                  fold i's out-of-sample predictions
    predictions.parquet                                           all rows, manifest order
    crossfit.json                                                 k, seed, config, per-fold costs

Resumable: a fold whose predictions parquet exists is skipped; a fold whose training was interrupted
resumes from its last completed epoch.

Cost, 2 CPU cores, MobileNetV3-Small from scratch. Default mode (160 px, 18 epochs): K=2 trains two models on
half the data each, i.e. about the compute of one reference run (the reference run: 18 epochs x 19k images,
~100-150 s per epoch on an idle machine = 30-45 min), plus one prediction pass (~1 min) -- estimated from the
reference run's measured epoch times, not run end to end. Cheap mode (`cheap_config`: 96 px, 8 epochs, batch
128) is ~2.8x fewer pixels x 2.25x fewer epochs = ~6x less (estimated, not measured: ~6-8 min idle for the
full 23,708 images). Measured on a heavily shared machine (load 5-11): 64 px, 6 epochs, batch 64 on 2,000
images took 12-22 min for both folds; expect ~2-3 min on an idle one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import write_json, write_parquet
from core.errors import CurateError
from core.labels import AGE_GROUP_EDGES
from trainer.config import TrainConfig, replace

PREDICTION_COLUMNS = [
    *("path", "filename", "content_hash", "age", "gender"),  # the manifest row
    *("age_pred", "gender_prob", "gender_logit_0", "gender_logit_1", "age_abs_error", "gender_loss", "embedding"),
    *("model", "fold"),  # the checkpoint hash of the model that scored the row, and the fold that held it out
]


class CrossfitError(CurateError, ValueError):
    pass


# The fold models' recipes besides the full training run. "thorough" (flag-mislabels' default since 2026-12-06)
# costs 2-2.8x "cheap" (full UTKFace: 25.3 against 12.4 min on 2 cores) and ranks noisy labels much better
# (docs/benchmarks.md: 5% injected noise, gender AP 0.701 -> 0.747, age AP 0.407 -> 0.559;
# docs/cleaning_payoff.md: 20% noise, 0.70 -> 0.79 and 0.51 -> 0.69); its one-cycle spans the whole run.
RECIPES = {
    "cheap": {"image_size": 96, "num_epochs": 8},
    "thorough": {"image_size": 128, "num_epochs": 12, "override_cycle_epoch_count": 12},
}


def recipe_config(cfg: TrainConfig, recipe: str, keep: tuple[str, ...] = ()) -> TrainConfig:
    """`cfg` made into a named cross-fit recipe ("full": unchanged); the fields named in `keep` (image_size,
    num_epochs, batch_size: what the user set) stay as `cfg` has them."""
    if recipe == "full":
        return cfg
    if recipe not in RECIPES:
        raise CrossfitError(f"unknown cross-fit recipe {recipe!r} (known: full, {', '.join(RECIPES)})")
    spec = dict(RECIPES[recipe])
    cycle = spec.pop("override_cycle_epoch_count", None)
    kept = {k: getattr(cfg, k) for k in ("image_size", "num_epochs", "batch_size") if k in keep}
    out = cheap_config(cfg, **{**spec, **kept})
    if cycle is not None and "num_epochs" not in kept:
        out = replace(out, override_cycle_epoch_count=min(cycle, out.num_epochs))
    return out


def cheap_config(cfg: TrainConfig, image_size: int = 96, num_epochs: int = 8, batch_size: int = 128) -> TrainConfig:
    """The cheap mode: smaller images, fewer epochs (one-cycle length scaled to match) and a smaller
    batch (more optimiser steps per epoch, since each fold model sees only (K-1)/K of the data).

    Same model, same recipe, same code path; only the cost (and some accuracy) changes.
    """
    cycle = max(1, round(cfg.override_cycle_epoch_count * num_epochs / cfg.num_epochs))
    # A cycle longer than the run never reaches its low final rate (e.g. `--set num_epochs=4` on the
    # defaults' 15-epoch cycle, already 4 epochs long when it gets here): end it with the run.
    cycle = min(cycle, num_epochs)
    return replace(
        cfg, image_size=image_size, num_epochs=num_epochs, override_cycle_epoch_count=cycle, batch_size=batch_size
    )


def crossfit(
    manifest_df: pd.DataFrame,
    out_dir: str | Path,
    cfg: TrainConfig,
    k: int = 2,
    seed: int = 0,
    progress: bool = True,
    val_max: int = 1000,
    max_batches: int | None = None,
    ray_address: str | None = None,
) -> pd.DataFrame:
    """Train K models on K-1 folds each and predict the held-out fold; return every row's prediction.

    `manifest_df` needs path, age, gender, content_hash (filename is derived from path if absent).
    Returns a DataFrame in the shared prediction schema (`PREDICTION_COLUMNS`), one row per manifest
    row, in manifest order, with `fold` = the fold that held the row out and `model` = the
    checkpoint hash of the model that scored it. `max_batches` caps each epoch: tests only.
    With `ray_address` (core.ray_cluster) the K folds train at once as Ray tasks of `cfg.threads` CPUs each
    (out_dir on a filesystem every node sees); a fold whose node dies is re-run and resumes from its last
    epoch's checkpoint; the results are the sequential path's.
    """
    df = _check_manifest(manifest_df)
    if k < 2:
        raise CrossfitError(f"k must be >= 2 (got {k}): with one fold no row could be held out")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = _nonempty_folds(df, k, seed)
    run = _Run(
        df=df,
        folds=folds,
        out_dir=out_dir,
        cfg=cfg,
        k=k,
        seed=seed,
        progress=progress,
        val_max=val_max,
        max_batches=max_batches,
        meta=_open_meta(out_dir, df, cfg, k, seed),
    )
    if ray_address is None:
        parts = [_fold_predictions(run, i) for i in range(k)]
    else:
        parts = _folds_on_ray(run, ray_address)
    return _assemble(run, parts)


def _folds_on_ray(run: _Run, address: str) -> list[pd.DataFrame]:
    """Every fold as one Ray task; the driver alone writes crossfit.json."""
    from core.ray_cluster import map_unordered

    parts: dict[int, pd.DataFrame] = {}
    work = dataclasses.replace(run, meta={}, progress=False)  # what a task needs: no metadata, no output
    for i, part, fold_meta in map_unordered(_fold_task, range(run.k), shared=(work,), num_cpus=max(1, run.cfg.threads),
                                            address=address):  # fmt: skip
        parts[i] = part
        _record_fold(run, i, fold_meta)
        if run.progress:
            print(f"cross-fit fold {i + 1}/{run.k}: done on Ray", flush=True)
    return [parts[i] for i in range(run.k)]


def _fold_task(i: int, run: _Run) -> tuple[int, pd.DataFrame, dict | None]:
    """A Ray task: fold i's predictions and, when it trained them, their metadata for the driver."""
    part, fold_meta = _fold_work(run, i)
    return i, part, fold_meta


@dataclass
class _Run:
    """One cross-fit's inputs and its growing metadata, handed to each per-fold step as one object."""

    df: pd.DataFrame
    folds: np.ndarray
    out_dir: Path
    cfg: TrainConfig
    k: int
    seed: int
    progress: bool
    val_max: int
    max_batches: int | None
    meta: dict

    @property
    def meta_path(self) -> Path:
        return self.out_dir / "crossfit.json"


def _nonempty_folds(df: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """The fold of every row, refused when a fold would be empty: its model would score nothing."""
    folds = assign_crossfit_folds(df, k=k, seed=seed)
    sizes = np.bincount(folds, minlength=k)
    if (sizes == 0).any():
        raise CrossfitError(f"only {len(df)} distinct row(s) for k={k}: some fold would be empty")
    return folds


def _open_meta(out_dir: Path, df: pd.DataFrame, cfg: TrainConfig, k: int, seed: int) -> dict:
    """`crossfit.json` updated for this run: a folder holding another manifest's folds must not be mixed in."""
    from core.manifest import manifest_hash

    meta_path = out_dir / "crossfit.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    mhash = manifest_hash(df)
    if meta and (meta.get("k"), meta.get("seed"), meta.get("manifest_hash")) != (k, seed, mhash):
        raise CrossfitError(
            f"{out_dir}: holds a cross-fit of another manifest or k/seed (k={meta.get('k')}, "
            f"seed={meta.get('seed')}, n={meta.get('n')}); use another out_dir"
        )
    meta.update(
        k=k,
        seed=seed,
        n=len(df),
        manifest_hash=mhash,
        config=cfg.to_dict(),
        scored_with="last epoch (checkpoints/last.pt)",
    )
    meta.setdefault("folds", {})
    return meta


def _fold_predictions(run: _Run, i: int) -> pd.DataFrame:
    """Fold i's out-of-sample predictions, with its metadata written to crossfit.json when it trained."""
    part, fold_meta = _fold_work(run, i)
    _record_fold(run, i, fold_meta)
    return part


def _record_fold(run: _Run, i: int, fold_meta: dict | None) -> None:
    """A fold that trained: its metadata into crossfit.json (written by the caller's process only)."""
    if fold_meta is not None:
        run.meta["folds"][str(i)] = fold_meta
        write_json(run.meta_path, run.meta)


def _fold_work(run: _Run, i: int) -> tuple[pd.DataFrame, dict | None]:
    """(fold i's predictions, their metadata): read back if stored (resume; no metadata), else trained,
    scored and stored (the predictions file only: crossfit.json is the caller's)."""
    fdir = run.out_dir / f"fold_{i}"
    pred_path = fdir / "predictions.parquet"
    if pred_path.exists():
        part = pd.read_parquet(pred_path)
        if run.progress:
            print(f"cross-fit fold {i + 1}/{run.k}: predictions exist, skipped", flush=True)
        return part, None
    fdir.mkdir(exist_ok=True)
    train_df, hold_df, fcfg = _fold_manifests(run, i, fdir)
    run_dir = fdir / "run"
    last = run_dir / "checkpoints" / "last.pt"
    t0 = time.time()
    _train_fold(run, i, fcfg, run_dir, f"training on {len(train_df)} rows, holding out {len(hold_df)}")
    t_train = time.time() - t0
    part, model_id = _score_holdout(hold_df, last, fcfg, i, run.progress)
    write_parquet(part, pred_path)
    return part, {
        "n_train": len(train_df),
        "n_holdout": len(hold_df),
        "model": model_id,
        "train_seconds": round(t_train, 1),
        "predict_seconds": round(time.time() - t0 - t_train, 1),
    }


def _fold_manifests(run: _Run, i: int, fdir: Path) -> tuple[pd.DataFrame, pd.DataFrame, TrainConfig]:
    """Fold i's train / holdout / val rows, written as the CSVs the trainer reads, and the fold's config."""
    train_df = run.df[run.folds != i].reset_index(drop=True)
    hold_df = run.df[run.folds == i].reset_index(drop=True)
    rng = np.random.default_rng([run.seed, i])
    val_df = (
        hold_df
        if len(hold_df) <= run.val_max
        else hold_df.iloc[np.sort(rng.choice(len(hold_df), run.val_max, replace=False))]
    )
    for name, part_df in (("train", train_df), ("holdout", hold_df), ("val", val_df)):
        part_df.to_csv(fdir / f"{name}.csv", index=False)
    fcfg = replace(
        run.cfg,
        train_path=str(fdir / "train.csv"),
        val_path=str(fdir / "val.csv"),
        seed=run.cfg.seed + i,
        keep_epoch_checkpoints=False,
    )
    return train_df, hold_df, fcfg


def _train_fold(run: _Run, i: int, fcfg: TrainConfig, run_dir: Path, announce: str) -> None:
    """Train fold i's model unless its run completed; an interrupted run resumes from its last epoch."""
    from trainer.train import train

    last = run_dir / "checkpoints" / "last.pt"
    meta_file = run_dir / "metadata.json"
    if meta_file.exists() and json.loads(meta_file.read_text()).get("status") == "complete":
        return
    if run_dir.exists() and not last.exists():
        # Killed before its first epoch ended: nothing to resume, start the fold afresh.
        shutil.rmtree(run_dir)
    if run.progress:
        print(f"cross-fit fold {i + 1}/{run.k}: {announce}", flush=True)
    train(fcfg, run_dir, resume=last.exists(), progress=run.progress, max_batches=run.max_batches)


def _score_holdout(
    hold_df: pd.DataFrame, last: Path, fcfg: TrainConfig, i: int, progress: bool
) -> tuple[pd.DataFrame, str]:
    """(predictions, model id) of the held-out rows, scored with the LAST epoch's weights, never best.pt."""
    from core.manifest import checkpoint_id
    from trainer.data import Batches, decoded_cache
    from trainer.model import model_from_checkpoint
    from trainer.train import predict_arrays, set_threads

    set_threads(fcfg)
    model, _ = model_from_checkpoint(last)
    model_id = checkpoint_id(last)
    px = decoded_cache(hold_df, fcfg.image_size, progress=progress)
    batches = Batches(px, hold_df["age"], hold_df["gender"], fcfg.batch_size, fcfg.channels_last)
    arrays = predict_arrays(model, batches, fcfg, progress=progress, desc=f"predict fold {i + 1}")
    return predictions_frame(hold_df, arrays, model_id=model_id, fold=i), model_id


def _assemble(run: _Run, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Every fold's predictions in manifest order, written with the run's total cost in `crossfit.json`."""
    out = _in_manifest_order(run.df, pd.concat(parts, ignore_index=True), run.folds)
    write_parquet(out, run.out_dir / "predictions.parquet")
    run.meta["total_seconds"] = round(
        sum(f.get("train_seconds", 0) + f.get("predict_seconds", 0) for f in run.meta["folds"].values()), 1
    )
    write_json(run.meta_path, run.meta)
    return out


def predictions_frame(
    df_manifest: pd.DataFrame, arrays: dict[str, np.ndarray], model_id: str, fold: int
) -> pd.DataFrame:
    """The shared prediction schema from a manifest and `predict_arrays` output (same row order).

    gender_prob is P(female) = softmax(logits)[:, 1]; gender_loss is the per-row cross-entropy of the
    label; fold is the cross-fit fold (-1 for a plain evaluate); model is the checkpoint hash.
    """
    n = len(df_manifest)
    age_pred = np.asarray(arrays["age_pred"], dtype=np.float32).reshape(-1)
    logits = np.asarray(arrays["gender_logits"], dtype=np.float32)
    emb = np.asarray(arrays["embedding"], dtype=np.float32)
    if len(age_pred) != n or logits.shape != (n, 2) or emb.shape[0] != n:
        raise CrossfitError(
            f"prediction arrays do not match the manifest: {n} rows, age_pred {age_pred.shape}, "
            f"gender_logits {logits.shape}, embedding {emb.shape}"
        )
    lg = logits.astype(np.float64)
    lse = np.logaddexp(lg[:, 0], lg[:, 1])
    gender = df_manifest["gender"].to_numpy(dtype=np.int64)
    age = df_manifest["age"].to_numpy()
    filename = df_manifest["filename"] if "filename" in df_manifest else df_manifest["path"].map(lambda p: Path(p).name)
    return pd.DataFrame(
        {
            "path": df_manifest["path"].astype(str).to_numpy(),
            "filename": np.asarray(filename, dtype=object),
            "content_hash": df_manifest["content_hash"].astype(str).to_numpy(),
            "age": age,
            "gender": gender,
            "age_pred": age_pred,
            "gender_prob": np.exp(lg[:, 1] - lse).astype(np.float32),
            "gender_logit_0": logits[:, 0],
            "gender_logit_1": logits[:, 1],
            "age_abs_error": np.abs(age_pred - age.astype(np.float32)).astype(np.float32),
            "gender_loss": (lse - lg[np.arange(n), gender]).astype(np.float32),
            "embedding": list(emb),
            "model": model_id,
            "fold": np.full(n, fold, dtype=np.int64),
        }
    )


def assign_crossfit_folds(df: pd.DataFrame, k: int = 2, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) per row: content-hash groups kept whole, stratified by age bin x gender.

    Within each stratum the groups are shuffled with the seed and each goes to the currently emptiest
    fold (counting images), so folds differ in size by at most a few images.
    """
    if df.empty:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    first = df.groupby("content_hash", sort=True).head(1)
    bins = np.searchsorted(AGE_GROUP_EDGES, first["age"].to_numpy(), side="right")
    strata = first["gender"].astype(int).to_numpy() * 100 + bins
    sizes = df["content_hash"].value_counts()
    fill = np.zeros(k, dtype=np.int64)
    group_fold: dict[str, int] = {}
    hashes_all = first["content_hash"].to_numpy()
    for s in np.unique(strata):
        hashes = hashes_all[strata == s]
        for h in hashes[rng.permutation(len(hashes))]:
            f = int(np.argmin(fill))
            group_fold[h] = f
            fill[f] += sizes[h]
    return df["content_hash"].map(group_fold).to_numpy(dtype=np.int64)


def _check_manifest(manifest_df: pd.DataFrame) -> pd.DataFrame:
    """The manifest validated up front, so a bad row fails before hours of training rather than after."""
    missing = [c for c in ("path", "age", "gender", "content_hash") if c not in manifest_df.columns]
    if missing:
        raise CrossfitError(f"manifest lacks column(s) {', '.join(missing)}")
    if manifest_df.empty:
        raise CrossfitError("manifest has no rows")
    df = manifest_df.reset_index(drop=True).copy()
    df["content_hash"] = df["content_hash"].astype(str)
    if df["path"].duplicated().any():
        raise CrossfitError(f"manifest lists {int(df['path'].duplicated().sum())} path(s) twice")
    bad = df["age"].isna() | df["gender"].isna() | ~df["gender"].isin([0, 1])
    if bad.any():
        raise CrossfitError(
            f"{int(bad.sum())} row(s) without a usable age/gender label, first: {df.loc[bad, 'path'].iloc[0]}"
        )
    if "filename" not in df:
        df["filename"] = df["path"].map(lambda p: Path(p).name)
    return df


def _in_manifest_order(df: pd.DataFrame, preds: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Rows of `preds` re-ordered to the manifest; checks each row was predicted once, by its own fold."""
    preds = preds.drop_duplicates("path", keep="last").set_index("path")
    missing = ~df["path"].isin(preds.index)
    if missing.any():
        raise CrossfitError(
            f"{int(missing.sum())} manifest row(s) have no out-of-sample prediction "
            f"(stale fold parquet?), first: {df.loc[missing, 'path'].iloc[0]}"
        )
    out = preds.loc[df["path"]].reset_index()
    if not np.array_equal(out["fold"].to_numpy(), folds):
        raise CrossfitError("stored fold predictions do not match this manifest's fold assignment; use a fresh out_dir")
    return out[PREDICTION_COLUMNS]
