"""The one issue schema: every check follows the rule, the audit table and the label scores carry its
names with the values they had before the schema (same audit values, same mislabel ranking on the
sample), and README's column table is the generated one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import CHECKS, RENAMED_FROM_V1, markdown_table, replace_in, upgrade_columns

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


def test_every_check_has_raw_score_and_flag_named_by_the_rule():
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names))
    seen: set[str] = set()
    for c in CHECKS:
        assert c.raw, f"{c.name}: no raw measurement"
        assert c.score == f"{c.name}_score" and c.issue == f"is_{c.name}_issue"
        assert c.reason in (None, f"{c.name}_reason")
        cols = [col.name for col in c.columns()]
        assert not seen & set(cols), f"{c.name}: a column of another check"
        seen |= set(cols)
        assert all(col.kind in ("float", "int", "str", "bool") and col.doc for col in c.columns())
    # the schema-1 names all map onto schema columns (nothing renamed into the void)
    assert set(RENAMED_FROM_V1.values()) - seen <= {"age_group"}


def _audited(folder: Path, cache: Path):
    from audits.runner import AuditConfig, run_audit
    from curate.splits import scan_folder

    usable, _ = scan_folder(folder, progress=False)
    cfg = AuditConfig(workers=1, progress=False, cache_root=cache)
    table = run_audit(list(usable["path"]), usable[["age", "gender", "race"]].reset_index(drop=True), cfg).table
    return usable.reset_index(drop=True), table


@pytest.fixture(scope="module")
def audit_table(sample_dir, tmp_path_factory):
    return _audited(sample_dir, tmp_path_factory.mktemp("audit-cache"))


@pytest.fixture(scope="module")
def v1_table(utkface_dir, tmp_path_factory):
    """The 200 UTKFace files the schema-1 figures were measured on (the embedded sample of that time,
    listed in tests/data), copied from the full UTKFace folder and audited as they were."""
    import shutil

    d = tmp_path_factory.mktemp("v1-sample")
    for name in pd.read_csv(DATA / "schema_v1_audit_sample.csv", usecols=["filename"])["filename"]:
        shutil.copy2(utkface_dir / name, d / name)
    return _audited(d, tmp_path_factory.mktemp("audit-cache-v1"))


def test_audit_table_carries_every_audit_check_with_scores_in_unit_interval(audit_table):
    _, t = audit_table
    for c in (c for c in CHECKS if c.family != "label"):
        for col in c.columns():
            assert col.name in t.columns, f"{c.name}: {col.name} missing from the audit table"
        s = pd.to_numeric(t[c.score], errors="coerce")
        assert s.notna().any() and s.dropna().between(0, 1).all(), c.score
        assert t[c.issue].dtype == bool, c.issue
        flagged, fine = s[t[c.issue]], s[~t[c.issue]]
        if c.family != "skin_tone" and len(flagged) and len(fine):  # lower = worse
            assert flagged.median() <= fine.median(), f"{c.name}: flagged images score higher than the rest"


def test_audit_values_are_the_schema_1_values_under_the_new_names(v1_table):
    """Figures unchanged: the audit measured before the schema (tests/data, renamed) matches."""
    _, t = v1_table
    old = upgrade_columns(pd.read_csv(DATA / "schema_v1_audit_sample.csv", dtype={"content_hash": str}))
    t = t.set_index("filename").loc[old["filename"]].reset_index()
    for c in old.columns:
        a, b = old[c], t[c]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            assert np.allclose(a.to_numpy(float), pd.to_numeric(b).to_numpy(float), rtol=1e-6, equal_nan=True), c
        else:
            assert a.fillna("").astype(str).tolist() == b.fillna("").astype(str).tolist(), c


def test_mislabel_ranking_is_unchanged_on_the_sample(v1_table):
    """Same shipped model, same audits -> the schema-1 scores and flags, image for image."""
    from audits.mislabels import score_mislabels
    from curate.cli.common import DEFAULT_MODEL
    from trainer.evaluate import predict_manifest

    usable, table = v1_table
    pred = predict_manifest(DEFAULT_MODEL, usable.assign(fold=0), progress=False)
    new = pd.concat([pred[["filename"]], score_mislabels(pred, table)], axis=1).set_index("filename")
    old = upgrade_columns(pd.read_csv(DATA / "schema_v1_scores_sample.csv")).set_index("filename")
    new = new.loc[old.index]
    for c in ("gender_flip_prob", "gender_label_score", "age_residual_z", "age_label_score"):
        assert np.allclose(old[c], new[c].astype(float), rtol=1e-6, atol=1e-8, equal_nan=True), c
        # The review order: the 30 worst labels (the file keeps 10 digits, so near-certain labels at
        # 0.99999999x tie there and only the suspicious end is compared image by image).
        worst = c in ("gender_label_score", "age_label_score")
        o_old = old[c].astype(float).sort_values(ascending=worst, kind="stable").index[:30]
        o_new = new[c].astype(float).sort_values(ascending=worst, kind="stable").index[:30]
        assert list(o_old) == list(o_new), f"{c}: ranking changed"
    for c in ("is_gender_label_issue", "is_age_label_issue"):
        assert (old[c].astype(bool) == new[c].astype(bool)).all(), c
    assert (old["age_suggested"].astype("Int64") == new["age_suggested"].astype("Int64")).all()
    label_cols = [col.name for c in CHECKS if c.family == "label" for col in c.columns()]
    assert set(label_cols) <= set(new.columns)


def test_readme_column_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme
    assert replace_in(readme) == readme, "run `python -m core.schema --write README.md`"
