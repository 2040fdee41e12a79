"""Duplicates on real images: exact and re-encoded copies group, conflicting labels are reported."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from audits.duplicates import find_duplicates, hamming_pairs, phash, summarize_duplicates
from core.images import list_images, pixel_hash
from curate.splits import parse_name


@pytest.fixture(scope="module")
def sample(sample_dir):
    paths = list_images(sample_dir)
    imgs = [cv2.imread(str(p)) for p in paths]
    labels = []
    for p in paths:
        try:
            pn = parse_name(p.name)
            labels.append((pn.age, pn.gender, pn.race))
        except ValueError:
            labels.append((None, None, None))
    df = pd.DataFrame(labels, columns=["age", "gender", "race"])
    df["content_hash"] = [pixel_hash(im) for im in imgs]
    df["phash"] = [phash(im) for im in imgs]
    return paths, imgs, df


def test_sample_pixel_identical_pairs_are_exact_groups(sample):
    paths, _, df = sample
    rows, pairs = find_duplicates(df)
    expected = df["content_hash"].duplicated(keep=False)
    assert expected.sum() >= 4  # the sample embeds two real pixel-identical pairs
    assert ((rows["exact_group"] >= 0) == expected).all()
    assert (pairs["kind"] == "exact").sum() == expected.sum() // 2
    assert ((rows["near_group"] >= 0) | ~expected).all()  # exact groups sit inside near groups


def test_exact_and_reencoded_copies_group_and_label_conflicts_are_reported(sample):
    _, imgs, df = sample
    src = 7
    ok, enc = cv2.imencode(".jpg", imgs[src], [cv2.IMWRITE_JPEG_QUALITY, 80])
    reenc = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    assert ok and not np.array_equal(reenc, imgs[src])
    extra = pd.DataFrame(
        {
            "age": [df.loc[src, "age"], df.loc[src, "age"] + 9],
            "gender": [df.loc[src, "gender"], df.loc[src, "gender"]],
            "race": [df.loc[src, "race"]] * 2,
            "content_hash": [pixel_hash(imgs[src].copy()), pixel_hash(reenc)],
            "phash": [phash(imgs[src].copy()), phash(reenc)],
        }
    )
    both = pd.concat([df, extra], ignore_index=True)
    rows, pairs = find_duplicates(both, radius=4)
    n = len(df)
    exact_copy, reencoded = n, n + 1
    assert rows.loc[exact_copy, "exact_group"] == rows.loc[src, "exact_group"] >= 0
    assert rows.loc[reencoded, "exact_group"] == -1
    assert rows.loc[reencoded, "near_group"] == rows.loc[src, "near_group"] >= 0
    # the exact copy agrees with the original, the re-encoded one has another age: a conflict
    pair = pairs[(pairs["i"] == src) & (pairs["j"] == reencoded)]
    assert len(pair) == 1 and pair["kind"].item() == "near" and bool(pair["label_conflict"].item())
    assert not bool(pairs[(pairs["i"] == src) & (pairs["j"] == exact_copy)]["label_conflict"].item())
    # the exact copy is also a near duplicate of the re-encoded one, so all three are involved
    assert rows.loc[[src, exact_copy, reencoded], "is_label_conflict_issue"].all()
    s = summarize_duplicates(rows, pairs)
    assert s["near_pairs_label_conflict"] >= 1


def test_hamming_pairs_equals_brute_force(sample):
    _, _, df = sample
    hashes = df["phash"].tolist()
    for radius in (0, 6, 12):
        i, j, d = hamming_pairs(hashes, radius, block=37)  # odd block size crosses block edges
        got = set(zip(i.tolist(), j.tolist(), d.tolist()))
        want = set()
        for a in range(len(hashes)):
            for b in range(a + 1, len(hashes)):
                dist = bin(int(hashes[a], 16) ^ int(hashes[b], 16)).count("1")
                if dist <= radius:
                    want.add((a, b, dist))
        assert got == want


def test_unusable_rows_join_no_group():
    df = pd.DataFrame(
        {"content_hash": ["", "", "abc", "abc"], "phash": ["", "", "", ""], "age": [1, 2, 3, 4], "gender": [0, 0, 1, 1]}
    )
    rows, pairs = find_duplicates(df)
    assert rows["exact_group"].tolist() == [-1, -1, 0, 0]  # two corrupt files are not "duplicates"
    assert pairs["label_conflict"].tolist() == [True]
