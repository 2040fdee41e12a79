"""Training throughput, three ways, in one run (images/s, higher is better).

(a) the plain fp32 NCHW model step on in-memory tensors (the model alone, no data work); (b) the `curate
train` pipeline: decoded uint8 cache, one-gather uint8 augmentation, channels_last, freed memory kept by
malloc (`core.allocator`), eager and torch.compile'd (`--set compile=true`; its one-off compile time is
printed, not counted), and with --bf16 bf16 autocast: the same step function (`trainer.train.make_train_step`)
that `trainer.train` runs; (c) a naive loader: PIL decode + torchvision transforms in a DataLoader feeding the
plain step. (a) and (c) run with malloc as the system sets it. A row "(a) + freed memory kept" shows how much
of (b)'s gain is the allocator alone.

Usage: python bench/train_throughput.py [--data ../shared/utkface/UTKFace] [--size 200] [--n 2048]
       [--batch 256] [--rounds 4] [--bf16]
Run it on an otherwise idle machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.allocator import keep_freed_memory  # noqa: E402
from curate.splits import parse_name  # noqa: E402
from trainer.config import TrainConfig, replace  # noqa: E402
from trainer.data import Batches, decoded_cache  # noqa: E402
from trainer.model import AgeGenderClassifier  # noqa: E402
from trainer.train import make_train_step  # noqa: E402


def timed(batches, step, warmup: int = 3, first: list | None = None) -> float:
    """Images/s after `warmup` batches; the warm-up time (e.g. torch.compile's) goes to `first`.

    Three, because a fresh model's first steps run slower (34 -> 45-50 img/s over the first twelve
    plain steps at 200 px here), which one warm-up batch left in the figures.
    """
    n, t0 = 0, time.perf_counter()
    for i, (x, age, gender) in enumerate(batches):
        if i == warmup:
            if first is not None:
                first.append(time.perf_counter() - t0)
            t0, n = time.perf_counter(), 0
        step(x, age, gender)
        n += len(age)
    return n / (time.perf_counter() - t0)


def pipeline_batches(batches: Batches, n: int, seed: int):
    """(x, age, gender) batches as `curate train` makes them: shuffled, basic augmentation."""
    gen = torch.Generator().manual_seed(seed)
    return ((x, age, g) for x, age, g, _ in batches.iterate(np.random.permutation(n), "basic", gen))


def plain_step_fn(size: int, batch: int):
    """The (a) step and its fixed in-memory batch."""
    torch.manual_seed(0)
    model = AgeGenderClassifier().train()
    opt = torch.optim.AdamW(model.parameters())
    plain_cfg = replace(TrainConfig(), image_size=size, batch_size=batch, channels_last=False, precision="fp32")
    batch_t = (torch.randn(batch, 3, size, size), torch.rand(batch) * 80, torch.randint(0, 2, (batch,)))
    return make_train_step(plain_cfg, model, opt), batch_t


def _plain_worker(conn, size: int, batch: int, threads: int) -> None:
    """Times (a) on request in a process whose malloc nobody has tuned."""
    torch.set_num_threads(threads)
    step, batch_t = plain_step_fn(size, batch)
    while (n := conn.recv()) is not None:
        conn.send(timed((batch_t for _ in range(n + 1)), step, warmup=1))


def paired_rounds(
    b_step, b_batches, rounds: int, n: int, size: int, batch: int, threads: int, per_round: int = 3
) -> list[tuple[float, float, float]]:
    """(a img/s, b img/s, ratio) for `rounds` back-to-back pairs of already-warm measurements.

    One (a) and one (b) figure taken minutes apart on this shared 2-core machine drifted by up to 30%
    between runs, which is more than the margin the 2x target is judged on; timing the two
    alternately, a few batches each, exposes both to the same machine state. (a) runs in a spawned
    process that never touched malloc's settings (this one has), (b) here in `keep_freed_memory`;
    only one of the two works at a time, one untimed batch each first.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_plain_worker, args=(child, size, batch, threads), daemon=True)
    proc.start()
    out = []
    try:
        with keep_freed_memory():
            for r in range(rounds):
                parent.send(per_round)
                ra = parent.recv()
                it = pipeline_batches(b_batches, n, seed=100 + r)
                rb = timed((b for b, _ in zip(it, range(per_round + 1))), b_step, warmup=1)
                out.append((ra, rb, rb / ra))
    finally:
        parent.send(None)
        proc.join()
    return out


class NaiveSet(Dataset):
    def __init__(self, paths, ages, genders, size):
        self.paths, self.ages, self.genders = paths, ages, genders
        self.tf = T.Compose(
            [
                T.Resize(size),
                T.RandomHorizontalFlip(),
                T.RandomCrop(size, padding=8),
                T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(Image.open(self.paths[i]).convert("RGB")), float(self.ages[i]), int(self.genders[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/utkface/UTKFace"))
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--n", type=int, default=2048, help="images per measurement (>= 6 batches)")
    ap.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    ap.add_argument(
        "--rounds", type=int, default=4, help="alternating (a)/(best b) rounds after the main table (0 = none)"
    )
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast (slow without native bf16)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(Path(args.data).glob("*.jpg"))[: args.n]
    import pandas as pd

    from core.images import decode_image, pixel_hash

    rows = []
    for p in files:
        try:
            lab = parse_name(p.name)
        except ValueError:
            continue
        img, _ = decode_image(p)
        rows.append({"path": str(p), "age": lab.age, "gender": lab.gender, "content_hash": pixel_hash(img)})
    df = pd.DataFrame(rows)
    cfg = replace(TrainConfig(), image_size=args.size, batch_size=args.batch)
    print(f"{len(df)} images at {args.size}px, batch {args.batch}, {args.threads} threads, torch {torch.__version__}")

    # Everything timed with malloc as the system leaves it comes first: leaving a
    # keep_freed_memory scope does not restore a pristine process (see paired_rounds).
    # (a) plain fp32 NCHW step, tensors already in memory
    a_step, a_batch = plain_step_fn(args.size, args.batch)
    n_batches = max(6, len(df) // args.batch)
    a = timed((a_batch for _ in range(n_batches)), a_step)

    # (c) naive: PIL + torchvision transforms in a DataLoader, plain step
    c_step, _ = plain_step_fn(args.size, args.batch)
    dl = DataLoader(
        NaiveSet(df["path"].tolist(), df["age"].to_numpy(), df["gender"].to_numpy(), args.size),
        batch_size=args.batch,
        shuffle=True,
        num_workers=2,
    )
    c = timed(((x, age.float(), g) for x, age, g in dl), c_step)

    with keep_freed_memory() as kept:
        a_kept = timed((a_batch for _ in range(n_batches)), a_step)
    print(f"(a) plain fp32 NCHW step, in-memory tensors:          {a:7.1f} img/s")
    print(
        f"    (a) + freed memory kept{'' if kept else ' (NOT APPLIED: not glibc or CURATE_MALLOC=system)'}:"
        f"                  {a_kept:7.1f} img/s"
    )

    # (b) the trainer's pipeline (first pass decodes into the cache, as epoch 1 of a run does)
    results, steps = {}, {}
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        px = decoded_cache(df, args.size, cache_dir=Path(cache), progress=False)
        decode_s = time.perf_counter() - t0
        warm: dict[str, float] = {}
        variants = [("fp32", False), ("fp32", True)] + ([("bf16", False)] if args.bf16 else [])
        with keep_freed_memory():  # as `curate` runs every command
            for prec, comp in variants:
                name = prec + (" + torch.compile" if comp else "")
                bcfg = replace(cfg, channels_last=True, precision=prec, compile=comp)
                torch.manual_seed(0)
                model = AgeGenderClassifier().train().to(memory_format=torch.channels_last)
                opt = torch.optim.AdamW(model.parameters())
                b = Batches(px, df["age"], df["gender"], args.batch, channels_last=True)
                it = pipeline_batches(b, len(df), seed=0)
                if prec == "bf16":  # ~10x slower on CPUs without native bf16: a few batches tell enough
                    it = (batch for batch, _ in zip(it, range(5)))
                first: list[float] = []
                steps[name] = (make_train_step(bcfg, model, opt), b)
                results[name] = timed(it, steps[name][0], first=first)
                warm[name] = first[0] if first else float("nan")
        best = max(results, key=results.get)
        paired = (
            paired_rounds(*steps[best], args.rounds, len(df), args.size, args.batch, args.threads)
            if args.rounds
            else []
        )
    print(f"    (one-off decode into the uint8 cache: {len(df) / decode_s:.0f} img/s)")
    for name, v in results.items():
        print(
            f"(b) curate train pipeline, channels_last {name:<21} {v:7.1f} img/s  "
            f"(3 warm-up batches {warm[name]:.0f} s)"
        )
    print(f"    best (b) = {best}: {results[best] / a:.2f} x (a)")
    if paired:
        ratios = sorted(r for _, _, r in paired)
        print(
            "    paired rounds, (a) then best (b) back to back: "
            + ", ".join(f"{ra:.1f}/{rb:.1f}={r:.2f}x" for ra, rb, r in paired)
        )
        print(
            f"    (b)/(a) over {len(paired)} rounds: median {float(np.median(ratios)):.2f}x, "
            f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x"
        )
    print(f"(c) naive PIL + DataLoader(2 workers), plain step:     {c:7.1f} img/s")
    n_train = 18968
    print(
        f"\nprojected 18 epochs x {n_train} train images at {args.size}px at (b) best: "
        f"{n_train * 18 / results[best] / 60:.0f} min of training steps (+ per-epoch validation; "
        f"the default config trains at {TrainConfig().image_size}px: rerun with --size to project it)"
    )


if __name__ == "__main__":
    main()
