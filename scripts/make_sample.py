"""Rebuild dataset/sample/ from the full UTKFace folder (maintainers only; the sample is committed).

Every image comes from UTKFace's test split (`test_2_folds_last` of the seed-0 split), so the shipped
model never trained on any of them and `curate flag-mislabels` can score the sample with its
predictions (core/training_set.py checks that by content hash); images with a pixel-identical or
near-duplicate copy in the training split are left out too. The sample holds:
  - the known problem cases of dataset/sample_known_cases.csv (judged by eye) and their copies;
  - a pixel-identical pair with equal labels (UTKFace has many);
  - five images named with UTKFace's five real file-name quirks (three names without a race field, one
    with a space before the extension, one missing the dot): the five originals are training images,
    so test images of the same age and gender carry the same malformations;
  - the rest, to 200, stratified round-robin over age bin x gender x race (seed 7).

    curate split ../shared/utkface/UTKFace --out /tmp/split      # the seed-0 split (folds.csv)
    curate audit ../shared/utkface/UTKFace --out /tmp/audit      # duplicate groups of the whole set
    python scripts/make_sample.py --folds /tmp/split/folds.csv --audits /tmp/audit/audits.parquet
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.labels import age_group  # noqa: E402
from core.training_set import load  # noqa: E402

DST = ROOT / "dataset" / "sample"
N = 200
EQUAL_PAIR = ("23_1_2_20170116173018704.jpg.chip.jpg", "23_1_2_20170116173201790.jpg.chip.jpg")


def quirk_name(age: int, gender: int, race: int, stamp: str, kind: str) -> str:
    """A file name with one of UTKFace's real malformations, for a test image's real labels."""
    return {
        "no race": f"{age}_{gender}_{stamp}.jpg.chip.jpg",
        "space": f"{age}_{gender}_{race}_{stamp} .jpg.chip.jpg",
        "no dot": f"{age}_{gender}_{race}_{stamp}jpg.chip.jpg",
    }[kind]


def candidates(folds: pd.DataFrame, audits: pd.DataFrame) -> pd.DataFrame:
    """Test-split images with no exact or near copy in the training split and none the model saw."""
    a = audits.set_index("filename")[["exact_group", "near_group"]]
    df = folds.join(a, on="filename")
    train = df[df["split"] != "test_2_folds_last"]
    shared = set()
    for col in ("exact_group", "near_group"):
        shared |= {(col, g) for g in train[col] if g >= 0}
    test = df[df["split"] == "test_2_folds_last"]
    keep = ~test.apply(lambda r: ("exact_group", r.exact_group) in shared or ("near_group", r.near_group) in shared,
                       axis=1)  # fmt: skip
    return test[keep]


def choose(test: pd.DataFrame, known: pd.DataFrame) -> list[tuple[str, str]]:
    """(source file name, sample file name) pairs."""
    by_name = test.set_index("filename")
    fixed = list(known["filename"]) + list(EQUAL_PAIR)
    missing = [f for f in fixed if f not in by_name.index]
    if missing:
        sys.exit(f"not in the clean test split: {missing}")
    chosen = [(f, f) for f in dict.fromkeys(fixed)]
    loose = test[(test["exact_group"] < 0) & (test["near_group"] < 0) & ~test["filename"].isin(fixed)]
    strata = defaultdict(list)
    for r in loose.itertuples():
        strata[(age_group(r.age), r.gender, r.race)].append(r)
    rng = random.Random(7)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    picked, i = [], 0
    while len(chosen) + len(picked) < N:
        k = keys[i % len(keys)]
        if strata[k]:
            picked.append(strata[k].pop())
        i += 1
    odd = set(rng.sample(range(len(picked)), 5))  # five ages and genders, not the first stratum's
    kinds = iter(("no race", "no race", "no race", "space", "no dot"))
    for j, r in enumerate(picked):
        stamp = r.filename.split("_")[3].split(".")[0]
        name = quirk_name(int(r.age), int(r.gender), int(r.race), stamp, next(kinds)) if j in odd else r.filename
        chosen.append((r.filename, name))
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "utkface" / "UTKFace")
    ap.add_argument("--folds", type=Path, required=True, help="folds.csv of `curate split` (seed 0)")
    ap.add_argument("--audits", type=Path, required=True, help="`curate audit` Parquet of the whole folder")
    args = ap.parse_args()
    folds = pd.read_csv(args.folds, dtype={"content_hash": str})
    test = candidates(folds, pd.read_parquet(args.audits))
    chosen = choose(test, pd.read_csv(DST.parent / "sample_known_cases.csv"))
    hashes = test.set_index("filename").loc[[s for s, _ in chosen], "content_hash"]
    seen = load(ROOT / "curate" / "models" / "default.pt").seen(hashes)
    if seen.any():
        sys.exit(f"{int(seen.sum())} chosen image(s) are in the shipped model's training set")
    for p in DST.glob("*.jpg"):
        p.unlink()
    for src, name in chosen:
        shutil.copy2(args.data / src, DST / name)
    size = sum((DST / name).stat().st_size for _, name in chosen) / 1e6
    print(f"{len(chosen)} images ({len(test)} candidates), {size:.2f} MB -> {DST}")


if __name__ == "__main__":
    main()
