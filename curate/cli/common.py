"""What every command shares: the one-line failure, the sample and the shipped model, config loading,
and the options that several commands take."""

from __future__ import annotations

from pathlib import Path

import click

from core.errors import CurateError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_DIR = REPO_ROOT / "dataset" / "sample"


def fail(msg: str) -> None:
    """Stop the command with a one-line error (caught once, in `curate.cli.main`)."""
    raise CurateError(msg)


DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.pt"
# The shipped model's companions for faces cut tighter than UTKFace's, their answers averaged: the tight-crop
# recipe (configs/tight_crop_model.yaml) from the shipped weights, and from an independently trained base
TIGHT_MODEL = DEFAULT_MODEL.with_name("tight_crop.pt")
TIGHT_MODELS = (TIGHT_MODEL, DEFAULT_MODEL.with_name("tight_crop_2.pt"))


def resolve_checkpoint(run: Path | None, checkpoint: Path | None, which: str = "best") -> Path:
    """A run folder's best (or last) checkpoint, an explicit checkpoint, or the shipped default model."""
    if checkpoint is not None and run is not None:  # which one is meant cannot be guessed, nor notes about it
        fail("give --run or --checkpoint, not both")
    if which != "best" and run is None:  # silently using another model than the one asked for
        fail(f"--which {which} picks a checkpoint of --run; give --run (or the checkpoint itself as --checkpoint)")
    if checkpoint is not None:
        return checkpoint
    if run is not None:
        if not run.is_dir():
            fail(f"{run}: run folder not found")
        ckpt = run / "checkpoints" / f"{which}.pt"
        if not ckpt.exists():
            fail(f"{ckpt}: run has no {which} checkpoint (did training finish an epoch?)")
        return ckpt
    if not DEFAULT_MODEL.exists():
        fail(f"{DEFAULT_MODEL}: shipped default model missing; pass --run or --checkpoint")
    return DEFAULT_MODEL


which_option = click.option(
    "--which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="With --run: the best-validation-loss epoch, or the final weights.",
)


def load_cfg(config: Path | None, sets: tuple[str, ...], base: dict | None = None):
    """The training config: YAML file, then --set overrides, over `base` (a resumed run's own)."""
    from trainer.config import load_config, parse_overrides

    return load_config(config, parse_overrides(sets), base=base)


# ------------------------------------------------------------------------------------- options
def path_option(*decls: str, **kwargs):
    """A click option whose value is a `Path`."""
    return click.option(*decls, type=click.Path(path_type=Path), **kwargs)


def data_argument(name: str):
    """The optional folder (or manifest) argument; the command defaults it to the embedded sample."""
    return click.argument(name, type=click.Path(path_type=Path), required=False)


model_option = path_option("--model", "checkpoint", help="Checkpoint [default: the shipped curate/models/default.pt].")


def config_options(config_help: str):
    """--config FILE and repeatable --set KEY=VALUE: the training config that `load_cfg` reads."""

    def apply(f):
        said = "Override one config key (repeatable; the keys: `curate train --print-config`)."
        f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=said)(f)
        return path_option("--config", help=config_help)(f)

    return apply


tta_option = click.option(
    "--tta/--no-tta",
    default=True,
    show_default=True,
    help="Average each image's prediction with its mirror image's (--no-tta: one plain pass).",
)


def ray_option(what: str):
    """--ray [ADDRESS]: `what` on a Ray cluster (core/ray_cluster.py); no value = a local cluster."""
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help=f"{what} on a Ray cluster: ADDRESS (host:6379, ray://host:10001), 'auto', or none for a local "
        "one. Images, $CURATE_CACHE_DIR and outputs must be on paths every node sees.",
    )
