"""Outputs are replaced whole or not at all (core.atomic, used by every writer in the project)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.atomic import atomic_path, write_csv, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    out = tmp_path / "table.csv"
    write_csv(pd.DataFrame({"a": [1, 2]}), out)
    before = out.read_text()
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("a\n1\n")  # half of the new content...
            raise RuntimeError("killed")  # ...then the writer dies
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_the_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path: Path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name != "plot.png"
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


def test_json_takes_numpy_values(tmp_path: Path):
    import numpy as np

    write_json(tmp_path / "m.json", {"n": np.int64(3), "v": np.array([1.5, 2.0]), "p": tmp_path})
    text = (tmp_path / "m.json").read_text()
    assert '"n": 3' in text and "1.5" in text and str(tmp_path) in text
