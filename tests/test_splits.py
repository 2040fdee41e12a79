"""`curate split`: name parsing, real quirks, bad inputs, determinism and stratification."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.splits import TEST_SPLIT, TRAIN_SPLIT, age_bin, make_splits, parse_name


def test_parse_regular_names():
    p = parse_name("26_1_2_20170116184028385.jpg.chip.jpg")
    assert (p.age, p.gender, p.race, p.note) == (26, 1, 2, "")
    p = parse_name("3_0_4_20161219140525218.jpg")
    assert (p.age, p.gender, p.race) == (3, 0, 4)


@pytest.mark.parametrize("name, race, note", [
    ("39_1_20170116174525125.jpg.chip.jpg", None, "no race field"),
    ("24_0_1_20170116220224657 .jpg.chip.jpg", 1, "stray whitespace"),
    ("55_0_0_20170116232725357jpg.chip.jpg", 0, "missing dot"),
])
def test_parse_quirky_names(name, race, note):
    p = parse_name(name)
    assert p.race == race
    assert note in p.note


@pytest.mark.parametrize("name, reason", [
    ("999_0_0_20170116232725357.jpg.chip.jpg", "age 999 outside"),
    ("25_2_0_20170116232725357.jpg.chip.jpg", "gender 2"),
    ("25_0_7_20170116232725357.jpg.chip.jpg", "race 7"),
    ("face.jpg", "does not match"),
    ("25_0_0_20170116232725357.txt", "does not match"),
])
def test_parse_rejects(name, reason):
    with pytest.raises(ValueError, match=reason):
        parse_name(name)


def test_age_bins_are_half_open():
    assert [age_bin(a) for a in (0, 3, 4, 13, 14, 79, 80, 116)] == \
        ["0-4", "0-4", "4-14", "4-14", "14-24", "70-80", "80+", "80+"]


def test_sample_quirks_and_duplicates(sample_split: Path):
    folds = pd.read_csv(sample_split / "folds.csv")
    notes = dict(zip(folds["filename"], folds["name_note"].fillna("")))
    assert "no race field" in notes["39_1_20170116174525125.jpg.chip.jpg"]
    assert "stray whitespace" in notes["24_0_1_20170116220224657 .jpg.chip.jpg"]
    assert "missing dot" in notes["55_0_0_20170116232725357jpg.chip.jpg"]
    assert folds["race"].isna().sum() == 3
    dup = folds[folds["content_hash"].duplicated(keep=False)]
    assert len(dup) >= 4, "the sample carries pixel-identical pairs"
    assert (dup.groupby("content_hash")["fold"].nunique() == 1).all()


def _write_bad_files(folder: Path, sample_dir: Path) -> dict[str, str]:
    real = sorted(sample_dir.glob("*.jpg"))[0].read_bytes()
    bad = {
        "30_0_0_20170101000000001.jpg.chip.jpg": real[: len(real) // 2],  # truncated JPEG
        "31_1_0_20170101000000002.jpg.chip.jpg": b"this is not an image\n",  # text named like an image
        "32_0_1_20170101000000003.jpg.chip.jpg": b"",  # empty file
        "999_0_0_20170101000000004.jpg.chip.jpg": real,  # impossible age
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return {
        "30_0_0_20170101000000001.jpg.chip.jpg": "truncated",
        "31_1_0_20170101000000002.jpg.chip.jpg": "not an image",
        "32_0_1_20170101000000003.jpg.chip.jpg": "empty file",
        "999_0_0_20170101000000004.jpg.chip.jpg": "age 999",
    }


def test_bad_inputs_are_rejected_with_reasons(sample_copy: Path, sample_dir: Path, tmp_path: Path):
    expected = _write_bad_files(sample_copy, sample_dir)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_copy.iterdir()}
    res = CliRunner().invoke(main, ["split", str(sample_copy), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    rej = pd.read_csv(tmp_path / "o" / "rejected.csv")
    assert set(rej["filename"]) == set(expected)
    for name, reason in expected.items():
        assert reason in rej.loc[rej["filename"] == name, "reason"].item()
        assert name in res.output
    folds = pd.read_csv(tmp_path / "o" / "folds.csv")
    assert len(folds) == 200 and not set(folds["filename"]) & set(expected)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_copy.iterdir()}
    assert before == after, "source files must never be modified"


def test_nothing_usable_exits_non_zero(tmp_path: Path, sample_dir: Path):
    src = tmp_path / "bad"
    src.mkdir()
    _write_bad_files(src, sample_dir)
    res = CliRunner().invoke(main, ["split", str(src), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code != 0
    assert "no usable image" in res.output and (tmp_path / "o" / "rejected.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["split", str(empty), "--out", str(tmp_path / "o2"), "--quiet"])
    assert res.exit_code != 0 and "no usable image" in res.output
    res = CliRunner().invoke(main, ["split", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")])
    assert res.exit_code != 0 and "not a directory" in res.output


def test_split_is_deterministic_and_seed_dependent(sample_dir: Path, tmp_path: Path):
    make_splits(sample_dir, tmp_path / "a", seed=0, progress=False)
    make_splits(sample_dir, tmp_path / "b", seed=0, progress=False)
    make_splits(sample_dir, tmp_path / "c", seed=1, progress=False)
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        a = (tmp_path / "a" / split / "manifest.csv").read_bytes()
        assert a == (tmp_path / "b" / split / "manifest.csv").read_bytes()
    assert (tmp_path / "a" / "folds.csv").read_bytes() != (tmp_path / "c" / "folds.csv").read_bytes()


def test_copy_mode_copies_without_touching_sources(sample_dir: Path, tmp_path: Path):
    make_splits(sample_dir, tmp_path / "o", seed=0, copy=True, progress=False)
    m = pd.read_csv(tmp_path / "o" / TEST_SPLIT / "manifest.csv")
    assert all(Path(p).parent == (tmp_path / "o" / TEST_SPLIT).resolve() for p in m["path"])
    assert all(Path(p).exists() for p in m["path"])
    assert len(list((tmp_path / "o" / TEST_SPLIT).glob("*.jpg"))) == len(m)


def test_reencoded_copy_is_not_a_pixel_duplicate(sample_dir: Path, tmp_path: Path):
    src = sorted(sample_dir.glob("*.jpg"))[5]
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(src, folder / "30_0_0_20990101000000001.jpg")
    shutil.copy(src, folder / "31_0_0_20990101000000002.jpg")  # pixel-identical, conflicting age
    img = cv2.imread(str(src))
    cv2.imwrite(str(folder / "30_0_0_20990101000000003.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 60])
    usable = make_splits(folder, tmp_path / "o", progress=False)
    folds = pd.read_csv(tmp_path / "o" / "folds.csv")
    assert usable["n_duplicate_groups"] == 1
    assert folds["content_hash"].nunique() == 2


@pytest.mark.fulldata
def test_full_dataset_split(utkface_dir: Path, tmp_path: Path):
    s = make_splits(utkface_dir, tmp_path / "o", seed=0, progress=False)
    folds = pd.read_csv(tmp_path / "o" / "folds.csv", dtype={"content_hash": str})
    assert s["n_usable"] == len(folds) == 23708 and s["n_rejected"] == 0
    assert len(s["quirks"]) == 5
    test_share = (folds["split"] == TEST_SPLIT).mean()
    assert abs(test_share - 0.20) <= 0.005
    # no pixel-identical group straddles the splits
    assert (folds.groupby("content_hash")["split"].nunique() == 1).all()
    # stratified: every age-bin x gender stratum with 100+ images is within 2 points of 20% test
    folds["stratum"] = folds["age"].map(age_bin) + "|" + folds["gender"].astype(str)
    share = folds.groupby("stratum")["split"].agg(lambda s: (s == TEST_SPLIT).mean())
    sizes = folds.groupby("stratum").size()
    assert (np.abs(share[sizes >= 100] - 0.2) < 0.02).all(), share
    # all ten folds within 0.5% of a tenth
    assert (np.abs(folds["fold"].value_counts(normalize=True) - 0.1) < 0.005).all()
