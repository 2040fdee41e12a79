"""A corpus of bad inputs through split, audit, predict, score and export: no traceback, every bad file
named once with its reason, nothing good lost. The corpus is built here from the sample's real faces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import fo_common
import numpy as np
import pandas as pd
import pytest
from fo_common import SAMPLE, run

env, model, fo = fo_common.env, fo_common.model, fo_common.fo
pytestmark = pytest.mark.timeout(900)
GOOD = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str], list[str]]:
    """(folder, bad file name -> what must be said about it, good file names)."""
    d = tmp_path_factory.mktemp("corpus")
    faces = sorted(p for p in SAMPLE.glob("*.jpg") if p.name[0].isdigit() and p.name.count("_") == 3)[: GOOD + 4]
    good = []
    for p in faces[:GOOD]:
        shutil.copy2(p, d / p.name)
        good.append(p.name)
    data = faces[GOOD].read_bytes()
    sos = data.rfind(b"\xff\xda")
    mid = sos + (len(data) - sos) // 2
    bad = {
        "30_1_0_20170101000000001.jpg": ("truncated", data[: len(data) // 2]),
        "30_1_0_20170101000000002.jpg": ("empty", b""),
        "30_1_0_20170101000000003.jpg": ("not an image", b"hello, I am text\n" * 20),
        "30_1_0_20170101000000004.jpg": ("corrupt JPEG data", data[:mid] + bytes(200) + data[mid + 200 :]),
        "999_0_0_20170101000000005.jpg": ("age", data),
        "30_7_0_20170101000000006.jpg": ("gender", data),
        "no_labels_here.jpg": ("file name", data),
    }
    for name, (_, content) in bad.items():
        (d / name).write_bytes(content)
    cv2.imwrite(str(d / "30_0_0_20170101000000007.jpg"), np.full((1, 1, 3), 128, np.uint8))
    (d / "30_0_0_20170101000000008.jpg").mkdir()
    (d / "30_0_0_20170101000000009.jpg").symlink_to(d / "missing.jpg")
    os.mkfifo(d / "30_0_0_20170101000000010.jpg")
    said = {n: w for n, (w, _) in bad.items()}
    said |= {"30_0_0_20170101000000007.jpg": "too small", "30_0_0_20170101000000008.jpg": "directory",
             "30_0_0_20170101000000009.jpg": "", "30_0_0_20170101000000010.jpg": "FIFO"}  # fmt: skip
    trailing = faces[GOOD + 1].read_bytes() + b"\x00trailer-bytes"  # valid JPEG with bytes after its end
    (d / faces[GOOD + 1].name).write_bytes(trailing)
    good.append(faces[GOOD + 1].name)
    return d, said, good


def _named_once(text: str, said: dict[str, str]) -> None:
    assert "Traceback" not in text
    for name, what in said.items():
        lines = [ln for ln in text.splitlines() if name in ln]
        assert len(lines) == 1, (name, lines)
        assert what.lower() in lines[0].lower(), (name, lines[0])


def test_split_names_every_bad_file_once_and_keeps_every_good_one(corpus, tmp_path):
    d, said, good = corpus
    out = tmp_path / "split"
    res = run("split", d, "--out", out)
    rej = pd.read_csv(out / "rejected.csv")
    _named_once("\n".join(f"{f}: {r}" for f, r in zip(rej["filename"], rej["reason"])), said)
    kept = pd.concat(pd.read_csv(out / s / "manifest.csv") for s in ("train_8_folds_first", "test_2_folds_last"))
    assert sorted(kept["filename"]) == sorted(good)  # nothing good lost, nothing bad in
    assert "Traceback" not in res.output


def test_audit_gives_every_bad_file_a_status(corpus, tmp_path):
    d, said, good = corpus
    res = run("audit", d, "--out", tmp_path / "a.parquet")
    t = pd.read_parquet(tmp_path / "a.parquet")
    by = dict(zip(t["path"].map(os.path.basename), t["audit_status"]))
    assert all(by[g] in ("ok", "low_quality") for g in good), {g: by[g] for g in good if by[g] not in ("ok",)}
    images = {n: w for n, w in said.items() if w not in ("age", "gender", "file name")}  # the audit reads no labels
    for name, what in images.items():
        assert name in by and by[name] not in ("ok", "low_quality"), (name, by.get(name))
        assert what.lower() in by[name].lower(), (name, by[name])
    assert "Traceback" not in res.output


def test_predict_answers_for_every_file_and_does_not_hang_on_a_fifo(corpus, model, tmp_path):
    d, said, good = corpus
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "-m", "curate", "predict", str(d), "--model", str(model), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    p = pd.read_csv(out)
    by = dict(zip(p["path"].map(os.path.basename), p["status"]))
    known = pd.read_csv(SAMPLE.parent / "sample_known_cases.csv")
    no_face = set(known.loc[known["problem"] == "not a face", "filename"])  # e.g. an eye filling the crop
    assert all(by[g] == ("no face found" if g in no_face else "ok") for g in good), {g: by[g] for g in good}
    for name, what in said.items():
        if what in ("age", "gender", "file name"):  # labels do not matter to a prediction: a fine image
            assert by[name] == "ok", (name, by[name])
        else:
            assert by.get(name, "ok") != "ok" and what.lower() in by[name].lower(), (name, by.get(name))
    assert "Corrupt JPEG data" not in proc.stderr  # libjpeg's own line, which named no file, is not leaked


def test_score_and_export_name_the_bad_files_and_keep_the_good_ones(corpus, model, fo, tmp_path):
    d, said, good = corpus
    name = f"t-bad-{uuid.uuid4().hex[:6]}"
    try:
        res = run("score", d, "--model", model, "--dataset", name, "--no-brain")
        _named_once("\n".join(ln for ln in res.output.splitlines() if "rejected '" in ln), said)
        ds = fo.load_dataset(name)
        assert sorted(ds.values("filename")) == sorted(good)
        run("split", d, "--out", tmp_path / "split")
        exp = run("export", "--dataset", name, "--from", tmp_path / "split" / "train_8_folds_first",
                  "--root", tmp_path / "out", "--name", "clean", "--quiet")  # fmt: skip
        man = pd.read_csv(tmp_path / "out" / "clean" / "manifest.csv")
        train = pd.read_csv(tmp_path / "split" / "train_8_folds_first" / "manifest.csv")
        assert sorted(man["source_filename"]) == sorted(train["filename"]) and "Traceback" not in exp.output
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_the_console_script_exits_with_the_commands_status_and_all_its_output(corpus, model, tmp_path):
    """`curate` leaves without the interpreter's teardown (curate.cli.run): what a command printed to a
    pipe still arrives whole, its file is written, a user's error is one line with status 1."""
    d, _, good = corpus
    curate = str(Path(sys.executable).parent / "curate")
    ok = subprocess.run([curate, "predict", *(str(d / g) for g in good), "--model", str(model)],
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    rows = [line for line in ok.stdout.splitlines() if line.strip()]
    assert len(rows) == len(good) + 1 and all(g in ok.stdout for g in good)  # the header and every image
    missing = subprocess.run([curate, "predict", str(tmp_path / "nowhere"), "--model", str(model)],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 1 and missing.stderr == f"Error: {tmp_path / 'nowhere'}: no such file or folder\n"
    usage = subprocess.run([curate, "predict", "--no-such-option"], capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "No such option" in usage.stderr
