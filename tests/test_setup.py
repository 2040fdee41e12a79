"""The setup changes nothing on the machine it does not need to: no apt source left behind, and the
user's ~/.fiftyone untouched (run on an up-to-date venv, where a second setup takes seconds)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"


def _stamp_is_current() -> bool:
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + (REPO / "scripts" / "setup.sh").read_bytes())
    stamp = VENV / ".curate-setup-stamp"
    return stamp.exists() and stamp.read_text().strip() == want.hexdigest()


@pytest.mark.skipif(not _stamp_is_current(), reason="the venv is not set up by this setup.sh yet: run it first")
def test_second_setup_leaves_no_apt_source_and_no_fiftyone_config(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("FIFTYONE_DATABASE_URI", None)
    res = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "[setup] done" in res.stdout
    assert not (home / ".fiftyone").exists(), "setup wrote the user's FiftyOne config"
    assert not Path("/etc/apt/sources.list.d/bullseye-libssl.list").exists()
    assert "bullseye" not in "".join(p.read_text() for p in Path("/etc/apt/sources.list.d").glob("*.list"))
