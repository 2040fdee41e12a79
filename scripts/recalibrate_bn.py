"""Give a finished run's final weights BatchNorm statistics over its whole training set.

`curate train` does this itself after the final epoch (trainer.train.bn_batches_after); runs trained
before that change recomputed the statistics over 8 batches only, which cost the stage-3 default
model 0.15 years of test MAE. This writes RUN/checkpoints/last_bn_all.pt (weights-only, like
epoch_NNN.pt) from RUN/checkpoints/last.pt; evaluate it, then ship it with
`scripts/ship_model.py RUN --checkpoint last_bn_all`.

Usage: python scripts/recalibrate_bn.py runs/NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.manifest import read_manifest  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import Batches, decoded_cache  # noqa: E402
from trainer.model import (  # noqa: E402
    WeightsError,
    model_from_checkpoint,
    save_torch,  # noqa: E402
)
from trainer.train import bn_order, recalibrate_bn, set_threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    src, dst = args.run / "checkpoints" / "last.pt", args.run / "checkpoints" / "last_bn_all.pt"
    try:
        model, ckpt = model_from_checkpoint(src)
    except WeightsError as e:
        sys.exit(str(e))
    cfg = TrainConfig(**ckpt["config"])
    set_threads(cfg)
    df = read_manifest(cfg.train_path)
    batches = Batches(decoded_cache(df, cfg.image_size), df["age"], df["gender"], cfg.batch_size, cfg.channels_last)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    recalibrate_bn(model, batches, bn_order(cfg, len(df)), len(batches))
    model.eval()
    metrics = {**ckpt["history"][-1], "bn_statistics": f"all {len(df)} training images"} if "history" in ckpt else {}
    save_torch(
        {
            "model": model.state_dict(),
            "config": ckpt["config"],
            "epoch": ckpt["epoch"],
            "weights_used": ckpt["weights_used"],
            "metrics": metrics,
        },
        dst,
    )
    print(f"{dst}: BatchNorm statistics over all {len(df)} images of {cfg.train_path}")


if __name__ == "__main__":
    main()
