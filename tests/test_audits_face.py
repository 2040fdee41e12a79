"""The `face` check (issue #19): per image the number of faces, the detector's confidence and how far the face
sits from UTKFace's aligned geometry, with a score, a flag and a reason; through the audit table, its cache
and sidecar, and the FiftyOne dataset.

Real inputs: sample crops, the sample's two crops without a face (dataset/sample_known_cases.csv), and
images built from a sample crop: pasted twice on a larger canvas, re-cropped loosely, a blank canvas.
"""

from __future__ import annotations

import math
import shutil
import uuid

import cv2
import fo_common
import numpy as np
import pandas as pd
import pytest
from fo_common import SAMPLE, run

from audits.face import FACE_OFFSET_MAX, face_issues, measure_face
from audits.runner import OUTPUT_COLUMNS, AuditConfig, run_audit
from core.faces import ALIGNED_MAX_OFFSET, recrop
from core.images import list_images
from core.schema import FACE

env, model, fo = fo_common.env, fo_common.model, fo_common.fo
pytestmark = pytest.mark.timeout(300)

FACE_IMG = "14_1_0_20170104005333646.jpg.chip.jpg"  # a sample crop, about 4 px off the reference
KNOWN = pd.read_csv(SAMPLE.parent / "sample_known_cases.csv")
NOT_A_FACE = KNOWN.loc[KNOWN["problem"] == "not a face", "filename"].tolist()  # an eye close-up, printed digits
OFF = "face off the aligned geometry by"


def _built() -> dict[str, np.ndarray]:
    """Images built from one sample crop, named as UTKFace names its files (so they carry labels)."""
    img = cv2.imread(str(SAMPLE / FACE_IMG))
    twice = np.full((260, 520, 3), 127, np.uint8)
    twice[30:230, 40:240] = img
    twice[30:230, 280:480] = img
    return {
        "14_1_0_20990101000000001.jpg.chip.jpg": twice,  # the face pasted twice
        "14_1_0_20990101000000002.jpg.chip.jpg": recrop(img, scale=2.5),  # a loose crop: face small, centred
        "14_1_0_20990101000000003.jpg.chip.jpg": np.full((200, 200, 3), (90, 140, 200), np.uint8),  # blank
    }


TWICE, LOOSE, BLANK = _built()


def _issues(**raw) -> pd.Series:
    return face_issues(pd.DataFrame([raw])).iloc[0]


def test_an_aligned_sample_crop_has_one_face_near_the_reference():
    m = measure_face(cv2.imread(str(SAMPLE / FACE_IMG)))
    assert m["n_faces"] == 1 and m["face_confidence"] > 0.8 and m["face_offset"] < ALIGNED_MAX_OFFSET
    r = _issues(**m)
    assert math.isclose(r[FACE.score], m["face_confidence"]) and not r[FACE.issue] and r[FACE.reason] == ""


@pytest.mark.parametrize("name", NOT_A_FACE)
def test_the_samples_crops_without_a_face_are_flagged(name):
    m = measure_face(cv2.imread(str(SAMPLE / name)))
    assert m["n_faces"] == 0 and math.isnan(m["face_confidence"]) and math.isnan(m["face_offset"])
    r = _issues(**m)
    assert r[FACE.score] == 0.0 and r[FACE.issue] and r[FACE.reason] == "no face found"


def test_two_faces_a_loose_crop_and_a_blank_canvas():
    built = _built()
    two, loose, blank = (measure_face(built[k]) for k in (TWICE, LOOSE, BLANK))
    assert two["n_faces"] == 2 and two["face_confidence"] > 0.8
    r = _issues(**two)
    assert r[FACE.issue] and r[FACE.reason].startswith("2 faces") and r[FACE.score] <= two["face_confidence"] / 2
    assert loose["n_faces"] == 1 and loose["face_offset"] > FACE_OFFSET_MAX
    r = _issues(**loose)
    px = round(loose["face_offset"])
    assert r[FACE.issue] and r[FACE.reason] == f"{OFF} {px} px (not a UTKFace-style crop: use `curate split --align`)"
    assert 0 < r[FACE.score] < loose["face_confidence"]  # confidence times a factor that falls with the offset
    assert blank["n_faces"] == 0 and _issues(**blank)[FACE.reason] == "no face found"


def test_score_formula_and_rows_without_measurements():
    t = pd.DataFrame(
        {
            "n_faces": [1, 1, 1, 3, 0, None],
            "face_confidence": [0.9, 0.9, 0.9, 0.9, np.nan, np.nan],
            "face_offset": [5.0, 24.0, 40.0, 5.0, np.nan, np.nan],
        }
    )
    r = face_issues(t)
    np.testing.assert_allclose(r[FACE.score].to_numpy()[:5], [0.9, 0.45, 0.0, 0.3, 0.0])
    assert r[FACE.issue].tolist() == [False, True, True, True, True, False]
    assert math.isnan(r[FACE.score].iat[5]) and r[FACE.reason].iat[5] == ""  # not decoded: low_quality says why
    assert r[FACE.reason].iat[3] == "3 faces"
    assert not face_issues(t, offset_max=30.0)[FACE.issue].iat[1]  # the threshold is a parameter


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory):
    """Six sample crops (the two without a face among them) and the three built images."""
    d = tmp_path_factory.mktemp("faces")
    names = [*NOT_A_FACE, *(p.name for p in list_images(SAMPLE)[:4])]
    for n in names:
        shutil.copy2(SAMPLE / n, d / n)
    for n, img in _built().items():
        cv2.imwrite(str(d / n), img)
    return d


def test_audit_table_sidecar_and_cache_carry_the_face_check(face_dir, tmp_path):
    cfg = AuditConfig(workers=1, progress=False, cache_root=tmp_path / "c")
    first = run_audit(list_images(face_dir), config=cfg)
    assert [c.name for c in FACE.columns()] == [c for c in OUTPUT_COLUMNS if c in {c.name for c in FACE.columns()}]
    t = first.table.set_index("filename")
    assert list(first.table.columns) == OUTPUT_COLUMNS
    assert t.loc[[*NOT_A_FACE, BLANK], FACE.reason].eq("no face found").all()
    assert t.loc[TWICE, "n_faces"] == 2 and t.loc[LOOSE, FACE.reason].startswith(OFF)
    assert t[FACE.issue].sum() == 5 and (t.loc[~t[FACE.issue], "n_faces"] == 1).all()
    assert first.meta["face"]["reasons"] == {"no face found": 3, "several faces; face off the aligned geometry": 1,
                                             "face off the aligned geometry": 1}  # fmt: skip
    assert first.meta["flag_counts"][FACE.issue] == 5 and first.meta["face"]["face_offset_max"] == FACE_OFFSET_MAX
    assert "face" in first.meta["columns"]["audit_version"] and "+face-1+" in t["audit_version"].iat[0]
    second = run_audit(list_images(face_dir), config=cfg)  # from the cache: the same face columns
    assert second.meta["timing"]["computed"] == 0
    pd.testing.assert_frame_equal(first.table, second.table)


def test_score_stores_the_face_fields_and_flag_mislabels_saves_the_face_view(face_dir, env, model, fo):
    name = f"t-face-{uuid.uuid4().hex[:6]}"
    try:
        run("score", face_dir, "--model", model, "--dataset", name, "--quiet", "--no-brain")
        ds = fo.load_dataset(name)
        schema = ds.get_field_schema()
        kinds = {"int": "IntField", "float": "FloatField", "bool": "BooleanField", "str": "StringField"}
        for col in FACE.columns():
            assert type(schema[col.name]).__name__ == kinds[col.kind], col.name
        by = dict(zip(ds.values("filename"), ds.values(FACE.reason)))
        assert by[NOT_A_FACE[0]] == by[NOT_A_FACE[1]] == "no face found" and by[TWICE].startswith("2 faces")
        run("flag-mislabels", "--dataset", name)
        view = ds.load_saved_view("face-issues")
        assert len(view) == 5 and view.values(FACE.score) == sorted(view.values(FACE.score))
        assert not any("face" in r for r in ds.values("low_quality_reason"))  # a separate issue, not low quality
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
