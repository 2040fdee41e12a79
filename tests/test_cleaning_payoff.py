"""`bench/cleaning_payoff.py` end to end from one command on the embedded sample (tiny models): the noise
goes into the training split only, the noisy baseline, every policy and the oracle train with one config
and seed and are tested on the same untouched images, each policy's training set is what its rule says,
and a second run resumes from the cache and reports the same figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

POLICIES = ("noisy", "ours_drop", "ours_relabel", "ours_drop_broad", "ours_drop_estimated", "ours_mask_estimated",
            "ours_mask_round2", "ours_round2_genders_round1_ages", "ours_round2_relabel_sure", "ours_mask_broad_ages",
            "ours_round2_broad_ages", "ours_mask_two_sided_ages", "ours_mask_two_sided_z",
            "ours_round2_two_sided_ages", "cleanlab_drop", "cleanlab_mask", "oracle")  # fmt: skip


@pytest.fixture(scope="module")
def payoff(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("payoff")
    cmd = [sys.executable, str(REPO / "bench" / "cleaning_payoff.py"), "--quick", "--quiet", "--out", str(root / "x")]
    env = {**os.environ, "CURATE_CACHE_DIR": str(root / "cache")}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "payoff_quick", res.stdout


def test_every_policy_trains_with_one_config_seed_and_test_set(payoff):
    out, _ = payoff
    setting = out / "r0.2_s0"
    test = pd.read_csv(out / "split" / "test_2_folds_last" / "manifest.csv", dtype={"content_hash": str})
    metas = {p: json.loads((setting / p / "run" / "metadata.json").read_text()) for p in POLICIES}
    strip = lambda c: {k: v for k, v in c.items() if k != "train_path"}  # noqa: E731 - the one thing that differs
    first = strip(metas["noisy"]["config"])
    for p, m in metas.items():
        assert strip(m["config"]) == first, p
        assert m["val_manifest_hash"] == metas["noisy"]["val_manifest_hash"] and m["status"] == "complete", p
        pred = pd.read_parquet(setting / p / "test_predictions.parquet")
        assert list(pred["path"]) == list(test["path"]), p  # the same test images, in the same order
    assert first["seed"] == metas["oracle"]["config"]["seed"] and first["val_path"].endswith("test_2_folds_last")


def test_noise_only_in_the_training_split_and_policies_follow_their_rules(payoff):
    from mislabel_detection import inject_noise

    out, _ = payoff
    setting = out / "r0.2_s0"
    read = lambda p: pd.read_csv(p / "manifest.csv", dtype={"content_hash": str})  # noqa: E731
    train, test = read(out / "split" / "train_8_folds_first"), read(out / "split" / "test_2_folds_last")
    sets = {p: read(setting / p / "train") for p in POLICIES}
    noisy, g_true, a_true = inject_noise(train, 0, 0.2)
    assert g_true.sum() == a_true.sum() == round(0.2 * len(train))
    assert list(sets["noisy"]["gender"]) == list(noisy["gender"]) and list(sets["noisy"]["age"]) == list(noisy["age"])
    assert list(sets["oracle"]["gender"]) == list(train["gender"]) and list(sets["oracle"]["age"]) == list(train["age"])
    for p, df in sets.items():
        assert not set(df["content_hash"]) & set(test["content_hash"]), p  # no test image trains any model
    summary = json.loads((setting / "summary.json").read_text())
    for p in POLICIES:
        assert summary["changes"][p]["n_train"] == len(sets[p]), p
    from cleanlab.count import num_label_issues

    pred = pd.read_parquet(setting / "crossfit_predictions.parquet")
    probs = pd.concat([1 - pred["gender_prob"], pred["gender_prob"]], axis=1).to_numpy()
    k = num_label_issues(pred["gender"].to_numpy(int), probs)  # (f) drops as many genders as this estimate
    est = summary["changes"]["ours_drop_estimated"]
    assert est["estimated_gender_errors"] == k and est["removed"] >= k and est["relabelled"] == 0
    drops = ("ours_drop", "ours_drop_broad", "ours_drop_estimated", "cleanlab_drop")
    for p in drops:  # dropping only removes rows, labels unchanged
        kept = sets[p].merge(noisy, on="path", suffixes=("", "_noisy"))
        assert len(kept) == len(sets[p]) == len(noisy) - summary["changes"][p]["removed"], p
        assert (kept["gender"] == kept["gender_noisy"]).all() and (kept["age"] == kept["age_noisy"]).all(), p
    for p, like in (("ours_mask_estimated", "ours_drop_estimated"), ("cleanlab_mask", "cleanlab_drop")):
        # masking keeps every image and label and zeroes the weights of exactly what the drop removes
        m = sets[p]
        assert list(m["path"]) == list(noisy["path"]) and (m["gender"] == noisy["gender"]).all(), p
        assert (m["age"] == noisy["age"]).all(), p
        w = m[["gender_label_weight", "age_label_weight"]]
        assert w.isin([0.0, 1.0]).all().all(), p
        assert set(m.loc[(w == 0).any(axis=1), "path"]) == set(noisy["path"]) - set(sets[like]["path"]), p
        assert summary["changes"][p]["gender_masked"] == int((w["gender_label_weight"] == 0).sum()), p
    assert summary["changes"]["ours_mask_estimated"]["gender_masked"] >= k
    # (h): the second cross-fit trained on (g)'s masked labels, and (g)'s rule applied to its scores
    folds = pd.concat([pd.read_csv(f) for f in sorted((setting / "crossfit2").glob("fold_*/holdout.csv"))])
    g = sets["ours_mask_estimated"].set_index("path")
    assert len(folds) == len(noisy) and folds.set_index("path")["gender_label_weight"].equals(
        g.loc[folds["path"], "gender_label_weight"].rename_axis("path"))  # fmt: skip
    h = sets["ours_mask_round2"]
    assert list(h["path"]) == list(noisy["path"]) and (h["gender"] == noisy["gender"]).all()
    pred2 = pd.read_parquet(setting / "crossfit2_predictions.parquet")
    k2 = num_label_issues(pred2["gender"].to_numpy(int), pd.concat([1 - pred2["gender_prob"], pred2["gender_prob"]],
                                                                     axis=1).to_numpy())  # fmt: skip
    assert summary["changes"]["ours_mask_round2"]["estimated_gender_errors"] == k2
    assert summary["changes"]["ours_mask_round2"]["gender_masked"] >= k2
    r2 = summary["detection"]["round2"]
    assert r2["round1_genders_masked"] == summary["changes"]["ours_mask_estimated"]["gender_masked"]
    assert r2["round2_genders_masked"] == summary["changes"]["ours_mask_round2"]["gender_masked"]
    # (h1): (h)'s gender masks with (g)'s age masks; (i): (h) with the sure genders relabelled, ages untouched
    h1, i = sets["ours_round2_genders_round1_ages"], sets["ours_round2_relabel_sure"]
    assert list(h1["path"]) == list(h["path"]) == list(i["path"])
    assert (h1["gender_label_weight"] == h["gender_label_weight"]).all()
    assert (h1["age_label_weight"] == g.loc[h1["path"], "age_label_weight"].to_numpy()).all()
    assert (i["age"] == noisy["age"]).all() and (i["age_label_weight"] == h["age_label_weight"]).all()
    flipped = i["gender"] != noisy["gender"]
    assert (i.loc[flipped, "gender"] == 1 - noisy.loc[flipped, "gender"]).all()
    h_masked = h["gender_label_weight"] == 0
    assert (flipped <= h_masked).all() and ((i["gender_label_weight"] == 0) == (h_masked & ~flipped)).all()
    assert int(flipped.sum()) == summary["changes"]["ours_round2_relabel_sure"]["relabelled"]
    assert r2["relabelled_genders"] == int(flipped.sum())
    # (j) / (k): (g)'s / (h)'s gender masks, and every age at age_label_score <= 0.05 masked besides the suspects
    from mislabel_detection import audit_frame

    from audits.mislabels import score_age

    sharp = pd.read_parquet(out / "sharpness.parquet")
    for p, like, preds in (("ours_mask_broad_ages", "ours_mask_estimated", pred),
                           ("ours_round2_broad_ages", "ours_mask_round2", pred2)):  # fmt: skip
        m, base = sets[p], sets[like]
        assert list(m["path"]) == list(noisy["path"]) and (m["gender"] == noisy["gender"]).all(), p
        assert (m["age"] == noisy["age"]).all() and (m["gender_label_weight"] == base["gender_label_weight"]).all(), p
        a = score_age(preds, audit_frame(preds, dict(zip(sharp["path"], sharp["laplacian_var"])), train["race"]))
        wide = (a["is_age_label_issue"] | (a["age_label_score"] <= 0.05)).to_numpy()
        assert ((m["age_label_weight"] == 0).to_numpy() == wide).all(), p
        assert ((base["age_label_weight"] == 0) <= (m["age_label_weight"] == 0)).all(), p
        assert summary["changes"][p]["age_masked"] == int(wide.sum()), p
    # (m): (g)'s gender masks, as many ages as (j) masks, the highest by the two-sided score
    from audits.mislabels import age_two_sided_z

    m, g_set, j_set = sets["ours_mask_two_sided_ages"], sets["ours_mask_estimated"], sets["ours_mask_broad_ages"]
    assert (m["gender_label_weight"] == g_set["gender_label_weight"]).all() and (m["age"] == noisy["age"]).all()
    masked = (m["age_label_weight"] == 0).to_numpy()
    assert masked.sum() == (j_set["age_label_weight"] == 0).sum() == summary["changes"]["ours_mask_two_sided_ages"][
        "age_masked"]  # fmt: skip
    z2 = age_two_sided_z(pred, audit_frame(pred, dict(zip(sharp["path"], sharp["laplacian_var"])), train["race"]))
    z2 = z2.fillna(-1).to_numpy()
    assert masked.any() and z2[masked].min() >= z2[~masked].max()
    # (n): (g)'s gender masks, every age at two-sided z >= 1.96, however many (j) masks
    n = sets["ours_mask_two_sided_z"]
    assert (n["gender_label_weight"] == g_set["gender_label_weight"]).all() and (n["age"] == noisy["age"]).all()
    assert ((n["age_label_weight"] == 0).to_numpy() == (z2 >= 1.96)).all()
    assert summary["changes"]["ours_mask_two_sided_z"]["age_masked"] == int((z2 >= 1.96).sum())
    # (p): (m)'s rule on the second round's scores: (h)'s gender masks, as many ages as (k), two-sided
    p, k_set = sets["ours_round2_two_sided_ages"], sets["ours_round2_broad_ages"]
    assert (p["gender_label_weight"] == h["gender_label_weight"]).all() and (p["age"] == noisy["age"]).all()
    p_masked = (p["age_label_weight"] == 0).to_numpy()
    assert p_masked.sum() == (k_set["age_label_weight"] == 0).sum() == summary["changes"][
        "ours_round2_two_sided_ages"]["age_masked"]  # fmt: skip
    zp = age_two_sided_z(pred2, audit_frame(pred2, dict(zip(sharp["path"], sharp["laplacian_var"])), train["race"]))
    zp = zp.fillna(-1).to_numpy()
    assert p_masked.any() and zp[p_masked].min() >= zp[~p_masked].max()
    relabel = sets["ours_relabel"].merge(noisy, on="path", suffixes=("", "_noisy"))
    changed = (relabel["gender"] != relabel["gender_noisy"]) | (relabel["age"] != relabel["age_noisy"])
    assert len(relabel) == len(noisy) and changed.sum() == summary["changes"]["ours_relabel"]["relabelled"]


def test_a_second_run_resumes_from_the_cache_with_the_same_report(payoff, tmp_path):
    out, first = payoff
    report = (out / "report.md").read_text()
    assert "(e) true labels" in report and "(b2) ours: drop likely-wrong labels" in report
    res = pd.read_csv(out / "results.csv")
    assert set(res["policy"]) == set(POLICIES) and res["delta_lo"].le(res["delta_hi"]).all()
    # each of our policies head to head with cleanlab's drop: the same figures as their rows against (a)
    vs = json.loads((out / "r0.2_s0" / "summary.json").read_text())["vs_cleanlab"]
    ours = [p for p in POLICIES if p.startswith("ours_")]
    assert sorted((v["policy"], v["metric"]) for v in vs) == sorted((p, m) for p in ours for m in ("age MAE",
                                                                    "gender accuracy"))  # fmt: skip
    overall = res[res["dimension"] == "overall"].set_index(["policy", "metric"])["new"]
    for v in vs:
        assert v["new"] == pytest.approx(overall[(v["policy"], v["metric"])])
        assert v["baseline"] == pytest.approx(overall[("cleanlab_drop", v["metric"])])
        assert v["delta_lo"] <= v["delta"] <= v["delta_hi"] and v["delta"] == pytest.approx(v["new"] - v["baseline"])
    assert "Ours against (d) cleanlab's drop" in report
    cmd = [
        sys.executable,
        str(REPO / "bench" / "cleaning_payoff.py"),
        "--quick",
        "--quiet",
        "--out",
        str(out.parent / "x"),
    ]
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train + predict ..." not in again.stdout and "cross-fit ..." not in again.stdout  # nothing re-run
    assert (out / "report.md").read_text() == report


def test_crossfit_overrides_change_the_fold_models_only():
    from cleaning_payoff import configs

    from core.errors import CurateError

    plain_cf, plain_policy = configs(False, 1)
    cf, policy = configs(False, 1, crossfit_sets=("age_loss_scale=1", "num_epochs=4"))
    assert (cf.age_loss_scale, cf.num_epochs, cf.image_size) == (1.0, 4, plain_cf.image_size)
    assert cf.override_cycle_epoch_count <= cf.num_epochs  # the one-cycle schedule scaled to 4 epochs
    assert policy == plain_policy and plain_cf.age_loss_scale != 1.0
    with pytest.raises(CurateError, match="unknown config key: no_such_key"):
        configs(False, 1, crossfit_sets=("no_such_key=1",))
    # --crossfit-recipe thorough is flag-mislabels --recipe thorough: the config the docs' thorough runs used
    # (--crossfit-set image_size=128 --crossfit-set num_epochs=12), the policies' config unchanged
    th_cf, th_policy = configs(False, 1, recipe="thorough")
    assert th_cf == configs(False, 1, crossfit_sets=("image_size=128", "num_epochs=12"))[0] != plain_cf
    assert th_policy == plain_policy


def test_payoff_seeds_keeps_earlier_rows_for_policies_not_re_run(tmp_path):
    from payoff_seeds import _merge

    path = tmp_path / "seeds.csv"
    old = pd.DataFrame({"policy": ["noisy", "oracle", "noisy"], "seed": [42, 42, 1], "age_mae": [9.0, 8.0, 9.2],
                        "gender_acc": [84.0, 88.0, 84.5], "d_mae": [0.0, -1.0, 0.0]})  # fmt: skip
    old.to_csv(path, index=False)
    new = pd.DataFrame({"policy": ["noisy", "cleanlab_drop"], "seed": [42, 42], "age_mae": [9.1, 8.5],
                        "gender_acc": [84.2, 87.0]})  # fmt: skip
    got = _merge(path, new).set_index(["policy", "seed"])
    assert sorted(got.index) == [("cleanlab_drop", 42), ("noisy", 1), ("noisy", 42), ("oracle", 42)]
    assert got.loc[("noisy", 42), "age_mae"] == 9.1 and got.loc[("oracle", 42), "gender_acc"] == 88.0
    assert _merge(tmp_path / "none.csv", new).equals(new)


def test_payoff_seeds_versus_pairs_by_training_seed():
    from payoff_seeds import paired, t_interval, versus

    a, b = "ours_round2_two_sided_ages", "cleanlab_drop"
    df = pd.DataFrame({"policy": [a] * 4 + [b] * 3, "seed": [42, 1, 2, 3, 42, 1, 3],
                       "age_mae": [8.0, 8.5, 9.0, 7.9, 8.6, 8.4, 8.3],
                       "gender_acc": [88.0, 87.5, 80.0, 88.2, 87.0, 87.6, 87.0]})  # fmt: skip
    d = paired(df, a, b)
    assert sorted(d.index) == [1, 3, 42]  # seed 2 has no (d): left out, not compared with another seed's
    assert d.loc[42, "d_mae"] == pytest.approx(-0.6) and d.loc[1, "d_acc"] == pytest.approx(-0.1)
    lo, hi = t_interval(d["d_acc"].to_numpy())
    assert lo < d["d_acc"].mean() < hi and lo < 0 < hi  # +1.0 / -0.1 / +1.2: not a difference over 3 seeds
    assert t_interval(np.array([1.0, 1.1, 0.9, 1.0]))[0] > 0  # the same gain with every seed is one
    assert "2 of 3 | 2 of 3" in versus(df, a, b).splitlines()[-1]
    with pytest.raises(SystemExit, match="no trained seeds for oracle"):
        paired(df, a, "oracle")


def test_payoff_seeds_plots_each_seeds_pair(tmp_path):
    import matplotlib.pyplot as plt
    from payoff_seeds import _pair_wide, plot_versus
    from PIL import Image

    a, b = "ours_round2_two_sided_ages", "cleanlab_drop"
    df = pd.DataFrame({"policy": [a, a, b, b, "noisy"], "seed": [42, 1, 42, 1, 42],
                       "age_mae": [8.2, 8.5, 9.1, 8.8, 9.5], "gender_acc": [88.8, 87.7, 87.0, 87.6, 84.7]})  # fmt: skip
    path = plot_versus(df, a, b, tmp_path / "plots" / "versus.png")
    assert plt.get_fignums() == []  # closed: a long bench does not pile up figures
    assert sorted(_pair_wide(df, a, b).index) == [1, 42]  # (a) trained with seed 42 only must not hide seed 1
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 600 and im.getextrema()[0][0] < 128  # drawn, not blank


def test_recommended_trains_the_readme_comparison_with_more_seeds_and_means_them(payoff, tmp_path):
    """`--recommended` (README's comparison from one command) on a copy of the quick run: (a), (p), (m), (d), (e)
    re-trained with another training seed on the very manifests the setting wrote and with its own config, the
    figures in seeds.csv those models' own, and the mean table's means and recovered fractions computed from them."""
    import shutil

    from payoff_seeds import _scores

    out, _ = payoff
    shutil.copytree(out, tmp_path / "payoff_quick")
    out = tmp_path / "payoff_quick"
    cmd = [sys.executable, str(REPO / "bench" / "cleaning_payoff.py"), "--quick", "--quiet", "--recommended",
           "--training-seeds", "1", "--out", str(tmp_path / "x")]  # fmt: skip
    env = {**os.environ, "CURATE_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    setting = out / "r0.2_s0"
    wanted = ("noisy", "ours_round2_two_sided_ages", "ours_mask_two_sided_ages", "cleanlab_drop", "oracle")
    seeds = pd.read_csv(setting / "seeds.csv")
    assert sorted(zip(seeds["policy"], seeds["seed"])) == sorted((p, s) for p in wanted for s in (1, 42))
    test = pd.read_csv(out / "split" / "test_2_folds_last" / "manifest.csv", dtype={"content_hash": str})
    strip = lambda c: {k: v for k, v in c.items() if k not in ("train_path", "val_path", "seed")}  # noqa: E731
    for p in wanted:
        own = json.loads((setting / p / "run" / "metadata.json").read_text())["config"]
        again = json.loads((setting / f"{p}_seed1" / "run" / "metadata.json").read_text())["config"]
        assert strip(again) == strip(own) and (own["seed"], again["seed"]) == (42, 1), p
        assert again["val_path"] == str(out / "split" / "test_2_folds_last"), p  # the copy's test split: moved
        assert (setting / f"{p}_seed1" / "train" / "manifest.csv").read_text() == (
            setting / p / "train" / "manifest.csv").read_text(), p  # fmt: skip
        row = seeds[(seeds["policy"] == p) & (seeds["seed"] == 1)].iloc[0]
        mae, acc = _scores(test, pd.read_parquet(setting / f"{p}_seed1" / "test_predictions.parquet"))
        assert (row["age_mae"], row["gender_acc"]) == pytest.approx((mae, acc)), p
    means = seeds.groupby("policy")[["age_mae", "gender_acc"]].mean()
    rec = (means.loc["noisy"] - means.loc["ours_round2_two_sided_ages"]) / (means.loc["noisy"] - means.loc["oracle"])
    table = (tmp_path / "payoff_quick" / "seeds_report.md").read_text()
    cells = next(line for line in table.splitlines() if "| (p) ours" in line).strip("| ").split(" | ")
    p_mae = seeds.loc[seeds["policy"] == "ours_round2_two_sided_ages", "age_mae"]
    assert cells[2:4] == ["2", f"{p_mae.mean():.2f} ± {p_mae.std():.2f}"]
    # tiny models on the sample: (a) and (e) may tie, and then no fraction is defined
    assert cells[-2:] == [f"{r:.0%}" if np.isfinite(r) else "-" for r in (rec["age_mae"], rec["gender_acc"])]
    assert "minus (d) cleanlab: drop its issues" in res.stdout  # (p) against the peer, by training seed
    png = tmp_path / "payoff_quick" / "seeds_means.png"
    assert f"plot: {png}" in res.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert again.returncode == 0 and "train + predict ..." not in again.stdout  # every seed cached
