"""Registered on `curate` by curate/cli.py (owner fills in its commands)."""
from __future__ import annotations

from curate.cli import main  # noqa: F401
