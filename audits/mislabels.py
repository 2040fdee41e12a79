"""Rank every image by how likely its gender label and its age label are wrong.

Input: out-of-sample predictions in the shared schema (trainer.crossfit: one row per image with
age, gender, age_pred, gender_prob, gender_logit_0/1, embedding, model, fold), optionally with audit
columns (row-aligned, or joined on `path`): image quality (`is_low_quality_issue` bool; `laplacian_var`,
`brisque_score`, `quality_score`, higher = better, any scale: only their ranks are used) and
duplicate groups (`exact_group`, `near_group`: int id, -1 for none; without `exact_group`, rows
sharing a `content_hash` are the pixel-identical groups).

Gender. A label-noise model fitted to the data itself by EM (linear in n, a few dozen parameters):
the observed label is the true label flipped with an unknown rate eps, and the true label's log-odds
    a + a_bin + a_race + (b + b_bin + b_race + c * quality) * z + hinges(z) + d * neighbours
      + copies * log((1 - eps) / eps)
where z = gender_logit_1 - gender_logit_0 is the model's log-odds of female. So the per-age-bin slope
b + b_bin is what the model's confidence is worth at that age (an infant's 0.9 means far less than an
adult's 0.9: estimated from the out-of-sample accuracy of each bin, not assumed), the per-bin intercept
is that bin's class balance (cleanlab's per-class thresholds, per age), c lets a blurry image's
confidence count less, `neighbours` is the label vote of the image's nearest look-alikes in embedding
space (same fold: same model, labels it never trained on) and `copies` (female minus male labels among
its pixel-identical / near-duplicate copies, which share its true label) enter as evidence through the
same noisy channel. Bin terms are ridge-shrunk towards the global fit, so small bins fall back to it;
the race terms (when a `race` column is given) do the same per race label, and hinges at |z| = 2, 4
let the confidence's worth bend where the network is over- or under-confident. How many of these
terms a data set supports is chosen, not assumed: four nested designs (global; + age-bin intercepts;
+ age-bin slopes; + hinges and race) are compared by 5-fold cross-validated likelihood of the
observed labels and the best is used (`.attrs["gender_model"]` says which). A weak cheap model
gains from per-group terms; a strong model with few errors overfits them.
`gender_flip_prob` is the posterior probability that the label was flipped;
`gender_label_score` = 1 - that (cleanlab orientation: lower = worse).

Age. The predicted age is refined with the look-alikes' median label (a robust fit in log-age space),
then the residual label - estimate is standardised by a robust scale that depends on the estimated
age (per reference age bin, separately above and below, interpolated between bins: errors grow with
age, so 10 years off at 3 is far more surprising than at 80), and by image quality; pixel-identical
copies whose labels agree with the label lower the score, copies that agree with the model raise it.
`age_suggested` is the copies' label when they back the model, else the estimate, rounded.

Every scored row gets a one-line reason, e.g. "predicted female 0.98, label male, sharp image, adult
30-40 (gender right on 97% here)". Rows that cannot be scored get a status ("missing prediction",
"nan prediction", "missing label", "invalid label") and NaN scores, never a silent zero. A subset
whose usable gender labels are all one class raises SingleClassError (nothing to calibrate against).

Cost: linear in the number of rows except the optional look-alike search (`neighbors` > 0), a
blocked brute-force search within each fold on a 64-d projection: O(n^2 / K) multiply-adds, about a
second for 23,708 images on 2 cores; `neighbors=0` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import CurateError
from core.labels import AGE_GROUP_EDGES, AGE_GROUP_LABELS, AGE_GROUP_WORDS, GENDER_NAMES
from core.schema import AGE_LABEL, GENDER_LABEL

QUALITY_COLUMNS = ("laplacian_var", "brisque_score", "blurry_score")
GROUP_COLUMNS = ("exact_group", "near_group")
SLOPE_KNOTS = (-4.0, -2.0, 2.0, 4.0)
GENDER_DESIGNS = ("global", "+ age-bin intercepts", "+ age-bin slopes", "+ hinges and race terms")
CV_FOLDS = 5

GENDER_COLUMNS = [col.name for col in GENDER_LABEL.columns()]
AGE_COLUMNS = [col.name for col in AGE_LABEL.columns()]


class ScoringError(CurateError, ValueError):
    """The predictions or audits given cannot be scored as they are (missing columns, rows that do not join)."""


class SingleClassError(ScoringError):
    """All usable gender labels are one class: per-class calibration is impossible."""


@dataclass
class Options:
    neighbors: int = 10  # look-alikes per image for the label vote; 0 = off (strictly linear time)
    gender_threshold: float = 0.5  # is_gender_label_issue: P(label wrong) at least this
    age_z_threshold: float = 3.5  # is_age_label_issue: residual at least this many expected errors ...
    age_min_years: float = 4.0  # ... and at least this many years
    top_k: int | None = None  # if set, flag exactly the top k instead of by threshold


# ---------------------------------------------------------------------------------------------- API
def score_mislabels(pred: pd.DataFrame, audit: pd.DataFrame | None = None, **options) -> pd.DataFrame:
    """Gender and age scores side by side (same index as `pred`), plus a combined `status`."""
    df = _with_audit(pred, audit)
    nb = _neighbours(df, Options(**options).neighbors)
    g = score_gender(df, None, _nb=nb, **options)
    a = score_age(df, None, _nb=nb, **options)
    out = pd.concat([g[GENDER_COLUMNS], a[AGE_COLUMNS]], axis=1)
    both = np.where(
        g["gender_label_status"] == a["age_label_status"],
        g["gender_label_status"],
        "gender: " + g["gender_label_status"] + "; age: " + a["age_label_status"],
    )
    out["label_status"] = np.where((g["gender_label_status"] == "ok") & (a["age_label_status"] == "ok"), "ok", both)
    return out


def estimated_gender_errors(gender: np.ndarray, gender_prob: np.ndarray, gender_label_score: np.ndarray) -> dict:
    """How many gender labels are wrong, and the `gender_label_score` at or below which that many of our
    lowest-scored labels lie: what `curate export --gender-max-score estimated` masks or drops.

    The count is cleanlab's confident-joint estimate (`cleanlab.count.num_label_issues`, the estimator of
    Northcutt et al.) from the out-of-sample P(female); the order is ours. Why both: our flip model ranks
    better but its own noise rate is far too low under heavy noise (0.08 for a true 0.20 on a cheap
    cross-fit), while the confident-joint count followed the injected rate (4,589 for 3,794 flipped at
    20%, 2,304 for 1,897 at 10%: docs/cleaning_payoff.md). Rows without a probability or score are left
    out. Returns {"count", "max_score" (-1.0 when the count is 0), "n"}.
    """
    from cleanlab.count import num_label_issues

    y, p, sc = (pd.to_numeric(pd.Series(a), errors="coerce").to_numpy(np.float64, na_value=np.nan)
                for a in (gender, gender_prob, gender_label_score))  # fmt: skip
    ok = np.isfinite(y) & np.isfinite(p) & np.isfinite(sc) & np.isin(y, (0, 1))
    if ok.sum() < 2 or len(np.unique(y[ok])) < 2:
        return {"count": 0, "max_score": -1.0, "n": int(ok.sum())}
    k = int(num_label_issues(y[ok].astype(np.int64), np.column_stack([1 - p[ok], p[ok]])))
    scores = np.sort(sc[ok])
    return {"count": k, "max_score": float(scores[min(k, len(scores)) - 1]) if k > 0 else -1.0, "n": int(ok.sum())}


def score_gender(
    pred: pd.DataFrame, audit: pd.DataFrame | None = None, _nb: np.ndarray | None = None, **options
) -> pd.DataFrame:
    """Per image, the `gender_label` check (core/schema.py): gender_flip_prob (higher = more likely
    wrong), gender_label_score (0..1, lower = worse), is_gender_label_issue, gender_label_reason,
    gender_suggested (the likelier label), gender_label_status. Same index as `pred`.
    """
    opt, df, label, z, status, ok = _scorable(pred, audit, options, _gender_labels, _gender_logodds)
    out = pd.DataFrame(
        {
            "gender_flip_prob": np.nan,
            "gender_label_score": np.nan,
            "is_gender_label_issue": False,
            "gender_label_reason": [f"not scored: {s}" for s in status],
            "gender_suggested": pd.array([pd.NA] * len(df), dtype="Int64"),
            "gender_label_status": status,
        },
        index=df.index,
    )
    if not ok.any():
        return out
    y = label[ok].astype(np.int64)
    if len(np.unique(y)) < 2:
        raise SingleClassError(
            f"all {int(ok.sum())} scorable images are labelled {GENDER_NAMES[y[0]]}: the gender score is "
            "calibrated against both classes; score a set that holds both (e.g. the whole dataset) and filter after"
        )
    bins = _age_bins(df, ok)
    qual = _quality_rank(df)
    zq = np.clip(z[ok], -15.0, 15.0)
    nb = _neighbours(df, opt.neighbors) if _nb is None else _nb
    knn_vote, knn_counts = _neighbour_votes(nb, ok, label.astype(float), kind="gender")
    copies_f, copies_m = _copy_label_counts(df, ok, label, kind="gender")
    dup = np.clip(copies_f - copies_m, -3, 3).astype(float)
    q = qual[ok] - 0.5 if qual is not None else np.zeros(ok.sum())

    n_bins = len(AGE_GROUP_LABELS) + 1  # + "age unknown"
    designs = _gender_designs(df, ok, zq, q, knn_vote, bins, n_bins)
    with _one_blas_thread():  # small dense fits: threads only contend (measured 4.7 s vs 22.5 s beside a training)
        level, cv = _select_design(designs, y, dup)
        issue, noise_rate, _ = _fit_flip_model(designs[level][0], y, designs[level][1], copies=dup)
    out.attrs["gender_model"] = {"design": GENDER_DESIGNS[level], "cv_loglik": cv, "noise_rate": noise_rate}
    p_label = 1.0 - issue

    out.loc[ok, "gender_flip_prob"] = issue
    out.loc[ok, "gender_label_score"] = p_label
    out.loc[ok, "gender_suggested"] = np.where(issue >= 0.5, 1 - y, y)
    out.loc[ok, "is_gender_label_issue"] = _suspects(issue, opt.gender_threshold, opt.top_k)
    acc = _bin_accuracy(bins, zq, y, n_bins)
    p_model = _sigmoid(zq)
    qtxt = _quality_words(qual[ok]) if qual is not None else None
    reasons = [
        _gender_reason(p_model[i], y[i], bins[i], acc, qtxt[i] if qtxt is not None else None, knn_vote[i],
                       knn_counts[i], copies_f[i], copies_m[i], issue[i])
        for i in range(len(y))
    ]  # fmt: skip
    out.loc[ok, "gender_label_reason"] = reasons
    return out


def _gender_designs(df: pd.DataFrame, ok: np.ndarray, zq: np.ndarray, q: np.ndarray, knn_vote: np.ndarray,
                    bins: np.ndarray, n_bins: int) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Nested designs (columns, ridge penalties), from "one calibration for everyone" to per-group
    calibration; cross-validation picks one (`GENDER_DESIGNS` names them)."""
    onehot = np.eye(n_bins)[bins]
    blocks: list[tuple[list[np.ndarray], list[float]]] = [
        ([np.ones(len(zq)), zq, knn_vote, zq * q, q], [1e-3, 1e-3, 1e-3, 1e-1, 1e-1])
    ]
    # Per age bin: intercepts (class balance), then slopes (what the confidence is worth at that age);
    # ridge-shrunk towards the global fit, so small bins fall back to it.
    blocks.append(([onehot[:, j] for j in range(n_bins)], [2.0] * n_bins))
    blocks.append(([onehot[:, j] * zq for j in range(n_bins)], [2.0] * n_bins))
    # Hinges (confidence is rarely calibrated linearly) and, when the data has one, per-race terms.
    extra = [np.maximum(zq - k, 0.0) for k in SLOPE_KNOTS]
    extra_pen = [1e-1] * len(SLOPE_KNOTS)
    if "race" in df.columns:
        codes = pd.factorize(df["race"].astype("string").fillna("unknown").to_numpy()[ok])[0]
        race_oh = np.eye(codes.max() + 1)[codes]
        for j in range(race_oh.shape[1]):
            extra += [race_oh[:, j], race_oh[:, j] * zq]
            extra_pen += [2.0, 2.0]
    blocks.append((extra, extra_pen))
    designs = []
    for level in range(len(blocks)):
        x = np.column_stack([c for cols, _ in blocks[: level + 1] for c in cols])
        pen = np.asarray([v for _, pens in blocks[: level + 1] for v in pens])
        keep = x.std(axis=0) > 0
        keep[0] = True
        designs.append((x[:, keep], pen[keep]))
    return designs


def _gender_reason(p: float, label: int, b: int, acc: np.ndarray, quality: str | None, vote: float, n_votes: int,
                   copies_f: int, copies_m: int, issue: float) -> str:  # fmt: skip
    """One line a reviewer reads: "predicted female 0.98, label male, sharp image, adult 30-40 (...)"."""
    parts = [f"predicted {GENDER_NAMES[int(p >= 0.5)]} {max(p, 1 - p):.2f}", f"label {GENDER_NAMES[label]}"]
    if quality is not None:
        parts.append(quality)
    if b < len(AGE_GROUP_LABELS):
        parts.append(f"{AGE_GROUP_WORDS[b]} {AGE_GROUP_LABELS[b]} (gender right on {acc[b]:.0%} here)")
    if n_votes > 0:
        nf = int(round(_vote_share(vote, n_votes) * n_votes))
        parts.append(f"{nf}/{n_votes} look-alikes female")
    if copies_f + copies_m > 0:
        said = [f"{n} labelled {g}" for n, g in ((copies_f, "female"), (copies_m, "male")) if n]
        parts.append(f"copies: {' and '.join(said)}")  # words, not "0 female / 1 male" (which reads as codes)
    parts.append(f"P(label wrong) {issue:.2f}")
    return ", ".join(parts)


def score_age(
    pred: pd.DataFrame, audit: pd.DataFrame | None = None, _nb: np.ndarray | None = None, **options
) -> pd.DataFrame:
    """Per image: age_residual_z (higher = more likely wrong; a residual in expected errors),
    age_two_sided_z (see age_two_sided_z), age_label_score (0..1, lower = worse), is_age_label_issue,
    age_suggested (int years or <NA>), age_label_reason, age_label_status. Same index as `pred`.
    """
    opt, df, age, ap, status, ok = _scorable(pred, audit, options, _age_labels, _age_predictions)
    out = pd.DataFrame(
        {
            "age_residual_z": np.nan,
            "age_two_sided_z": np.nan,
            "age_label_score": np.nan,
            "is_age_label_issue": False,
            "age_suggested": pd.array([pd.NA] * len(df), dtype="Int64"),
            "age_label_reason": [f"not scored: {s}" for s in status],
            "age_label_status": status,
        },
        index=df.index,
    )
    if not ok.any():
        return out
    y = age[ok]
    est = _age_estimate(df, ok, age, ap, opt, _nb)
    qual = _quality_rank(df)
    r, c, s, zres = _age_residuals(y, est, qual[ok] if qual is not None else None)
    copy_med, copy_n = _copy_label_counts(df, ok, age, kind="age")
    has_copy = copy_n > 0
    copy_agrees = has_copy & (np.abs(copy_med - y) <= 1)
    copy_backs_model = has_copy & ~copy_agrees & (np.abs(copy_med - est) < np.abs(y - est))
    score = np.abs(zres)
    score = np.where(copy_agrees, score * 0.5, score)
    score = np.where(copy_backs_model, score * 1.5 + 1.0, score)
    suggested = np.where(copy_backs_model, copy_med, est + c)
    suggested = np.clip(np.round(suggested), 1, 116).astype(np.int64)

    out.loc[ok, "age_residual_z"] = score
    out.loc[ok, "age_two_sided_z"] = np.minimum(score, _label_frame_z(y, r))
    out.loc[ok, "age_label_score"] = 2.0 * _norm_sf(score)
    flag = _suspects(score, opt.age_z_threshold, opt.top_k)
    if opt.top_k is None:
        flag &= np.abs(y - suggested) >= opt.age_min_years
    out.loc[ok, "is_age_label_issue"] = flag
    out.loc[ok, "age_suggested"] = suggested
    qtxt = _quality_words(qual[ok]) if qual is not None else None
    copies = np.where(copy_agrees, "a copy has the same label", "")
    copies = np.where(copy_backs_model, [f"a copy is labelled {m:g}" for m in copy_med], copies)
    reasons = [
        ", ".join([f"label {y[i]:g}, predicted {est[i]:.0f}",
                   f"{abs(r[i] - c[i]):.0f} y off where ±{s[i]:.1f} is usual at {AGE_GROUP_LABELS[_bin_of(est[i])]}",
                   f"{score[i]:.1f}x the usual error"]
                  + ([qtxt[i]] if qtxt is not None else []) + ([copies[i]] if copies[i] else [])
                  + [f"suggest {suggested[i]}"])
        for i in range(len(y))
    ]  # fmt: skip
    out.loc[ok, "age_label_reason"] = reasons
    return out


def age_two_sided_z(pred: pd.DataFrame, audit: pd.DataFrame | None = None, **options) -> pd.Series:
    """Per image, the smaller of two standardised residuals of the age label (NaN where not scored): the
    label against the usual residual at its estimate (`age_residual_z`) and against the usual residual of
    images with that label. score_age's `age_two_sided_z` column; `curate export --age-rank two-sided`
    ranks the age suspects by it.

    Why: fold models regress to the middle (true 80+ predicted ~65, true 4-14 ~12 on a 2-fold cross-fit),
    so a right label at either end of the age range looks far off at its estimate, and masking it teaches
    the model less of the ends, where the age error is made. Among images labelled alike, that shrinkage is
    the usual residual, so a right extreme label scores low in the label's frame while a shifted one scores
    high in both. At 20% injected noise (docs/cleaning_payoff.md, 2026-12-06) the two-sided ranking masks the
    shifted ages of children and the elderly at 0.5-0.8 precision where the estimate's frame alone reaches
    0.1-0.4, and the policy model recovers the age loss that masking by `age_residual_z` did not.
    """
    return score_age(pred, audit, **options)["age_two_sided_z"].astype(np.float64)


def _label_frame_z(y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """|residual| in the errors usual among images with the same label (binned by the label, not the
    estimate; no quality or copy adjustment): the second frame of age_two_sided_z."""
    lo, hi, centre = _age_scales(y, r)
    c = np.interp(y, *centre)
    return np.abs(r - c) / np.where(r - c >= 0, np.interp(y, *hi), np.interp(y, *lo))


def _age_estimate(df: pd.DataFrame, ok: np.ndarray, age: np.ndarray, ap: np.ndarray, opt, nb) -> np.ndarray:
    """The refined age estimate of each scored row: the prediction with its look-alikes' labels (_refine_age)."""
    nb = _neighbours(df, opt.neighbors) if nb is None else nb
    knn_age, knn_counts = _neighbour_votes(nb, ok, age, kind="age")
    return _refine_age(age[ok], np.clip(ap[ok], 0.0, 120.0), knn_age, knn_counts)


def _age_residuals(y: np.ndarray, est: np.ndarray, qual: np.ndarray | None):
    """(residual, its typical centre, its scale, standardised residual) per label: errors grow with age
    and are larger on poor images, so the residual is measured in the errors usual at that estimate (per
    reference age bin, separately above and below) and rescaled by quality tercile."""
    r = y - est
    scale_lo, scale_hi, center = _age_scales(est, r)
    c = np.interp(est, *center)
    s = np.where(r - c >= 0, np.interp(est, *scale_hi), np.interp(est, *scale_lo))
    zres = (r - c) / s
    if qual is not None:
        qt = np.minimum((qual * 3).astype(int), 2)
        med_all = np.median(np.abs(zres)) + 1e-9
        for t in range(3):
            m = qt == t
            if m.sum() >= 30:
                zres[m] /= max(np.median(np.abs(zres[m])) / med_all, 0.5)
    return r, c, s, zres


def _scorable(pred: pd.DataFrame, audit: pd.DataFrame | None, options: dict, labels, predictions):
    """(Options, `pred` joined with `audit`, labels, predictions, status, ok) for one label check: `labels` and
    `predictions` give per row a value and a status; a row is scored (ok) when both are "ok", else its status
    says what is missing, the label's first."""
    opt = Options(**options)
    df = _with_audit(pred, audit)
    label, status = labels(df)
    predicted, pstatus = predictions(df)
    status = np.where(status == "ok", pstatus, status)
    return opt, df, label, predicted, status, status == "ok"


def gender_difficulty(pred: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample gender accuracy and mean confidence per reference age bin (from the data)."""
    df = pred
    label, status = _gender_labels(df)
    z, pstatus = _gender_logodds(df)
    ok = (status == "ok") & (pstatus == "ok")
    bins = _age_bins(df, ok)
    zq = z[ok]
    y = label[ok].astype(int)
    rows = []
    for b, name in enumerate(AGE_GROUP_LABELS):
        m = bins == b
        if m.any():
            p = _sigmoid(zq[m])
            rows.append(
                {
                    "age_group": name,
                    "n": int(m.sum()),
                    "accuracy": float(((p >= 0.5) == (y[m] == 1)).mean()),
                    "mean_confidence": float(np.maximum(p, 1 - p).mean()),
                }
            )
    return pd.DataFrame(rows)


def align_predictions(manifest: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """Predictions for every manifest row (joined on path); rows without one get NaN predictions,
    which score_* report as status "missing prediction". Labels come from the manifest."""
    keep = [c for c in pred.columns if c not in ("age", "gender")]
    out = manifest.drop(columns=[c for c in keep if c != "path" and c in manifest.columns]).merge(
        pred[keep].drop_duplicates("path"), on="path", how="left"
    )
    out.index = manifest.index
    return out


# ------------------------------------------------------------------------------------ input checks
def _with_audit(pred: pd.DataFrame, audit: pd.DataFrame | None) -> pd.DataFrame:
    if not isinstance(pred, pd.DataFrame):
        raise TypeError("pred must be a pandas DataFrame of predictions")
    if audit is None:
        return pred
    cols = [c for c in (*QUALITY_COLUMNS, "is_low_quality_issue", *GROUP_COLUMNS, "race") if c in audit.columns]
    if not cols:
        return pred
    if "path" in audit.columns and "path" in pred.columns:
        a = audit.drop_duplicates("path").set_index("path")[cols]
        extra = a.reindex(pred["path"].to_numpy())
        extra.index = pred.index
    elif len(audit) == len(pred):
        extra = audit[cols].set_axis(pred.index)
    else:
        raise ScoringError(f"audit has {len(audit)} rows for {len(pred)} predictions and no `path` column to join on")
    return pred.drop(columns=[c for c in cols if c in pred.columns]).join(extra)


def _need(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ScoringError(
            f"predictions lack column(s) {', '.join(missing)} (expected the shared prediction "
            "schema: path, age, gender, age_pred, gender_prob, gender_logit_0/1, embedding, model, fold)"
        )


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _no_model(df: pd.DataFrame) -> np.ndarray:
    if "model" not in df.columns:
        return np.ones(len(df), bool)
    m = df["model"]
    return (m.isna() | (m.astype(str).str.strip().isin(["", "nan", "None", "<NA>"]))).to_numpy()


def _gender_labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    _need(df, "gender")
    g = _numeric(df, "gender")
    status = np.where(np.isnan(g), "missing label", np.where(np.isin(g, (0, 1)), "ok", "invalid label"))
    return np.nan_to_num(g, nan=0).astype(np.int64), status.astype(object)


def _gender_logodds(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds of female from the logits when present, else from gender_prob; plus per-row status."""
    if "gender_logit_0" in df.columns and "gender_logit_1" in df.columns:
        l0, l1 = _numeric(df, "gender_logit_0"), _numeric(df, "gender_logit_1")
        z = l1 - l0
        bad = ~np.isfinite(l0) | ~np.isfinite(l1)
        nothing = np.isnan(l0) & np.isnan(l1)
        if "gender_prob" in df.columns:
            gp = _numeric(df, "gender_prob")
            nothing &= np.isnan(gp)
    else:
        _need(df, "gender_prob")
        gp = _numeric(df, "gender_prob")
        bad = ~np.isfinite(gp) | (gp < 0) | (gp > 1)
        nothing = np.isnan(gp)
        pc = np.clip(np.nan_to_num(gp, nan=0.5), 1e-7, 1 - 1e-7)
        z = np.log(pc) - np.log1p(-pc)
    missing = nothing & _no_model(df)
    status = np.where(missing, "missing prediction", np.where(bad, "nan prediction", "ok")).astype(object)
    return np.where(bad, 0.0, z), status


def _age_labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    _need(df, "age")
    a = _numeric(df, "age")
    status = np.where(np.isnan(a), "missing label", np.where((a >= 0) & (a <= 130), "ok", "invalid label"))
    return np.nan_to_num(a, nan=0.0), status.astype(object)


def _age_predictions(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    _need(df, "age_pred")
    p = _numeric(df, "age_pred")
    missing = np.isnan(p) & _no_model(df)
    status = np.where(missing, "missing prediction", np.where(np.isfinite(p), "ok", "nan prediction"))
    return np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0), status.astype(object)


# -------------------------------------------------------------------------------------- evidence
def _bin_of(age: float) -> int:
    return int(np.clip(np.searchsorted(AGE_GROUP_EDGES, age, side="right") - 1, 0, len(AGE_GROUP_EDGES) - 1))


def _age_bins(df: pd.DataFrame, ok: np.ndarray) -> np.ndarray:
    """Reference age bin of each scored row: from the age label, else the predicted age, else 'unknown'."""
    a = _numeric(df, "age") if "age" in df.columns else np.full(len(df), np.nan)
    if "age_pred" in df.columns:
        a = np.where(np.isfinite(a) & (a >= 0), a, _numeric(df, "age_pred"))
    a = a[ok]
    b = np.clip(
        np.searchsorted(AGE_GROUP_EDGES, np.nan_to_num(a, nan=0), side="right") - 1, 0, len(AGE_GROUP_EDGES) - 1
    )
    return np.where(np.isfinite(a), b, len(AGE_GROUP_LABELS))


def _quality_rank(df: pd.DataFrame) -> np.ndarray | None:
    """0 (worst) .. 1 (best) per row: mean percentile rank of the quality columns; None if there are none."""
    cols = [c for c in QUALITY_COLUMNS if c in df.columns]
    ranks = [pd.to_numeric(df[c], errors="coerce").rank(pct=True).to_numpy() for c in cols]
    if not ranks and "is_low_quality_issue" not in df.columns:
        return None
    q = np.nanmean(np.vstack(ranks), axis=0) if ranks else np.full(len(df), 0.5)
    q = np.where(np.isnan(q), 0.5, q)
    if "is_low_quality_issue" in df.columns:
        low = df["is_low_quality_issue"].fillna(False).astype(bool).to_numpy()
        q = np.where(low, np.minimum(q, 0.05), q)
    return q


def _quality_words(q: np.ndarray) -> list[str]:
    return [
        "low-quality image" if v < 0.1 else "soft image" if v < 0.33 else "sharp image" if v > 0.66 else "average image"
        for v in q
    ]


def _hash_codes(hashes: pd.Series) -> np.ndarray:
    """Integer code per content hash; a missing hash gets a code of its own (it matches nothing)."""
    codes = pd.factorize(hashes)[0].astype(np.int64)
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


def _copy_label_counts(df: pd.DataFrame, ok: np.ndarray, label: np.ndarray, kind: str):
    """Labels of each scored row's duplicate copies (other members of its exact / near group).

    gender: (number of other copies labelled female, number labelled male);
    age: (median label of the other copies, number of other copies). Only scorable labels count.
    """
    n_ok = int(ok.sum())
    cols = [c for c in GROUP_COLUMNS if c in df.columns]
    if "exact_group" not in df.columns and "content_hash" in df.columns:
        # Pixel-identical copies are known from the content hash alone.
        codes = _hash_codes(df["content_hash"])
        df = df.assign(exact_group=np.where(np.bincount(codes)[codes] > 1, codes, -1))
        cols = ["exact_group", *cols]
    if kind == "gender":
        f_tot, m_tot = np.zeros(n_ok, int), np.zeros(n_ok, int)
    else:
        med, cnt = np.full(n_ok, np.nan), np.zeros(n_ok, int)
    if not cols:
        return (f_tot, m_tot) if kind == "gender" else (med, cnt)
    lab = label[ok].astype(float)
    for col in cols:
        if kind == "age" and col == "near_group":
            continue  # a near-duplicate may be another photo of the person years apart
        grp = pd.to_numeric(df[col], errors="coerce").to_numpy()[ok]
        valid = np.isfinite(grp) & (grp >= 0)
        if not valid.any():
            continue
        g = pd.Series(grp[valid]).astype(np.int64)
        lv = pd.Series(lab[valid])
        if kind == "gender":
            nf = lv.groupby(g.to_numpy()).transform("sum").to_numpy() - lv.to_numpy()
            nall = g.map(g.value_counts()).to_numpy() - 1
            idx = np.flatnonzero(valid)
            f_tot[idx] = np.maximum(f_tot[idx], nf.astype(int))
            m_tot[idx] = np.maximum(m_tot[idx], (nall - nf).astype(int))
        else:
            # Median of the *other* copies: exact for pairs (the common case), the group median otherwise.
            size = g.map(g.value_counts()).to_numpy()
            total = lv.groupby(g.to_numpy()).transform("sum").to_numpy()
            gmed = lv.groupby(g.to_numpy()).transform("median").to_numpy()
            other = np.where(size == 2, total - lv.to_numpy(), gmed)
            idx = np.flatnonzero(valid & True)
            has = size > 1
            med[idx[has]] = other[has]
            cnt[idx[has]] = size[has] - 1
    return (f_tot, m_tot) if kind == "gender" else (med, cnt)


def _neighbours(df: pd.DataFrame, neighbors: int) -> np.ndarray:
    """(n, k) row positions of each row's nearest look-alikes, -1 where none.

    Cosine similarity of the embeddings, searched within the row's own fold (same model, so the
    embeddings are comparable, and none of those labels was trained on), excluding the row itself
    and its pixel-identical copies (those are counted as copies). Rows without a finite embedding
    get no neighbours and are nobody's neighbour.
    """
    n = len(df)
    if neighbors <= 0 or "embedding" not in df.columns or n < 3:
        return np.full((n, 0), -1, np.int64)
    emb_col = df["embedding"].to_numpy()
    lens = np.array([len(e) if isinstance(e, (list, tuple, np.ndarray)) else 0 for e in emb_col])
    d = int(np.bincount(lens).argmax())
    if d == 0:
        return np.full((n, 0), -1, np.int64)
    usable = lens == d
    emb = np.zeros((n, d), np.float32)
    emb[usable] = np.stack([np.asarray(e, np.float32) for e in emb_col[usable]])
    usable &= np.isfinite(emb).all(axis=1)
    folds = np.nan_to_num(_numeric(df, "fold"), nan=-2) if "fold" in df.columns else np.zeros(n)
    hcode = _hash_codes(df["content_hash"]) if "content_hash" in df.columns else np.arange(n)
    out = np.full((n, neighbors), -1, np.int64)
    for f in np.unique(folds[usable]):
        idx = np.flatnonzero((folds == f) & usable)
        if len(idx) < 3:
            continue
        nb = _knn(emb[idx], hcode[idx], min(neighbors, len(idx) - 1))
        out[idx, : nb.shape[1]] = np.where(nb >= 0, idx[np.maximum(nb, 0)], -1)
    return out


def _neighbour_votes(nb: np.ndarray, ok: np.ndarray, label: np.ndarray, kind: str):
    """The labels of each scored row's look-alikes (only neighbours whose own label is scorable).

    gender: (log-odds of the smoothed female share, number of neighbours);
    age: (median neighbour age, number of neighbours).
    """
    n_ok = int(ok.sum())
    if nb.shape[1] == 0:
        return (
            (np.zeros(n_ok), np.zeros(n_ok, int)) if kind == "gender" else (np.full(n_ok, np.nan), np.zeros(n_ok, int))
        )
    nbo = nb[ok]
    valid = (nbo >= 0) & ok[np.maximum(nbo, 0)]
    nl = np.where(valid, label.astype(float)[np.maximum(nbo, 0)], np.nan)
    cnt = valid.sum(axis=1)
    if kind == "gender":
        nf = np.nansum(nl, axis=1)
        return np.where(cnt > 0, np.log((nf + 0.5) / (cnt - nf + 0.5)), 0.0), cnt
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(cnt[:, None] > 0, nl, 0.0), axis=1)
    return np.where(cnt > 0, med, np.nan), cnt


def _knn(x: np.ndarray, hcode: np.ndarray, k: int, dim: int = 64, block: int = 4096) -> np.ndarray:
    """Indices of the k nearest rows by cosine (excluding the row itself and same-hash rows); -1 pads.

    The embeddings are centred and projected on their top `dim` principal axes first (a 576 x 576
    covariance: cheap), then searched by blocked matrix products and top-k.
    """
    import torch

    x = x.astype(np.float64) - x.mean(axis=0)
    if x.shape[1] > dim and len(x) > dim:
        _, vecs = np.linalg.eigh(x.T @ x)
        x = x @ vecs[:, ::-1][:, :dim]
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    xt = torch.from_numpy(x.astype(np.float32))
    hc = torch.from_numpy(np.asarray(hcode, np.int64))
    kk = min(k + 4, len(x))  # a few spare for excluded copies
    out = np.full((len(x), k), -1, np.int64)
    for s in range(0, len(x), block):
        e = min(s + block, len(x))
        sim = xt[s:e] @ xt.T
        sim[hc[s:e, None] == hc[None, :]] = -float("inf")  # self and pixel-identical copies
        val, idx = torch.topk(sim, kk, dim=1)
        idx = torch.where(torch.isfinite(val), idx, torch.full_like(idx, -1)).numpy()
        out[s:e] = idx[:, :k]
    return out


def _vote_share(logodds: float, n: int) -> float:
    e = np.exp(logodds)
    # Invert log((nf + .5) / (n - nf + .5)) for nf.
    return float(((n + 0.5) * e - 0.5) / (1 + e) / max(n, 1))


def _refine_age(y: np.ndarray, p: np.ndarray, knn_age: np.ndarray, knn_counts: np.ndarray) -> np.ndarray:
    """Robust (Huber) fit of log1p(label) on log1p(prediction) and log1p(neighbour median age)."""
    have = knn_counts > 0
    lp = np.log1p(p)
    lk = np.log1p(np.where(have, knn_age, p))
    x = np.column_stack([np.ones_like(lp), lp, np.where(have, lk - lp, 0.0)])
    t = np.log1p(y)
    beta = _huber_fit(x, t)
    if beta[1] <= 0:  # a model that learned nothing: do not invent a relation
        return p
    return np.clip(np.expm1(x @ beta), 0.0, 120.0)


def _age_scales(est: np.ndarray, r: np.ndarray):
    """Robust centre and lower / upper scale of the residual per reference age bin of the estimate,
    as (knots, values) for np.interp; bins with few rows are skipped (interpolation fills them)."""
    knots, centre, lo, hi = [], [], [], []
    bins = np.clip(np.searchsorted(AGE_GROUP_EDGES, est, side="right") - 1, 0, len(AGE_GROUP_EDGES) - 1)
    glob = max(1.4826 * np.median(np.abs(r - np.median(r))), 0.5)
    for b in range(len(AGE_GROUP_EDGES)):
        m = bins == b
        if m.sum() < 20:
            continue
        rb = r[m]
        c = np.median(rb)
        up, dn = rb[rb > c] - c, c - rb[rb < c]
        shrink = m.sum() / (m.sum() + 50.0)
        s_hi = 1.4826 * np.median(up) if len(up) >= 5 else glob
        s_lo = 1.4826 * np.median(dn) if len(dn) >= 5 else glob
        knots.append(np.median(est[m]))
        centre.append(c * shrink)
        hi.append(max(shrink * s_hi + (1 - shrink) * glob, 0.5))
        lo.append(max(shrink * s_lo + (1 - shrink) * glob, 0.5))
    if not knots:
        c = float(np.median(r))
        return ([0.0], [glob]), ([0.0], [glob]), ([0.0], [c])
    k = np.asarray(knots)
    return (k, np.asarray(lo)), (k, np.asarray(hi)), (k, np.asarray(centre))


def _bin_accuracy(bins: np.ndarray, z: np.ndarray, y: np.ndarray, n_bins: int) -> np.ndarray:
    acc = np.full(n_bins, np.nan)
    for b in range(n_bins):
        m = bins == b
        if m.any():
            acc[b] = ((z[m] >= 0) == (y[m] == 1)).mean()
    return acc


def _suspects(score: np.ndarray, threshold: float, top_k: int | None) -> np.ndarray:
    if top_k is None:
        return score >= threshold
    flag = np.zeros(len(score), bool)
    flag[np.argsort(-score, kind="stable")[: max(0, top_k)]] = True
    return flag


# ------------------------------------------------------------------------------------------ fitting
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _norm_sf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(-np.asarray(x, float))


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _select_design(
    designs: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray, copies: np.ndarray, folds: int = CV_FOLDS
) -> tuple[int, list[float]]:
    """Index of the design whose flip model best predicts held-out observed labels (K-fold CV mean
    log-likelihood of P(observed) = (1 - eps) q + eps (1 - q)), and every design's score.

    Why: per-group calibration pays where groups really differ (a weak cheap model: infants near
    chance) and overfits where they do not (a strong model with few errors, where the flips it must
    find decide the slopes); measured on injected noise, the held-out likelihood picks the better one.
    Deterministic (fixed fold assignment); sets too small to split fall back to the global design.
    """
    n = len(y)
    if n < 20 * folds or len(designs) == 1:
        return 0, [float("nan")] * len(designs)
    f = np.random.default_rng(0).permutation(n) % folds
    scores = []
    for x, pen in designs:
        ll = 0.0
        for i in range(folds):
            tr, te = f != i, f == i
            if len(np.unique(y[tr])) < 2:
                return 0, [float("nan")] * len(designs)
            _, eps, beta = _fit_flip_model(x[tr], y[tr], pen, copies=copies[tr])
            p_true = _sigmoid(x[te] @ beta + copies[te] * np.log((1 - eps) / eps))
            qv = np.where(y[te] == 1, p_true, 1 - p_true)
            ll += np.log(np.clip((1 - eps) * qv + eps * (1 - qv), 1e-12, 1.0)).sum()
        scores.append(ll / n)
    return int(np.argmax(scores)), scores


def _fit_flip_model(
    x: np.ndarray, y: np.ndarray, penalty: np.ndarray, copies: np.ndarray | None = None, iters: int = 8
) -> tuple[np.ndarray, float, np.ndarray]:
    """P(label flipped) per row under "observed label = true label, flipped with rate eps", by EM.

    The true label follows a logistic model on `x`; fitting it straight to the observed labels would
    flatten its slopes most where the model is best (the flips look like its worst errors), so the
    flips are a latent variable: E-step = each row's flip posterior w, M-step = logistic fit to the
    soft target (1 - w) * label + w * (1 - label), eps = mean w.
    `copies` (female minus male labels among the row's duplicate copies, which share its true label)
    adds copies * log((1 - eps) / eps) to the true label's log-odds: each copy's label is one more
    observation through the same noisy channel. It is evidence by construction, not a fitted weight
    (a weight fitted on the few conflicting copies would learn from the very conflicts it must flag).
    """
    copies = np.zeros(len(y)) if copies is None else np.asarray(copies, float)
    eps = 0.05
    yf = y.astype(float)

    def offset(e: float) -> np.ndarray:
        return copies * np.log((1 - e) / e)

    beta = _fit_logistic(x, yf, penalty, np.ones(len(y)), offset=offset(eps))

    def flip_posterior(e: float) -> np.ndarray:
        p_true = _sigmoid(x @ beta + offset(e))
        q = np.where(y == 1, p_true, 1 - p_true)  # P(true label = observed label)
        return e * (1 - q) / (e * (1 - q) + (1 - e) * q + 1e-300)

    for _ in range(iters):
        w = flip_posterior(eps)
        new_eps = float(np.clip(w.mean(), 1e-3, 0.45))
        # Counting a row as its label (weight 1 - w) and as the other (weight w) is the same
        # likelihood, gradient and Hessian as one row with the soft target (1 - w) y + w (1 - y).
        target = (1 - w) * yf + w * (1 - yf)
        old = beta
        beta = _fit_logistic(x, target, penalty, np.ones(len(y)), beta, offset=offset(new_eps))
        converged = abs(new_eps - eps) < 1e-5 and np.abs(beta - old).max() < 1e-4
        eps = new_eps
        if converged:
            break
    return flip_posterior(eps), eps, beta


def _fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    weight: np.ndarray,
    beta: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    iters: int = 50,
) -> np.ndarray:
    """Ridge-penalised, weighted logistic regression (with a fixed offset) by Newton's method."""
    p = x.shape[1]
    lam = np.diag(penalty)
    beta = np.zeros(p) if beta is None else beta.copy()
    off = np.zeros(len(y)) if offset is None else offset
    for _ in range(iters):
        mu = _sigmoid(x @ beta + off)
        w = np.maximum(mu * (1 - mu), 1e-6) * weight
        grad = x.T @ ((y - mu) * weight) - lam @ beta
        hess = (x * w[:, None]).T @ x + lam
        step = np.linalg.solve(hess + 1e-9 * np.eye(p), grad)
        beta += step
        if np.abs(step).max() < 1e-6:
            break
    return beta


def _huber_fit(x: np.ndarray, t: np.ndarray, delta: float = 1.345, iters: int = 30) -> np.ndarray:
    """Huber regression by iteratively reweighted least squares (scale: MAD of the residuals)."""
    w = np.ones(len(t))
    beta = np.zeros(x.shape[1])
    for _ in range(iters):
        xw = x * w[:, None]
        new = np.linalg.lstsq(xw.T @ x + 1e-8 * np.eye(x.shape[1]), xw.T @ t, rcond=None)[0]
        r = t - x @ new
        s = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-9
        a = np.abs(r) / s
        w = np.where(a <= delta, 1.0, delta / a)
        if np.abs(new - beta).max() < 1e-8:
            beta = new
            break
        beta = new
    return beta
