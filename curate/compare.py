"""`curate retrain --compare`: retrain on an exported split and prove, with intervals, what changed.

The new run copies the baseline run's configuration (runs/BASE/metadata.json) except `train_path`, seed
included. Both models are then evaluated on the very same test manifest (the baseline's `val_path`; a
pair of runs whose recorded test manifests differ is refused), and, reported separately, on that test
split with the review's corrections applied (labels replaced, excluded images dropped; predictions are
unchanged, only the truth moves).

Report (RUN_NEW/compare/): report.md with
  - the evaluate tables of both models side by side with deltas,
  - per age group, gender, race and skin-tone category: age MAE and gender accuracy of both models
    with paired-bootstrap 95 % intervals, the delta with its interval, and the worst-group gap,
  - galleries of test images the baseline got wrong and the new model gets right, and the reverse,
  - Grad-CAM overlays of each model's most-misclassified images (`trainer.explain`),
  - a verdict listing the differences whose interval excludes 0;
plus group_metrics.csv, worst_group_gaps.csv, per_image.csv and the PNG plots.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audits.group_metrics import bootstrap_weights, paired_group_table
from core.atomic import save_figure, write_csv, write_json, write_parquet, write_text
from core.errors import CurateError
from curate.splits import RACE_NAMES
from trainer.evaluate import AGE_GROUP_LABELS, GENDER_NAMES, age_groups, evaluate_predictions

METRICS = {
    "age MAE": ("base_abs_err", "new_abs_err", "lower"),
    "gender accuracy": ("base_correct", "new_correct", "higher"),
}
GROUP_DIMS = ("overall", "age_group", "gender", "race", "skin_category")


class CompareError(CurateError, ValueError):
    pass


# --------------------------------------------------------------------------------------- runs
def run_metadata(run: str | Path) -> dict:
    run = Path(run)
    f = run / "metadata.json"
    if not f.is_file():
        raise CompareError(f"{run}: not a run folder (no metadata.json)")
    return json.loads(f.read_text())


def retrain(
    split: str | Path, baseline: str | Path, out: str | Path, threads: int | None = None, progress: bool = True
) -> dict:
    """Train on `split` with the baseline's config and seed; reuse or resume a run already in `out`."""
    from core.manifest import manifest_hash, read_manifest
    from trainer.config import load_config
    from trainer.train import train

    base = run_metadata(baseline)
    if base.get("status") != "complete":
        raise CompareError(f"{baseline}: baseline run is not complete (status {base.get('status')!r})")
    split = Path(split)
    if not split.exists():
        raise CompareError(f"{split}: no such split; write one with `curate export` (its --root and --name)")
    now = manifest_hash(read_manifest(split))  # fails early, with the data module's message, on a broken split
    overrides = {"train_path": str(split)}
    if threads is not None:
        overrides["threads"] = threads
    cfg = load_config(None, overrides, base=base["config"])
    out = Path(out)
    if (out / "metadata.json").exists():
        prev = run_metadata(out)
        same = {k: v for k, v in prev["config"].items() if k != "threads"} == {
            k: v for k, v in cfg.to_dict().items() if k != "threads"
        }
        if not same:
            raise CompareError(f"{out}: holds a run with another configuration; choose another --out")
        then = prev.get("train_manifest_hash")
        if then is not None and then != now:  # e.g. the split re-exported with --force after more review
            raise CompareError(
                f"{out}: holds a run trained on another version of {split} (images and labels hash {then} then, "
                f"{now} now); choose another --out, or delete {out} to retrain"
            )
        if prev.get("status") == "complete":
            return {**prev, "reused": True}
        return train(cfg, out, resume=True, progress=progress)
    return train(cfg, out, progress=progress)


def check_same_test(base_meta: dict, new_meta: dict) -> None:
    b, n = base_meta.get("val_manifest_hash"), new_meta.get("val_manifest_hash")
    if b != n:
        raise CompareError(
            f"the runs were evaluated on different test manifests: baseline {base_meta.get('val_manifest')} "
            f"(hash {b}) vs new {new_meta.get('val_manifest')} (hash {n}); retrain with the baseline's "
            "val_path so both models face the same images"
        )


def test_manifest(base_meta: dict) -> pd.DataFrame:
    from core.manifest import manifest_hash, read_manifest

    path = base_meta["config"]["val_path"]
    df = read_manifest(path)  # a missing or broken manifest: the data module's DataError (a CurateError)
    if manifest_hash(df) != base_meta.get("val_manifest_hash"):
        raise CompareError(
            f"{path}: the test manifest changed since the baseline was trained (hash "
            f"{manifest_hash(df)} now, {base_meta.get('val_manifest_hash')} then)"
        )
    return df


def predictions(
    run: Path, manifest: pd.DataFrame, cache: Path, threads: int = 0, progress: bool = False
) -> pd.DataFrame:
    """The run's final weights (flip TTA) on the test manifest, reusing a cached or `curate evaluate`
    parquet when its model id, rows and TTA match.

    Why the final weights, not best.pt: best.pt is the epoch with the lowest validation loss, and the
    reference configuration validates on the test split itself, so comparing best checkpoints would
    let the test set pick each model. The last epoch is chosen by nobody.
    """
    from core.manifest import checkpoint_id
    from trainer.evaluate import predict_manifest

    ckpt = final_checkpoint(run)
    model_id = checkpoint_id(ckpt)
    for cand in [cache, *sorted(run.glob("eval/*/predictions.parquet"))]:
        if cand.exists():
            if cand != cache and _eval_tta(cand.parent) is not True:
                continue  # a `curate evaluate --no-tta` result: not comparable with the TTA side
            p = pd.read_parquet(cand)
            if (
                len(p) == len(manifest)
                and (p["model"] == model_id).all()
                and (p["content_hash"].astype(str).to_numpy() == manifest["content_hash"].astype(str).to_numpy()).all()
            ):
                return p
    p = predict_manifest(ckpt, manifest, threads=threads, progress=progress, tta=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(p, cache)
    return p


def final_checkpoint(run: Path) -> Path:
    """The weights after the run's last epoch (last.pt holds them, with the optimizer state)."""
    ckpt = run / "checkpoints" / "last.pt"
    if not ckpt.exists():
        raise CompareError(f"{ckpt}: run has no final checkpoint (not trained, or killed in its first epoch)")
    return ckpt


def _eval_tta(eval_dir: Path) -> bool | None:
    """Whether a `curate evaluate` folder used flip TTA (None: unknown, e.g. no evaluation.json)."""
    try:
        return json.loads((eval_dir / "evaluation.json").read_text()).get("tta", "none") != "none"
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------- frames
def joint_frame(
    manifest: pd.DataFrame, base: pd.DataFrame, new: pd.DataFrame, audits: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per test image: labels, groups, both models' predictions and per-image errors."""
    f = pd.DataFrame(
        {
            "path": manifest["path"].to_numpy(),
            "content_hash": manifest["content_hash"].astype(str).to_numpy(),
            "filename": (
                manifest["filename"] if "filename" in manifest else manifest["path"].map(os.path.basename)
            ).to_numpy(),
            "age": manifest["age"].to_numpy(int),
            "gender": manifest["gender"].to_numpy(int),
            "race": manifest["race"].to_numpy() if "race" in manifest else np.nan,
            "base_age_pred": base["age_pred"].to_numpy(float),
            "new_age_pred": new["age_pred"].to_numpy(float),
            "base_prob": base["gender_prob"].to_numpy(float),
            "new_prob": new["gender_prob"].to_numpy(float),
        }
    )
    if audits is not None and "skin_category" in audits:
        f["skin_category"] = audits["skin_category"].to_numpy()
    return add_errors(f)


def add_errors(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["age_group"] = np.asarray(age_groups(f["age"]).astype(str))
    f["gender_name"] = [GENDER_NAMES[int(g)] for g in f["gender"]]
    f["race_name"] = [RACE_NAMES[int(r)] if pd.notna(r) else "unknown" for r in f["race"]]
    f["overall"] = "all"
    for m in ("base", "new"):
        f[f"{m}_abs_err"] = np.abs(f[f"{m}_age_pred"] - f["age"])
        f[f"{m}_correct"] = ((f[f"{m}_prob"] >= 0.5).astype(int) == f["gender"]).astype(float)
    return f


def _pred_frame(f: pd.DataFrame, m: str) -> pd.DataFrame:
    """A frame in trainer.evaluate's schema for one model (for the standard tables)."""
    p = f[["path", "filename", "content_hash", "age", "gender"]].copy()
    p["age_pred"] = f[f"{m}_age_pred"].to_numpy()
    p["gender_prob"] = f[f"{m}_prob"].to_numpy()
    eps = 1e-12
    p["age_abs_error"] = f[f"{m}_abs_err"].to_numpy()
    prob_true = np.where(p["gender"] == 1, p["gender_prob"], 1 - p["gender_prob"])
    p["gender_loss"] = -np.log(np.clip(prob_true, eps, 1))
    return p


# --------------------------------------------------------------------------------------- tables
def side_by_side(tb: dict[str, pd.DataFrame], tn: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each evaluate table of both models joined on its label column, with new - baseline deltas."""
    out = {}
    for name, b in tb.items():
        n = tn[name]
        key = [c for c in ("class", "age_group", "gender", "race") if c in b.columns]
        size = [c for c in ("support", "n") if c in b.columns]
        num = [c for c in b.columns if c not in key + size and pd.api.types.is_numeric_dtype(b[c])]
        if key:
            j = b[key + size + num].merge(n[key + num], on=key, how="left", suffixes=(" base", " new"))
        else:
            j = pd.concat([b[size], b[num].add_suffix(" base"), n[num].add_suffix(" new")], axis=1)
        for c in size:
            j[c] = j[c].astype(int)
        for c in num:
            j[f"{c} delta"] = j[f"{c} new"] - j[f"{c} base"]
        out[name] = j[key + size + [f"{m} {s}" for m in num for s in ("base", "new", "delta")]]
    return out


def group_tables(
    f: pd.DataFrame, n_boot: int = 1000, seed: int = 0, min_group: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired-bootstrap group metrics for every group dimension present in `f`."""
    w = bootstrap_weights(len(f), n_boot, seed)
    rows, gaps = [], []
    orders = {
        "age_group": list(AGE_GROUP_LABELS),
        "gender_name": list(GENDER_NAMES),
        "race_name": list(RACE_NAMES) + ["unknown"],
    }
    for dim in GROUP_DIMS:
        col = {"gender": "gender_name", "race": "race_name"}.get(dim, dim)
        if col not in f or f[col].isna().all():
            continue
        r, g = paired_group_table(f, col, METRICS, w, order=orders.get(col), min_group=min_group)
        r["dimension"] = dim
        rows.append(r)
        if dim != "overall":
            g["dimension"] = dim
            gaps.append(g)
    return (pd.concat(rows, ignore_index=True), pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame())


def _ci(v, lo, hi, pct: bool) -> str:
    if not np.isfinite(v):
        return "-"
    k = 100 if pct else 1
    return f"{k * v:.2f} [{k * lo:.2f}, {k * hi:.2f}]" if np.isfinite(lo) else f"{k * v:.2f}"


def group_markdown(rows: pd.DataFrame, dim: str) -> str:
    part = rows[rows["dimension"] == dim]
    if part.empty:
        return ""
    lines = [
        "| group | n | MAE base | MAE new | MAE delta | acc % base | acc % new | acc delta (pp) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g, grp in part.groupby("group", sort=False):
        a = grp[grp["metric"] == "age MAE"].iloc[0]
        c = grp[grp["metric"] == "gender accuracy"].iloc[0]
        star = _mark
        lines.append(
            f"| {g} | {a['n']} | {_ci(a['baseline'], a['baseline_lo'], a['baseline_hi'], False)} | "
            f"{_ci(a['new'], a['new_lo'], a['new_hi'], False)} | "
            f"{_ci(a['delta'], a['delta_lo'], a['delta_hi'], False)}{star(a)} | "
            f"{_ci(c['baseline'], c['baseline_lo'], c['baseline_hi'], True)} | "
            f"{_ci(c['new'], c['new_lo'], c['new_hi'], True)} | "
            f"{_ci(c['delta'], c['delta_lo'], c['delta_hi'], True)}{star(c)} |"
        )
    return "\n".join(lines) + "\n"


def _mark(r) -> str:
    """` *` after a delta whose interval excludes 0; ` (few)` after one of a group too small to be judged."""
    return " *" if r["significant"] else " (few)" if str(r["verdict"]).startswith("too few") else ""


def gaps_markdown(gaps: pd.DataFrame) -> str:
    if gaps.empty or (gaps["n"] < 2).all():
        return "No dimension has two groups large enough for a gap.\n"
    lines = [
        "| dimension | metric | groups | gap base | gap new | gap delta | worst base | worst new |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    skipped = sorted(set(gaps.loc[gaps["n"] < 2, "dimension"]))
    for _, r in gaps[gaps["n"] >= 2].iterrows():
        pct = r["metric"] == "gender accuracy"
        lines.append(
            f"| {r['dimension']} | {r['metric']}{' (pp)' if pct else ''} | {r['n']} | "
            f"{_ci(r['baseline'], r['baseline_lo'], r['baseline_hi'], pct)} | "
            f"{_ci(r['new'], r['new_lo'], r['new_hi'], pct)} | "
            f"{_ci(r['delta'], r['delta_lo'], r['delta_hi'], pct)}{' *' if r['significant'] else ''} | "
            f"{r['worst_group_baseline']} | {r['worst_group_new']} |"
        )
    if skipped:
        lines.append(f"\n(No gap for {', '.join(skipped)}: fewer than two groups with enough images.)")
    return "\n".join(lines) + "\n"


def verdict(rows: pd.DataFrame, gaps: pd.DataFrame) -> list[str]:
    """One line per difference whose 95 % interval excludes 0 (overall first)."""
    allr = pd.concat([rows, gaps.assign(group="worst-group gap")], ignore_index=True) if len(gaps) else rows
    sig = allr[allr["significant"]].copy()
    sig["o"] = (sig["dimension"] != "overall").astype(int)
    out = []
    for _, r in sig.sort_values(["o", "dimension"], kind="stable").iterrows():
        pct = r["metric"] == "gender accuracy"
        k, unit = (100, " pp") if pct else (1, " years")
        where = "overall" if r["dimension"] == "overall" else f"{r['dimension']} {r['group']}"
        out.append(
            f"{r['verdict'].upper()}: {r['metric']}, {where}: {k * r['baseline']:.2f} -> {k * r['new']:.2f} "
            f"(delta {k * r['delta']:+.2f}{unit}, 95% CI [{k * r['delta_lo']:+.2f}, {k * r['delta_hi']:+.2f}], "
            f"n={r['n']})"
        )
    return out


# --------------------------------------------------------------------------------------- galleries
def gallery_sets(f: pd.DataFrame, n: int = 12, age_tol: float = 5.0) -> dict[str, pd.DataFrame]:
    """Test images one model gets wrong and the other right (gender: the predicted class; age: an error
    above `age_tol` years vs within it), the largest changes first."""
    bw, nw = (f["base_correct"] == 0).to_numpy(), (f["new_correct"] == 0).to_numpy()
    conf_gain = np.abs(f["new_prob"] - f["base_prob"]).to_numpy()
    age_gain = (f["base_abs_err"] - f["new_abs_err"]).to_numpy()
    b_ok, n_ok = (f["base_abs_err"] <= age_tol).to_numpy(), (f["new_abs_err"] <= age_tol).to_numpy()

    def top(mask: np.ndarray, key: np.ndarray) -> pd.DataFrame:
        # (values, not a Series: assigning a Series to an empty frame would resurrect its index)
        return f[mask].assign(_k=key[mask]).sort_values("_k", ascending=False).head(n)

    return {
        "gender_fixed": top(bw & ~nw, conf_gain),
        "gender_broken": top(~bw & nw, conf_gain),
        "age_fixed": top(~b_ok & n_ok, age_gain),
        "age_broken": top(b_ok & ~n_ok, -age_gain),
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=90, bbox_inches="tight")


def save_gallery(rows: pd.DataFrame, path: Path, title: str, cols: int = 6) -> None:
    import cv2

    plt = _plt()
    n = max(len(rows), 1)
    cols = min(cols, n)
    nr = (n + cols - 1) // cols
    fig, axes = plt.subplots(nr, cols, figsize=(2.2 * cols, 2.7 * nr), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    sex = ("M", "F")
    for i, (_, r) in enumerate(rows.iterrows()):
        img = cv2.imread(str(r["path"]), cv2.IMREAD_COLOR)
        ax = axes[i // cols, i % cols]
        if img is not None:
            ax.imshow(img[..., ::-1])
        ax.set_title(
            f"true {sex[int(r['gender'])]} {int(r['age'])}\n"
            f"base {sex[int(r['base_prob'] >= 0.5)]} ({max(r['base_prob'], 1 - r['base_prob']):.2f}) "
            f"{r['base_age_pred']:.0f}y\n"
            f"new {sex[int(r['new_prob'] >= 0.5)]} ({max(r['new_prob'], 1 - r['new_prob']):.2f}) "
            f"{r['new_age_pred']:.0f}y",
            fontsize=7,
        )
    if rows.empty:
        axes[0, 0].text(0, 0.5, "none", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_groups(rows: pd.DataFrame, path: Path) -> None:
    """Per dimension: MAE and accuracy of both models with 95 % intervals."""
    plt = _plt()
    dims = [d for d in GROUP_DIMS if d != "overall" and (rows["dimension"] == d).any()]
    if not dims:
        return
    fig, axes = plt.subplots(len(dims), 2, figsize=(12, 3.0 * len(dims)), squeeze=False)
    for i, d in enumerate(dims):
        for j, metric in enumerate(METRICS):
            part = rows[(rows["dimension"] == d) & (rows["metric"] == metric)]
            x = np.arange(len(part))
            k = 100 if metric == "gender accuracy" else 1
            ax = axes[i, j]
            for off, m, col in ((-0.15, "baseline", "tab:gray"), (0.15, "new", "tab:blue")):
                v = k * part[m].to_numpy(float)
                lo, hi = k * part[f"{m}_lo"].to_numpy(float), k * part[f"{m}_hi"].to_numpy(float)
                ax.errorbar(
                    x + off,
                    v,
                    yerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)],
                    fmt="o",
                    color=col,
                    capsize=3,
                    label=m,
                    ms=4,
                )
            ax.set_xticks(x, part["group"], rotation=30, fontsize=8)
            ax.set_title(f"{metric}{' (%)' if k == 100 else ' (years)'} by {d}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_deltas(rows: pd.DataFrame, gaps: pd.DataFrame, path: Path) -> None:
    """Forest plot: every delta (new - baseline) with its 95 % interval; red = excludes 0."""
    plt = _plt()
    allr = pd.concat([rows, gaps.assign(group="worst-group gap")], ignore_index=True) if len(gaps) else rows
    allr = allr[np.isfinite(allr["delta"].astype(float))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.25 * len(allr) / 2 + 2))
    for ax, metric in zip(axes, METRICS):
        part = allr[allr["metric"] == metric].iloc[::-1]
        k = 100 if metric == "gender accuracy" else 1
        y = np.arange(len(part))
        d, lo, hi = (k * part[c].to_numpy(float) for c in ("delta", "delta_lo", "delta_hi"))
        sig = part["significant"].to_numpy(bool)
        for mask, color in ((sig, "tab:red"), (~sig, "tab:gray")):
            if mask.any():
                ax.errorbar(
                    d[mask],
                    y[mask],
                    xerr=[np.nan_to_num(d - lo)[mask], np.nan_to_num(hi - d)[mask]],
                    fmt="o",
                    ms=3,
                    color=color,
                    capsize=2,
                )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, [f"{a}: {b}" for a, b in zip(part["dimension"], part["group"])], fontsize=7)
        better = "lower is better" if METRICS[metric][2] == "lower" else "higher is better"
        ax.set_title(f"{metric} delta, new - baseline ({'pp' if k == 100 else 'years'}; {better})", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------- report
@dataclass
class CompareOptions:
    """How two runs are compared and reported (the options of `curate retrain --compare`)."""

    review: pd.DataFrame | None = None  # review decisions: also report on the corrected test split
    review_source: str = ""  # where the review came from, for the report
    audits: str | Path | None = None  # audits table with skin_category for the test images
    n_boot: int = 1000
    seed: int = 0
    n_gallery: int = 12
    n_explain: int = 8  # Grad-CAM images per model and head (0: none)
    age_tol: float = 5.0  # age error (years) counted as wrong in the galleries
    min_group: int = 10  # smallest group that takes part in worst-group gaps
    threads: int = 0
    progress: bool = False


@dataclass
class Comparison:
    """Everything the report is written from, so that writing it needs no dozen arguments."""

    base_meta: dict
    new_meta: dict
    side_by_side: dict[str, pd.DataFrame]
    rows: pd.DataFrame
    gaps: pd.DataFrame
    galleries: dict[str, pd.DataFrame]
    explained: dict
    corrected: dict | None
    summary: dict = field(default_factory=dict)  # compare.json


def compare_runs(
    baseline: str | Path, new: str | Path, out_dir: str | Path | None = None, opts: CompareOptions | None = None
) -> dict:
    """Evaluate both runs on the baseline's test manifest and write the comparison report."""
    t0 = time.time()
    o = opts or CompareOptions()
    baseline, new = Path(baseline), Path(new)
    out = Path(out_dir) if out_dir else new / "compare"
    bm, nm = run_metadata(baseline), run_metadata(new)
    check_same_test(bm, nm)
    manifest = test_manifest(bm)
    out.mkdir(parents=True, exist_ok=True)
    pb = predictions(baseline, manifest, out / "predictions_baseline.parquet", o.threads, o.progress)
    pn = predictions(new, manifest, out / "predictions_new.parquet", o.threads, o.progress)
    f = joint_frame(manifest, pb, pn, _test_audits(o.audits, manifest))
    sbs, rows, gaps = _write_tables(f, out, o)
    gal = _write_galleries(f, out, o)
    explained = _explain((("baseline", baseline, pb), ("new", new, pn)), out, o.n_explain) if o.n_explain > 0 else {}
    c = Comparison(bm, nm, sbs, rows, gaps, gal, explained, _write_corrected(f, out, o))
    c.summary = {**_summary(c, baseline, new, len(f), o), "barely_trained": barely_trained(f)}
    c.summary["seconds"] = round(time.time() - t0, 1)
    write_json(out / "compare.json", c.summary, default=str)
    write_text(out / "report.md", report_markdown(c, o))
    c.summary["report"] = str(out / "report.md")
    return c.summary


def _test_audits(audits: str | Path | None, manifest: pd.DataFrame) -> pd.DataFrame | None:
    """The audits rows of the test images (skin_category for the per-group tables), when given."""
    if not audits:
        return None
    from curate.export import load_audits

    return load_audits(
        audits, manifest.assign(filename=manifest.get("filename", manifest["path"].map(os.path.basename)))
    )


def _write_tables(f: pd.DataFrame, out: Path, o: CompareOptions) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Both models' evaluate tables, the paired group metrics and gaps, as CSVs and plots."""
    tb = evaluate_predictions(_pred_frame(f, "base"), out / "baseline")
    tn = evaluate_predictions(_pred_frame(f, "new"), out / "new")
    sbs = side_by_side(tb, tn)
    rows, gaps = group_tables(f, o.n_boot, o.seed, o.min_group)
    write_csv(rows, out / "group_metrics.csv")
    write_csv(gaps, out / "worst_group_gaps.csv")
    for name, t in sbs.items():
        write_csv(t, out / f"{name}_side_by_side.csv")
    write_csv(f, out / "per_image.csv")
    plot_groups(rows, out / "group_metrics.png")
    plot_deltas(rows, gaps, out / "deltas.png")
    return sbs, rows, gaps


def _write_galleries(f: pd.DataFrame, out: Path, o: CompareOptions) -> dict[str, pd.DataFrame]:
    """The fixed / broken galleries, so the numbers can be checked against faces."""
    gal = gallery_sets(f, o.n_gallery, o.age_tol)
    titles = {
        "gender_fixed": "gender: baseline wrong, new right",
        "gender_broken": "gender: baseline right, new wrong",
        "age_fixed": f"age: baseline off by > {o.age_tol:g} y, new within",
        "age_broken": f"age: baseline within {o.age_tol:g} y, new off by more",
    }
    for k, rws in gal.items():
        save_gallery(rws, out / f"gallery_{k}.png", f"{titles[k]} ({len(rws)} shown)")
    return gal


def _explain(models: tuple, out: Path, n: int) -> dict:
    """Grad-CAM of each model's worst images (label, run, predictions), from its final weights."""
    from trainer.explain import explain_run

    return {m: explain_run(final_checkpoint(run), p, out / f"explain_{m}", n, label=m) for m, run, p in models}


def _write_corrected(f: pd.DataFrame, out: Path, o: CompareOptions) -> dict | None:
    """Group metrics on the test split with the review's corrections applied (None: no reviewed test image)."""
    if o.review is None:
        return None
    from curate.export import corrected_view

    fc, info = corrected_view(f, o.review)
    if not info["n_review_rows"]:
        return None
    rc, gc = group_tables(add_errors(fc), o.n_boot, o.seed, o.min_group)
    write_csv(rc, out / "group_metrics_corrected_test.csv")
    write_csv(gc, out / "worst_group_gaps_corrected_test.csv")
    return {"info": info, "rows": rc, "gaps": gc}


def _summary(c: Comparison, baseline: Path, new: Path, n_test: int, o: CompareOptions) -> dict:
    """compare.json: what was compared, on what, the overall deltas and the verdict (no timing yet)."""
    bm, nm = c.base_meta, c.new_meta
    return {
        "baseline": str(baseline),
        "new": str(new),
        "test_manifest": bm["config"]["val_path"],
        "test_manifest_hash": bm.get("val_manifest_hash"),
        "n_test": n_test,
        "n_boot": o.n_boot,
        "seed": o.seed,
        "min_group": o.min_group,
        "baseline_train": bm.get("train_manifest"),
        "new_train": nm.get("train_manifest"),
        "n_train_baseline": bm.get("n_train"),
        "n_train_new": nm.get("n_train"),
        "overall": c.rows[c.rows["dimension"] == "overall"].to_dict("records"),
        "verdict": verdict(c.rows, c.gaps),
        "corrected_test": c.corrected["info"] if c.corrected else None,
    }


# A model counts as barely trained when it is this close to the best constant answer on the test images.
BARELY_MAE = 0.9  # its age MAE is above 90 % of answering the median age for everyone
BARELY_PP = 2.0  # its gender accuracy is within 2 points of answering the commoner gender for everyone


def barely_trained(f: pd.DataFrame) -> list[str]:
    """One line per model of the comparison that hardly beats a constant answer on the test images.

    Why: two such models differ by noise in what they failed to learn, not by what the data taught them (a
    2-epoch quick start predicts about 35 for every face), and the report's intervals would dress that noise
    up as a verdict. The constants are the test images' own median age and commoner gender: the best a model
    that learned nothing could do, so the bar is generous to the models."""
    ages, genders = f["age"].to_numpy(float), f["gender"].to_numpy(int)
    const_mae = float(np.abs(ages - np.median(ages)).mean())
    share = max(float(genders.mean()), 1 - float(genders.mean()))
    lines = []
    for m, name in (("base", "baseline"), ("new", "new model")):
        mae = float(np.nanmean(f[f"{m}_abs_err"]))
        acc = float(((f[f"{m}_prob"].to_numpy(float) >= 0.5) == genders).mean())
        weak = []
        if mae > BARELY_MAE * const_mae:
            weak.append(f"age MAE {mae:.2f} against {const_mae:.2f} for the median age ({np.median(ages):g}) for all")
        if acc < share + BARELY_PP / 100:
            weak.append(f"gender accuracy {100 * acc:.1f}% against {100 * share:.1f}% for the commoner gender for all")
        if weak:
            lines.append(f"the {name} hardly beats a constant answer ({'; '.join(weak)}): the comparison says "
                         "little about the data until it trains longer")  # fmt: skip
    return lines


def _cfg_diff(bm: dict, nm: dict) -> list[str]:
    b, n = bm["config"], nm["config"]
    return [f"`{k}`: {b.get(k)!r} -> {n.get(k)!r}" for k in sorted(set(b) | set(n)) if b.get(k) != n.get(k)]


def report_markdown(c: Comparison, o: CompareOptions) -> str:
    """report.md: the sections in reading order, each built by its own step."""
    L = _md_intro(c) + _md_barely(c.summary["barely_trained"]) + _md_verdict(c.summary["verdict"]) + _md_tables(c)
    if c.corrected:
        L += _md_corrected(c.corrected, o.review_source)
    L += _md_galleries(c.galleries, o.age_tol) + _md_explained(c.explained)
    return "\n".join(L) + "\n"


def _md_intro(c: Comparison) -> list[str]:
    """Which runs, trained on what, tested on what, and how the intervals are made."""
    s, bm, nm = c.summary, c.base_meta, c.new_meta
    return [
        "# Retrain comparison",
        "",
        f"Baseline `{s['baseline']}` (trained on `{bm.get('train_manifest')}`, {bm.get('n_train')} images) vs "
        f"new `{s['new']}` (trained on `{nm.get('train_manifest')}`, {nm.get('n_train')} images). "
        f"Configuration differences: {', '.join(_cfg_diff(bm, nm)) or 'none'}.",
        "",
        f"Both evaluated with their final weights (last epoch: no checkpoint picked by looking at the test "
        f"set) and flip TTA on the same test manifest `{s['test_manifest']}` ({s['n_test']} images, never "
        f"trained on, hash {s['test_manifest_hash']}). Intervals: 95 % percentile intervals of a paired "
        "bootstrap over the test "
        f"images ({s['n_boot']} resamples, seed {s['seed']}; the same resampled images for both models, so the "
        "delta's interval accounts for their correlation). `*` marks a delta whose interval excludes 0.",
        "",
    ]


def _md_barely(lines: list[str]) -> list[str]:
    """A warning above the verdict when a model learned too little for the comparison to mean much."""
    return ["## Warning", "", *[f"- **{line[0].upper()}{line[1:]}**" for line in lines], ""] if lines else []


def _md_verdict(lines: list[str]) -> list[str]:
    """The differences larger than their uncertainty, first, since that is the answer."""
    L = ["## Verdict", ""]
    if lines:
        L += ["Differences larger than their uncertainty (95 % interval excludes 0):", ""]
        L += [f"- {v}" for v in lines]
        L += [
            "",
            "Every other difference below is within its uncertainty, or in a group too small to judge (marked "
            "`(few)`). With this many groups, an occasional interval excluding 0 is expected by chance alone (about "
            "1 in 20).",
        ]
    else:
        L += [
            "No difference between the two models is larger than its uncertainty: every delta's 95 % "
            "interval includes 0."
        ]
    return L + ["", "![deltas](deltas.png)", ""]


def _md_groups(rows: pd.DataFrame, suffix: str = "") -> list[str]:
    """One table per group dimension present (shared by the plain and the corrected test)."""
    L = []
    for dim in GROUP_DIMS:
        md = group_markdown(rows, dim)
        if md:
            L += [f"### {dim.replace('_', ' ')}{suffix}", "", md]
    return L


def _md_tables(c: Comparison) -> list[str]:
    """The evaluate tables side by side, the per-group intervals and the worst-group gaps."""
    L = ["## Evaluate tables side by side (new - baseline = delta)", ""]
    for name, t in c.side_by_side.items():
        L += [f"### {name.replace('_', ' ')}", "", t.to_markdown(index=False, floatfmt=".4f"), ""]
    L += [
        "## Per group, with 95 % intervals",
        "",
        "MAE in years (lower is better), gender accuracy in % (deltas in percentage points). `(few)`: fewer than "
        f"{c.summary['min_group']} test images, an interval too unsure to judge whatever it shows.",
        "",
    ]
    L += _md_groups(c.rows)
    if "skin_category" not in set(c.rows["dimension"]):
        L += ["(No skin-tone audit given: pass `--audits` with a skin_category column for that breakdown.)", ""]
    return L + [
        "### Worst-group gap (max - min over groups with enough images)",
        "",
        f'Groups with at least {c.summary["min_group"]} test images take part (never "unknown"). A gap of noisy '
        "group estimates is biased upwards; the paired delta of the two models' gaps is the fairer comparison.",
        "",
        gaps_markdown(c.gaps),
        "![groups](group_metrics.png)",
        "",
    ]


def _md_corrected(corrected: dict, review_source: str) -> list[str]:
    """The same group tables and verdict with the review's corrections applied to the test labels."""
    i = corrected["info"]
    L = [
        "## On the test split with the review's corrections applied",
        "",
        f"Review {review_source or ''}: {i['n_review_rows']} reviewed test image(s); {i['n_corrected']} label(s) "
        f"corrected, {i['n_removed']} image(s) excluded; {i['n']} images remain. Predictions are unchanged, "
        "only the truth moves.",
        "",
    ]
    L += _md_groups(corrected["rows"], " (corrected test)")
    cv = verdict(corrected["rows"], corrected["gaps"])
    return (
        L
        + ["Differences larger than their uncertainty on the corrected test:", ""]
        + ([f"- {v}" for v in cv] or ["- none"])
        + [""]
    )


def _md_galleries(gal: dict[str, pd.DataFrame], age_tol: float) -> list[str]:
    """Links to the fixed / broken galleries, with what counts as a flip."""
    L = [
        "## Galleries",
        "",
        f"Gender: the predicted class flips between right and wrong. Age: an error above "
        f"{age_tol:g} years on one side, within it on the other. Largest changes first.",
        "",
    ]
    for k, rws in gal.items():
        L += [f"### {k.replace('_', ' ')} ({len(rws)})", "", f"![{k}](gallery_{k}.png)", ""]
    return L


def _md_explained(explained: dict) -> list[str]:
    """Links to the Grad-CAM grids of both models (none when --explain 0)."""
    if not explained:
        return []
    L = [
        "## Grad-CAM of the most-misclassified images",
        "",
        "Heat maps of the last convolutional block (`curate explain`): for gender the predicted class's "
        "logit, for age the age output.",
        "",
    ]
    for m, heads in explained.items():
        for head, p in heads.items():
            L += [f"### {m}: {head}", "", f"![{m} {head}]({Path(p).parent.name}/{Path(p).name})", ""]
    return L
