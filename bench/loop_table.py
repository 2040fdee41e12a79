"""The comparison table of docs/benchmarks.md ("Did oversampling help?") from `curate retrain --compare` outputs.

Usage: python bench/loop_table.py BASELINE_RUN NEW_RUN [NEW_RUN ...]
Reads NEW_RUN/compare/compare.json and group_metrics.csv / worst_group_gaps.csv; prints Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def fmt(r: pd.Series, col: str, k: float) -> str:
    return f"{k * r[col]:.2f}"


def delta(r: pd.Series, k: float) -> str:
    star = " *" if r["significant"] else ""
    return f"{k * r['delta']:+.2f} [{k * r['delta_lo']:+.2f}, {k * r['delta_hi']:+.2f}]{star}"


def main(baseline: str, runs: list[str]) -> str:
    lines = [
        "| training split | train images | age MAE (years) | delta MAE [95% CI] | gender acc (%) | "
        "delta acc, pp [95% CI] | worst age-group MAE gap | worst skin-tone acc gap (pp) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = True
    for run in runs:
        c = Path(run) / "compare"
        if not (c / "compare.json").exists():
            lines.append(f"| {run} | (no compare report) | | | | | | |")
            continue
        s = json.loads((c / "compare.json").read_text())
        rows = pd.read_csv(c / "group_metrics.csv")
        gaps = pd.read_csv(c / "worst_group_gaps.csv") if (c / "worst_group_gaps.csv").stat().st_size > 1 else None
        ov = rows[rows["dimension"] == "overall"].set_index("metric")
        mae, acc = ov.loc["age MAE"], ov.loc["gender accuracy"]

        def gap(dim: str, metric: str, col: str, k: float) -> str:
            if gaps is None or gaps.empty:
                return "-"
            g = gaps[(gaps["dimension"] == dim) & (gaps["metric"] == metric)]
            return "-" if g.empty or pd.isna(g.iloc[0][col]) else f"{k * g.iloc[0][col]:.2f}"

        if first:
            lines.append(
                f"| baseline (`{Path(s['baseline_train'] or '').name}`) | {s['n_train_baseline']} | "
                f"{fmt(mae, 'baseline', 1)} | | {fmt(acc, 'baseline', 100)} | | "
                f"{gap('age_group', 'age MAE', 'baseline', 1)} | "
                f"{gap('skin_category', 'gender accuracy', 'baseline', 100)} |"
            )
            first = False
        lines.append(
            f"| `{Path(s['new_train'] or run).name}` | {s['n_train_new']} | {fmt(mae, 'new', 1)} | "
            f"{delta(mae, 1)} | {fmt(acc, 'new', 100)} | {delta(acc, 100)} | "
            f"{gap('age_group', 'age MAE', 'new', 1)} | {gap('skin_category', 'gender accuracy', 'new', 100)} |"
        )
    n = json.loads((Path(runs[0]) / "compare" / "compare.json").read_text()) if runs else {}
    lines.append("")
    lines.append(
        f"Test: `{n.get('test_manifest')}` ({n.get('n_test')} images, never trained on; final weights of each run, "
        "flip TTA); intervals: paired bootstrap, "
        f"{n.get('n_boot')} resamples; `*`: the 95% interval excludes 0. Baseline run: `{baseline}`."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(main(sys.argv[1], sys.argv[2:]))
