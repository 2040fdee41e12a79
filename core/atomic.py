"""Write every output file via a temporary sibling and a rename: a run killed mid-write leaves the old
file or the new one, never half of one (a half-written manifest, checkpoint or sidecar would otherwise
be read back later as if it were whole).

One helper for the whole project (trainer, audits and curate all use it) instead of one per module.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CurateError

if TYPE_CHECKING:  # pandas only for hints: the CLI imports this module at start-up
    import pandas as pd


class OutputError(CurateError, IsADirectoryError):
    """An output path that cannot be written (a folder where a file is to go)."""


def check_output(path: str | os.PathLike | None) -> None:
    """Refuse, before any work, an output path that cannot become a file (a folder is there)."""
    if path is not None and Path(path).is_dir():
        raise OutputError(f"{path}: is a folder; give a file name to write")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on failure it is removed.

    The temporary name keeps the suffix (e.g. `x.tmp-123.png`) so that writers choosing a format by
    extension (matplotlib, pandas) still do the right thing, and carries the pid so that two processes
    never write into the same temporary file.
    """
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the work: say it in one line
        raise OutputError(f"{path}: is a folder; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a temporary file's owner may still be writing it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete the files `atomic_path` left in `folder` when its process was killed (NAME.tmp-PID.SUFFIX,
    the PID gone); returns how many. Why: kill -9 skips the cleanup, and nothing else would remove them."""
    n = 0
    for p in Path(folder).glob("*.tmp-*"):
        m = re.search(r"\.tmp-(\d+)(\.[^.]*)?$", p.name)
        if m and p.is_file() and not pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            n += 1
    return n


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any, default=None) -> None:
    write_text(path, json.dumps(obj, indent=2, default=default or _json_default) + "\n")


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """Save a matplotlib figure atomically and close it (figures left open leak memory in long runs)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **savefig_kwargs)
    finally:
        plt.close(fig)


def _json_default(o: Any) -> Any:
    """numpy scalars/arrays and paths, which json refuses, as plain values; anything else as str."""
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
