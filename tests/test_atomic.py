"""Outputs are replaced whole or not at all (core.atomic, used by every writer in the project)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.atomic import OutputError, atomic_path, check_output, write_csv, write_json


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


def test_an_output_in_a_missing_folder_is_written_and_one_on_a_folder_refused(tmp_path: Path):
    """`--out new/sub/p.csv` writes (the folders made); `--out` naming a folder is one clear error, which the
    commands raise before their work (check_output), not a traceback after it."""
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "new" / "sub" / "p.csv")
    assert (tmp_path / "new" / "sub" / "p.csv").read_text() == "a\n1\n"
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_output(tmp_path / "new")
    with pytest.raises(OutputError, match="is a folder"):
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "new")
    check_output(tmp_path / "new" / "q.csv")  # a file to be: fine
    check_output(None)
