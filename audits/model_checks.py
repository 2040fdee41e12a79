"""Did the models behind the out-of-sample predictions learn anything? Checked per fold, before any label
is called wrong on their word.

Why: label scores rank labels by how far they are from a model's out-of-sample prediction. A fold model
that learned nothing (100 images, two epochs) predicts about the mean age and a coin-flip gender for
everyone, and the "suspects" it yields are noise presented as findings. So each fold's model is
compared, on its held-out rows, with the trivial answer a model-free baseline would give: the majority
gender and the median age of the labels it was trained on (of the held-out rows themselves for a single
model, fold -1). A fold passes a task when the lower end of the paired bootstrap 95% interval of its
advantage (baseline error minus model error) is above zero: clearly better, not better by luck.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audits.group_metrics import bootstrap_weights, percentile_ci

CHECK_COLUMNS = ["fold", "n", "gender_acc", "gender_baseline_acc", "gender_gain_lo", "gender_ok", "age_mae",
                 "age_baseline_mae", "age_gain_lo", "age_ok"]  # fmt: skip


def fold_checks(pred: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per fold of `pred` (the prediction schema: fold, age, gender, age_pred, gender_prob):
    the model's and the baseline's error on the fold's rows, the interval's lower end, pass or not."""
    rows = []
    fold = pred["fold"].fillna(-1).astype(int) if "fold" in pred else pd.Series(-1, index=pred.index)
    usable = pred["age_pred"].notna() & pred["gender_prob"].notna() & pred["age"].notna() & pred["gender"].notna()
    for f in sorted(fold[usable].unique()):
        held = usable & (fold == f)
        train = usable & (fold != f) if (usable & (fold != f)).any() and f >= 0 else held
        rows.append(_check(f, pred[held], pred[train], n_boot, seed))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def _check(fold: int, held: pd.DataFrame, train: pd.DataFrame, n_boot: int, seed: int) -> dict:
    g = held["gender"].to_numpy(int)
    majority = int(train["gender"].astype(int).mean() >= 0.5)
    model_right = ((held["gender_prob"].to_numpy(float) >= 0.5).astype(int) == g).astype(float)
    base_right = (g == majority).astype(float)
    age = held["age"].to_numpy(float)
    model_err = np.abs(held["age_pred"].to_numpy(float) - age)
    base_err = np.abs(float(np.median(train["age"].to_numpy(float))) - age)
    w = bootstrap_weights(len(held), n_boot, seed) / len(held)
    gender_lo, _ = percentile_ci(w @ (model_right - base_right))
    age_lo, _ = percentile_ci(w @ (base_err - model_err))
    return {"fold": int(fold), "n": len(held), "gender_acc": model_right.mean(),
            "gender_baseline_acc": base_right.mean(), "gender_gain_lo": float(gender_lo),
            "gender_ok": bool(gender_lo > 0), "age_mae": model_err.mean(), "age_baseline_mae": base_err.mean(),
            "age_gain_lo": float(age_lo), "age_ok": bool(age_lo > 0)}  # fmt: skip


def describe(row: pd.Series | dict) -> str:
    """One line per fold for people: what it scored against the trivial answer, and what follows."""
    r = dict(row)
    where = "the model" if r["fold"] < 0 else f"fold {r['fold']}"
    parts = []
    for task, ok, mine, base, word in (
        ("gender", r["gender_ok"], f"accuracy {r['gender_acc']:.1%}", f"{r['gender_baseline_acc']:.1%}",
         "always the majority gender"),
        ("age", r["age_ok"], f"MAE {r['age_mae']:.1f} y", f"{r['age_baseline_mae']:.1f} y", "always the median age"),
    ):  # fmt: skip
        verdict = "clearly better" if ok else "not clearly better: its suspects are not tagged"
        parts.append(f"{task} {mine} vs {base} for {word} ({verdict})")
    return f"{where} ({r['n']} held-out images): " + "; ".join(parts)
