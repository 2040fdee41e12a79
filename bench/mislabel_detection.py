"""Mislabel detection, measured: our scores vs cleanlab and FiftyOne Brain on injected label noise.

For each seed:
  1. take the manifest (a seeded subsample of --n rows if asked) and inject known noise into a copy of
     the labels: gender flipped on 5% of images; age replaced on 5% by a plausible wrong value (shifted
     by 10-40 years up or down, clipped to 1-100);
  2. cross-fit on the NOISED labels (trainer.crossfit, K folds, --mode cheap or default): every image
     gets out-of-sample age / gender predictions from a model that never saw its (noised) label;
  3. score those same predictions with ours (audits.mislabels) and the peers: cleanlab
     find_label_issues ranked by self-confidence and by normalised margin (gender),
     cleanlab.regression.rank.get_label_quality_scores (age), FiftyOne Brain compute_mistakenness
     (gender);
  4. report per task and method: average precision, AUROC, precision at k (k = number injected),
     recall at 1% false-positive rate, scoring time and peak memory.
Then it writes OUT/results.csv (per seed), OUT/summary.md (mean +- std over seeds) and, for the real
labels (no injected noise) scored with seed 0's cross-fitted models, OUT/top50_gender.png and
OUT/top50_age.png contact sheets plus OUT/top_real.csv.

Rows whose pixel-identical copies already carry conflicting ORIGINAL labels are left out of every
method's metrics (one of them is a real error, which one is unknown); the count is printed.

Usage:
    python bench/mislabel_detection.py --n 3000 --seeds 0 1 2 --mode cheap --out runs/bench_mislabels
    python bench/mislabel_detection.py --predictions PRED.parquet --seeds 0 1 2 --out OUT
      (score held-out predictions of a model trained elsewhere, e.g. the reference model on the test
       split; only the labels are noised, no cross-fit)
Cross-fits are cached under OUT/seed_S/crossfit (resumable); re-running only re-scores.

Measured (2 CPU cores), AP mean +- std over seeds 0, 1, 2:
  full UTKFace (23,708 images), cross-fit, cheap mode (96 px, 8 epochs, k=2; ~16 min per seed idle):
  gender ours 0.687 +- 0.007 vs cleanlab self-confidence / normalised margin / FiftyOne mistakenness
  0.665 +- 0.006; age ours 0.401 +- 0.013 vs cleanlab regression 0.259 +- 0.014 (155 s, 4.3 GB).
  --predictions mode on the shipped model's 4,740 test predictions (flip TTA): gender ours 0.827 vs
  peers 0.825 (a tie: a strong model leaves little for calibration), age ours 0.638 vs 0.523.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audits.mislabels import score_age, score_gender  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "utkface" / "UTKFace"
NOISE_RATE = 0.05


# ---------------------------------------------------------------------------------------------- noise
def inject_noise(df: pd.DataFrame, seed: int, rate: float = NOISE_RATE) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A copy of `df` with gender flipped on `rate` of rows and age shifted by 10-40 y on `rate` of rows.

    The two sets are drawn independently. Returns (noised copy, gender_flipped mask, age_replaced mask).
    """
    rng = np.random.default_rng([seed, 7])
    n = len(df)
    out = df.copy()
    g_idx = rng.choice(n, int(round(rate * n)), replace=False)
    a_idx = rng.choice(n, int(round(rate * n)), replace=False)
    gender = out["gender"].to_numpy().copy()
    gender[g_idx] = 1 - gender[g_idx]
    age = out["age"].to_numpy().astype(np.int64).copy()
    shift = rng.integers(10, 41, len(a_idx))
    sign = rng.choice([-1, 1], len(a_idx))
    old = age[a_idx]
    new = old + sign * shift
    out_of_range = (new < 1) | (new > 100)
    new = np.where(out_of_range, old - sign * shift, new)  # the other direction stays plausible
    new = np.clip(new, 1, 100)
    new = np.where(new == old, np.clip(old + 10 * np.where(old > 50, -1, 1), 1, 100), new)
    age[a_idx] = new
    out["gender"], out["age"] = gender, age
    g_mask = np.zeros(n, bool)
    g_mask[g_idx] = True
    a_mask = np.zeros(n, bool)
    a_mask[a_idx] = True
    return out, g_mask, a_mask


# -------------------------------------------------------------------------------------------- metrics
def known_conflicts(df: pd.DataFrame, col: str) -> np.ndarray:
    """Rows whose pixel-identical copies carry a different ORIGINAL label in `col`.

    One label of such a group is certainly wrong already, and which one is unknown: counting those
    rows as clean would charge a method for finding a real error. They are left out of every
    method's metrics (the count is reported).
    """
    n_labels = df.groupby("content_hash")[col].transform("nunique")
    return (n_labels > 1).to_numpy()


def detection_metrics(truth: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AP, AUROC, precision at k (k = number of true issues), recall at 1% false-positive rate."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    truth = np.asarray(truth, bool)
    score = np.asarray(score, float)
    k = int(truth.sum())
    # Ties are broken by a fixed random order, so a constant score cannot look better than chance.
    finite = np.isfinite(score)
    spread = np.std(score[finite]) if finite.any() else 1.0
    floor = score[finite].min() - 1.0 if finite.any() else 0.0
    tiebreak = np.random.default_rng(0).random(len(score)) * 1e-9 * (spread + 1e-12)
    s = np.where(finite, score, floor) + tiebreak  # an unscored row ranks last
    order = np.argsort(-s, kind="stable")
    fpr, tpr, _ = roc_curve(truth, s)
    return {
        "ap": average_precision_score(truth, s),
        "auroc": roc_auc_score(truth, s),
        "p_at_k": truth[order[:k]].mean() if k else float("nan"),
        "recall_at_1pct_fpr": float(tpr[fpr <= 0.01].max()) if (fpr <= 0.01).any() else 0.0,
        "n_true": k,
    }


def measure(fn, *args, **kwargs):
    """(result, seconds, peak MB): peak = the largest growth of the process's resident memory during
    the call, sampled every 5 ms (no tracing, so the timing is not distorted)."""
    import psutil

    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        res = fn(*args, **kwargs)
    finally:
        dt = time.perf_counter() - t0
        stop.set()
        th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return res, dt, (peak[0] - base) / 2**20


# ---------------------------------------------------------------------------------------------- peers
class PeerCache:
    """The peers' scores (and their measured time and memory) per seed, reused while the predictions
    they were computed from are unchanged, so re-running the benchmark after changing our detector
    re-scores only ours (FiftyOne's mistakenness and cleanlab's regression scorer take minutes)."""

    def __init__(self, path: Path, pred: pd.DataFrame):
        import hashlib

        self.path = path
        cols = pred[["age", "gender", "age_pred", "gender_logit_0", "gender_logit_1"]].to_numpy(np.float64)
        self.key = hashlib.sha256(cols.tobytes()).hexdigest()[:16]
        self.data = dict(np.load(path, allow_pickle=False)) if path.exists() else {}
        if str(self.data.get("key", "")) != self.key:
            self.data = {}

    def get(self, name: str, fn):
        if name in self.data:
            secs, mb = self.data[name + "#cost"]
            return self.data[name], float(secs), float(mb)
        score, secs, mb = measure(fn)
        self.data.update({name: np.asarray(score, float), name + "#cost": np.array([secs, mb]), "key": self.key})
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, **self.data)
        tmp.replace(self.path)
        return score, secs, mb


def cleanlab_gender(pred: pd.DataFrame, rank_by: str) -> np.ndarray:
    """cleanlab find_label_issues (confident learning, per-class thresholds) ranked by `rank_by`.

    Issue score: the flagged images first, in cleanlab's rank order, then the rest by the same label
    quality score (so AP / AUROC see cleanlab's complete ranking).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    p = pred["gender_prob"].to_numpy(np.float64)
    probs = np.column_stack([1 - p, p])
    labels = pred["gender"].to_numpy(np.int64)
    flagged = find_label_issues(labels, probs, return_indices_ranked_by=rank_by)
    quality = get_label_quality_scores(labels, probs, method=rank_by)
    score = 1.0 - quality
    score[flagged] += 2.0
    return score


def cleanlab_age(pred: pd.DataFrame) -> np.ndarray:
    from cleanlab.regression.rank import get_label_quality_scores

    q = get_label_quality_scores(pred["age"].to_numpy(np.float64), pred["age_pred"].to_numpy(np.float64))
    return 1.0 - q


def fiftyone_mistakenness(pred: pd.DataFrame) -> np.ndarray:
    """FiftyOne Brain compute_mistakenness (logits) on an in-memory FiftyOne dataset of the images."""
    import fiftyone as fo
    import fiftyone.brain as fob

    name = f"bench-mislabels-{os.getpid()}-{time.time_ns()}"
    ds = fo.Dataset(name)
    try:
        labels = np.array(["male", "female"])
        logits = pred[["gender_logit_0", "gender_logit_1"]].to_numpy(np.float64)
        p = pred["gender_prob"].to_numpy(np.float64)
        samples = []
        for i in range(len(pred)):
            k = int(p[i] >= 0.5)
            samples.append(
                fo.Sample(
                    filepath=pred["path"].iat[i],
                    ground_truth=fo.Classification(label=labels[int(pred["gender"].iat[i])]),
                    predictions=fo.Classification(
                        label=labels[k], confidence=float(max(p[i], 1 - p[i])), logits=logits[i].tolist()
                    ),
                )
            )
        ds.add_samples(samples, progress=False)
        fob.compute_mistakenness(ds, "predictions", label_field="ground_truth", use_logits=True, progress=False)
        ids = ds.values("id")
        m = dict(zip(ids, ds.values("mistakenness")))
        return np.array([m[s.id] for s in samples], dtype=float)
    finally:
        ds.delete()


# ---------------------------------------------------------------------------------------------- ours
def exact_groups(content_hash: pd.Series) -> np.ndarray:
    """Group id per row for pixel-identical images (-1 for a unique image)."""
    codes, _ = pd.factorize(content_hash)
    counts = np.bincount(codes)
    return np.where(counts[codes] > 1, codes, -1)


def sharpness(paths: pd.Series) -> np.ndarray:
    """Variance of the Laplacian of the grey image (raw; higher = sharper): a cheap quality signal."""
    import cv2

    out = np.empty(len(paths))
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        out[i] = np.nan if img is None else cv2.Laplacian(img, cv2.CV_64F).var()
    return out


def audit_frame(pred: pd.DataFrame, sharp: dict[str, float], race: pd.Series | None = None) -> pd.DataFrame:
    audit = pd.DataFrame({"content_hash": pred["content_hash"].to_numpy()})
    if race is not None:  # the dataset's race label, row-aligned (UTKFace's file names carry it)
        audit["race"] = race.to_numpy()
    audit["laplacian_var"] = pred["path"].map(sharp).to_numpy()
    audit["exact_group"] = exact_groups(pred["content_hash"])
    return audit


# ---------------------------------------------------------------------------------------------- main
def load_manifest(data: Path, manifest: Path | None, progress: bool) -> pd.DataFrame:
    if manifest is not None:
        df = pd.read_csv(manifest, dtype={"content_hash": str})
    else:
        default = REPO / "dataset" / "folds.csv"
        df = None
        if default.is_file():
            cand = pd.read_csv(default, dtype={"content_hash": str})
            if len(cand) and all(str(Path(p).parent) == str(data.resolve()) for p in cand["path"].head(50)):
                df = cand
        if df is None:
            from curate.splits import scan_folder

            df, _ = scan_folder(data, progress=progress)
    df = df[df["path"].map(lambda p: Path(p).parent == data.resolve())].reset_index(drop=True)
    if df.empty:
        sys.exit(f"no usable images under {data}")
    return df[["path", "filename", "age", "gender", "race", "content_hash"]]


def train_config(
    mode: str, image_size: int | None, epochs: int | None, batch_size: int | None = None, recipe: str | None = None
):
    """The fold models' config: with `recipe`, what `curate flag-mislabels --recipe R` trains (that recipe on
    `curate train`'s defaults); else `mode` on the reference config (the figures before 2026-12-06)."""
    from trainer.config import TrainConfig, reference_config, replace
    from trainer.crossfit import cheap_config, recipe_config

    if recipe:
        cfg = recipe_config(TrainConfig(), recipe)
    else:
        cfg = reference_config()  # the config every figure of docs/benchmarks.md was measured with
        if mode == "cheap":
            cfg = cheap_config(cfg)
    if image_size:
        cfg = replace(cfg, image_size=image_size)
    if batch_size:
        cfg = replace(cfg, batch_size=batch_size)
    if epochs:
        cycle = max(1, round(cfg.override_cycle_epoch_count * epochs / cfg.num_epochs))
        cfg = replace(cfg, num_epochs=epochs, override_cycle_epoch_count=cycle)
    return cfg


def run_seed(df_all: pd.DataFrame, seed: int, args, cfg, sharp: dict[str, float]) -> tuple[list[dict], pd.DataFrame]:
    from trainer.crossfit import crossfit

    df = (
        df_all
        if not args.n or args.n >= len(df_all)
        else df_all.sample(args.n, random_state=seed).sort_values("filename").reset_index(drop=True)
    )
    noised, g_true, a_true = inject_noise(df, seed)
    seed_dir = Path(args.out) / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.predictions is not None:
        # Held-out predictions of a model trained elsewhere (e.g. `curate evaluate` on the test split):
        # only the labels are noised here, the model never saw these images.
        pred = df[["path"]].merge(
            pd.read_parquet(args.predictions).drop(columns=["age", "gender"]), on="path", how="left"
        )
        pred["age"], pred["gender"] = noised["age"].to_numpy(), noised["gender"].to_numpy()
    else:
        pred = crossfit(noised, seed_dir / "crossfit", cfg, k=args.k, seed=seed, progress=not args.quiet)
    cf_seconds = time.time() - t0
    pd.DataFrame(
        {
            "path": df["path"],
            "gender_flipped": g_true,
            "age_replaced": a_true,
            "age_true": df["age"],
            "gender_true": df["gender"],
        }
    ).to_csv(seed_dir / "noise.csv", index=False)
    audit = audit_frame(pred, sharp, df["race"])
    acc = float(((pred["gender_prob"] >= 0.5) == (df["gender"] == 1)).mean())
    mae = float(np.abs(pred["age_pred"] - df["age"]).mean())
    excl = {"gender": known_conflicts(df, "gender"), "age": known_conflicts(df, "age")}
    print(
        f"\nseed {seed}: n={len(df)}, {'cross-fit' if args.predictions is None else 'load'} "
        f"{cf_seconds / 60:.1f} min (this call), out-of-sample vs original labels: gender acc {acc:.3f}, "
        f"age MAE {mae:.2f}; left out of the metrics (copies with conflicting original labels): "
        f"gender {int(excl['gender'].sum())}, age {int(excl['age'].sum())} rows",
        flush=True,
    )

    rows = []
    methods_g = [
        ("ours", lambda: score_gender(pred, audit)["gender_flip_prob"].to_numpy()),
        ("cleanlab self_confidence", lambda: cleanlab_gender(pred, "self_confidence")),
        ("cleanlab normalized_margin", lambda: cleanlab_gender(pred, "normalized_margin")),
    ]
    if not args.skip_fiftyone:
        methods_g.append(("fiftyone mistakenness", lambda: fiftyone_mistakenness(pred)))
    methods_a = [
        ("ours", lambda: score_age(pred, audit)["age_residual_z"].to_numpy()),
        ("cleanlab regression outre", lambda: cleanlab_age(pred)),
    ]
    cache = PeerCache(seed_dir / "peer_scores.npz", pred)
    for task, truth, methods in (("gender", g_true, methods_g), ("age", a_true, methods_a)):
        keep = ~excl[task]
        for name, fn in methods:
            try:
                score, secs, mb = measure(fn) if name == "ours" else cache.get(f"{task}/{name}", fn)
            except Exception as e:  # a peer that cannot run is reported, not fatal
                print(f"  {task} / {name}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            m = detection_metrics(truth[keep], np.asarray(score)[keep])
            rows.append(
                {
                    "seed": seed,
                    "n": len(df),
                    "task": task,
                    "method": name,
                    **m,
                    "seconds": secs,
                    "peak_mb": mb,
                    "crossfit_minutes": cf_seconds / 60,
                    "model_gender_acc": acc,
                    "model_age_mae": mae,
                    "n_excluded": int(excl[task].sum()),
                }
            )
            print(
                f"  {task:6s} {name:28s} AP {m['ap']:.3f}  AUROC {m['auroc']:.3f}  P@k {m['p_at_k']:.3f}  "
                f"R@1%FPR {m['recall_at_1pct_fpr']:.3f}  {secs:6.2f}s {mb:7.1f} MB",
                flush=True,
            )
    real = pred.copy()
    real["age"], real["gender"], real["race"] = df["age"].to_numpy(), df["gender"].to_numpy(), df["race"].to_numpy()
    return rows, real


def summarize(res: pd.DataFrame) -> str:
    cols = ["ap", "auroc", "p_at_k", "recall_at_1pct_fpr", "seconds", "peak_mb"]
    g = res.groupby(["task", "method"], sort=False)[cols]
    mean, std = g.mean(), g.std(ddof=0).fillna(0.0)
    seeds = sorted(res["seed"].unique())
    lines = [
        f"n = {int(res['n'].iloc[0])} images, seeds {', '.join(map(str, seeds))}; mean ± std over seeds; "
        f"{int(res['n_true'].iloc[0])} injected issues per task.",
        "",
        "| task | method | AP | AUROC | P@k | recall@1%FPR | time (s) | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, method), m in mean.iterrows():
        s = std.loc[(task, method)]
        lines.append(
            f"| {task} | {method} | "
            + " | ".join(f"{m[c]:.3f} ± {s[c]:.3f}" for c in cols[:4])
            + f" | {m['seconds']:.2f} | {m['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def contact_sheet(df: pd.DataFrame, reason_col: str, path: Path, title: str, n: int = 50) -> None:
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 10
    rows = (min(n, len(df)) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.9))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, (_, r) in zip(np.ravel(axes), df.head(n).iterrows()):
        img = cv2.imread(str(r["path"]))
        if img is not None:
            ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        # The reason's first clauses (prediction, label, quality, age group), wrapped to the tile width.
        words = str(r[reason_col]).split(", ")[:4]
        ax.set_title(textwrap.fill(", ".join(words), width=34, max_lines=4, placeholder=" ..."), fontsize=6.2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="manifest CSV of --data (default: dataset/folds.csv when it lists --data, else scan)",
    )
    ap.add_argument("--n", type=int, default=0, help="seeded subsample size (default: all images)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--mode", choices=["cheap", "default"], default="cheap")
    ap.add_argument(
        "--recipe",
        choices=["cheap", "thorough"],
        help="the product's own fold models: `curate flag-mislabels --recipe R` (curate train's defaults, L1 1e-6) "
        "instead of --mode on the reference config",
    )
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_mislabels")
    ap.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="score these held-out predictions (shared schema) instead of cross-fitting; only the "
        "labels are noised (the model must not have trained on these images)",
    )
    ap.add_argument("--skip-fiftyone", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    cfg = train_config(args.mode, args.image_size, args.epochs, args.batch_size, args.recipe)
    how = f"recipe {args.recipe}" if args.recipe else f"mode {args.mode}"
    if args.predictions is not None:
        print(f"scoring held-out predictions {args.predictions} (no cross-fit)", flush=True)
    print(
        f"{how}: image_size {cfg.image_size}, epochs {cfg.num_epochs}, batch {cfg.batch_size}, k {args.k}",
        flush=True,
    )
    df_all = load_manifest(args.data, args.manifest, progress=not args.quiet)
    if args.predictions is not None:
        df_all = df_all[df_all["path"].isin(set(pd.read_parquet(args.predictions, columns=["path"])["path"]))]
        df_all = df_all.reset_index(drop=True)
    sharp_path = args.out / "sharpness.csv"
    if sharp_path.exists():
        sharp_df = pd.read_csv(sharp_path)
    else:
        sharp_df = pd.DataFrame({"path": df_all["path"], "laplacian_var": sharpness(df_all["path"])})
        sharp_df.to_csv(sharp_path, index=False)
    sharp = dict(zip(sharp_df["path"], sharp_df["laplacian_var"]))

    all_rows, real0 = [], None
    for seed in args.seeds:
        rows, real = run_seed(df_all, seed, args, cfg, sharp)
        all_rows += rows
        real0 = real if real0 is None else real0
    res = pd.DataFrame(all_rows)
    res.to_csv(args.out / "results.csv", index=False)
    table = summarize(res)
    cf = res.groupby("seed")[["crossfit_minutes", "model_gender_acc", "model_age_mae"]].first()
    what = (
        f"held-out predictions {args.predictions}"
        if args.predictions is not None
        else f"cross-fit ({how}, {cfg.image_size} px, {cfg.num_epochs} epochs, batch {cfg.batch_size}, k={args.k})"
    )
    extra = (
        f"\n\n{what}: "
        + "; ".join(
            f"seed {s}: {r.crossfit_minutes:.1f} min, gender acc {r.model_gender_acc:.3f}, "
            f"age MAE {r.model_age_mae:.2f}"
            for s, r in cf.iterrows()
        )
        + f"\nleft out of the metrics (pixel-identical copies whose original labels conflict): gender "
        f"{int(res[res.task == 'gender'].n_excluded.iloc[0])}, "
        f"age {int(res[res.task == 'age'].n_excluded.iloc[0])} rows"
    )
    (args.out / "summary.md").write_text(table + extra + "\n")
    print("\n" + table + extra, flush=True)

    # The real labels, no injected noise: seed 0's cross-fitted predictions, scored against them.
    audit = audit_frame(real0, sharp, real0["race"])
    g = score_gender(real0, audit)
    a = score_age(real0, audit)
    top = pd.concat([real0[["path", "filename", "age", "gender"]], g, a], axis=1)
    top_g = top.sort_values("gender_flip_prob", ascending=False).head(50)
    top_a = top.sort_values("age_residual_z", ascending=False).head(50)
    pd.concat([top_g.assign(task="gender"), top_a.assign(task="age")]).to_csv(args.out / "top_real.csv", index=False)
    contact_sheet(
        top_g,
        "gender_label_reason",
        args.out / "top50_gender.png",
        "Top 50 suspected gender labels (real UTKFace labels)",
    )
    contact_sheet(
        top_a, "age_label_reason", args.out / "top50_age.png", "Top 50 suspected age labels (real UTKFace labels)"
    )
    print(f"\nwrote {args.out / 'results.csv'}, {args.out / 'summary.md'}, top50_gender.png, top50_age.png", flush=True)


if __name__ == "__main__":
    main()
