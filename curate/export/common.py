"""What every part of the export shares: its error, the review tags, the output columns, the policy."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import CurateError
from curate.splits import MANIFEST_COLUMNS


class ExportError(CurateError, ValueError):
    """The export cannot proceed; the message says why and what to do."""


TAG_EXCLUDE = "exclude"
TAG_MISLABEL = "confirmed:mislabel"
TAG_OK = "confirmed:ok"
TAG_SUSPECT_GENDER = "suspect:gender"
TAG_SUSPECT_AGE = "suspect:age"
TAG_LOW_QUALITY = "low_quality"
REVIEWED_TAGS = (TAG_EXCLUDE, TAG_MISLABEL, TAG_OK)
DECISIONS = ("exclude", "conflict", "mislabel", "ok", "pending")  # a review row's `decision`, first wins
LABEL_SCORES = ("gender_label_score", "age_label_score")
AGE_RANK = "age_two_sided_z"  # what --age-rank two-sided ranks the age suspects by (higher = more likely wrong)
EXPORT_COLUMNS = MANIFEST_COLUMNS + [
    "age_group",
    "source_path",
    "source_filename",
    "original_age",
    "original_gender",
    "label_source",
    "gender_label_weight",
    "age_label_weight",
    "review_tags",
    "label_note",
    "generated",
    "source_content_hash",
    "transform",
    "seed",
]
JPEG_QUALITY = 95


def decision_of(tags, age_corrected=None, gender_corrected=None) -> str:
    """The one reading of a sample's review tags and corrections that `review-status` writes and `export` obeys:
    exclude; conflict (confirmed:ok with confirmed:mislabel or with a correction: which is meant cannot be
    known); mislabel (the tag, or a correction); ok; else pending."""
    import pandas as pd

    corrected = pd.notna(age_corrected) or pd.notna(gender_corrected)
    tags = set(tags or ())
    if TAG_EXCLUDE in tags:
        return "exclude"
    if TAG_OK in tags and (TAG_MISLABEL in tags or corrected):
        return "conflict"
    if TAG_MISLABEL in tags or corrected:
        return "mislabel"
    return "ok" if TAG_OK in tags else "pending"


@dataclass
class Policy:
    drop_low_quality: bool = False
    drop_suspects: bool = False
    gender_max_score: float | None = None  # also a suspect: gender_label_score at most this
    age_max_score: float | None = None  # also a suspect: age_label_score at most this
    relabel_suspects: bool = False  # unreviewed suspects get the suggested label (before any dropping)
    relabel_gender_max_score: float | None = None  # relabel a gender only at gender_label_score <= this
    relabel_age_max_score: float | None = None  # relabel an age only at age_label_score <= this
    mask_suspects: bool = False  # unreviewed suspects stay, their suspected label weighted 0 in training
    relabel_what: str = "both"  # which labels --relabel-suspects may change: gender, age or both
    age_rank: str = "residual"  # two-sided: as many age suspects as the scores pick, chosen by age_two_sided_z
    age_min_z: float | None = None  # with two-sided: every open age at age_two_sided_z >= this, a count of its own
