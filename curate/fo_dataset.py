"""The persistent FiftyOne dataset behind `curate score`: one sample per usable image, written in bulk.

Identity. A sample is its image file: `filepath` is the key (pixel-identical files stay separate
samples; `content_hash` tells they are copies). A re-run adds images it has not seen, rewrites only
the field groups whose inputs changed, and never duplicates a sample. Reviewer state (tags such as
`confirmed:mislabel`, `age_corrected`, `gender_corrected`) is never written by `curate score`.

Field groups, each written together and fingerprinted per sample in `ingest_hashes`:
    labels       filename, content_hash, age (fo.Regression), gender / race (fo.Classification),
                 split, fold, age_group, width, height, name_note
    predictions  age_pred (fo.Regression), gender_pred (fo.Classification with confidence and
                 logits), gender_prob, age_abs_error, gender_loss, embedding (576-d vector),
                 model (checkpoint hash), pred_status
    audits       every audit column (quality scores and reasons, skin tone, duplicates), audit_status,
                 audit_version
plus `score_status` ("ok", "missing file", "rejected: <reason>"), `previous_filepath` (set when an
image moved) and `scored_at`. Provenance is on every sample (`model`, `audit_version`) and in
`dataset.info["curate"]` (which checkpoint / audit version produced which field group, per run).

Speed. Only rows that are new or whose fingerprints changed get FiftyOne values built (a no-op re-run
reads four fields and writes nothing). New samples go in as documents in FiftyOne's storage format,
one `insert_many` per 5,000 (`insert_samples`); changed groups of existing samples are written with
one `$set` per sample in unordered bulk writes (`update_samples`). `CURATE_FO_INSERT=add_samples`
selects FiftyOne's public `add_samples` / `set_values` instead (same stored documents, checked by the
tests; about 3x slower for a fresh ingest with ~70 fields per sample). No `fo.Sample` object is
kept alive while anything else is written: FiftyOne re-syncs every in-memory sample after each
write, which makes `set_values` ~20x slower.

Safety. A dataset of the same name is only written when it carries our marker (`info["curate"]`) and
its fields have the types we write; otherwise `SchemaError` says which field differs and nothing is
written. Images that vanished keep their sample (and review decisions) with `score_status` =
"missing file"; an image found under a new path (same content hash, and the same file name when that
disambiguates) has its sample moved, not duplicated.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import CurateError
from core.labels import GENDER_NAMES, RACE_NAMES

# 2: the one issue schema (core/schema.py); datasets written with 1 are upgraded in place on open.
SCHEMA_VERSION = 2
MARKER = "curate"
BRAIN_SIMILARITY = "img_sim"
BRAIN_VIZ = "img_viz"
REVIEW_TAGS = ("confirmed:mislabel", "confirmed:ok", "exclude")

# name -> (kind, detail): kind is a FiftyOne field class name; detail the embedded document class
# name (EmbeddedDocumentField) or the element field class name (ListField).
LABEL_FIELDS = {
    "filename": ("StringField", None),
    "content_hash": ("StringField", None),
    "age": ("EmbeddedDocumentField", "Regression"),
    "gender": ("EmbeddedDocumentField", "Classification"),
    "race": ("EmbeddedDocumentField", "Classification"),
    "split": ("StringField", None),
    "fold": ("IntField", None),
    "age_group": ("StringField", None),
    "width": ("IntField", None),
    "height": ("IntField", None),
    "name_note": ("StringField", None),
}
PREDICTION_FIELDS = {
    "age_pred": ("EmbeddedDocumentField", "Regression"),
    "gender_pred": ("EmbeddedDocumentField", "Classification"),
    "gender_prob": ("FloatField", None),
    "age_abs_error": ("FloatField", None),
    "gender_loss": ("FloatField", None),
    "embedding": ("VectorField", None),
    "model": ("StringField", None),
    "pred_status": ("StringField", None),
}
BOOK_FIELDS = {
    "score_status": ("StringField", None),
    "previous_filepath": ("StringField", None),
    "scored_at": ("DateTimeField", None),
    "ingest_hashes": ("DictField", None),
    "age_corrected": ("IntField", None),
    "gender_corrected": ("StringField", None),
}
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
        return ds
    if not create:
        raise SchemaError(f"no dataset named {name!r}: run `curate score --dataset {name}` first")
    ds = fo.Dataset(name, persistent=True)
    ds.info[MARKER] = {"schema_version": SCHEMA_VERSION, "created_at": _now().isoformat(), "runs": [], "fields": {}}
    ds.save()
    return ds


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
            "at": _now().isoformat(),
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


def _reconcile_numeric(ds, specs: dict, values: dict, all_specs: dict) -> None:
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


def _floats(s: pd.Series) -> list:
    a = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return [None if v != v else float(v) for v in a]


def _ints(s: pd.Series) -> list:
    a = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return [None if v != v else int(v) for v in a]


def _strs(s: pd.Series) -> list:
    return [None if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in s.astype(object)]


def _bools(s: pd.Series) -> list:
    return [
        None if (v is None or (isinstance(v, float) and v != v) or v is pd.NA) else bool(v) for v in s.astype(object)
    ]


CONVERT = {"FloatField": _floats, "IntField": _ints, "StringField": _strs, "BooleanField": _bools}


def specs_and_hashes(
    table: pd.DataFrame, audit_version: str | None, audit_columns: list[str] | None = None
) -> tuple[dict, dict]:
    """(specs, hashes) per field group present in `table`: the field types, and per row a fingerprint
    of the group's inputs (cheap: no FiftyOne objects are built)."""
    n = len(table)
    specs = {"labels": LABEL_FIELDS}
    hashes = {
        "labels": _row_hashes(
            table,
            ["filename", "content_hash", "age", "gender", "race", "split", "fold", "width", "height", "name_note"],
        )
    }
    if "age_pred" in table:
        specs["predictions"] = PREDICTION_FIELDS
        cols = [
            c
            for c in (
                "age_pred",
                "gender_prob",
                "gender_logit_0",
                "gender_logit_1",
                "age_abs_error",
                "gender_loss",
                "model",
                "pred_status",
            )
            if c in table
        ]
        emb = table["embedding"].to_numpy() if "embedding" in table else np.full(n, None, dtype=object)
        hashes["predictions"] = _row_hashes(table, cols, extra=[_emb_hash(e) for e in emb])
    audit_cols = audit_fields(audit_columns or [])
    if audit_cols:
        specs["audits"] = audit_specs(table, [c for c in audit_cols if c != "audit_status"])
        hashes["audits"] = _row_hashes(table, audit_cols, extra=[audit_version or ""] * n)
    return specs, hashes


def build_values(
    fo,
    table: pd.DataFrame,
    audit_version: str | None,
    audit_columns: list[str] | None = None,
    audit_spec: dict | None = None,
) -> tuple[dict, dict, dict]:
    """(values, specs, hashes): per group, {field: list aligned with table rows}; the field specs; and
    per group a list of per-row fingerprints of the group's inputs. `audit_spec` (from the whole
    table) fixes the audit fields' types when `table` is a part of it."""
    from curate.splits import age_group

    n = len(table)
    values: dict[str, dict[str, list]] = {}
    specs: dict[str, dict] = {}
    hashes: dict[str, list[str]] = {}

    age = table["age"].to_numpy(dtype=float)
    gender = table["gender"].to_numpy(dtype=int)
    race = (
        pd.to_numeric(table["race"], errors="coerce").to_numpy(dtype=float) if "race" in table else np.full(n, np.nan)
    )
    values["labels"] = {
        "filename": _strs(table["filename"]),
        "content_hash": _strs(table["content_hash"]),
        "age": [Label("Regression", value=float(a)) for a in age],
        "gender": [Label("Classification", label=GENDER_NAMES[g]) for g in gender],
        "race": [None if r != r else Label("Classification", label=RACE_NAMES[int(r)]) for r in race],
        "split": _strs(table["split"]) if "split" in table else [None] * n,
        "fold": _ints(table["fold"]) if "fold" in table else [None] * n,
        "age_group": [age_group(a) for a in age],
        "width": _ints(table["width"]) if "width" in table else [None] * n,
        "height": _ints(table["height"]) if "height" in table else [None] * n,
        "name_note": _strs(table["name_note"]) if "name_note" in table else [None] * n,
    }
    specs["labels"] = LABEL_FIELDS
    hashes["labels"] = _row_hashes(
        table, ["filename", "content_hash", "age", "gender", "race", "split", "fold", "width", "height", "name_note"]
    )

    if "age_pred" in table:
        have = table["age_pred"].notna().to_numpy()
        ap = table["age_pred"].to_numpy(dtype=float)
        prob = table["gender_prob"].to_numpy(dtype=float)
        l0, l1 = table["gender_logit_0"].to_numpy(dtype=float), table["gender_logit_1"].to_numpy(dtype=float)
        emb = table["embedding"].to_numpy() if "embedding" in table else np.full(n, None, dtype=object)
        values["predictions"] = {
            "age_pred": [Label("Regression", value=float(a)) if h else None for a, h in zip(ap, have)],
            "gender_pred": [
                Label(
                    "Classification",
                    label=GENDER_NAMES[int(p >= 0.5)],
                    confidence=float(max(p, 1 - p)),
                    logits=np.array([a, b], dtype=np.float64),
                )
                if h
                else None
                for p, a, b, h in zip(prob, l0, l1, have)
            ],
            "gender_prob": _floats(table["gender_prob"]),
            "age_abs_error": _floats(table["age_abs_error"]) if "age_abs_error" in table else [None] * n,
            "gender_loss": _floats(table["gender_loss"]) if "gender_loss" in table else [None] * n,
            "embedding": [np.asarray(e, dtype=np.float32) if h and e is not None else None for e, h in zip(emb, have)],
            "model": _strs(table["model"]),
            "pred_status": _strs(table["pred_status"]) if "pred_status" in table else ["ok"] * n,
        }
        specs["predictions"] = PREDICTION_FIELDS
        cols = [
            c
            for c in (
                "age_pred",
                "gender_prob",
                "gender_logit_0",
                "gender_logit_1",
                "age_abs_error",
                "gender_loss",
                "model",
                "pred_status",
            )
            if c in table
        ]
        emb_h = [_emb_hash(e) for e in emb]
        hashes["predictions"] = _row_hashes(table, cols, extra=emb_h)

    audit_cols = audit_fields(audit_columns or [])
    if audit_cols:
        sp = audit_spec or audit_specs(table, [c for c in audit_cols if c != "audit_status"])
        vals = {c: CONVERT[sp[c][0]](table[c]) for c in audit_cols if c in sp and c in table}
        vals["audit_status"] = _strs(table["audit_status"]) if "audit_status" in table else ["ok"] * n
        vals["audit_version"] = [audit_version] * n
        values["audits"] = vals
        specs["audits"] = sp
        hashes["audits"] = _row_hashes(table, audit_cols, extra=[audit_version or ""] * n)
    return values, specs, hashes


def audit_fields(columns: list[str]) -> list[str]:
    """The audit columns that become fields of their own (identity and label columns excluded)."""
    known = (
        set(LABEL_FIELDS)
        | set(PREDICTION_FIELDS)
        | set(BOOK_FIELDS)
        | AUDIT_SKIP
        | {"gender_logit_0", "gender_logit_1", "embedding", "audit_version"}
    )
    return [c for c in columns if c not in known or c == "audit_status"]


def _emb_hash(e) -> str:
    if e is None or (isinstance(e, float) and e != e):
        return ""
    return hashlib.blake2b(np.ascontiguousarray(e, dtype=np.float32).tobytes(), digest_size=8).hexdigest()


def _row_hashes(table: pd.DataFrame, cols: list[str], extra: list[str] | None = None) -> list[str]:
    part = table[[c for c in cols if c in table]].copy()
    for c in part.columns:  # ints and floats alike ("3" == "3.0"): a NaN elsewhere turns a column float
        s = part[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            s = s.astype("float64")
        part[c] = s.astype(str)
    if extra is not None:
        part["_extra"] = extra
    h = pd.util.hash_pandas_object(part, index=False).to_numpy(dtype=np.uint64)
    return [f"{v:016x}" for v in h]


# -------------------------------------------------------------------------------------- ingest
def ingest(
    fo,
    ds,
    table: pd.DataFrame,
    rejected: pd.DataFrame | None = None,
    audit_version: str | None = None,
    provenance: dict | None = None,
    audit_columns: list[str] | None = None,
) -> dict:
    """Write `table` (curate.fo_inputs.join_inputs output) into `ds`; returns counts per outcome.

    `audit_columns`: the table's columns that came from the audits (default: `table.attrs`)."""
    import time

    t0 = time.time()
    if audit_columns is None:
        audit_columns = list(table.attrs.get("audit_columns", []))
    table = table.reset_index(drop=True)
    specs, hashes = specs_and_hashes(table, audit_version, audit_columns)
    present = list(specs)
    now = _now()

    stored = (
        ds.values(["id", "filepath", "content_hash", "filename", "ingest_hashes", "score_status"])
        if len(ds) and "ingest_hashes" in ds.get_field_schema()
        else [[]] * 6
    )
    ids, fps, chs, fns, ihs, sts = (list(x) for x in stored)
    pos = {p: i for i, p in enumerate(fps)}
    paths = table["path"].tolist()
    row_of = {p: i for i, p in enumerate(paths)}

    # Moves: a stored sample whose file is gone, and a new row with its content (and name) elsewhere.
    gone = [i for i, p in enumerate(fps) if p not in row_of and not os.path.exists(p)]
    new_rows = [i for i, p in enumerate(paths) if p not in pos]
    moved = _match_moves(gone, new_rows, chs, fns, table)
    old_fps = {i: fps[i] for i in moved}
    for i, r in moved.items():
        del pos[fps[i]]
        fps[i] = paths[r]
        pos[paths[r]] = i
    new_rows = [r for r in new_rows if paths[r] not in pos]

    # Existing samples: a group is rewritten only where its fingerprint changed. A row without a
    # prediction / audit this run ("no prediction": not in the given file) keeps what is stored; a
    # stale one (its content changed) is cleared with the rest of the group.
    absent = {g: set() for g in present}
    for g, col, word in (("predictions", "pred_status", "no prediction"), ("audits", "audit_status", "no audit")):
        if g in absent and col in table:
            absent[g] = set(np.flatnonzero(table[col].astype(str).to_numpy() == word).tolist())
    touched: dict[str, tuple] = {}
    for r, p in enumerate(paths):
        i = pos.get(p)
        if i is None:
            continue
        old = ihs[i] or {}
        changed = [g for g in present if r not in absent[g] and old.get(g) != hashes[g][r]]
        if changed:
            touched[ids[i]] = (r, {**old, **{g: hashes[g][r] for g in changed}}, changed)

    # FiftyOne values only for the rows that will be written (a no-op re-run builds none).
    need = sorted(set(new_rows) | {r for r, _, _ in touched.values()})
    sub, _, _ = build_values(
        fo, table.iloc[need].reset_index(drop=True), audit_version, audit_columns, audit_spec=specs.get("audits")
    )
    values = {g: {f: _scatter(v, need, len(table)) for f, v in fields.items()} for g, fields in sub.items()}
    for g in present:
        values.setdefault(g, {})
    all_specs = {**BOOK_FIELDS}
    for g in present:
        all_specs.update(specs[g])
    _reconcile_numeric(ds, specs, values, all_specs)
    check_schema(ds, all_specs)  # before anything is written
    declare_fields(fo, ds, all_specs)

    if moved:
        ds.set_values("filepath", {ids[i]: paths[r] for i, r in moved.items()}, key_field="id")
        ds.set_values("previous_filepath", {ids[i]: old_fps[i] for i in moved}, key_field="id")

    # New samples: one bulk insert; no Sample object outlives it.
    n_added = 0
    if new_rows:
        fields = [(f, vals) for g in present for f, vals in values[g].items()]
        rows = [
            (paths[r], {f: vals[r] for f, vals in fields if vals[r] is not None}, {g: hashes[g][r] for g in present})
            for r in new_rows
        ]
        n_added = insert_samples(fo, ds, rows, now)

    updated = {g: n for g in present if (n := sum(g in ch for _, _, ch in touched.values()))}
    if touched:
        update_samples(fo, ds, touched, values, now)

    # Status of every stored sample this run knows about (new samples were added as "ok").
    rej = (
        {}
        if rejected is None or rejected.empty
        else dict(zip([str(Path(p).resolve()) for p in rejected["path"]], rejected["reason"].astype(str)))
    )
    status_updates: dict[str, str] = {}
    for i, p in enumerate(fps):
        if p in row_of:
            want = "ok"
        elif p in rej:
            want = "missing file" if rej[p] == "missing file" else f"rejected: {rej[p]}"
        elif not os.path.exists(p):
            want = "missing file"
        else:
            continue
        if sts[i] != want:
            status_updates[ids[i]] = want
    if status_updates:
        ds.set_values("score_status", status_updates, key_field="id")
    final = [status_updates.get(sid, st) for sid, st in zip(ids, sts)]

    counts = {
        "added": n_added,
        "moved": len(moved),
        "updated": updated,
        "unchanged": len(table) - n_added - len(touched),
        "missing": sum(1 for st in final if st == "missing file"),
        "rejected_stored": sum(1 for st in final if str(st).startswith("rejected")),
        "samples": len(ds),
        "seconds": round(time.time() - t0, 2),
    }
    _record_run(ds, counts, present, provenance or {}, now)
    return counts


def insert_samples(fo, ds, rows: list[tuple[str, dict, dict]], now: datetime) -> int:
    """Add one sample per (filepath, fields, ingest_hashes); returns how many were added.

    Default: the documents are built here, in FiftyOne's storage format, and written with one
    `insert_many` per 5,000 samples (`CURATE_FO_INSERT=fast`). FiftyOne's public `add_samples` builds
    and validates a mongoengine document per sample twice over (~2.5 ms per sample with our ~70 fields
    on a busy 2-core machine); this path is several times faster. It is used only when every field is
    already declared (ingest does that) and relies on FiftyOne's sample layout (`_id`, `_rand`,
    `_media_type`, `_dataset_id`, `created_at`, label documents with `_cls`); tests compare it field by
    field with `add_samples`, which `CURATE_FO_INSERT=add_samples` selects instead.
    """
    mode = os.environ.get("CURATE_FO_INSERT", "fast")
    if mode == "fast":
        try:
            coll, ds_id = ds._sample_collection, ds._doc.id
        except AttributeError:  # a FiftyOne without these internals: the public path
            mode = "add_samples"
    if mode != "fast":

        def samples():
            for fp, kw, h in rows:
                yield fo.Sample(
                    filepath=fp,
                    score_status="ok",
                    scored_at=now,
                    ingest_hashes=h,
                    **{f: as_fo(fo, v) for f, v in kw.items()},
                )

        return len(ds.add_samples(samples(), expand_schema=False, progress=False, num_samples=len(rows)))

    import random

    import fiftyone.core.utils as fou
    from bson import ObjectId

    rnd = random.Random()
    created = now.replace(microsecond=0)
    enc = _LabelEncoder(fo, fou)
    before = ds.count()
    batch = []
    for fp, kw, h in rows:
        d = {
            "_id": ObjectId(),
            "filepath": fp,
            "tags": [],
            "_media_type": "image",
            "_rand": rnd.random() * 0.001 + 0.999,
            "_dataset_id": ds_id,
            "created_at": created,
            "last_modified_at": created,
            "score_status": "ok",
            "scored_at": now,
            "ingest_hashes": h,
        }
        for f, v in kw.items():
            d[f] = enc(v)
        batch.append(d)
        if len(batch) == 5000:
            coll.insert_many(batch, ordered=True)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=True)
    ds.reload()
    added = ds.count() - before
    if added != len(rows):
        raise RuntimeError(f"inserted {len(rows)} samples but the dataset grew by {added}")
    return added


def update_samples(fo, ds, touched: dict[str, tuple[int, dict, list[str]]], values: dict, now: datetime) -> None:
    """Rewrite the changed groups of existing samples: sample id -> (table row, new ingest_hashes, groups).

    Default: one `$set` per sample with all its changed fields, in one unordered bulk write
    (`CURATE_FO_INSERT=fast`); `set_values` per field instead makes one pass over the samples per
    field (`CURATE_FO_INSERT=add_samples` selects it)."""
    groups = sorted({g for _, _, ch in touched.values() for g in ch})
    if os.environ.get("CURATE_FO_INSERT", "fast") != "fast" or not hasattr(ds, "_sample_collection"):
        for g in groups:
            rows_g = {sid: r for sid, (r, _, ch) in touched.items() if g in ch}
            for f, vals in values[g].items():
                ds.set_values(f, {sid: as_fo(fo, vals[r]) for sid, r in rows_g.items()}, key_field="id")
        ds.set_values("ingest_hashes", {sid: h for sid, (_, h, _) in touched.items()}, key_field="id")
        ds.set_values("scored_at", {sid: now for sid in touched}, key_field="id")
        return

    import fiftyone.core.utils as fou
    from bson import ObjectId
    from pymongo import UpdateOne

    enc = _LabelEncoder(fo, fou)
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)
    ops = []
    coll = ds._sample_collection
    for sid, (r, h, ch) in touched.items():
        d = {"ingest_hashes": h, "scored_at": now, "last_modified_at": stamp}
        for g in ch:
            for f, vals in values[g].items():
                d[f] = None if vals[r] is None else enc(vals[r])
        ops.append(UpdateOne({"_id": ObjectId(sid)}, {"$set": d}))
        if len(ops) == 2000:
            coll.bulk_write(ops, ordered=False)
            ops = []
    if ops:
        coll.bulk_write(ops, ordered=False)
    ds.reload()


class Label:
    """A FiftyOne label to be (fo.Regression / fo.Classification), without building the mongoengine
    document: ingest writes tens of thousands, and constructing them costs more than storing them."""

    __slots__ = ("cls", "attrs")

    def __init__(self, cls: str, **attrs):
        self.cls, self.attrs = cls, attrs

    def __getattr__(self, name):
        try:
            return self.attrs[name]
        except KeyError:
            raise AttributeError(name) from None


def as_fo(fo, v):
    """The FiftyOne object for a value of `build_values` (labels become fo.Regression / fo.Classification)."""
    return getattr(fo, v.cls)(**v.attrs) if isinstance(v, Label) else v


class _LabelEncoder:
    """Python value -> the BSON value FiftyOne stores (labels as `_cls` documents, arrays as npy+zlib)."""

    def __init__(self, fo, fou):
        self.fo, self.fou = fo, fou

    def __call__(self, v):
        from bson import ObjectId

        fo = self.fo
        if isinstance(v, Label):
            d = {"_id": ObjectId(), "_cls": v.cls, "tags": []}
            for k, x in v.attrs.items():
                if x is not None:
                    d[k] = self.fou.serialize_numpy_array(x) if isinstance(x, np.ndarray) else x
            return d
        if isinstance(v, fo.Regression):
            d = {"_id": ObjectId(), "_cls": "Regression", "tags": [], "value": v.value}
            if v.confidence is not None:
                d["confidence"] = v.confidence
            return d
        if isinstance(v, fo.Classification):
            d = {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": v.label}
            if v.confidence is not None:
                d["confidence"] = v.confidence
            if v.logits is not None:
                d["logits"] = self.fou.serialize_numpy_array(v.logits)
            return d
        if isinstance(v, np.ndarray):
            return self.fou.serialize_numpy_array(v)
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        if isinstance(v, (np.bool_,)):
            return bool(v)
        return v


def _scatter(vals: list, rows: list[int], n: int) -> list:
    if len(rows) == n:
        return vals
    out = [None] * n
    for r, v in zip(rows, vals):
        out[r] = v
    return out


def _match_moves(gone: list[int], new_rows: list[int], chs: list, fns: list, table: pd.DataFrame) -> dict[int, int]:
    """Stored index -> table row for images that moved: same content hash and file name, else the
    only stored sample and the only new row with that content hash."""
    if not gone or not new_rows:
        return {}
    by_both: dict[tuple, list[int]] = {}
    by_hash: dict[str, list[int]] = {}
    for r in new_rows:
        by_both.setdefault((table.at[r, "content_hash"], table.at[r, "filename"]), []).append(r)
        by_hash.setdefault(table.at[r, "content_hash"], []).append(r)
    gone_by_hash: dict[str, list[int]] = {}
    for i in gone:
        gone_by_hash.setdefault(chs[i], []).append(i)
    out: dict[int, int] = {}
    taken: set[int] = set()
    for i in gone:
        cand = [r for r in by_both.get((chs[i], fns[i]), []) if r not in taken]
        if not cand and len(gone_by_hash.get(chs[i], [])) == 1:
            cand = [r for r in by_hash.get(chs[i], []) if r not in taken]
            cand = cand if len(cand) == 1 else []
        if cand:
            out[i] = cand[0]
            taken.add(cand[0])
    return out


def _record_run(ds, counts: dict, groups: list[str], provenance: dict, now: datetime) -> None:
    info = dict(ds.info.get(MARKER) or {"schema_version": SCHEMA_VERSION, "runs": [], "fields": {}})
    fields = dict(info.get("fields", {}))
    for g in groups:
        fields[g] = {"source": provenance.get(g), "written_at": now.isoformat()}
    runs = list(info.get("runs", []))[-19:]
    runs.append(
        {
            "at": now.isoformat(),
            "groups": groups,
            "provenance": provenance,
            **{k: v for k, v in counts.items() if k != "seconds"},
        }
    )
    info.update(schema_version=SCHEMA_VERSION, fields=fields, runs=runs)
    ds.info[MARKER] = info
    ds.save()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)


# --------------------------------------------------------------------------------------- brain
def viz_method(n: int, method: str = "auto") -> str:
    """UMAP if installed; else t-SNE up to 5,000 samples (minutes beyond that on 2 cores); else PCA."""
    if method != "auto":
        return method
    try:
        import umap  # noqa: F401

        return "umap"
    except ImportError:
        return "tsne" if n <= 5000 else "pca"


def run_brain(fo, ds, method: str = "auto", force: bool = False) -> dict:
    """Similarity index, 2-D visualisation and uniqueness from the stored embeddings (no model-zoo
    download). Skipped when the embedded samples and their models are what the last run indexed."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    view = ds.match((F("score_status") == "ok") & F("embedding").exists())
    n = len(view)
    if n < 5:
        return {"skipped": f"only {n} sample(s) with an embedding"}
    ids, models = view.values("id"), view.values("model")
    state = hashlib.sha256("\n".join(sorted(f"{i}:{m}" for i, m in zip(ids, models))).encode()).hexdigest()[:16]
    info = ds.info.get(MARKER, {})
    m = viz_method(n, method)
    have = set(ds.list_brain_runs())
    if (
        not force
        and info.get("brain_state") == state
        and info.get("brain_viz_method") == m
        and {BRAIN_SIMILARITY, BRAIN_VIZ} <= have
    ):
        return {"skipped": "embeddings unchanged since the last brain run"}
    for key in (BRAIN_SIMILARITY, BRAIN_VIZ):
        if key in have:
            ds.delete_brain_run(key)
    fob.compute_similarity(view, embeddings="embedding", brain_key=BRAIN_SIMILARITY, backend="sklearn", progress=False)
    fob.compute_uniqueness(view, uniqueness_field="uniqueness", embeddings="embedding", progress=False)
    kw = {"seed": 0} if m in ("umap", "tsne") else {}
    if m == "tsne":  # small sets: t-SNE's PCA pre-step and perplexity must fit the sample count
        kw.update(pca_dims=min(50, n - 1), perplexity=float(min(30, max(2, (n - 1) // 3))))
    if m == "umap":
        kw.update(num_neighbors=min(15, n - 1))
    fob.compute_visualization(
        view, embeddings="embedding", brain_key=BRAIN_VIZ, method=m, num_dims=2, progress=False, **kw
    )
    info = dict(ds.info.get(MARKER, {}))
    info.update(brain_state=state, brain_viz_method=m)
    ds.info[MARKER] = info
    ds.save()
    return {"similarity": BRAIN_SIMILARITY, "visualization": f"{BRAIN_VIZ} ({m})", "uniqueness": "uniqueness", "n": n}
