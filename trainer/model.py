"""The reference model: MobileNetV3-Small features, global average pool, age and gender heads."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.atomic import atomic_path
from core.errors import CurateError
from trainer.torchvision_lean import import_torchvision

tv_models = import_torchvision().models  # without torch._dynamo: ~160 MB and ~2.5 s less per command

EMBED_DIM = 576
# numpy scalars and their dtypes: runs store metrics as numpy floats, which are safe to rebuild.
_MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
_NUMPY_SCALARS = [_MULTIARRAY.scalar, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.int64))]


class WeightsError(CurateError, RuntimeError):
    pass


class AgeGenderClassifier(nn.Module):
    """Shared backbone, two heads: gender logits (2) and age in years (1).

    The embedding (576-d pooled features) is returned too: the audits and FiftyOne use it.
    """

    def __init__(self, dropout: float = 0.1, age_init: float = 33.0):
        super().__init__()
        self.features = tv_models.mobilenet_v3_small(weights=None).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gender_head = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(EMBED_DIM, 2))
        self.age_head = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(EMBED_DIM, 1))
        # Start the age head at the mean training age: from scratch, this saves the first epoch
        # from spending itself on learning a constant offset.
        nn.init.constant_(self.age_head[1].bias, age_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.pool(self.features(x)).flatten(1)
        return self.gender_head(emb), self.age_head(emb).squeeze(1), emb

    def set_backbone_trainable(self, trainable: bool) -> None:
        for p in self.features.parameters():
            p.requires_grad_(trainable)


def build_model(weights: str = "none", dropout: float = 0.1, age_init: float = 33.0) -> tuple[AgeGenderClassifier, str]:
    """Build the model and return it with a description of the weights actually loaded.

    `weights`: "imagenet" (torchvision's IMAGENET1K_V1, from the TORCH_HOME cache or downloaded),
    "none" (from scratch) or a path to a checkpoint. Never falls back silently.
    """
    model = AgeGenderClassifier(dropout=dropout, age_init=age_init)
    if weights == "none":
        return model, "none (random init)"
    if weights == "imagenet":
        w = tv_models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
        try:
            state = w.get_state_dict(progress=False)
        except Exception as e:  # network errors come in many classes
            raise WeightsError(
                f"cannot load ImageNet weights ({w}): {type(e).__name__}: {str(e)[:120]}. "
                "Put the file in $TORCH_HOME/hub/checkpoints, or use weights=none (from scratch) "
                "or weights=PATH (a checkpoint)"
            ) from None
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        model.features.load_state_dict(feats)
        return model, f"imagenet ({w})"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (use imagenet, none or an existing path)")
    state = load_checkpoint(path)["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]})") from None
    return model, f"checkpoint {path}"


def save_torch(obj: object, path: str | Path) -> None:
    """torch.save through the project's atomic writer (a killed run never leaves half a checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file with a clear error when it is missing or not a checkpoint.

    Why weights-only: a checkpoint is a pickle, and a user passes paths (`--model`, `--checkpoint`,
    `weights=PATH`, `--resume`); loading a full pickle would run whatever code it carries. Only tensors,
    plain Python values and numpy scalars (which runs before 2026-12-07 stored in their metrics) are accepted.
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoints" / "best.pt").is_file():  # a run folder given for its checkpoint
        best = path / "checkpoints" / "best.pt"
        raise WeightsError(f"{path}: a run folder; give its checkpoint, {best} (or last.pt)")
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALARS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = re.search(r"GLOBAL (\S+)", str(e))  # a callable the pickle asks for: refused, never called
        if not what:
            raise WeightsError(f"{path}: not a readable checkpoint (UnpicklingError)") from None
        raise WeightsError(
            f"{path}: refused, the file holds Python objects beyond tensors and plain values ({what.group(1)}); "
            "it could run code when loaded, so it is not loaded"
        ) from None
    except Exception as e:
        raise WeightsError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if isinstance(ckpt, dict) and "model" not in ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise WeightsError(f"{path}: not an AgeGenderClassifier checkpoint (no model state)")
    return ckpt


def model_from_checkpoint(path: str | Path) -> tuple[AgeGenderClassifier, dict]:
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("config", {})
    model = AgeGenderClassifier(dropout=cfg.get("dropout", 0.1))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise WeightsError(f"{path}: checkpoint does not fit the model ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, ckpt
