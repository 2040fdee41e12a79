"""Label suspects are only tagged from models that learned something: each fold's model against the
majority gender and the median age on its held-out rows (audits.model_checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audits.model_checks import describe, fold_checks


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"fold": rng.integers(0, 2, n), "age": rng.integers(1, 90, n).astype(float),
                         "gender": rng.integers(0, 2, n)})  # fmt: skip


def test_a_model_that_learned_nothing_fails_and_a_good_one_passes():
    df = _frame()
    rng = np.random.default_rng(1)
    noise = df.assign(age_pred=df["age"].median() + rng.normal(0, 3, len(df)), gender_prob=rng.random(len(df)))
    checks = fold_checks(noise)
    assert list(checks["fold"]) == [0, 1] and not checks["gender_ok"].any() and not checks["age_ok"].any()
    assert "not clearly better: its suspects are not tagged" in describe(checks.iloc[0])
    right = rng.random(len(df)) < 0.9
    gender_prob = np.where(right, df["gender"], 1 - df["gender"]).astype(float)
    good = df.assign(age_pred=df["age"] + rng.normal(0, 4, len(df)), gender_prob=gender_prob)
    checks = fold_checks(good)
    assert checks["gender_ok"].all() and checks["age_ok"].all()
    assert (checks["gender_acc"] > 0.85).all() and (checks["age_mae"] < checks["age_baseline_mae"]).all()
    one = fold_checks(good.assign(fold=-1))  # one model (e.g. the shipped one): baseline from the same rows
    assert list(one["fold"]) == [-1] and bool(one["gender_ok"].iloc[0]) and "the model (400" in describe(one.iloc[0])


def test_a_crossfit_on_random_labels_is_no_better_than_chance(sample_split, tmp_path):
    """100 real faces with shuffled labels: two tiny fold models cannot beat the trivial answers."""
    from trainer.config import TrainConfig, replace
    from trainer.crossfit import crossfit

    man = pd.read_csv(sample_split / "folds.csv", dtype={"content_hash": str}).head(100).reset_index(drop=True)
    rng = np.random.default_rng(0)
    man["age"], man["gender"] = rng.permutation(man["age"].to_numpy()), rng.integers(0, 2, len(man))
    cfg = replace(TrainConfig(), image_size=32, num_epochs=2, override_cycle_epoch_count=2, batch_size=32, threads=2)
    oos = crossfit(man, tmp_path / "cf", cfg, k=2, seed=0, progress=False)
    checks = fold_checks(oos)
    assert len(checks) == 2 and not checks["gender_ok"].any() and not checks["age_ok"].any(), checks
