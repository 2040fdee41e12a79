"""Table rows -> FiftyOne field values, per field group, with the fingerprints that tell a re-run which
groups changed (`ingest_hashes`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from core.labels import GENDER_NAMES, RACE_NAMES
from curate.fo_schema import AUDIT_SKIP, BOOK_FIELDS, LABEL_FIELDS, PREDICTION_FIELDS, audit_specs
from curate.fo_write import Label

# The columns whose values make each group's fingerprint (besides the embedding and audit version).
LABEL_COLUMNS = ["filename", "content_hash", "age", "gender", "race", "split", "fold", "width", "height", "name_note"]
PREDICTION_COLUMNS = ("age_pred", "gender_prob", "gender_logit_0", "gender_logit_1", "age_abs_error", "gender_loss",
                      "model", "pred_status")  # fmt: skip


def to_floats(s: pd.Series) -> list:
    a = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return [None if v != v else float(v) for v in a]


def to_ints(s: pd.Series) -> list:
    a = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return [None if v != v else int(v) for v in a]


def to_strs(s: pd.Series) -> list:
    return [None if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in s.astype(object)]


def to_bools(s: pd.Series) -> list:
    return [
        None if (v is None or (isinstance(v, float) and v != v) or v is pd.NA) else bool(v) for v in s.astype(object)
    ]


CONVERT = {"FloatField": to_floats, "IntField": to_ints, "StringField": to_strs, "BooleanField": to_bools}


def specs_and_hashes(
    table: pd.DataFrame, audit_version: str | None, audit_columns: list[str] | None = None
) -> tuple[dict, dict]:
    """(specs, hashes) per field group present in `table`: the field types, and per row a fingerprint
    of the group's inputs (cheap: no FiftyOne objects are built)."""
    specs = {"labels": LABEL_FIELDS}
    hashes = {"labels": _row_hashes(table, LABEL_COLUMNS)}
    if "age_pred" in table:
        specs["predictions"] = PREDICTION_FIELDS
        hashes["predictions"] = _prediction_hashes(table)
    audit_cols = audit_fields(audit_columns or [])
    if audit_cols:
        specs["audits"] = _audit_spec(table, audit_cols)
        hashes["audits"] = _audit_hashes(table, audit_cols, audit_version)
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
    values: dict[str, dict[str, list]] = {"labels": _label_values(table)}
    specs: dict[str, dict] = {"labels": LABEL_FIELDS}
    hashes: dict[str, list[str]] = {"labels": _row_hashes(table, LABEL_COLUMNS)}
    if "age_pred" in table:
        values["predictions"] = _prediction_values(table)
        specs["predictions"] = PREDICTION_FIELDS
        hashes["predictions"] = _prediction_hashes(table)
    audit_cols = audit_fields(audit_columns or [])
    if audit_cols:
        sp = audit_spec or _audit_spec(table, audit_cols)
        values["audits"] = _audit_values(table, audit_cols, sp, audit_version)
        specs["audits"] = sp
        hashes["audits"] = _audit_hashes(table, audit_cols, audit_version)
    return values, specs, hashes


def _label_values(table: pd.DataFrame) -> dict[str, list]:
    """The ground-truth fields: labels become FiftyOne labels so the App can filter and colour by them."""
    from curate.splits import age_group

    n = len(table)
    age = table["age"].to_numpy(dtype=float)
    gender = table["gender"].to_numpy(dtype=int)
    race = (
        pd.to_numeric(table["race"], errors="coerce").to_numpy(dtype=float) if "race" in table else np.full(n, np.nan)
    )
    return {
        "filename": to_strs(table["filename"]),
        "content_hash": to_strs(table["content_hash"]),
        "age": [Label("Regression", value=float(a)) for a in age],
        "gender": [Label("Classification", label=GENDER_NAMES[g]) for g in gender],
        "race": [None if r != r else Label("Classification", label=RACE_NAMES[int(r)]) for r in race],
        "split": to_strs(table["split"]) if "split" in table else [None] * n,
        "fold": to_ints(table["fold"]) if "fold" in table else [None] * n,
        "age_group": [age_group(a) for a in age],
        "width": to_ints(table["width"]) if "width" in table else [None] * n,
        "height": to_ints(table["height"]) if "height" in table else [None] * n,
        "name_note": to_strs(table["name_note"]) if "name_note" in table else [None] * n,
    }


def _prediction_values(table: pd.DataFrame) -> dict[str, list]:
    """The model's fields; a row without a prediction (failed image) gets None, not a made-up label."""
    n = len(table)
    have = table["age_pred"].notna().to_numpy()
    ap = table["age_pred"].to_numpy(dtype=float)
    prob = table["gender_prob"].to_numpy(dtype=float)
    l0, l1 = table["gender_logit_0"].to_numpy(dtype=float), table["gender_logit_1"].to_numpy(dtype=float)
    emb = _embeddings(table)
    return {
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
        "gender_prob": to_floats(table["gender_prob"]),
        "age_abs_error": to_floats(table["age_abs_error"]) if "age_abs_error" in table else [None] * n,
        "gender_loss": to_floats(table["gender_loss"]) if "gender_loss" in table else [None] * n,
        "embedding": [np.asarray(e, dtype=np.float32) if h and e is not None else None for e, h in zip(emb, have)],
        "model": to_strs(table["model"]),
        "pred_status": to_strs(table["pred_status"]) if "pred_status" in table else ["ok"] * n,
    }


def _audit_values(table: pd.DataFrame, audit_cols: list[str], spec: dict, audit_version: str | None) -> dict:
    """The audit fields, converted by their spec's type so every part of a table stores the same types."""
    n = len(table)
    vals = {c: CONVERT[spec[c][0]](table[c]) for c in audit_cols if c in spec and c in table}
    vals["audit_status"] = to_strs(table["audit_status"]) if "audit_status" in table else ["ok"] * n
    vals["audit_version"] = [audit_version] * n
    return vals


def _embeddings(table: pd.DataFrame) -> np.ndarray:
    """Per-row embeddings, all None when the table has none (older prediction files)."""
    return table["embedding"].to_numpy() if "embedding" in table else np.full(len(table), None, dtype=object)


def _prediction_hashes(table: pd.DataFrame) -> list[str]:
    """Fingerprints of the prediction inputs, the embedding included, so a re-scored row is re-written."""
    cols = [c for c in PREDICTION_COLUMNS if c in table]
    return _row_hashes(table, cols, extra=[_emb_hash(e) for e in _embeddings(table)])


def _audit_spec(table: pd.DataFrame, audit_cols: list[str]) -> dict:
    """Audit field types from the table (audit_status is a fixed field, not inferred)."""
    return audit_specs(table, [c for c in audit_cols if c != "audit_status"])


def _audit_hashes(table: pd.DataFrame, audit_cols: list[str], audit_version: str | None) -> list[str]:
    """Fingerprints of the audit inputs and version, so a new audit version re-writes every row."""
    return _row_hashes(table, audit_cols, extra=[audit_version or ""] * len(table))


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


def scatter(vals: list, rows: list[int], n: int) -> list:
    if len(rows) == n:
        return vals
    out = [None] * n
    for r, v in zip(rows, vals):
        out[r] = v
    return out
