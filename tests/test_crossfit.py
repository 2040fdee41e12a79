"""Cross-fitting: every row scored once, by a model that never trained on it; resumable; shared schema."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from trainer.config import TrainConfig, replace
from trainer.crossfit import (
    PREDICTION_COLUMNS,
    CrossfitError,
    assign_crossfit_folds,
    cheap_config,
    crossfit,
    predictions_frame,
)


def sample_manifest(sample_split) -> pd.DataFrame:
    return pd.read_csv(sample_split / "folds.csv", dtype={"content_hash": str})


def tiny_config() -> TrainConfig:
    return replace(TrainConfig(), image_size=32, num_epochs=2, override_cycle_epoch_count=2, batch_size=32, threads=2)


def test_folds_keep_copies_together_and_are_balanced():
    rng = np.random.default_rng(0)
    n = 1000
    df = pd.DataFrame(
        {"age": rng.integers(1, 90, n), "gender": rng.integers(0, 2, n), "content_hash": [f"h{i}" for i in range(n)]}
    )
    df.loc[10:19, "content_hash"] = "dup"  # a 10-image group of pixel-identical copies
    df.loc[10:19, ["age", "gender"]] = [30, 1]
    for k in (2, 3, 5):
        f = assign_crossfit_folds(df, k=k, seed=1)
        assert set(f) == set(range(k))
        assert len(set(f[10:20])) == 1
        sizes = np.bincount(f)
        assert sizes.max() - sizes.min() <= 10
        girls = np.bincount(f[df["gender"].to_numpy() == 1], minlength=k)
        assert girls.max() - girls.min() <= 12  # stratified by gender (and age bin)
    assert np.array_equal(assign_crossfit_folds(df, 2, seed=4), assign_crossfit_folds(df, 2, seed=4))
    assert not np.array_equal(assign_crossfit_folds(df, 2, seed=4), assign_crossfit_folds(df, 2, seed=5))


def test_predictions_frame_schema_and_values():
    man = pd.DataFrame(
        {
            "path": ["/a/1.jpg", "/a/2.jpg"],
            "filename": ["1.jpg", "2.jpg"],
            "content_hash": ["x", "y"],
            "age": [20, 60],
            "gender": [0, 1],
        }
    )
    arrays = {
        "age_pred": np.array([25.0, 50.0], np.float32),
        "gender_logits": np.array([[2.0, 0.0], [0.0, 0.0]], np.float32),
        "embedding": np.ones((2, 576), np.float32),
    }
    out = predictions_frame(man, arrays, model_id="0123456789ab", fold=1)
    assert list(out.columns) == PREDICTION_COLUMNS
    np.testing.assert_allclose(out["gender_prob"], [1 / (1 + np.exp(2.0)), 0.5], rtol=1e-6)
    np.testing.assert_allclose(out["gender_loss"], [np.log1p(np.exp(-2.0)), np.log(2.0)], rtol=1e-5)
    np.testing.assert_allclose(out["age_abs_error"], [5.0, 10.0])
    assert (out["fold"] == 1).all() and (out["model"] == "0123456789ab").all()
    assert len(out["embedding"].iat[0]) == 576
    with pytest.raises(CrossfitError, match="do not match"):
        predictions_frame(man.iloc[:1], arrays, "m", 0)


def test_bad_inputs_are_clear_errors(tmp_path):
    df = pd.DataFrame({"path": ["a", "b"], "age": [1, 2], "gender": [0, 1], "content_hash": ["x", "y"]})
    with pytest.raises(CrossfitError, match="k must be >= 2"):
        crossfit(df, tmp_path, tiny_config(), k=1)
    with pytest.raises(CrossfitError, match="lacks column"):
        crossfit(df.drop(columns=["content_hash"]), tmp_path, tiny_config())
    with pytest.raises(CrossfitError, match="some fold would be empty"):
        crossfit(df, tmp_path, tiny_config(), k=3)
    bad = df.assign(gender=[0, np.nan])
    with pytest.raises(CrossfitError, match="usable age/gender"):
        crossfit(bad, tmp_path, tiny_config())


def test_cheap_mode_is_the_same_recipe_smaller():
    base = TrainConfig()
    cheap = cheap_config(base)
    assert cheap.image_size < base.image_size and cheap.num_epochs < base.num_epochs
    assert cheap.override_cycle_epoch_count <= cheap.num_epochs
    assert (cheap.max_lr, cheap.model_type, cheap.gender_loss_weight) == (
        base.max_lr,
        base.model_type,
        base.gender_loss_weight,
    )


@pytest.mark.slow
def test_crossfit_is_strictly_out_of_sample_and_resumable(sample_split, tmp_path, monkeypatch):
    man = sample_manifest(sample_split)
    out = crossfit(man, tmp_path / "cf", tiny_config(), k=2, seed=0, progress=False, max_batches=2)
    assert list(out.columns) == PREDICTION_COLUMNS
    assert list(out["path"]) == list(man["path"])  # manifest order, every row once
    assert out[["age_pred", "gender_prob"]].notna().all().all()
    for i in (0, 1):
        fold_rows = out[out["fold"] == i]
        trained_on = pd.read_csv(tmp_path / "cf" / f"fold_{i}" / "train.csv", dtype={"content_hash": str})
        assert not set(trained_on["content_hash"]) & set(fold_rows["content_hash"])
        last = tmp_path / "cf" / f"fold_{i}" / "run" / "checkpoints" / "last.pt"
        assert (fold_rows["model"] == hashlib.sha256(last.read_bytes()).hexdigest()[:12]).all()
    assert out.groupby("content_hash")["fold"].nunique().max() == 1
    assert out["model"].nunique() == 2
    stored = pd.read_parquet(tmp_path / "cf" / "predictions.parquet")
    assert list(stored.columns) == PREDICTION_COLUMNS and len(stored) == len(man)

    # Resume: both folds' predictions exist, so nothing is trained again.
    import trainer.train

    def no_training(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(trainer.train, "train", no_training)
    again = crossfit(man, tmp_path / "cf", tiny_config(), k=2, seed=0, progress=False, max_batches=2)
    pd.testing.assert_frame_equal(again.drop(columns=["embedding"]), out.drop(columns=["embedding"]))
    monkeypatch.undo()

    # A fold killed during its first epoch left a run folder but no checkpoint: it starts afresh.
    fold1 = tmp_path / "cf" / "fold_1"
    (fold1 / "predictions.parquet").unlink()
    (fold1 / "run" / "checkpoints" / "last.pt").unlink()
    meta = json.loads((fold1 / "run" / "metadata.json").read_text())
    (fold1 / "run" / "metadata.json").write_text(json.dumps({**meta, "status": "running"}))
    (tmp_path / "cf" / "predictions.parquet").unlink()
    redo = crossfit(man, tmp_path / "cf", tiny_config(), k=2, seed=0, progress=False, max_batches=2)
    assert (fold1 / "run" / "checkpoints" / "last.pt").exists()
    pd.testing.assert_frame_equal(
        redo[redo["fold"] == 0].drop(columns=["embedding"]), out[out["fold"] == 0].drop(columns=["embedding"])
    )
    assert redo.loc[redo["fold"] == 1, "age_pred"].notna().all()
    # A different manifest in the same folder is refused rather than mixed with stale folds.
    with pytest.raises(CrossfitError, match="another manifest"):
        crossfit(
            man.assign(gender=1 - man["gender"]),
            tmp_path / "cf",
            tiny_config(),
            k=2,
            seed=0,
            progress=False,
            max_batches=2,
        )


def test_cheap_recipe_keeps_what_set_names():
    """`flag-mislabels --cheap --set num_epochs=3` trains 3 epochs, not the recipe's 8 (it used to override)."""
    from curate.cli.fiftyone import crossfit_config
    from trainer.config import load_config

    sets = ("num_epochs=3", "dropout=0.2")
    cfg = crossfit_config(load_config(None, {"num_epochs": "3", "dropout": "0.2"}), "cheap", sets)
    assert (cfg.num_epochs, cfg.image_size, cfg.batch_size, cfg.dropout) == (3, 96, 128, 0.2)
    plain = crossfit_config(load_config(), "cheap", ())
    assert (plain.num_epochs, plain.image_size, plain.batch_size) == (8, 96, 128)
    assert crossfit_config(load_config(), "full", ()) == load_config()


def test_thorough_recipe_is_larger_and_its_schedule_ends_with_it():
    """`--recipe thorough`: 128 px, 12 epochs, the one-cycle scaled to the run (not the defaults' 15 epochs);
    --set still wins; an unknown name is a clear CrossfitError; the CLI's --cheap/--full still parse."""
    from click.testing import CliRunner

    from curate.cli import main as cli
    from curate.cli.fiftyone import crossfit_config
    from trainer.config import load_config
    from trainer.crossfit import recipe_config

    base = load_config()
    t = crossfit_config(base, "thorough", ())
    c = crossfit_config(base, "cheap", ())
    assert (t.image_size, t.num_epochs, t.batch_size) == (128, 12, 128)
    assert c.override_cycle_epoch_count < t.override_cycle_epoch_count == t.num_epochs  # as measured
    assert (t.max_lr, t.l1_lambda, t.age_loss_scale) == (base.max_lr, base.l1_lambda, base.age_loss_scale)
    kept = crossfit_config(load_config(None, {"image_size": "112"}), "thorough", ("image_size=112",))
    assert (kept.image_size, kept.num_epochs) == (112, 12)
    with pytest.raises(CrossfitError, match="unknown cross-fit recipe 'huge'"):
        recipe_config(base, "huge")
    for flag in (["--recipe", "thorough"], ["--cheap"], ["--full"]):
        res = CliRunner().invoke(cli, ["flag-mislabels", *flag, "--help"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["flag-mislabels", "--recipe", "huge"])
    assert res.exit_code != 0 and "'huge' is not one of" in res.output
