"""Shared fixtures. Real inputs only: the embedded sample, and the full UTKFace set when present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "dataset" / "sample"
SHARED = REPO.parent / "shared"

# Offline, isolated defaults for every test run (CI sets the same; a user's values win).
os.environ.setdefault("TORCH_HOME", str(SHARED / "torch_home"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def full_data_dir() -> Path | None:
    p = Path(os.environ.get("UTKFACE_DIR", SHARED / "utkface" / "UTKFace"))
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    p = full_data_dir()
    if p is None:
        pytest.skip("full UTKFace not found: set UTKFACE_DIR or put it at ../shared/utkface/UTKFace")
    return p


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory) -> Path:
    """The embedded sample split into train/test manifests (once per session)."""
    from curate.splits import make_splits

    out = tmp_path_factory.mktemp("sample_split")
    make_splits(SAMPLE_DIR, out, seed=0, progress=False)
    return out


@pytest.fixture()
def sample_copy(tmp_path) -> Path:
    """A writable copy of the sample folder, for tests that add bad files."""
    dst = tmp_path / "imgs"
    shutil.copytree(SAMPLE_DIR, dst, ignore=shutil.ignore_patterns("*.md"))
    return dst


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "curate-cache"))
