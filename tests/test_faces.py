"""Faces in ordinary photos: detection, alignment to UTKFace's geometry, `curate predict` on photos with
0, 1 and 2 faces, and the crop geometry shared by the training augmentation and the robustness bench."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from core import faces
from core.faces import (
    ALIGNED_MAX_OFFSET,
    detect_faces,
    face_scale,
    face_turn,
    find_face,
    is_aligned_crop,
    misalignment,
    recrop,
)
from curate.cli import main
from trainer.config import ConfigError, TrainConfig
from trainer.data import CropAugment, keep_centre

SAMPLE = Path(__file__).resolve().parent.parent / "dataset" / "sample"
KNOWN = pd.read_csv(SAMPLE.parent / "sample_known_cases.csv")
NOT_FACES = set(KNOWN.loc[KNOWN["problem"] == "not a face", "filename"])


def _crops(n: int) -> list[Path]:
    return [p for p in sorted(SAMPLE.glob("*.jpg")) if p.name not in NOT_FACES][:n]


def _photo(faces_at: list[tuple[Path, float, int, int]], seed: int = 0) -> np.ndarray:
    """A 480x640 photo: a smooth textured background, each face crop pasted at (x, y) and scale."""
    rng = np.random.default_rng(seed)
    bg = np.linspace(60, 190, 640)[None, :, None] + rng.normal(0, 8, (480, 640, 3))
    photo = np.clip(bg, 0, 255).astype(np.uint8)
    for path, s, x, y in faces_at:
        f = cv2.resize(cv2.imread(str(path)), None, fx=s, fy=s)
        photo[y : y + f.shape[0], x : x + f.shape[1]] = f
    return photo


def test_utkface_crops_are_found_and_already_aligned():
    off = []
    for p in _crops(40):
        found = detect_faces(cv2.imread(str(p)))
        assert len(found) == 1 and found[0].score > 0.6, p.name
        off.append(misalignment(found[0], 200, 200))
    assert np.median(off) < 9 and np.mean(np.array(off) <= ALIGNED_MAX_OFFSET) >= 0.85, off
    for name in NOT_FACES:  # an eye filling the crop, printed digits: no face
        assert detect_faces(cv2.imread(str(SAMPLE / name))) == [], name


def test_aligned_crop_means_utkface_place_and_size():
    """predict's `auto` feeds a crop as it is only when its face sits where, as large and as level as
    UTKFace's: the crops themselves pass; crops 1.2x looser (10 px off on average, which the offset alone
    let through), 0.8x tighter and turned 15 degrees (11 px off) are aligned again."""
    own, loose, tight, turned, scales, turns = [], [], [], [], [], []
    for p in _crops(40):
        img = cv2.imread(str(p))
        found = detect_faces(img)
        own.append(is_aligned_crop(found, 200, 200))
        scales.append(face_scale(found[0], 200, 200))
        turns.append(face_turn(detect_faces(recrop(img, angle=15))[0], 200, 200) - face_turn(found[0], 200, 200))
        for out, kw in ((loose, {"scale": 1.2}), (tight, {"scale": 0.8}), (turned, {"angle": 15})):
            out.append(is_aligned_crop(detect_faces(recrop(img, **kw)), 200, 200))
    assert np.median(scales) == pytest.approx(1.0, abs=0.05) and np.mean(own) >= 0.8, (scales, own)
    assert np.median(np.abs(turns)) == pytest.approx(15, abs=3), turns  # turned 15 degrees: 15 to turn back
    assert np.mean(loose) <= 0.15 and np.mean(tight) <= 0.15 and np.mean(turned) <= 0.25, (loose, tight, turned)
    a, b = _crops(2)
    assert not is_aligned_crop(detect_faces(_photo([(a, 0.7, 20, 20), (b, 1.5, 300, 120)])), 640, 480)
    assert not is_aligned_crop([], 200, 200)


def test_a_face_in_a_photo_is_aligned_to_utkface_geometry():
    for i, p in enumerate(_crops(6)):
        turned = cv2.imread(str(p))
        m = cv2.getRotationMatrix2D((100, 100), 12 * (-1) ** i, 1)
        turned = cv2.warpAffine(turned, m, (200, 200), borderMode=cv2.BORDER_REFLECT)
        photo = _photo([])
        f = cv2.resize(turned, None, fx=1.4, fy=1.4)
        photo[100 : 100 + f.shape[0], 250 : 250 + f.shape[1]] = f
        fc = find_face(photo)
        assert fc.status == "one face" and fc.n_faces == 1 and fc.crop.shape == (200, 200, 3)
        cx, cy = fc.box[0] + fc.box[2] / 2, fc.box[1] + fc.box[3] / 2  # the face's centre in the pasted crop
        assert 250 + 100 < cx < 250 + 180 and 100 + 100 < cy < 100 + 200, fc.box
        again = detect_faces(fc.crop)  # the aligned crop looks like UTKFace's: landmarks where its are
        assert len(again) == 1 and misalignment(again[0], 200, 200) <= ALIGNED_MAX_OFFSET, p.name
        before = detect_faces(turned)[0]
        assert misalignment(again[0], 200, 200) < misalignment(before, 200, 200)  # the turn was undone


def _grid_error(m: np.ndarray, scale: float) -> float:
    """Mean distance (px of the 200x200 crop) between where `m` puts a 10x10 grid of a crop re-cropped at
    `scale` and where UTKFace's own alignment has it."""
    g = (np.arange(10) + 0.5) * 20
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel(), np.ones(100)], 1)
    back = np.array([[1 / scale, 0, 100 - 100 / scale], [0, 1 / scale, 100 - 100 / scale], [0, 0, 1]])
    moved = grid @ (np.vstack([m, [0, 0, 1]]) @ back).T
    return float(np.linalg.norm(moved[:, :2] - grid[:, :2], axis=1).mean())


def test_mirrored_landmarks_bring_the_alignment_closer_to_utkface_and_make_it_mirror_symmetric():
    errors: dict[str, list[float]] = {"one look": [], "with the mirror": []}
    for p in _crops(16):
        img = cv2.imread(str(p))
        for scale in (1.0, 0.8, 1.2):
            shown = recrop(img, scale=scale) if scale != 1.0 else img
            f = detect_faces(shown)[0]
            errors["one look"].append(_grid_error(faces.face_transform(f), scale))
            m = faces.face_transform(f, landmarks=faces.mirrored_landmarks(shown, f))
            errors["with the mirror"].append(_grid_error(m, scale))
        # a mirrored photo gets the mirrored crop: both looks are averaged, and the reference is symmetric
        a, b = find_face(img).crop, find_face(cv2.flip(img, 1)).crop
        assert np.abs(cv2.flip(a, 1).astype(int) - b.astype(int)).mean() < 0.5, p.name  # 7-32 with one look
    one, two = np.mean(errors["one look"]), np.mean(errors["with the mirror"])
    assert two < 0.9 * one and two < 7.0, errors


def test_similarity_fits_a_known_transform_and_refuses_degenerate_points():
    src = faces.REFERENCE_LANDMARKS.astype(np.float64)
    a = np.radians(20)
    known = np.array([[1.3 * np.cos(a), -1.3 * np.sin(a), 7.0], [1.3 * np.sin(a), 1.3 * np.cos(a), -4.0]])
    dst = src @ known[:, :2].T + known[:, 2]
    assert np.allclose(faces.similarity(src, dst), known, atol=1e-4)
    assert faces.similarity(np.ones((5, 2)), dst) is None


def test_several_faces_use_the_largest_and_none_says_so():
    a, b = _crops(2)
    fc = find_face(_photo([(a, 0.8, 20, 40), (b, 1.6, 300, 100)]))
    assert fc.status == "2 faces: the largest used" and fc.n_faces == 2 and fc.box[0] > 250  # b, the larger
    fc = find_face(_photo([]))
    assert (fc.status, fc.n_faces, fc.crop) == ("no face found", 0, None) and np.isnan(fc.score)


def test_missing_detector_weights_are_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(faces, "MODEL_PATH", tmp_path / "gone.onnx")
    monkeypatch.setattr(faces._local, "det", None, raising=False)
    with pytest.raises(faces.FaceError, match="gone.onnx: face detector weights missing"):
        detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_predict_photos_with_0_1_2_faces_gives_a_status_each(tmp_path):
    a, b = _crops(2)
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "none.jpg"), _photo([]))
    cv2.imwrite(str(d / "one.jpg"), _photo([(a, 1.3, 200, 90)]))
    cv2.imwrite(str(d / "two.jpg"), _photo([(a, 0.7, 20, 20), (b, 1.5, 300, 120)]))
    (d / "crop.jpg").write_bytes(a.read_bytes())  # an aligned crop: used as it is
    res = CliRunner().invoke(main, ["predict", str(d), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    p = pd.read_csv(tmp_path / "p.csv").assign(name=lambda t: t["path"].map(lambda x: Path(x).name)).set_index("name")
    assert p.loc["none.jpg", "status"] == "no face found" and np.isnan(p.loc["none.jpg", "age_pred"])
    assert p.loc["none.jpg", "quality_verdict"] == "not judged: no prediction"  # not the whole photo's "odd size"
    assert p.loc["one.jpg", "quality_of"] == "aligned face" and p.loc["crop.jpg", "quality_of"] == "image"
    assert p.loc["one.jpg", ["status", "face_status", "n_faces"]].tolist() == ["ok", "one face", 1]
    assert p.loc["two.jpg", ["status", "face_status", "n_faces"]].tolist() == ["ok", "2 faces: the largest used", 2]
    assert p.loc["crop.jpg", "face_status"] == "aligned crop, used as it is"
    args = ["predict", str(d / "crop.jpg"), "--faces", "none", "--out", str(tmp_path / "q.csv")]
    res = CliRunner().invoke(main, args)
    q = pd.read_csv(tmp_path / "q.csv")
    assert res.exit_code == 0 and "face_status" not in q  # as it is: exactly the old path
    assert q["age_pred"].iloc[0] == pytest.approx(p.loc["crop.jpg", "age_pred"], abs=1e-4)
    # the face in the photo, aligned, gets about the answer its own crop gets
    assert abs(p.loc["one.jpg", "age_pred"] - p.loc["crop.jpg", "age_pred"]) < 8


def test_crop_fill_counts_what_the_aligned_crop_made_up(tmp_path):
    ref = faces.Face((50.0, 40.0, 100.0, 120.0), faces.REFERENCE_LANDMARKS.copy(), 0.9)  # already where UTKFace's are
    m = faces.face_transform(ref)
    assert np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-3)
    assert faces.crop_fill((200, 200, 3), m) == 0.0
    assert faces.crop_fill((200, 100, 3), m) == pytest.approx(0.5)  # the right half is not in the image
    assert faces.crop_fill((100, 100, 3), m) == pytest.approx(0.75)
    fills: dict[str, list[float]] = {"standard": [], "0.8x": [], "photo": []}
    for p in _crops(12):
        img = cv2.imread(str(p))
        fills["standard"].append(find_face(img).fill)
        fills["0.8x"].append(find_face(recrop(img, scale=0.8)).fill)
        fills["photo"].append(find_face(_photo([(p, 1.2, 200, 100)])).fill)
    assert max(fills["photo"]) == 0.0 and np.median(fills["standard"]) < 0.05, fills
    assert 0.2 < np.median(fills["0.8x"]) < 0.45, fills  # chin, hair and ears are not in a 0.8x crop
    assert np.isnan(find_face(_photo([])).fill)


def test_predict_sends_tight_crops_to_the_tight_crop_model(tmp_path):
    from curate.cli.common import TIGHT_MODEL, TIGHT_MODELS
    from trainer.predict import TIGHT_FILL_MIN, predict_images

    assert all(t.is_file() for t in TIGHT_MODELS)
    d = tmp_path / "in"
    d.mkdir()
    tight = [p for p in _crops(12) if not is_aligned_crop(detect_faces(recrop(cv2.imread(str(p)), 0.8)), 200, 200)]
    cv2.imwrite(str(d / "tight.jpg"), recrop(cv2.imread(str(tight[0])), scale=0.8))
    cv2.imwrite(str(d / "photo.jpg"), _photo([(tight[0], 1.2, 200, 100)]))
    (d / "crop.jpg").write_bytes(tight[0].read_bytes())

    def run(*extra: str) -> pd.DataFrame:
        res = CliRunner().invoke(main, ["predict", str(d), "--out", str(tmp_path / "p.csv"), *extra])
        assert res.exit_code == 0, res.output
        return (
            pd.read_csv(tmp_path / "p.csv")
            .assign(name=lambda t: t["path"].map(lambda x: Path(x).name))
            .set_index("name")
        )

    routed = run()
    assert routed["model"].to_dict() == {
        "crop.jpg": "default.pt",
        "photo.jpg": "default.pt",
        "tight.jpg": "tight_crop.pt+tight_crop_2.pt",
    }
    assert routed.loc["tight.jpg", "crop_fill"] >= TIGHT_FILL_MIN > routed.loc["photo.jpg", "crop_fill"]
    # the mean of what the two tight-crop models say of that face on their own, not what the main model says
    alone = [predict_images(t, [d / "tight.jpg"])[0] for t in TIGHT_MODELS]
    for k in ("age_pred", "gender_prob"):
        assert routed.loc["tight.jpg", k] == pytest.approx((alone[0][k] + alone[1][k]) / 2, abs=1e-4)
    assert abs(alone[0]["age_pred"] - alone[1]["age_pred"]) > 1e-3  # two models, not one twice
    one = run("--tight-model", str(TIGHT_MODEL))  # one given: that one alone
    assert one.loc["tight.jpg", "model"] == "tight_crop.pt"
    assert one.loc["tight.jpg", "age_pred"] == pytest.approx(alone[0]["age_pred"], abs=1e-4)
    plain = run("--tight-model", "none")
    assert set(plain["model"]) == {"default.pt"}
    assert plain.loc["tight.jpg", "gender_prob"] != pytest.approx(routed.loc["tight.jpg", "gender_prob"], abs=1e-6)
    assert plain.loc["photo.jpg", "age_pred"] == pytest.approx(routed.loc["photo.jpg", "age_pred"], abs=1e-4)
    res = CliRunner().invoke(main, ["predict", str(d), "--tight-model", str(tmp_path / "nowhere.pt")])
    assert res.exit_code != 0 and "nowhere.pt: no such tight-crop model" in res.output
    res = CliRunner().invoke(main, ["predict", str(d), "--tight-model", "none", "--tight-model", str(TIGHT_MODEL)])
    assert res.exit_code == 1 and "--tight-model none means no tight-crop model: give it alone" in res.output
    res = CliRunner().invoke(main, ["predict", str(d), "--faces", "none", "--tight-model", str(TIGHT_MODEL)])
    assert res.exit_code == 0 and "--tight-model is not used with --faces none" in res.stderr
    assert "tight_crop.pt" not in res.stdout  # and indeed every image went to the main model


def test_predict_answers_each_batch_as_it_fills_with_the_same_numbers(tmp_path, capsys):
    """Batches run as soon as one model's is full (memory stays flat, the bar counts answered images): a
    batch of one gives what one batch of everything gives, for both models and in file order."""
    from curate.cli.common import DEFAULT_MODEL, TIGHT_MODELS
    from trainer.predict import predict_images

    crops = _crops(5)
    d = tmp_path / "in"
    d.mkdir()
    for i, p in enumerate(crops):
        (d / f"{i}_crop.jpg").write_bytes(p.read_bytes())
        cv2.imwrite(str(d / f"{i}_tight.jpg"), recrop(cv2.imread(str(p)), scale=0.8))
    files = sorted(d.iterdir())
    kw = {"tight_checkpoint": TIGHT_MODELS}  # two models of other input sizes (128 and 160 px)
    whole = pd.DataFrame(predict_images(DEFAULT_MODEL, files, batch_size=64, **kw))
    ones = pd.DataFrame(predict_images(DEFAULT_MODEL, files, batch_size=1, progress=True, **kw))
    assert "predict: 100%" in capsys.readouterr().err and set(whole["model"]) == {
        "default.pt",
        "tight_crop.pt+tight_crop_2.pt",
    }
    assert ones["path"].tolist() == [str(f) for f in files] and ones["model"].tolist() == whole["model"].tolist()
    assert np.allclose(ones["age_pred"], whole["age_pred"], atol=1e-3)
    assert np.allclose(ones["gender_prob"], whole["gender_prob"], atol=1e-4)


def test_recrop_geometry():
    img = cv2.imread(str(_crops(1)[0]))
    assert np.array_equal(recrop(img), img)
    half = recrop(img, scale=2.0)  # the face at half size, centred
    small = cv2.resize(img, (100, 100), interpolation=cv2.INTER_AREA)
    assert np.abs(half[50:150, 50:150].astype(int) - small.astype(int)).mean() < 6
    moved = recrop(img, dx=0.1)  # the crop's centre moves right: the face moves left by 20 px
    assert np.abs(moved[:, :150].astype(int) - img[:, 20:170].astype(int)).mean() < 1


def test_tight_crop_keeps_the_centre_and_repeats_its_edge():
    x = torch.randn(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    aug = CropAugment(p=0.0, tight_p=1.0, tight_min=0.5)
    y = aug(x, torch.Generator().manual_seed(0))
    # side >= 0.5 always kept (bilinear sampling at the pixel centres: exact up to float rounding)
    assert torch.allclose(y[:, :, 16:48, 16:48], x[:, :, 16:48, 16:48], atol=1e-4, rtol=0)
    cut = [bool(torch.equal(y[i, :, 0], y[i, :, 1]) and torch.equal(y[i, :, :, 0], y[i, :, :, 1])) for i in range(64)]
    assert sum(cut) >= 40  # side below ~0.95: the outer rows and columns repeat the kept square's edge
    # tight_max: every sample loses at least its outer (1 - tight_max) / 2 band on each side
    narrow = CropAugment(p=0.0, tight_p=1.0, tight_min=0.5, tight_max=0.8)(x, torch.Generator().manual_seed(0))
    assert all(torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, :, -1], v[:, :, -2]) for v in narrow)
    assert torch.allclose(narrow[:, :, 16:48, 16:48], x[:, :, 16:48, 16:48], atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="crop_tight_min <= crop_tight_max"):
        TrainConfig(crop_tight_min=0.9, crop_tight_max=0.8).validate()
    half = CropAugment(p=0.0, tight_p=0.5)
    changed = [not torch.equal(v, u) for v, u in zip(half(x, torch.Generator().manual_seed(1)), x)]
    assert 16 <= sum(changed) <= 48
    # adding the tight crop leaves the geometric draws of existing configs unchanged
    geo = CropAugment(p=0.5)
    assert torch.equal(
        geo(x, torch.Generator().manual_seed(2)), CropAugment(p=0.5, tight_p=0.0)(x, torch.Generator().manual_seed(2))
    )


def _flat_border(img: np.ndarray, k: int = 16) -> float:
    """Share of the outer k-pixel band where a pixel repeats its inward neighbour (mean |diff| < 1)."""
    im = img.astype(np.float32)
    steps = [np.diff(im[:k], axis=0), np.diff(im[-k:], axis=0), np.diff(im[:, :k], axis=1), np.diff(im[:, -k:], axis=1)]
    return float(np.mean(np.concatenate([np.abs(d).mean(2).ravel() for d in steps]) < 1.0))


def test_tight_crop_is_what_predict_sees_of_a_tighter_crop():
    """A 0.8x crop of a UTKFace face, re-aligned as `curate predict --faces auto` does, has lost its
    outer band to repeated edge pixels, as the training's tight crop at side 0.8 has; the original has not."""
    seen, sim, orig = [], [], []
    for p in _crops(16):
        img = cv2.imread(str(p))
        tight = recrop(img, scale=0.8)
        found = detect_faces(tight)
        assert len(found) == 1, p.name
        if is_aligned_crop(found, 200, 200):  # a few pass as aligned and are used as they are
            continue
        seen.append(_flat_border(faces.align_face(tight, found[0])))
        x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
        sim.append(_flat_border(keep_centre(x, 0.8)[0].permute(1, 2, 0).numpy()))
        orig.append(_flat_border(img))
    assert len(seen) >= 12 and min(sim) > 0.95, sim
    assert np.median(seen) > 0.7 and np.median(orig) < 0.4, (seen, orig)


def test_crop_augment_is_off_at_p0_identity_at_scale1_and_seeded():
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(CropAugment(p=0.0)(x, torch.Generator().manual_seed(0)), x)
    ident = CropAugment(p=1.0, scale_min=1.0, scale_max=1.0, shift=0.0, rotation=0.0)
    # bilinear sampling at the pixel centres, exact up to float rounding (2.3e-5 at most over 200 draws of x)
    assert torch.allclose(ident(x, torch.Generator().manual_seed(0)), x, atol=1e-4, rtol=0)
    aug = CropAugment(p=0.5)
    y1, y2 = aug(x, torch.Generator().manual_seed(3)), aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2)
    changed = [not torch.equal(y1[i], x[i]) for i in range(8)]
    assert 1 <= sum(changed) <= 7  # about half the batch, the rest untouched


def test_tight_crop_data_writes_re_aligned_tight_cuts_with_their_labels_and_resumes(tmp_path):
    import subprocess
    import sys

    rows = pd.DataFrame({"path": [str(p) for p in _crops(6)], "filename": [p.name for p in _crops(6)]})
    rows["age"], rows["gender"] = [int(p.name.split("_")[0]) for p in _crops(6)], [0, 1, 0, 1, 0, 1]
    rows["content_hash"] = [f"{i:016x}" for i in range(6)]
    rows.to_csv(tmp_path / "in.csv", index=False)
    cmd = [sys.executable, str(SAMPLE.parent.parent / "scripts" / "tight_crop_data.py"), str(tmp_path / "in.csv"),
           str(tmp_path / "out"), "--workers", "1"]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    out = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert out[["age", "gender"]].values.tolist() == rows[["age", "gender"]].values.tolist()
    assert out["transform"].str.contains(r"tight cut 0\.[789]\d*x .*re-aligned").all(), out["transform"].tolist()
    for p in out["path"]:  # what predict would route to the tight-crop model: a fifth or more made up
        img = cv2.imread(p)
        assert img.shape == (200, 200, 3) and Path(p).parent == tmp_path / "out" / "images"
    first = {p: Path(p).stat().st_mtime_ns for p in out["path"]}
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    assert {p: Path(p).stat().st_mtime_ns for p in out["path"]} == first  # a re-run keeps what was written
    assert all(cv2.imread(str(p)) is not None for p in _crops(6))  # sources only read
