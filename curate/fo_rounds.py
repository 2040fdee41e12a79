"""A second cross-fit round: the first round's estimated wrong labels masked, the fold models trained again.

Why: a cross-fit's fold models train on the very labels they are then asked to judge. Under heavy noise
(a fifth of the genders flipped) the cheap fold models learn part of the noise, their probabilities are
less sure than they should be, and the ranking of the held-out labels suffers most exactly where the
labels are worst. The first round already knows which labels are probably wrong: masking them (weight 0
in the loss, the image still trains the other head, as `curate export --mask-suspects` does) gives the
second round's fold models cleaner labels to learn from, so the held-out labels are judged by better
models. The scores of the second round replace the first's; no label is ever judged by a model trained on it.

What the first round masks is what `curate export --mask-suspects --gender-max-score estimated` would:
the estimated number of wrong gender labels (cleanlab's confident-joint count, our order) and the age
suspects. A person's decision wins: a label reviewed ok is never masked, one reviewed wrong (or excluded)
always is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from curate.fo_review import dataset_frame, decisions, label_scores


def masked_manifest(
    ds, pred: pd.DataFrame, allow_weak_model: bool = False, **options
) -> tuple[pd.DataFrame | None, dict]:
    """(the dataset's label manifest with `gender_label_weight` / `age_label_weight`, what was masked) from
    the first round's out-of-sample predictions `pred`; (None, {"why": ...}) when the first round cannot
    say which labels are wrong (a fold model no better than chance, unless `allow_weak_model`)."""
    from audits.mislabels import estimated_gender_errors

    df = dataset_frame(ds)
    p, scores, checks = label_scores(df, pred, allow_weak_model, **{k: v for k, v in options.items()
                                                                     if k != "quality_top_k"})  # fmt: skip
    weak = (~checks["gender_ok"].astype(bool)).any() if len(checks) else True
    if weak and not allow_weak_model:
        return None, {"why": "a first-round fold model is no better than the majority gender"}
    est = estimated_gender_errors(p["gender"], p["gender_prob"], scores["gender_label_score"])
    gender_mask = scores["gender_label_score"].to_numpy(float) <= est["max_score"]
    age_mask = scores["is_age_label_issue"].to_numpy(bool)
    gender_mask, age_mask = _obey_reviews(ds, df, gender_mask, age_mask)
    man = pd.DataFrame({"path": df["path"], "age": df["age"].astype(int), "gender": df["gender"].astype(int),
                        "content_hash": df["content_hash"],
                        "gender_label_weight": np.where(gender_mask, 0.0, 1.0),
                        "age_label_weight": np.where(age_mask, 0.0, 1.0)})  # fmt: skip
    info = {"estimated_gender_errors": est["count"], "genders_masked": int(gender_mask.sum()),
            "ages_masked": int(age_mask.sum())}  # fmt: skip
    return man, info


def _obey_reviews(ds, df: pd.DataFrame, gender_mask: np.ndarray, age_mask: np.ndarray):
    """Reviewed samples: ok -> never masked; mislabel, conflict or exclude -> both labels masked."""
    dec = decisions(ds)
    if dec.empty:
        return gender_mask, age_mask
    verdict = df["id"].map(dict(zip(dec["id"], dec["decision"])))
    ok, wrong = (verdict == "ok").to_numpy(), verdict.isin(["mislabel", "conflict", "exclude"]).to_numpy()
    return (gender_mask & ~ok) | wrong, (age_mask & ~ok) | wrong
