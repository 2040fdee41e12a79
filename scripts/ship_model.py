"""Make a finished `curate train` run the shipped default model (curate/models/default.pt + its card).

The shipped file keeps only what prediction needs (weights, config, epoch, weights used, metrics), not
the optimizer state, so it stays well under the 10 MB limit; the card (default.json) records where it
came from, its test metrics from `curate evaluate` (flip TTA and one plain pass), versions and hash,
so that a reader can check every figure in README.md and docs/model.md against a file.

Usage:
  curate evaluate --checkpoint runs/NAME/checkpoints/last.pt --out runs/NAME/eval_tta
  curate evaluate --checkpoint runs/NAME/checkpoints/last.pt --out runs/NAME/eval_plain --no-tta
  python scripts/ship_model.py runs/NAME --config configs/default_model.yaml \
      --trained-on "UTKFace train_8_folds_first, oversampled (27,053 images)" \
      --train-manifest dataset/train_8_folds_first/manifest.csv
  python scripts/ship_model.py --training-record-only dataset/train_8_folds_first/manifest.csv

--train-manifest writes curate/models/default.train_hashes.npy (the content hashes of every training image)
and the card's `training_images` record (core/training_set.py): `curate flag-mislabels` uses the shipped
model's predictions as out-of-sample only for images whose hash is not in it. Pass the distinct images the
run trained on (an oversampled manifest repeats them; the hash file keeps each once).

A run trained before `curate train` recalibrated BatchNorm over the whole training set at its end:
run scripts/recalibrate_bn.py RUN first, evaluate RUN/checkpoints/last_bn_all.pt (--eval-tta,
--eval-plain) and pass --checkpoint last_bn_all. A warm-restarted run's card lists every stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.atomic import write_json  # noqa: E402
from core.manifest import file_sha256, read_manifest  # noqa: E402
from core.training_set import write_record  # noqa: E402
from trainer.model import load_checkpoint, save_torch  # noqa: E402

MODELS = ROOT / "curate" / "models"


def headline_metrics(eval_dir: Path) -> dict:
    """The headline figures of one `curate evaluate` output folder."""
    age = pd.read_csv(eval_dir / "age_metrics.csv").iloc[0]
    g = pd.read_csv(eval_dir / "gender_metrics.csv").set_index("class").loc["overall"]
    return {
        "age_mae": round(float(age["mae"]), 3),
        "age_rmse": round(float(age["rmse"]), 3),
        "age_r2": round(float(age["r2"]), 3),
        "gender_accuracy": round(float(g["accuracy"]), 4),
        "gender_auc": round(float(g["auc_roc"]), 3),
    }


def lineage(run: Path, stage_runs: list[Path] = ()) -> list[dict]:
    """Every training stage behind a run, first to last: a warm restart (weights=PATH to another
    run's checkpoint) is not a new model, so its card must show the whole chain and its total cost."""
    stages: list[dict] = []
    while True:
        meta = json.loads((run / "metadata.json").read_text())
        cfg = meta["config"]
        stages.append(
            {
                "run": str(run),
                "weights_used": meta["weights_used"],
                "epochs": meta["epochs_completed"],
                "image_size": cfg["image_size"],
                "train_images_per_epoch": meta["n_train"],
                "max_lr": cfg["max_lr"],
                "l1_lambda": cfg["l1_lambda"],
                "wall_minutes": round(meta["wall_seconds"] / 60, 1),
            }
        )
        if cfg["weights"] in ("none", "imagenet"):
            return stages[::-1]
        parent = _parent_run(Path(cfg["weights"]), stage_runs)
        if isinstance(parent, list):  # fine-tuned from the shipped model: its card holds the stages before
            stages[-1]["weights_sha256"] = file_sha256(cfg["weights"])  # the card's sha256 of that model
            return parent + stages[::-1]
        if parent is None:
            return stages[::-1]
        run = parent


def _parent_run(weights: Path, stage_runs: list[Path]) -> Path | list[dict] | None:
    """Where a warm restart's weights came from: the run folder around them, else (by the file's sha256,
    since a checkpoint may have been copied) one of `stage_runs`' last.pt, or the shipped model, whose
    card's stages are returned; None when unknown."""
    if (weights.parent.parent / "metadata.json").is_file():
        return weights.parent.parent
    if not weights.is_file():
        return None
    sha = file_sha256(weights)
    for r in stage_runs:
        if (r / "checkpoints" / "last.pt").is_file() and file_sha256(r / "checkpoints" / "last.pt") == sha:
            return r
    card = json.loads((MODELS / "default.json").read_text()) if (MODELS / "default.json").is_file() else {}
    return card.get("stages") if card.get("sha256") == sha else None


def training_record(manifest: Path) -> dict:
    """The card's `training_images` record, and the hash file it names, from the training manifest."""
    df = read_manifest(manifest)
    return write_record(df, MODELS / "default.train_hashes.npy", split=manifest.parent.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?")
    ap.add_argument("--train-manifest", type=Path, help="The manifest of the images the run trained on.")
    ap.add_argument("--training-record-only", type=Path, metavar="MANIFEST",
                    help="Only (re)write the shipped card's training-image record from this manifest.")  # fmt: skip
    ap.add_argument("--checkpoint", default="last", help="Checkpoint name in RUN/checkpoints [last].")
    ap.add_argument(
        "--stage-run",
        type=Path,
        action="append",
        default=[],
        help="An earlier stage's run folder whose last.pt a later stage started from as a copy.",
    )
    ap.add_argument("--config", type=Path, help="The YAML the run was trained with (recorded in the card).")
    ap.add_argument("--trained-on", help="One line: which images the model saw (required with RUN).")
    ap.add_argument("--eval-tta", type=Path, help="[RUN/eval_tta]")
    ap.add_argument("--eval-plain", type=Path, help="[RUN/eval_plain]")
    args = ap.parse_args()
    if args.training_record_only:
        card = json.loads((MODELS / "default.json").read_text())
        card["training_images"] = training_record(args.training_record_only)
        write_json(MODELS / "default.json", card)
        print(f"card: {card['training_images']}")
        return
    if args.run is None or args.train_manifest is None or args.trained_on is None:
        ap.error("RUN, --trained-on and --train-manifest are required")

    ckpt_path = args.run / "checkpoints" / f"{args.checkpoint}.pt"
    if not ckpt_path.is_file():
        sys.exit(f"{ckpt_path}: checkpoint not found")
    meta_path = args.run / "metadata.json"
    meta = json.loads(meta_path.read_text())
    if meta.get("status") != "complete":
        sys.exit(f"{meta_path}: run is not complete (status {meta.get('status')!r})")
    evals = {
        "test_2_folds_last": args.eval_tta or args.run / "eval_tta",
        "test_2_folds_last_no_tta": args.eval_plain or args.run / "eval_plain",
    }
    for d in evals.values():
        if not (d / "age_metrics.csv").is_file():
            sys.exit(f"{d}: no curate evaluate output (age_metrics.csv missing)")

    stages = lineage(args.run, args.stage_run)
    if stages[0]["weights_used"].startswith("checkpoint"):
        sys.exit(
            f"{args.run}: its first stage started from {stages[0]['weights_used']}, whose run folder "
            "(with metadata.json) is not here; the card could not show the whole training"
        )
    ckpt = load_checkpoint(ckpt_path)
    slim = {k: ckpt[k] for k in ("model", "config", "epoch", "weights_used", "metrics") if k in ckpt}
    MODELS.mkdir(parents=True, exist_ok=True)
    save_torch(slim, MODELS / "default.pt")
    sha = file_sha256(MODELS / "default.pt")

    card = {
        "source_run": str(args.run),
        "checkpoint": args.checkpoint,
        "config_file": str(args.config) if args.config else None,
        "trained_on": args.trained_on,
        "weights_used": meta["weights_used"],
        "config": slim["config"],
        "bn_statistics": slim.get("metrics", {}).get("bn_statistics")
        or meta.get("final_bn_statistics", f"{slim['config']['bn_recalibration_batches']} training batches"),
        "wall_minutes": round(meta["wall_seconds"] / 60, 1),
        "epochs": meta["epochs_completed"],
        "stages": stages,
        "total_wall_minutes": round(sum(st["wall_minutes"] for st in stages), 1),
        "total_epochs": sum(st["epochs"] for st in stages),
        "train_images_per_epoch": meta["n_train"],
        **{k: headline_metrics(d) for k, d in evals.items()},
        "versions": meta["versions"],
        "sha256": sha,
        "training_images": training_record(args.train_manifest),
        "terms": "Trained on UTKFace: non-commercial research use only.",
    }
    write_json(MODELS / "default.json", card)
    size = (MODELS / "default.pt").stat().st_size / 1e6
    print(
        f"shipped {ckpt_path} -> curate/models/default.pt ({size:.1f} MB, sha256 {sha[:12]}); "
        f"test MAE {card['test_2_folds_last']['age_mae']}, "
        f"accuracy {card['test_2_folds_last']['gender_accuracy']:.2%} (flip TTA)"
    )


if __name__ == "__main__":
    main()
