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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from curate.fo_db import DatabaseError
from curate.fo_schema import (
    BOOK_FIELDS,
    MARKER,
    SCHEMA_VERSION,
    check_schema,
    declare_fields,
    now_utc,
    reconcile_numeric,
    update_info,
)
from curate.fo_values import build_values, scatter, specs_and_hashes
from curate.fo_write import ConcurrentWriteError, insert_samples, update_samples

BRAIN_SIMILARITY = "img_sim"
BRAIN_VIZ = "img_viz"


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

    `audit_columns`: the table's columns that came from the audits (default: `table.attrs`).
    Two processes scoring one dataset at once: the unique filepath index refuses the second insert of a
    file, and the losing process reads the dataset again and writes only what is still missing or changed.
    """
    for attempt in range(3):
        try:
            return _ingest(fo, ds, table, rejected, audit_version, provenance, audit_columns)
        except ConcurrentWriteError:
            if attempt == 2:
                raise DatabaseError(
                    f"dataset {ds.name!r}: another process keeps inserting the same images; run one "
                    "`curate score` at a time"
                ) from None
            ds.reload()


def _ingest(fo, ds, table, rejected, audit_version, provenance, audit_columns) -> dict:
    import time

    t0 = time.time()
    if audit_columns is None:
        audit_columns = list(table.attrs.get("audit_columns", []))
    table = table.reset_index(drop=True)
    specs, hashes = specs_and_hashes(table, audit_version, audit_columns)
    present = list(specs)
    now = now_utc()
    st = _Stored.read(ds)
    paths = table["path"].tolist()
    moved, old_fps, new_rows = _moves(st, table)
    touched = _touched(st, table, present, hashes)

    # FiftyOne values only for the rows that will be written (a no-op re-run builds none).
    need = sorted(set(new_rows) | {r for r, _, _ in touched.values()})
    sub, _, _ = build_values(
        fo, table.iloc[need].reset_index(drop=True), audit_version, audit_columns, audit_spec=specs.get("audits")
    )
    values = {g: {f: scatter(v, need, len(table)) for f, v in fields.items()} for g, fields in sub.items()}
    for g in present:
        values.setdefault(g, {})
    all_specs = {**BOOK_FIELDS}
    for g in present:
        all_specs.update(specs[g])
    reconcile_numeric(ds, specs, values, all_specs)
    check_schema(ds, all_specs)  # before anything is written
    declare_fields(fo, ds, all_specs)

    if moved:
        ds.set_values("filepath", {st.ids[i]: paths[r] for i, r in moved.items()}, key_field="id")
        ds.set_values("previous_filepath", {st.ids[i]: old_fps[i] for i in moved}, key_field="id")
    n_added = 0
    if new_rows:  # one bulk insert; no Sample object outlives it
        fields = [(f, vals) for g in present for f, vals in values[g].items()]
        rows = [
            (paths[r], {f: vals[r] for f, vals in fields if vals[r] is not None}, {g: hashes[g][r] for g in present})
            for r in new_rows
        ]
        n_added = insert_samples(fo, ds, rows, now)
    updated = {g: n for g in present if (n := sum(g in ch for _, _, ch in touched.values()))}
    if touched:
        update_samples(fo, ds, touched, values, now)
    final = _update_status(ds, st, set(paths), rejected)
    counts = {
        "added": n_added,
        "moved": len(moved),
        "updated": updated,
        "unchanged": len(table) - n_added - len(touched),
        "missing": sum(1 for s in final if s == "missing file"),
        "rejected_stored": sum(1 for s in final if str(s).startswith("rejected")),
        "samples": len(ds),
        "seconds": round(time.time() - t0, 2),
    }
    _record_run(ds, counts, present, provenance or {}, now)
    return counts


@dataclass
class _Stored:
    """What the dataset holds, per sample: id, filepath, content hash, file name, fingerprints, status."""

    ids: list
    fps: list
    chs: list
    fns: list
    ihs: list
    sts: list

    @classmethod
    def read(cls, ds) -> _Stored:
        fields = ["id", "filepath", "content_hash", "filename", "ingest_hashes", "score_status"]
        # every field, not one: another `curate score` may be declaring them this instant (its insert then
        # collides on the unique filepath index, and the retry reads the dataset again)
        if not len(ds) or not set(fields[2:]) <= set(ds.get_field_schema()):
            return cls([], [], [], [], [], [])
        return cls(*(list(x) for x in ds.values(fields)))


def _moves(st: _Stored, table: pd.DataFrame) -> tuple[dict[int, int], dict[int, str], list[int]]:
    """Samples whose file is gone while a new row has its content (and name) elsewhere: stored index ->
    row, their old paths; `st.fps` is updated in place. Also the rows that are new samples."""
    paths = table["path"].tolist()
    row_of = set(paths)
    pos = {p: i for i, p in enumerate(st.fps)}
    gone = [i for i, p in enumerate(st.fps) if p not in row_of and not os.path.exists(p)]
    new_rows = [i for i, p in enumerate(paths) if p not in pos]
    moved = _match_moves(gone, new_rows, st.chs, st.fns, table)
    old_fps = {i: st.fps[i] for i in moved}
    for i, r in moved.items():
        del pos[st.fps[i]]
        st.fps[i] = paths[r]
        pos[paths[r]] = i
    return moved, old_fps, [r for r in new_rows if paths[r] not in pos]


def _touched(st: _Stored, table: pd.DataFrame, present: list[str], hashes: dict) -> dict[str, tuple]:
    """Existing samples whose groups changed: id -> (row, new fingerprints, changed groups).

    A group is rewritten only where its fingerprint changed. A row without a prediction / audit this
    run ("no prediction": not in the given file) keeps what is stored; a stale one (its content
    changed) is cleared with the rest of the group.
    """
    absent = {g: set() for g in present}
    for g, col, word in (("predictions", "pred_status", "no prediction"), ("audits", "audit_status", "no audit")):
        if g in absent and col in table:
            absent[g] = set(np.flatnonzero(table[col].astype(str).to_numpy() == word).tolist())
    pos = {p: i for i, p in enumerate(st.fps)}
    touched: dict[str, tuple] = {}
    for r, p in enumerate(table["path"]):
        i = pos.get(p)
        if i is None:
            continue
        old = st.ihs[i] or {}
        changed = [g for g in present if r not in absent[g] and old.get(g) != hashes[g][r]]
        if changed:
            touched[st.ids[i]] = (r, {**old, **{g: hashes[g][r] for g in changed}}, changed)
    return touched


def _update_status(ds, st: _Stored, in_table: set[str], rejected: pd.DataFrame | None) -> list[str]:
    """`score_status` of every stored sample this run knows about (new samples were added as "ok")."""
    rej = (
        {}
        if rejected is None or rejected.empty
        else dict(zip([str(Path(p).resolve()) for p in rejected["path"]], rejected["reason"].astype(str)))
    )
    updates: dict[str, str] = {}
    for i, p in enumerate(st.fps):
        if p in in_table:
            want = "ok"
        elif p in rej:
            want = "missing file" if rej[p] == "missing file" else f"rejected: {rej[p]}"
        elif not os.path.exists(p):
            want = "missing file"
        else:
            continue
        if st.sts[i] != want:
            updates[st.ids[i]] = want
    if updates:
        ds.set_values("score_status", updates, key_field="id")
    return [updates.get(sid, s) for sid, s in zip(st.ids, st.sts)]


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
    """This run's provenance and counts in `info["curate"]` (the last 20 runs, and per field group)."""

    def change(info: dict) -> None:
        fields = dict(info.get("fields", {}))
        for g in groups:
            fields[g] = {"source": provenance.get(g), "written_at": now.isoformat()}
        run = {"at": now.isoformat(), "groups": groups, "provenance": provenance,
               **{k: v for k, v in counts.items() if k != "seconds"}}  # fmt: skip
        info.update(schema_version=SCHEMA_VERSION, fields=fields, runs=[*list(info.get("runs", []))[-19:], run])

    update_info(ds, change)


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
    kw = {"seed": 0, "verbose": False} if m in ("umap", "tsne") else {}  # no per-iteration log on the terminal
    if m == "tsne":  # small sets: t-SNE's PCA pre-step and perplexity must fit the sample count
        kw.update(pca_dims=min(50, n - 1), perplexity=float(min(30, max(2, (n - 1) // 3))))
    if m == "umap":
        kw.update(num_neighbors=min(15, n - 1))
    fob.compute_visualization(
        view, embeddings="embedding", brain_key=BRAIN_VIZ, method=m, num_dims=2, progress=False, **kw
    )
    update_info(ds, lambda info: info.update(brain_state=state, brain_viz_method=m))
    return {"similarity": BRAIN_SIMILARITY, "visualization": f"{BRAIN_VIZ} ({m})", "uniqueness": "uniqueness", "n": n}
