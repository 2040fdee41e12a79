"""Review decisions on the FiftyOne dataset: the one writer behind the App plugin's buttons and Python.

A decision is exactly what `curate review-status` and `curate export` already read (one data model):
the review tags (`confirmed:mislabel`, `confirmed:ok`, `exclude`) and the corrections
(`age_corrected` int years, `gender_corrected` "male"/"female"). Decisions exclude each other, so
deciding replaces the previous decision of a sample; "pending" (Undo) removes it. Every change also
records who and when (`reviewed_by`, `reviewed_at`) and appends to the sample's `review_log`, so an
undone decision is still on record. Deciding what a sample already has changes nothing (idempotent:
the first decision's time stays). Candidate tags (`suspect:*`, `low_quality`) are never touched.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from core.labels import GENDER_NAMES
from curate.fo_review import ReviewError
from curate.fo_schema import REVIEW_FIELDS, REVIEW_TAGS, declare_fields

KINDS = ("mislabel", "ok", "exclude", "pending")
TAG_OF = {"mislabel": "confirmed:mislabel", "ok": "confirmed:ok", "exclude": "exclude", "pending": None}
MAX_AGE_CORRECTION = 120  # the review CSV's limit (curate/export/review.py)


@dataclass(frozen=True)
class Decision:
    """One reviewer decision; `age` / `gender` are corrections (only with kind "mislabel")."""

    kind: str
    age: int | None = None
    gender: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ReviewError(f"unknown decision {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind != "mislabel" and (self.age is not None or self.gender is not None):
            raise ReviewError(f"a {self.kind!r} decision carries no correction")
        if self.gender is not None and self.gender not in GENDER_NAMES:
            raise ReviewError(f"corrected gender {self.gender!r} is not one of {', '.join(GENDER_NAMES)}")
        if self.age is not None and not (isinstance(self.age, int) and 0 <= self.age <= MAX_AGE_CORRECTION):
            raise ReviewError(f"corrected age {self.age!r} is not a whole number of years in 0-{MAX_AGE_CORRECTION}")


def reviewer(name: str | None = None) -> str:
    """Who decides: the App's user when it knows one, else CURATE_REVIEWER, else the login name."""
    return name or os.environ.get("CURATE_REVIEWER") or getpass.getuser()


def mislabel(sample, age=None, gender: str | None = None) -> Decision:
    """A "label is wrong" decision; a correction equal to the current label is not a correction."""
    age = None if age in (None, "") else _whole_years(age)
    gender = gender or None
    if age is not None and sample["age"] is not None and age == round(sample["age"].value):
        age = None
    if gender is not None and sample["gender"] is not None and gender == sample["gender"].label:
        gender = None
    return Decision("mislabel", age=age, gender=gender)


def suggested(sample) -> Decision:
    """ "Label is wrong" for every label of the sample that is flagged (issue flag or suspect tag).

    Gender is binary, so a wrong gender label means the other one; a wrong age gets `age_suggested`."""
    tags = set(sample.tags)
    gender = age = None
    if (field(sample, "is_gender_label_issue") or "suspect:gender" in tags) and sample["gender"] is not None:
        gender = GENDER_NAMES[1 - GENDER_NAMES.index(sample["gender"].label)]
    if field(sample, "is_age_label_issue") or "suspect:age" in tags:
        age = field(sample, "age_suggested")
    return mislabel(sample, age=age, gender=gender)


def prefill(sample) -> dict:
    """The "label is wrong" form's starting values: the suggestion where a label is flagged, else the label."""
    d = suggested(sample)
    return {
        "gender": d.gender or (sample["gender"].label if sample["gender"] is not None else None),
        "age": d.age if d.age is not None else (round(sample["age"].value) if sample["age"] is not None else None),
    }


def current(sample) -> Decision:
    """The sample's decision now ("pending" when it has none; a conflicting pair reads as mislabel)."""
    tags = set(sample.tags)
    age, gender = field(sample, "age_corrected"), field(sample, "gender_corrected")
    if "exclude" in tags:
        return Decision("exclude")
    if "confirmed:mislabel" in tags or age is not None or gender is not None:
        return Decision("mislabel", age=age, gender=gender)
    return Decision("ok") if "confirmed:ok" in tags else Decision("pending")


def apply(ds, decisions: dict[str, Decision], by: str | None = None, now: datetime | None = None) -> dict[str, int]:
    """Store each sample's decision; returns {"changed": n, "unchanged": m}. Unknown ids are an error."""
    if not decisions:
        raise ReviewError("no sample to decide on: select samples in the grid or open one")
    import fiftyone as fo

    declare_fields(fo, ds, REVIEW_FIELDS)
    by, now = reviewer(by), now or datetime.now(timezone.utc).replace(microsecond=0)
    view = ds.select(list(decisions))
    if len(view) != len(decisions):
        raise ReviewError(f"{len(decisions) - len(view)} of the {len(decisions)} samples are not in {ds.name!r}")
    counts = {"changed": 0, "unchanged": 0}
    for sample in view.iter_samples(autosave=True, batch_size=200):
        new = decisions[sample.id]
        if new.kind == "mislabel":  # a "correction" to the label the sample has is none (as export reads it)
            new = mislabel(sample, age=new.age, gender=new.gender)
        if new == current(sample):
            counts["unchanged"] += 1
            continue
        _write(sample, new, by, now)
        counts["changed"] += 1
    return counts


def _write(sample, new: Decision, by: str, now: datetime) -> None:
    tags = [t for t in sample.tags if t not in REVIEW_TAGS]
    if TAG_OF[new.kind]:
        tags.append(TAG_OF[new.kind])
    sample.tags = tags
    sample["age_corrected"], sample["gender_corrected"] = new.age, new.gender
    pending = new.kind == "pending"
    sample["reviewed_by"], sample["reviewed_at"] = (None, None) if pending else (by, now)
    entry = {
        "decision": new.kind,
        "by": by,
        "at": now.isoformat(),
        "age": new.age,
        "gender": new.gender,
        **labels_now(sample),
    }  # the labels the reviewer saw (fo_review.decided_on_other_labels)
    sample["review_log"] = [*(field(sample, "review_log") or []), entry]


def labels_now(sample) -> dict:
    """The sample's labels as a decision's log entry records them (label_age whole years, label_gender)."""
    age, gender = sample["age"], sample["gender"]
    return {"label_age": round(age.value) if age is not None and age.value is not None else None,
            "label_gender": gender.label if gender is not None else None}  # fmt: skip


def field(sample, name: str):
    """The sample's value of `name`, or None where the dataset has no such field (yet)."""
    return sample[name] if sample.has_field(name) else None


def _whole_years(age) -> int:
    try:
        f = float(age)
    except (TypeError, ValueError):
        raise ReviewError(f"corrected age {age!r} is not a number") from None
    if f != round(f):
        raise ReviewError(f"corrected age {age!r} is not a whole number of years")
    return int(round(f))
