"""`curate retrain --compare` and `curate explain`: bootstrap intervals that cover the truth, group
tables that match hand computation, the end-to-end loop on the embedded sample, and clear refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from audits.group_metrics import bootstrap_mean_ci, bootstrap_weights, paired_group_table
from curate.cli import main
from curate.compare import CompareError, CompareOptions, barely_trained, compare_runs
from trainer.config import TrainConfig, replace
from trainer.explain import gradcam
from trainer.model import AgeGenderClassifier
from trainer.train import train

TINY = dict(image_size=64, batch_size=32, num_epochs=2, override_cycle_epoch_count=2, threads=1)


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_weights_are_resamples():
    w = bootstrap_weights(50, 2000, seed=1)
    assert w.shape == (2000, 50) and (w.sum(1) == 50).all() and (w >= 0).all()
    assert np.allclose(w.mean(0), 1, atol=0.12), "each item is drawn once per resample on average"
    assert np.allclose(w.var(0), 1 - 1 / 50, atol=0.2), "multinomial counts (Poisson-like spread)"
    assert not np.array_equal(w, bootstrap_weights(50, 2000, seed=2))
    assert np.array_equal(w, bootstrap_weights(50, 2000, seed=1))


def test_bootstrap_interval_covers_the_true_value_in_simulation():
    """200 data sets from known distributions: the 95 % interval must cover the truth 90-99 % of the time."""
    rng = np.random.default_rng(0)
    sims, n, sigma, p = 200, 150, 6.0, 0.8
    true_mae = sigma * np.sqrt(2 / np.pi)  # mean of |N(0, sigma)|
    cover_mae = cover_acc = cover_delta = 0
    widths = []
    for s in range(sims):
        err = np.abs(rng.normal(0, sigma, n))
        _, lo, hi = bootstrap_mean_ci(err, 1000, seed=s)
        cover_mae += lo <= true_mae <= hi
        widths.append(hi - lo)
        acc = (rng.random(n) < p).astype(float)
        _, lo, hi = bootstrap_mean_ci(acc, 1000, seed=s)
        cover_acc += lo <= p <= hi
        # paired: the new model's error is the baseline's scaled by 0.9 plus noise -> known true delta
        base = np.abs(rng.normal(0, sigma, n))
        new = 0.9 * base + np.abs(rng.normal(0, 1.0, n))
        true_delta = (0.9 - 1) * true_mae + 1.0 * np.sqrt(2 / np.pi)
        frame = pd.DataFrame({"g": "all", "b": base, "n": new})
        rows, _ = paired_group_table(
            frame, "g", {"mae": ("b", "n", "lower")}, bootstrap_weights(n, 1000, s), min_group=1
        )
        cover_delta += rows.delta_lo[0] <= true_delta <= rows.delta_hi[0]
    for name, c in (("MAE", cover_mae), ("accuracy", cover_acc), ("paired delta", cover_delta)):
        assert 0.90 <= c / sims <= 0.99, f"{name}: coverage {c / sims:.3f}"
    expected = 2 * 1.96 * sigma * np.sqrt(1 - 2 / np.pi) / np.sqrt(n)  # normal-theory width
    assert abs(np.mean(widths) / expected - 1) < 0.1


def test_group_table_matches_hand_computation():
    g = np.array(["a"] * 30 + ["b"] * 30 + ["c"] * 3)
    base = np.r_[np.full(30, 2.0), np.full(30, 6.0), np.full(3, 50.0)]
    new = np.r_[np.full(30, 2.0), np.full(30, 4.0), np.full(3, 10.0)]
    frame = pd.DataFrame({"g": g, "b": base, "n": new})
    rows, gaps = paired_group_table(
        frame, "g", {"mae": ("b", "n", "lower")}, bootstrap_weights(len(g), 500, 0), min_group=10
    )
    r = rows.set_index("group")
    assert list(r["baseline"]) == [2.0, 6.0, 50.0] and list(r["new"]) == [2.0, 4.0, 10.0]
    assert list(r["delta"]) == [0.0, -2.0, -40.0] and list(r["n"]) == [30, 30, 3]
    assert r.loc["b", "significant"] and r.loc["b", "verdict"] == "better"
    assert not r.loc["a", "significant"] and r.loc["a", "verdict"] == "within uncertainty"
    assert not r.loc["c", "significant"] and "too few" in r.loc["c", "verdict"], "3 images: never a verdict"
    gap = gaps.iloc[0]  # c is too small to take part: the gap is b - a
    assert (gap["baseline"], gap["new"], gap["delta"]) == (4.0, 2.0, -2.0)
    assert (gap["worst_group_baseline"], gap["worst_group_new"]) == ("b", "b")


def test_barely_trained_names_a_model_no_better_than_a_constant_answer():
    rng = np.random.default_rng(0)
    age = rng.integers(1, 90, 400)
    gender = (rng.random(400) < 0.3).astype(int)  # 70 % male: "male" for all is right 70 % of the time
    f = pd.DataFrame({"age": age, "gender": gender})
    f["base_abs_err"] = np.abs(age - np.median(age)).astype(float)  # the median for everyone, "male" for all
    f["base_prob"] = 0.2
    f["new_abs_err"] = rng.random(400) * 3  # a model that learned
    f["new_prob"] = np.where(gender == 1, 0.9, 0.1)
    (line,) = barely_trained(f)
    assert line.startswith("the baseline hardly beats a constant answer (age MAE")
    assert f"gender accuracy {100 * (1 - gender.mean()):.1f}% against {100 * (1 - gender.mean()):.1f}%" in line
    f["base_prob"] = f["new_prob"]  # right about gender, still the median age for all: age alone is named
    (line,) = barely_trained(f)
    assert "age MAE" in line and "gender accuracy" not in line
    assert barely_trained(f.assign(base_abs_err=f["new_abs_err"])) == []


# --- the loop on the sample -------------------------------------------------------------------


def digest(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for f in folders
        for p in sorted(Path(f).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def baseline(sample_split: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "base"
    cfg = replace(
        TrainConfig(),
        train_path=str(sample_split / "train_8_folds_first"),
        val_path=str(sample_split / "test_2_folds_last"),
        **TINY,
    )
    train(cfg, run, progress=False)
    return run


def test_export_then_retrain_compare_on_the_sample(sample_split: Path, baseline: Path, tmp_path: Path):
    test_dir = sample_split / "test_2_folds_last"
    te = pd.read_csv(test_dir / "manifest.csv", dtype={"content_hash": str})
    tr = pd.read_csv(sample_split / "train_8_folds_first" / "manifest.csv", dtype={"content_hash": str})
    review = tmp_path / "review.csv"
    pd.DataFrame(
        {
            "path": [tr.path[0], tr.path[1], te.path[0], te.path[1]],
            "tags": ["exclude", "confirmed:mislabel", "confirmed:mislabel", "exclude"],
            "age_corrected": [None, 70, te.age[0] + 40, None],
        }
    ).to_csv(review, index=False)
    before = digest(test_dir)
    root = tmp_path / "dataset"
    export_args = ["export", "--from", str(sample_split / "train_8_folds_first"), "--root", str(root)]
    res = CliRunner().invoke(main, [*export_args, "--review", str(review), "--oversample", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (root / "train_cleaned" / "manifest.csv").exists() and (root / "train_cleaned_oversampled").is_dir()
    new = tmp_path / "new"
    retrain = ["retrain", "--split", str(root / "train_cleaned_oversampled"), "--baseline", str(baseline)]
    retrain += ["--out", str(new), "--compare", "--threads", "1", "--quiet"]
    res = CliRunner().invoke(
        main, [*retrain, "--review", str(review), "--n-boot", "300", "--explain", "3", "--gallery", "4"]
    )
    assert res.exit_code == 0, res.output
    bm, nm = (json.loads((r / "metadata.json").read_text()) for r in (baseline, new))
    assert {k: v for k, v in nm["config"].items() if k != "train_path"} == {
        k: v for k, v in bm["config"].items() if k != "train_path"
    }, "same config and seed"
    assert nm["config"]["train_path"] == str(root / "train_cleaned_oversampled")
    assert nm["val_manifest_hash"] == bm["val_manifest_hash"]
    out = new / "compare"
    md = (out / "report.md").read_text()
    for section in (
        "## Verdict",
        "## Evaluate tables side by side",
        "### age group",
        "### gender",
        "### race",
        "Worst-group gap",
        "## On the test split with the review's corrections applied",
        "## Galleries",
        "## Grad-CAM",
    ):
        assert section in md, section
    pngs = [
        "deltas.png",
        "group_metrics.png",
        "gallery_gender_fixed.png",
        "gallery_gender_broken.png",
        "gallery_age_fixed.png",
        "gallery_age_broken.png",
        "explain_new/gradcam_gender.png",
        "explain_baseline/gradcam_age.png",
    ]
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
        assert f"]({png})" in md, png
    # the numbers agree with the per-image predictions and with `curate evaluate`'s tables
    per = pd.read_csv(out / "per_image.csv")
    rows = pd.read_csv(out / "group_metrics.csv")
    overall = rows[(rows.dimension == "overall")].set_index("metric")
    assert overall.loc["age MAE", "baseline"] == pytest.approx(per["base_abs_err"].mean())
    assert overall.loc["age MAE", "new"] == pytest.approx(per["new_abs_err"].mean())
    assert overall.loc["gender accuracy", "delta"] == pytest.approx(
        per["new_correct"].mean() - per["base_correct"].mean()
    )
    ev = pd.read_csv(out / "baseline" / "age_metrics.csv")
    assert ev["mae"][0] == pytest.approx(per["base_abs_err"].mean())
    assert (overall["baseline_lo"] <= overall["baseline"]).all() and (
        overall["baseline"] <= overall["baseline_hi"]
    ).all()
    sbs = pd.read_csv(out / "age_metrics_side_by_side.csv")
    assert sbs["mae delta"][0] == pytest.approx(sbs["mae new"][0] - sbs["mae base"][0])
    by_age = rows[(rows.dimension == "age_group") & (rows.metric == "age MAE")].set_index("group")
    for grp, part in per.groupby("age_group"):
        assert by_age.loc[grp, "new"] == pytest.approx(part["new_abs_err"].mean())
    # corrected test: one label moved by 40 years, one image excluded
    corr = pd.read_csv(out / "group_metrics_corrected_test.csv")
    c_over = corr[(corr.dimension == "overall") & (corr.metric == "age MAE")].iloc[0]
    fixed = per.copy()
    fixed.loc[fixed.filename == te.filename[0], "age"] += 40
    fixed = fixed[fixed.filename != te.filename[1]]
    assert c_over["n"] == len(per) - 1
    assert c_over["baseline"] == pytest.approx((fixed["base_age_pred"] - fixed["age"]).abs().mean())
    assert "1 label(s) corrected, 1 image(s) excluded" in md
    assert digest(test_dir) == before, "the test split is byte-identical after export, retrain and compare"
    # a model that learned little is said to have, from the same per-image figures the tables use
    const = (per["age"] - per["age"].median()).abs().mean()
    warned = json.loads((out / "compare.json").read_text())["barely_trained"]
    for m, name in (("base", "the baseline"), ("new", "the new model")):
        weak = per[f"{m}_abs_err"].mean() > 0.9 * const or per[f"{m}_correct"].mean() < max(
            per["gender"].mean(), 1 - per["gender"].mean()) + 0.02  # fmt: skip
        assert weak == any(w.startswith(name + " ") for w in warned), (name, warned)
        assert weak == (f"{name[0].upper()}{name[1:]} hardly beats" in md)
    # a second call reuses the finished run and the cached predictions
    res = CliRunner().invoke(main, [*retrain, "--n-boot", "100", "--explain", "0"])
    assert res.exit_code == 0 and f"reused the finished run in {new}: best epoch" in res.output, res.output
    assert json.loads((new / "metadata.json").read_text())["wall_seconds"] == nm["wall_seconds"]
    few = rows[rows["verdict"].str.startswith("too few")]  # the sample's small groups are marked, not judged
    assert len(few) and f"| {few['group'].iloc[0]} | {few['n'].iloc[0]} |" in md and "(few)" in md
    # the split re-exported after more review (one more image excluded): that run is not this split's any more
    pd.DataFrame({"path": [tr.path[2]], "tags": ["exclude"]}).to_csv(tmp_path / "more.csv", index=False)
    more = merge_csv(review, tmp_path / "more.csv")
    res = CliRunner().invoke(main, [*export_args, "--review", str(more), "--oversample", "--quiet", "--force"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [*retrain, "--n-boot", "100", "--explain", "0"])
    assert res.exit_code == 1 and "holds a run trained on another version of" in res.output, res.output
    assert json.loads((new / "metadata.json").read_text())["wall_seconds"] == nm["wall_seconds"], "not re-used"


def merge_csv(*paths: Path) -> Path:
    """The rows of several review CSVs in one file (next to the last)."""
    out = paths[-1].with_name("merged.csv")
    pd.concat([pd.read_csv(p) for p in paths], ignore_index=True).to_csv(out, index=False)
    return out


def test_compare_refuses_runs_with_different_test_manifests(sample_split: Path, baseline: Path, tmp_path: Path):
    te = pd.read_csv(sample_split / "test_2_folds_last" / "manifest.csv")
    (tmp_path / "smaller").mkdir()
    te.iloc[:-3].to_csv(tmp_path / "smaller" / "manifest.csv", index=False)
    other = tmp_path / "other"
    cfg = replace(
        TrainConfig(),
        train_path=str(sample_split / "train_8_folds_first"),
        val_path=str(tmp_path / "smaller"),
        **{**TINY, "num_epochs": 1, "override_cycle_epoch_count": 1},
    )
    train(cfg, other, progress=False, max_batches=1)
    with pytest.raises(CompareError, match="different test manifests"):
        compare_runs(baseline, other, tmp_path / "cmp", CompareOptions(n_boot=50, n_explain=0))
    # the baseline's test manifest edited after training: refused too
    moved = tmp_path / "base_copy"
    shutil.copytree(baseline, moved)
    meta = json.loads((moved / "metadata.json").read_text())
    meta["config"]["val_path"] = str(tmp_path / "smaller")
    (moved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CompareError, match="changed since the baseline was trained"):
        compare_runs(moved, moved, tmp_path / "cmp2", CompareOptions(n_boot=50, n_explain=0))
    res = CliRunner().invoke(
        main,
        ["retrain", "--split", str(tmp_path / "nowhere"), "--baseline", str(baseline), "--out", str(tmp_path / "y")],
    )
    assert res.exit_code != 0 and "nowhere: no such split; write one with `curate export`" in res.output


def test_gradcam_and_explain_cli(sample_split: Path, baseline: Path, tmp_path: Path):
    torch.manual_seed(0)
    model = AgeGenderClassifier().eval()
    x = torch.randn(2, 3, 64, 64)
    for head in ("gender", "age"):
        cam = gradcam(model, x, head)
        assert cam.shape == (2, 64, 64) and np.isfinite(cam).all()
        peaks = cam.reshape(2, -1).max(1)  # each map scaled to [0, 1] (all zero when nothing pushes the output)
        assert cam.min() >= 0 and np.all(np.isclose(peaks, 1.0) | (peaks == 0)) and peaks.max() == pytest.approx(1.0)
    # the age head is linear after average pooling, so Grad-CAM must equal relu(sum_c w_c / HW * A_c)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        act = model.features(x)
        w = model.age_head[1].weight[0].view(1, -1, 1, 1) / (act.shape[2] * act.shape[3])
        manual = torch.relu((w * act).sum(1, keepdim=True))
        manual = torch.nn.functional.interpolate(manual, size=(96, 96), mode="bilinear", align_corners=False)[0, 0]
        manual = (manual - manual.min()) / (manual.max() - manual.min())
    assert np.allclose(gradcam(model, x, "age")[0], manual.numpy(), atol=1e-4)
    assert not np.allclose(gradcam(model, x, "gender")[0], manual.numpy(), atol=1e-2)
    res = CliRunner().invoke(
        main,
        ["explain", "--run", str(baseline), "--n", "3", "--out", str(tmp_path / "ex"), "--threads", "1", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    for head in ("gender", "age"):
        assert (tmp_path / "ex" / f"gradcam_{head}.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(main, ["explain", "--run", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "run folder not found" in res.output
    from core.manifest import read_manifest
    from trainer.evaluate import predict_manifest

    other = tmp_path / "other.parquet"  # the shipped model's (or another) predictions: not this run's to explain
    test = read_manifest(sample_split / "test_2_folds_last").head(8)
    predict_manifest(baseline / "checkpoints" / "last.pt", test, progress=False).to_parquet(other)
    res = CliRunner().invoke(main, ["explain", "--run", str(baseline), "--predictions", str(other), "--n", "2"])
    assert res.exit_code == 1 and "not of" in res.output and "run `curate evaluate` with this model" in res.output
    last = ["explain", "--run", str(baseline), "--which", "last", "--predictions", str(other), "--n", "2"]
    res = CliRunner().invoke(main, [*last, "--head", "gender"])  # the final weights' own predictions: explained
    assert res.exit_code == 0, res.output
    assert (baseline / "explain_last" / "gradcam_gender.png").read_bytes()[:4] == b"\x89PNG"
    shutil.rmtree(baseline / "explain_last")
    res = CliRunner().invoke(main, ["explain", "--checkpoint", str(baseline / "checkpoints" / "last.pt"), "--which",
                                    "last"])  # fmt: skip
    assert res.exit_code == 1 and "--which last picks a checkpoint of --run" in res.output
    res = CliRunner().invoke(main, ["explain", "--run", str(baseline), "--n", "0"])
    assert res.exit_code == 2 and "--n" in res.output
