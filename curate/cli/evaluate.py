"""`curate evaluate` and `curate predict`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from core.atomic import write_csv, write_json, write_parquet
from curate.cli.common import (
    TIGHT_MODELS,
    fail,
    model_option,
    path_option,
    ray_option,
    resolve_checkpoint,
    tta_option,
    which_option,
)


@click.command()
@path_option("--run", help="Run folder from `curate train` (uses best.pt).")
@which_option
@path_option("--checkpoint", help="A checkpoint file instead of --run.")
@path_option(
    "--manifest",
    help="Split folder or manifest to evaluate on [default: the run's val_path, else dataset/test_2_folds_last].",
)
@path_option("--out", "out_dir", help="Output folder [default: RUN/eval/<split name> (<split name>_last with --which "
             "last), else eval/<split name>].")  # fmt: skip
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@tta_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate(
    run: Path | None,
    which: str,
    checkpoint: Path | None,
    manifest: Path | None,
    out_dir: Path | None,
    batch_size: int,
    tta: bool,
    quiet: bool,
) -> None:
    """Evaluate a model: metric tables (CSV + Markdown), plots (PNG) and per-sample predictions.

    predictions.parquet holds, per image: path, true age/gender, age_pred, gender_prob (P(female)),
    logits, losses and the 576-d embedding; the audits and FiftyOne steps read it.
    """
    from trainer.evaluate import evaluate_predictions, predict_manifest
    from trainer.model import load_checkpoint
    from trainer.train import library_versions

    ckpt_path = resolve_checkpoint(run, checkpoint, which)
    ckpt = load_checkpoint(ckpt_path)
    if manifest is None:
        manifest = _run_split(run, ckpt)
    split_name = manifest.parent.name if manifest.name == "manifest.csv" else manifest.stem if manifest.suffix else (
        manifest.name)  # fmt: skip
    if out_dir is None:
        out_dir = (run / "eval" / split_name) if run is not None else Path("eval") / split_name
        out_dir = out_dir.with_name(f"{out_dir.name}_last") if which == "last" and run is not None else out_dir
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir}: is a file; --out names the folder the tables and plots go into")
    pred = predict_manifest(ckpt_path, manifest, batch_size=batch_size, progress=not quiet, tta=tta)
    if run is not None and which == "best" and _selected_on(run, pred):
        click.echo(
            f"note: {ckpt_path} is the epoch with the lowest validation loss on this same split, so "
            "these figures are slightly optimistic; `--which last` gives the final weights",
            err=True,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(pred, out_dir / "predictions.parquet")
    tables = evaluate_predictions(pred, out_dir)
    g = tables["gender_metrics"].set_index("class")
    a = tables["age_metrics"].iloc[0]
    epoch = ckpt.get("epoch")
    write_json(
        out_dir / "evaluation.json",
        {
            "checkpoint": str(ckpt_path),
            "model": pred["model"].iloc[0],
            "manifest": str(manifest),
            "n": len(pred),
            "age_mae": float(a["mae"]),
            "gender_accuracy": float(g.loc["overall", "accuracy"]),
            "weights_used": ckpt.get("weights_used"),
            "epoch": None if epoch is None else int(epoch) + 1,  # counted from 1, as metadata.json's best_epoch
            "image_size": ckpt.get("config", {}).get("image_size"),
            "tta": "horizontal flip (mean of 2 passes)" if tta else "none",
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": library_versions(),
        },
    )
    click.echo(
        f"{len(pred)} images: age MAE {a['mae']:.3f}, RMSE {a['rmse']:.3f}, R2 {a['r2']:.3f} | "
        f"gender accuracy {100 * g.loc['overall', 'accuracy']:.2f}%, AUC {g.loc['overall', 'auc_roc']:.4f}"
        f"{' (flip TTA)' if tta else ''}"
    )
    click.echo(tables["age_metrics_by_age_group"].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    click.echo(f"tables, plots and predictions.parquet -> {out_dir}")


def _run_split(run: Path | None, ckpt: dict) -> Path:
    """The split a run validated on, where metadata.json recorded it (an absolute path, checked by its hash), so
    that `evaluate --run` from another folder finds that split, not a `dataset/...` of the folder it runs in."""
    import json

    from core.manifest import manifest_hash, read_manifest

    if run is None:
        return Path("dataset/test_2_folds_last")
    try:
        meta = json.loads((run / "metadata.json").read_text())
    except (OSError, ValueError):
        meta = {}
    path = Path(meta.get("val_manifest") or ckpt.get("config", {}).get("val_path") or "dataset/test_2_folds_last")
    if meta.get("val_manifest_hash") and path.exists():
        now = manifest_hash(read_manifest(path))
        if now != meta["val_manifest_hash"]:
            fail(f"{path}: holds other images or labels than {run} validated on (hash {meta['val_manifest_hash']} "
                 f"then, {now} now); pass --manifest to evaluate on it anyway")  # fmt: skip
    return path


def _selected_on(run: Path, pred) -> bool:
    """Whether the run chose its best epoch on the images of `pred` (the reference config validates on test)."""
    import json

    from core.manifest import manifest_hash

    try:
        val_hash = json.loads((run / "metadata.json").read_text()).get("val_manifest_hash")
    except (OSError, ValueError):
        return False
    return val_hash == manifest_hash(pred)  # predictions keep the manifest's rows and order


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option
@path_option("--out", "out_csv", help="Write a CSV instead of printing.")
@path_option(
    "--quality-thresholds",
    help="Quality thresholds JSON from `curate audit` (default: the shipped UTKFace thresholds).",
)
@tta_option
@click.option(
    "--faces",
    type=click.Choice(["auto", "detect", "none"]),
    default="auto",
    show_default=True,
    help="auto: find the face (YuNet, offline) and align it to UTKFace's geometry unless the image already is "
    "an aligned crop; detect: always align the largest face; none: use the image as it is.",
)
@click.option(
    "--tight-model",
    metavar="PATH|none",
    multiple=True,
    help="Model for faces cut tighter than UTKFace's (a fifth or more of the aligned crop outside the image: "
    "chin, hair or ears missing); repeated: their answers averaged; none: the main model for every face. "
    "[default: the shipped curate/models/tight_crop.pt and tight_crop_2.pt with the shipped model, none with "
    "--model]",
)
@ray_option("Prediction in shards of 1,024 images, one task each (the quality verdict stays on this machine)")
@click.option(
    "--quiet", is_flag=True, help="No progress bar and no note of the files in folders skipped as not images."
)
def predict(
    inputs: tuple[Path, ...],
    checkpoint: Path | None,
    out_csv: Path | None,
    quality_thresholds: Path | None,
    tta: bool,
    faces: str,
    tight_model: tuple[str, ...],
    ray_address: str | None,
    quiet: bool,
) -> None:
    """Predict age and gender for images or folders, with a face status and an image-quality verdict per image.

    Folders are searched with their subfolders (`file`: the path below the folder given). Ordinary photos
    work: the face is found and aligned first (a photo without a face says "no face found"; with several,
    the largest is used, the status says how many and face_x/y/w/h say where it is). The quality verdict
    judges what the model saw (`quality_of`: the aligned face, or the image as it is), so a production
    pipeline can refuse an unusable photo ("too dark", "blurry") before trusting the model.
    """
    import pandas as pd

    from core.atomic import check_output
    from trainer.predict import predict_images

    check_output(out_csv)  # before minutes of predictions, not after
    files, names = _input_files(inputs, quiet)
    if quality_thresholds is not None:  # check it before minutes of predictions, not after
        from audits.thresholds import QualityThresholds

        try:
            QualityThresholds.load(quality_thresholds)
        except (OSError, ValueError, TypeError) as e:
            fail(
                f"{quality_thresholds}: not usable quality thresholds ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120]})"
            )
    ckpt = resolve_checkpoint(None, checkpoint)
    tight = _tight_models(tight_model, checkpoint)
    if faces == "none" and tight and tight_model:
        click.echo("note: --tight-model is not used with --faces none (no face is re-aligned, so none is known "
                   "to be cut tighter than UTKFace's): every image goes to the main model", err=True)  # fmt: skip
    if ray_address is not None:
        from trainer.predict import predict_images_on_ray

        rows = predict_images_on_ray(
            ckpt.resolve(), [f.resolve() for f in files], tta=tta, address=ray_address, faces=faces,
            tight_checkpoint=[t.resolve() for t in tight], keep_crops=True,
        )  # fmt: skip
    else:
        rows = predict_images(
            ckpt, files, tta=tta, faces=faces, tight_checkpoint=tight, keep_crops=True, progress=not quiet
        )
    seen = [r.pop("crop", None) for r in rows]  # the aligned face the model saw, where it was re-aligned
    df = _with_box_ints(pd.DataFrame(rows))
    df.insert(1, "file", names)
    df = _add_quality(df, [f if c is None else c for f, c in zip(files, seen)], quality_thresholds)
    if out_csv:
        write_csv(df, out_csv)
        click.echo(f"{len(df)} predictions -> {out_csv}")
    else:
        click.echo(_shown(df).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def _input_files(inputs: tuple[Path, ...], quiet: bool) -> tuple[list[Path], list[str]]:
    """The files to predict for, and each one's name for the `file` column: its path below the folder given
    (unique, where two subfolders hold the same name), or a file argument as given.

    Folders are searched recursively (core.images.walk_images); files named like images in a format that is
    not read (GIF, TIFF) are kept so that their row says so; the other files skipped are counted aloud."""
    from core.images import IMAGE_EXTS, UNSUPPORTED_EXTS, walk_images

    files: list[Path] = []
    names: list[str] = []
    skipped: dict[str, int] = {}
    for p in inputs:
        if p.is_dir():
            found, skip = walk_images(p, IMAGE_EXTS + UNSUPPORTED_EXTS)
            files += found
            names += [q.relative_to(p).as_posix() for q in found]
            for ext, n in skip.items():
                skipped[ext] = skipped.get(ext, 0) + n
        elif p.exists():
            files.append(p)
            names.append(str(p))
        else:
            fail(f"{p}: no such file or folder")
    if skipped and not quiet:
        click.echo(_skipped_note(skipped), err=True)
    if not files:
        fail(f"no images found in {', '.join(map(str, inputs))}")
    return files, names


def _skipped_note(skipped: dict[str, int]) -> str:
    """ "note: skipped 3 files that are not images (.txt: 2, no extension: 1)"."""
    n = sum(skipped.values())
    exts = ", ".join(f"{ext or 'no extension'}: {k}" for ext, k in skipped.items())
    what = "files that are not images" if n > 1 else "file that is not an image"
    return f"note: skipped {n} {what} ({exts})"


def _with_box_ints(df):
    """The face box columns as whole pixels, blank where no face was used (pandas would make them floats)."""
    from trainer.predict import BOX_COLUMNS

    for c in BOX_COLUMNS:
        if c in df:
            df[c] = df[c].astype("Int64")
    return df


def _shown(df):
    """The terminal's columns: `file` (`path` where two files share a name), the model where two answered, and
    the face box where a photo held several faces (which one the prediction is for)."""
    show = ["file" if df["file"].is_unique else "path", "status", "face_status", "age_pred", "gender_pred"]
    show += ["confidence", "quality_verdict"]
    cols = [c for c in show if c in df]
    if "model" in df and df["model"].nunique() > 1:  # say which faces the tight-crop model answered
        cols.insert(cols.index("age_pred"), "model")
    if "n_faces" in df and (df["n_faces"] > 1).any():
        df = df.assign(face_box=[_box_text(r) for r in df.to_dict("records")])
        cols.insert(cols.index("face_status") + 1, "face_box")
    return df[cols]


def _box_text(row: dict) -> str:
    """ "x,y wxh" of the face used, "" without one."""
    import pandas as pd

    from trainer.predict import BOX_COLUMNS

    v = [row.get(c) for c in BOX_COLUMNS]
    return "" if any(pd.isna(x) for x in v) else "{},{} {}x{}".format(*v)


def _tight_models(values: tuple[str, ...], checkpoint: Path | None) -> list[Path]:
    """--tight-model's checkpoints: the given ones, none, or the shipped ones beside the shipped main model
    (a model of one's own gets no companion unless asked: the shipped ones were tuned for the shipped weights)."""
    if not values:
        return [t for t in TIGHT_MODELS if t.exists()] if checkpoint is None else []
    if any(v.lower() == "none" for v in values):
        if len(values) > 1:
            fail("--tight-model none means no tight-crop model: give it alone")
        return []
    for v in values:
        if not Path(v).is_file():
            fail(f"{v}: no such tight-crop model (a checkpoint, or none)")
    return [Path(v) for v in values]


def _add_quality(df, images: list, thresholds_path: Path | None):
    """Attach the audits' quality verdict of each file, or of the aligned face crop the model saw instead
    (curate.quality_verdict); without BRISQUE weights (offline, not cached) say so and go on."""
    from audits.brisque import BrisqueWeightsError
    from curate.quality_verdict import attach_verdict

    try:
        return attach_verdict(df, images, thresholds_path)
    except BrisqueWeightsError as e:
        click.echo(f"warning: no quality verdict: {str(e).splitlines()[0]}", err=True)
        return df.assign(quality_ok=None, quality_verdict="unavailable")
