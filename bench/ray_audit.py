"""The audit of a folder, local processes vs a Ray cluster of 1 and 2 worker nodes on this machine.

Each run recomputes everything (no cache) with the same chunks; prints wall time, images/s and whether
the table equals the local one row for row. On one 2-core machine a Ray cluster cannot be faster than
the local pool: what this measures is the overhead of the Ray path (cluster start excluded, task
scheduling and object transfer included), which is what a user pays per node before nodes add speed.

    python bench/ray_audit.py [--data ../shared/utkface/UTKFace] [--nodes 1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on 127.0.0.1
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def audit(paths, labels, address: str | None, workers: int | None):
    from audits.runner import AuditConfig, run_audit

    cfg = AuditConfig(workers=workers, use_cache=False, progress=False, ray_address=address)
    t0 = time.perf_counter()
    table = run_audit(paths, labels, cfg).table
    return table, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "utkface" / "UTKFace")
    ap.add_argument("--nodes", default="1,2", help="worker-node counts to try (one CPU each)")
    args = ap.parse_args()
    os.environ.setdefault("CURATE_CACHE_DIR", tempfile.mkdtemp(prefix="ray-bench-"))
    import ray
    from ray.cluster_utils import Cluster

    from curate.splits import scan_folder

    usable, _ = scan_folder(args.data, progress=False)
    paths, labels = list(usable["path"]), usable[["age", "gender", "race"]]
    n = len(paths)
    local, t_local = audit(paths, labels, None, None)
    print(f"local processes ({os.cpu_count()} CPUs): {t_local:.1f} s, {n / t_local:.0f} img/s", flush=True)
    for k in (int(x) for x in args.nodes.split(",")):
        node = {"node_ip_address": "127.0.0.1", "object_store_memory": 200 * 2**20}
        t0 = time.perf_counter()
        c = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0, "include_dashboard": False})
        for _ in range(k):
            c.add_node(**node, num_cpus=1)
        c.wait_for_nodes()
        t_start = time.perf_counter() - t0
        try:
            table, t = audit(paths, labels, c.address, None)
        finally:
            ray.shutdown()
            c.shutdown()
        same = table.equals(local)
        print(f"Ray, {k} worker node(s) x 1 CPU: {t:.1f} s, {n / t:.0f} img/s (cluster start {t_start:.1f} s, "
              f"not counted); table equal to local: {same}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
