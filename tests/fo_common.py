"""FiftyOne test setup shared by the FiftyOne test modules: an isolated database, the sample scored and flagged.

FiftyOne reads its config at import, so importing this module first gives it an isolated database before
anything imports fiftyone (CI sets its own FIFTYONE_DATABASE_DIR; a user's FIFTYONE_DATABASE_URI is never
used by the tests). Fixtures are module-scoped: each test module works on its own dataset names.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

if "fiftyone" not in sys.modules:
    os.environ.pop("FIFTYONE_DATABASE_URI", None)
    if not os.environ.get("FIFTYONE_DATABASE_DIR"):
        _db_dir = tempfile.mkdtemp(prefix="curate-fo-db-")
        os.environ["FIFTYONE_DATABASE_DIR"] = _db_dir
        atexit.register(shutil.rmtree, _db_dir, True)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CURATE_AUDIT_WORKERS", "1")  # audits in-process: no worker pool next to FiftyOne's services

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from curate.cli import main  # noqa: E402

pytestmark = pytest.mark.timeout(1200)  # a hang (database, App, audit pool) fails instead of blocking CI

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "dataset" / "sample"
TINY = [
    "--set",
    "image_size=64",
    "--set",
    "num_epochs=1",
    "--set",
    "override_cycle_epoch_count=1",
    "--set",
    "batch_size=32",
    "--set",
    "threads=1",
]


def run(*args: str, ok: bool = True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A cache folder for the module (conftest's per-test cache would make module fixtures recompute)."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("fo-cache")
    mp.setenv("CURATE_CACHE_DIR", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def model(env, tmp_path_factory) -> Path:
    """The shipped default model when present, else a tiny one trained on the sample (64 px, 1 epoch)."""
    import torch

    from curate.cli.common import DEFAULT_MODEL
    from curate.splits import make_splits
    from trainer.config import TrainConfig, replace
    from trainer.train import train

    torch.set_num_threads(1)
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    out = tmp_path_factory.mktemp("tiny")
    make_splits(SAMPLE, out / "split", progress=False)
    cfg = replace(
        TrainConfig(),
        train_path=str(out / "split" / "train_8_folds_first"),
        val_path=str(out / "split" / "test_2_folds_last"),
        image_size=64,
        batch_size=32,
        num_epochs=1,
        override_cycle_epoch_count=1,
        threads=1,
        keep_epoch_checkpoints=False,
    )
    train(cfg, out / "run", progress=False)
    return out / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def fo():
    from curate.fo_db import connect

    return connect()


@pytest.fixture(scope="module")
def scored(env, model, fo):
    """The sample scored once: name of the dataset and the command output."""
    name = f"t-score-{uuid.uuid4().hex[:6]}"
    res = run("score", SAMPLE, "--model", model, "--dataset", name, "--quiet")
    yield name, res.output
    fo.delete_dataset(name)


@pytest.fixture(scope="module")
def flagged(scored, fo):
    """flag-mislabels through its own cross-fit (tiny recipe), top 5 per kind; the tiny fold models learn
    next to nothing, so tagging their suspects needs --allow-weak-model (see the test of the refusal).
    (Without --oos crossfit the shipped model's predictions would be used: the sample is new to it.)"""
    name, _ = scored
    res = run("flag-mislabels", "--dataset", name, "--oos", "crossfit", "--full", *TINY, "--top-k", "5",
              "--allow-weak-model", "--quiet")  # fmt: skip
    return name, res.output


def usable_sample():
    from curate.fo_inputs import folder_manifest

    return folder_manifest(SAMPLE, progress=False)


# ------------------------------------------------------------------------------ real browser
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def serve_app(name: str, view: str, log: Path):
    """`curate app` on a free port in a process of its own, until the block ends; yields the port."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "curate",
                "app",
                "--dataset",
                name,
                "--view",
                view,
                "--port",
                str(port),
                "--address",
                "127.0.0.1",
                "--no-browser",
            ],  # fmt: skip
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        try:
            t0 = time.time()
            while "App serving" not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.time() - t0 < 600, "App did not start within 600 s"
                time.sleep(1)
            yield port
        finally:
            from curate.fo_app import stop_server

            stop_server(proc, timeout=60)
