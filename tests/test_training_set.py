"""core/training_set.py: which images a model was trained on, from its card; a tampered record is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.training_set import TrainingSetError, load, write_record

REPO = Path(__file__).resolve().parent.parent


def _model_with_card(tmp_path: Path, hashes: list[str]) -> Path:
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    man = pd.DataFrame({"content_hash": hashes, "age": 30, "gender": 0})
    record = write_record(man, tmp_path / "m.train_hashes.npy", split="train")
    (tmp_path / "m.json").write_text(json.dumps({"training_images": record}))
    return ckpt


def test_seen_by_content_hash(tmp_path):
    h = ["ab" * 16, "cd" * 16, "ab" * 16, "0123456789abcdef" * 2]
    ts = load(_model_with_card(tmp_path, h))
    assert ts.record["images"] == 4 and ts.record["distinct_images"] == 3 and len(ts.keys) == 3
    new = ["ef" * 16, "ab" * 16, None, "not-a-hash", "0123456789abcdef" + "f" * 16]
    # a missing or malformed hash cannot be shown to be new: it counts as seen; 64-bit prefix decides
    assert ts.seen(new).tolist() == [False, True, True, True, True]
    assert "4 training images (train, manifest" in ts.describe()


def test_no_card_or_no_record_means_unknown(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    assert load(ckpt) is None
    (tmp_path / "m.json").write_text(json.dumps({"sha256": "x"}))
    assert load(ckpt) is None


def test_a_swapped_or_missing_hash_file_is_refused(tmp_path):
    ckpt = _model_with_card(tmp_path, ["ab" * 16])
    np.save(tmp_path / "m.train_hashes.npy", np.array([1, 2], np.uint64))
    with pytest.raises(TrainingSetError, match="does not match the sha256 its card m.json records"):
        load(ckpt)
    (tmp_path / "m.train_hashes.npy").unlink()
    with pytest.raises(TrainingSetError, match="training-image hashes 'm.train_hashes.npy' are missing"):
        load(ckpt)


def test_the_shipped_model_knows_its_training_images_and_the_sample_is_new_to_it(tmp_path):
    from curate.cli.common import DEFAULT_MODEL
    from curate.fo_inputs import folder_manifest

    ts = load(DEFAULT_MODEL)
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert ts.record == card["training_images"] and ts.record["images"] == 18968
    assert len(ts.keys) == ts.record["distinct_images"]
    table, _ = folder_manifest(REPO / "dataset" / "sample", progress=False)
    assert len(table) == 200 and not ts.seen(table["content_hash"]).any()
    # a copy of the card beside another checkpoint reads the same record
    for name in ("default.json", "default.train_hashes.npy"):
        shutil.copy(DEFAULT_MODEL.parent / name, tmp_path / name)
    (tmp_path / "default.pt").write_bytes(b"")
    assert load(tmp_path / "default.pt").record == ts.record
