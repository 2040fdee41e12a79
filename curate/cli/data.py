"""`curate split` and `curate train`: manifests from a folder of images, and a training run."""

from __future__ import annotations

from pathlib import Path

import click

from curate.cli.common import SAMPLE_DIR, config_options, data_argument, fail, load_cfg, path_option


@click.command()
@data_argument("data_dir")
@path_option(
    "--out", "out_dir", default=Path("dataset"), show_default=True, help="Where the split folders and manifests go."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment.")
@click.option("--copy", is_flag=True, help="Also copy the images into the split folders.")
@click.option("--reassign", is_flag=True, help="Ignore the folds an earlier split recorded in OUT/folds.csv "
              "(by default images keep them and only new images get a fold).")  # fmt: skip
@click.option("--align", is_flag=True, help="Photos, not face crops: find and align each image's largest face "
              "(crops under OUT/aligned/, originals untouched); an image without a face is rejected.")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bars.")
def split(
    data_dir: Path | None, out_dir: Path, seed: int, copy: bool, reassign: bool, align: bool, quiet: bool
) -> None:
    """Read the labels, reject unusable images, and write 10-fold stratified split manifests.

    DATA_DIR is a folder of UTKFace-named images ({age}_{gender}_{race}_{datetime}.jpg), or a labels
    table: a CSV/Parquet file, or a folder holding labels.csv or labels.parquet (images in it and its
    subfolders, any names). Table columns: path (relative to the table's folder, or absolute), age
    (whole years 0-120), gender (0/1 or male/female/m/f; 0 = male), optional race (0-4 or
    White/Black/Asian/Indian/Others), optional id (a person: all of one id's images share a fold, so
    no one is in both train and test). A bad row is rejected with its row number and reason; a missing
    required column is an error. Default: the embedded sample (dataset/sample). See docs/datasets.md.

    Writes OUT/train_8_folds_first/manifest.csv (folds 0-7), OUT/test_2_folds_last/manifest.csv
    (folds 8-9), OUT/folds.csv and OUT/rejected.csv; with --align also OUT/aligned/ (the crops and
    faces.csv, reused by a re-run).
    """
    from curate.splits import make_splits

    data_dir = data_dir or SAMPLE_DIR
    s = make_splits(data_dir, out_dir, seed=seed, copy=copy, progress=not quiet, reassign=reassign, align=align)
    if s["folds_kept"]:
        click.echo(f"kept the recorded fold of {s['folds_kept']} image(s); new images: {s['folds_new']}")
    click.echo(f"usable images: {s['n_usable']}   rejected: {s['n_rejected']}")
    for split_name, n in sorted(s["per_split"].items()):
        click.echo(f"  {split_name}: {n} ({100 * n / s['n_usable']:.2f}%)")
    for name, table in s["tables"].items():
        click.echo(f"\nper {name}:\n{table.to_string()}")
    if s["n_duplicate_groups"]:
        click.echo(
            f"\npixel-identical groups: {s['n_duplicate_groups']} ({s['n_in_duplicate_groups']} images), "
            "each kept within one fold"
        )
    _echo_groups_and_notes(s)
    if s["rejected"]:
        click.echo(f"\nrejected ({out_dir / 'rejected.csv'}):")
        for r in s["rejected"][:50]:
            click.echo(f"  {r['filename']!r}: {r['reason']}")
        if len(s["rejected"]) > 50:
            click.echo(f"  ... and {len(s['rejected']) - 50} more")
    click.echo(f"\nmanifests written under {out_dir}/")
    for w in s["warnings"]:  # last, where a reader looks: an empty or tiny test split measures nothing
        click.echo(f"warning: {w}", err=True)


def _echo_groups_and_notes(s: dict) -> None:
    """Identities and their folds, what face detection found (--align), and names parsed despite quirks."""
    if s["n_identities"]:
        click.echo(f"\nidentities (id): {s['n_identities']} in {s['n_identity_groups']} group(s), each within one fold")
    if s["identity_groups_straddling"]:
        click.echo(f"  {s['identity_groups_straddling']} group(s) span train and test because of folds recorded "
                   "before: pass --reassign to fix")  # fmt: skip
    if s["faces"]:
        click.echo("\nfaces: " + ", ".join(f"{k} {v}" for k, v in sorted(s["faces"].items())))
    quirks = [q for q in s["quirks"] if " faces: the largest used" not in q["name_note"]]
    for q in s["quirks"]:
        if " faces: the largest used" in q["name_note"]:
            click.echo(f"  {q['filename']!r}: {q['name_note']}")
    if quirks:
        click.echo("\nparsed despite malformed names:")
        for q in quirks:
            click.echo(f"  {q['filename']!r}: {q['name_note']}")


@click.command()
@config_options("YAML config (keys of TrainConfig).")
@path_option("--out", "out_dir", help="Run folder, e.g. runs/NAME (required, except with --print-config).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last completed epoch.")
@click.option("--print-config", is_flag=True, help="Print the config these options give (every key, as YAML) and "
              "stop: the keys --set and --config take.")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(
    config: Path | None, sets: tuple[str, ...], out_dir: Path | None, resume: bool, print_config: bool, quiet: bool
) -> None:
    """Train the MobileNetV3-Small age + gender model.

    Writes OUT/metrics.csv, OUT/metadata.json, OUT/training_curves.png and OUT/checkpoints/
    (epoch_NNN.pt, best.pt, last.pt).
    """
    from trainer.train import train as run_train

    if print_config:
        import yaml

        click.echo(yaml.safe_dump(load_cfg(config, sets).to_dict(), sort_keys=False).rstrip())
        return
    if out_dir is None:
        fail("--out is required: the run folder (e.g. runs/NAME)")
    base = None
    if resume and (out_dir / "metadata.json").exists():
        import json

        try:
            base = json.loads((out_dir / "metadata.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"{out_dir / 'metadata.json'}: unreadable run metadata ({type(e).__name__}); cannot resume")
    cfg = load_cfg(config, sets, base)
    meta = run_train(cfg, out_dir, resume=resume, progress=not quiet)
    click.echo(
        f"done in {meta['wall_seconds'] / 60:.1f} min; best epoch {meta['best_epoch']}: "
        f"val MAE {meta['best_val_mae']:.2f}, gender acc {100 * meta['best_val_acc']:.1f}% "
        f"(weights: {meta['weights_used']}) -> {out_dir}"
    )
