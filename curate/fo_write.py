"""Bulk writes of samples straight into FiftyOne's MongoDB collection: the fast path of `curate score`.

Why: FiftyOne's public `add_samples` / `set_values` build and validate a mongoengine document per sample
(~2.5 ms each with our ~70 fields on a busy 2-core machine); writing documents in FiftyOne's storage
format with `insert_many` / unordered `bulk_write` is several times faster. It relies on FiftyOne's
sample layout (`_id`, `_rand`, `_media_type`, `_dataset_id`, `created_at`, label documents with `_cls`,
arrays as npy+zlib), which is private, so it runs only with the FiftyOne versions it was tested with
(FIFTYONE_TESTED: tests compare its documents field by field with `add_samples`) and falls back to the
public path otherwise, or when `CURATE_FO_INSERT=add_samples`.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone

import numpy as np

# The FiftyOne releases whose sample layout the fast path was checked against: >= 0.23, < 1.23.
FIFTYONE_TESTED = ((0, 23), (1, 23))


def fast_path(ds) -> bool:
    """Whether to write `ds` directly: asked for (the default), a tested FiftyOne, its internals present."""
    from importlib import metadata

    if os.environ.get("CURATE_FO_INSERT", "fast") != "fast":
        return False
    try:
        version = tuple(int(x) for x in metadata.version("fiftyone").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    lo, hi = FIFTYONE_TESTED
    return lo <= version < hi and hasattr(ds, "_sample_collection") and hasattr(ds, "_doc")


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
    if not fast_path(ds):

        def samples():
            for fp, kw, h in rows:
                yield fo.Sample(
                    filepath=fp,
                    score_status="ok",
                    scored_at=now,
                    ingest_hashes=h,
                    **{f: as_fo(fo, v) for f, v in kw.items()},
                )

        with _duplicates_as(ConcurrentWriteError):
            return len(ds.add_samples(samples(), expand_schema=False, progress=False, num_samples=len(rows)))

    import random

    import fiftyone.core.utils as fou
    from bson import ObjectId

    coll, ds_id = ds._sample_collection, ds._doc.id
    rnd = random.Random()
    created = now.replace(microsecond=0)
    enc = LabelEncoder(fou)
    before = ds.count()

    def documents():
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
            yield d

    with _duplicates_as(ConcurrentWriteError):
        in_batches(documents(), 5000, lambda batch: coll.insert_many(batch, ordered=True))
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
    if not fast_path(ds):
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

    enc = LabelEncoder(fou)
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)
    coll = ds._sample_collection

    def operations():
        for sid, (r, h, ch) in touched.items():
            d = {"ingest_hashes": h, "scored_at": now, "last_modified_at": stamp}
            for g in ch:
                for f, vals in values[g].items():
                    d[f] = None if vals[r] is None else enc(vals[r])
            yield UpdateOne({"_id": ObjectId(sid)}, {"$set": d})

    in_batches(operations(), 2000, lambda batch: coll.bulk_write(batch, ordered=False))
    ds.reload()


class ConcurrentWriteError(Exception):
    """Another process inserted a sample for the same file meanwhile (the unique filepath index said so)."""


@contextlib.contextmanager
def _duplicates_as(error: type[Exception]):
    """MongoDB's duplicate-key refusals (code 11000), however FiftyOne wraps them, as `error`."""
    from pymongo.errors import BulkWriteError, DuplicateKeyError

    try:
        yield
    except (BulkWriteError, DuplicateKeyError) as e:
        if isinstance(e, DuplicateKeyError) or any(w.get("code") == 11000 for w in e.details.get("writeErrors", [])):
            raise error(str(e).splitlines()[0]) from None
        raise
    except ValueError as e:  # FiftyOne's add_samples reports a duplicate as a ValueError around pymongo's
        if "E11000" in str(e) or "duplicate key" in str(e):
            raise error(str(e).splitlines()[0]) from None
        raise


def in_batches(items, size: int, write) -> None:
    """`write` every `size` items, then the rest (one round trip per batch, never one per item)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            write(batch)
            batch = []
    if batch:
        write(batch)


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


class LabelEncoder:
    """Python value -> the BSON value FiftyOne stores (labels as `_cls` documents, arrays as npy+zlib)."""

    def __init__(self, fou):
        self.fou = fou

    def __call__(self, v):
        from bson import ObjectId

        if isinstance(v, Label):
            d = {"_id": ObjectId(), "_cls": v.cls, "tags": []}
            for k, x in v.attrs.items():
                if x is not None:
                    d[k] = self.fou.serialize_numpy_array(x) if isinstance(x, np.ndarray) else x
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
