"""Our one-pass audit vs cleanvision's `Imagelab.find_issues(n_jobs=1)` on the same images.

Prints, from one invocation: wall time, images/s and peak memory (process tree RSS) of
  1. our full pass from a cold cache (BRISQUE, skin tone, duplicates and all quality measures),
  2. our second pass (warm cache),
  3. cleanvision's find_issues with n_jobs=1,
the ratio, and how our dark / over-exposed / blurry / low-information / grayscale / odd-size / duplicate
flags overlap cleanvision's. Also BRISQUE equivalence to piq on a sample of the images.

    nice -n 10 python bench/audit_throughput.py [DATA_DIR] [--limit N] [--workers W] [--no-cleanvision]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCH_HOME", str(REPO.parent / "shared" / "torch_home"))


class PeakRSS:
    """Samples the resident memory of this process and all its children (workers) every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a worker may exit between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._sample())


def cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children (the worker processes).

    Why: on a shared machine wall time measures the neighbours too; CPU seconds do not."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def labels_for(paths):
    import pandas as pd

    from curate.splits import parse_name

    rows = []
    for p in paths:
        try:
            pn = parse_name(Path(p).name)
            rows.append({"age": pn.age, "gender": pn.gender, "race": pn.race})
        except ValueError:
            rows.append({"age": None, "gender": None, "race": None})
    return pd.DataFrame(rows, columns=["age", "gender", "race"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", nargs="?", default=str(REPO.parent / "shared" / "utkface" / "UTKFace"))
    ap.add_argument("--limit", type=int, default=None, help="first N images only (by name)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-cleanvision", action="store_true")
    ap.add_argument("--piq-check", type=int, default=200, help="images for the BRISQUE-vs-piq check (0: skip)")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from audits.runner import AuditConfig, default_workers, run_audit
    from core.images import list_images

    paths = [str(p) for p in list_images(Path(args.data_dir))]
    if args.limit:
        paths = paths[: args.limit]
    n = len(paths)
    workers = args.workers or default_workers()
    print(
        f"images: {n} from {args.data_dir}; CPUs available: {default_workers()}; workers: {workers}; "
        f"load average at start: {os.getloadavg()[0]:.2f}"
    )
    labels = labels_for(paths)

    with tempfile.TemporaryDirectory() as cache:
        cfg = AuditConfig(workers=workers, cache_root=Path(cache), progress=False)
        with PeakRSS() as mem_ours:
            t = time.perf_counter()
            c0 = cpu_seconds()
            res = run_audit(paths, labels=labels, config=cfg)
            cpu_ours = cpu_seconds() - c0
            t_ours = time.perf_counter() - t
        t = time.perf_counter()
        res2 = run_audit(paths, labels=labels, config=cfg)
        t_again = time.perf_counter() - t
    assert res2.meta["timing"]["computed"] == 0
    ours = res.table
    print(
        f"\nours (cold cache): {t_ours:.1f} s wall, {n / t_ours:.0f} img/s, {cpu_ours:.1f} s CPU (parent + workers, "
        f"{cpu_ours / n * 1e3:.2f} ms/img), peak RSS {mem_ours.peak / 2**20:.0f} MiB (process tree)"
    )
    print(f"ours (second run, warm cache): {t_again:.1f} s wall")
    print(f"  status: {res.meta['status_counts']}")
    print(f"  flags: {res.meta['flag_counts']}; low quality {res.meta['flag_counts']['is_low_quality_issue']}")
    print(f"  duplicates: {res.meta['duplicates']}")
    print(f"  load average after our pass: {os.getloadavg()[0]:.2f}")

    if args.piq_check:
        import cv2

        from audits.brisque import brisque_batch, piq_brisque

        rng = np.random.default_rng(0)
        pick = rng.choice(n, min(args.piq_check, n), replace=False)
        imgs = [cv2.imread(paths[i]) for i in pick]
        imgs = [im for im in imgs if im is not None]
        t = time.perf_counter()
        ref = piq_brisque(imgs)
        t_piq = time.perf_counter() - t
        t = time.perf_counter()
        fast = brisque_batch(imgs)
        t_fast = time.perf_counter() - t
        ok = np.isfinite(ref) & np.isfinite(fast)
        rel = np.abs(fast[ok] - ref[ok]) / np.abs(ref[ok])
        print(
            f"\nBRISQUE vs piq on {len(imgs)} images (one process): max relative difference {rel.max():.2e}, "
            f"bit-identical {np.mean(fast[ok] == ref[ok]) * 100:.1f} %; piq {len(imgs) / t_piq:.0f} img/s, "
            f"ours {len(imgs) / t_fast:.0f} img/s ({t_piq / t_fast:.1f}x)"
        )

    if args.no_cleanvision:
        return
    from cleanvision import Imagelab

    with PeakRSS() as mem_cv:
        t = time.perf_counter()
        c0 = cpu_seconds()
        lab = Imagelab(filepaths=paths, verbose=False)
        lab.find_issues(n_jobs=1, verbose=False)
        cpu_cv = cpu_seconds() - c0
        t_cv = time.perf_counter() - t
    cv = lab.issues.reindex(paths)
    print(
        f"\ncleanvision find_issues(n_jobs=1): {t_cv:.1f} s wall, {n / t_cv:.0f} img/s, {cpu_cv:.1f} s CPU "
        f"({cpu_cv / n * 1e3:.2f} ms/img), peak RSS {mem_cv.peak / 2**20:.0f} MiB"
    )
    print(
        f"ratio ours / cleanvision: wall {t_ours / t_cv:.2f}, CPU {cpu_ours / cpu_cv:.2f}  (ours computes BRISQUE "
        f"and skin tone on top)"
    )
    print(
        f"on {workers} otherwise idle cores, wall ~ CPU / cores: ours ~{cpu_ours / workers:.0f} s, "
        f"cleanvision (one process) ~{cpu_cv:.0f} s"
    )
    print(f"  load average after cleanvision: {os.getloadavg()[0]:.2f}")

    o = ours.set_index("path")
    pairs = [
        ("is_dark_issue", "is_dark_issue"),
        ("is_overexposed_issue", "is_light_issue"),
        ("is_blurry_issue", "is_blurry_issue"),
        ("is_low_information_issue", "is_low_information_issue"),
        ("is_grayscale_issue", "is_grayscale_issue"),
        ("is_odd_size_issue", "is_odd_size_issue"),
        ("exact_group>=0", "is_exact_duplicates_issue"),
        ("near_group>=0", "is_near_duplicates_issue"),
    ]
    rows = []
    for ours_col, cv_col in pairs:
        if ours_col.endswith(">=0"):
            a = (o[ours_col[:-3]] >= 0).to_numpy()
        else:
            a = o[ours_col].astype(bool).to_numpy()
        if cv_col not in cv:
            continue
        b = cv[cv_col].fillna(False).astype(bool).to_numpy()
        both = int((a & b).sum())
        union = int((a | b).sum())
        rows.append(
            {
                "ours": ours_col,
                "cleanvision": cv_col,
                "n_ours": int(a.sum()),
                "n_cv": int(b.sum()),
                "both": both,
                "jaccard": round(both / union, 3) if union else float("nan"),
            }
        )
    print("\nflag overlap (same images):")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
