"""What every command shares: the one-line failure, the sample and the shipped model, config loading."""

from __future__ import annotations

from pathlib import Path

from core.errors import CurateError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_DIR = REPO_ROOT / "dataset" / "sample"


def fail(msg: str) -> None:
    """Stop the command with a one-line error (caught once, in `curate.cli.main`)."""
    raise CurateError(msg)


DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.pt"


def resolve_checkpoint(run: Path | None, checkpoint: Path | None, which: str = "best") -> Path:
    """A run folder's best (or last) checkpoint, an explicit checkpoint, or the shipped default model."""
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


def load_cfg(config: Path | None, sets: tuple[str, ...], base: dict | None = None):
    """The training config: YAML file, then --set overrides, over `base` (a resumed run's own)."""
    from trainer.config import ConfigError, load_config, parse_overrides

    try:
        return load_config(config, parse_overrides(sets), base=base)
    except ConfigError as e:
        fail(str(e))
