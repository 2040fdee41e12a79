"""The FiftyOne side of the one schema: which fields `curate score` and `flag-mislabels` write, with
which types, and how a dataset is opened, checked and upgraded.

Safety. A dataset of the same name is only written when it carries our marker (`info["curate"]`) and
its fields have the types we write; otherwise `SchemaError` says which field differs and nothing is
written. A dataset written with schema 1 (the names before core/schema.py) is upgraded in place.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from core.errors import CurateError

# 2: the one issue schema (core/schema.py); datasets written with 1 are upgraded in place on open.
SCHEMA_VERSION = 2
MARKER = "curate"
REVIEW_TAGS = ("confirmed:mislabel", "confirmed:ok", "exclude")

# name -> (kind, detail): kind is a FiftyOne field class name; detail the embedded document class
# name (EmbeddedDocumentField) or the element field class name (ListField).
STR, INT, FLOAT = ("StringField", None), ("IntField", None), ("FloatField", None)
REGRESSION, CLASSIFICATION = ("EmbeddedDocumentField", "Regression"), ("EmbeddedDocumentField", "Classification")
LABEL_FIELDS = {"filename": STR, "content_hash": STR, "age": REGRESSION, "gender": CLASSIFICATION,
                "race": CLASSIFICATION, "split": STR, "fold": INT, "age_group": STR, "width": INT, "height": INT,
                "name_note": STR}  # fmt: skip
PREDICTION_FIELDS = {"age_pred": REGRESSION, "gender_pred": CLASSIFICATION, "gender_prob": FLOAT,
                     "age_abs_error": FLOAT, "gender_loss": FLOAT, "embedding": ("VectorField", None), "model": STR,
                     "pred_status": STR}  # fmt: skip
# A reviewer's decision: review tags plus these fields (curate/fo_decide.py writes them; nothing else does).
REVIEW_FIELDS = {"age_corrected": INT, "gender_corrected": STR, "reviewed_by": STR,
                 "reviewed_at": ("DateTimeField", None), "review_log": ("ListField", "DictField")}  # fmt: skip
BOOK_FIELDS = {"score_status": STR, "previous_filepath": STR, "scored_at": ("DateTimeField", None),
               "ingest_hashes": ("DictField", None), **REVIEW_FIELDS}  # fmt: skip
# Audit columns that are identity/bookkeeping, not fields of their own.
AUDIT_SKIP = {"path", "filename", "content_hash", "width", "height", "age", "gender", "race", "fold", "split"}


class SchemaError(CurateError, ValueError):
    """The named dataset exists but is not one `curate score` can safely write."""


# ------------------------------------------------------------------------------------ dataset
def open_dataset(fo, name: str, create: bool = True):
    """The named dataset, checked to be ours; created (persistent, marked) when absent and `create`."""
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        info = ds.info.get(MARKER)
        if ds.media_type not in (None, "image"):
            raise SchemaError(
                f"dataset {name!r} exists with media type {ds.media_type!r}, not images; pass another --dataset name"
            )
        if not info and len(ds):
            raise SchemaError(
                f"dataset {name!r} exists with {len(ds)} samples but was not created by "
                "`curate score` (no curate marker in its info); pass another --dataset name, "
                f"or delete it (fo.delete_dataset({name!r})) if it is disposable"
            )
        if info and int(info.get("schema_version", 0)) > SCHEMA_VERSION:
            raise SchemaError(
                f"dataset {name!r} was written by a newer curate (schema "
                f"{info.get('schema_version')} > {SCHEMA_VERSION}); upgrade curate"
            )
        if info and int(info.get("schema_version", 1)) < SCHEMA_VERSION:
            upgrade_schema(ds)
        if info:
            unique_filepaths(ds)
        return ds
    if not create:
        raise SchemaError(f"no dataset named {name!r}: run `curate score --dataset {name}` first")
    try:
        ds = fo.Dataset(name, persistent=True)
    except Exception:  # noqa: BLE001 - another process created it a moment ago (name taken), else re-raise
        if fo.dataset_exists(name):
            return open_dataset(fo, name, create=False)
        raise
    update_info(ds, lambda info: info.update(schema_version=SCHEMA_VERSION, created_at=now_utc().isoformat(),
                                             runs=[], fields={}))  # fmt: skip
    unique_filepaths(ds)
    return ds


def open_scored(fo, name: str):
    """The named dataset for commands that read what `curate score` stored: an error when it is missing or
    has no samples (e.g. left empty by a score that failed before writing), not a traceback further on."""
    ds = open_dataset(fo, name, create=False)
    if not len(ds):
        raise SchemaError(f"dataset {name!r} has no samples: run `curate score --dataset {name}` first")
    return ds


def update_info(ds, change) -> None:
    """Apply `change` to `ds.info["curate"]` and save, again on a fresh copy when another process saved the
    dataset meanwhile (FiftyOne then refuses the stale save)."""
    for attempt in range(5):
        info = dict(ds.info.get(MARKER) or {})
        change(info)
        ds.info[MARKER] = info
        try:
            ds.save()
            return
        except ValueError as e:
            if "Failed to update" not in str(e) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
            ds.reload()


def unique_filepaths(ds) -> int:
    """One sample per file, for good: merge duplicate samples of a file (left by two `curate score` runs
    at once before this existed), then make FiftyOne's filepath index unique; returns how many merged.

    Merging keeps the oldest sample and moves onto it every review tag of the others, and their
    corrections where it has none, so no decision is lost.
    """
    info = ds.get_index_information().get("filepath", {})
    if info.get("unique"):
        return 0
    counts = ds.count_values("filepath")
    dup_paths = [p for p, n in counts.items() if n > 1]
    merged = 0
    if dup_paths:
        from fiftyone import ViewField as F

        fields = [f for f in ("age_corrected", "gender_corrected") if f in ds.get_field_schema()]
        view = ds.match(F("filepath").is_in(dup_paths)).sort_by("created_at")
        rows = pd.DataFrame(
            dict(zip(["id", "filepath", "tags", *fields], view.values(["id", "filepath", "tags", *fields])))
        )
        drop = []
        for _, group in rows.groupby("filepath", sort=False):
            keep = ds[group["id"].iloc[0]]
            keep.tags = list(dict.fromkeys(t for tags in group["tags"] for t in (tags or [])))
            for f in fields:
                if keep[f] is None:
                    keep[f] = next((v for v in group[f] if v is not None and v == v), None)
            keep.save()
            drop += group["id"].iloc[1:].tolist()
        ds.delete_samples(drop)
        merged = len(drop)
    with _quiet("fiftyone.core.collections"):  # "Converting existing index 'filepath' to unique": ours, not news
        ds.create_index("filepath", unique=True)
    return merged


@contextmanager
def _quiet(logger: str):
    """A library logger's INFO lines held back for a moment (its warnings still shown)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def upgrade_schema(ds) -> list[str]:
    """Rename a schema-1 dataset's fields to the one schema's names, in place; returns what changed.

    Review state (tags, `age_corrected`, `gender_corrected`, `reviewed_*`) is not touched; the saved
    views, which name old fields, are deleted (`curate flag-mislabels` saves them again), and the
    ingest fingerprints are cleared so the next `curate score` rewrites the renamed groups once.
    """
    from core.schema import DROPPED_IN_V2, RENAMED_FROM_V1, RENAMED_FROM_V1_FIFTYONE

    have = set(ds.get_field_schema())
    renames = {o: n for o, n in {**RENAMED_FROM_V1, **RENAMED_FROM_V1_FIFTYONE}.items() if o in have}
    clash = [o for o, n in renames.items() if n in have]
    if clash:
        raise SchemaError(
            f"dataset {ds.name!r}: cannot upgrade to schema {SCHEMA_VERSION}, it holds both old and "
            f"new fields ({', '.join(clash)}); delete the new ones or pass another --dataset name"
        )
    for old, new in renames.items():
        ds.rename_sample_field(old, new)
    dropped = [f for f in DROPPED_IN_V2 if f in have]
    for f in dropped:
        ds.delete_sample_field(f)
    if "ingest_hashes" in have:
        ds.clear_sample_field("ingest_hashes")
    views = list(ds.list_saved_views())
    for v in views:
        ds.delete_saved_view(v)
    info = ds.info[MARKER]
    info["schema_version"] = SCHEMA_VERSION
    info.setdefault("upgrades", []).append(
        {
            "from": 1,
            "to": SCHEMA_VERSION,
            "at": now_utc().isoformat(),
            "renamed": renames,
            "dropped": dropped,
            "views_deleted": views,
        }
    )
    ds.save()
    return [f"{o} -> {n}" for o, n in renames.items()] + [f"{f} dropped" for f in dropped]


def field_spec(field) -> tuple[str, str | None]:
    """(kind, detail) of an existing FiftyOne field, in the notation of LABEL_FIELDS."""
    kind = type(field).__name__
    if kind == "EmbeddedDocumentField":
        return kind, field.document_type.__name__
    if kind == "ListField":
        return kind, type(field.field).__name__ if field.field is not None else None
    return kind, None


def check_schema(ds, specs: dict[str, tuple[str, str | None]]) -> None:
    """Raise SchemaError naming every field whose stored type differs from what we would write."""
    schema = ds.get_field_schema()
    bad = [
        f"{k} is {_fmt(field_spec(schema[k]))}, expected {_fmt(v)}"
        for k, v in specs.items()
        if k in schema and not _compatible(field_spec(schema[k]), v)
    ]
    if bad:
        raise SchemaError(
            f"dataset {ds.name!r} exists with a different schema: {'; '.join(bad)}. Nothing was "
            "written; pass another --dataset name or delete the conflicting field(s)"
        )


def _compatible(have: tuple, want: tuple) -> bool:
    return have == want


def reconcile_numeric(ds, specs: dict, values: dict, all_specs: dict) -> None:
    """Keep a stored int/float field's type when the new values fit it: an integer audit column turns
    float in pandas as soon as one row lacks a value, which must not count as a schema change."""
    schema = ds.get_field_schema()
    for g, sp in specs.items():
        for f, (kind, _) in list(sp.items()):
            if f not in schema or f not in values.get(g, {}):
                continue
            have = field_spec(schema[f])[0]
            vals = values[g][f]
            if have == "FloatField" and kind == "IntField":
                values[g][f] = [None if v is None else float(v) for v in vals]
            elif have == "IntField" and kind == "FloatField" and all(v is None or float(v).is_integer() for v in vals):
                values[g][f] = [None if v is None else int(v) for v in vals]
            else:
                continue
            sp = specs[g] = {**specs[g], f: (have, None)}
            all_specs[f] = (have, None)


def _fmt(spec: tuple) -> str:
    return spec[0] + (f"({spec[1]})" if spec[1] else "")


def declare_fields(fo, ds, specs: dict[str, tuple[str, str | None]]) -> None:
    import fiftyone.core.fields as fof

    schema = ds.get_field_schema()
    for name, (kind, detail) in specs.items():
        if name in schema:
            continue
        kw = {}
        if kind == "EmbeddedDocumentField":
            kw["embedded_doc_type"] = getattr(fo, detail)
        elif kind == "ListField" and detail:
            kw["subfield"] = getattr(fof, detail)
        ds.add_sample_field(name, getattr(fof, kind), **kw)


# ----------------------------------------------------------------------------- table -> values
FIELD_TYPES = {"float": "FloatField", "int": "IntField", "str": "StringField", "bool": "BooleanField"}


def schema_specs(names) -> dict[str, tuple[str, None]]:
    """FiftyOne field specs of one-schema columns (core/schema.py), from their value kinds."""
    from core.schema import kinds

    k = kinds()
    return {n: (FIELD_TYPES[k[n]], None) for n in names}


def audit_specs(table: pd.DataFrame, audit_cols: list[str]) -> dict[str, tuple[str, None]]:
    """Field specs of the audit columns: the one schema's kinds, dtypes for any other column."""
    from core.schema import kinds

    specs = schema_specs([c for c in audit_cols if c in kinds()])
    for c, (kind, _) in list(specs.items()):  # an int column holding fractions is not an int: say so
        vals = pd.to_numeric(table[c], errors="coerce").dropna() if kind == "IntField" else None
        if vals is not None and not (vals == vals.round()).all():
            specs[c] = ("FloatField", None)
    for c in (c for c in audit_cols if c not in specs):
        s = table[c]
        if pd.api.types.is_bool_dtype(s) or (
            s.dtype == object and s.dropna().map(type).isin([bool, np.bool_]).all() and s.notna().any()
        ):
            specs[c] = ("BooleanField", None)
        elif pd.api.types.is_integer_dtype(s):
            specs[c] = ("IntField", None)
        elif pd.api.types.is_numeric_dtype(s):
            specs[c] = ("FloatField", None)
        else:
            specs[c] = ("StringField", None)
    specs["audit_status"] = ("StringField", None)
    specs["audit_version"] = ("StringField", None)
    return specs


def now_utc() -> datetime:
    """UTC now to the second, naive (how FiftyOne stores datetimes)."""
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
