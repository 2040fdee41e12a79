"""Turn the review's decisions into new training splits: a cleaned split and an oversampled split.

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
    gender_corrected       reviewed gender, 0/1 or male/female (blank: no correction)
    is_gender_label_issue, is_age_label_issue          optional booleans from `curate flag-mislabels`
    gender_label_score, age_label_score   optional [0, 1] label scores from `curate flag-mislabels`
                           (lower = worse; schema-1 names and raw scores are converted)
    is_low_quality_issue   optional boolean from `curate audit`

`--dataset NAME` reads the same fields straight from a FiftyOne dataset instead.

Decisions (each removal and correction is listed in removed.csv / corrections.csv and counted)
---------------------------------------------------------------------------------------------
- `exclude`                                   -> removed
- `confirmed:mislabel` without any correction -> removed (known wrong, right answer unknown)
- `age_corrected` / `gender_corrected`        -> label replaced (file name and manifest both)
- policy `drop_low_quality`: `low_quality` tag or `is_low_quality_issue` column (review or `--audits`) -> removed
- policy `drop_suspects`: unreviewed suspects -> removed. Suspect: tag suspect:gender / suspect:age,
  column is_gender_label_issue / is_age_label_issue, or (with `gender_max_score` / `age_max_score`) a
  label score at most that: both scores are in [0, 1], lower = worse (core/schema.py), so one threshold
  reads the same way for both tasks.
  Unreviewed: none of exclude, confirmed:mislabel, confirmed:ok, and no correction.
The first matching reason, in this order, is the one recorded.

Oversampling
------------
Per grouping dimension (age bin always; skin_category from an audits parquet when given, otherwise
gender) a target share per category: `mix:A` (default A=0.5: (1-A) x current share + A x uniform),
`uniform`, `floor:F` (every category at least F) or a JSON file {dimension: {category: share}}; an
"unknown" category keeps its current share and the spec applies to the known ones within the rest. Only
images are added, never removed, so the new size N' is the smallest that lets every category reach
its target (N' = max n_c / t_c); the per-dimension deficits are distributed over the joint cells
(age bin x skin category x ...) by iterative proportional fitting, seeded with the cells' sizes, and
capped at `max_factor` generated images per source image. Within a cell, sources are used round-robin
in a seeded random order. Each generated image gets its own parameters drawn from a generator seeded by
(seed, source content hash, k): horizontal flip, rotation (+-10 deg), scale/crop (0.9-1.1) and shift
(+-5 %), brightness, contrast, saturation (x0.8-1.2) and exposure (gamma 0.8-1.25), applied with
OpenCV and saved as JPEG (quality 95) named `{age}_{gender}_{race}_{datetime}_aug{k}.jpg`. The manifest
row records source_path, source_content_hash, transform (JSON: every parameter, enough to regenerate
the pixels with `apply_transform`) and seed.

Output
------
ROOT/NAME/manifest.csv (readable by trainer.data.read_manifest), export.json (provenance, policy,
counts), EXPORT.md (the same for people), removed.csv, corrections.csv, and the images: generated
ones always, the kept originals when `images` is "copy" or "link" (hard link, falling back to a copy),
named in UTKFace's scheme with the corrected labels. With `images="ref"` the manifest points at the
original files and its `filename` column carries the UTKFace name with the corrected labels. Every
split is built in a temporary folder and renamed into place; an existing split is replaced only with
`force`, and the source split and the test split are never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from core.atomic import write_csv
from core.errors import CurateError
from core.manifest import manifest_hash
from core.schema import upgrade_columns
from curate.splits import (
    _NAME_RE,
    AGE_GROUP_LABELS,
    GENDER_NAMES,
    MANIFEST_COLUMNS,
    RACE_NAMES,
    TEST_SPLIT,
    TRAIN_SPLIT,
    age_group,
    pixel_hash,
)

TAG_EXCLUDE = "exclude"
TAG_MISLABEL = "confirmed:mislabel"
TAG_OK = "confirmed:ok"
TAG_SUSPECT_GENDER = "suspect:gender"
TAG_SUSPECT_AGE = "suspect:age"
TAG_LOW_QUALITY = "low_quality"
REVIEWED_TAGS = (TAG_EXCLUDE, TAG_MISLABEL, TAG_OK)
LABEL_SCORES = ("gender_label_score", "age_label_score")
EXPORT_COLUMNS = MANIFEST_COLUMNS + [
    "age_group",
    "source_path",
    "source_filename",
    "original_age",
    "original_gender",
    "label_source",
    "review_tags",
    "generated",
    "source_content_hash",
    "transform",
    "seed",
]
JPEG_QUALITY = 95


class ExportError(CurateError, ValueError):
    """The export cannot proceed; the message says why and what to do."""


@dataclass
class Policy:
    drop_low_quality: bool = False
    drop_suspects: bool = False
    gender_max_score: float | None = None  # also a suspect: gender_label_score at most this
    age_max_score: float | None = None  # also a suspect: age_label_score at most this


@dataclass
class OversamplePlan:
    dims: list[str]
    targets: dict[str, dict[str, float]]
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    n_before: int
    n_after: int
    max_factor: float
    max_share_error: float
    capped: bool
    jobs: list[tuple[int, int]] = field(default_factory=list)  # (row in source frame, k)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("jobs")
        d["n_generated"] = len(self.jobs)
        return d


# --------------------------------------------------------------------------------------- review I/O
def _bool_col(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    low = s.astype(str).str.strip().str.lower()
    return low.isin(("1", "true", "yes", "y", "t", "1.0"))


def _gender_value(v) -> float:
    if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" or pd.isna(v):
        return np.nan
    s = str(v).strip().lower()
    table = {"0": 0, "0.0": 0, "male": 0, "m": 0, "1": 1, "1.0": 1, "female": 1, "f": 1}
    if s not in table:
        raise ExportError(f"gender_corrected {v!r} is not 0/1/male/female")
    return float(table[s])


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
        bad |= df["age_corrected"].notna() & ~df["age_corrected"].between(0, 120)
        if bad.any():
            i = bad.idxmax()
            raise ExportError(
                f"{source}: age_corrected {raw.loc[i, 'age_corrected']!r} for "
                f"{df.loc[i, 'filename']} is not an age in 0-120"
            )
    try:
        df["gender_corrected"] = (
            [_gender_value(v) for v in raw["gender_corrected"]] if "gender_corrected" in raw else np.nan
        )
    except ExportError as e:
        raise ExportError(f"{source}: {e}") from None
    for col in ("is_gender_label_issue", "is_age_label_issue", "is_low_quality_issue"):
        df[col] = _bool_col(raw[col]) if col in raw else False
    for col in LABEL_SCORES:
        df[col] = pd.to_numeric(raw[col], errors="coerce") if col in raw else np.nan
    df = df[df["filename"] != ""].reset_index(drop=True)
    dup = df["filename"].duplicated(keep=False)
    if dup.any():
        raise ExportError(
            f"{source}: {df.loc[dup, 'filename'].nunique()} image(s) reviewed more than once, "
            f"first: {df.loc[dup, 'filename'].iloc[0]}"
        )
    return df


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
        raw = pd.read_csv(path, dtype={"content_hash": str, "tags": str, "path": str, "filename": str})
    return normalize_review(raw, str(path))


def read_review_fiftyone(name: str) -> pd.DataFrame:
    """Every sample of a FiftyOne dataset with its tags, corrections and flags (reviewed or not, so that
    --drop-suspects sees the unreviewed suspects, which a review-status CSV does not list)."""
    try:
        from curate.fo_dataset import SchemaError, open_dataset
        from curate.fo_db import DatabaseError, connect
    except ImportError as e:
        raise ExportError(
            f"FiftyOne support is not available ({e}): export the review with "
            "`curate review-status --csv` and pass --review"
        ) from None
    try:
        ds = open_dataset(connect(), name, create=False)
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
            "is_low_quality_issue",
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
        warnings.append(f"{len(flag_only)} flagged but unreviewed image(s) are in no split here; ignored")
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


# ---------------------------------------------------------------------------------- decisions
def apply_decisions(
    df: pd.DataFrame, review: pd.DataFrame, policy: Policy | None = None, extra_low_quality: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Apply the review to a manifest (rows matched on file name): (kept, removed, corrections).

    `kept` has the corrected labels in age/gender and the originals in original_age/original_gender;
    `removed` lists each dropped row with its `reason`; `corrections` each changed label.
    `extra_low_quality` (aligned with `df`) adds low-quality flags from an audits table.
    """
    policy = policy or Policy()
    df = df.reset_index(drop=True).copy()
    rv = review.set_index("filename")
    rv = rv[rv.index.isin(df["filename"].astype(str))]
    idx = df["filename"].astype(str)
    tags = idx.map(rv["tags"]).apply(lambda t: t if isinstance(t, tuple) else ())
    age_c = idx.map(rv["age_corrected"]).astype(float)
    gen_c = idx.map(rv["gender_corrected"]).astype(float)
    has_corr = age_c.notna() | gen_c.notna()
    flag = lambda col: idx.map(rv[col]).eq(True)  # noqa: E731
    score = lambda col: idx.map(rv[col]).astype(float)  # noqa: E731
    has = lambda tag: tags.apply(lambda t: tag in t)  # noqa: E731
    reviewed = has(TAG_EXCLUDE) | has(TAG_MISLABEL) | has(TAG_OK) | has_corr
    low_q = has(TAG_LOW_QUALITY) | flag("is_low_quality_issue")
    if extra_low_quality is not None:
        low_q |= pd.Series(extra_low_quality, index=df.index).fillna(False).astype(bool)
    suspect = (
        has(TAG_SUSPECT_GENDER) | has(TAG_SUSPECT_AGE) | flag("is_gender_label_issue") | flag("is_age_label_issue")
    )
    for col, limit in (("gender_label_score", policy.gender_max_score), ("age_label_score", policy.age_max_score)):
        if limit is not None:
            suspect |= (score(col) <= limit).fillna(False)
    reason = pd.Series("", index=df.index, dtype=object)
    rules = [
        (has(TAG_EXCLUDE), "tagged exclude"),
        (has(TAG_MISLABEL) & has(TAG_OK), "conflicting review (confirmed:mislabel and confirmed:ok)"),
        (has(TAG_MISLABEL) & ~has_corr, "confirmed:mislabel without a correction"),
    ]
    if policy.drop_low_quality:
        rules.append((low_q, "low quality (policy --drop-low-quality)"))
    if policy.drop_suspects:
        rules.append((suspect & ~reviewed, "unreviewed suspect (policy --drop-suspects)"))
    for mask, why in rules:
        reason[(reason == "") & mask.to_numpy()] = why
    df["review_tags"] = tags.apply(";".join)
    removed = df[reason != ""].assign(reason=reason[reason != ""])
    kept = df[reason == ""].copy()
    kept["original_age"] = kept["age"].astype(int)
    kept["original_gender"] = kept["gender"].astype(int)
    a, g = age_c[kept.index], gen_c[kept.index]
    kept["age"] = np.where(a.notna(), a, kept["age"]).astype(int)
    kept["gender"] = np.where(g.notna(), g, kept["gender"]).astype(int)
    changed = (kept["age"] != kept["original_age"]) | (kept["gender"] != kept["original_gender"])
    kept["label_source"] = np.where(changed, "corrected", "original")
    corrections = kept.loc[
        changed, ["path", "filename", "content_hash", "original_age", "age", "original_gender", "gender", "review_tags"]
    ]
    return kept.reset_index(drop=True), removed.reset_index(drop=True), corrections.reset_index(drop=True)


# ------------------------------------------------------------------------------------- naming
def utk_name(filename: str, age: int, gender: int, race, suffix: str = "") -> str:
    """A UTKFace name carrying the given labels and the original file's datetime stamp."""
    m = _NAME_RE.match(filename)
    stamp = m["stamp"] if m else hashlib.blake2b(filename.encode(), digest_size=6).hexdigest()
    ext = ".jpg.chip.jpg" if (m is None or m["chip"]) else ".jpg"
    race_part = "" if race is None or pd.isna(race) else f"{int(race)}_"
    if suffix:
        ext = ".jpg"
    return f"{int(age)}_{int(gender)}_{race_part}{stamp}{suffix}{ext}"


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        if k:
            stem, dot, rest = n.partition(".")
            n = f"{stem}_dup{k}{dot}{rest}"
        out.append(n)
    return out


# ---------------------------------------------------------------------------------- augmentation
def draw_transform(rng: np.random.Generator) -> dict:
    """Random, recorded parameters of one augmentation (all plain floats/bools, JSON-ready)."""
    return {
        "hflip": bool(rng.random() < 0.5),
        "angle": round(float(rng.uniform(-10, 10)), 4),
        "scale": round(float(rng.uniform(0.9, 1.1)), 4),
        "tx": round(float(rng.uniform(-0.05, 0.05)), 4),
        "ty": round(float(rng.uniform(-0.05, 0.05)), 4),
        "brightness": round(float(rng.uniform(0.8, 1.2)), 4),
        "contrast": round(float(rng.uniform(0.8, 1.2)), 4),
        "saturation": round(float(rng.uniform(0.8, 1.2)), 4),
        "gamma": round(float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))), 4),
    }


def apply_transform(img: np.ndarray, t: dict) -> np.ndarray:
    """Apply recorded parameters to a BGR uint8 image (deterministic: same input, same output)."""
    h, w = img.shape[:2]
    out = img[:, ::-1] if t["hflip"] else img
    m = cv2.getRotationMatrix2D((w / 2, h / 2), t["angle"], t["scale"])
    m[0, 2] += t["tx"] * w
    m[1, 2] += t["ty"] * h
    out = cv2.warpAffine(
        np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    x = out.astype(np.float32) / 255.0
    x = np.clip(x * t["brightness"], 0, 1)
    mean = x.mean()
    x = np.clip((x - mean) * t["contrast"] + mean, 0, 1)
    gray = (0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2])[..., None]
    x = np.clip(gray + (x - gray) * t["saturation"], 0, 1)
    x = np.power(x, t["gamma"])
    return np.uint8(np.clip(np.rint(x * 255), 0, 255))


def transform_rng(seed: int, content_hash: str, k: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(str(content_hash)[:15] or "0", 16), int(k)])


# ---------------------------------------------------------------------------------- targets
def _category_order(c: str):
    if c in AGE_GROUP_LABELS:
        return (0, AGE_GROUP_LABELS.index(c), "")
    return (2, 0, str(c)) if str(c) in UNKNOWN else (1, 0, str(c))


UNKNOWN = ("unknown", "nan", "")


def target_shares(counts: pd.Series, spec) -> dict[str, float]:
    """Target share per category (present categories only) from a spec (see module doc).

    An "unknown" category (e.g. a skin tone the audit could not measure) is not a group to rebalance:
    it keeps its current share, and the spec applies to the known categories within the rest.
    """
    counts = counts.copy()
    counts.index = counts.index.map(str)
    unknown = [c for c in counts.index if c in UNKNOWN]
    if unknown and len(unknown) < len(counts):
        p_u = counts[unknown] / counts.sum()
        if isinstance(spec, dict):
            spec = {c: v for c, v in spec.items() if str(c) not in UNKNOWN}
            total = sum(spec.values())
            spec = {c: v / total for c, v in spec.items()} if total > 0 else spec
        known = target_shares(counts.drop(unknown), spec)
        rest = 1 - p_u.sum()
        return {**{c: v * rest for c, v in known.items()}, **{c: float(v) for c, v in p_u.items()}}
    p = counts / counts.sum()
    k = len(p)
    if isinstance(spec, dict):
        unknown = sorted(set(map(str, spec)) - set(map(str, p.index)))
        if unknown:
            raise ExportError(f"target names categories with no source image: {', '.join(unknown)}")
        t = pd.Series({str(c): float(spec.get(str(c), 0.0)) for c in p.index})
        if abs(t.sum() - 1) > 1e-3 or (t < 0).any():
            raise ExportError(f"target shares must be >= 0 and sum to 1 (sum {t.sum():.4f})")
        if ((t > 0) & (counts.to_numpy() == 0)).any():
            raise ExportError("target gives a share to a category with no source image")
    elif spec == "uniform":
        t = pd.Series(1.0 / k, index=p.index)
    elif isinstance(spec, str) and spec.startswith("mix:"):
        a = float(spec[4:])
        if not 0 <= a <= 1:
            raise ExportError(f"target {spec}: the mix must be in 0..1")
        t = (1 - a) * p + a / k
    elif isinstance(spec, str) and spec.startswith("floor:"):
        f = float(spec[6:])
        if not 0 <= f * k < 1:
            raise ExportError(f"target {spec}: {k} categories x {f} must stay below 1")
        low = p < f
        t = p.copy()
        t[low] = f
        t[~low] = p[~low] * (1 - f * low.sum()) / p[~low].sum()
    else:
        raise ExportError(f"unknown target {spec!r}: use mix:A, uniform, floor:F or a JSON file")
    return {str(c): float(v) for c, v in t.items()}


def plan_oversampling(
    df: pd.DataFrame,
    dims: list[str],
    specs: dict[str, object],
    max_factor: float = 5.0,
    seed: int = 0,
    iters: int = 500,
) -> OversamplePlan:
    """How many augmented copies of which rows bring every dimension to its target shares."""
    keys = df[dims].astype(str)
    n = len(df)
    targets, before = {}, {}
    for d in dims:
        c = keys[d].value_counts()
        c = c.reindex(sorted(c.index, key=_category_order))
        before[d] = {k: int(v) for k, v in c.items()}
        targets[d] = target_shares(c, specs.get(d, "mix:0.5"))
    # The smallest total at which no category is above its target count (we only add images).
    n_new = max(before[d][c] / targets[d][c] for d in dims for c in before[d] if targets[d][c] > 0)
    n_new = max(n_new, n)
    deficit = {d: {c: targets[d][c] * n_new - before[d][c] for c in before[d]} for d in dims}
    cells = keys.groupby(dims, sort=True).size()
    cell_keys = list(cells.index) if len(dims) > 1 else [(c,) for c in cells.index]
    m = cells.to_numpy(float)
    cap = cells.to_numpy(float) * max_factor
    member = {d: np.array([ck[j] for ck in cell_keys]) for j, d in enumerate(dims)}
    for _ in range(iters):  # iterative proportional fitting onto every dimension's deficits
        for d in dims:
            for c, want in deficit[d].items():
                sel = member[d] == c
                s = m[sel].sum()
                m[sel] = 0.0 if s <= 0 or want <= 0 else m[sel] * (want / s)
        m = np.minimum(m, cap)
        err = max(abs(m[member[d] == c].sum() - w) for d in dims for c, w in deficit[d].items())
        if err < 0.25:
            break
    capped = bool((m >= cap - 1e-9).any() and err >= 0.5)
    total = int(round(m.sum()))
    base = np.floor(m).astype(int)
    order = np.argsort(-(m - base), kind="stable")
    extra = total - base.sum()
    for i in order[: max(extra, 0)]:
        if base[i] < cap[i]:
            base[i] += 1
    base = _repair_rounding(base, cap, member, deficit, dims)
    rng = np.random.default_rng(seed)
    cell_rows = keys.groupby(dims, sort=True).indices
    jobs: list[tuple[int, int]] = []
    for ck, count in zip(cells.index, base):
        if count <= 0:
            continue
        rows = np.asarray(cell_rows[ck])
        rows = rows[rng.permutation(len(rows))]
        for j in range(int(count)):
            jobs.append((int(rows[j % len(rows)]), j // len(rows)))
    jobs.sort()
    gen = pd.DataFrame(jobs, columns=["row", "k"]) if jobs else pd.DataFrame(columns=["row", "k"])
    after = {}
    for d in dims:
        added = keys[d].iloc[gen["row"].to_numpy(int)].value_counts() if len(gen) else pd.Series(dtype=int)
        after[d] = {c: int(before[d][c] + added.get(c, 0)) for c in before[d]}
    n_after = n + len(jobs)
    share_err = max(abs(after[d][c] / n_after - targets[d][c]) for d in dims for c in before[d])
    return OversamplePlan(dims, targets, before, after, n, n_after, max_factor, float(share_err), capped, jobs)


def _repair_rounding(
    counts: np.ndarray, cap: np.ndarray, member: dict, deficit: dict, dims: list[str], max_moves: int = 100_000
) -> np.ndarray:
    """Move single images between cells while that lowers the squared miss of the per-category
    deficits (rounding cells one by one can leave a category a few images off on another dimension).

    Moving one image from cell j to cell i changes the squared miss by
    sum over dimensions of 2 (r_cat(i) - r_cat(j)) + 2 [cat(i) != cat(j)], r = current count - deficit;
    the best pair is taken until none improves (cells: a few dozen, so the K x K table is cheap).
    """
    counts = counts.astype(np.int64).copy()
    cats = {
        d: (np.unique(member[d], return_inverse=True)[1], np.array([deficit[d][c] for c in np.unique(member[d])]))
        for d in dims
    }
    for _ in range(max_moves):
        gain = np.zeros((len(counts), len(counts)))
        for d in dims:
            idx, want = cats[d]
            r = np.bincount(idx, weights=counts, minlength=len(want)) - want
            g = 2 * r[idx]
            gain += g[:, None] - g[None, :] + 2 * (idx[:, None] != idx[None, :])
        gain[counts >= cap, :] = np.inf  # cannot add to a full cell
        gain[:, counts <= 0] = np.inf  # cannot take from an empty one
        np.fill_diagonal(gain, np.inf)
        i, j = np.unravel_index(int(np.argmin(gain)), gain.shape)
        if not gain[i, j] < -1e-9:
            break
        counts[i] += 1
        counts[j] -= 1
    return counts


# ---------------------------------------------------------------------------------- writing
def _write_image(src: str, dst: Path, mode: str) -> None:
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


class _SplitWriter:
    """Builds ROOT/.NAME.tmp-PID and renames it to ROOT/NAME on commit (replacing only with force)."""

    def __init__(self, root: Path, name: str, force: bool, protected: list[Path]):
        self.final = (root / name).resolve()
        for p in protected:
            if self.final == Path(p).resolve():
                raise ExportError(f"{self.final}: refusing to write over the source or test split")
        if self.final.exists() and not force:
            raise ExportError(
                f"{self.final}: split already exists; pass --force to replace it, or choose another --name"
            )
        root.mkdir(parents=True, exist_ok=True)
        self.tmp = root / f".{name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()

    def commit(self) -> Path:
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _place_originals(kept: pd.DataFrame, split_dir: Path, final_dir: Path, name: str, images: str) -> pd.DataFrame:
    out = kept.copy()
    out["source_path"] = out["path"]
    out["source_filename"] = out.get("source_filename", out["filename"])
    names = _unique_names(
        [utk_name(f, a, g, r) for f, a, g, r in zip(out["source_filename"], out["age"], out["gender"], out["race"])]
    )
    out["filename"] = names
    if images in ("copy", "link"):
        for src, nm in zip(out["source_path"], names):
            _write_image(src, split_dir / nm, images)
        out["path"] = [str(final_dir / nm) for nm in names]
    out["split"] = name
    out["generated"] = False
    return out


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    for c in EXPORT_COLUMNS:
        if c not in df:
            df[c] = ""
    df["age_group"] = df["age"].map(age_group)
    df["race"] = pd.to_numeric(df["race"], errors="coerce").astype("Int64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    return df[EXPORT_COLUMNS + [c for c in df.columns if c not in EXPORT_COLUMNS]]


def generate_oversampled(
    base: pd.DataFrame,
    plan: OversamplePlan,
    split_dir: Path,
    final_dir: Path,
    name: str,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Write the plan's augmented images into `split_dir`; return their manifest rows."""
    from tqdm import tqdm

    rows = []
    names_taken = set(base["filename"])
    for r, k in tqdm(plan.jobs, desc="augment", unit="img", disable=not progress, mininterval=1.0):
        src = base.iloc[r]
        img = cv2.imread(str(src["source_path"]), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"{src['source_path']}: cannot decode source image")
        t = draw_transform(transform_rng(seed, src["content_hash"], k))
        ok, buf = cv2.imencode(".jpg", apply_transform(img, t), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ExportError(f"{src['source_path']}: cannot encode augmented image")
        fname = utk_name(src["source_filename"], src["age"], src["gender"], src["race"], suffix=f"_aug{k}")
        while fname in names_taken:
            fname = fname.replace(".jpg", "x.jpg", 1)  # only on a stamp collision between two sources
        names_taken.add(fname)
        (split_dir / fname).write_bytes(buf.tobytes())
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        rows.append(
            {
                "path": str(final_dir / fname),
                "filename": fname,
                "age": int(src["age"]),
                "gender": int(src["gender"]),
                "race": src["race"],
                "fold": src["fold"],
                "split": name,
                "content_hash": pixel_hash(decoded),
                "width": decoded.shape[1],
                "height": decoded.shape[0],
                "name_note": "generated (augmented)",
                "source_path": src["source_path"],
                "source_filename": src["source_filename"],
                "original_age": src["original_age"],
                "original_gender": src["original_gender"],
                "label_source": src["label_source"],
                "review_tags": src["review_tags"],
                "generated": True,
                "source_content_hash": src["content_hash"],
                "transform": json.dumps(t, sort_keys=True),
                "seed": seed,
                **({"skin_category": src["skin_category"]} if "skin_category" in src else {}),
            }
        )
    return pd.DataFrame(rows)


def load_audits(path: str | Path, df: pd.DataFrame) -> pd.DataFrame:
    """Audit columns (skin_category, is_low_quality_issue) aligned with `df`'s rows: joined on path, file name
    or content hash, whichever the audits table has."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: audits file not found")
    a = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    cols = [c for c in ("skin_category", "is_low_quality_issue") if c in a]
    out = pd.DataFrame(index=df.index)
    for key, mine in (
        ("path", df["path"].astype(str)),
        ("filename", df["filename"].astype(str)),
        ("content_hash", df["content_hash"].astype(str)),
    ):
        if key in a:
            t = a.drop_duplicates(key).set_index(a.drop_duplicates(key)[key].astype(str))
            for c in cols:
                out[c] = mine.map(t[c]).to_numpy()
            break
    else:
        raise ExportError(f"{path}: audits table needs a path, filename or content_hash column")
    return out


# ---------------------------------------------------------------------------------- top level
def export(
    source: str | Path = f"dataset/{TRAIN_SPLIT}",
    root: str | Path = "dataset",
    name: str = "train_cleaned",
    review: pd.DataFrame | None = None,
    review_source: str = "",
    policy: Policy | None = None,
    images: str = "ref",
    oversample: bool = False,
    oversample_name: str | None = None,
    by: list[str] | None = None,
    targets: dict[str, object] | None = None,
    max_factor: float = 5.0,
    audits: str | Path | None = None,
    seed: int = 0,
    force: bool = False,
    allow_missing: bool = False,
    test_split: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Write the cleaned split (and the oversampled one); returns the summary also saved as export.json."""
    from core.manifest import DataError, read_manifest

    t0 = time.time()
    policy = policy or Policy()
    if images not in ("ref", "copy", "link"):
        raise ExportError("images must be ref, copy or link")
    root = Path(root)
    try:
        src = read_manifest(source)
    except DataError as e:
        raise ExportError(str(e)) from None
    src_dir = Path(source) if Path(source).is_dir() else Path(source).parent
    if test_split:
        test_dir = Path(test_split)
        if not (test_dir / "manifest.csv").exists():
            raise ExportError(f"{test_dir}: test split manifest not found")
    else:  # the test split next to the source split, else under ROOT
        test_dir = next(
            (d for d in (src_dir.parent / TEST_SPLIT, root / TEST_SPLIT) if (d / "manifest.csv").exists()),
            src_dir.parent / TEST_SPLIT,
        )
    test = None
    if (test_dir / "manifest.csv").exists():
        test = pd.read_csv(test_dir / "manifest.csv", dtype={"content_hash": str})
        leak = set(src["content_hash"]) & set(test["content_hash"])
        if leak:
            raise ExportError(
                f"{source}: {len(leak)} image(s) are also in the test split {test_dir}; "
                "export only from a training split"
            )
    if "filename" not in src:
        src["filename"] = [os.path.basename(p) for p in src["path"]]
    for c in ("race", "fold", "width", "height", "name_note"):
        if c not in src:
            src[c] = np.nan if c != "name_note" else ""
    warnings: list[str] = (
        []
        if test is not None
        else [f"no test split found at {test_dir}: overlap with the test split not checked (pass --test-split)"]
    )
    n_review_test = 0
    if review is not None:
        manifests = {"source": src} | ({"test": test} if test is not None else {})
        review, w = match_review(review, manifests, allow_missing=allow_missing)
        warnings += w
        n_review_test = int((review["split"] == "test").sum())
    else:
        review = normalize_review(pd.DataFrame({"filename": []}))
    if policy.drop_suspects and not (~has_decision(review)).any():
        warnings.append(
            "--drop-suspects: the review lists no unreviewed image, so no suspect can be dropped "
            "(a review-status CSV holds reviewed samples only: use --dataset NAME or add --flags FILE)"
        )
    audit_cols = load_audits(audits, src) if audits else pd.DataFrame(index=src.index)
    if "skin_category" in audit_cols:
        src["skin_category"] = audit_cols["skin_category"]
    kept, removed, corrections = apply_decisions(src, review, policy, audit_cols.get("is_low_quality_issue"))
    kept["source_filename"] = kept["filename"]
    if kept.empty:
        raise ExportError("every image was removed: nothing to export")
    protected = [src_dir, test_dir]
    written = {}
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": str(Path(source).resolve()),
        "source_manifest_hash": manifest_hash(src),
        "n_source": len(src),
        "test_split": str(test_dir.resolve()) if test is not None else None,
        "review": review_source or None,
        "review_rows": int(len(review)),
        "review_rows_on_test_split": n_review_test,
        "policy": asdict(policy),
        "images": images,
        "seed": seed,
        "removed": removed["reason"].value_counts().to_dict() if len(removed) else {},
        "n_removed": len(removed),
        "n_corrected": len(corrections),
        "n_age_corrected": int((corrections["age"] != corrections["original_age"]).sum()),
        "n_gender_corrected": int((corrections["gender"] != corrections["original_gender"]).sum()),
        "warnings": warnings,
    }
    cleaned_w = _SplitWriter(root, name, force, protected)
    writers = [cleaned_w]
    try:
        cleaned = _finish(_place_originals(kept, cleaned_w.tmp, cleaned_w.final, name, images))
        summary["cleaned"] = {
            "name": name,
            "path": str(cleaned_w.final),
            "n": len(cleaned),
            "manifest_hash": manifest_hash(cleaned),
        }
        plan = None
        if oversample:
            oname = oversample_name or f"{name}_oversampled"
            over_w = _SplitWriter(root, oname, force, protected + [cleaned_w.final])
            writers.append(over_w)
            dims = by or (
                ["age_group", "skin_category"]
                if "skin_category" in cleaned and cleaned["skin_category"].notna().any()
                else ["age_group", "gender"]
            )
            if "skin_category" in dims and ("skin_category" not in cleaned or cleaned["skin_category"].isna().all()):
                raise ExportError("oversampling by skin_category needs --audits with a skin_category column")
            if "skin_category" not in dims and not audits:
                warnings.append("no skin-tone audit given (--audits): oversampling by " + " x ".join(dims) + " only")
            base = cleaned.copy()
            if "skin_category" in base:
                base["skin_category"] = base["skin_category"].fillna("unknown").astype(str)
            base["gender"] = base["gender"].astype(int)
            named = base.assign(
                gender=base["gender"].map(lambda g: GENDER_NAMES[g]),
                race=base["race"].map(lambda r: RACE_NAMES[int(r)] if pd.notna(r) else "unknown"),
            )
            plan = plan_oversampling(named, dims, targets or {}, max_factor=max_factor, seed=seed)
            originals = _place_originals(kept, over_w.tmp, over_w.final, oname, images)
            originals["source_filename"] = cleaned["source_filename"].to_numpy()
            gen = generate_oversampled(base, plan, over_w.tmp, over_w.final, oname, seed, progress)
            over = _finish(pd.concat([originals, gen], ignore_index=True))
            summary["oversampled"] = {
                "name": oname,
                "path": str(over_w.final),
                "n": len(over),
                "n_generated": len(gen),
                "manifest_hash": manifest_hash(over),
                "plan": plan.summary(),
            }
            if plan.capped:
                warnings.append(
                    f"max_factor {max_factor} capped the oversampling: largest share error {plan.max_share_error:.3f}"
                )
        removed = removed.assign(race=pd.to_numeric(removed["race"], errors="coerce").astype("Int64"))
        corrections = cleaned.loc[
            cleaned["label_source"] == "corrected",
            [
                "source_path",
                "source_filename",
                "filename",
                "content_hash",
                "original_age",
                "age",
                "original_gender",
                "gender",
                "review_tags",
            ],
        ]
        for w_, df_ in [(cleaned_w, cleaned)] + ([(writers[1], over)] if oversample else []):
            write_csv(df_, w_.tmp / "manifest.csv")
            write_csv(removed, w_.tmp / "removed.csv")
            write_csv(corrections, w_.tmp / "corrections.csv")
        summary["seconds"] = round(time.time() - t0, 1)
        for w_ in writers:
            (w_.tmp / "export.json").write_text(json.dumps(summary, indent=2, default=str))
            (w_.tmp / "EXPORT.md").write_text(export_report(summary, w_.final.name))
        for w_ in writers:
            written[w_.final.name] = w_.commit()
    except BaseException:
        for w_ in writers:
            w_.abort()
        raise
    summary["written"] = {k: str(v) for k, v in written.items()}
    return summary


def export_report(s: dict, this: str) -> str:
    lines = [
        f"# Export `{this}`",
        "",
        f"Source: `{s['source']}` ({s['n_source']} images, manifest "
        f"{s['source_manifest_hash']}); review: {s['review'] or 'none'} ({s['review_rows']} rows, "
        f"{s['review_rows_on_test_split']} on the test split, not used here); seed {s['seed']}; "
        f"images: {s['images']}.",
        "",
        "## Cleaned split",
        "",
        f"- kept: {s['cleaned']['n']}",
        f"- removed: {s['n_removed']}",
    ]
    lines += [f"  - {why}: {n}" for why, n in s["removed"].items()]
    lines += [
        f"- labels corrected: {s['n_corrected']} (age {s['n_age_corrected']}, gender {s['n_gender_corrected']})",
        f"- policy: {json.dumps(s['policy'])}",
    ]
    if "oversampled" in s:
        o = s["oversampled"]
        p = o["plan"]
        lines += [
            "",
            "## Oversampled split",
            "",
            f"{o['n']} images: {p['n_before']} originals + {o['n_generated']} "
            f"augmented (at most {p['max_factor']} per source), by {' x '.join(p['dims'])}; largest "
            f"difference between achieved and target share: {p['max_share_error']:.4f}.",
            "",
        ]
        for d in p["dims"]:
            lines += [f"| {d} | before | share | after | share | target |", "|---|---:|---:|---:|---:|---:|"]
            for c in p["before"][d]:
                b, a = p["before"][d][c], p["after"][d][c]
                lines.append(
                    f"| {c} | {b} | {b / p['n_before']:.3f} | {a} | {a / p['n_after']:.3f} | {p['targets'][d][c]:.3f} |"
                )
            lines.append("")
    if s["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in s["warnings"]]
    return "\n".join(lines) + "\n"


def corrected_view(df: pd.DataFrame, review: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A manifest/prediction frame with the review applied (labels corrected, excluded rows dropped):
    the "test split with reviewed corrections applied". The frame keeps its other columns."""
    rv = review[review["filename"].isin(df["filename"].astype(str))]
    kept, removed, corr = apply_decisions(df, rv)
    return kept, {"n": len(kept), "n_removed": len(removed), "n_corrected": len(corr), "n_review_rows": int(len(rv))}
