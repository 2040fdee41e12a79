"""Duplicate groups in UTKFace and the label conflicts they reveal (no model needed).

Prints exact (pixel-identical) groups and pairs, how many carry conflicting age / gender / race labels,
the size of the age disagreements, near-duplicate counts per Hamming radius, and a few examples.

    nice -n 10 python bench/duplicates_report.py [DATA_DIR] [--audit a.parquet] [--radii 0 2 4 6 8]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCH_HOME", str(REPO.parent / "shared" / "torch_home"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", nargs="?", default=str(REPO.parent / "shared" / "utkface" / "UTKFace"))
    ap.add_argument("--audit", help="existing audit parquet (from `curate audit`) instead of running the pass")
    ap.add_argument("--radii", type=int, nargs="+", default=[0, 2, 4, 6, 8])
    ap.add_argument("--examples", type=int, default=10)
    args = ap.parse_args()

    import numpy as np

    from audits.duplicates import find_duplicates, summarize_duplicates
    from bench.skin_tone_by_race import load_table

    t = load_table(args.data_dir, args.audit).reset_index(drop=True)
    print(f"images: {len(t)} (ok: {(t['status'] == 'ok').sum()})")
    for radius in args.radii:
        rows, pairs = find_duplicates(t, radius=radius)
        s = summarize_duplicates(rows, pairs)
        if radius == args.radii[0]:
            ex = pairs[pairs["kind"] == "exact"].copy()
            print(
                f"\nexact (pixel-identical) groups: {s['exact_groups']} holding {s['images_in_exact_groups']} images, "
                f"{s['exact_pairs']} pairs"
            )
            lc = ex["label_conflict"].astype(bool)
            age_c = ex["age_a"] != ex["age_b"]
            gen_c = ex["gender_a"] != ex["gender_b"]
            race_c = (ex["race_a"] != ex["race_b"]) & ex["race_a"].notna() & ex["race_b"].notna()
            print(
                f"  pairs with conflicting labels: {int(lc.sum())} (age {int(age_c.sum())}, gender {int(gen_c.sum())}; "
                f"race, not counted as a conflict: {int(race_c.sum())})"
            )
            print(f"  groups with conflicting labels: {s.get('exact_groups_label_conflict', 0)}")
            gap = (ex.loc[age_c, "age_a"] - ex.loc[age_c, "age_b"]).abs()
            if len(gap):
                print(
                    f"  age gap in conflicting pairs: median {gap.median():.0f} y, max {gap.max():.0f} y, "
                    f"> 10 y: {int((gap > 10).sum())}"
                )
            sizes = rows.loc[rows["exact_group"] >= 0].groupby("exact_group").size().value_counts().sort_index()
            print("  group sizes: " + ", ".join(f"{k} images x {v}" for k, v in sizes.items()))
            show = ex[lc].head(args.examples)
            if len(show):
                print("  examples:")
                for _, p in show.iterrows():
                    print(f"    {t.loc[p['i'], 'filename']}  <->  {t.loc[p['j'], 'filename']}")
            print("\nnear duplicates by phash Hamming radius (exact pairs excluded from 'near pairs'):")
        print(
            f"  radius {radius}: near groups {s['near_groups']} ({s['images_in_near_groups']} images), near pairs "
            f"{s['near_pairs']}, of which label-conflicting {s.get('near_pairs_label_conflict', 0)}; images with a "
            f"conflicting duplicate {s['images_with_label_conflict']}"
        )
    _ = np  # (kept for interactive use)


if __name__ == "__main__":
    main()
