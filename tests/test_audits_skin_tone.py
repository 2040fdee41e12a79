"""Skin tone on real images: categories, Monk swatches, unknown cases, and UTKFace's race ordering."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from audits.skin_tone import MONK_HEX, MONK_LAB, ita_category, nearest_monk, skin_tone
from core.images import list_images


def test_ita_categories_follow_the_published_boundaries():
    cases = {
        60: "very light",
        55.01: "very light",
        55: "light",
        41.5: "light",
        41: "intermediate",
        30: "intermediate",
        28: "tan",
        10.5: "tan",
        10: "brown",
        -29: "brown",
        -30: "dark",
        -60: "dark",
    }
    for ita, name in cases.items():
        assert ita_category(ita) == name, ita
    assert ita_category(math.nan) == "unknown"


def test_each_monk_swatch_is_its_own_nearest_tone():
    assert len(MONK_HEX) == 10
    assert [nearest_monk(lab) for lab in MONK_LAB] == list(range(1, 11))
    assert (np.diff(MONK_LAB[:, 0])[3:] < 0).all()  # tones 4..10 get darker


def test_real_faces_get_a_tone_and_grayscale_or_blank_get_unknown(sample_dir):
    imgs = [cv2.imread(str(p)) for p in list_images(sample_dir)[:40]]
    res = [skin_tone(im) for im in imgs]
    known = [r for r in res if r["skin_category"] != "unknown"]
    assert len(known) >= 30
    for r in known:
        assert math.isfinite(r["ita"]) and 1 <= r["monk_tone"] <= 10 and 0 < r["skin_tone_score"] <= 1
        assert r["skin_category"] == ita_category(r["ita"])
    src = next(im for im, r in zip(imgs, res) if r["skin_category"] != "unknown")
    gray = cv2.cvtColor(cv2.cvtColor(src, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    g = skin_tone(gray)
    assert g["skin_category"] == "unknown" and g["monk_tone"] is None and math.isnan(g["ita"])
    blank = np.full_like(src, (40, 200, 40))  # green: no skin pixel at all
    b = skin_tone(blank)
    assert b["skin_category"] == "unknown" and b["skin_tone_score"] == 0.0


def test_darker_copy_of_a_face_gets_a_lower_ita(sample_dir):
    im = cv2.imread(str(list_images(sample_dir)[3]))
    lighter = skin_tone(im)["ita"]
    darker = skin_tone((im.astype(np.float32) * 0.7).astype(np.uint8))["ita"]
    assert darker < lighter


@pytest.mark.fulldata
@pytest.mark.slow
def test_median_ita_orders_utkface_races(utkface_dir):
    """Sanity check against the race labels on a seeded 3,000-image subset: White and Asian above
    Indian above Black (a plain YCrCb probe measured medians of about 33, 46, 14 and -6)."""
    from curate.splits import parse_name

    files = sorted(p for p in utkface_dir.iterdir() if p.is_file())
    rng = np.random.default_rng(2024)
    pick = [files[i] for i in rng.choice(len(files), 3000, replace=False)]
    itas: dict[int, list[float]] = {r: [] for r in range(5)}
    for p in pick:
        try:
            race = parse_name(p.name).race
        except ValueError:
            continue
        img = cv2.imread(str(p))
        if race is None or img is None:
            continue
        ita = skin_tone(img)["ita"]
        if math.isfinite(ita):
            itas[race].append(ita)
    med = {r: float(np.median(v)) for r, v in itas.items() if v}
    assert sum(len(v) for v in itas.values()) > 2500
    assert med[0] > med[3] and med[2] > med[3], med
    assert med[3] > med[1], med
