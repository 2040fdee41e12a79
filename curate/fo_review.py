"""Mislabel flags, saved views and the review loop on the FiftyOne dataset.

`flag_mislabels` joins out-of-sample predictions (trainer.crossfit: no model scores a label it was
trained on) to the dataset's samples on the file path, scores every label with
`audits.mislabels.score_mislabels` (labels read from the dataset, so a renamed file is scored by its
current label), and stores per sample: the scores, reasons and suggested corrections, the out-of-sample
predictions (`oos_*`) and their model hashes. It then re-derives the candidate tags (`suspect:gender`,
`suspect:age`, `low_quality`; previous ones are removed first, reviewer tags are never touched) and
saves the views below, which `curate app` opens and `curate review-status` counts.

Review. A reviewer tags samples `confirmed:mislabel`, `confirmed:ok` or `exclude` in the App, and may
store a corrected label in `age_corrected` (int years) / `gender_corrected` ("male" / "female").
`review_status` summarises these decisions per saved view; `decisions` is the table `curate export`
obeys (one row per reviewed sample, `decision` in exclude / conflict / mislabel / ok).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from audits.mislabels import AGE_COLUMNS, GENDER_COLUMNS
from core.errors import CurateError
from core.labels import GENDER_NAMES, MAX_AGE, gender_code
from curate.export.common import decision_of
from curate.fo_schema import REVIEW_TAGS, schema_specs

SUSPECT_TAGS = ("suspect:gender", "suspect:age", "low_quality")
VIEW_DESCRIPTIONS = {
    "suspect-gender": "gender label probably wrong (tag suspect:gender), most suspicious first",
    "suspect-age": "age label probably wrong (tag suspect:age), most suspicious first",
    "low-quality": "images the quality audit flags (tag low_quality), worst BRISQUE score first",
    "duplicate-label-conflicts": "pixel-identical or near-duplicate images whose labels disagree, by group",
    "face-issues": "no face, several faces, or a face off UTKFace's crop geometry (is_face_issue), worst first",
    "worst-errors-by-age-group": "per age group, the largest age errors and gender losses (out-of-sample)",
    "worst-errors-by-skin-tone": "per skin-tone category, the largest age errors and gender losses",
    "review-queue": "every sample tagged suspect:gender, suspect:age or low_quality",
}
# The label checks' fields come from the one schema (core/schema.py); FiftyOne shows genders as names.
MISLABEL_FIELDS = {
    **schema_specs([*GENDER_COLUMNS, *AGE_COLUMNS, "label_status"]),
    "gender_suggested": ("StringField", None),
    "mislabel_version": ("StringField", None),
    "oos_age_pred": ("EmbeddedDocumentField", "Regression"),
    "oos_gender_pred": ("EmbeddedDocumentField", "Classification"),
    "oos_age_abs_error": ("FloatField", None),
    "oos_gender_loss": ("FloatField", None),
    "oos_model": ("StringField", None),
    "oos_fold": ("IntField", None),
}


class ReviewError(CurateError, ValueError):
    pass


# ------------------------------------------------------------------------------- flag-mislabels
def dataset_frame(ds, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Usable samples (score_status ok) as a frame: id, path, labels, and audit fields present."""
    from fiftyone import ViewField as F

    view = ds.match(F("score_status") == "ok")
    schema = ds.get_field_schema()
    cols = ["id", "filepath", "content_hash", "age.value", "gender.label", "race.label"]
    opt = [
        c
        for c in (
            "is_low_quality_issue",
            "laplacian_var",
            "brisque_score",
            "exact_group",
            "near_group",
            "skin_category",
            "age_group",
            "is_label_conflict_issue",
            "age_abs_error",
            "gender_loss",
            *extra,
        )
        if c in schema
    ]
    vals = view.values(cols + opt)
    df = pd.DataFrame(dict(zip(["id", "path", "content_hash", "age", "gender_label", "race"] + opt, vals)))
    df["gender"] = df["gender_label"].map({g: i for i, g in enumerate(GENDER_NAMES)})
    return df


def flag_mislabels(
    fo,
    ds,
    oos: pd.DataFrame,
    top_k: int | None = None,
    quality_top_k: int | None = None,
    worst_n: int = 12,
    allow_weak_model: bool = False,
    source: dict | None = None,
    **options,
) -> dict:
    """Score, store, tag and save views; returns counts. `options` go to score_mislabels
    (gender_threshold, age_z_threshold, age_min_years, neighbors). Rows of a fold whose model is no
    better than the trivial answer (audits.model_checks) are scored but not flagged, unless
    `allow_weak_model`; the checks and the predictions' `source` are stored in the dataset's info for
    `curate review-status`."""
    from curate.fo_schema import check_schema, declare_fields

    df = dataset_frame(ds)
    if df.empty:
        raise ReviewError(f"dataset {ds.name!r} has no usable samples: run `curate score` first")
    check_schema(ds, MISLABEL_FIELDS)
    pred, scores, checks = label_scores(df, oos, allow_weak_model, top_k=top_k, **options)
    if not allow_weak_model:
        _keep_useful_flags(ds, checks)
    _store_checks(ds, checks, allow_weak_model, source, label_fingerprint(df))
    estimate = _store_estimate(ds, pred, scores, checks, allow_weak_model)
    have = pred["age_pred"].notna().to_numpy() if "age_pred" in pred else np.zeros(len(df), bool)
    models = sorted(set(pred.loc[have, "model"].astype(str))) if "model" in pred else []
    version = "mislabels:" + hashlib.sha256(",".join(models).encode()).hexdigest()[:12]
    declare_fields(fo, ds, MISLABEL_FIELDS)
    for f, v in _field_values(fo, df, pred, scores, have, version).items():
        ds.set_values(f, v, key_field="id")
    tagged = _tag_candidates(ds, df, scores, quality_top_k)
    ids, ap = df["id"].tolist(), _num(pred, "age_pred")
    err = pd.DataFrame(
        {"id": ids, "age_err": np.abs(ap - df["age"].to_numpy(float)), "g_loss": _num(pred, "gender_loss")}
    )
    if not have.any() and "age_abs_error" in df:  # no out-of-sample predictions: fall back to the score model's
        err["age_err"], err["g_loss"] = df["age_abs_error"].to_numpy(float), df.get("gender_loss", np.nan)
    status = scores["label_status"]
    return {"scored": int((status == "ok").sum()), "not_scored": int((status != "ok").sum()), **tagged,
            "model_checks": checks.to_dict("records"),
            "views": save_views(ds, df, err, worst_n), "version": version, "gender_errors": estimate,
            "status_counts": status.value_counts().to_dict()}  # fmt: skip


def label_scores(
    df: pd.DataFrame, oos: pd.DataFrame, allow_weak_model: bool = False, **options
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(predictions in `df`'s row order, label scores, fold checks) for the samples of `dataset_frame`:
    no suspect from a fold model no better than chance unless `allow_weak_model`. `options` go to
    score_mislabels (None = its default)."""
    from audits.mislabels import score_mislabels
    from audits.model_checks import fold_checks

    pred = _aligned_predictions(df, oos)
    scores = score_mislabels(pred, _audit_frame(df), **{k: v for k, v in options.items() if v is not None})
    checks = fold_checks(pred)
    if not allow_weak_model:
        _unflag_weak_folds(scores, pred, checks)
    return pred, scores, checks


def _store_estimate(ds, pred: pd.DataFrame, scores: pd.DataFrame, checks: pd.DataFrame, allowed: bool) -> dict:
    """The estimated number of wrong gender labels and its score threshold (audits.mislabels), in
    `info["curate"]["gender_errors"]` for `curate export --gender-max-score estimated`; none from a fold
    model no better than chance (its probabilities estimate nothing), unless `allowed`."""
    from audits.mislabels import estimated_gender_errors
    from curate.fo_schema import now_utc, update_info

    weak = (~checks["gender_ok"].astype(bool)).any() if len(checks) else True
    if weak and not allowed:
        est = {"count": None, "max_score": None, "why": "a fold model is no better than the majority gender"}
    else:
        est = estimated_gender_errors(pred["gender"], _num(pred, "gender_prob"), scores["gender_label_score"])
    est["at"] = now_utc().isoformat()
    update_info(ds, lambda info: info.update(gender_errors=est))
    return est


def _unflag_weak_folds(scores: pd.DataFrame, pred: pd.DataFrame, checks: pd.DataFrame) -> None:
    """No suspect from a model that learned nothing: clear the issue flags of its fold's rows."""
    fold = pred["fold"].fillna(-1).astype(int) if "fold" in pred else pd.Series(-1, index=pred.index)
    for task in ("gender", "age"):
        weak = checks.loc[~checks[f"{task}_ok"].astype(bool), "fold"].tolist()
        scores.loc[fold.isin(weak).to_numpy(), f"is_{task}_label_issue"] = False


def _keep_useful_flags(ds, checks: pd.DataFrame) -> None:
    """Refuse to replace flags from models that learned something with flags from models that learned
    nothing: every fold model here fails both tasks (e.g. a from-scratch cross-fit of a few dozen images)
    while the stored flags came from a model that passed one. Nothing is written; the earlier flags stay."""
    folds = ((ds.info.get("curate") or {}).get("model_checks") or {}).get("folds") or []
    learned = lambda rows: any(r.get("gender_ok") or r.get("age_ok") for r in rows)  # noqa: E731
    if len(checks) and not learned(checks.to_dict("records")) and learned(folds):
        from curate.cli.common import DEFAULT_MODEL  # its absolute path: the advice works from any folder

        raise ReviewError(
            f"none of the {len(checks)} model(s) behind these predictions is clearly better than always answering "
            f"the majority gender or the median age, so nothing is written: dataset {ds.name!r} keeps its flags "
            "from models that were (`curate review-status` shows them). With few images, cross-fit from the "
            f"shipped weights (--set weights={DEFAULT_MODEL}, when its card shows it never saw these "
            "images) or score with the shipped model (--oos model); --allow-weak-model replaces them anyway"
        )


def label_fingerprint(df: pd.DataFrame) -> dict:
    """How many samples and which labels the flags were computed on (a hash of content hash, age and gender
    per sample), so that `export` and `review-status` can say when the dataset changed since."""
    rows = sorted(f"{h}:{a}:{g}" for h, a, g in zip(df["content_hash"], df["age"], df["gender"]))
    return {"samples": len(df), "labels_sha": hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]}


def flags_outdated(ds) -> str | None:
    """A sentence when samples or labels changed since the last `curate flag-mislabels`, else None."""
    stored = ((ds.info.get("curate") or {}).get("model_checks") or {}).get("labels")
    if not stored:
        return None
    now = label_fingerprint(dataset_frame(ds))
    if now == stored:
        return None
    return (
        f"dataset {ds.name!r} changed since `curate flag-mislabels` ({stored['samples']} samples then, "
        f"{now['samples']} now{'' if now['samples'] != stored['samples'] else ', labels changed'}): its flags may "
        "be out of date; re-run flag-mislabels"
    )


def decided_on_other_labels(ds) -> list[str]:
    """ "file: age 25 then, 35 now" for each sample whose last decision was made on labels that have changed since
    (the source's labels edited and re-scored): its correction or "label is right" would be applied to labels the
    reviewer never saw. Decisions logged before log entries recorded the labels are not checked."""
    if "review_log" not in ds.get_field_schema():
        return []
    out = []
    for name, log, age, gender in zip(*ds.values(["filename", "review_log", "age.value", "gender.label"])):
        last = (log or [{}])[-1] or {}
        if last.get("decision") in (None, "pending"):
            continue
        then_a, then_g, now_a = last.get("label_age"), last.get("label_gender"), None if age is None else round(age)
        moved = then_a is not None and now_a is not None and then_a != now_a
        said = [f"age {then_a} then, {now_a} now"] if moved else []
        said += [f"gender {then_g} then, {gender} now"] if then_g and gender and then_g != gender else []
        if said:
            out.append(f"{name}: {', '.join(said)}")
    return out


def stale_decisions_warning(ds) -> str | None:
    """The sentence review-status and export print for `decided_on_other_labels`, or None."""
    changed = decided_on_other_labels(ds)
    if not changed:
        return None
    return (f"{len(changed)} review decision(s) were made on labels that have changed since (first: "
            f"{'; '.join(changed[:3])}): they are applied as they are; look at them again in the App")  # fmt: skip


def _store_checks(ds, checks: pd.DataFrame, allowed: bool, source: dict | None, labels: dict | None = None) -> None:
    """The model checks, where the predictions came from and what labels they scored, in
    `info["curate"]["model_checks"]`."""
    from curate.fo_schema import now_utc, update_info

    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in checks.to_dict("records")]
    stored = {"at": now_utc().isoformat(), "weak_allowed": allowed, "folds": rows, "source": source or {},
              "labels": labels}  # fmt: skip
    update_info(ds, lambda info: info.update(model_checks=stored))


def _aligned_predictions(df: pd.DataFrame, oos: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample predictions in the dataset's row order; one made for other pixels than the sample's
    (its content hash differs) does not count."""
    from audits.mislabels import align_predictions

    oos = oos.copy()
    oos["path"] = oos["path"].astype(str)
    stale = oos["content_hash"].astype(str) if "content_hash" in oos else None
    pred = align_predictions(
        df[["path", "content_hash", "age", "gender", "race"]], oos.drop(columns=["content_hash"], errors="ignore")
    )
    if stale is not None:
        h = dict(zip(oos["path"], stale))
        bad = np.array([p in h and h[p] != c for p, c in zip(df["path"], df["content_hash"])])
        cols = [c for c in ("age_pred", "gender_prob", "gender_logit_0", "gender_logit_1", "model") if c in pred]
        pred.loc[bad, cols] = np.nan
    return pred


def _audit_frame(df: pd.DataFrame) -> pd.DataFrame | None:
    """The audit columns the label scores use (quality ranks, duplicate groups), when the dataset has them."""
    cols = [
        c for c in ("is_low_quality_issue", "laplacian_var", "brisque_score", "exact_group", "near_group") if c in df
    ]
    if not cols:
        return None
    audit = df[["path", *cols]]
    if "is_low_quality_issue" in audit:
        audit = audit.assign(is_low_quality_issue=audit["is_low_quality_issue"].fillna(False).astype(bool))
    return audit


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column as floats, NaN where the frame lacks it."""
    return frame[col].to_numpy(float) if col in frame else np.full(len(frame), np.nan)


def _field_values(fo, df: pd.DataFrame, pred: pd.DataFrame, scores: pd.DataFrame, have: np.ndarray,
                  version: str) -> dict[str, dict]:  # fmt: skip
    """Field -> {sample id: value}: the label checks' columns and the out-of-sample predictions."""
    from curate.fo_values import CONVERT

    ids = df["id"].tolist()

    def by_id(values) -> dict:
        return dict(zip(ids, values))

    def col(frame: pd.DataFrame, name: str, field: str) -> dict:
        values = frame[name] if name in frame else pd.Series(np.nan, index=frame.index)
        return by_id(CONVERT[field](values))

    ap, prob, l0, l1 = (_num(pred, c) for c in ("age_pred", "gender_prob", "gender_logit_0", "gender_logit_1"))
    label_cols = [c for c in (*GENDER_COLUMNS, *AGE_COLUMNS, "label_status") if c != "gender_suggested"]
    gender_pred = [
        fo.Classification(label=GENDER_NAMES[int(p >= 0.5)], confidence=float(max(p, 1 - p)), logits=np.array([a, b]))
        if h
        else None
        for p, a, b, h in zip(prob, l0, l1, have)
    ]
    return {
        **{c: col(scores, c, MISLABEL_FIELDS[c][0]) for c in label_cols},
        "gender_suggested": by_id(
            None if s != s else GENDER_NAMES[int(s)] for s in scores["gender_suggested"].astype(float)
        ),
        "mislabel_version": dict.fromkeys(ids, version),
        "oos_age_pred": by_id(fo.Regression(value=float(a)) if h else None for a, h in zip(ap, have)),
        "oos_gender_pred": by_id(gender_pred),
        "oos_age_abs_error": col(pd.DataFrame({"e": np.abs(ap - df["age"].to_numpy(float))}), "e", "FloatField"),
        "oos_gender_loss": col(pred, "gender_loss", "FloatField"),
        "oos_model": col(pred, "model", "StringField"),
        "oos_fold": col(pred, "fold", "IntField"),
    }


def _tag_candidates(ds, df: pd.DataFrame, scores: pd.DataFrame, quality_top_k: int | None) -> dict[str, int]:
    """Tag suspects and low-quality images (re-derived each run; reviewer tags are left alone); counts."""
    ds.untag_samples(list(SUSPECT_TAGS))
    ids = df["id"].tolist()
    g_ids = [i for i, s in zip(ids, scores["is_gender_label_issue"].fillna(False)) if s]
    a_ids = [i for i, s in zip(ids, scores["is_age_label_issue"].fillna(False)) if s]
    if quality_top_k is not None and "brisque_score" in df:
        q_ids = df.sort_values("brisque_score", na_position="last")["id"].head(quality_top_k).tolist()
    elif "is_low_quality_issue" in df:
        q_ids = df.loc[df["is_low_quality_issue"].fillna(False).astype(bool), "id"].tolist()
    else:
        q_ids = []
    tagged = {"suspect:gender": g_ids, "suspect:age": a_ids, "low_quality": q_ids}
    for tag, tid in tagged.items():
        if tid:
            ds.select(tid).tag_samples(tag)
    return {tag: len(tid) for tag, tid in tagged.items()}


def save_views(ds, df: pd.DataFrame, err: pd.DataFrame, worst_n: int) -> dict[str, int]:
    """Create or overwrite the saved views; returns name -> sample count."""
    from fiftyone import ViewField as F

    schema = ds.get_field_schema()
    views = {
        "suspect-gender": ds.match_tags("suspect:gender").sort_by("gender_flip_prob", reverse=True),
        "suspect-age": ds.match_tags("suspect:age").sort_by("age_residual_z", reverse=True),
        "low-quality": ds.match_tags("low_quality"),
        "review-queue": ds.match_tags(list(SUSPECT_TAGS)),
    }
    if "brisque_score" in schema:
        views["low-quality"] = views["low-quality"].sort_by("brisque_score")
    if "is_label_conflict_issue" in schema:
        order = "near_group" if "near_group" in schema else "content_hash"
        views["duplicate-label-conflicts"] = ds.match(F("is_label_conflict_issue") == True).sort_by(order)  # noqa: E712
    else:  # no duplicate audit: pixel-identical copies (same content hash) whose labels differ
        g = df.groupby("content_hash")
        bad = g["age"].transform("nunique").gt(1) | g["gender"].transform("nunique").gt(1)
        views["duplicate-label-conflicts"] = ds.select(
            df.loc[bad].sort_values("content_hash")["id"].tolist(), ordered=True
        )
    if "is_face_issue" in schema:  # a field, not a tag (like label conflicts): the audit re-derives it
        views["face-issues"] = ds.match(F("is_face_issue") == True).sort_by("face_score")  # noqa: E712
    views["worst-errors-by-age-group"] = ds.select(_worst_per_group(df, err, "age_group", worst_n), ordered=True)
    if "skin_category" in df:
        views["worst-errors-by-skin-tone"] = ds.select(
            _worst_per_group(df, err, "skin_category", worst_n), ordered=True
        )
    out = {}
    for name, view in views.items():
        ds.save_view(name, view, description=VIEW_DESCRIPTIONS[name], overwrite=True)
        out[name] = len(view)
    return out


def _worst_per_group(df: pd.DataFrame, err: pd.DataFrame, group: str, n: int) -> list[str]:
    """Per group (in order), the n largest age errors then the n largest gender losses, each id once."""
    d = df[["id", group]].merge(err, on="id")
    d = d[d[group].notna()]
    out: list[str] = []
    seen: set[str] = set()
    for _, part in d.groupby(group, sort=True):
        for c in ("age_err", "g_loss"):
            for i in part.dropna(subset=[c]).nlargest(n, c)["id"]:
                if i not in seen:
                    seen.add(i)
                    out.append(i)
    return out


# ------------------------------------------------------------------------------------ review
_SAMPLE_COLUMNS = ("path", "filename", "content_hash", "age", "gender", "race")  # a decision row's sample and labels
_CORRECTIONS = ("age_corrected", "gender_corrected")


def decisions(ds) -> pd.DataFrame:
    """One row per reviewed sample (a review tag or a correction): the table `curate export` obeys.

    Columns: path, filename, content_hash, age, gender, race (current labels), tags (";"-joined review
    and candidate tags), age_corrected, gender_corrected, decision (exclude / conflict / mislabel / ok),
    problem (an unusable correction), the flag-mislabels scores, and who decided when (reviewed_by, reviewed_at)
    where present."""
    schema = ds.get_field_schema()
    cols = [
        "id",
        "filepath",
        "filename",
        "content_hash",
        "age.value",
        "gender.label",
        "race.label",
        "tags",
        "age_corrected",
        "gender_corrected",
    ]
    extra = [
        c
        for c in (
            "is_gender_label_issue",
            "is_age_label_issue",
            "gender_flip_prob",
            "age_residual_z",
            "age_suggested",
            "gender_suggested",
            "is_low_quality_issue",
            "reviewed_by",
            "reviewed_at",
        )
        if c in schema
    ]
    vals = ds.values(cols + extra)
    df = pd.DataFrame(dict(zip(["id", *_SAMPLE_COLUMNS, "all_tags", *_CORRECTIONS, *extra], vals)))
    rtags = df["all_tags"].map(lambda t: [x for x in (t or []) if x in REVIEW_TAGS])
    corrected = df["age_corrected"].notna() | df["gender_corrected"].notna()
    df = df[(rtags.map(len) > 0) | corrected].copy()
    rtags = rtags[df.index]
    order = REVIEW_TAGS + SUSPECT_TAGS  # one order whatever order flag-mislabels and the App added them in
    df["tags"] = df["all_tags"].map(lambda t: ";".join(x for x in order if x in (t or [])))
    df["decision"] = [decision_of(t, a, g) for t, a, g in zip(rtags, df["age_corrected"], df["gender_corrected"])]
    df["problem"] = [_correction_problem(*r) for r in zip(df["age_corrected"], df["gender_corrected"], df["age"],
                                                          df["gender"])]  # fmt: skip
    age_c = pd.to_numeric(df["age_corrected"], errors="coerce")
    whole = age_c.dropna().map(float.is_integer).all()
    df["age_corrected"] = age_c.astype("Int64") if whole else age_c  # a fractional one stays as typed (a problem)
    return df[[*_SAMPLE_COLUMNS, "tags", *_CORRECTIONS, "decision", "problem", *extra, "id"]].reset_index(drop=True)


def _correction_problem(age_c, gender_c, age, gender) -> str:
    """What `curate export` would refuse or not take as a correction ("" when nothing): the same reading of
    genders (core.labels.gender_code) and ages, and a correction equal to the label, which corrects nothing (export
    drops such an image as labelled wrong without a correction)."""
    probs = []
    if pd.notna(age_c):
        a = pd.to_numeric(age_c, errors="coerce")
        if pd.isna(a) or not 0 <= float(a) <= MAX_AGE or not float(a).is_integer():
            probs.append(f"age_corrected {age_c} is not a whole age in 0-{MAX_AGE}")
        elif age is not None and pd.notna(age) and round(float(age)) == int(a):
            probs.append(f"age_corrected {int(a)} equals the label: not a correction")
    if pd.notna(gender_c):
        g = gender_code(gender_c)
        if g is None:
            probs.append(f"gender_corrected {gender_c!r} is not male/female")
        elif gender is not None and GENDER_NAMES[g] == gender:
            probs.append(f"gender_corrected {gender_c!r} equals the label: not a correction")
    return "; ".join(probs)


def decided_filter(ds):
    """The FiftyOne expression of "has a review decision" (a review tag or a correction)."""
    from fiftyone import ViewField as F

    expr = F("tags").contains(list(REVIEW_TAGS))
    schema = ds.get_field_schema()
    for field in _CORRECTIONS:
        if field in schema:
            expr = expr | (F(field) != None)  # noqa: E711 - a database expression, not a Python comparison
    return expr


def review_status(ds) -> pd.DataFrame:
    """Per saved view (and the whole dataset): samples, reviewed, pending and each decision's count.

    Counted in the database: only the decided samples (few) are read, so it stays fast on big datasets."""
    expr = decided_filter(ds)
    dec = decisions(ds.match(expr))
    by_id = dict(zip(dec["id"], dec["decision"]))
    rows = []
    for name in ["(all samples)", *sorted(ds.list_saved_views())]:
        view = ds.view() if name == "(all samples)" else ds.load_saved_view(name)
        n = view.count()
        d = pd.Series([by_id[i] for i in view.match(expr).values("id") if i in by_id], dtype=object)
        counts = d.value_counts()
        rows.append(
            {
                "view": name,
                "samples": n,
                "reviewed": len(d),
                "pending": n - len(d),
                **{k: int(counts.get(k, 0)) for k in ("mislabel", "ok", "exclude", "conflict")},
            }
        )
    return pd.DataFrame(rows)
