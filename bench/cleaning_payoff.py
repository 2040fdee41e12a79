"""Does cleaning pay? Noise injected into the training split only, the product's loop, five training sets.

For each (rate, seed): gender flipped on `rate` of the training images and age shifted 10-40 years on
`rate` (bench/mislabel_detection.py's `inject_noise`; the test split `test_2_folds_last` untouched), then
the product's own loop, non-interactively: a cross-fit on the noisy training split (flag-mislabels' cheap
recipe), the label scores (audits.mislabels), and `curate export`'s policies (curate.export.review). One
fixed training config then trains on
  (a) noisy: the noisy labels              (b) ours_drop: drop our suspects
  (c) ours_relabel: relabel our suspects
  (b2) ours_drop_broad: drop every label the scores call likely wrong, not only the review suspects:
      `curate export --drop-suspects --gender-max-score 0.8 --age-max-score 0.05` (P(gender wrong) >= 0.2;
      age about 2 usual errors off or more). The review thresholds (P >= 0.5, 3.5 usual errors) pick what
      a person should look at first; a policy that acts without review can afford to lose some right
      labels to remove more wrong ones. Thresholds fixed before this policy was measured, never on the test split.
  (f) ours_drop_estimated: as many gender labels dropped as the data says are wrong, not a fixed
      threshold: cleanlab's confident-joint count of label issues (`num_label_issues`, the estimator of
      Northcutt et al.; the same count its find_label_issues removes in (d)), taken in the order of our
      posterior P(flipped), plus our age suspects: `curate export --drop-suspects --gender-max-score T`
      with T the score of the last image in that count. (b2)'s fixed thresholds suit r = 0.2 and remove
      too much at r = 0.1; this follows the noise rate. Fixed before it was measured.
  (g) ours_mask_estimated: (f)'s labels masked instead of dropped (`curate export --mask-suspects
      --gender-max-score T`): a suspected gender gets weight 0 in the gender loss and its image still
      trains the age head, and the reverse. (f) showed that a whole-image drop for a gender error costs
      age accuracy (+1.41 y at r = 0.2) where the age noise itself cost none. Fixed before it was measured.
  (h) ours_mask_round2: (g) after a second cross-fit round (`curate flag-mislabels --rounds 2`): the cross-fit
      trained again on (g)'s masked labels, the labels scored again by those fold models, the new estimated
      number masked. Under heavy noise the first round's fold models learn part of the noise they are then
      asked to find. Fixed before it was measured.
  (h1) ours_round2_genders_round1_ages: (h)'s masked genders with (g)'s masked ages, a diagnostic: (h) cost
      the age head 0.4-0.65 y against (g) with every training seed; this tells whether round 2's age masks
      or its gender masks are why.
  (i) ours_round2_relabel_sure: (h), except that the genders the second round is sure are wrong
      (P(flipped) >= 0.9, gender_label_score <= 0.1) get the other gender instead of a mask: `curate export
      --mask-suspects --gender-max-score estimated --relabel-suspects --relabel-gender-max-score 0.1
      --relabel-what gender`. A masked label teaches nothing; a relabelled one at P >= 0.9 is right 9 times
      in 10 if the posterior is calibrated. Ages are never relabelled (the cheap cross-fit's suggested ages
      hurt, (c)). Threshold fixed from that argument before it was measured.
  (j) ours_mask_broad_ages: (g), and every age the scores call likely wrong masked too, not only the age
      review suspects: `curate export --mask-suspects --gender-max-score estimated --age-max-score 0.05`
      ((b2)'s age threshold, about 2 usual errors off, fixed in an earlier session). (g) masks only the
      ~400 age suspects (recall 0.07-0.13 of the shifted ages), and the shifted ages that cost the model
      are the children's (the shift can only go up there: the noisy model loses 1.3-2.9 y at 0-24 against
      the oracle, the adults next to nothing). Dropping at this threshold (b2) hurt at r = 0.1 because it
      took the images' genders too; a mask takes only the age. Fixed before it was measured.
  (k) ours_round2_broad_ages: (h) with (j)'s broad age masks (the round-2 scores).
  (m) ours_mask_two_sided_ages: (g)'s genders, and as many ages as (j) masks, chosen by
      audits.mislabels.age_two_sided_z instead of age_label_score: a residual large both at the label's
      estimate and among images with that label. (j)'s masks fall on right labels at the ends of the age
      range (precision 0.13-0.37 at true 70+ and 0.30 at 4-14 on a thorough cross-fit), where the fold
      models shrink ages towards the middle. Diagnosed on the training split's injected flags, chosen
      before it was trained. `curate export --mask-suspects --gender-max-score estimated --age-max-score 0.05
      --age-rank two-sided`.
  (n) ours_mask_two_sided_z: (g)'s genders, and every age at age_two_sided_z >= 1.96 masked: a count of
      its own rather than (j)'s (on the training split's injected flags 720-879 ages at precision 0.64-0.83
      where (m) masks ~2,250 at 0.48; (m) costs ~0.6 y at ages 24-40). 1.96 fixed before training.
      `curate export --mask-suspects --gender-max-score estimated --age-rank two-sided --age-min-z 1.96`.
  (p) ours_round2_two_sided_ages: (m)'s export on the second round's scores (`curate flag-mislabels --rounds
      2`, then (m)'s `curate export`). With the thorough cross-fit (m) recovers 73-76% of the gender loss and
      ties cleanlab's drop on gender on noise seed 0; on the cheap cross-fit a second round added 0.4-1.1 pp
      of gender over one ((h) against (g)). Chosen before it was trained.
  (d) cleanlab_drop: drop what cleanlab flags (find_label_issues
      for gender; its regression label-quality rank for age, as many as we flag)
  (d2) cleanlab_mask: (d)'s images, their flagged labels masked rather than dropped: the same mechanism
      as (g) with cleanlab's choice of labels, to tell the ranking's share of a gain from the masking's
  (e) oracle: the true labels
and every model (final weights, flip TTA) is measured on the clean test split: age MAE and gender accuracy
with paired-bootstrap 95% intervals against (a), the recovered fraction (noisy - policy) / (noisy -
oracle) per metric, and the same per age group and skin tone. Every step is cached under --out (a re-run
resumes; a training resumes from its last epoch) and its wall time recorded.

    python bench/cleaning_payoff.py --settings 0.2:0,0.2:1,0.1:0 --out runs/payoff
    python bench/cleaning_payoff.py --quick        # the embedded sample, tiny models: checks the machinery
    python bench/cleaning_payoff.py --recommended --out runs/payoff   # README's table, means over 3 seeds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mislabel_detection import audit_frame, cleanlab_age, cleanlab_gender, inject_noise, sharpness  # noqa: E402

POLICIES = ("noisy", "ours_drop", "ours_relabel", "ours_drop_broad", "ours_drop_estimated", "ours_mask_estimated",
            "ours_mask_round2", "ours_round2_genders_round1_ages", "ours_round2_relabel_sure", "ours_mask_broad_ages",
            "ours_round2_broad_ages", "ours_mask_two_sided_ages", "ours_mask_two_sided_z",
            "ours_round2_two_sided_ages", "cleanlab_drop", "cleanlab_mask",
            "oracle")  # fmt: skip
LABELS = {
    "noisy": "(a) noisy labels",
    "ours_drop": "(b) ours: drop suspects",
    "ours_relabel": "(c) ours: relabel suspects",
    "ours_drop_broad": "(b2) ours: drop likely-wrong labels",
    "ours_drop_estimated": "(f) ours: drop the estimated number of wrong labels",
    "ours_mask_estimated": "(g) ours: mask the estimated number of wrong labels",
    "ours_mask_round2": "(h) ours: (g) after a second cross-fit round",
    "ours_round2_genders_round1_ages": "(h1) (h)'s genders, (g)'s ages masked",
    "ours_round2_relabel_sure": "(i) ours: (h), the sure genders relabelled",
    "ours_mask_broad_ages": "(j) ours: (g), the likely-wrong ages masked too",
    "ours_mask_two_sided_ages": "(m) ours: (g), as many ages as (j) masked by the two-sided score",
    "ours_mask_two_sided_z": "(n) ours: (g), the ages at two-sided z >= 1.96 masked",
    "ours_round2_broad_ages": "(k) ours: (h), the likely-wrong ages masked too",
    "ours_round2_two_sided_ages": "(p) ours: (m) after a second cross-fit round",
    "cleanlab_drop": "(d) cleanlab: drop its issues",
    "cleanlab_mask": "(d2) cleanlab's issues, masked",
    "oracle": "(e) true labels",
}


# --recommended: README's comparison. (p) is the recommended policy, (m) its one-round, half-time form, (d) the peer.
RECOMMENDED = ("ours_round2_two_sided_ages", "ours_mask_two_sided_ages", "cleanlab_drop")
BROAD_GENDER, BROAD_AGE = 0.8, 0.05  # (b2): gender_label_score / age_label_score at most these
TWO_SIDED_Z = 1.96  # (n): an age masked at age_two_sided_z >= this (5% two-sided, fixed before training)
SURE_GENDER = 0.1  # (i): relabel a masked gender at gender_label_score at most this (P(flipped) >= 0.9)
ROUND2 = (
    "ours_mask_round2",
    "ours_round2_genders_round1_ages",
    "ours_round2_relabel_sure",
    "ours_round2_broad_ages",
    "ours_round2_two_sided_ages",
)


class Steps:
    """Cached steps with their wall times (steps.json), so an interrupted run resumes where it stopped."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "steps.json"
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, path: Path, fn, read=pd.read_parquet, write=None):
        if path.exists():
            return read(path)
        t0 = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        value = fn()
        path.parent.mkdir(parents=True, exist_ok=True)
        (write or (lambda v, p: v.to_parquet(p, index=False)))(value, path)
        self.times[name] = round(time.time() - t0, 1)
        self.path.write_text(json.dumps(self.times, indent=1))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {self.times[name] / 60:.1f} min", flush=True)
        return value


def configs(
    quick: bool,
    threads: int,
    reference_crossfit: bool = False,
    policy_l1: float | None = None,
    crossfit_sets: tuple[str, ...] = (),
    recipe: str = "cheap",
):
    """(cross-fit config, the policies' training config): flag-mislabels' cheap recipe (on today's defaults;
    on the reference run's, L1 1e-4, with `reference_crossfit`: how every figure before 2026-12-06 was
    measured; `crossfit_sets` (key=value) change it as `flag-mislabels --set` does; `recipe`: as
    `flag-mislabels --recipe`), and one cheap config for every policy (the reference run's, as it always
    was, unless `policy_l1` sets its L1 penalty)."""
    from dataclasses import asdict

    from trainer.config import TrainConfig, load_config, parse_overrides, reference_config, replace
    from trainer.crossfit import cheap_config, recipe_config

    keep = {"threads": threads, "keep_epoch_checkpoints": False}
    base = reference_config(**keep)  # the policies' config: every payoff figure was measured with it
    if policy_l1 is not None:
        base = replace(base, l1_lambda=policy_l1)
    cf = base if reference_crossfit else replace(TrainConfig(), **keep)
    sets = parse_overrides(crossfit_sets)
    cf = load_config(base=asdict(cf), overrides=sets)
    if quick:
        tiny = {"image_size": 64, "num_epochs": 2, "override_cycle_epoch_count": 2, "batch_size": 32}
        return replace(cf, **{**tiny, **{k: getattr(cf, k) for k in tiny if k in sets}}), replace(base, **tiny)
    # As flag-mislabels' crossfit_config: a size or length named in `sets` goes into the recipe, so the
    # one-cycle schedule is scaled to it.
    kept = tuple(k for k in ("image_size", "num_epochs", "batch_size") if k in sets)
    return recipe_config(cf, recipe, kept), cheap_config(base, image_size=64, num_epochs=8)


def review_frame(noisy: pd.DataFrame, g: pd.DataFrame, a: pd.DataFrame) -> pd.DataFrame:
    """flag-mislabels' output for the noisy training split, as the review table `curate export` reads."""
    from curate.export.review import normalize_review

    raw = pd.DataFrame({"path": noisy["path"], "filename": noisy["filename"], "content_hash": noisy["content_hash"],
                        "tags": ""})  # fmt: skip
    for c in ("is_gender_label_issue", "gender_label_score", "gender_suggested", "gender_label_reason"):
        raw[c] = g[c].to_numpy()
    for c in ("is_age_label_issue", "age_label_score", "age_two_sided_z", "age_suggested", "age_label_reason"):
        raw[c] = a[c].to_numpy()
    return normalize_review(raw, "flags")


def estimated_gender_threshold(pred: pd.DataFrame, flags: pd.DataFrame) -> tuple[float, int]:
    """(gender_label_score threshold, count): what `curate export --gender-max-score estimated` reads from
    flag-mislabels (audits.mislabels.estimated_gender_errors: cleanlab's confident-joint count, our order)."""
    from audits.mislabels import estimated_gender_errors

    est = estimated_gender_errors(pred["gender"], pred["gender_prob"], flags["gender_label_score"])
    return est["max_score"], est["count"]


def policy_sets(train: pd.DataFrame, noisy: pd.DataFrame, pred: pd.DataFrame, flags: pd.DataFrame) -> dict:
    """The training manifest of every policy and what each changed."""
    from curate.export.common import Policy
    from curate.export.review import apply_decisions

    out = {"noisy": (noisy, {}), "oracle": (train, {})}
    thr, k = estimated_gender_threshold(pred, flags)
    for name, pol in (
        ("ours_drop", Policy(drop_suspects=True)),
        ("ours_relabel", Policy(relabel_suspects=True)),
        ("ours_drop_broad", Policy(drop_suspects=True, gender_max_score=BROAD_GENDER, age_max_score=BROAD_AGE)),
        ("ours_drop_estimated", Policy(drop_suspects=True, gender_max_score=thr)),
        ("ours_mask_estimated", Policy(mask_suspects=True, gender_max_score=thr)),
        ("ours_mask_broad_ages", Policy(mask_suspects=True, gender_max_score=thr, age_max_score=BROAD_AGE)),
        ("ours_mask_two_sided_ages",
         Policy(mask_suspects=True, gender_max_score=thr, age_max_score=BROAD_AGE, age_rank="two-sided")),
        ("ours_mask_two_sided_z",
         Policy(mask_suspects=True, gender_max_score=thr, age_rank="two-sided", age_min_z=TWO_SIDED_Z)),
    ):  # fmt: skip
        kept, removed, corr = apply_decisions(noisy, flags, pol)
        changes = {"removed": len(removed), "relabelled": int((corr["label_source"] == "relabelled").sum())}
        if pol.mask_suspects:
            changes |= _mask_counts(kept)
        out[name] = (kept, changes)
    for name in (
        "ours_drop_estimated",
        "ours_mask_estimated",
        "ours_mask_broad_ages",
        "ours_mask_two_sided_ages",
        "ours_mask_two_sided_z",
    ):
        out[name][1]["estimated_gender_errors"] = k
    g_issue = cleanlab_gender(pred, "self_confidence") >= 2  # flagged by find_label_issues
    n_age = int(flags["is_age_label_issue"].sum())
    a_issue = np.zeros(len(pred), bool)
    if n_age:
        a_issue[np.argsort(-cleanlab_age(pred), kind="stable")[:n_age]] = True
    drop = g_issue | a_issue
    out["cleanlab_drop"] = (noisy[~drop].reset_index(drop=True), {"removed": int(drop.sum())})
    masked = noisy.assign(gender_label_weight=np.where(g_issue, 0.0, 1.0), age_label_weight=np.where(a_issue, 0.0, 1.0))
    out["cleanlab_mask"] = (masked, _mask_counts(masked))
    return out


def second_round(
    noisy: pd.DataFrame,
    masked: pd.DataFrame,
    audit: pd.DataFrame,
    g_true: np.ndarray,
    out: Path,
    steps: Steps,
    cfg,
    seed: int,
    quiet: bool,
) -> tuple[dict, dict]:
    """(h), (h1), (i), (k), (p): the cross-fit again on (g)'s masked labels (what `flag-mislabels --rounds 2`
    trains on: round 1's estimated wrong genders and its age suspects masked), the noisy labels scored by those
    fold models, and (g)'s policy applied to the new scores (h); (h) with (g)'s age masks (h1); (h) with the
    sure genders relabelled (i); (h) with the likely-wrong ages masked (k); (m)'s rule on the new scores (p).
    Returns ({policy: (manifest, changes)}, how the masked genders compare with the injected flips in both
    rounds)."""
    from audits.mislabels import score_age, score_gender
    from curate.export.common import Policy
    from curate.export.review import apply_decisions
    from trainer.crossfit import crossfit

    pred = steps.run("cross-fit round 2", out / "crossfit2_predictions.parquet",
                     lambda: crossfit(masked, out / "crossfit2", cfg, k=2, seed=seed, progress=not quiet))  # fmt: skip
    flags = review_frame(noisy, score_gender(pred, audit), score_age(pred, audit))
    thr, k = estimated_gender_threshold(pred, flags)
    kept, _, _ = apply_decisions(noisy, flags, Policy(mask_suspects=True, gender_max_score=thr))
    sure = Policy(mask_suspects=True, gender_max_score=thr, relabel_suspects=True,
                  relabel_gender_max_score=SURE_GENDER, relabel_what="gender")  # fmt: skip
    relab, _, _ = apply_decisions(noisy, flags, sure)
    wide = Policy(mask_suspects=True, gender_max_score=thr, age_max_score=BROAD_AGE)
    broad, _, _ = apply_decisions(noisy, flags, wide)
    two = Policy(mask_suspects=True, gender_max_score=thr, age_max_score=BROAD_AGE, age_rank="two-sided")
    two_sided, _, _ = apply_decisions(noisy, flags, two)
    ages1 = kept.assign(age_label_weight=kept["path"].map(masked.set_index("path")["age_label_weight"]).to_numpy())
    share = lambda hit, of: float(hit[of].mean()) if of.any() else float("nan")  # noqa: E731
    info = {}
    for r, df in (("round1", masked), ("round2", kept)):
        m = df["gender_label_weight"].to_numpy(float) == 0
        info |= {
            f"{r}_genders_masked": int(m.sum()),
            f"{r}_precision": share(g_true, m),
            f"{r}_recall": share(m, g_true),
        }
    flipped = (relab["gender"] != relab["original_gender"]).to_numpy()
    info |= {"relabelled_genders": int(flipped.sum()), "relabelled_precision": share(g_true, flipped)}
    est = {"estimated_gender_errors": k}
    sets = {
        "ours_mask_round2": (kept, {**_mask_counts(kept), **est}),
        "ours_round2_genders_round1_ages": (ages1, {**_mask_counts(ages1), **est}),
        "ours_round2_relabel_sure": (relab, {**_mask_counts(relab), **est, "relabelled": int(flipped.sum())}),
        "ours_round2_broad_ages": (broad, {**_mask_counts(broad), **est}),
        "ours_round2_two_sided_ages": (two_sided, {**_mask_counts(two_sided), **est}),
    }
    return sets, info


def _mask_counts(df: pd.DataFrame) -> dict:
    from core.manifest import masked_label_counts

    return {f"{k}_masked": n for k, n in masked_label_counts(df).items()}


def train_and_predict(name: str, manifest: pd.DataFrame, test_dir: Path, run_dir: Path, cfg, steps: Steps):
    from curate.compare import final_checkpoint
    from trainer.config import replace
    from trainer.evaluate import predict_manifest
    from trainer.train import train

    def fit():
        split = run_dir / "train"
        split.mkdir(parents=True, exist_ok=True)
        manifest.to_csv(split / "manifest.csv", index=False)
        meta = run_dir / "run" / "metadata.json"
        resume = meta.exists()
        train(replace(cfg, train_path=str(split), val_path=str(test_dir)), run_dir / "run", resume=resume)
        test = pd.read_csv(test_dir / "manifest.csv", dtype={"content_hash": str})
        return predict_manifest(final_checkpoint(run_dir / "run"), test, threads=cfg.threads, tta=True)

    return steps.run(f"{run_dir.parent.name}/{name}: train + predict", run_dir / "test_predictions.parquet", fit)


def measure(test: pd.DataFrame, preds: dict, audits: pd.DataFrame | None, n_boot: int) -> pd.DataFrame:
    """Each policy against (a) noisy on the clean test split: paired bootstrap per group, recovered fraction."""
    from curate.compare import group_tables, joint_frame

    rows = []
    for name in (n for n in POLICIES if n in preds):
        f = joint_frame(test, preds["noisy"], preds[name], audits)
        r, _ = group_tables(f, n_boot=n_boot)
        r = r[r["dimension"].isin(["overall", "age_group", "skin_category"])].assign(policy=name)
        rows.append(r)
    res = pd.concat(rows, ignore_index=True)
    key = ["dimension", "group", "metric"]
    oracle = res[res["policy"] == "oracle"].set_index(key)
    at = pd.MultiIndex.from_frame(res[key])
    gap = oracle["new"].reindex(at).to_numpy() - res["baseline"].to_numpy()
    # a fraction of a loss the test split cannot tell from zero (the oracle's interval against (a) holds 0)
    # is noise over noise: left out rather than printed as 88x recovered
    real = (oracle["delta_lo"].reindex(at).to_numpy() > 0) | (oracle["delta_hi"].reindex(at).to_numpy() < 0)
    res["recovered"] = np.where(real & (np.abs(gap) > 1e-9), (res["new"] - res["baseline"]) / gap, np.nan)
    return res


def head_to_head(test: pd.DataFrame, preds: dict, n_boot: int, peer: str = "cleanlab_drop") -> pd.DataFrame:
    """Each of our policies against the cleanlab peer on the same test images (paired bootstrap): whether
    a difference between the two is real, which two intervals against (a) cannot say."""
    from curate.compare import group_tables, joint_frame

    rows = []
    for name in (n for n in POLICIES if n.startswith("ours_") and n in preds and peer in preds):
        r, _ = group_tables(joint_frame(test, preds[peer], preds[name]), n_boot=n_boot)
        rows.append(r[r["dimension"] == "overall"].assign(policy=name, peer=peer))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def run_setting(rate: float, seed: int, train: pd.DataFrame, test: pd.DataFrame, test_dir: Path, args, cfgs):
    from audits.mislabels import score_age, score_gender
    from trainer.crossfit import crossfit

    out = args.out / f"r{rate:g}_s{seed}"
    steps = Steps(out)
    noisy, g_true, a_true = inject_noise(train, seed, rate)
    sharp = steps.run(
        "sharpness",
        args.out / "sharpness.parquet",
        lambda: pd.DataFrame({"path": train["path"], "laplacian_var": sharpness(train["path"])}),
    )
    pred = steps.run(
        "cross-fit",
        out / "crossfit_predictions.parquet",
        lambda: crossfit(noisy, out / "crossfit", cfgs[0], k=2, seed=seed, progress=not args.quiet),
    )
    audit = audit_frame(pred, dict(zip(sharp["path"], sharp["laplacian_var"])), train["race"])
    g, a = score_gender(pred, audit), score_age(pred, audit)
    flags = review_frame(noisy, g, a)
    gi, ai = g["is_gender_label_issue"].to_numpy(bool), a["is_age_label_issue"].to_numpy(bool)
    share = lambda hit, of: float(hit[of].mean()) if of.any() else float("nan")  # noqa: E731
    detect = {
        "gender_flagged": int(gi.sum()),
        "gender_precision": share(g_true, gi),
        "gender_recall": share(gi, g_true),
        "age_flagged": int(ai.sum()),
        "age_precision": share(a_true, ai),
        "age_recall": share(ai, a_true),
    }
    gb = g["gender_label_score"].to_numpy(float) <= BROAD_GENDER
    ab = a["age_label_score"].to_numpy(float) <= BROAD_AGE
    detect.update(broad_gender_flagged=int(gb.sum()), broad_gender_precision=share(g_true, gb),
                  broad_gender_recall=share(gb, g_true), broad_age_flagged=int(ab.sum()),
                  broad_age_precision=share(a_true, ab), broad_age_recall=share(ab, a_true))  # fmt: skip
    sets = policy_sets(train, noisy, pred, flags)
    wanted = {"noisy", "oracle", *(args.policies or POLICIES)}  # (a) and (e) are what the others are measured by
    if wanted & set(ROUND2):
        more, detect["round2"] = second_round(noisy, sets["ours_mask_estimated"][0], audit, g_true, out, steps,
                                              cfgs[0], seed, args.quiet)  # fmt: skip
        sets |= more
    trained = [n for n in POLICIES if n in wanted and not (rate == 0 and n == "oracle")]  # rate 0: (e) is (a)
    preds = {name: train_and_predict(name, sets[name][0], test_dir, out / name, cfgs[1], steps) for name in trained}
    preds.setdefault("oracle", preds["noisy"])
    res = measure(test, preds, args.audits, args.n_boot).assign(rate=rate, seed=seed)
    h2h = head_to_head(test, preds, args.n_boot)
    changes = {name: {"n_train": len(sets[name][0]), **sets[name][1]} for name in POLICIES if name in preds}
    keep = ("policy", "metric", "baseline", "new", "delta", "delta_lo", "delta_hi")
    summary = {"rate": rate, "seed": seed, "detection": detect, "changes": changes, "wall_s": steps.times,
               "vs_cleanlab": [{k: r[k] for k in keep} for _, r in h2h.iterrows()]}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    res.to_csv(out / "results.csv", index=False)
    return res, summary


def _cells(m: pd.DataFrame, metric: str, scale: float) -> list[str]:
    """value, paired difference to (a) with its 95% interval, recovered fraction."""
    r = m.loc[metric]
    rec = f"{r['recovered']:.2f}" if r["recovered"] == r["recovered"] else "-"
    diff = f"{r['delta'] * scale:+.2f} [{r['delta_lo'] * scale:+.2f}, {r['delta_hi'] * scale:+.2f}]"
    return [f"{r['new'] * scale:.2f}", diff, rec]


def report(results: pd.DataFrame, summaries: list[dict], out: Path) -> str:
    lines = ["# Cleaning payoff", "", "Test split untouched (true labels); each model's final weights, flip TTA.", ""]
    head = ["policy", "train images", "changed", "age MAE", "vs (a), 95% CI", "recovered", "gender acc %",
            "vs (a), pp, 95% CI", "recovered"]  # fmt: skip
    for s in summaries:
        mine = (results["rate"] == s["rate"]) & (results["seed"] == s["seed"]) & (results["dimension"] == "overall")
        d = s["detection"]
        lines += [
            f"## noise rate {s['rate']:g}, seed {s['seed']}",
            "",
            (
                f"No injected noise: UTKFace's own labels, the test split's errors included. Flags on the training "
                f"split: gender {d['gender_flagged']}, age {d['age_flagged']}; likely-wrong (b2): gender "
                f"{d.get('broad_gender_flagged', '-')}, age {d.get('broad_age_flagged', '-')}. (e) is (a)."
            )
            if s["rate"] == 0
            else f"Flags on the noisy training split: gender {d['gender_flagged']} (precision "
            f"{d['gender_precision']:.2f}, recall {d['gender_recall']:.2f}); age {d['age_flagged']} (precision "
            f"{d['age_precision']:.2f}, recall {d['age_recall']:.2f})"
            + (
                f"; likely-wrong (b2): gender {d['broad_gender_flagged']} ({d['broad_gender_precision']:.2f} / "
                f"{d['broad_gender_recall']:.2f}), age {d['broad_age_flagged']} ({d['broad_age_precision']:.2f} / "
                f"{d['broad_age_recall']:.2f})"
                if "broad_age_flagged" in d
                else ""
            )
            + "."
            + (
                " Second cross-fit round (h): genders masked {round1_genders_masked} -> {round2_genders_masked}, "
                "precision {round1_precision:.2f} -> {round2_precision:.2f}, recall {round1_recall:.2f} -> "
                "{round2_recall:.2f} (against the injected flips).".format(**d["round2"])
                if "round2" in d and s["rate"] > 0
                else ""
            ),
            "",
            "| " + " | ".join(head) + " |",
            "|---|---:|---|---:|---|---:|---:|---|---:|",
        ]
        for name in (n for n in POLICIES if n in s["changes"]):
            m = results[mine & (results["policy"] == name)].set_index("metric")
            c = s["changes"][name]
            what = ", ".join(f"{k} {v}" for k, v in c.items() if k != "n_train") or "-"
            cells = [LABELS[name], str(c["n_train"]), what]
            cells += _cells(m, "age MAE", 1) + _cells(m, "gender accuracy", 100)
            lines.append("| " + " | ".join(cells) + " |")
        vs = s.get("vs_cleanlab") or []
        if vs:
            lines += ["", "Ours against (d) cleanlab's drop, same test images (paired bootstrap 95% interval):", ""]
            for r in vs:
                k = 100 if r["metric"] == "gender accuracy" else 1
                lines.append(f"- {LABELS[r['policy']]}, {r['metric']}: {r['new'] * k:.2f} vs {r['baseline'] * k:.2f}, "
                             f"{r['delta'] * k:+.2f} [{r['delta_lo'] * k:+.2f}, {r['delta_hi'] * k:+.2f}]")  # fmt: skip
        lines += ["", "Wall time per step (s): " + json.dumps(s["wall_s"]), ""]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "utkface" / "UTKFace")
    ap.add_argument("--split", type=Path, help="A split folder (train_8_folds_first, test_2_folds_last) "
                    "[default: made under --out with `curate split`'s rules]")  # fmt: skip
    ap.add_argument("--settings", default="0.2:0,0.2:1,0.1:0", help="rate:seed, comma-separated, in this order")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "payoff")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--policies", type=lambda v: v.split(","), help=f"train only these (comma-separated, of "
                    f"{', '.join(POLICIES)}); (a) and (e) always [default: all]")  # fmt: skip
    ap.add_argument("--reference-crossfit", action="store_true", help="cross-fit on the reference run's config "
                    "(L1 1e-4): flag-mislabels' recipe before 2026-12-06, that of every earlier figure")  # fmt: skip
    ap.add_argument("--policy-l1", type=float, help="the L1 penalty of the policies' training config [default: "
                    "the reference run's 1e-4, as every payoff figure; curate train's default: 1e-6]")  # fmt: skip
    ap.add_argument("--crossfit-set", action="append", default=[], metavar="KEY=VALUE", help="change the "
                    "cross-fit's config as `flag-mislabels --set` does (repeatable)")  # fmt: skip
    ap.add_argument("--crossfit-recipe", choices=["cheap", "thorough"], help="the cross-fit's recipe, as "
                    "`flag-mislabels --recipe` [default: cheap; thorough with --recommended]")  # fmt: skip
    ap.add_argument("--training-seeds", metavar="N,N", help="after the settings, re-train each setting's policies "
                    "with these training seeds too (bench/payoff_seeds.py) and write the mean over seeds, with the "
                    "recovered fractions, to OUT/seeds_report.md")  # fmt: skip
    ap.add_argument("--recommended", action="store_true", help="README's comparison from one command: (a), (p), "
                    "(m), (d) and (e), the thorough cross-fit, the policies at L1 1e-6, training seeds 1 and 2 "
                    "besides 42; an option given as well wins")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="the embedded sample, tiny models")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    unknown = set(args.policies or ()) - set(POLICIES)
    if unknown:
        ap.error(f"unknown policies: {', '.join(sorted(unknown))} (known: {', '.join(POLICIES)})")
    if args.recommended:
        args.policies = args.policies or list(RECOMMENDED)
        args.crossfit_recipe = args.crossfit_recipe or "thorough"
        args.policy_l1 = 1e-6 if args.policy_l1 is None else args.policy_l1
        args.training_seeds = args.training_seeds or "1,2"
    args.crossfit_recipe = args.crossfit_recipe or "cheap"
    if args.quick:
        args.data, args.out = REPO / "dataset" / "sample", args.out.parent / "payoff_quick"
        args.settings, args.n_boot = "0.2:0", 200
    from audits.runner import AuditConfig, run_audit
    from curate.splits import make_splits

    args.out.mkdir(parents=True, exist_ok=True)
    split = args.split or args.out / "split"
    if not (split / "test_2_folds_last" / "manifest.csv").exists():
        make_splits(args.data, split, progress=not args.quiet)
    read = lambda s: pd.read_csv(split / s / "manifest.csv", dtype={"content_hash": str})  # noqa: E731
    train, test = read("train_8_folds_first"), read("test_2_folds_last")
    aud = Steps(args.out).run("test audits (skin tone)", args.out / "test_audits.parquet",
                              lambda: run_audit(test["path"].tolist(), config=AuditConfig()).table)  # fmt: skip
    args.audits = test[["path"]].merge(aud[["path", "skin_category"]], on="path", how="left")
    cfgs = configs(args.quick, args.threads, args.reference_crossfit, args.policy_l1, tuple(args.crossfit_set),
                   args.crossfit_recipe)  # fmt: skip
    results, summaries = [], []
    for item in args.settings.split(","):
        rate, seed = item.split(":")
        res, summary = run_setting(float(rate), int(seed), train, test, split / "test_2_folds_last", args, cfgs)
        results.append(res)
        summaries.append(summary)
        print(report(pd.concat(results, ignore_index=True), summaries, args.out), flush=True)
    pd.concat(results, ignore_index=True).to_csv(args.out / "results.csv", index=False)
    if args.training_seeds:
        from payoff_seeds import every_setting

        trained = [n for n in POLICIES if n in {"noisy", "oracle", *(args.policies or POLICIES)}]
        print(every_setting(args.out, split, args.settings.split(","), trained, args.training_seeds, args.threads),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
