"""The one-pass runner and `curate audit`: every image gets every field or a status, the cache makes
a re-run free, bad files do not stop the run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audits.runner import OUTPUT_COLUMNS, AuditCache, AuditConfig, run_audit, write_audit
from audits.thresholds import QualityThresholds
from core.images import list_images
from curate.cli import main


@pytest.fixture()
def mixed_dir(tmp_path, sample_dir):
    """30 real images, a grayscale and an exact copy of one, plus a corrupt, a truncated, a 1x1 and a
    constant image, and a text file that is not an image."""
    d = tmp_path / "mixed"
    d.mkdir()
    paths = list_images(sample_dir)[:30]
    for p in paths:
        shutil.copy2(p, d / p.name)
    src = cv2.imread(str(paths[4]))
    cv2.imwrite(
        str(d / "40_0_0_20990101000000001.jpg.chip.jpg"),
        cv2.cvtColor(cv2.cvtColor(src, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
    )
    shutil.copy2(paths[4], d / "copy_of_4.jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50 + b"\xff\xd9")
    data = paths[5].read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(d / "one_pixel.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(d / "constant.png"), np.full((200, 200, 3), 128, np.uint8))
    (d / "notes.txt").write_text("not an image")
    return d


def test_run_covers_every_file_with_every_field_or_a_status(mixed_dir, tmp_path):
    paths = list_images(mixed_dir)
    assert len(paths) == 36 and not any(p.name == "notes.txt" for p in paths)
    res = run_audit(paths, config=AuditConfig(workers=1, progress=False, cache_root=tmp_path / "c"))
    t = res.table.set_index("filename")
    assert list(res.table.columns) == OUTPUT_COLUMNS
    assert t.loc["corrupt.jpg", "audit_status"].startswith("corrupt image")
    assert t.loc["truncated.jpg", "audit_status"].startswith("truncated JPEG")
    assert t.loc["one_pixel.png", "audit_status"] == "too small (1x1)"
    assert t.loc["constant.png", "audit_status"] == "constant image"
    bad = ["corrupt.jpg", "truncated.jpg", "one_pixel.png", "constant.png"]
    assert t.loc[bad, "is_low_quality_issue"].all()
    assert all(t.loc[f, "low_quality_reason"].startswith(t.loc[f, "audit_status"]) for f in bad)
    ok = t[t["audit_status"] == "ok"]
    assert len(ok) == 32
    numeric = [
        "brisque",
        "brisque_score",
        "laplacian_var",
        "fft_blur",
        "brightness_p5",
        "brightness_p50",
        "brightness_p95",
        "contrast",
        "entropy",
        "chroma",
        "width",
        "height",
        "aspect",
        "skin_tone_score",
    ]
    assert ok[numeric].notna().all().all()
    assert ok["content_hash"].str.len().eq(32).all() and ok["phash"].str.len().eq(16).all()
    assert ((ok["brisque_score"] >= 0) & (ok["brisque_score"] <= 1)).all()
    gray = t.loc["40_0_0_20990101000000001.jpg.chip.jpg"]
    assert (
        gray["is_grayscale_issue"] and "grayscale" in gray["low_quality_reason"] and gray["skin_category"] == "unknown"
    )
    assert pd.isna(gray["monk_tone"])
    assert t.loc["copy_of_4.jpg", "exact_group"] >= 0
    assert t.loc["copy_of_4.jpg", "exact_group"] == t.loc[paths[4].name, "exact_group"]
    assert res.meta["status_counts"]["ok"] == 32


def test_second_run_recomputes_nothing_and_changed_files_are_redone(mixed_dir, tmp_path):
    cfg = AuditConfig(workers=1, progress=False, cache_root=tmp_path / "c")
    paths = list_images(mixed_dir)
    first = run_audit(paths, config=cfg)
    # 32 decodable photos + the constant image (the in-run exact copy is computed too); the 1x1 image
    # is refused when decoded ("too small (1x1)"), like a corrupt file
    assert first.meta["timing"]["computed"] == 33
    second = run_audit(paths, config=cfg)
    assert second.meta["timing"]["computed"] == 0
    pd.testing.assert_frame_equal(first.table, second.table)
    # a renamed copy is recognised by content, an edited file is recomputed
    shutil.copy2(paths[0], mixed_dir / "renamed.jpg")
    img = cv2.imread(str(paths[1]))
    cv2.imwrite(str(paths[1]), cv2.flip(img, 1))
    third = run_audit(list_images(mixed_dir), config=cfg)
    assert third.meta["timing"]["computed"] == 1
    t = third.table.set_index("filename")
    assert t.loc["renamed.jpg", "brisque"] == t.loc[paths[0].name, "brisque"]
    # a cache of another version, or a damaged one, is simply a miss
    for f in (tmp_path / "c").iterdir():
        f.write_bytes(b"junk")
    assert AuditCache(tmp_path / "c").lookup_file("x", 1, 1) is None


def test_two_worker_processes_give_the_same_table(sample_dir, tmp_path):
    paths = list_images(sample_dir)[:40]
    one = run_audit(paths, config=AuditConfig(workers=1, progress=False, use_cache=False))
    two = run_audit(paths, config=AuditConfig(workers=2, chunk_size=8, progress=False, use_cache=False))
    pd.testing.assert_frame_equal(one.table, two.table)


def test_cli_audit_folder_writes_table_sidecar_and_thresholds(mixed_dir, tmp_path):
    out = tmp_path / "out" / "a.parquet"
    thr_path = tmp_path / "thr.json"
    (mixed_dir / "zz_link.jpg").symlink_to("copy_of_4.jpg")  # one file, one row (a second would repeat its name)
    r = CliRunner().invoke(
        main,
        ["audit", str(mixed_dir), "--out", str(out), "--workers", "1", "--quiet", "--save-thresholds", str(thr_path)],
    )
    assert r.exit_code == 0, r.output
    assert "audited 36 images" in r.output and "constant image: 1" in r.output
    assert "note: 1 link(s) to images of the folder left out, e.g. zz_link.jpg -> copy_of_4.jpg" in r.output
    assert "image(s) audited without labels (their names give none; `curate split` rejects them)" in r.output
    df = pd.read_parquet(out)
    assert len(df) == 36 and list(df.columns) == OUTPUT_COLUMNS
    labelled = df[df["filename"].str.endswith(".chip.jpg")]
    assert labelled["age"].notna().all()  # UTKFace names parsed into labels
    meta = json.loads((tmp_path / "out" / "a.meta.json").read_text())
    assert meta["audit_version"] == df["audit_version"].iloc[0]
    assert meta["n_images"] == 36 and "quality_thresholds" in meta and "libraries" in meta
    assert QualityThresholds.load(thr_path) == QualityThresholds.load(tmp_path / "out" / "a.meta.json")
    assert (tmp_path / "out" / "a.dup_pairs.parquet").exists()
    # thresholds of one audit reused verbatim by another run
    out2 = tmp_path / "b.parquet"
    r2 = CliRunner().invoke(
        main, ["audit", str(mixed_dir), "--out", str(out2), "--workers", "1", "--quiet", "--thresholds", str(thr_path)]
    )
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "b.meta.json").read_text())["quality_thresholds"] == meta["quality_thresholds"]
    # a partial override
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"brightness_p95_max_dark": 256}))  # above any 8-bit level: every image is dark
    r3 = CliRunner().invoke(
        main,
        [
            "audit",
            str(mixed_dir),
            "--out",
            str(tmp_path / "c.parquet"),
            "--workers",
            "1",
            "--quiet",
            "--thresholds",
            str(over),
        ],
    )
    assert r3.exit_code == 0, r3.output
    c = pd.read_parquet(tmp_path / "c.parquet")
    assert c.loc[c["audit_status"] == "ok", "is_dark_issue"].all()


def test_cli_audit_manifest_and_bad_inputs(sample_split, tmp_path):
    manifest = sample_split / "test_2_folds_last" / "manifest.csv"
    out = tmp_path / "m.parquet"
    r = CliRunner().invoke(main, ["audit", str(manifest), "--out", str(out), "--workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    man = pd.read_csv(manifest)
    assert len(df) == len(man)
    assert (df["content_hash"].to_numpy() == man["content_hash"].to_numpy()).all()
    assert (df["age"].to_numpy() == man["age"].to_numpy()).all()
    # a row naming an image listed above (by another spelling of its path) is audited once, not as its own copy
    absolute = man["path"].map(lambda x: str(x if Path(x).is_absolute() else manifest.parent / x))
    again_row = man.iloc[[0]].assign(path=str(Path(absolute[0]).parent / "." / Path(absolute[0]).name))
    pd.concat([man.assign(path=absolute), again_row]).to_csv(tmp_path / "twice.csv", index=False)
    r = CliRunner().invoke(main, ["audit", str(tmp_path / "twice.csv"), "--out", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert f"1 row(s) name an image already listed, audited once: row {len(man) + 2} repeats row 2" in r.output
    again = pd.read_parquet(out)
    assert len(again) == len(man) and again.loc[0, "exact_group"] == df.loc[0, "exact_group"]
    assert again["is_duplicate_issue"].sum() == df["is_duplicate_issue"].sum()
    r = CliRunner().invoke(main, ["audit", str(tmp_path / "nope"), "--out", str(out)])
    assert r.exit_code != 0 and "no such folder or manifest" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = CliRunner().invoke(main, ["audit", str(bad), "--out", str(out)])
    assert r.exit_code != 0 and "missing required column(s) path, age, gender; it has: a, b" in r.output  # labels table


def test_write_audit_pairs_name_both_files(sample_dir, tmp_path):
    res = run_audit(list_images(sample_dir), config=AuditConfig(workers=1, progress=False, cache_root=tmp_path / "c"))
    paths = write_audit(res, tmp_path / "s.parquet")
    pairs = pd.read_parquet(paths["pairs"])
    exact = pairs[pairs["kind"] == "exact"]
    assert len(exact) >= 2
    t = res.table
    for _, p in exact.iterrows():
        a = t[t["path"] == p["path_a"]].iloc[0]
        b = t[t["path"] == p["path_b"]].iloc[0]
        assert a["content_hash"] == b["content_hash"]


def test_an_audit_killed_mid_run_resumes_from_its_cache(sample_dir, tmp_path):
    """kill -9 in single-worker mode: what was measured before the kill is in the cache, not redone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "CURATE_CACHE_DIR": str(tmp_path / "cache"), "CURATE_AUDIT_WORKERS": "1",
           "CURATE_AUDIT_FLUSH_S": "0"}  # fmt: skip
    cmd = [sys.executable, "-m", "curate", "audit", str(sample_dir), "--out", str(tmp_path / "a.parquet")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: list = []
    t0 = time.time()
    while not results and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
        results = [r for r in (tmp_path / "cache" / "audits").glob("results-*.parquet") if ".tmp-" not in r.name]
    assert results, "no cache was written before the audit ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(pd.read_parquet(results[0]))
    n = len(list_images(sample_dir))
    assert 0 < done, done
    res = CliRunner().invoke(main, cmd[3:], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert not list((tmp_path / "cache" / "audits").glob("*.tmp-*"))  # the killed run's temporary files are gone
    computed = int(re.search(r"\((\d+) computed", res.output).group(1))
    assert computed <= n - done + 1 and computed < n, (computed, done, n)  # resumed, not started over
    fresh = run_audit(list_images(sample_dir), config=AuditConfig(use_cache=False, workers=1)).table
    table = pd.read_parquet(tmp_path / "a.parquet")
    cols = ["path", "audit_status", "brisque", "laplacian_var", "ita", "phash"]
    a, b = (t[cols].sort_values("path").reset_index(drop=True) for t in (table, fresh))
    pd.testing.assert_frame_equal(a, b, check_dtype=False)  # the resumed table is the uninterrupted one


def test_ctrl_c_says_what_the_cache_kept_and_the_same_command_goes_on(sample_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C mid-audit: a line saying how many images are kept and that re-running resumes, and it does."""
    import audits.runner as runner

    real, calls = runner._audit_paths, []

    def interrupted_on_the_third_chunk(chunk, *a):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(chunk, *a)

    monkeypatch.setattr(runner, "_audit_paths", interrupted_on_the_third_chunk)
    paths = list_images(sample_dir)
    cfg = AuditConfig(workers=1, progress=False, cache_root=tmp_path / "c", chunk_size=8)
    with pytest.raises(KeyboardInterrupt):
        run_audit(paths, config=cfg)
    said = capsys.readouterr().err
    assert f"interrupted: 16 of {len(paths)} images audited and kept in the cache; the same command goes on" in said
    monkeypatch.setattr(runner, "_audit_paths", real)
    again = run_audit(paths, config=cfg)
    t = again.meta["timing"]  # the 16 kept are not redone (a copy of one of them, later on, is not either)
    assert t["computed"] <= len(paths) - 16 and t["computed"] + t["from_cache"] == len(paths), t
