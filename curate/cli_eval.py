"""`curate evaluate` and `curate predict`."""
from __future__ import annotations

from curate.cli import main  # noqa: F401
