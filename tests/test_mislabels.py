"""Mislabel scores: behaviour on constructed predictions, bad inputs, and injected noise on real images."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from audits.mislabels import (
    AGE_COLUMNS,
    GENDER_COLUMNS,
    SingleClassError,
    align_predictions,
    estimated_gender_errors,
    gender_difficulty,
    score_age,
    score_gender,
    score_mislabels,
)


def population(
    n: int = 3000, seed: int = 0, infant_sep: float = 0.6, adult_sep: float = 4.0, blurry_sep: float | None = None
) -> pd.DataFrame:
    """Out-of-sample-like predictions: gender is hard for infants (weak logits), age errors grow with age.

    With `blurry_sep`, a third of the images are 'blurry' (laplacian_var low) with that weaker separation.
    """
    rng = np.random.default_rng(seed)
    age = np.concatenate([rng.integers(1, 4, n // 5), rng.integers(18, 90, n - n // 5)])
    gender = rng.integers(0, 2, n)
    sep = np.where(age < 4, infant_sep, adult_sep)
    lap = rng.uniform(200, 2000, n)
    if blurry_sep is not None:
        blurry = rng.random(n) < 1 / 3
        sep = np.where(blurry & (age >= 4), blurry_sep, sep)
        lap = np.where(blurry, rng.uniform(5, 50, n), lap)
    z = (2 * gender - 1) * sep + rng.normal(0, 1.5, n)
    age_pred = age + rng.normal(0, 1, n) * (1.0 + 0.1 * age)
    return pd.DataFrame(
        {
            "path": [f"/img/{i}.jpg" for i in range(n)],
            "filename": [f"{i}.jpg" for i in range(n)],
            "content_hash": [f"h{i}" for i in range(n)],
            "age": age,
            "gender": gender,
            "age_pred": age_pred.astype(np.float32),
            "gender_prob": 1 / (1 + np.exp(-z)),
            "gender_logit_0": -z / 2,
            "gender_logit_1": z / 2,
            "embedding": list(rng.normal(size=(n, 16)).astype(np.float32)),
            "model": "abc123def456",
            "fold": rng.integers(0, 2, n),
            "laplacian_var": lap,
        }
    )


def probe(
    df: pd.DataFrame,
    age: int,
    gender: int,
    p_female: float,
    age_pred: float | None = None,
    lap: float = 1000.0,
    content_hash: str | None = None,
) -> pd.DataFrame:
    """Append one constructed image; returns the new frame (probe is the last row)."""
    z = float(np.log(p_female / (1 - p_female)))
    i = len(df)
    row = {
        "path": f"/probe/{i}.jpg",
        "filename": f"{i}.jpg",
        "content_hash": content_hash or f"probe{i}",
        "age": age,
        "gender": gender,
        "age_pred": age if age_pred is None else age_pred,
        "gender_prob": p_female,
        "gender_logit_0": -z / 2,
        "gender_logit_1": z / 2,
        "embedding": np.zeros(16, np.float32),
        "model": "abc123def456",
        "fold": 0,
        "laplacian_var": lap,
    }
    return pd.concat([df, pd.DataFrame([row])], ignore_index=True)


def test_confident_contradiction_ranks_above_unsure_one():
    df = population()
    df = probe(df, 35, 0, 0.98)  # adult labelled male, model 0.98 female
    df = probe(df, 35, 0, 0.60)  # adult labelled male, model unsure
    s = score_gender(df)
    assert s["gender_flip_prob"].iat[-2] > s["gender_flip_prob"].iat[-1]
    assert s["gender_label_score"].iat[-2] < s["gender_label_score"].iat[-1]
    assert s["is_gender_label_issue"].iat[-2]
    assert s["gender_label_reason"].iat[-2].startswith("predicted female 0.98, label male")
    assert "adult" in s["gender_label_reason"].iat[-2]


def test_infant_uncertainty_ranks_below_adult_contradiction():
    df = population()
    df = probe(df, 2, 0, 0.90)  # infant labelled male, model says female 0.90
    df = probe(df, 2, 0, 0.65)  # infant, unsure
    df = probe(df, 40, 0, 0.90)  # adult, same raw confidence against the label
    s = score_gender(df)["gender_flip_prob"].to_numpy()
    assert s[-3] < s[-1], "the same model confidence is worth less where the model is unreliable (infants)"
    assert s[-2] < s[-1]
    # Raw self-confidence would tie the two 0.90 contradictions: the difference comes from the data.
    diff = gender_difficulty(df).set_index("age_group")
    assert diff.loc["0-4", "accuracy"] < diff.loc["30-40", "accuracy"] - 0.1


def test_per_age_terms_are_used_only_where_the_data_supports_them():
    same = score_gender(population(infant_sep=4.0, adult_sep=4.0)).attrs["gender_model"]
    differ = score_gender(population(infant_sep=0.6, adult_sep=4.0)).attrs["gender_model"]
    assert same["design"] in ("global", "+ age-bin intercepts"), same
    assert differ["design"] in ("+ age-bin slopes", "+ hinges and race terms"), differ
    assert len(differ["cv_loglik"]) == 4 and np.argmax(differ["cv_loglik"]) >= 2


def test_race_group_where_the_model_is_weak_counts_less():
    """Same age, same sharpness, same raw confidence: the group whose out-of-sample predictions are
    unreliable (estimated from the data, not told) gets the lower score."""
    df = population(n=4000, seed=3)
    rng = np.random.default_rng(3)
    adults = (df["age"] >= 18).to_numpy()
    weak = adults & (rng.random(len(df)) < 0.3)
    z = np.where(
        weak, (2 * df["gender"] - 1) * 0.5 + rng.normal(0, 1.5, len(df)), df["gender_logit_1"] - df["gender_logit_0"]
    )
    df["gender_logit_0"], df["gender_logit_1"], df["gender_prob"] = -z / 2, z / 2, 1 / (1 + np.exp(-z))
    df["race"] = np.where(weak, "group_b", "group_a")
    df = probe(df, 40, 0, 0.9)
    df = probe(df, 40, 0, 0.9)
    df.loc[df.index[-2], "race"], df.loc[df.index[-1], "race"] = "group_a", "group_b"
    s = score_gender(df)["gender_flip_prob"].to_numpy()
    assert s[-1] < s[-2] - 0.1, (s[-2], s[-1])
    without = score_gender(df.drop(columns=["race"]))["gender_flip_prob"].to_numpy()
    assert abs(without[-1] - without[-2]) < 1e-9, "without the race column the two probes are identical"


def test_blurry_image_low_confidence_counts_less():
    df = population(blurry_sep=0.8)
    df = probe(df, 40, 0, 0.85, lap=1500.0)  # sharp, contradicted
    df = probe(df, 40, 0, 0.85, lap=10.0)  # blurry, same contradiction
    s = score_gender(df)
    assert s["gender_flip_prob"].iat[-2] > s["gender_flip_prob"].iat[-1]
    assert "sharp image" in s["gender_label_reason"].iat[-2] and "low-quality image" in s["gender_label_reason"].iat[-1]


def test_duplicate_with_conflicting_label_raises_gender_score():
    df = population()
    df = probe(df, 40, 0, 0.75, content_hash="dup")  # labelled male, model leans female
    df = probe(df, 40, 1, 0.75, content_hash="dup")  # its pixel-identical copy, labelled female
    df = probe(df, 40, 0, 0.75)  # same prediction and label, no copy
    df["exact_group"] = np.where(df["content_hash"] == "dup", 7, -1)
    for frame in (df, df.drop(columns=["exact_group"])):  # without the column: same content_hash = copies
        s = score_gender(frame)
        assert s["gender_flip_prob"].iat[-3] > s["gender_flip_prob"].iat[-1]
        assert s["gender_flip_prob"].iat[-2] < s["gender_flip_prob"].iat[-3]
        assert "copies: 1 labelled female," in s["gender_label_reason"].iat[-3]


def test_estimated_number_of_wrong_genders_follows_the_noise_where_the_flip_model_does_not():
    """`--gender-max-score estimated`: cleanlab's confident-joint count of wrong labels tracks the flip rate
    (the flip model's own noise rate stays near 0.04 here), and the threshold keeps that many of our
    lowest scores, which hold far more flips than the rate; rows without a probability are left out."""
    from cleanlab.count import num_label_issues

    for rate in (0.1, 0.2):
        pred = population(4000, seed=1)
        flip = np.random.default_rng(0).random(len(pred)) < rate
        pred.loc[flip, "gender"] = 1 - pred.loc[flip, "gender"]
        g = score_gender(pred)
        est = estimated_gender_errors(pred["gender"], pred["gender_prob"], g["gender_label_score"])
        p = pred["gender_prob"].to_numpy()
        assert est["count"] == num_label_issues(pred["gender"].to_numpy(), np.column_stack([1 - p, p]))
        assert abs(est["count"] - flip.sum()) < 0.15 * flip.sum(), (est, flip.sum())
        assert g.attrs["gender_model"]["noise_rate"] < rate / 2  # why the count comes from elsewhere
        chosen = (g["gender_label_score"] <= est["max_score"]).to_numpy()
        assert chosen.sum() == est["count"] and flip[chosen].mean() > 2.5 * rate
    pred.loc[:9, "gender_prob"] = np.nan
    assert estimated_gender_errors(pred["gender"], pred["gender_prob"], g["gender_label_score"])["n"] == 3990
    one_class = estimated_gender_errors(np.zeros(5), np.full(5, 0.9), np.full(5, 0.1))
    assert one_class == {"count": 0, "max_score": -1.0, "n": 5}


def test_age_residual_matters_more_at_3_than_at_80():
    df = population()
    df = probe(df, 3, 0, 0.1, age_pred=13.0)  # 10 years off at age 3
    df = probe(df, 80, 0, 0.1, age_pred=70.0)  # 10 years off at age 80
    s = score_age(df)
    assert s["age_residual_z"].iat[-2] > s["age_residual_z"].iat[-1]
    assert s["age_label_score"].iat[-2] < s["age_label_score"].iat[-1]
    assert s["is_age_label_issue"].iat[-2] and not s["is_age_label_issue"].iat[-1]
    assert 10 <= s["age_suggested"].iat[-2] <= 16
    assert s["age_label_reason"].iat[-2].startswith("label 3, predicted")


def test_age_copy_that_backs_the_model_is_suggested():
    df = population()
    df = probe(df, 30, 0, 0.1, age_pred=52.0, content_hash="twin")
    df = probe(df, 50, 0, 0.1, age_pred=52.0, content_hash="twin")
    df = probe(df, 30, 0, 0.1, age_pred=52.0)
    df["exact_group"] = np.where(df["content_hash"] == "twin", 3, -1)
    s = score_age(df)
    assert s["age_suggested"].iat[-3] == 50
    assert s["age_residual_z"].iat[-3] > s["age_residual_z"].iat[-1] > s["age_residual_z"].iat[-2]
    assert "a copy is labelled 50" in s["age_label_reason"].iat[-3]


def test_missing_and_nan_predictions_get_statuses_not_zeros():
    df = population(500)
    df.loc[3, ["age_pred", "gender_prob", "gender_logit_0", "gender_logit_1"]] = np.nan
    df.loc[3, "model"] = None  # never predicted
    df.loc[4, ["gender_logit_0", "gender_logit_1", "gender_prob"]] = np.nan  # model output NaN
    df.loc[5, "age_pred"] = np.inf
    df.at[6, "embedding"] = np.full(16, np.nan, np.float32)
    df.loc[7, "gender"] = 2
    s = score_mislabels(df)
    assert s.loc[3, "label_status"] == "missing prediction"
    assert s.loc[4, "gender_label_status"] == "nan prediction" and s.loc[4, "age_label_status"] == "ok"
    assert s.loc[5, "age_label_status"] == "nan prediction" and s.loc[5, "gender_label_status"] == "ok"
    assert s.loc[7, "gender_label_status"] == "invalid label"
    for i, col in (
        (3, "gender_flip_prob"),
        (3, "age_residual_z"),
        (4, "gender_flip_prob"),
        (5, "age_residual_z"),
        (7, "gender_flip_prob"),
    ):
        assert np.isnan(s.loc[i, col]), (i, col)
    assert pd.isna(s.loc[5, "age_suggested"])
    assert s.loc[4, "gender_label_reason"] == "not scored: nan prediction"
    assert not s.loc[[3, 4], "is_gender_label_issue"].any()
    assert s.loc[6, "label_status"] == "ok" and np.isfinite(s.loc[6, "gender_flip_prob"])
    ok = s["label_status"] == "ok"
    assert ok.sum() == len(df) - 4 and s.loc[ok, GENDER_COLUMNS[:2] + AGE_COLUMNS[:2]].notna().all().all()
    assert list(s.columns) == GENDER_COLUMNS + AGE_COLUMNS + ["label_status"]


def test_manifest_rows_without_predictions_are_reported():
    df = population(400)
    manifest = df[["path", "filename", "content_hash", "age", "gender"]].copy()
    manifest = pd.concat(
        [
            manifest,
            pd.DataFrame(
                [{"path": "/img/extra.jpg", "filename": "extra.jpg", "content_hash": "x", "age": 30, "gender": 1}]
            ),
        ],
        ignore_index=True,
    )
    s = score_mislabels(align_predictions(manifest, df.drop(columns=["laplacian_var"])))
    assert s["label_status"].iat[-1] == "missing prediction"
    assert (s["label_status"].iloc[:-1] == "ok").all()


def test_single_class_subset_is_a_clear_error():
    df = population(400)
    females = df[df["gender"] == 1]
    with pytest.raises(SingleClassError, match="labelled female"):
        score_gender(females)
    assert isinstance(SingleClassError("x"), ValueError)
    assert score_age(females)["age_label_status"].eq("ok").all()  # age does not need both classes


def test_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="age_pred"):
        score_age(population(50).drop(columns=["age_pred"]))


def test_all_rows_unscorable_gives_statuses():
    df = population(20)
    df["age_pred"] = np.nan
    s = score_age(df)
    assert (s["age_label_status"] == "nan prediction").all() and s["age_residual_z"].isna().all()


def test_scores_23708_rows_in_seconds_and_linearly():
    big = population(23708, seed=3)
    big["embedding"] = list(np.random.default_rng(0).normal(size=(len(big), 576)).astype(np.float32))
    t0 = time.perf_counter()
    s = score_mislabels(big, neighbors=0)
    t_lin = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_mislabels(big.iloc[:5927], neighbors=0)
    t_quarter = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_mislabels(big)  # with the look-alike search
    t_knn = time.perf_counter() - t0
    assert s["label_status"].eq("ok").all()
    assert t_lin < 20, t_lin
    assert t_knn < 60, t_knn
    assert t_lin < 10 * t_quarter + 1.0, (t_lin, t_quarter)  # 4x the rows: ~4x the time, not 16x


@pytest.mark.fulldata
@pytest.mark.slow
def test_injected_flips_are_found_far_above_chance(utkface_dir, tmp_path):
    """Small real run: 2,000 UTKFace images, 5% gender flips and 5% age shifts, 2-fold cross-fit at 64 px."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "mislabel_detection", Path(__file__).resolve().parent.parent / "bench" / "mislabel_detection.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    detection_metrics, inject_noise = bench.detection_metrics, bench.inject_noise
    from core.images import decode_image, pixel_hash
    from curate.splits import parse_name
    from trainer.config import reference_config, replace
    from trainer.crossfit import cheap_config, crossfit

    files = sorted(p for p in utkface_dir.iterdir() if p.name.endswith(".jpg"))
    rng = np.random.default_rng(0)
    rows = []
    for p in (files[i] for i in rng.permutation(len(files))):
        try:
            parsed = parse_name(p.name)
        except ValueError:
            continue
        img, _ = decode_image(p)
        if img is None:
            continue
        rows.append(
            {
                "path": str(p),
                "filename": p.name,
                "age": parsed.age,
                "gender": parsed.gender,
                "content_hash": pixel_hash(img),
            }
        )
        if len(rows) == 2000:
            break
    df = pd.DataFrame(rows)
    noised, g_true, a_true = inject_noise(df, seed=0)
    cfg = replace(cheap_config(reference_config(), image_size=64, num_epochs=6), batch_size=64)
    pred = crossfit(noised, tmp_path / "cf", cfg, k=2, seed=0, progress=False)
    s = score_mislabels(pred)
    g = detection_metrics(g_true, s["gender_flip_prob"].to_numpy())
    a = detection_metrics(a_true, s["age_residual_z"].to_numpy())
    # Chance: AP = 0.05, AUROC = 0.5. Models this small are weak (measured on 2,000 images, two seeds:
    # gender accuracy ~0.66, ours gender AP 0.18 / 0.14, AUROC 0.76 / 0.72; the age head barely learns,
    # MAE ~14-15, ours age AP 0.10 / 0.08, AUROC 0.68 / 0.66). Gender must reach twice chance; age
    # only clearly above chance.
    assert g["ap"] > 0.10 and g["auroc"] > 0.65, g
    assert a["ap"] > 0.06 and a["auroc"] > 0.60, a
    assert s["label_status"].eq("ok").all()


def test_two_sided_age_score_spares_right_labels_a_shrunk_model_pulls_to_the_middle():
    """Fold models regress ages to the middle: a right label at either end sits far from its prediction.
    `age_two_sided_z` keeps those right extreme labels out of the top while still ranking shifted ones there,
    and is never above `age_residual_z`; a row without a label is NaN."""
    from audits.mislabels import age_two_sided_z

    rng = np.random.default_rng(3)
    n = 6000
    df = population(n=n, seed=3)
    true = rng.integers(1, 96, n).astype(float)
    shifted = rng.random(n) < 0.2
    up = (true < 40) | ((true < 60) & (rng.random(n) < 0.5))  # as the bench's noise: the ends shift inwards
    label = np.clip(np.where(shifted, true + np.where(up, 1, -1) * rng.integers(10, 41, n), true), 1, 100)
    shrunk = 40 + 0.6 * (true - 40) + rng.normal(0, 1, n) * (2 + 0.08 * true)
    df = df.assign(age=label, age_pred=shrunk.astype(np.float32), embedding=list(rng.normal(size=(n, 16))))
    df.loc[0, "age"] = np.nan
    a, z2 = score_age(df), age_two_sided_z(df)
    assert np.isnan(z2.iat[0]) and (z2.iloc[1:] <= a["age_residual_z"].iloc[1:] + 1e-12).all()
    k = int(shifted.sum())
    ends = (true <= 10) | (true >= 80)
    right_ends, wrong_ends = ends & ~shifted, ends & shifted
    for z in (a["age_residual_z"], z2):
        assert z.notna().sum() == n - 1
    top1 = np.zeros(n, bool)
    top1[np.argsort(-a["age_residual_z"].fillna(-1).to_numpy())[:k]] = True
    top2 = np.zeros(n, bool)
    top2[np.argsort(-z2.fillna(-1).to_numpy())[:k]] = True
    # measured here: right extreme labels in the top 0.18 -> 0.10, precision at the ends 0.44 -> 0.60
    assert top2[right_ends].mean() < 0.7 * top1[right_ends].mean()  # fewer right extreme labels masked
    assert shifted[top2 & ends].mean() > shifted[top1 & ends].mean() + 0.1  # precision at the ends
    assert top2[wrong_ends].mean() >= top1[wrong_ends].mean()  # and as many shifted ones there found
