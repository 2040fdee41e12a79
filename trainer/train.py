"""Training: the reference recipe (AdamW, one-cycle, age L1 + gender CE + L1 penalty), resumable.

Every epoch draws its shuffling and augmentation from generators seeded by (seed, epoch), and the
model/optimizer/scheduler state is saved at each epoch end, so `resume` after a kill replays exactly
the epochs that had not finished and reaches the same result as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core.allocator import keep_freed_memory
from core.allocator import status as allocator_status
from core.atomic import save_figure, write_csv, write_json
from core.errors import CurateError
from core.manifest import file_sha256, label_weights, manifest_hash, masked_label_counts, read_manifest
from trainer.config import TrainConfig, replace
from trainer.data import Batches, decoded_cache
from trainer.model import AgeGenderClassifier, build_model, load_checkpoint, save_torch

METRIC_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_mae",
    "train_acc",
    "val_loss",
    "val_mae",
    "val_acc",
    "epoch_seconds",
    "backbone_frozen",
    "near_zero_weights",
]


class RunError(CurateError, RuntimeError):
    pass


def loss_terms(
    cfg: TrainConfig,
    model: nn.Module,
    gender_logits: torch.Tensor,
    age_pred: torch.Tensor,
    gender: torch.Tensor,
    age: torch.Tensor,
    label_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total loss = w*CE + (1-w)*L1(age)/age_loss_scale + l1_lambda*sum|weights|.

    Returns (total, gender CE, age L1 in years). The L1 penalty covers every trainable weight tensor.
    `label_weights` (B, 2) weighs each image's gender and age term; each term is then the weighted mean
    over the batch, so a masked label (weight 0) counts as if its image were absent for that head only.
    """
    if label_weights is None:
        ce = F.cross_entropy(gender_logits.float(), gender)
        l1_age = F.l1_loss(age_pred.float(), age)
    else:
        ce = _weighted_mean(F.cross_entropy(gender_logits.float(), gender, reduction="none"), label_weights[:, 0])
        l1_age = _weighted_mean(F.l1_loss(age_pred.float(), age, reduction="none"), label_weights[:, 1])
    total = cfg.gender_loss_weight * ce + (1 - cfg.gender_loss_weight) * l1_age / cfg.age_loss_scale
    if cfg.l1_lambda:
        total = total + cfg.l1_lambda * weight_l1(model)
    return total, ce, l1_age


def _weighted_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (x * w).sum() / w.sum().clamp_min(1e-8)  # a batch whose labels are all masked adds 0


def weight_l1(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


def near_zero_weights(model: nn.Module, tol: float = 1e-3) -> float:
    """Fraction of convolution and linear weight entries with |w| < tol.

    Logged per epoch because the L1 term prunes silently: with BatchNorm after every convolution a
    weight's scale does not change the output, so a summed L1 penalty under Adam can drive most
    weights to zero without the loss showing it. Such weights jitter around zero with an amplitude of
    about the learning rate, so 1e-3 counts them mid-run; as the rate anneals they settle far lower
    (reference l1_lambda 1e-4 from scratch, 128 px: 21% at epoch 1, 79% at epoch 12, 97.8% at the
    end, 97.4% even below 1e-5).
    """
    ws = [p.detach() for p in model.parameters() if p.dim() > 1]
    return float(sum((w.abs() < tol).sum().item() for w in ws) / sum(w.numel() for w in ws))


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.base_lr, weight_decay=cfg.weight_decay)


def make_train_step(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer):
    """The one optimisation step that `train` runs (and bench/train_throughput.py times).

    With `cfg.compile` the model's forward (and so its backward) is compiled by inductor for the full
    batch shape only; a smaller last batch runs the same weights eagerly instead of paying for a
    second compile. Returns step(x, age, gender, label_weights=None) -> (loss, gender_logits, age_pred).

    Measured and rejected here: splitting the batch into micro-batches of 64 with gradient
    accumulation ran the bare step 1.3-1.6x faster (activations stay in cache), but BatchNorm then
    normalises over 64 images ("ghost batch norm") and age regression stalled: train MAE 13.9 vs
    10.6 after 3 epochs of the reference schedule at 128 px (docs/speed.md).
    """
    fwd = torch.compile(model, dynamic=False) if cfg.compile else model

    def step(x: torch.Tensor, age: torch.Tensor, gender: torch.Tensor, label_weights: torch.Tensor | None = None):
        f = fwd if len(age) == cfg.batch_size else model
        with autocast(cfg):
            g_logits, a_pred, _ = f(x)
        loss, _, _ = loss_terms(cfg, model, g_logits, a_pred, gender, age, label_weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss, g_logits, a_pred

    return step


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """Per-step one-cycle over `override_cycle_epoch_count` epochs, or per-epoch step / plateau."""
    if cfg.lr_scheduler == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.max_lr,
            total_steps=steps_per_epoch * cfg.override_cycle_epoch_count,
            pct_start=cfg.pct_start,
            anneal_strategy=cfg.anneal_strategy,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
        )
    if cfg.lr_scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.gamma, patience=cfg.plateau_patience)


def step_scheduler_batch(cfg: TrainConfig, sched) -> None:
    # After the cycle's last step the rate stays at its final value (OneCycleLR refuses extra steps).
    if cfg.lr_scheduler == "one_cycle" and sched.last_epoch + 1 < sched.total_steps:
        sched.step()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Batches, order: np.ndarray, n_batches: int) -> None:
    """Recompute BatchNorm running statistics as exact averages over `n_batches` training batches.

    torchvision's MobileNetV3 uses BN momentum 0.01, so its running statistics trail the weights by
    hundreds of steps; trained from scratch with a high learning rate (and the L1 penalty shrinking
    weights), eval-mode activations collapse and validation metrics are meaningless for many epochs.
    Training itself only ever uses batch statistics, so recomputing the running ones changes no
    gradient: it only makes eval mode (validation, checkpoints, every downstream prediction) match
    the weights. Same idea as torch.optim.swa_utils.update_bn, on a fixed subset.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n_batches <= 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for i, (x, _, _, _) in enumerate(batches.iterate(order)):
        if i >= n_batches:
            break
        model(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom


def bn_order(cfg: TrainConfig, n_images: int) -> np.ndarray:
    """The fixed image order BatchNorm recalibration reads: the same subset after every epoch."""
    return np.random.default_rng([cfg.seed, 10_000]).permutation(n_images)


def bn_batches_after(cfg: TrainConfig, epoch: int, n_batches: int) -> int:
    """How many training batches recalibrate BatchNorm after `epoch` (0-based).

    A few batches are enough to make eval mode usable between epochs, but the final weights are the
    model people use, and their statistics from 8 batches (2,048 images) were measurably off: the
    stage-3 default model scored test MAE 5.52 with them and 5.37 with statistics over all 27,053
    training images (accuracy 93.42% -> 93.54%), for ~1 minute once per run.
    """
    if cfg.bn_recalibration_batches <= 0:
        return 0
    return n_batches if epoch == cfg.num_epochs - 1 else cfg.bn_recalibration_batches


def autocast(cfg: TrainConfig):
    return torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else nullcontext()


@torch.no_grad()
def forward_tta(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, tta: bool = False):
    """(gender_logits, age, embedding); with `tta` the mean over the image and its mirror image.

    Faces are left-right symmetric and training flips them at random, so the mirrored pass is a
    second, slightly different opinion: averaging the two costs one extra forward pass and took test
    age MAE 6.02 -> 5.87 / accuracy 91.35% -> 92.15% (160 px model), 5.93 -> 5.77 / 91.98% -> 92.47%
    (the shipped 128 px model).
    """
    with autocast(cfg):
        g, a, e = model(x)
        if tta:
            g2, a2, e2 = model(torch.flip(x, dims=[3]))
            g, a, e = (g + g2) / 2, (a + a2) / 2, (e + e2) / 2
    return g, a, e


@torch.no_grad()
def predict_arrays(
    model: AgeGenderClassifier,
    batches: Batches,
    cfg: TrainConfig,
    progress: bool = False,
    desc: str = "predict",
    tta: bool = False,
) -> dict[str, np.ndarray]:
    """Run the model over every row in order; returns age_pred, gender_logits, embedding."""
    from tqdm import tqdm

    model.eval()
    ages, logits, embs = [], [], []
    for x, _, _, _ in tqdm(batches.iterate(), total=len(batches), desc=desc, disable=not progress, leave=False):
        g, a, e = forward_tta(model, x, cfg, tta)
        ages.append(a.float())
        logits.append(g.float())
        embs.append(e.float())
    return {
        "age_pred": torch.cat(ages).numpy(),
        "gender_logits": torch.cat(logits).numpy(),
        "embedding": torch.cat(embs).numpy(),
    }


def val_metrics(cfg: TrainConfig, model: AgeGenderClassifier, batches: Batches) -> dict[str, float]:
    out = predict_arrays(model, batches, cfg)
    age = batches.ages.numpy()
    gender = batches.genders.numpy()
    logits = torch.from_numpy(out["gender_logits"])
    ce = F.cross_entropy(logits, torch.from_numpy(gender)).item()
    mae = float(np.abs(out["age_pred"] - age).mean())
    loss = cfg.gender_loss_weight * ce + (1 - cfg.gender_loss_weight) * mae / cfg.age_loss_scale
    return {"val_loss": loss, "val_mae": mae, "val_acc": float((out["gender_logits"].argmax(1) == gender).mean())}


def set_threads(cfg: TrainConfig) -> None:
    n = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(n)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "opencv-python-headless", "scikit-learn", "utkface-curate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def train(
    cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True, max_batches: int | None = None
) -> dict:
    """Train (or resume) a run in `out_dir`; returns the run metadata.

    `max_batches` stops each epoch early: only for tests of the machinery, never for real runs.
    Runs inside `keep_freed_memory` (2x faster steps on glibc, core/allocator.py).
    """
    with keep_freed_memory():
        return _train(cfg, out_dir, resume, progress, max_batches)


@dataclass
class _Run:
    """What every epoch of one run shares: its folder, data, model, optimiser and history so far."""

    cfg: TrainConfig
    out_dir: Path
    train_df: pd.DataFrame
    val_df: pd.DataFrame
    train_b: Batches
    val_b: Batches
    steps: int
    model: AgeGenderClassifier
    opt: torch.optim.Optimizer
    sched: object
    weights_used: str
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    wall_before: float = 0.0

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def _train(cfg: TrainConfig, out_dir: str | Path, resume: bool, progress: bool, max_batches: int | None) -> dict:
    out_dir = Path(out_dir)
    cfg, state = _resume_state(cfg, out_dir, resume, progress)
    before = _read_meta(out_dir) if state is not None else {}
    if state is not None and before.get("status") == "complete" and state["epoch"] + 1 >= cfg.num_epochs:
        if progress:
            print(f"{out_dir}: the run is complete ({state['epoch'] + 1} epochs); nothing to resume", flush=True)
        return before
    if cfg.lr_scheduler == "one_cycle" and cfg.override_cycle_epoch_count > cfg.num_epochs:
        print(f"warning: the one-cycle schedule spans {cfg.override_cycle_epoch_count} epochs and this run has "
              f"{cfg.num_epochs}: its learning rate never peaks nor anneals (a model that may learn nothing); add "
              f"--set override_cycle_epoch_count={cfg.num_epochs}", file=sys.stderr, flush=True)  # fmt: skip
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    set_threads(cfg)
    t_start = time.time()
    run = _build_run(cfg, out_dir, state, progress, max_batches, before)
    meta = _metadata(run, state)
    write_json(out_dir / "metadata.json", meta)
    best_loss = min((_finite(h["val_loss"]) for h in run.history), default=float("inf"))
    train_step = make_train_step(cfg, run.model, run.opt)
    if progress and state is not None:
        print(f"{out_dir}: resuming after epoch {run.start_epoch} of {cfg.num_epochs}", flush=True)
    try:
        for epoch in range(run.start_epoch, cfg.num_epochs):
            row = _epoch(run, train_step, epoch, progress)
            run.history.append(row)
            if progress:
                print(
                    f"epoch {epoch + 1}/{cfg.num_epochs}: train loss {row['train_loss']:.3f} MAE "
                    f"{row['train_mae']:.2f} acc {row['train_acc']:.3f} | val MAE {row['val_mae']:.2f} acc "
                    f"{row['val_acc']:.3f} | {row['epoch_seconds']:.0f}s | weights < 1e-3: "
                    f"{row['near_zero_weights']:.1%}",
                    flush=True,
                )
            best_loss = _save_epoch(run, epoch, row, best_loss, run.wall_before + (time.time() - t_start))
    except KeyboardInterrupt:  # the epochs saved stay; say so, and how to go on
        write_json(out_dir / "metadata.json", {**meta, "status": "interrupted", "epochs_completed": len(run.history)})
        print(f"\ninterrupted after {len(run.history)} of {cfg.num_epochs} epochs; continue with `curate train --out "
              f"{out_dir} --resume`", flush=True)  # fmt: skip
        raise
    return _finish_run(run, meta, best_loss, t_start)


def _read_meta(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}


def _resume_state(cfg: TrainConfig, out_dir: Path, resume: bool, progress: bool) -> tuple[TrainConfig, dict | None]:
    """The config to train with and the checkpoint to resume from (None for a fresh run)."""
    last_path = out_dir / "checkpoints" / "last.pt"
    started = (out_dir / "metadata.json").exists()
    if last_path.exists() and not resume:
        raise RunError(f"{out_dir}: a run already exists here; use --resume to continue it or another --out")
    if resume and not last_path.exists():
        if not started:
            raise RunError(f"{last_path}: nothing to resume (no completed epoch checkpoint)")
        resume = False  # killed before its first epoch ended: nothing to lose, start it again
        if progress:
            print(f"{out_dir}: no epoch completed before the interruption; starting from epoch 1", flush=True)
    state = load_checkpoint(last_path) if resume else None
    if state is not None:
        cfg = _resumed_config(cfg, TrainConfig(**state["config"]), last_path)
    return cfg, state


def _build_run(
    cfg: TrainConfig, out_dir: Path, state: dict | None, progress: bool, max_batches: int | None, before: dict
) -> _Run:
    """Data (decoded once, cached), model, optimiser and schedule; restored from `state` when resuming, on the data
    the run started on (`before`: its metadata.json) or not at all."""
    train_df = read_manifest(cfg.train_path)
    val_df = read_manifest(cfg.val_path)
    if state is not None:
        _check_same_data(out_dir, before, {"train": train_df, "val": val_df}, cfg)
    train_px = decoded_cache(train_df, cfg.image_size, progress=progress)
    val_px = decoded_cache(val_df, cfg.image_size, progress=progress)
    weights = label_weights(train_df)
    train_b = Batches(train_px, train_df["age"], train_df["gender"], cfg.batch_size, cfg.channels_last, weights)
    val_b = Batches(val_px, val_df["age"], val_df["gender"], cfg.batch_size, cfg.channels_last)
    steps = len(train_b) if max_batches is None else min(len(train_b), max_batches)

    torch.manual_seed(cfg.seed)
    age_w = None if weights is None or not weights[:, 1].any() else weights[:, 1]  # masked ages do not set it
    age_init = float(np.average(train_df["age"], weights=age_w))
    model, weights_used = build_model(cfg.weights, cfg.dropout, age_init=age_init)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg, model)
    run = _Run(
        cfg, out_dir, train_df, val_df, train_b, val_b, steps, model, opt, make_scheduler(cfg, opt, steps), weights_used
    )
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        run.history, run.start_epoch = state["history"], state["epoch"] + 1
        run.weights_used, run.wall_before = state["weights_used"], state.get("wall_seconds", 0.0)
    return run


def _metadata(run: _Run, state: dict | None) -> dict:
    """metadata.json while the run is running: config, weights, manifests and their hashes, versions."""
    cfg, val_df = run.cfg, run.val_df
    meta = {
        "config": cfg.to_dict(),
        "weights_used": run.weights_used,
        "train_manifest": str(Path(cfg.train_path).resolve()),
        "train_manifest_hash": manifest_hash(run.train_df),
        "val_manifest": str(Path(cfg.val_path).resolve()),
        "val_manifest_hash": manifest_hash(val_df),
        "n_train": len(run.train_df),
        "n_labels_masked": masked_label_counts(run.train_df),
        "n_val": len(val_df),
        "versions": library_versions(),
        "command": " ".join(sys.argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "malloc": allocator_status(),
        "status": "running",
    }
    if Path(str(cfg.weights)).is_file():  # a path can be overwritten later: record which file it was
        meta["weights_sha256"] = file_sha256(Path(str(cfg.weights)))
    if state is not None:
        meta["wall_seconds_before_resume"] = state.get("wall_seconds", 0.0)
    return meta


def _epoch(run: _Run, train_step, epoch: int, progress: bool) -> dict:
    """One epoch: the training pass, BatchNorm statistics, validation and the schedule; its metrics row."""
    from tqdm import tqdm

    cfg, model, t0 = run.cfg, run.model, time.time()
    frozen = epoch < cfg.freeze_epochs
    model.set_backbone_trainable(not frozen)
    model.train()
    if frozen:
        model.features.eval()  # a frozen backbone keeps its BatchNorm statistics too
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout draws from the global generator
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(run.train_df))
    augment = "dynamic" if cfg.use_dynamic_augmentation else "basic"
    sums = np.zeros(4)  # loss, abs age err, correct, n
    batches = run.train_b.iterate(order, augment, gen, crop=cfg.crop_augment())
    bar = tqdm(batches, total=run.steps, desc=f"epoch {epoch + 1}/{cfg.num_epochs}", disable=not progress,
               unit="batch", leave=False)  # fmt: skip
    for i, (x, age, gender, idx) in enumerate(bar):
        if i >= run.steps:
            break
        loss, g_logits, a_pred = train_step(x, age, gender, run.train_b.weights_at(idx))
        step_scheduler_batch(cfg, run.sched)
        n = len(age)
        sums += [loss.item() * n, (a_pred.detach().float() - age).abs().sum().item(),
                 (g_logits.argmax(1) == gender).sum().item(), n]  # fmt: skip
        bar.set_postfix(loss=f"{sums[0] / sums[3]:.3f}", mae=f"{sums[1] / sums[3]:.2f}", acc=f"{sums[2] / sums[3]:.3f}")
    bar.close()
    lr = run.opt.param_groups[0]["lr"]
    if not frozen:
        n_bn = bn_batches_after(cfg, epoch, len(run.train_b))
        recalibrate_bn(model, run.train_b, bn_order(cfg, len(run.train_df)), n_bn)
    vm = val_metrics(cfg, model, run.val_b)
    if cfg.lr_scheduler == "step":
        run.sched.step()
    elif cfg.lr_scheduler == "reduce_on_plateau":
        run.sched.step(vm["val_loss"])
    loss, mae, acc = (float(sums[k] / sums[3]) for k in range(3))  # plain floats: torch.load(weights_only) reads them
    return {"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_mae": mae,
            "train_acc": acc, **vm, "epoch_seconds": time.time() - t0, "backbone_frozen": frozen,
            "near_zero_weights": near_zero_weights(model)}  # fmt: skip


def _save_epoch(run: _Run, epoch: int, row: dict, best_loss: float, wall: float) -> float:
    """Epoch and best checkpoints, metrics.csv, then last.pt (the resume point, last of all); the best loss."""
    cfg, model = run.cfg, run.model
    weights_only = {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                    "weights_used": run.weights_used, "metrics": row}  # fmt: skip
    if cfg.keep_epoch_checkpoints:
        save_torch(weights_only, run.ckpt_dir / f"epoch_{epoch + 1:03d}.pt")
    if _finite(row["val_loss"]) < best_loss:
        best_loss = row["val_loss"]
        save_torch(weights_only, run.ckpt_dir / "best.pt")
    write_csv(pd.DataFrame(run.history, columns=METRIC_COLUMNS), run.out_dir / "metrics.csv")
    ckpt = {"model": model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
            "epoch": epoch, "history": run.history, "config": cfg.to_dict(), "weights_used": run.weights_used,
            "wall_seconds": wall}  # fmt: skip
    save_torch(ckpt, run.ckpt_dir / "last.pt")
    return best_loss


def _finish_run(run: _Run, meta: dict, best_loss: float, t_start: float) -> dict:
    """metadata.json of the complete run (best epoch, final metrics, checkpoint hash) and the curves."""
    cfg, history, out_dir = run.cfg, run.history, run.out_dir
    if not np.isfinite(best_loss):
        raise RunError(
            f"{out_dir}: validation loss was not finite in any epoch (diverged?); no best.pt "
            f"written, see {out_dir / 'metrics.csv'}"
        )
    best = min(history, key=lambda h: _finite(h["val_loss"]))
    all_bn = cfg.bn_recalibration_batches > 0 and cfg.freeze_epochs < cfg.num_epochs
    meta.update(
        status="complete",
        wall_seconds=meta.get("wall_seconds_before_resume", 0.0) + time.time() - t_start,
        epochs_completed=len(history),
        best_epoch=best["epoch"],
        best_val_mae=best["val_mae"],
        best_val_acc=best["val_acc"],
        final=history[-1],
        best_checkpoint_sha256=file_sha256(run.ckpt_dir / "best.pt"),
        final_bn_statistics=f"all {len(run.train_df)} training images" if all_bn else "as trained",
    )
    write_json(out_dir / "metadata.json", meta)
    _plot_history(history, out_dir / "training_curves.png")
    return meta


def _finite(x: float) -> float:
    """NaN/inf validation losses rank last: a diverged epoch must never become `best`."""
    return float(x) if np.isfinite(x) else float("inf")


# Keys that change how fast a run goes but not what it computes: they may differ on --resume.
_RESUME_FREE = {"threads"}


def _check_same_data(out_dir: Path, before: dict, now: dict[str, pd.DataFrame], cfg: TrainConfig) -> None:
    """A resumed run trains its remaining epochs on the images and labels it started on: the same config strings
    can name other data (a relative path read from another folder, a split re-made since)."""
    for part, df in now.items():
        then = before.get(f"{part}_manifest_hash")
        if then is not None and then != manifest_hash(df):
            path = getattr(cfg, f"{part}_path")
            raise RunError(
                f"{out_dir}: the run started on other {part} data than {path} holds now (images and labels hash "
                f"{then} then, {manifest_hash(df)} now; it was {before.get(f'{part}_manifest')}); resume from the "
                "folder the run started in, or train into another --out"
            )


def _resumed_config(asked: TrainConfig, saved: TrainConfig, last_path: Path) -> TrainConfig:
    """A resumed run continues with the config it started with; asking for another one is an error.

    Silently keeping the old config would hide the request; silently honouring it would train the
    second half of a run on other data or another schedule while metadata.json records the first.
    """
    a, s = asdict(asked), asdict(saved)
    diff = [f"{k} ({s[k]!r} -> {a[k]!r})" for k in a if k not in _RESUME_FREE and a[k] != s.get(k)]
    if diff:
        raise RunError(
            f"{last_path}: a resumed run keeps the config it started with, but these differ: "
            f"{', '.join(diff)}; drop them or train into another --out"
        )
    return replace(saved, **{k: a[k] for k in _RESUME_FREE})


def _plot_history(history: list[dict], path: Path) -> None:
    """Loss, age MAE, gender accuracy and learning rate per epoch: points (a one-epoch run shows), whole-epoch
    ticks, and the best epoch (lowest validation loss, best.pt) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = pd.DataFrame(history)
    best = h.loc[h["val_loss"].map(_finite).idxmin(), "epoch"]
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.5))
    for a, (key, title) in zip(ax, (("loss", "loss"), ("mae", "age MAE (years)"), ("acc", "gender accuracy"))):
        a.plot(h.epoch, h[f"train_{key}"], "o-", label="train")
        a.plot(h.epoch, h[f"val_{key}"], "o-", label="val")
        a.set_title(title)
    ax[3].plot(h.epoch, h["lr"], "o-", color="grey")
    ax[3].set_title("learning rate (at the epoch's end)")
    for a in ax:
        a.axvline(best, color="green", lw=0.8, ls=":", label=f"best epoch ({best})")
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax[0].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
