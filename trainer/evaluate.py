"""Evaluation: per-sample predictions and the reference notebook's tables and plots.

Metrics come from scikit-learn (never re-derived by hand) so they can be trusted and compared with
other tools. Every table is written as CSV (for machines) and Markdown (for people).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from core.atomic import save_figure, write_text
from core.labels import AGE_GROUP_LABELS, GENDER_NAMES, RACE_NAMES, age_groups
from core.manifest import checkpoint_id, read_manifest
from trainer.config import TrainConfig
from trainer.crossfit import predictions_frame  # the one prediction schema, shared with cross-fitting
from trainer.data import Batches, decoded_cache
from trainer.model import model_from_checkpoint
from trainer.train import predict_arrays, set_threads


def predict_manifest(
    checkpoint: str | Path,
    manifest: str | Path | pd.DataFrame,
    batch_size: int = 256,
    threads: int = 0,
    progress: bool = True,
    fold: int = -1,
    tta: bool = True,
) -> pd.DataFrame:
    """Run a checkpoint over a manifest; returns the prediction frame (schema above).

    `tta` (default): mean of the image and its mirror image (trainer.train.forward_tta)."""
    model, ckpt = model_from_checkpoint(checkpoint)
    cfg = TrainConfig(**{**ckpt.get("config", {}), "batch_size": batch_size, "threads": threads})
    set_threads(cfg)
    df = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    px = decoded_cache(df, cfg.image_size, progress=progress)
    import torch

    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    b = Batches(px, df["age"], df["gender"], batch_size, cfg.channels_last)
    arrays = predict_arrays(model, b, cfg, progress=progress, desc="evaluate", tta=tta)
    pred = predictions_frame(df, arrays, checkpoint_id(checkpoint), fold)
    if "race" in df:  # the per-race tables; a labels table may have none (-1 where a row gave none)
        pred["race"] = pd.to_numeric(df["race"], errors="coerce").fillna(-1).astype(int).to_numpy()
    return pred


# --- tables ------------------------------------------------------------------------------------


def gender_table(gender: np.ndarray, prob_female: np.ndarray) -> pd.DataFrame:
    """Per class and overall: support, accuracy, precision, recall, F1, AUC-ROC, PR-AUC, log loss, Brier."""
    gender = np.asarray(gender, int)
    prob_female = np.asarray(prob_female, float)
    pred = (prob_female >= 0.5).astype(int)
    two_classes = len(np.unique(gender)) == 2
    rows = []
    for cls, name in enumerate(GENDER_NAMES):
        score = prob_female if cls == 1 else 1 - prob_female
        truth = (gender == cls).astype(int)
        p_cls = (pred == cls).astype(int)
        rows.append(
            {
                "class": name,
                "support": int(truth.sum()),
                "accuracy": skm.accuracy_score(gender[truth == 1], pred[truth == 1]) if truth.any() else np.nan,
                "precision": skm.precision_score(truth, p_cls, zero_division=0),
                "recall": skm.recall_score(truth, p_cls, zero_division=0),
                "f1": skm.f1_score(truth, p_cls, zero_division=0),
                "auc_roc": skm.roc_auc_score(truth, score) if two_classes else np.nan,
                "pr_auc": skm.average_precision_score(truth, score) if truth.any() else np.nan,
                "log_loss": skm.log_loss(truth, np.clip(score, 1e-7, 1 - 1e-7), labels=[0, 1]),
                "brier": skm.brier_score_loss(truth, score, pos_label=1) if truth.any() else np.nan,
            }
        )
    rows.append(
        {
            "class": "overall",
            "support": len(gender),
            "accuracy": skm.accuracy_score(gender, pred),
            "precision": skm.precision_score(gender, pred, average="macro", zero_division=0),
            "recall": skm.recall_score(gender, pred, average="macro", zero_division=0),
            "f1": skm.f1_score(gender, pred, average="macro", zero_division=0),
            "auc_roc": skm.roc_auc_score(gender, prob_female) if two_classes else np.nan,
            "pr_auc": skm.average_precision_score(gender, prob_female) if two_classes else np.nan,
            "log_loss": skm.log_loss(gender, np.clip(prob_female, 1e-7, 1 - 1e-7), labels=[0, 1]),
            "brier": skm.brier_score_loss(gender, prob_female, pos_label=1),
        }
    )
    return pd.DataFrame(rows)


def age_metrics(age: np.ndarray, age_pred: np.ndarray) -> dict[str, float]:
    age, age_pred = np.asarray(age, float), np.asarray(age_pred, float)
    mse = skm.mean_squared_error(age, age_pred)
    return {
        "n": len(age),
        "mae": skm.mean_absolute_error(age, age_pred),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": skm.r2_score(age, age_pred) if len(age) > 1 else np.nan,
        "mape": skm.mean_absolute_percentage_error(age, age_pred) * 100,
    }


def group_age_metrics(age: np.ndarray, age_pred: np.ndarray) -> dict[str, float]:
    """Age error inside one group: MAE, RMSE and bias (mean of predicted - true).

    Why not R2 and MAPE as overall: inside a 6-year age bin R2 compares the error with the bin's own tiny
    spread (it goes far below 0 for a good model) and MAPE divides by the ages themselves; the bias says
    what they hid, that a model pulls the young up and the old down."""
    age, age_pred = np.asarray(age, float), np.asarray(age_pred, float)
    err = age_pred - age
    return {"n": len(age), "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())),
            "bias": float(err.mean())}  # fmt: skip


def by_age_group(pred: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gender accuracy and age error per reference age group."""
    groups = age_groups(pred["age"])
    g_rows, a_rows = [], []
    for label in AGE_GROUP_LABELS:
        part = pred[np.asarray(groups == label)]
        if part.empty:
            continue
        acc = skm.accuracy_score(part["gender"], (part["gender_prob"] >= 0.5).astype(int))
        g_rows.append({"age_group": label, "support": len(part), "gender_accuracy": acc})
        a_rows.append({"age_group": label, **group_age_metrics(part["age"], part["age_pred"])})
    return pd.DataFrame(g_rows), pd.DataFrame(a_rows)


def by_group(pred: pd.DataFrame, column: str, names: tuple[str, ...]) -> pd.DataFrame:
    """Gender accuracy and age error per value of a label column (gender, race), named; unknowns last."""
    rows = []
    for code in sorted(pred[column].unique(), key=lambda c: (c < 0, c)):
        part = pred[pred[column] == code]
        name = names[int(code)] if 0 <= int(code) < len(names) else "unknown"
        acc = skm.accuracy_score(part["gender"], (part["gender_prob"] >= 0.5).astype(int))
        a = group_age_metrics(part["age"], part["age_pred"])
        rows.append(
            {column: name, "support": a.pop("n"), "gender_accuracy": acc, **{f"age_{k}": v for k, v in a.items()}}
        )
    return pd.DataFrame(rows)


def evaluate_predictions(pred: pd.DataFrame, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Write every table (CSV + Markdown) and plot (PNG) for a prediction frame; return the tables."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    g_age, a_age = by_age_group(pred)
    tables = {
        "gender_metrics": gender_table(pred["gender"], pred["gender_prob"]),
        "age_metrics": pd.DataFrame([age_metrics(pred["age"], pred["age_pred"])]),
        "gender_accuracy_by_age_group": g_age,
        "age_metrics_by_age_group": a_age,
        "metrics_by_gender": by_group(pred, "gender", GENDER_NAMES),
    }
    if "race" in pred:
        tables["metrics_by_race"] = by_group(pred, "race", RACE_NAMES)
    md = []
    for name, t in tables.items():
        write_text(out_dir / f"{name}.csv", t.to_csv(index=False))
        md.append(f"## {name.replace('_', ' ')}\n\n{t.to_markdown(index=False, floatfmt='.4f')}\n")
        write_text(out_dir / f"{name}.md", md[-1])
    write_text(out_dir / "report.md", "# Evaluation\n\n" + "\n".join(md))
    plot_age_confusion(pred, out_dir / "age_confusion.png")
    plot_pred_vs_true(pred, out_dir / "age_pred_vs_true.png")
    plot_error_by_age(pred, out_dir / "age_error_by_age.png")
    if pred["gender"].nunique() == 2:
        plot_gender_roc_calibration(pred, out_dir / "gender_roc_calibration.png")
    return tables


# --- plots -------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_age_confusion(pred: pd.DataFrame, path: Path) -> None:
    """Age-group confusion matrix, each row in percent of its true group."""
    plt = _plt()
    t = np.asarray(age_groups(pred["age"]).codes)
    p = np.asarray(age_groups(np.clip(pred["age_pred"], 0, None)).codes)
    cm = skm.confusion_matrix(t, p, labels=range(len(AGE_GROUP_LABELS)))
    pct = cm / np.maximum(cm.sum(1, keepdims=True), 1) * 100
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(AGE_GROUP_LABELS)):
        for j in range(len(AGE_GROUP_LABELS)):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    f"{pct[i, j]:.0f}%\n{cm[i, j]}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if pct[i, j] > 50 else "black",
                )
    ax.set_xticks(range(len(AGE_GROUP_LABELS)), AGE_GROUP_LABELS, rotation=45)
    ax.set_yticks(range(len(AGE_GROUP_LABELS)), AGE_GROUP_LABELS)
    ax.set_xlabel("predicted age group")
    ax.set_ylabel("true age group")
    ax.set_title("Age-group confusion (row %)")
    _save(fig, path)


def plot_pred_vs_true(pred: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(pred["age"], pred["age_pred"], s=3, alpha=0.3)
    hi = max(pred["age"].max(), pred["age_pred"].max()) + 2
    ax.plot([0, hi], [0, hi], "r--", lw=1)
    ax.set_xlabel("true age")
    ax.set_ylabel("predicted age")
    ax.set_title(f"Predicted vs true age (MAE {np.mean(np.abs(pred['age'] - pred['age_pred'])):.2f})")
    _save(fig, path)


def plot_error_by_age(pred: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    err = pred["age_pred"] - pred["age"]
    groups = age_groups(pred["age"])
    data = [err[np.asarray(groups == g)].to_numpy() for g in AGE_GROUP_LABELS]
    keep = [i for i, d in enumerate(data) if len(d)]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.boxplot([data[i] for i in keep], showfliers=False)
    ax.set_xticks(range(1, len(keep) + 1), [AGE_GROUP_LABELS[i] for i in keep])
    ax.axhline(0, color="r", lw=1, ls="--")
    ax.set_xlabel("true age group")
    ax.set_ylabel("predicted - true (years)")
    ax.set_title("Age error by age group")
    _save(fig, path)


def expected_calibration_error(gender: np.ndarray, prob_female: np.ndarray, bins: int = 10) -> float:
    """How far P(female) is from the share of women among images given that probability (equal-width bins,
    weighted by their images): 0 for a model whose 0.8 means 80 %."""
    gender, prob = np.asarray(gender, int), np.asarray(prob_female, float)
    which = np.minimum((prob * bins).astype(int), bins - 1)
    gaps = [abs(prob[which == b].mean() - gender[which == b].mean()) * (which == b).sum() for b in range(bins)
            if (which == b).any()]  # fmt: skip
    return float(np.sum(gaps) / len(prob))


def plot_gender_roc_calibration(pred: pd.DataFrame, path: Path) -> None:
    """ROC curve of the gender head, and its reliability diagram (is a 0.8 right 80 % of the time?)."""
    from sklearn.calibration import calibration_curve

    plt = _plt()
    y, p = pred["gender"].to_numpy(int), pred["gender_prob"].to_numpy(float)
    fpr, tpr, _ = skm.roc_curve(y, p)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5))
    a.plot(fpr, tpr, lw=1.5, label=f"AUC {skm.roc_auc_score(y, p):.4f}")
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    a.set(xlabel="false positive rate (men called women)", ylabel="true positive rate (women found)",
          title="Gender ROC")  # fmt: skip
    a.legend(loc="lower right")
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    b.plot(mean, frac, "o-", lw=1.5, label=f"model (ECE {100 * expected_calibration_error(y, p):.2f} pp)")
    b.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    b.set(xlabel="predicted P(female)", ylabel="share of women", title="Gender calibration (10 bins)")
    b.legend(loc="upper left")
    _save(fig, path)
