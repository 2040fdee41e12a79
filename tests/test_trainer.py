"""Trainer: config, schedule, frozen backbone, L1 term, runs, resume, evaluate, predict, errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from core import allocator
from core.labels import RACE_NAMES
from core.manifest import DataError, read_manifest
from curate.cli import main
from trainer.config import ConfigError, TrainConfig, load_config, reference_config, replace
from trainer.data import Batches, basic_augment, decoded_cache, to_input
from trainer.evaluate import (
    age_metrics,
    by_age_group,
    by_group,
    evaluate_predictions,
    expected_calibration_error,
    gender_table,
)
from trainer.model import AgeGenderClassifier, WeightsError, build_model, load_checkpoint, model_from_checkpoint
from trainer.train import (
    RunError,
    bn_batches_after,
    bn_order,
    forward_tta,
    loss_terms,
    make_optimizer,
    make_scheduler,
    make_train_step,
    near_zero_weights,
    recalibrate_bn,
    step_scheduler_batch,
    train,
    weight_l1,
)

REPO = Path(__file__).resolve().parent.parent
TINY = dict(image_size=64, batch_size=32, num_epochs=2, override_cycle_epoch_count=2, threads=2)


def tiny_cfg(split: Path, **kw) -> TrainConfig:
    return replace(
        TrainConfig(),
        train_path=str(split / "train_8_folds_first"),
        val_path=str(split / "test_2_folds_last"),
        **{**TINY, **kw},
    )


# --- configuration ---------------------------------------------------------------------------


def test_defaults_are_the_best_known_run_and_the_reference_stays_named():
    """Defaults: the reference run with L1 1e-6 (configs/one_run.yaml); the reference's own L1 (1e-4) lives in
    REFERENCE and configs/reference.yaml, which give the same config."""
    assert TrainConfig().l1_lambda == 1e-6 and load_config(REPO / "configs" / "one_run.yaml") == TrainConfig()
    assert load_config(REPO / "configs" / "reference.yaml") == reference_config()
    c = reference_config()
    assert (c.base_lr, c.max_lr, c.div_factor, c.final_div_factor) == (
        0.0068893981577029285,
        0.012321315111072404,
        24,
        2873,
    )
    assert (c.pct_start, c.batch_size, c.num_epochs, c.override_cycle_epoch_count) == (0.36685557351085574, 256, 18, 15)
    assert (c.dropout, c.gender_loss_weight, c.l1_lambda, c.weight_decay) == (0.1, 0.9, 0.0001, 0.00019323262043373016)
    assert (c.lr_scheduler, c.anneal_strategy, c.freeze_epochs, c.use_dynamic_augmentation) == (
        "one_cycle",
        "cos",
        0,
        False,
    )


def test_yaml_and_overrides(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("num_epochs: 3\nlr_scheduler: step\nuse_dynamic_augmentation: true\n")
    c = load_config(f, {"batch_size": "64", "dropout": "0.2"})
    assert (c.num_epochs, c.lr_scheduler, c.use_dynamic_augmentation, c.batch_size, c.dropout) == (
        3,
        "step",
        True,
        64,
        0.2,
    )


@pytest.mark.parametrize(
    "text, overrides, msg",
    [
        ("num_epoch: 3\n", {}, r"unknown config key\(s\): num_epoch \(did you mean num_epochs\?\)"),
        ("", {"bogus": "1"}, "unknown config key"),
        ("", {"batch_size": "lots"}, "not an int"),
        ("", {"max_lr": "nan"}, "max_lr: nan is not a finite number"),
        ("", {"weights": ""}, "weights: empty"),
        ("", {"num_epochs": "0"}, r"num_epochs must be > 0 \(got 0\)"),
        ("a: [1\n", {}, "c.yaml: not valid YAML at line"),
        ("", {"lr_scheduler": "warp"}, "lr_scheduler must be"),
        ("- a\n- b\n", {}, "expected a mapping"),
        ("batch_size: [1, 2]\n", {}, r"c.yaml: batch_size: \[1, 2\] is not an int"),
        ("num_epochs: 1.5\n", {}, "num_epochs: 1.5 is not an int"),
        ("dropout: null\n", {}, "dropout: None is not a float"),
        ("channels_last: 5\n", {}, "channels_last: 5 is not a bool"),
        ("", {"threads": "-3"}, "threads must be >= 0"),
        ("", {"max_lr": "-1"}, "max_lr, div_factor and final_div_factor must be > 0"),
        ("", {"pct_start": "1.5"}, "pct_start must be in"),
    ],
)
def test_bad_configs(tmp_path: Path, text, overrides, msg):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=msg):
        load_config(f, overrides)


def test_every_shipped_config_file_loads():
    """The recipes README tells users to run must stay valid as config keys change."""
    files = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        load_config(f)
    assert load_config(files[0].parent / "one_run.yaml").l1_lambda == 1e-6


def test_the_shipped_model_was_trained_with_its_config_file():
    """The card, the checkpoint and configs/default_model.yaml must describe the same run."""
    root = Path(__file__).resolve().parent.parent
    card = json.loads((root / "curate/models/default.json").read_text())
    cfg = load_config(root / card["config_file"]).to_dict()
    ckpt = load_checkpoint(root / "curate/models/default.pt")
    for k in cfg:
        if k == "threads":
            continue
        if k not in card["config"]:  # a setting added after the model was trained: off (its default) there
            assert k not in ckpt["config"] and cfg[k] == getattr(TrainConfig(), k), k
            continue
        assert card["config"][k] == ckpt["config"][k] == cfg[k], k
    assert card["weights_used"] == ckpt["weights_used"] and card["test_2_folds_last"]["age_mae"] > 0
    # README says "from scratch": the first stage of the chain of warm restarts started from random
    # weights, and each later stage from the checkpoint of the one before.
    stages = card["stages"]
    assert stages[0]["weights_used"] == "none (random init)"
    for prev, st in zip(stages, stages[1:]):  # a fine-tune of an earlier shipped model names that file's hash
        assert st["weights_used"].startswith(f"checkpoint {prev['run']}/checkpoints/") or (
            st["weights_used"] == "checkpoint curate/models/default.pt" and len(st["weights_sha256"]) == 64
        ), st
    assert stages[-1]["run"] == card["source_run"] and card["total_epochs"] == sum(s["epochs"] for s in stages)


# --- recipe ----------------------------------------------------------------------------------


def test_one_cycle_peaks_at_pct_start_and_stays_flat_after_the_cycle():
    cfg = TrainConfig()
    model = torch.nn.Linear(2, 1)
    opt = make_optimizer(cfg, model)
    steps = 10
    sched = make_scheduler(cfg, opt, steps)
    lrs = []
    for _ in range(cfg.num_epochs * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        step_scheduler_batch(cfg, sched)
    lrs = np.array(lrs)
    cycle = cfg.override_cycle_epoch_count * steps
    assert math.isclose(lrs[0], cfg.max_lr / cfg.div_factor, rel_tol=1e-6)
    assert abs(int(lrs.argmax()) - (cfg.pct_start * cycle - 1)) <= 1  # OneCycleLR peaks at step pct*total - 1
    assert math.isclose(lrs.max(), cfg.max_lr, rel_tol=1e-3)
    final = cfg.max_lr / cfg.div_factor / cfg.final_div_factor
    assert np.allclose(lrs[cycle - 1 :], final, rtol=1e-3), "the last 3 epochs run at the final rate"
    assert lrs[cycle // 2] > 10 * final


def test_loss_has_the_l1_term():
    cfg = TrainConfig()
    torch.manual_seed(0)
    model = AgeGenderClassifier()
    x = torch.randn(4, 3, 64, 64)
    g, a, _ = model(x)
    age, gender = torch.tensor([10.0, 20, 30, 40]), torch.tensor([0, 1, 0, 1])
    with_l1, ce, l1_age = loss_terms(cfg, model, g, a, gender, age)
    without, _, _ = loss_terms(replace(cfg, l1_lambda=0.0), model, g, a, gender, age)
    expected_l1 = sum(p.abs().sum() for p in model.parameters())
    assert torch.isclose(with_l1 - without, cfg.l1_lambda * expected_l1, rtol=1e-5)
    assert torch.isclose(without, 0.9 * ce + 0.1 * l1_age / cfg.age_loss_scale)
    model.set_backbone_trainable(False)
    assert weight_l1(model) < expected_l1, "a frozen backbone leaves the penalty"


def test_the_l1_term_prunes_weights_and_the_log_sees_it():
    """Under Adam a summed L1 penalty drives weights to zero (BatchNorm hides it from the loss);
    `near_zero_weights`, logged per epoch, is how a run shows it."""
    torch.manual_seed(0)
    x, age, gender = torch.randn(4, 3, 32, 32), torch.rand(4) * 80, torch.randint(0, 2, (4,))
    frac = {}
    for lam in (0.0, 1e-2):
        torch.manual_seed(0)
        cfg, model = replace(TrainConfig(), l1_lambda=lam), AgeGenderClassifier()
        assert near_zero_weights(model, 1e-3) < 0.02, "a fresh model is dense"
        opt = torch.optim.AdamW(model.parameters(), lr=0.03)
        for _ in range(15):
            g, a, _ = model(x)
            loss, _, _ = loss_terms(cfg, model, g, a, gender, age)
            opt.zero_grad()
            loss.backward()
            opt.step()
        frac[lam] = near_zero_weights(model, 1e-3)
    assert frac[1e-2] > 4 * frac[0.0], frac


def test_flip_tta_is_the_mean_of_both_views_and_mirror_invariant():
    torch.manual_seed(0)
    model = AgeGenderClassifier().eval()
    cfg = TrainConfig()
    x = torch.randn(3, 3, 64, 64)
    g1, a1, e1 = forward_tta(model, x, cfg)
    g2, a2, e2 = forward_tta(model, torch.flip(x, dims=[3]), cfg)
    g, a, e = forward_tta(model, x, cfg, tta=True)
    assert torch.allclose(g, (g1 + g2) / 2, atol=1e-5) and torch.allclose(a, (a1 + a2) / 2, atol=1e-4)
    assert not torch.allclose(e1, e2), "a random model is not mirror-symmetric: the two views differ"
    assert torch.allclose(e, (e1 + e2) / 2, atol=1e-5)
    gm, am, em = forward_tta(model, torch.flip(x, dims=[3]), cfg, tta=True)
    assert torch.allclose(am, a, atol=1e-4) and torch.allclose(gm, g, atol=1e-5) and torch.allclose(em, e, atol=1e-5)


def test_uint8_gather_augmentation_equals_flip_pad_crop_on_floats():
    """The one-gather augmentation on uint8 pixels must be exactly flip -> reflect-pad -> crop."""
    torch.manual_seed(1)
    u8 = torch.randint(0, 256, (16, 20, 24, 3), dtype=torch.uint8)
    pad = 8
    got = basic_augment(u8, torch.Generator().manual_seed(5), pad=pad)
    gen = torch.Generator().manual_seed(5)
    flip = torch.rand(16, generator=gen) < 0.5
    offs = torch.randint(0, 2 * pad + 1, (16, 2), generator=gen)
    x = u8.permute(0, 3, 1, 2).float()
    x = torch.where(flip.view(16, 1, 1, 1), x.flip(3), x)
    padded = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect")
    want = torch.stack([padded[i, :, oy : oy + 20, ox : ox + 24] for i, (oy, ox) in enumerate(offs.tolist())])
    assert flip.any() and not flip.all() and len(set(map(tuple, offs.tolist()))) > 4
    assert torch.equal(got.permute(0, 3, 1, 2).float(), want)
    # normalising in HWC order and permuting gives the NCHW normalisation, already channels_last
    xn = to_input(got)
    assert xn.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    assert torch.allclose(xn, (want - mean) / std, atol=1e-5)
    assert torch.equal(to_input(got, channels_last=False), xn.contiguous())


@pytest.mark.slow
def test_compiled_step_matches_the_eager_step():
    """torch.compile is a speed setting only: the same steps must reach the same weights."""
    cfg = replace(TrainConfig(), batch_size=8, l1_lambda=1e-4, channels_last=True)
    x = torch.randn(8, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    age, gender = torch.rand(8) * 80, torch.randint(0, 2, (8,))
    init, runs = None, {}
    for comp in (False, True):
        torch.manual_seed(0)
        model = AgeGenderClassifier(dropout=0.0).to(memory_format=torch.channels_last).train()
        init = torch.cat([p.detach().flatten() for p in model.parameters()])
        opt = make_optimizer(cfg, model)
        step = make_train_step(replace(cfg, compile=comp), model, opt)
        losses = [step(x, age, gender)[0].item() for _ in range(2)]
        losses.append(step(x[:5], age[:5], gender[:5])[0].item())  # a short last batch: eager, no recompile
        runs[comp] = (losses, torch.cat([p.detach().flatten() for p in model.parameters()]) - init)
    assert np.allclose(runs[False][0], runs[True][0], rtol=1e-3), (runs[False][0], runs[True][0])
    # Adam turns float-level gradient noise on near-zero gradients into whole steps, so compare the
    # update as a whole: same direction, same size.
    eager, compiled = runs[False][1], runs[True][1]
    assert eager.norm() > 0
    rel = ((compiled - eager).norm() / eager.norm()).item()
    assert rel < 0.05, f"compiled and eager updates differ by {rel:.1%}"


# --- runs ------------------------------------------------------------------------------------


def test_train_writes_checkpoints_metrics_metadata(sample_split: Path, tmp_path: Path):
    cfg = tiny_cfg(sample_split)
    meta = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for f in (
        "checkpoints/epoch_001.pt",
        "checkpoints/epoch_002.pt",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "metrics.csv",
        "metadata.json",
        "training_curves.png",
    ):
        assert (run / f).exists(), f
    m = pd.read_csv(run / "metrics.csv")
    assert list(m["epoch"]) == [1, 2] and m["val_mae"].notna().all()
    assert m["near_zero_weights"].between(0, 1).all()
    saved = json.loads((run / "metadata.json").read_text())
    assert saved["status"] == "complete" and saved["weights_used"].startswith("none")
    assert saved["versions"]["torch"] and len(saved["train_manifest_hash"]) == 16
    assert ("kept" in saved["malloc"]) == (allocator._glibc() is not None), saved["malloc"]
    assert saved["config"]["num_epochs"] == 2 and meta["wall_seconds"] > 0
    with pytest.raises(Exception, match="already exists"):
        train(cfg, run, progress=False)


def test_frozen_backbone_epochs(sample_split: Path, tmp_path: Path):
    cfg = tiny_cfg(sample_split, freeze_epochs=1)
    train(cfg, tmp_path / "run", progress=False)
    torch.manual_seed(cfg.seed)
    init, _ = build_model("none", cfg.dropout)
    e1 = load_checkpoint(tmp_path / "run/checkpoints/epoch_001.pt")["model"]
    e2 = load_checkpoint(tmp_path / "run/checkpoints/epoch_002.pt")["model"]
    feats = [k for k in e1 if k.startswith("features.")]
    init_sd = init.state_dict()
    assert all(torch.equal(e1[k], init_sd[k]) for k in feats), "backbone (weights + BN stats) frozen in epoch 1"
    assert not torch.equal(e1["gender_head.1.weight"], init_sd["gender_head.1.weight"]), "heads train"
    assert any(not torch.equal(e1[k], e2[k]) for k in feats), "backbone trains after the frozen epochs"


def test_the_final_weights_carry_batchnorm_statistics_of_the_whole_training_set(sample_split: Path, tmp_path: Path):
    """Between epochs one batch recalibrates BN; after the last epoch, every training image does."""
    cfg = tiny_cfg(sample_split, bn_recalibration_batches=1)
    train(cfg, tmp_path / "run", progress=False)
    df = read_manifest(cfg.train_path)
    batches = Batches(
        decoded_cache(df, cfg.image_size, progress=False), df["age"], df["gender"], cfg.batch_size, cfg.channels_last
    )
    assert len(batches) > 1, "the sample must span several batches for this test to mean anything"
    order = bn_order(cfg, len(df))
    final = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]

    def stats_over(n_batches: int) -> dict:
        model, _ = model_from_checkpoint(tmp_path / "run/checkpoints/last.pt")
        recalibrate_bn(model.to(memory_format=torch.channels_last), batches, order, n_batches)
        return model.state_dict()

    full, one = stats_over(len(batches)), stats_over(1)
    keys = [k for k in final if k.endswith(("running_mean", "running_var"))]
    assert all(torch.allclose(final[k], full[k], rtol=1e-4, atol=1e-6) for k in keys)
    assert not all(torch.allclose(final[k], one[k], rtol=1e-4, atol=1e-6) for k in keys)
    e1 = load_checkpoint(tmp_path / "run/checkpoints/epoch_001.pt")["model"]
    assert [bn_batches_after(cfg, e, 9) for e in range(cfg.num_epochs)] == [1, 9]
    assert not all(torch.equal(e1[k], final[k]) for k in keys)


def test_kill_and_resume_reaches_the_same_result(sample_split: Path, tmp_path: Path):
    cfg_args = [
        f"--set=train_path={sample_split / 'train_8_folds_first'}",
        f"--set=val_path={sample_split / 'test_2_folds_last'}",
        "--set=image_size=64",
        "--set=batch_size=16",
        "--set=num_epochs=4",
        "--set=override_cycle_epoch_count=4",
        "--set=threads=1",
    ]
    env = {**os.environ}
    ref = subprocess.run(
        [sys.executable, "-m", "curate", "train", *cfg_args, "--out", str(tmp_path / "ref"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "train", *cfg_args, "--out", str(run), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "epoch_001.pt").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(pd.read_csv(run / "metrics.csv")) if (run / "metrics.csv").exists() else 0
    assert done < 4, "the run was killed before it finished"
    res = subprocess.run(
        [sys.executable, "-m", "curate", "train", "--out", str(run), "--resume", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    a = load_checkpoint(tmp_path / "ref/checkpoints/last.pt")["model"]
    b = load_checkpoint(run / "checkpoints/last.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    ma, mb = pd.read_csv(tmp_path / "ref/metrics.csv"), pd.read_csv(run / "metrics.csv")
    assert np.allclose(ma["val_mae"], mb["val_mae"], atol=1e-3)


def test_resume_without_checkpoint_is_an_error(tmp_path: Path):
    res = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "nothing"), "--resume"])
    assert res.exit_code != 0 and "nothing to resume" in res.output


def test_run_killed_in_its_first_epoch_starts_again(sample_split: Path, tmp_path: Path):
    cfg = tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metadata.json").write_text(json.dumps({"config": cfg.to_dict(), "status": "running"}))
    meta = train(cfg, run, resume=True, progress=False, max_batches=1)  # no last.pt: nothing to lose
    assert meta["status"] == "complete" and (run / "checkpoints" / "last.pt").exists()


def test_resume_refuses_a_different_config(sample_split: Path, tmp_path: Path):
    cfg = tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1)
    run = tmp_path / "run"
    train(cfg, run, progress=False, max_batches=1)
    with pytest.raises(RunError, match=r"num_epochs \(1 -> 2\), image_size \(64 -> 32\)"):
        train(replace(cfg, num_epochs=2, image_size=32), run, resume=True, progress=False, max_batches=1)
    res = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--set", "batch_size=8"])
    assert res.exit_code != 0 and "batch_size (32 -> 8)" in res.output
    # the thread count changes speed, not results: allowed; and a complete run has nothing to resume: untouched
    before = (run / "metadata.json").read_text()
    meta = train(replace(cfg, threads=1), run, resume=True, progress=False, max_batches=1)
    assert meta["epochs_completed"] == 1 and (run / "metadata.json").read_text() == before


def test_resume_refuses_other_data_and_an_interruption_says_how_to_go_on(sample_split, tmp_path, monkeypatch, capsys):
    """The same config strings can name other data (relative paths read from another folder, a split re-made):
    a resumed run checks the images and labels it started on. Ctrl-C leaves the run marked interrupted, with
    the command that continues it."""
    import trainer.train as tt

    cfg = tiny_cfg(sample_split, num_epochs=2, override_cycle_epoch_count=2)
    run = tmp_path / "run"
    real, calls = tt._epoch, []

    def stop_in_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tt, "_epoch", stop_in_second)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, progress=True, max_batches=1)
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["status"] == "interrupted" and meta["epochs_completed"] == 1
    assert (
        f"interrupted after 1 of 2 epochs; continue with `curate train --out {run} --resume`" in capsys.readouterr().out
    )
    (run / "metadata.json").write_text(json.dumps({**meta, "train_manifest_hash": "0" * 16}))  # other data now
    with pytest.raises(RunError, match="the run started on other train data than"):
        train(cfg, run, resume=True, progress=False, max_batches=1)
    (run / "metadata.json").write_text(json.dumps(meta))
    assert train(cfg, run, resume=True, progress=False, max_batches=1)["epochs_completed"] == 2


def test_a_run_that_never_had_a_finite_validation_loss_fails_clearly(sample_split: Path, tmp_path: Path, monkeypatch):
    import trainer.train as tt

    real = tt.val_metrics
    monkeypatch.setattr(tt, "val_metrics", lambda *a, **k: {**real(*a, **k), "val_loss": float("nan")})
    cfg = tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1)
    with pytest.raises(RunError, match="not finite in any epoch"):
        train(cfg, tmp_path / "run", progress=False, max_batches=1)
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_unreadable_manifests_and_images_fail_with_the_file_named(sample_split: Path, sample_dir: Path, tmp_path: Path):
    from trainer.data import decoded_cache, load_image

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: not a readable manifest"):
        read_manifest(tmp_path / "empty.csv")
    img = sorted(sample_dir.glob("*.jpg"))[0]
    with pytest.raises(DataError, match="not a readable manifest"):
        read_manifest(_copy(img, tmp_path / "m.parquet"))  # a JPEG given as a manifest
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(img.read_bytes()[:2000])  # a half-copied JPEG: OpenCV alone would pad it with grey
    with pytest.raises(DataError, match="cut.jpg: truncated JPEG"):
        load_image(cut, 64)
    m = read_manifest(sample_split / "test_2_folds_last").head(3)
    m.loc[2, "path"] = str(cut)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="cut.jpg"):
        decoded_cache(m, 64, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == [], "a failed decode leaves no temporary cache file behind"


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_imagenet_weights_load_or_fail_clearly(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: online it downloads, offline it fails
    try:
        _, used = build_model("imagenet")
    except WeightsError as e:
        assert "weights=none" in str(e) and "TORCH_HOME" in str(e)
    else:
        assert used.startswith("imagenet")


def test_bad_weights_and_checkpoints(tmp_path: Path, sample_split: Path):
    with pytest.raises(WeightsError, match="not found"):
        build_model(str(tmp_path / "missing.pt"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"run: a run folder; give its checkpoint, .*best.pt \(or last.pt\)"):
        load_checkpoint(tmp_path / "run")
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(WeightsError, match="other.pt: weights do not fit the model"):
        build_model(str(other))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    res = CliRunner().invoke(
        main, ["evaluate", "--checkpoint", str(junk), "--manifest", str(sample_split / "test_2_folds_last")]
    )
    assert res.exit_code != 0 and "junk.pt" in res.output
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "norun")])
    assert res.exit_code != 0 and "run folder not found" in res.output


class _Payload:
    """Pickled, it asks the loader to call os.system: what a hostile .pt file would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_code_is_refused_and_runs_nothing(tmp_path: Path, sample_dir: Path, sample_split: Path):
    from curate.cli.common import DEFAULT_MODEL

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    good = load_checkpoint(DEFAULT_MODEL)  # the shipped model (numpy scalars in its metrics) still loads
    torch.save({**good, "extra": _Payload(marker)}, evil)
    with pytest.raises(WeightsError, match="evil.pt: refused.*could run code"):
        load_checkpoint(evil)
    split = [f"train_path={sample_split / 'train_8_folds_first'}", f"val_path={sample_split / 'test_2_folds_last'}"]
    train = ["train", "--out", str(tmp_path / "r"), "--set", f"weights={evil}", "--set", split[0], "--set", split[1]]
    for args in (["predict", str(sample_dir), "--model", str(evil)], train):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "evil.pt: refused" in res.output and "Traceback" not in res.output, res.output
    assert not marker.exists(), "the payload ran"


def _masked_split(sample_split: Path, out: Path, wrong: bool, weights: bool) -> Path:
    """The sample's training split with a third of its genders and ages masked (weight 0), their labels
    made wrong (gender flipped, age + 40) when `wrong`."""
    m = pd.read_csv(sample_split / "train_8_folds_first" / "manifest.csv", dtype={"content_hash": str})
    g_rows, a_rows = np.arange(0, len(m), 3), np.arange(1, len(m), 3)
    if wrong:
        m.loc[g_rows, "gender"] = 1 - m.loc[g_rows, "gender"]
        m.loc[a_rows, "age"] = m.loc[a_rows, "age"] + 40
    if weights:
        m["gender_label_weight"] = np.where(np.isin(np.arange(len(m)), g_rows), 0.0, 1.0)
        m["age_label_weight"] = pd.Series(["0" if i in set(a_rows) else "" for i in range(len(m))], dtype=object)
    out.mkdir(parents=True)
    m.to_csv(out / "manifest.csv", index=False)
    return out


def test_a_masked_label_does_not_teach_its_head(sample_split: Path, tmp_path: Path):
    """Label weights 0 (`curate export --mask-suspects`): a masked gender or age, right or wrong, leaves the
    trained weights exactly as they are; unmasked, the same wrong labels change them. The run records what
    it masked, and the manifest hash tells masked from unmasked training sets."""
    final = {}
    for name, wrong, weights in (("masked_right", False, True), ("masked_wrong", True, True),
                                 ("unmasked_wrong", True, False)):  # fmt: skip
        split = _masked_split(sample_split, tmp_path / name / "split", wrong, weights)
        cfg = replace(tiny_cfg(sample_split), train_path=str(split), threads=1)
        train(cfg, tmp_path / name / "run", progress=False)
        final[name] = load_checkpoint(tmp_path / name / "run/checkpoints/last.pt")["model"]
        final[name + "_meta"] = json.loads((tmp_path / name / "run/metadata.json").read_text())
    same = lambda a, b: all(torch.equal(final[a][k], final[b][k]) for k in final[a])  # noqa: E731
    assert same("masked_right", "masked_wrong")
    assert not same("masked_wrong", "unmasked_wrong")
    n = len(read_manifest(sample_split / "train_8_folds_first"))
    masked = final["masked_wrong_meta"]["n_labels_masked"]
    assert masked == {"gender": len(range(0, n, 3)), "age": len(range(1, n, 3))}
    assert final["unmasked_wrong_meta"]["n_labels_masked"] == {"gender": 0, "age": 0}
    assert final["masked_wrong_meta"]["train_manifest_hash"] != final["unmasked_wrong_meta"]["train_manifest_hash"]


def test_weighted_loss_is_the_mean_over_the_labels_that_count():
    cfg = replace(TrainConfig(), l1_lambda=0.0)
    torch.manual_seed(0)
    model = AgeGenderClassifier()
    g, a, _ = model(torch.randn(4, 3, 64, 64))
    age, gender = torch.tensor([10.0, 20, 30, 40]), torch.tensor([0, 1, 0, 1])
    ones = torch.ones(4, 2)
    assert torch.allclose(
        loss_terms(cfg, model, g, a, gender, age, ones)[0], loss_terms(cfg, model, g, a, gender, age)[0]
    )
    w = torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0]])
    _, ce, l1 = loss_terms(cfg, model, g, a, gender, age, w)
    _, ce02, _ = loss_terms(cfg, model, g[[0, 2]], a[[0, 2]], gender[[0, 2]], age[[0, 2]])
    _, _, l112 = loss_terms(cfg, model, g[[1, 2]], a[[1, 2]], gender[[1, 2]], age[[1, 2]])
    assert torch.isclose(ce, ce02) and torch.isclose(l1, l112), "as if the masked images were absent for that head"
    _, ce0, l10 = loss_terms(cfg, model, g, a, gender, age, torch.zeros(4, 2))
    assert ce0 == 0 and l10 == 0


def test_label_weights_outside_zero_to_one_are_refused(sample_split: Path, tmp_path: Path):
    m = pd.read_csv(sample_split / "test_2_folds_last" / "manifest.csv")
    for bad in ("2.0", "-0.5", "yes"):
        m["age_label_weight"] = 1.0
        m["age_label_weight"] = m["age_label_weight"].astype(object)
        m.loc[3, "age_label_weight"] = bad
        m.to_csv(tmp_path / "m.csv", index=False)
        with pytest.raises(
            DataError, match=rf"m.csv: age_label_weight must be a number in \[0, 1\] \(blank = 1\); row 5 has {bad}"
        ):
            read_manifest(tmp_path / "m.csv")


def test_manifest_with_missing_files(sample_split: Path, tmp_path: Path):
    m = pd.read_csv(sample_split / "test_2_folds_last" / "manifest.csv")
    m.loc[0, "path"] = str(tmp_path / "gone.jpg")
    m.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="missing, first: .*gone.jpg"):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nowhere")


# --- evaluation ------------------------------------------------------------------------------


def test_metrics_on_known_predictions():
    gender = np.array([0, 0, 1, 1])
    prob = np.array([0.1, 0.6, 0.8, 0.9])  # one male predicted female
    t = gender_table(gender, prob).set_index("class")
    assert t.loc["overall", "accuracy"] == 0.75
    assert t.loc["male", "recall"] == 0.5 and t.loc["female", "recall"] == 1.0
    assert t.loc["female", "precision"] == pytest.approx(2 / 3)
    assert t.loc["overall", "auc_roc"] == 1.0  # every female scores above every male
    assert t.loc["overall", "brier"] == pytest.approx(np.mean((prob - gender) ** 2))
    assert t.loc["overall", "log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.9])))
    a = age_metrics(np.array([10, 20, 30]), np.array([12, 20, 27]))
    assert a["mae"] == pytest.approx(5 / 3) and a["mse"] == pytest.approx(13 / 3)
    assert a["rmse"] == pytest.approx(math.sqrt(13 / 3))
    assert a["mape"] == pytest.approx(100 * (0.2 + 0 + 0.1) / 3)
    assert a["r2"] == pytest.approx(1 - 13 / 200)


def test_group_tables_use_half_open_age_groups():
    pred = pd.DataFrame(
        {"age": [3, 4, 80], "age_pred": [5.0, 4.0, 70.0], "gender": [0, 1, 1], "gender_prob": [0.9, 0.9, 0.9]}
    )
    g, a = by_age_group(pred)
    assert list(g["age_group"]) == ["0-4", "4-14", "80+"]
    assert list(g["gender_accuracy"]) == [0.0, 1.0, 1.0]
    assert list(a["mae"]) == [2.0, 0.0, 10.0] and list(a["bias"]) == [2.0, 0.0, -10.0]
    pred["race"] = [1, 1, -1]
    r = by_group(pred, "race", RACE_NAMES).set_index("race")
    assert list(r.index) == ["Black", "unknown"] and list(r["support"]) == [2, 1]
    assert r.loc["Black", "age_mae"] == 1.0 and r.loc["Black", "age_bias"] == 1.0
    assert r.loc["Black", "gender_accuracy"] == 0.5 and r.loc["unknown", "age_rmse"] == 10.0


def test_expected_calibration_error_by_hand():
    y = np.array([1] * 8 + [0] * 2 + [0] * 10)  # 0.8 right 80 % of the time, 0.1 right 100 %
    p = np.array([0.8] * 10 + [0.1] * 10)
    assert expected_calibration_error(y, p) == pytest.approx((0 * 10 + 0.1 * 10) / 20)


def test_evaluate_cli_writes_every_table_and_plot(sample_split: Path, tmp_path: Path):
    train(tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1), tmp_path / "run", progress=False)
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "lowest validation loss on this same split" in res.output  # best.pt was picked on it
    out = tmp_path / "run" / "eval" / "test_2_folds_last"
    for name in ("gender_metrics", "age_metrics", "gender_accuracy_by_age_group", "age_metrics_by_age_group"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.md").read_text().count("|") > 10
    for png in ("age_confusion.png", "age_pred_vs_true.png", "age_error_by_age.png", "gender_roc_calibration.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    pred = pd.read_parquet(out / "predictions.parquet")
    man = pd.read_csv(sample_split / "test_2_folds_last" / "manifest.csv")
    n = len(man)
    assert (pred["race"].to_numpy() == man["race"].to_numpy()).all()
    by_race = pd.read_csv(out / "metrics_by_race.csv").set_index("race")
    assert by_race["support"].sum() == n and set(by_race.index) <= set(RACE_NAMES)
    black = pred[pred["race"] == 1]
    assert by_race.loc["Black", "age_mae"] == pytest.approx(black["age_abs_error"].mean(), abs=1e-5)
    assert "metrics by race" in (out / "report.md").read_text()
    assert len(pred) == n and len(pred["embedding"].iloc[0]) == 576
    assert pred["gender_prob"].between(0, 1).all() and (pred["fold"] == -1).all()
    again = evaluate_predictions(pred, tmp_path / "again")
    assert again["age_metrics"]["mae"].iloc[0] == pytest.approx(pred["age_abs_error"].mean())
    res = CliRunner().invoke(
        main,
        ["evaluate", "--run", str(tmp_path / "run"), "--which", "last", "--quiet", "--out", str(tmp_path / "last")],
    )
    assert res.exit_code == 0 and "note:" not in res.output, res.output
    ev = json.loads((tmp_path / "last" / "evaluation.json").read_text())
    assert ev["checkpoint"].endswith("last.pt") and ev["epoch"] == 1 and 0 <= ev["gender_accuracy"] <= 1
    assert ev["age_mae"] > 0 and "torch" in ev["versions"]
    both = ["evaluate", "--run", str(tmp_path / "run"), "--checkpoint", str(tmp_path / "run/checkpoints/best.pt")]
    assert "give --run or --checkpoint, not both" in CliRunner().invoke(main, both).output
    zero = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run"), "--batch-size", "0"])
    assert zero.exit_code == 2 and "--batch-size" in zero.output
    meta_path = tmp_path / "run" / "metadata.json"  # the split the run validated on has changed since
    meta_path.write_text(
        meta_path.read_text().replace(json.loads(meta_path.read_text())["val_manifest_hash"], "0" * 16)
    )
    changed = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run"), "--quiet"])
    assert changed.exit_code == 1 and "holds other images or labels than" in changed.output


def test_predict_cli_gives_per_image_status(sample_split: Path, sample_dir: Path, tmp_path: Path):
    train(tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1), tmp_path / "run", progress=False)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    imgs = sorted(sample_dir.glob("*.jpg"))[:3]
    res = CliRunner().invoke(
        main,
        [
            "predict",
            *map(str, imgs),
            str(bad),
            "--model",
            str(tmp_path / "run/checkpoints/best.pt"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    p = pd.read_csv(tmp_path / "p.csv")
    assert list(p["status"][:3]) == ["ok"] * 3 and p["status"][3].startswith("unreadable image: ")
    assert p.loc[:2, "age_pred"].notna().all() and set(p.loc[:2, "gender_pred"]) <= {"male", "female"}
    assert p.loc[:2, "quality_verdict"].notna().all() and p.loc[3, "quality_verdict"] == "not judged: no prediction"
    res = CliRunner().invoke(main, ["predict", str(imgs[0]), "--quality-thresholds", str(tmp_path / "nope.json")])
    assert res.exit_code != 0 and "nope.json: not usable quality thresholds" in res.output


def test_print_config_shows_every_key_as_the_options_give_it(tmp_path: Path):
    """`curate train --print-config`: the resolved config (YAML file, then --set) as YAML, and no run."""
    import yaml

    (tmp_path / "c.yaml").write_text("num_epochs: 3\n")
    res = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "c.yaml"), "--set", "image_size=96",
                                    "--print-config"])  # fmt: skip
    shown = yaml.safe_load(res.output)
    assert res.exit_code == 0 and shown == {**TrainConfig().to_dict(), "num_epochs": 3, "image_size": 96}
    assert "--out is required" in CliRunner().invoke(main, ["train"]).output


def test_a_schedule_longer_than_the_run_is_warned_and_the_weights_file_recorded(sample_split, tmp_path, capsys):
    """num_epochs 1 under a 15-epoch one-cycle: the rate never peaks nor anneals (README's quick start collapsed
    to one age for everyone), so the run says so; a warm start records which weights file it read (its hash)."""
    from core.manifest import file_sha256

    first = tiny_cfg(sample_split, num_epochs=1, override_cycle_epoch_count=1)
    train(first, tmp_path / "a", progress=False, max_batches=1)
    assert "one-cycle" not in capsys.readouterr().err
    ckpt = tmp_path / "a" / "checkpoints" / "best.pt"
    meta = train(replace(first, override_cycle_epoch_count=15, weights=str(ckpt)), tmp_path / "b", progress=False,
                 max_batches=1)  # fmt: skip
    said = capsys.readouterr().err
    assert "warning: the one-cycle schedule spans 15 epochs and this run has 1" in said
    assert "--set override_cycle_epoch_count=1" in said and meta["weights_sha256"] == file_sha256(ckpt)
