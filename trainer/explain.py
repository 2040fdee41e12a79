"""Grad-CAM overlays: where in the face the model looked for its gender or age answer.

Grad-CAM (Selvaraju et al. 2017) on the last convolutional block of the MobileNetV3-Small features
(`features[-1]`, 576 channels): the gradient of the chosen output w.r.t. that block's activations,
averaged over space, weights the activation maps; their ReLU'd sum, upsampled to the image, is the
heat map. Targets: the gender head's logit of the PREDICTED class (what drove the wrong answer) and the
age head's output (what pushed the age up). No dependency beyond torch and OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from core.atomic import save_figure
from trainer.data import load_image, to_input
from trainer.model import AgeGenderClassifier, model_from_checkpoint


def gradcam(
    model: AgeGenderClassifier, x: torch.Tensor, head: str = "gender", target_class: torch.Tensor | None = None
) -> np.ndarray:
    """Heat maps in [0, 1], shape (B, H, W) of the input, for `head` "gender" or "age"."""
    if head not in ("gender", "age"):
        raise ValueError("head must be gender or age")
    layer = model.features[-1]
    store: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        store["act"] = output
        output.register_hook(lambda g: store.__setitem__("grad", g))

    hook = layer.register_forward_hook(keep)
    model.eval()
    try:
        x = x.clone().requires_grad_(True)  # a leaf that needs grad, so hooks fire even if weights are frozen
        g_logits, age, _ = model(x)
        if head == "gender":
            cls = g_logits.argmax(1) if target_class is None else target_class
            score = g_logits.gather(1, cls.view(-1, 1)).sum()
        else:
            score = age.sum()
        model.zero_grad(set_to_none=True)
        score.backward()
    finally:
        hook.remove()
    act, grad = store["act"].detach(), store["grad"].detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / torch.where(peak > 0, peak, torch.ones_like(peak)), cam)
    return cam.numpy()


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Jet-coloured heat map blended over an RGB uint8 image."""
    heat = cv2.applyColorMap(np.uint8(255 * cam), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.clip((1 - alpha) * rgb + alpha * heat, 0, 255))


def most_misclassified(pred: pd.DataFrame, n: int, head: str) -> pd.DataFrame:
    """Gender: the wrong answers with the highest loss; age: the largest absolute errors."""
    if head == "gender":
        wrong = pred[(pred["gender_prob"] >= 0.5).astype(int) != pred["gender"]]
        return wrong.sort_values("gender_loss", ascending=False).head(n)
    return pred.sort_values("age_abs_error", ascending=False).head(n)


def explain_images(
    checkpoint: str | Path, rows: pd.DataFrame, head: str, batch_size: int = 16
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, heat map) per row of `rows` (needs `path`), at the checkpoint's image size."""
    model, ckpt = model_from_checkpoint(checkpoint)
    size = int(ckpt.get("config", {}).get("image_size", 160))
    out = []
    paths = list(rows["path"])
    for s in range(0, len(paths), batch_size):
        imgs = np.stack([load_image(p, size) for p in paths[s : s + batch_size]])
        x = to_input(torch.from_numpy(imgs), channels_last=False)
        cams = gradcam(model, x, head)
        out += list(zip(imgs, cams))
    return out


def caption(row: pd.Series) -> str:
    sex = ("M", "F")
    p = float(row["gender_prob"])
    return (
        f"true {sex[int(row['gender'])]} {int(row['age'])}\n"
        f"pred {sex[int(p >= 0.5)]} ({max(p, 1 - p):.2f}) {float(row['age_pred']):.0f}"
    )


def save_grid(
    items: list[tuple[np.ndarray, np.ndarray]], captions: list[str], path: Path, title: str, cols: int = 6
) -> Path:
    """One PNG: per image, the photo and its Grad-CAM overlay side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(items), 1)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.0 * 2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ((img, cam), cap) in enumerate(zip(items, captions)):
        r, c = divmod(i, cols)
        axes[r, 2 * c].imshow(img)
        axes[r, 2 * c].set_title(cap, fontsize=7)
        axes[r, 2 * c + 1].imshow(overlay(img, cam))
        axes[r, 2 * c + 1].set_title("Grad-CAM", fontsize=7)
    if not items:
        axes[0, 0].text(0, 0.5, "no misclassified image", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return path


def explain_run(
    checkpoint: str | Path,
    pred: pd.DataFrame,
    out_dir: str | Path,
    n: int = 12,
    heads: tuple[str, ...] = ("gender", "age"),
    label: str = "",
) -> dict[str, Path]:
    """Grad-CAM grids for the `n` most-misclassified images per head; returns head -> PNG path."""
    out_dir = Path(out_dir)
    written = {}
    for head in heads:
        rows = most_misclassified(pred, n, head)
        items = explain_images(checkpoint, rows, head) if len(rows) else []
        what = "gender: highest-loss wrong answers" if head == "gender" else "age: largest errors"
        written[head] = save_grid(
            items,
            [caption(r) for _, r in rows.iterrows()],
            out_dir / f"gradcam_{head}.png",
            f"{label + ' - ' if label else ''}Grad-CAM, {what} (target: {head} head)",
        )
    return written
