"""Skin tone (ITA) per UTKFace race label on the full dataset: quantiles, categories and Monk tones.

A sanity check of the skin-tone audit, not a claim about people: race labels are annotator guesses,
and ITA of a photo mixes skin with light and white balance. Uses the audit pass (cached), or an
existing audit table.

    nice -n 10 python bench/skin_tone_by_race.py [DATA_DIR] [--audit a.parquet]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCH_HOME", str(REPO.parent / "shared" / "torch_home"))


def load_table(data_dir: str, audit: str | None):
    import pandas as pd

    if audit:
        return pd.read_parquet(audit)
    from audits.runner import AuditConfig, run_audit
    from bench.audit_throughput import labels_for
    from core.images import list_images

    paths = [str(p) for p in list_images(Path(data_dir))]
    return run_audit(paths, labels=labels_for(paths), config=AuditConfig(progress=True)).table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", nargs="?", default=str(REPO.parent / "shared" / "utkface" / "UTKFace"))
    ap.add_argument("--audit", help="existing audit parquet (from `curate audit`) instead of running the pass")
    args = ap.parse_args()

    import pandas as pd

    from audits.skin_tone import ITA_CATEGORIES
    from core.labels import RACE_NAMES

    t = load_table(args.data_dir, args.audit)
    t = t[t["audit_status"] == "ok"].copy()
    t["race_name"] = t["race"].map(lambda r: "unknown" if pd.isna(r) else RACE_NAMES[int(r)])
    known = t[t["skin_category"] != "unknown"]
    q = known.groupby("race_name")["ita"].quantile([0.05, 0.25, 0.5, 0.75, 0.95]).unstack()
    q.columns = [f"q{int(c * 100):02d}" for c in q.columns]
    q.insert(0, "n", known.groupby("race_name").size())
    q.insert(1, "unknown", t.groupby("race_name")["skin_category"].apply(lambda s: int((s == "unknown").sum())))
    order = [r for r in RACE_NAMES + ("unknown",) if r in q.index]
    pd.set_option("display.width", 200)
    print(
        f"ITA (degrees) per race label, {len(known)} images with a skin estimate "
        f"({len(t) - len(known)} unknown: grayscale or too few skin pixels)\n"
    )
    print(q.loc[order].round(1).to_string())
    cats = [name for _, name in ITA_CATEGORIES] + ["unknown"]
    ct = (
        pd.crosstab(
            t["race_name"],
            pd.Series(pd.Categorical(t["skin_category"], cats), index=t.index, name="ITA category"),
            normalize="index",
        )
        * 100
    )
    print("\nITA category per race label (% of row):")
    print(ct.loc[order].round(1).to_string())
    tones = [str(i) for i in range(1, 11)] + ["unknown"]
    monk = t["monk_tone"].astype("Int64").astype(object).map(lambda v: "unknown" if pd.isna(v) else str(int(v)))
    mt = (
        pd.crosstab(
            t["race_name"],
            pd.Series(pd.Categorical(monk, tones), index=t.index, name="Monk tone"),
            normalize="index",
            dropna=False,
        )
        * 100
    )
    print("\nnearest Monk Skin Tone per race label (% of row):")
    print(mt.loc[order].round(1).to_string())
    flags = [
        "is_dark_issue",
        "is_overexposed_issue",
        "is_blurry_issue",
        "is_low_information_issue",
        "is_grayscale_issue",
        "is_low_quality_issue",
    ]
    rates = t.groupby("race_name")[flags].mean().mul(100)
    print("\nquality flag rates per race label (% of row): exposure flags follow skin tone, a caveat for")
    print("refusing photos as 'too dark' / 'over-exposed' in production")
    print(rates.loc[order].round(2).to_string())
    med = known.groupby("race_name")["ita"].median()
    ok = med["White"] > med["Indian"] and med["Asian"] > med["Indian"] and med["Indian"] > med["Black"]
    print(f"\nordering White, Asian > Indian > Black by median ITA: {'holds' if ok else 'VIOLATED'}")


if __name__ == "__main__":
    main()
