"""Inference throughput of the model's forward pass (images/s, higher is better), four ways.

NCHW or channels_last, each with malloc as the system leaves it and inside `keep_freed_memory`
(core/allocator.py, which `curate evaluate / predict / score` run in). Timed on in-memory
tensors, so this is the model alone: decoding is the decode cache's business.
The system-malloc rows run first, since leaving the scope does not restore a pristine process.

Usage: python bench/inference_throughput.py [--size 200] [--batch 256] [--batches 6]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.allocator import keep_freed_memory  # noqa: E402
from trainer.model import AgeGenderClassifier  # noqa: E402


def throughput(model, x: torch.Tensor, batches: int) -> tuple[float, float]:
    """(images/s, minor page faults per batch) after one untimed batch."""
    with torch.inference_mode():
        model(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        dt = time.perf_counter() - t0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return batches * len(x) / dt, faults / batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"forward pass at {args.size}px, batch {args.batch}, {args.threads} threads, torch {torch.__version__}")
    model = AgeGenderClassifier().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    layouts = {
        "NCHW": (model, x),
        "channels_last": (
            AgeGenderClassifier().eval().to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        ),
    }
    layouts["channels_last"][0].load_state_dict(model.state_dict())
    for kept in (False, True):
        for name, (m, xx) in layouts.items():
            with keep_freed_memory() if kept else contextlib.nullcontext(False) as applied:
                ips, faults = throughput(m, xx, args.batches)
            label = f"{name}, {'freed memory kept' if kept else 'system malloc'}"
            if kept and not applied:
                label += " (NOT APPLIED: not glibc or CURATE_MALLOC=system)"
            print(f"{label:<40} {ips:7.1f} img/s   {faults:9.0f} page faults a batch")


if __name__ == "__main__":
    main()
