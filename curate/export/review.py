"""The review in: decisions, corrections and candidate flags, from a CSV or FiftyOne, applied to a manifest.

Review input
------------
A review CSV (what `curate review-status --csv` exports from the FiftyOne dataset), one row per
reviewed image. Columns (case-sensitive; unknown columns are ignored):

    path | filename         required, at least one: the image (matched to the manifests by file name)
    content_hash           optional, recommended: pixel hash from the manifest; a mismatch is an error
                           (the image changed since it was reviewed)
    tags                   ";"-joined FiftyOne tags: exclude, confirmed:mislabel, confirmed:ok,
                           suspect:gender, suspect:age, low_quality (others are kept but unused)
    age_corrected          reviewed age in years (blank: no correction)
    gender_corrected       reviewed gender, 0/1, male/female or m/f (blank: no correction)
    decision               optional: exclude / ok / mislabel / pending (review-status writes it); replaces the
                           row's review tags
    is_gender_label_issue, is_age_label_issue          optional booleans from `curate flag-mislabels`
    gender_label_score, age_label_score   optional [0, 1] label scores from `curate flag-mislabels`
                           (lower = worse; schema-1 names and raw scores are converted)
    is_low_quality_issue   optional boolean from `curate audit`

`--dataset NAME` reads the same fields straight from a FiftyOne dataset instead.

Decisions (each removal and correction is listed in removed.csv / corrections.csv and counted)
---------------------------------------------------------------------------------------------
- `exclude`                                   -> removed
- `confirmed:ok` with `confirmed:mislabel` or a correction -> removed (a conflicting review)
- a correction equal to the label            -> removed (says the label is wrong, gives no new one)
- `confirmed:mislabel` without any correction -> removed (known wrong, right answer unknown)
- `age_corrected` / `gender_corrected`        -> label replaced (file name and manifest both)
- a `decision` column (exclude / ok / mislabel / pending, as review-status writes it) is the row's decision:
  it replaces the row's review tags (rows whose tags said otherwise are warned about)
- policy `drop_low_quality`: `low_quality` tag or `is_low_quality_issue` column (review or `--audits`) -> removed,
  unless reviewed (a reviewer's decision wins over every policy)
- policy `drop_suspects`: unreviewed suspects -> removed. Suspect: tag suspect:gender / suspect:age,
  column is_gender_label_issue / is_age_label_issue, or (with `gender_max_score` / `age_max_score`) a
  label score at most that: both scores are in [0, 1], lower = worse (core/schema.py), so one threshold
  reads the same way for both tasks.
  Unreviewed: none of exclude, confirmed:mislabel, confirmed:ok, and no correction.
The first matching reason, in this order, is the one recorded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.labels import GENDER_NAMES, gender_code
from core.schema import upgrade_columns
from curate.export.common import (
    AGE_RANK,
    DECISIONS,
    LABEL_SCORES,
    REVIEWED_TAGS,
    TAG_EXCLUDE,
    TAG_LOW_QUALITY,
    TAG_MISLABEL,
    TAG_OK,
    TAG_SUSPECT_AGE,
    TAG_SUSPECT_GENDER,
    ExportError,
    Policy,
    decision_of,
)


def _bool_col(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    low = s.astype(str).str.strip().str.lower()
    return low.isin(("1", "true", "yes", "y", "t", "1.0"))


def _gender_value(v) -> float | None:
    """0.0 / 1.0 for a gender, NaN for none given, None for a value that is not a gender."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" or pd.isna(v):
        return np.nan
    g = gender_code(v)
    return None if g is None else float(g)


def _bad_rows(source: str, what: str, mask: pd.Series, values: pd.Series, names: pd.Series) -> None:
    """One error naming every offending row (the first ten by file name, and how many in all)."""
    if not mask.any():
        return
    shown = [f"{n} ({v})" for n, v in zip(names[mask].head(10), values[mask].head(10).astype(str))]
    more = f" and {int(mask.sum()) - 10} more" if mask.sum() > 10 else ""
    raise ExportError(f"{source}: {int(mask.sum())} row(s) with {what}: {', '.join(shown)}{more}")


KNOWN_TAGS = (TAG_EXCLUDE, TAG_MISLABEL, TAG_OK, TAG_SUSPECT_GENDER, TAG_SUSPECT_AGE, TAG_LOW_QUALITY, "generated")


def mistyped_tag(t: str) -> str | None:
    """A tag in curate's namespaces that curate does not know, or one a letter or two from a known tag ("exlude
    (did you mean exclude?)"), else None: a typo that would silently drop a decision. Other tags are the
    reviewer's own."""
    import difflib

    if t in KNOWN_TAGS:
        return None
    near = difflib.get_close_matches(t, KNOWN_TAGS, n=1, cutoff=0.8)
    if near or t.split(":")[0] in ("confirmed", "suspect"):
        return f"{t} (did you mean {near[0]}?)" if near else t
    return None


def _check_tags(source: str, tags: pd.Series, names: pd.Series) -> None:
    """Refuse the rows with a mistyped tag (`mistyped_tag`), naming them."""
    found = tags.map(lambda ts: "; ".join(u for u in map(mistyped_tag, ts) if u))
    _bad_rows(source, f"an unknown tag (known: {', '.join(KNOWN_TAGS)})", found != "", found, names)


def normalize_review(raw: pd.DataFrame, source: str = "review") -> pd.DataFrame:
    """The review as one frame: filename, path, content_hash, tags (tuple), corrections, flags, scores."""
    raw = _label_scores_v2(upgrade_columns(raw, source))
    if "filename" not in raw and "path" not in raw:
        raise ExportError(f"{source}: needs a path or filename column (has: {', '.join(map(str, raw.columns))})")
    df = pd.DataFrame(index=raw.index)
    path = raw["path"].fillna("").astype(str) if "path" in raw else pd.Series("", index=raw.index)
    fname = raw["filename"].fillna("").astype(str) if "filename" in raw else pd.Series("", index=raw.index)
    df["filename"] = np.where(fname != "", fname, [os.path.basename(p) for p in path])
    df["path"] = path
    df["content_hash"] = raw["content_hash"].fillna("").astype(str) if "content_hash" in raw else ""
    tags = raw["tags"] if "tags" in raw else pd.Series("", index=raw.index)
    df["tags"] = [
        tuple(t for t in (x.strip() for x in ("" if pd.isna(v) else str(v)).replace(",", ";").split(";")) if t)
        if not isinstance(v, (list, tuple))
        else tuple(v)
        for v in tags
    ]
    age = pd.to_numeric(raw["age_corrected"], errors="coerce") if "age_corrected" in raw else np.nan
    df["age_corrected"] = age
    if "age_corrected" in raw:
        bad = (
            raw["age_corrected"].notna()
            & (raw["age_corrected"].astype(str).str.strip() != "")
            & df["age_corrected"].isna()
        )
        age = df["age_corrected"]
        bad |= age.notna() & (~age.between(0, 120) | (age != age.round()))  # 30.5 is refused, not exported as 30
        _bad_rows(source, "an age_corrected that is not a whole age in 0-120", bad, raw["age_corrected"],
                  df["filename"])  # fmt: skip
    df["gender_corrected"] = np.nan
    if "gender_corrected" in raw:
        g = pd.Series([_gender_value(v) for v in raw["gender_corrected"]], index=raw.index, dtype=object)
        _bad_rows(source, "a gender_corrected that is not 0/1/male/female", g.map(lambda v: v is None),
                  raw["gender_corrected"], df["filename"])  # fmt: skip
        df["gender_corrected"] = g.astype(float)
    if "decision" in raw:
        _obey_decision_column(raw["decision"], df, source)
    _check_tags(source, df["tags"], df["filename"])
    for col in ("is_gender_label_issue", "is_age_label_issue", "is_low_quality_issue"):
        df[col] = _bool_col(raw[col]) if col in raw else False
    for col in (*LABEL_SCORES, AGE_RANK):
        df[col] = pd.to_numeric(raw[col], errors="coerce") if col in raw else np.nan
    _suggestions(raw, df, source)
    if "skin_category" in raw:  # the dataset's skin-tone audit, which --oversample balances when no --audits is given
        df["skin_category"] = raw["skin_category"].astype(object).where(raw["skin_category"].notna(), None)
    df = df[df["filename"] != ""].reset_index(drop=True)
    dup = df["filename"].duplicated(keep=False)
    if dup.any():
        raise ExportError(
            f"{source}: {df.loc[dup, 'filename'].nunique()} image(s) reviewed more than once, "
            f"first: {df.loc[dup, 'filename'].iloc[0]}"
        )
    return df


def _obey_decision_column(decision: pd.Series, df: pd.DataFrame, source: str) -> None:
    """A review CSV's `decision` column (review-status writes one; a person edits it, or writes only filename and
    decision) is the decision: its review tag replaces the row's review tags, and ok / exclude / pending drop the
    row's corrections (mislabel keeps them; conflict keeps the row as it is). Rows whose tags said otherwise are
    noted in `decision_note`, which the export lists as a warning."""
    d = decision.fillna("").astype(str).str.strip().str.lower()
    _bad_rows(source, f"a decision that is not {'/'.join(DECISIONS)}", ~d.isin(("", *DECISIONS)), decision,
              df["filename"])  # fmt: skip
    df["decision_note"] = ""
    tag = {"exclude": TAG_EXCLUDE, "ok": TAG_OK, "mislabel": TAG_MISLABEL, "pending": None}
    for i in d.index[d.isin(tuple(tag))]:
        was = decision_of(df.at[i, "tags"], df.at[i, "age_corrected"], df.at[i, "gender_corrected"])
        if was != d[i] and was != "pending":
            df.at[i, "decision_note"] = f"{df.at[i, 'filename']}: decision {d[i]}, tags and corrections said {was}"
        kept = tuple(t for t in df.at[i, "tags"] if t not in REVIEWED_TAGS)
        df.at[i, "tags"] = kept + ((tag[d[i]],) if tag[d[i]] else ())
        if d[i] != "mislabel":
            df.at[i, "age_corrected"], df.at[i, "gender_corrected"] = np.nan, np.nan


SUGGESTIONS = ("gender_suggested", "age_suggested", "gender_label_reason", "age_label_reason")


def _suggestions(raw: pd.DataFrame, df: pd.DataFrame, source: str) -> None:
    """flag-mislabels' suggested labels and reasons (what --relabel-suspects applies and reports)."""
    g = [None if pd.isna(v) or str(v).strip() == "" else _gender_value(v) for v in raw.get("gender_suggested", [])]
    df["gender_suggested"] = pd.Series(g, index=raw.index, dtype=float) if "gender_suggested" in raw else np.nan
    df["age_suggested"] = pd.to_numeric(raw["age_suggested"], errors="coerce") if "age_suggested" in raw else np.nan
    for col in ("gender_label_reason", "age_label_reason"):
        df[col] = raw[col].fillna("").astype(str) if col in raw else ""


def _label_scores_v2(raw: pd.DataFrame) -> pd.DataFrame:
    """Label scores of a schema-1 review, which carried only the raw scores: gender_label_score =
    1 - gender_flip_prob, age_label_score = 2 (1 - Phi(age_residual_z)), as audits.mislabels defines them."""
    from math import erfc, sqrt

    out = raw
    if "gender_label_score" not in raw and "gender_flip_prob" in raw:
        out = out.assign(gender_label_score=1 - pd.to_numeric(raw["gender_flip_prob"], errors="coerce"))
    if "age_label_score" not in raw and "age_residual_z" in raw:
        z = pd.to_numeric(raw["age_residual_z"], errors="coerce")
        out = out.assign(age_label_score=[erfc(v / sqrt(2)) if v == v else np.nan for v in z])
    return out


def read_review_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: review file not found")
    if path.suffix == ".parquet":
        raw = pd.read_parquet(path)
    else:
        try:
            raw = pd.read_csv(path, dtype={"content_hash": str, "tags": str, "path": str, "filename": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ExportError(f"{path}: not a review CSV ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return normalize_review(raw, str(path))


def read_review_fiftyone(name: str) -> pd.DataFrame:
    """Every sample of a FiftyOne dataset with its tags, corrections and flags (reviewed or not, so that
    --drop-suspects sees the unreviewed suspects, which a review-status CSV does not list)."""
    try:
        from curate.fo_db import DatabaseError, connect
        from curate.fo_schema import SchemaError, open_scored
    except ImportError as e:
        raise ExportError(
            f"FiftyOne support is not available ({e}): export the review with "
            "`curate review-status --csv` and pass --review"
        ) from None
    try:
        ds = open_scored(connect(), name)
    except (DatabaseError, SchemaError) as e:
        raise ExportError(str(e)) from None
    schema = ds.get_field_schema()
    fields = ["filepath", "tags"] + [
        f
        for f in (
            "filename",
            "content_hash",
            "age_corrected",
            "gender_corrected",
            "is_gender_label_issue",
            "is_age_label_issue",
            *LABEL_SCORES,
            AGE_RANK,
            *SUGGESTIONS,
            "is_low_quality_issue",
            "skin_category",
        )
        if f in schema
    ]
    vals = ds.values(fields)
    cols = dict(zip(["path" if f == "filepath" else f for f in fields], vals))
    cols["tags"] = [";".join(t or []) for t in cols["tags"]]
    return normalize_review(pd.DataFrame(cols), f"FiftyOne dataset {name}")


def merge_reviews(review: pd.DataFrame | None, flags: pd.DataFrame) -> pd.DataFrame:
    """Decisions from `review`, plus the flags (suspect/low-quality tags, columns, scores) of `flags`, one
    row per file name: tags are united, corrections come from the review, booleans are OR-ed, and the
    lowest (worst) label score counts."""
    parts = [flags.assign(_src=1)] + ([review.assign(_src=0)] if review is not None else [])
    both = pd.concat(parts, ignore_index=True).sort_values("_src", kind="stable")
    agg = both.groupby("filename", sort=False).agg(
        path=("path", "first"),
        content_hash=("content_hash", lambda s: next((x for x in s if x), "")),
        tags=("tags", lambda s: tuple(dict.fromkeys(t for tt in s for t in tt))),
        age_corrected=("age_corrected", "first"),
        gender_corrected=("gender_corrected", "first"),
        is_gender_label_issue=("is_gender_label_issue", "any"),
        is_age_label_issue=("is_age_label_issue", "any"),
        is_low_quality_issue=("is_low_quality_issue", "any"),
        gender_label_score=("gender_label_score", "min"),
        age_label_score=("age_label_score", "min"),
        age_two_sided_z=(AGE_RANK, "max"),
        **{c: (c, "first") for c in (*SUGGESTIONS, "decision_note") if c in both},
    )
    return agg.reset_index()


def has_decision(review: pd.DataFrame) -> pd.Series:
    """Rows that carry a reviewer's decision (a review tag or a correction), not just candidate flags."""
    tagged = review["tags"].apply(lambda t: any(x in REVIEWED_TAGS for x in t))
    return tagged | review["age_corrected"].notna() | review["gender_corrected"].notna()


def match_review(
    review: pd.DataFrame, manifests: dict[str, pd.DataFrame], allow_missing: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Attach to each review row the split and row it refers to; unknown or changed images are errors.

    Returns (review with `split` and `row` columns, warnings). With `allow_missing`, rows that refer to
    no known image are dropped with a warning instead.
    """
    where: dict[str, tuple[str, int]] = {}
    for split, m in manifests.items():
        for i, f in enumerate(m["filename"].astype(str)):
            where.setdefault(f, (split, i))
    rev = review.copy()
    hit = [where.get(f) for f in rev["filename"]]
    rev["split"] = [h[0] if h else None for h in hit]
    rev["row"] = [h[1] if h else -1 for h in hit]
    problems = []
    for i, r in rev.iterrows():
        if pd.isna(r["split"]):
            problems.append((i, f"{r['filename']}: not in any split manifest (no longer in the dataset)"))
            continue
        m = manifests[r["split"]].iloc[r["row"]]
        if not os.path.exists(m["path"]):
            problems.append((i, f"{r['filename']}: image file {m['path']} no longer exists"))
        elif r["content_hash"] and str(m["content_hash"]) != r["content_hash"]:
            problems.append(
                (
                    i,
                    f"{r['filename']}: pixels changed since the review (content hash "
                    f"{r['content_hash'][:8]} in the review, {str(m['content_hash'])[:8]} now)",
                )
            )
    warnings = []
    decided = has_decision(rev)
    flag_only = [i for i, _ in problems if not decided[i]]
    if flag_only:  # candidate flags of images outside these splits: nothing to obey, skip quietly
        first = rev.loc[flag_only[0], "filename"]
        warnings.append(f"{len(flag_only)} flagged but unreviewed image(s) are in no split here (first: {first}); "
                        "ignored")  # fmt: skip
        rev = rev.drop(index=flag_only)
        problems = [(i, p) for i, p in problems if decided[i]]
    if problems:
        msg = (
            f"{len(problems)} of {int(decided.sum())} reviewed image(s) no longer exist or changed; first: "
            + "; ".join(p for _, p in problems[:3])
        )
        if not allow_missing:
            raise ExportError(
                msg + ". Re-export the review from the current dataset, or pass --allow-missing to skip those rows"
            )
        warnings.append(msg + " (skipped: --allow-missing)")
        rev = rev.drop(index=[i for i, _ in problems])
    return rev.reset_index(drop=True), warnings


class _Matched:
    """The review's rows matched to a manifest's (on file name), each field aligned with the manifest's index.

    Why a class: the policy steps below all ask the same questions of one row's review (its tags, a flag, a
    score, a correction), and an image missing from the review answers "nothing said".
    """

    def __init__(self, df: pd.DataFrame, review: pd.DataFrame) -> None:
        rv = review.set_index("filename")
        self._rv = rv[rv.index.isin(df["filename"].astype(str))]
        self._idx = df["filename"].astype(str)
        self._nan = pd.Series(np.nan, index=df.index)
        self.tags = self._idx.map(self._rv["tags"]).apply(lambda t: t if isinstance(t, tuple) else ())
        age_c, gen_c = self.col("age_corrected").astype(float), self.col("gender_corrected").astype(float)
        same_a, same_g = age_c == df["age"].astype(float), gen_c == df["gender"].astype(float)
        self.noop = same_a | same_g  # "corrected" to the label it has: says the label is wrong, gives no new one
        self.age_c, self.gen_c = age_c.where(~same_a), gen_c.where(~same_g)
        self.has_corr = self.age_c.notna() | self.gen_c.notna()
        self.reviewed = self.has(TAG_EXCLUDE) | self.has(TAG_MISLABEL) | self.has(TAG_OK) | self.has_corr | self.noop

    def col(self, c: str) -> pd.Series:
        return self._idx.map(self._rv[c]) if c in self._rv else self._nan.copy()

    def flag(self, c: str) -> pd.Series:
        return self.col(c).eq(True)

    def score(self, c: str) -> pd.Series:
        return self.col(c).astype(float)

    def has(self, tag: str) -> pd.Series:
        return self.tags.apply(lambda t: tag in t)


def _suspects(m: _Matched, policy: Policy) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """(gender suspects, age suspects, age_two_sided_z or None): tags and flags, widened by the policy's score
    thresholds; with --age-rank two-sided the age suspects re-chosen by the two-sided score."""
    g_sus = m.has(TAG_SUSPECT_GENDER) | m.flag("is_gender_label_issue")
    a_sus = m.has(TAG_SUSPECT_AGE) | m.flag("is_age_label_issue")
    if policy.gender_max_score is not None:
        g_sus |= (m.score("gender_label_score") <= policy.gender_max_score).fillna(False)
    if policy.age_max_score is not None:
        a_sus |= (m.score("age_label_score") <= policy.age_max_score).fillna(False)
    if policy.age_rank != "two-sided":
        return g_sus, a_sus, None
    two_sided = m.score(AGE_RANK)
    return g_sus, _two_sided_ages(a_sus, m.reviewed, two_sided, policy.age_min_z), two_sided


def _removal_reasons(m: _Matched, policy: Policy, low_q: pd.Series, unresolved: pd.Series) -> pd.Series:
    """Why each row is dropped ("" = kept): the first matching rule, reviewed decisions before policies."""
    rules = [
        (m.has(TAG_EXCLUDE), "tagged exclude"),
        (m.has(TAG_MISLABEL) & m.has(TAG_OK), "conflicting review (confirmed:mislabel and confirmed:ok)"),
        (m.has(TAG_OK) & (m.has_corr | m.noop), "conflicting review (confirmed:ok and a correction)"),
        (m.noop & ~m.has_corr, "labelled wrong, but the correction given equals the label"),
        (m.has(TAG_MISLABEL) & ~m.has_corr, "confirmed:mislabel without a correction"),
    ]
    if policy.drop_low_quality:  # a reviewer who kept the image (label right, or corrected) has decided
        rules.append((low_q & ~m.reviewed, "low quality (policy --drop-low-quality)"))
    if policy.drop_suspects and not policy.mask_suspects:
        rules.append((unresolved & ~m.reviewed, "unreviewed suspect (policy --drop-suspects)"))
    reason = pd.Series("", index=low_q.index, dtype=object)
    for mask, why in rules:
        reason[(reason == "") & mask.to_numpy()] = why
    return reason


def apply_decisions(
    df: pd.DataFrame, review: pd.DataFrame, policy: Policy | None = None, extra_low_quality: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Apply the review to a manifest (rows matched on file name): (kept, removed, corrections).

    Order: reviewed decisions always win; then --relabel-suspects gives unreviewed suspects the
    suggested label (gender_suggested / age_suggested); then --mask-suspects keeps the suspects that are
    still unresolved with only the suspected label masked (its `gender_label_weight` / `age_label_weight`
    0: the image still trains the other head), or --drop-suspects drops them; --drop-low-quality drops the
    low-quality images. `kept` has the new labels in age/gender, the originals in original_age/
    original_gender, `label_source` (original / corrected / relabelled / masked) and a `label_note` saying
    what changed and why; `removed` lists each dropped row with its `reason`; `corrections` each changed
    or masked label. `extra_low_quality` (aligned with `df`) adds low-quality flags from an audits table.
    """
    policy = policy or Policy()
    df = df.reset_index(drop=True).copy()
    m = _Matched(df, review)
    low_q = m.has(TAG_LOW_QUALITY) | m.flag("is_low_quality_issue")
    if extra_low_quality is not None:
        low_q |= pd.Series(extra_low_quality, index=df.index).fillna(False).astype(bool)
    g_sus, a_sus, two_sided = _suspects(m, policy)
    new_g, new_a = _relabels(df, policy, g_sus & ~m.reviewed, a_sus & ~m.reviewed, m.col, m.score)
    reason = _removal_reasons(m, policy, low_q, (g_sus & new_g.isna()) | (a_sus & new_a.isna()))
    df["review_tags"] = m.tags.apply(";".join)
    removed = df[reason != ""].assign(reason=reason[reason != ""])
    kept = df[reason == ""].copy()
    k = kept.index
    kept["original_age"], kept["original_gender"] = kept["age"].astype(int), kept["gender"].astype(int)
    kept["age"] = m.age_c[k].fillna(new_a[k]).fillna(kept["age"]).astype(int)
    kept["gender"] = m.gen_c[k].fillna(new_g[k]).fillna(kept["gender"]).astype(int)
    changed = (kept["age"] != kept["original_age"]) | (kept["gender"] != kept["original_gender"])
    open_g, open_a = (g_sus & new_g.isna() & ~m.reviewed)[k], (a_sus & new_a.isna() & ~m.reviewed)[k]
    masks = _masks(kept, policy, open_g, open_a, m.reviewed[k])
    masked = masks.any(axis=1)
    kept["label_source"] = np.where(changed, np.where(m.has_corr[k], "corrected", "relabelled"),
                                    np.where(masked, "masked", "original"))  # fmt: skip
    kept["label_note"] = _notes(kept, m, masks, two_sided)
    corrections = kept.loc[changed | masked, ["path", "filename", "content_hash", "original_age", "age",
                                              "original_gender", "gender", "gender_label_weight", "age_label_weight",
                                              "review_tags", "label_source", "label_note"]]  # fmt: skip
    return kept.reset_index(drop=True), removed.reset_index(drop=True), corrections.reset_index(drop=True)


def _notes(kept: pd.DataFrame, m: _Matched, masks: pd.DataFrame, two_sided: pd.Series | None) -> list[str]:
    """Each kept row's label_note: what changed and why ("" for an untouched label)."""
    g_score, a_score = m.score("gender_label_score"), m.score("age_label_score")
    g_why, a_why = m.col("gender_label_reason"), m.col("age_label_reason")
    if two_sided is not None:
        a_why = a_why.fillna("").astype(str) + [f"; two-sided z {z:.1f}" if z == z else "" for z in two_sided]
    return [
        _note(r, None if r["label_source"] == "corrected" else (g_score[i], a_score[i], g_why[i], a_why[i]),
              masks.loc[i]) if r["label_source"] != "original" else ""
        for i, r in kept.iterrows()
    ]  # fmt: skip


def _two_sided_ages(a_sus: pd.Series, reviewed: pd.Series, z: pd.Series, min_z: float | None = None) -> pd.Series:
    """As many open (unreviewed) age suspects as the residual picked, chosen instead by age_two_sided_z, highest
    first; with `min_z`, every open age at age_two_sided_z >= min_z instead (a count of its own). Why: the
    residual at the estimate calls right labels at the ends of the age range wrong, because fold models
    predict them towards the middle; the count is the residual's (--age-max-score), the choice the two-sided
    score's (docs/cleaning_payoff.md, policies m and n)."""
    n = int((a_sus & ~reviewed).sum()) if min_z is None else int((~reviewed).sum())
    if n and not z.notna().any():
        raise ExportError(
            f"--age-rank two-sided: the flags carry no {AGE_RANK} (flag-mislabels writes it since 2026-12-06); "
            "re-run `curate flag-mislabels`"
        )
    out = a_sus & reviewed
    if min_z is not None:
        return out | ((z >= min_z) & ~reviewed).fillna(False)
    top = z.where(~reviewed).dropna().sort_values(ascending=False, kind="stable").index[:n]
    out[top] = True
    return out


def _relabels(df, policy: Policy, g_open: pd.Series, a_open: pd.Series, col, score) -> tuple[pd.Series, pd.Series]:
    """The suggested gender / age for the open (unreviewed) suspects --relabel-suspects may change; NaN else."""
    nan = pd.Series(np.nan, index=df.index)
    if not policy.relabel_suspects:
        return nan, nan.copy()
    sug_g, sug_a = col("gender_suggested").astype(float), col("age_suggested").astype(float)
    ok_g = g_open & sug_g.notna() & (sug_g != df["gender"].astype(float)) & (policy.relabel_what != "age")
    ok_a = a_open & sug_a.notna() & (sug_a != df["age"].astype(float)) & (policy.relabel_what != "gender")
    if policy.relabel_gender_max_score is not None:
        ok_g &= (score("gender_label_score") <= policy.relabel_gender_max_score).fillna(False)
    if policy.relabel_age_max_score is not None:
        ok_a &= (score("age_label_score") <= policy.relabel_age_max_score).fillna(False)
    return sug_g.where(ok_g), sug_a.where(ok_a)


def _masks(kept: pd.DataFrame, policy: Policy, g_open: pd.Series, a_open: pd.Series, reviewed: pd.Series
           ) -> pd.DataFrame:  # fmt: skip
    """Set kept's gender_label_weight / age_label_weight: the source's own weights (a split exported with
    masks keeps them), 1 for a reviewed image (a person's decision wins), 0 where --mask-suspects masks a
    still-open suspect. Returns which labels this export masked (columns gender, age)."""
    masks = pd.DataFrame({"gender": g_open.to_numpy(bool) & policy.mask_suspects,
                          "age": a_open.to_numpy(bool) & policy.mask_suspects}, index=kept.index)  # fmt: skip
    for what in ("gender", "age"):
        c = f"{what}_label_weight"
        own = pd.to_numeric(kept[c], errors="coerce").fillna(1.0) if c in kept else pd.Series(1.0, index=kept.index)
        kept[c] = own.where(~reviewed.to_numpy(bool), 1.0).where(~masks[what], 0.0).astype(float)
    return masks


def _note(row, why: tuple | None, masked: pd.Series | None = None) -> str:
    """What changed and why: "gender male->female (reviewed)" or, for a relabelled suspect,
    "gender male->female (gender_label_score 0.012: <flag-mislabels' reason>)"; for a masked one
    "gender masked in training (gender_label_score 0.3: <reason>)"."""
    parts = []
    for what, old, new, k in (("gender", row["original_gender"], row["gender"], 0), ("age", row["original_age"],
                                                                                     row["age"], 1)):  # fmt: skip
        because = "reviewed" if why is None else f"{what}_label_score {why[k]:.3g}: {why[k + 2]}"
        if masked is not None and masked[what]:
            parts.append(f"{what} masked in training ({because})")
        if old == new:
            continue
        shown = (GENDER_NAMES[old], GENDER_NAMES[new]) if what == "gender" else (old, new)
        parts.append(f"{what} {shown[0]}->{shown[1]} ({because})")
    return "; ".join(parts)


def corrected_view(df: pd.DataFrame, review: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A manifest/prediction frame with the review applied (labels corrected, excluded rows dropped):
    the "test split with reviewed corrections applied". The frame keeps its other columns."""
    rv = review[review["filename"].isin(df["filename"].astype(str))]
    kept, removed, corr = apply_decisions(df, rv)
    n_reviewed = int(has_decision(rv).sum())  # a dataset's review lists every sample: count the decided ones
    return kept, {"n": len(kept), "n_removed": len(removed), "n_corrected": len(corr), "n_review_rows": n_reviewed}
