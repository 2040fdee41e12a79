"""Datasets that are not UTKFace-named, through the whole loop: split -> audit -> score -> flag-mislabels ->
export. A labels CSV with bad rows, repeated base names and identities; and ordinary photos (faces pasted
into larger scenes) that `curate split --align` turns into aligned crops. Real files, the shipped model,
FiftyOne on the tests' own database (fo_common)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import fo_common
import pandas as pd
import pytest
from dataset_builders import BAD_ROWS, DUPLICATE, labels_dataset, photo_dataset
from fo_common import run

from core.manifest import TEST_SPLIT, TRAIN_SPLIT

env, model, fo = fo_common.env, fo_common.model, fo_common.fo
pytestmark = pytest.mark.timeout(900)


def _named_once(output: str, names: list[str]) -> None:
    assert "Traceback" not in output
    for name in names:
        assert len([ln for ln in output.splitlines() if f"'{name}'" in ln]) == 1, (name, output[-2000:])


def _decide_and_export(fo, name: str, split: Path, out: Path) -> tuple[pd.DataFrame, str, int]:
    """Flag, mark one training image's gender as wrong (the App's decision), export with --copy; returns the
    exported labels.csv, the corrected file and its original gender."""
    from curate.fo_decide import Decision, apply

    res = run("flag-mislabels", "--dataset", name, "--quiet")
    assert "Traceback" not in res.output and "out-of-sample" in res.output
    ds = fo.load_dataset(name)
    train = pd.read_csv(split / TRAIN_SPLIT / "manifest.csv")
    target = train["filename"].iloc[0]
    sample = ds.match({"filename": target}).first()
    gender = 0 if sample["gender"].label == "male" else 1
    apply(ds, {sample.id: Decision("mislabel", gender=("female", "male")[gender])})
    res = run("export", "--dataset", name, "--from", split / TRAIN_SPLIT, "--root", out, "--name", "clean",
              "--copy", "--quiet")  # fmt: skip
    assert "Traceback" not in res.output
    labels = pd.read_csv(out / "clean" / "labels.csv")
    assert sorted(labels["path"]) == sorted(train["filename"])  # every image, under its own relative path
    assert all((out / "clean" / p).is_file() for p in labels["path"])
    return labels.set_index("path"), target, gender


def test_a_labels_csv_dataset_goes_through_the_loop(model, fo, tmp_path):
    ds_dir = tmp_path / "ds"
    labels_dataset(ds_dir)
    bad = [*BAD_ROWS, DUPLICATE]
    split = tmp_path / "split"
    res = run("split", ds_dir, "--out", split, "--quiet")
    _named_once(res.output.split("rejected (")[1], bad)
    folds = pd.read_csv(split / "folds.csv", dtype={"id": str})
    assert folds.groupby("id")["split"].nunique().max() == 1 and set(folds["split"]) == {TRAIN_SPLIT, TEST_SPLIT}
    res = run("audit", ds_dir, "--out", tmp_path / "audits.parquet", "--workers", "1", "--quiet")
    _named_once(res.output, bad)
    audits = pd.read_parquet(tmp_path / "audits.parquet")
    assert sorted(audits["path"]) == sorted(folds["path"]) and set(audits["audit_status"]) <= {"ok", "low_quality"}
    name = f"t-table-{uuid.uuid4().hex[:6]}"
    try:
        res = run("score", ds_dir, "--model", model, "--dataset", name, "--no-brain", "--quiet")
        _named_once("\n".join(ln for ln in res.output.splitlines() if "rejected '" in ln), bad)
        ds = fo.load_dataset(name)
        stored = dict(zip(ds.values("filename"), ds.values("fold")))
        assert stored == dict(zip(folds["filename"], folds["fold"]))  # the split's folds; a/001.jpg and b/001.jpg
        labels, target, gender = _decide_and_export(fo, name, split, tmp_path / "exp")
        assert (labels.loc[target, "gender"], labels.loc[target, "original_gender"]) == (1 - gender, gender)
        assert labels["id"].notna().all() and "race" in labels
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_align_finds_the_faces_in_photos_and_the_loop_runs_on_the_crops(model, fo, tmp_path):
    import cv2

    from core.faces import detect_faces, misalignment

    table, n_faces = photo_dataset(tmp_path / "photos")
    originals = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "photos").rglob("*.jpg")}
    split = tmp_path / "split"
    res = run("split", table, "--out", split, "--align", "--quiet")
    folds = pd.read_csv(split / "folds.csv").set_index("filename")
    rej = pd.read_csv(split / "rejected.csv")
    assert [n_faces[f] for f in rej["filename"]] == [0]  # the last row: row 12, as every rejected row of a table
    assert list(rej["reason"]) == [f"row {len(n_faces)}: no face found"]
    expected = {f: "one face" if k == 1 else "2 faces: the largest used" for f, k in n_faces.items() if k}
    assert folds["face_status"].to_dict() == expected
    assert (folds["n_faces"] == folds.index.map(n_faces)).all() and (folds["face_score"] > 0.6).all()
    assert "faces: 2 faces: the largest used 2, one face 9" in res.output
    for f, r in folds.iterrows():  # the crop is aligned to UTKFace's geometry; the photo was far from it
        assert Path(r["path"]) == (split / "aligned" / f).resolve() and r["source_path"] == str(table.parent / f)
        crop, photo = cv2.imread(r["path"]), cv2.imread(r["source_path"])
        assert crop.shape == (200, 200, 3) and (r["width"], r["height"]) == (200, 200)
        assert misalignment(detect_faces(crop)[0], 200, 200) < 12, f
        assert misalignment(detect_faces(photo)[0], photo.shape[1], photo.shape[0]) > 12, f
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in originals} == originals  # never modified
    crops = {p: p.stat().st_mtime_ns for p in (split / "aligned").rglob("*.jpg")}
    before = (split / "folds.csv").read_bytes()
    run("split", table, "--out", split, "--align", "--quiet")  # idempotent: every crop reused
    assert {p: p.stat().st_mtime_ns for p in (split / "aligned").rglob("*.jpg")} == crops
    assert (split / "folds.csv").read_bytes() == before
    name = f"t-align-{uuid.uuid4().hex[:6]}"
    try:
        run("score", "--manifest", split / "folds.csv", "--model", model, "--dataset", name, "--no-brain", "--quiet")
        assert sorted(fo.load_dataset(name).values("filename")) == sorted(folds.index)
        labels, target, gender = _decide_and_export(fo, name, split, tmp_path / "exp")
        assert labels.loc[target, "gender"] == 1 - gender
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
