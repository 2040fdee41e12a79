"""Ray, optional: the per-image audit and the cross-fit folds as tasks on a Ray cluster.

Why Ray: past one machine, the audit (~50-80 s per 24k images on 2 cores) and the cross-fit (~15 min)
grow linearly with the data; Ray runs the same Python functions as tasks on a cluster's nodes and
retries a task whose node died on another node. Only the work moves: the driver (the `curate` process)
keeps the cache, the progress bar and every write, so results, cache and files are those of the local
path. Images, caches and run folders must sit on paths every node sees (a shared filesystem).

`connect` joins a cluster: an address ("ray://host:10001" or "host:6379"), "auto" (the cluster this
machine belongs to), or, with no address, a local one started for this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from core.errors import CurateError

LOCAL = "local"


class RayError(CurateError, RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def connect(address: str | None = None):
    """The `ray` module, connected (an existing connection of this process is reused)."""
    try:
        import ray
    except ImportError:
        raise RayError("--ray needs Ray: pip install 'utkface-curate[ray]' (scripts/setup.sh installs it)") from None
    if ray.is_initialized():
        return ray
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address in (None, "", LOCAL):
            ray.init(**quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayError(f"Ray cluster {address or LOCAL!r}: {str(e).splitlines()[0]}") from None
    return ray


def describe(ray) -> str:
    """One line: the cluster's nodes and CPUs, for the run's log and metadata."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
    return f"{len(nodes)} node(s), {cpus:g} CPU(s)"


def map_unordered(
    fn: Callable[..., Any],
    items: Iterable[Any],
    shared: tuple = (),
    num_cpus: float = 1,
    max_retries: int = 3,
    address: str | None = None,
) -> Iterator[Any]:
    """fn(item, *shared) for every item as Ray tasks; yields each result once, as tasks finish.

    `shared` values go to the object store once. A task whose worker or node dies is re-run elsewhere
    (up to `max_retries` times): `fn` must be safe to repeat (ours write nothing, or resume from their
    own checkpoints). The driver's environment (CURATE_*, TORCH_HOME, thread counts) goes with the tasks.
    """
    ray = connect(address)
    env = {k: v for k, v in os.environ.items() if k.startswith(("CURATE_", "TORCH_HOME", "OMP_", "MKL_"))}
    remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)(fn).options(
        runtime_env={"env_vars": env}
    )
    refs = [ray.put(v) for v in shared]
    pending = [remote.remote(item, *refs) for item in items]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
