"""`curate predict` on a folder a user has: subfolders, files that are not images, GIF and TIFF, photos
with one and two faces (the sample's real faces pasted into larger canvases), and a photo above the
decoder's 4 MP. What it reads, what it says it skipped, which face it used and what its quality verdict
judged."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from test_faces import _crops, _photo

from audits.quality import quality_verdict
from core.faces import find_face
from core.images import DECODE_PIXELS, decode_image, unsupported_format, walk_images
from curate.cli import main


def _predict(*args: str) -> tuple[pd.DataFrame, str]:
    """(the CSV `predict` wrote, its stderr)."""
    out = Path(args[0]).parent / "p.csv"
    res = CliRunner().invoke(main, ["predict", *args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return pd.read_csv(out, keep_default_na=False, na_values=[""]).set_index("file"), res.stderr


def test_gif_and_tiff_are_named_as_unsupported_formats_and_text_stays_not_an_image(tmp_path):
    face = cv2.imread(str(_crops(1)[0]))
    Image.fromarray(face[:, :, ::-1]).save(tmp_path / "a.gif")
    cv2.imwrite(str(tmp_path / "a.tif"), face)
    (tmp_path / "a.txt").write_text("hello, I am text\n")
    assert decode_image(tmp_path / "a.gif") == (None, "unsupported format (GIF)")
    assert decode_image(tmp_path / "a.tif") == (None, "unsupported format (TIFF)")
    assert decode_image(tmp_path / "a.txt") == (None, "not an image (no JPEG/PNG/BMP/WebP signature)")
    assert unsupported_format(b"\x00\x00\x00\x1cftypheic") == "HEIC" and unsupported_format(b"BM") is None


def test_walk_images_goes_into_subfolders_sorted_skips_hidden_and_survives_a_link_loop(tmp_path):
    for rel in ("b.jpg", "a/z.png", "a/deeper/c.JPG", "b/z.png", ".hidden/x.jpg", ".x.jpg", "notes.txt", "README"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a" / "loop").symlink_to("..")  # a folder that holds itself
    found, skipped = walk_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deeper/c.JPG", "a/z.png", "b/z.png", "b.jpg"]
    assert skipped == {"": 1, ".txt": 1}


def test_predict_reads_subfolders_names_unsupported_formats_and_says_what_it_skipped(tmp_path):
    a, b = _crops(2)
    d = tmp_path / "photos"
    (d / "nested" / "deeper").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / "other").mkdir()
    cv2.imwrite(str(d / "one.jpg"), _photo([(a, 1.3, 200, 90)]))
    (d / "nested" / "deeper" / "crop.jpg").write_bytes(a.read_bytes())
    (d / "other" / "crop.jpg").write_bytes(b.read_bytes())  # the same name in another folder
    Image.open(d / "one.jpg").save(d / "anim.gif")
    cv2.imwrite(str(d / "nested" / "scan.tif"), cv2.imread(str(a)))
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.jpg").write_bytes(a.read_bytes())
    (d / "nested" / "up").symlink_to("..")
    p, said = _predict(str(d))
    assert list(p.index) == ["anim.gif", "nested/deeper/crop.jpg", "nested/scan.tif", "one.jpg", "other/crop.jpg"]
    assert p.loc["nested/deeper/crop.jpg", "face_status"] == "aligned crop, used as it is"
    assert p.loc["nested/deeper/crop.jpg", "path"] == str(d / "nested" / "deeper" / "crop.jpg")
    assert p.loc["anim.gif", "status"] == "unreadable image: unsupported format (GIF)"
    assert p.loc["nested/scan.tif", "status"] == "unreadable image: unsupported format (TIFF)"
    assert "note: skipped 1 file that is not an image (.txt: 1)" in said
    q, said = _predict(str(d), "--quiet")
    assert said == "" and list(q.index) == list(p.index)


def test_predict_judges_the_quality_of_the_aligned_face_and_gives_the_box_of_the_face_used(tmp_path):
    a, b = _crops(2)
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "one.jpg"), _photo([(a, 1.3, 200, 90)]))
    cv2.imwrite(str(d / "two.jpg"), _photo([(a, 0.7, 20, 20), (b, 1.5, 300, 120)]))
    (d / "crop.jpg").write_bytes(a.read_bytes())
    big = np.tile(_photo([], seed=1), (8, 8, 1))  # 5120x3840, 19.7 MP: decoded reduced
    big[1000:1800, 2400:3200] = cv2.resize(cv2.imread(str(b)), (800, 800))
    cv2.imwrite(str(d / "big.jpg"), big)
    assert big.shape[0] * big.shape[1] > DECODE_PIXELS
    p, _ = _predict(str(d))
    for name in ("one.jpg", "two.jpg", "big.jpg"):  # a 640x480 photo is not "odd size" for its face
        img, _ = decode_image(d / name)
        (v,) = quality_verdict([find_face(img).crop])
        assert "odd size" not in p.loc[name, "quality_verdict"] and p.loc[name, "quality_of"] == "aligned face"
        said = "; ".join(v.reasons) or "usable"
        assert p.loc[name, "quality_ok"] == v.ok and p.loc[name, "quality_verdict"] == said, (name, said)
    (v,) = quality_verdict([d / "crop.jpg"])  # a UTKFace crop used as it is: judged as it always was
    assert p.loc["crop.jpg", ["quality_of", "quality_ok"]].tolist() == ["image", v.ok]
    box = p[["face_x", "face_y", "face_w", "face_h"]]
    x, y, w, h = box.loc["two.jpg"]  # b, pasted at (300, 120) 300 px wide, not a at (20, 20)
    assert p.loc["two.jpg", "n_faces"] == 2 and 300 < x + w / 2 < 600 and 120 < y + h / 2 < 420, (x, y, w, h)
    x, y, w, h = box.loc["big.jpg"]  # in the file's pixels, not the reduced copy's
    assert 2400 < x + w / 2 < 3200 and 1000 < y + h / 2 < 1800 and 300 < w < 800, (x, y, w, h)
    assert box.loc["crop.jpg"].between(-20, 220).all()  # YuNet's box may reach a little past the edge
    assert str(p["face_x"].dtype) == "int64"  # whole pixels
    res = CliRunner().invoke(main, ["predict", str(d / "two.jpg"), str(d / "one.jpg"), "--faces", "detect"])
    assert res.exit_code == 0 and "face_box" in res.stdout and f"{box.loc['two.jpg', 'face_x']}," in res.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_walk_images_lists_a_fifo_named_like_an_image_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe")
    found, skipped = walk_images(tmp_path)  # would block forever if it opened one
    assert found == [tmp_path / "pipe.jpg"] and skipped == {"": 1}
    assert decode_image(found[0]) == (None, "not a regular file (FIFO)")


def test_predict_refuses_an_output_that_is_a_folder_before_predicting(tmp_path, monkeypatch):
    """`--out` naming a folder: one line, and no model loaded or image read first (it was a traceback after)."""
    import trainer.predict

    def boom(*a, **k):
        raise AssertionError("predicted before checking --out")

    monkeypatch.setattr(trainer.predict, "predict_images", boom)
    (tmp_path / "out").mkdir()
    res = CliRunner().invoke(main, ["predict", str(_crops(1)[0]), "--out", str(tmp_path / "out")])
    said = f"Error: {tmp_path / 'out'}: is a folder; give a file name to write"
    assert res.exit_code == 1 and res.output.strip() == said
