"""What the review panel says about a sample and about the queue, in words (no App code here).

Kept apart from the plugin so it is tested without a browser and timed on the full dataset
(bench/review_latency.py): the panel only lays these strings and lists out.
"""

from __future__ import annotations

from urllib.parse import quote

from curate.export.common import decision_of
from curate.fo_decide import current, prefill
from curate.fo_decide import field as _get
from curate.fo_review import decided_filter, review_status
from curate.fo_schema import REVIEW_TAGS

REASONS = (  # (field, what it is about), in the order a reviewer needs them
    ("gender_label_reason", "gender"),
    ("age_label_reason", "age"),
    ("label_conflict_reason", "duplicates"),
    ("low_quality_reason", "quality"),
    ("face_reason", "face"),
    ("skin_tone_reason", "skin tone"),
)
LEGEND = {"gender": "#2e7d32", "age": "#2e7d32", "oos_gender_pred": "#ef6c00", "oos_age_pred": "#ef6c00"}
LEGEND_TEXT = "Colours in the grid: **green** = the dataset's label, **orange** = the out-of-sample model prediction."
MAX_COPIES = 6


def _num(sample, field: str, fmt: str) -> str:
    v = _get(sample, field)
    return f" ({fmt.format(v)})" if v is not None else ""


def _age_z(sample) -> str:
    """The age residual's z at the estimate and its two-sided z: a right label at the end of the age range is
    far off at its (shrunk) estimate but usual among images labelled alike, and then the second is low."""
    z, z2 = _get(sample, "age_residual_z"), _get(sample, "age_two_sided_z")
    parts = ([f"residual z {z:.1f}"] if z is not None else []) + ([f"two-sided z {z2:.1f}"] if z2 is not None else [])
    return f" ({'; '.join(parts)})" if parts else ""


def model_line(sample) -> str:
    """The model's view of the sample: out-of-sample when flag-mislabels ran, else the shipped model's."""
    age, gen, fold = _get(sample, "oos_age_pred"), _get(sample, "oos_gender_pred"), _get(sample, "oos_fold")
    oos = age is not None or gen is not None
    fold_said = f"fold model {fold}" if fold is not None and fold >= 0 else "the shipped model, never trained on it"
    source = f"out-of-sample, {fold_said}" if oos else None
    if source is None:
        age, gen = _get(sample, "age_pred"), _get(sample, "gender_pred")
        source = "shipped model (may have trained on this image)"
    if age is None and gen is None:
        return "**Model**: no prediction yet (run `curate score` and `curate flag-mislabels`)"
    parts = []
    if age is not None:
        parts.append(f"{age.value:.0f} y")
    if gen is not None:
        conf = f" (confidence {gen.confidence:.2f})" if gen.confidence is not None else ""
        parts.append(f"{gen.label}{conf}")
    return f"**Model** ({source}): " + " · ".join(parts)


def decision_line(sample) -> str:
    d = current(sample)
    fixes = (_get(sample, "age_corrected"), _get(sample, "gender_corrected"))
    if decision_of(sample.tags, *fixes) == "conflict":  # as review-status and export read it
        return "**Decision**: conflicting (label is right, and wrong or corrected): export drops it; decide again"
    if d.kind == "pending":
        return "**Decision**: pending"
    what = {"mislabel": "label is wrong", "ok": "label is right", "exclude": "image excluded"}[d.kind]
    fixes = [f"gender → {d.gender}" if d.gender else "", f"age → {d.age}" if d.age is not None else ""]
    fix = ", ".join(f for f in fixes if f) or ("no correction (dropped by export)" if d.kind == "mislabel" else "")
    who = (
        f" — {_get(sample, 'reviewed_by')}, {_get(sample, 'reviewed_at'):%Y-%m-%d %H:%M}"
        if _get(sample, "reviewed_at")
        else ""
    )
    return f"**Decision**: {what}{': ' + fix if fix else ''}{who}"


def card_markdown(sample) -> str:
    """Label vs model, the suggested correction, the reasons and the decision, as Markdown."""
    age, gen = _get(sample, "age"), _get(sample, "gender")
    label = " · ".join(x for x in (f"{age.value:.0f} y" if age else "", gen.label if gen else "") if x)
    lines = [f"**{_get(sample, 'filename') or sample.filepath.rsplit('/', 1)[-1]}**", f"**Label**: {label}"]
    lines.append(model_line(sample))
    if _get(sample, "n_faces") == 0:  # printed digits, an eye filling the crop: no label can be right
        lines.append("**No face found** by the detector: nothing here to label; **Exclude image** fits")
    fill = prefill(sample)
    changes = []
    if gen is not None and fill["gender"] != gen.label:
        changes.append(f"gender → **{fill['gender']}**" + _num(sample, "gender_flip_prob", "flip probability {:.2f}"))
    if age is not None and fill["age"] is not None and fill["age"] != round(age.value):
        changes.append(f"age → **{fill['age']}**" + _age_z(sample))
    lines.append("**Suggested correction**: " + ("; ".join(changes) if changes else "none (no label flagged)"))
    why = [f"- {about}: {_get(sample, f)}" for f, about in REASONS if _get(sample, f)]
    if why:
        lines.append("**Why**:\n" + "\n".join(why))
    lines.append(decision_line(sample))
    return "\n\n".join(lines)


def copies(ds, sample) -> list[dict]:
    """The other members of the sample's duplicate group (pixel-identical or near), with their labels."""
    from fiftyone import ViewField as F

    group = _get(sample, "near_group")
    if group is None or group < 0:
        return []
    view = ds.match((F("near_group") == group) & (F("_id") != sample._id)).limit(MAX_COPIES)
    out = []
    fields = ["filepath", "filename", "age.value", "gender.label", "tags"]
    for fp, fname, age, gender, tags in zip(*view.values(fields)):
        decided = [t for t in (tags or []) if t in REVIEW_TAGS]
        out.append(
            {
                "url": "/media?filepath=" + quote(fp, safe=""),
                "caption": f"{fname}: {age:.0f} y · {gender}" + (f" ({', '.join(decided)})" if decided else ""),
            }
        )
    return out


_QUEUE_CACHE: dict[str, tuple] = {}


def queue_rows(ds) -> list[dict]:
    """Reviewed / pending per saved view: the numbers `curate review-status` prints.

    Cached per dataset until a sample or a saved view changes (FiftyOne stamps every sample it saves with
    `last_modified_at`), so stepping through samples in the App does not recount 20k samples each time."""
    stamp = (ds.max("last_modified_at"), len(ds), tuple(sorted(ds.list_saved_views())))
    hit = _QUEUE_CACHE.get(ds.name)
    if hit is None or hit[0] != stamp:
        hit = _QUEUE_CACHE[ds.name] = (stamp, review_status(ds).to_dict("records"))
    return hit[1]


def next_pending(view, after_id: str | None) -> str | None:
    """The first undecided sample after `after_id` in the view's order (wrapping around), or None."""
    ids = view.values("id")
    todo = set(view.match(~decided_filter(view)).values("id")) - {after_id}
    if not todo:
        return None
    start = ids.index(after_id) + 1 if after_id in ids else 0
    return next(i for i in ids[start:] + ids[:start] if i in todo)
