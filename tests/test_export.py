"""`curate export`: the cleaned split obeys every review decision, the oversampled split reaches its
target and traces every generated image to its source, the test split is never touched, and the
unusable inputs give clear errors. Real images only: the embedded sample."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from core.images import pixel_hash
from core.manifest import read_manifest
from curate.cli import main
from curate.export import (
    ExportError,
    ExportOptions,
    Policy,
    apply_decisions,
    apply_transform,
    export,
    normalize_review,
    plan_oversampling,
    read_review_csv,
    target_shares,
)
from curate.splits import parse_name


def tree_digest(*folders: Path, files: list[str] | None = None) -> dict[str, str]:
    """sha256 of every file under the folders (and of the listed files): byte-level identity."""
    out = {}
    for f in folders:
        for p in sorted(Path(f).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    for p in files or []:
        out[p] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def manifests(split: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda s: pd.read_csv(split / s / "manifest.csv", dtype={"content_hash": str})  # noqa: E731
    return read("train_8_folds_first"), read("test_2_folds_last")


def write_review(split: Path, path: Path) -> dict[str, str]:
    """A review touching every decision; returns filename -> what the export must do with it."""
    tr, te = manifests(split)
    r = lambda i, **kw: {"path": tr.path[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="exclude"),
        r(1, tags="confirmed:mislabel"),
        r(2, tags="confirmed:mislabel", age_corrected=77),
        r(3, tags="confirmed:mislabel", gender_corrected=["female", "male"][tr.gender[3]]),
        r(4, tags="confirmed:mislabel", age_corrected=tr.age[4] + 3, gender_corrected=1 - tr.gender[4]),
        r(5, tags="suspect:gender", is_gender_label_issue=True, gender_label_score=0.1),
        r(6, tags="suspect:age;confirmed:ok", is_age_label_issue=True, age_label_score=0.05),
        r(7, tags="low_quality", is_low_quality_issue=True),
        r(8, tags="", gender_label_score=0.3),  # not flagged, but at most --gender-max-score 0.4
        r(9, tags="exclude", age_corrected=50),  # exclude wins over a correction
        {"filename": te.filename[0], "content_hash": te.content_hash[0], "tags": "exclude"},  # test split
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    f = tr.filename
    return {
        f[0]: "drop",
        f[1]: "drop",
        f[2]: "age",
        f[3]: "gender",
        f[4]: "both",
        f[5]: "suspect",
        f[6]: "keep",
        f[7]: "lowq",
        f[8]: "score",
        f[9]: "drop",
    }


def test_cleaned_split_obeys_every_tag_and_correction(sample_split: Path, tmp_path: Path):
    review = tmp_path / "review.csv"
    plan = write_review(sample_split, review)
    tr, te = manifests(sample_split)
    before = tree_digest(sample_split / "test_2_folds_last", files=list(tr.path) + list(te.path))
    rev = read_review_csv(review)
    root = tmp_path / "out"
    # 1) decisions only, originals referenced by the manifest
    s = export(
        ExportOptions(
            sample_split / "train_8_folds_first",
            root,
            "plain",
            review=rev,
            test_split=sample_split / "test_2_folds_last",
        )
    )
    plain = read_manifest(root / "plain")  # readable by the trainer, every path exists
    src = set(plain["source_filename"])
    removed = {f for f, what in plan.items() if what == "drop"}
    assert not (removed & src) and len(plain) == len(tr) - len(removed) == s["cleaned"]["n"]
    assert {f for f, w in plan.items() if w in ("suspect", "lowq", "score", "keep")} <= src
    assert s["review_rows_on_test_split"] == 1 and s["n_removed"] == 3
    byname = plain.set_index("source_filename")
    orig = tr.set_index("filename")
    for f, what in plan.items():
        if what == "drop":
            continue
        row = byname.loc[f]
        want_age = 77 if what == "age" else orig.age[f] + 3 if what == "both" else orig.age[f]
        want_gender = 1 - orig.gender[f] if what in ("gender", "both") else orig.gender[f]
        assert (row.age, row.gender) == (want_age, want_gender), f
        parsed = parse_name(row.filename)  # the exported name carries the corrected labels
        assert (parsed.age, parsed.gender) == (want_age, want_gender) and row.filename.split("_")[3] in f
        assert row.label_source == ("original" if what in ("suspect", "lowq", "score", "keep") else "corrected")
        assert (row.original_age, row.original_gender) == (orig.age[f], orig.gender[f])
    untouched = plain[~plain["source_filename"].isin(plan)]
    odd = untouched["name_note"].fillna("") != ""  # malformed names ("...357jpg.chip.jpg") come out canonical
    assert (untouched.loc[~odd, "filename"] == untouched.loc[~odd, "source_filename"]).all()
    for _, row in untouched[odd].iterrows():
        p = parse_name(row.filename)
        assert (p.age, p.gender) == (row.age, row.gender)
        assert p.note == ("" if pd.notna(row.race) else "no race field (race unknown)")
    corr = pd.read_csv(root / "plain" / "corrections.csv")
    assert set(corr["source_filename"]) == {f for f, w in plan.items() if w in ("age", "gender", "both")}
    rem = pd.read_csv(root / "plain" / "removed.csv")
    assert dict(zip(rem["filename"], rem["reason"])) == {
        tr.filename[0]: "tagged exclude",
        tr.filename[1]: "confirmed:mislabel without a correction",
        tr.filename[9]: "tagged exclude",
    }
    # 2) the policies, with copied images named after the corrected labels
    s = export(
        ExportOptions(
            sample_split / "train_8_folds_first",
            root,
            "strict",
            review=rev,
            images="copy",
            policy=Policy(drop_low_quality=True, drop_suspects=True, gender_max_score=0.4),
            test_split=sample_split / "test_2_folds_last",
        )
    )
    strict = read_manifest(root / "strict")
    gone = {f for f, w in plan.items() if w in ("drop", "suspect", "lowq", "score")}
    assert not (gone & set(strict["source_filename"])) and len(strict) == len(tr) - len(gone)
    assert tr.filename[6] in set(strict["source_filename"]), "a confirmed:ok suspect is kept"
    assert s["removed"] == {
        "tagged exclude": 2,
        "confirmed:mislabel without a correction": 1,
        "low quality (policy --drop-low-quality)": 1,
        "unreviewed suspect (policy --drop-suspects)": 2,
    }
    for _, row in strict.iterrows():
        p = Path(row.path)
        assert p.parent == (root / "strict").resolve() and p.name == row.filename
        assert p.read_bytes() == Path(row.source_path).read_bytes()
    assert sorted(q.name for q in (root / "strict").glob("*.jpg")) == sorted(strict["filename"])
    assert "unreviewed suspect (policy --drop-suspects): 2" in (root / "strict" / "EXPORT.md").read_text()
    after = tree_digest(sample_split / "test_2_folds_last", files=list(tr.path) + list(te.path))
    assert before == after, "the test split and the source images are byte-identical after the export"


def skin_categories(df: pd.DataFrame) -> pd.DataFrame:
    """A crude skin-tone category measured on the real pixels (centre-crop lightness), unequal on purpose."""
    light = []
    for p in df["path"]:
        lab = cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2LAB)
        h, w = lab.shape[:2]
        light.append(float(lab[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3, 0].mean()))
    q = np.quantile(light, [0.15, 0.4])
    cat = np.where(np.asarray(light) < q[0], "dark", np.where(np.asarray(light) < q[1], "medium", "light"))
    return pd.DataFrame({"path": df["path"], "skin_category": cat})


def test_oversampled_split_reaches_target_and_traces_to_source(sample_split: Path, tmp_path: Path):
    tr, te = manifests(sample_split)
    audits = tmp_path / "audits.parquet"
    skin_categories(tr).to_parquet(audits)
    before = tree_digest(sample_split / "test_2_folds_last", files=list(tr.path))
    root = tmp_path / "out"
    targets = {"age_group": "mix:0.8", "skin_category": "uniform"}

    def oversampled(out: Path, seed: int) -> ExportOptions:
        test = sample_split / "test_2_folds_last"
        return ExportOptions(sample_split / "train_8_folds_first", out, "base", oversample=True, audits=audits,
                             targets=targets, max_factor=10, seed=seed, test_split=test)  # fmt: skip

    s = export(oversampled(root, 3))
    p = s["oversampled"]["plan"]
    assert p["dims"] == ["age_group", "skin_category"] and s["oversampled"]["n_generated"] > 20
    over = read_manifest(root / "base_oversampled")
    gen = over[over["generated"]]
    assert len(gen) == s["oversampled"]["n_generated"] and len(over) == len(tr) + len(gen)
    # the target distribution, within tolerance, on both dimensions at once
    cats = over["skin_category"]
    for dim, col in (("age_group", over["age_group"]), ("skin_category", cats)):
        share = col.value_counts(normalize=True)
        want = pd.Series(p["targets"][dim])
        assert (share.reindex(want.index) - want).abs().max() < 0.02, (dim, share, want)
    assert pd.Series(p["targets"]["skin_category"]).round(6).nunique() == 1  # uniform: 1/3 each
    was = tr["path"].map(skin_categories(tr).set_index("path")["skin_category"]).value_counts(normalize=True)
    assert was.min() < 0.2 < cats.value_counts(normalize=True).min(), "the rare category was lifted"
    # every generated image traces to its source: labels, hash, and pixels regenerated from the record
    src = tr.set_index("path")
    for _, g in gen.iterrows():
        s_row = src.loc[g.source_path]
        assert g.source_content_hash == s_row.content_hash and (g.age, g.gender) == (s_row.age, s_row.gender)
        assert g.filename.startswith(f"{s_row.age}_{s_row.gender}_") and "_aug" in g.filename
        assert re.search(r"_(\d+)_aug\d+\.jpg$", g.filename)[1] in s_row.filename  # the source's datetime
        t = json.loads(g["transform"])
        assert set(t) == {"hflip", "angle", "scale", "tx", "ty", "brightness", "contrast", "saturation", "gamma"}
        again = apply_transform(cv2.imread(g.source_path), t)
        ok, buf = cv2.imencode(".jpg", again, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert Path(g.path).read_bytes() == buf.tobytes()
        assert pixel_hash(cv2.imread(g.path)) == g.content_hash and int(g.seed) == 3
    assert gen.groupby("source_path").size().max() <= 10
    # deterministic for a seed, different for another
    export(oversampled(tmp_path / "again", 3))
    again = read_manifest(tmp_path / "again" / "base_oversampled")
    assert list(again["content_hash"]) == list(over["content_hash"])
    export(oversampled(tmp_path / "other", 4))
    other = read_manifest(tmp_path / "other" / "base_oversampled")
    assert set(other.loc[other.generated, "content_hash"]) != set(gen["content_hash"])
    assert before == tree_digest(sample_split / "test_2_folds_last", files=list(tr.path))


def test_target_specs_and_plan_without_skin_audit(sample_split: Path):
    counts = pd.Series({"a": 60, "b": 30, "c": 10})
    assert target_shares(counts, "uniform") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert target_shares(counts, "mix:0.5") == pytest.approx({"a": 0.3 + 1 / 6, "b": 0.15 + 1 / 6, "c": 0.05 + 1 / 6})
    fl = target_shares(counts, "floor:0.2")
    assert (
        fl["c"] == pytest.approx(0.2) and sum(fl.values()) == pytest.approx(1) and fl["a"] / fl["b"] == pytest.approx(2)
    )
    for bad, msg in (
        ({"a": 0.5, "b": 0.4}, "sum to 1"),
        ({"a": 0.5, "z": 0.5}, "no source image"),
        ("mix:2", "0..1"),
        ("floor:0.5", "below 1"),
        ("lots", "unknown target"),
    ):
        with pytest.raises(ExportError, match=msg):
            target_shares(counts, bad)
    tr, _ = manifests(sample_split)
    df = tr.assign(
        age_group=tr["age"].map(__import__("curate.splits", fromlist=["age_group"]).age_group),
        gender=tr["gender"].map({0: "male", 1: "female"}),
    )
    plan = plan_oversampling(df, ["age_group", "gender"], {"age_group": "uniform", "gender": "uniform"}, max_factor=20)
    assert plan.max_share_error < 0.01 and not plan.capped and plan.n_after == len(df) + len(plan.jobs)
    tight = plan_oversampling(
        df,
        ["age_group"],
        {"age_group": {b: (0.5 if b == "80+" else 0.5 / 9) for b in df["age_group"].unique()}},
        max_factor=1,
    )
    assert tight.capped and tight.max_share_error > 0.1, "an unreachable target is reported, not faked"


def test_export_errors_are_clear(sample_split: Path, tmp_path: Path):
    tr, _ = manifests(sample_split)
    root = tmp_path / "out"
    args = ["export", "--from", str(sample_split / "train_8_folds_first"), "--root", str(root), "--quiet"]
    run = lambda *a: CliRunner().invoke(main, [*args, *a])  # noqa: E731
    assert run().exit_code == 0
    stamp = (root / "train_cleaned" / "manifest.csv").stat().st_mtime_ns
    res = run()
    assert res.exit_code != 0 and "already exists" in res.output and "--force" in res.output
    assert (root / "train_cleaned" / "manifest.csv").stat().st_mtime_ns == stamp, "left untouched"
    (root / ".train_cleaned.tmp-999999999").mkdir()  # what a killed export (that pid is gone) left behind
    (root / ".train_cleaned.tmp-999999999" / "manifest.csv").write_text("half")
    res = run("--force")
    assert res.exit_code == 0 and not list(root.glob(".train_cleaned*")), "replaced, no temp folder left"
    res = run("--name", "test_2_folds_last", "--root", str(sample_split), "--force")
    assert res.exit_code != 0 and "refusing to write over" in res.output
    # a review that refers to images that no longer exist, or whose pixels changed
    review = tmp_path / "review.csv"
    pd.DataFrame(
        {"path": ["/nowhere/30_1_0_20170117000000000.jpg.chip.jpg", tr.path[1]], "tags": ["exclude", "exclude"]}
    ).to_csv(review, index=False)
    res = run("--review", str(review), "--name", "r")
    assert res.exit_code != 0 and "no longer exist" in res.output and "30_1_0_20170117000000000" in res.output
    assert not (root / "r").exists()
    res = run("--review", str(review), "--name", "r", "--allow-missing")
    assert res.exit_code == 0 and "skipped" in res.output
    assert len(read_manifest(root / "r")) == len(tr) - 1
    pd.DataFrame({"path": [tr.path[2]], "content_hash": ["0" * 32], "tags": ["exclude"]}).to_csv(review, index=False)
    res = run("--review", str(review), "--name", "r2")
    assert res.exit_code != 0 and "pixels changed" in res.output
    pd.DataFrame({"path": [tr.path[2]], "gender_corrected": ["robot"]}).to_csv(review, index=False)
    res = run("--review", str(review), "--name", "r3")
    assert res.exit_code != 0 and "not 0/1/male/female" in res.output
    # every bad row is named at once, with the value as written (no numpy reprs); a tag typo is an error
    tags = ["confirmd:mislabel", "exclude", "my-own-tag", "suspect:gendr"]
    pd.DataFrame({"path": tr.path[:5], "age_corrected": ["300", "x", "40", "-1", "30.5"], "tags": [*tags, ""]}).to_csv(
        review, index=False
    )
    res = run("--review", str(review), "--name", "r5")
    assert res.exit_code == 1 and "4 row(s) with an age_corrected that is not a whole age in 0-120" in res.output
    assert all(f"{tr.filename[i]} ({v})" in res.output for i, v in ((0, "300"), (1, "x"), (3, "-1"), (4, "30.5")))
    pd.DataFrame({"path": tr.path[:4], "tags": tags}).to_csv(review, index=False)
    res = run("--review", str(review), "--name", "r6")
    assert res.exit_code == 1 and "2 row(s) with an unknown tag" in res.output
    assert "confirmd:mislabel (did you mean confirmed:mislabel?)" in res.output and "my-own-tag" not in res.output
    review.write_text("")
    res = run("--review", str(review), "--name", "r7")
    assert res.exit_code == 1 and "review.csv: not a review CSV (EmptyDataError" in res.output
    assert "Traceback" not in res.output
    res = run("--oversample", "--by", "age_group,skin_category", "--name", "r4")
    assert res.exit_code != 0 and "needs skin tones: --audits with a skin_category column" in res.output
    res = CliRunner().invoke(
        main,
        [
            "export",
            "--from",
            str(sample_split / "test_2_folds_last"),
            "--root",
            str(sample_split),
            "--name",
            "x",
            "--quiet",
        ],
    )
    assert res.exit_code != 0 and "also in the test split" in res.output


def test_review_status_csv_with_flags(sample_split: Path, tmp_path: Path):
    """The decisions CSV as `curate review-status --csv` writes it (curate.fo_review.decisions: reviewed
    samples only, string genders, a `decision` column) plus a --flags table for the unreviewed images."""
    tr, _ = manifests(sample_split)
    g = lambda i: ("male", "female")[tr.gender[i]]  # noqa: E731
    other = lambda i: ("female", "male")[tr.gender[i]]  # noqa: E731
    rows = [  # path, tags, age_corrected, gender_corrected, decision
        (0, "exclude;suspect:age", None, None, "exclude"),
        (1, "confirmed:mislabel;confirmed:ok", None, None, "conflict"),
        (2, "confirmed:mislabel;suspect:gender", None, other(2), "mislabel"),
        (3, "", 61, None, "mislabel"),  # a correction without a tag still counts
        (4, "confirmed:ok;suspect:gender", None, None, "ok"),
    ]
    dec = pd.DataFrame(
        [
            {
                "path": tr.path[i],
                "filename": tr.filename[i],
                "content_hash": tr.content_hash[i],
                "age": tr.age[i],
                "gender": g(i),
                "race": "White",
                "tags": t,
                "age_corrected": a,
                "gender_corrected": gc,
                "decision": d,
                "problem": "",
                "id": f"id{i}",
            }
            for i, t, a, gc, d in rows
        ]
    )
    dec["age_corrected"] = dec["age_corrected"].astype("Int64")
    dec.to_csv(tmp_path / "decisions.csv", index=False)
    flags = pd.DataFrame(
        {
            "path": tr.path[4:9],
            "is_gender_label_issue": [True, True, False, False, False],
            "age_label_score": [0.9, 0.8, 0.05, 0.7, 0.9],
            "is_low_quality_issue": [False] * 4 + [True],
        }
    )
    flags.to_parquet(tmp_path / "flags.parquet")
    root = tmp_path / "out"
    base = ["export", "--from", str(sample_split / "train_8_folds_first"), "--root", str(root)]
    base += ["--review", str(tmp_path / "decisions.csv"), "--quiet"]
    res = CliRunner().invoke(main, [*base, "--name", "a", "--drop-suspects"])  # the CSV has no suspect to drop
    assert res.exit_code == 1 and "--drop-suspects: the review lists no unreviewed image" in res.output, res.output
    assert "add --flags FILE" in res.output and not (root / "a").exists()
    res = CliRunner().invoke(main, [*base, "--name", "a"])
    assert res.exit_code == 0, res.output
    a = read_manifest(root / "a").set_index("source_filename")
    assert set(tr.filename[:5]) - set(a.index) == {tr.filename[0], tr.filename[1]}, "exclude and conflict dropped"
    assert a.loc[tr.filename[2], "gender"] == 1 - tr.gender[2] and a.loc[tr.filename[3], "age"] == 61
    res = CliRunner().invoke(
        main,
        [
            *base,
            "--name",
            "b",
            "--flags",
            str(tmp_path / "flags.parquet"),
            "--drop-suspects",
            "--age-max-score",
            "0.1",
            "--drop-low-quality",
        ],
    )
    assert res.exit_code == 0, res.output
    b = set(read_manifest(root / "b")["source_filename"])
    # 4: suspect but confirmed:ok -> kept; 5: unreviewed suspect; 6: age_label_score 0.05 <= 0.1; 8: low quality
    assert set(tr.filename[:9]) - b == {tr.filename[i] for i in (0, 1, 5, 6, 8)}
    rem = pd.read_csv(root / "b" / "removed.csv").set_index("filename")["reason"]
    assert rem[tr.filename[1]].startswith("conflicting review") and "policy --drop-low-quality" in rem[tr.filename[8]]


def test_label_score_thresholds_read_one_scale_for_both_tasks(sample_split):
    """The bug this fixes: one --suspect-min-score compared a probability (gender) and an unbounded
    residual (age, flagged at 3.5) with the same number, so 0.9 made nearly every age label a suspect.
    Label scores are both in [0, 1], lower = worse; a schema-1 review's raw scores are converted."""
    tr, _ = manifests(sample_split)
    old = pd.DataFrame(
        {
            "path": tr.path[:4],
            "content_hash": tr.content_hash[:4],
            "tags": "",
            "gender_issue_score": [0.95, 0.2, 0.1, 0.1],  # schema-1: P(label wrong)
            "age_issue_score": [0.2, 0.95, 4.0, 1.0],
        }
    )  # schema-1: residual in expected errors
    rev = normalize_review(old, "old review")
    assert np.allclose(rev["gender_label_score"], [0.05, 0.8, 0.9, 0.9])
    assert rev["age_label_score"].between(0, 1).all()
    kept, removed, _ = apply_decisions(tr, rev, Policy(drop_suspects=True, gender_max_score=0.1, age_max_score=0.1))
    # gender: only 0.95 (score 0.05); age: only the residual of 4 expected errors (score 6e-5), not 0.95
    assert set(removed["filename"]) == {tr.filename[0], tr.filename[2]}
    assert len(kept) == len(tr) - 2


def test_relabel_policy_applies_suggestions_to_unreviewed_suspects_only(sample_split: Path, tmp_path: Path):
    """--relabel-suspects: suggested labels for open suspects above the threshold; reviews win; the rest of the
    suspects are dropped with --drop-suspects; every change is listed with old, new, score and reason."""
    tr, _ = manifests(sample_split)
    g = lambda i: ["male", "female"][1 - tr.gender[i]]  # noqa: E731 - the other gender
    r = lambda i, **kw: {"path": tr.path[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="suspect:gender", gender_suggested=g(0), gender_label_score=0.02, gender_label_reason="pred 0.98"),
        r(1, tags="suspect:age", age_suggested=int(tr.age[1]) + 30, age_label_score=0.001, age_label_reason="far"),
        r(2, tags="suspect:gender", gender_suggested=g(2), gender_label_score=0.4, gender_label_reason="weak"),
        r(3, tags="suspect:gender;confirmed:ok", gender_suggested=g(3), gender_label_score=0.01),  # reviewed: kept
        r(
            4,
            tags="suspect:gender;confirmed:mislabel",
            gender_corrected=g(4),
            gender_suggested=g(4),
            gender_label_score=0.01,
        ),  # fmt: skip
        r(5, tags="suspect:gender", gender_suggested=["male", "female"][tr.gender[5]], gender_label_score=0.45),
    ]
    review = tmp_path / "review.csv"
    pd.DataFrame(rows).to_csv(review, index=False)
    args = ["export", "--from", sample_split / "train_8_folds_first", "--review", review, "--root", tmp_path,
            "--relabel-suspects", "--relabel-gender-max-score", "0.1", "--drop-suspects", "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    man = pd.read_csv(tmp_path / "train_cleaned" / "manifest.csv").set_index("source_filename")
    f = tr.filename
    assert man.loc[f[0], "gender"] == 1 - tr.gender[0] and man.loc[f[0], "label_source"] == "relabelled"
    assert man.loc[f[1], "age"] == tr.age[1] + 30 and man.loc[f[1], "original_age"] == tr.age[1]
    assert parse_name(man.loc[f[1], "filename"]).age == tr.age[1] + 30  # the file name carries the new label
    assert f[2] not in man.index and f[5] not in man.index  # above the threshold / nothing to change: dropped
    assert man.loc[f[3], "gender"] == tr.gender[3] and man.loc[f[3], "label_source"] == "original"  # review wins
    assert man.loc[f[4], "label_source"] == "corrected"
    corr = pd.read_csv(tmp_path / "train_cleaned" / "corrections.csv").set_index("source_filename")
    assert set(corr.index) == {f[0], f[1], f[4]}
    assert "gender_label_score 0.02: pred 0.98" in corr.loc[f[0], "label_note"]
    assert f"age {tr.age[1]}->{tr.age[1] + 30} (age_label_score 0.001: far)" == corr.loc[f[1], "label_note"]
    report = (tmp_path / "train_cleaned" / "EXPORT.md").read_text()
    assert "relabelled by the policy (unreviewed suspects, suggested label): 2" in report
    assert f"| {man.loc[f[0], 'filename']} | relabelled | gender " in report
    rem = pd.read_csv(tmp_path / "train_cleaned" / "removed.csv")
    assert set(rem["filename"]) == {f[2], f[5]}
    bad = CliRunner().invoke(main, [str(a) for a in [*args[:-4], "--relabel-age-max-score", "2"]])
    assert bad.exit_code != 0 and "label scores are in [0, 1]" in bad.output


def test_mask_policy_keeps_every_image_and_masks_only_the_suspected_label(sample_split: Path, tmp_path: Path):
    """--mask-suspects: an open suspect stays in the split with only its suspected label weighted 0 (the
    image still trains the other head); reviews win; a relabelled suspect is not masked; labels and file
    names keep their values; augmented copies inherit their source's weights; every mask is listed."""
    tr, _ = manifests(sample_split)
    g = lambda i: ["male", "female"][1 - tr.gender[i]]  # noqa: E731 - the other gender
    r = lambda i, **kw: {"path": tr.path[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="suspect:gender", gender_suggested=g(0), gender_label_score=0.3, gender_label_reason="weak"),
        r(1, tags="suspect:age", age_label_score=0.001, age_label_reason="far"),
        r(2, tags="suspect:gender;confirmed:ok", gender_label_score=0.01),  # reviewed: not masked
        r(3, tags="suspect:gender", gender_suggested=g(3), gender_label_score=0.02),  # relabelled, not masked
        r(4, tags="", gender_label_score=0.2),  # not flagged, but at most --gender-max-score 0.25
        r(5, tags="suspect:gender;suspect:age", gender_label_score=0.1, age_label_score=0.01),
    ]
    review = tmp_path / "review.csv"
    pd.DataFrame(rows).to_csv(review, index=False)
    args = ["export", "--from", sample_split / "train_8_folds_first", "--review", review, "--root", tmp_path,
            "--relabel-suspects", "--relabel-gender-max-score", "0.05", "--mask-suspects",
            "--gender-max-score", "0.25", "--oversample", "--max-factor", "3", "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    man = read_manifest(tmp_path / "train_cleaned").set_index("source_filename")
    f = tr.filename
    assert len(man) == len(tr), "masking removes no image"
    w = man[["gender_label_weight", "age_label_weight"]]
    assert w.loc[[f[0], f[4]]].values.tolist() == [[0, 1], [0, 1]]
    assert w.loc[f[1]].tolist() == [1, 0] and w.loc[f[5]].tolist() == [0, 0]
    assert w.loc[[f[2], f[3]]].values.tolist() == [[1, 1], [1, 1]]
    assert (w.drop(index=[f[i] for i in (0, 1, 4, 5)]) == 1).all().all()
    assert man.loc[f[0], "gender"] == tr.gender[0] and man.loc[f[0], "label_source"] == "masked"
    assert parse_name(man.loc[f[1], "filename"]).age == tr.age[1], "a masked label keeps its value and name"
    assert man.loc[f[3], "gender"] == 1 - tr.gender[3] and man.loc[f[3], "label_source"] == "relabelled"
    corr = pd.read_csv(tmp_path / "train_cleaned" / "corrections.csv").set_index("source_filename")
    assert set(corr.index) == {f[0], f[1], f[3], f[4], f[5]}
    assert corr.loc[f[0], "label_note"] == "gender masked in training (gender_label_score 0.3: weak)"
    assert corr.loc[f[5], "label_note"].count("masked in training") == 2
    report = (tmp_path / "train_cleaned" / "EXPORT.md").read_text()
    assert "labels masked in training (weight 0; the image kept for the other label): gender 3, age 2" in report
    over = read_manifest(tmp_path / "train_cleaned_oversampled")
    gen = over[over["generated"] == True]  # noqa: E712 - read back from CSV
    assert len(gen) > 0
    src_w = man[["gender_label_weight", "age_label_weight"]]
    assert (
        gen[["gender_label_weight", "age_label_weight"]].to_numpy() == src_w.loc[gen["source_filename"]].to_numpy()
    ).all()
    both = CliRunner().invoke(main, [str(a) for a in [*args[:-1], "--drop-suspects", "--force"]])
    assert both.exit_code != 0 and "--drop-suspects and --mask-suspects" in both.output
    # exporting the masked split again keeps its masks, except where a person has since reviewed the image
    pd.DataFrame([r(0, tags="confirmed:ok")]).to_csv(review, index=False)
    again = ["export", "--from", tmp_path / "train_cleaned", "--review", review, "--root", tmp_path, "--name", "again",
             "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, [str(a) for a in again], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    w2 = read_manifest(tmp_path / "again").set_index("filename")[["gender_label_weight", "age_label_weight"]]
    assert w2.loc[f[0]].tolist() == [1, 1] and w2.loc[f[1]].tolist() == [1, 0] and w2.loc[f[5]].tolist() == [0, 0]


def test_relabel_what_gender_relabels_sure_genders_and_masks_every_other_suspect(sample_split: Path, tmp_path: Path):
    """--relabel-what gender (policy i): with --mask-suspects, a gender suspect the scores are sure of gets the
    other gender, a less sure one is masked, and an age suspect is masked even with a suggested age at a score
    under the relabel threshold; --relabel-what alone, without --relabel-suspects, is refused."""
    tr, _ = manifests(sample_split)
    g = lambda i: ["male", "female"][1 - tr.gender[i]]  # noqa: E731 - the other gender
    r = lambda i, **kw: {"path": tr.path[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="suspect:gender", gender_suggested=g(0), gender_label_score=0.05, gender_label_reason="sure"),
        r(1, tags="suspect:gender", gender_suggested=g(1), gender_label_score=0.3, gender_label_reason="unsure"),
        r(2, tags="suspect:age", age_suggested=int(tr.age[2]) + 25, age_label_score=0.001, age_label_reason="far"),
        r(
            3,
            tags="suspect:gender;suspect:age",
            gender_suggested=g(3),
            gender_label_score=0.02,
            age_suggested=int(tr.age[3]) + 20,
            age_label_score=0.01,
        ),  # fmt: skip
    ]
    review = tmp_path / "review.csv"
    pd.DataFrame(rows).to_csv(review, index=False)
    args = ["export", "--from", sample_split / "train_8_folds_first", "--review", review, "--root", tmp_path,
            "--mask-suspects", "--relabel-suspects", "--relabel-gender-max-score", "0.1", "--relabel-age-max-score",
            "0.1", "--relabel-what", "gender", "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    man = read_manifest(tmp_path / "train_cleaned").set_index("source_filename")
    f = tr.filename
    assert len(man) == len(tr)
    assert man.loc[f[0], "gender"] == 1 - tr.gender[0] and man.loc[f[0], "gender_label_weight"] == 1
    assert man.loc[f[1], "gender"] == tr.gender[1] and man.loc[f[1], "gender_label_weight"] == 0
    assert man.loc[f[2], "age"] == tr.age[2] and man.loc[f[2], "age_label_weight"] == 0  # ages never relabelled
    row = man.loc[f[3]]
    assert (row["gender"], row["gender_label_weight"]) == (1 - tr.gender[3], 1)
    assert (row["age"], row["age_label_weight"]) == (tr.age[3], 0)
    assert parse_name(row["filename"]).gender == 1 - tr.gender[3] and parse_name(row["filename"]).age == tr.age[3]
    assert set(man.index[man["label_source"] == "relabelled"]) == {f[0], f[3]}
    # without --relabel-what both labels change, as before
    res = CliRunner().invoke(main, [str(a) for a in [*args[:-3], "--name", "both", "--quiet"]])
    assert res.exit_code == 0, res.output
    both = read_manifest(tmp_path / "both").set_index("source_filename")
    assert both.loc[f[2], "age"] == tr.age[2] + 25 and both.loc[f[3], "age"] == tr.age[3] + 20
    alone = ["export", "--from", sample_split / "train_8_folds_first", "--review", review, "--root", tmp_path,
             "--name", "x", "--mask-suspects", "--relabel-what", "gender"]  # fmt: skip
    bad = CliRunner().invoke(main, [str(a) for a in alone])
    assert bad.exit_code != 0 and "--relabel-what only applies with --relabel-suspects" in bad.output


def test_exported_manifests_carry_the_issue_schema(sample_split: Path, tmp_path: Path):
    """The cleaned and oversampled manifests (and removed.csv) carry every check's columns under the one
    schema's names: the audit's measurements, scores, flags and reasons for each kept image, the review's
    label scores; generated copies are not audited (NaN), their source row has the values."""
    from audits.runner import AuditConfig, run_audit
    from core.schema import checks

    tr, _ = manifests(sample_split)
    cfg = AuditConfig(workers=1, progress=False, cache_root=tmp_path / "cache")
    table = run_audit(list(tr["path"]), tr[["age", "gender", "race"]], cfg).table
    table.to_parquet(tmp_path / "audits.parquet")
    flags = pd.DataFrame({"path": tr.path[:3], "gender_label_score": [0.9, 0.02, 0.5], "is_gender_label_issue":
                          [False, True, False], "gender_label_reason": ["", "pred female 0.98", ""]})  # fmt: skip
    flags.to_parquet(tmp_path / "flags.parquet")
    args = ["export", "--from", sample_split / "train_8_folds_first", "--root", tmp_path / "out", "--audits",
            tmp_path / "audits.parquet", "--flags", tmp_path / "flags.parquet", "--drop-suspects", "--oversample",
            "--quiet"]  # fmt: skip
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    cleaned = pd.read_csv(tmp_path / "out" / "train_cleaned" / "manifest.csv").set_index("source_filename")
    audited = table.assign(filename=table["path"].map(lambda p: Path(p).name)).set_index("filename")
    for check in checks():
        if check.family == "label":
            continue
        for col in (c.name for c in check.columns()):
            if col in audited and col not in ("width", "height"):
                assert col in cleaned, col
                got, want = cleaned[col], audited.loc[cleaned.index, col]
                if want.dtype.kind in "iuf":
                    assert np.allclose(got.astype(float), want.astype(float), equal_nan=True, rtol=1e-6), col
                else:
                    same = got.astype(object).fillna("").astype(str) == want.astype(object).fillna("").astype(str)
                    assert same.all(), (col, got[~same].head(3).tolist(), want[~same].head(3).tolist())
    assert cleaned["is_low_quality_issue"].any() or not audited["is_low_quality_issue"].any()
    assert tr.filename[1] not in cleaned.index  # the flagged gender suspect was dropped ...
    removed = pd.read_csv(tmp_path / "out" / "train_cleaned" / "removed.csv").set_index("filename")
    assert removed.loc[tr.filename[1], "gender_label_reason"] == "pred female 0.98"  # ... and says why
    assert removed.loc[tr.filename[1], "gender_label_score"] == 0.02 and "brisque" in removed
    assert cleaned.loc[tr.filename[0], "gender_label_score"] == 0.9
    over = pd.read_csv(tmp_path / "out" / "train_cleaned_oversampled" / "manifest.csv")
    gen, orig = over[over["generated"]], over[~over["generated"]]
    assert len(gen) > 0 and gen["brisque"].isna().all() and gen["blurry_score"].isna().all()
    assert np.allclose(orig.set_index("source_filename").loc[cleaned.index, "brisque"], cleaned["brisque"],
                       equal_nan=True)  # fmt: skip


def test_age_rank_two_sided_masks_as_many_ages_chosen_by_the_two_sided_score(sample_split: Path, tmp_path: Path):
    """--age-rank two-sided (policy m): as many open age suspects as is_age_label_issue and --age-max-score
    pick, but those with the highest age_two_sided_z; a reviewed image is never among them; each mask's note
    gives the two-sided z; without the column (flags from before it existed) it says to re-run flag-mislabels."""
    tr, _ = manifests(sample_split)
    r = lambda i, **kw: {"path": tr.path[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="suspect:age", age_label_score=0.001, age_two_sided_z=0.4, age_label_reason="an 85-year-old"),
        r(1, tags="", age_label_score=0.03, age_two_sided_z=0.2),  # picked by --age-max-score, low two-sided
        r(2, tags="", age_label_score=0.2, age_two_sided_z=2.5, age_label_reason="shifted"),  # not picked, high
        r(3, tags="", age_label_score=0.3, age_two_sided_z=1.9),
        r(4, tags="confirmed:ok", age_label_score=0.01, age_two_sided_z=9.0),  # reviewed: never masked
        r(5, tags="", age_label_score=0.5, age_two_sided_z=0.1),
    ]
    review = tmp_path / "review.csv"
    pd.DataFrame(rows).to_csv(review, index=False)
    base = ["export", "--from", sample_split / "train_8_folds_first", "--review", review, "--root", tmp_path,
            "--mask-suspects", "--age-max-score", "0.05", "--quiet"]  # fmt: skip
    f = tr.filename
    masked = {}
    for rank in ("residual", "two-sided"):
        res = CliRunner().invoke(main, [str(a) for a in [*base, "--name", rank, "--age-rank", rank]])
        assert res.exit_code == 0, res.output
        man = read_manifest(tmp_path / rank).set_index("source_filename")
        assert len(man) == len(tr) and (man["gender_label_weight"] == 1).all()
        masked[rank] = set(man.index[man["age_label_weight"] == 0])
    assert masked["residual"] == {f[0], f[1]}  # at most 0.05 (f[4] is reviewed)
    assert masked["two-sided"] == {f[2], f[3]}  # the same count, the two highest open two-sided z
    corr = pd.read_csv(tmp_path / "two-sided" / "corrections.csv").set_index("source_filename")
    assert corr.loc[f[2], "label_note"] == "age masked in training (age_label_score 0.2: shifted; two-sided z 2.5)"
    assert json.loads((tmp_path / "two-sided" / "export.json").read_text())["policy"]["age_rank"] == "two-sided"
    old = tmp_path / "old.csv"
    pd.DataFrame(rows).drop(columns="age_two_sided_z").to_csv(old, index=False)
    bad = CliRunner().invoke(main, [str(a) for a in [*base[:4], old, *base[5:], "--name", "old", "--age-rank",
                                                     "two-sided"]])  # fmt: skip
    assert bad.exit_code != 0 and "carry no age_two_sided_z" in bad.output and "flag-mislabels" in bad.output
    alone = CliRunner().invoke(main, [str(a) for a in [*base[:7], "--name", "x", "--age-rank", "two-sided"]])
    assert alone.exit_code != 0 and "--age-rank two-sided only applies with --mask-suspects" in alone.output
    # --age-min-z (policy n): every open age at two-sided z >= the bound, however many the residual picks
    res = CliRunner().invoke(
        main, [str(a) for a in [*base, "--name", "z", "--age-rank", "two-sided", "--age-min-z", 1.9]]
    )
    assert res.exit_code == 0, res.output
    man = read_manifest(tmp_path / "z").set_index("source_filename")
    assert set(man.index[man["age_label_weight"] == 0]) == {f[2], f[3]}  # 2.5 and 1.9; f[4] (9.0) is reviewed
    res = CliRunner().invoke(
        main, [str(a) for a in [*base, "--name", "z2", "--age-rank", "two-sided", "--age-min-z", 2]]
    )
    assert set(read_manifest(tmp_path / "z2").pipe(lambda m: m.source_filename[m.age_label_weight == 0])) == {f[2]}
    assert json.loads((tmp_path / "z2" / "export.json").read_text())["policy"]["age_min_z"] == 2
    res = CliRunner().invoke(main, [str(a) for a in [*base, "--name", "z3", "--age-min-z", 2]])
    assert res.exit_code != 0 and "--age-min-z only applies with --age-rank two-sided" in res.output


def test_an_export_without_a_review_says_so(sample_split: Path, tmp_path: Path):
    """No --dataset, --review or --flags: the split is exported as it is, and the terminal says why nothing was
    removed (a user who forgot --dataset would otherwise read "removed 0" as a clean dataset)."""
    src = sample_split / "train_8_folds_first"
    res = CliRunner().invoke(main, ["export", "--from", str(src), "--root", str(tmp_path), "--name", "plain"])
    assert res.exit_code == 0 and "no review given (--dataset, --review or --flags)" in res.output
    assert len(pd.read_csv(tmp_path / "plain" / "manifest.csv")) == len(pd.read_csv(src / "manifest.csv"))
    res = CliRunner().invoke(main, ["export", "--from", str(src), "--root", str(tmp_path), "--name", "q", "--quiet"])
    assert res.exit_code == 0 and "no review given" not in res.output


def test_an_audits_table_of_other_images_is_an_error_and_a_partial_one_is_warned(sample_split: Path, tmp_path: Path):
    """Oversampling by skin tone with an audit of other images (e.g. the photos, for a split of their aligned
    crops) would deal every image into 'unknown' without a word: an error; a table missing some images: a
    warning naming how many."""
    tr, te = manifests(sample_split)
    skin_categories(te).to_parquet(tmp_path / "test.parquet")  # the test split's images: none of the training's
    args = ["export", "--from", str(sample_split / "train_8_folds_first"), "--root", str(tmp_path), "--oversample"]
    res = CliRunner().invoke(main, [*args, "--audits", str(tmp_path / "test.parquet"), "--name", "a", "--quiet"])
    assert res.exit_code == 1 and f"{len(tr)} of {len(tr)} images are not in this audits table" in res.output
    assert not (tmp_path / "a").exists()
    skin_categories(tr).iloc[3:].to_parquet(tmp_path / "most.parquet")
    res = CliRunner().invoke(main, [*args, "--audits", str(tmp_path / "most.parquet"), "--name", "b", "--quiet"])
    assert res.exit_code == 0 and f"3 of {len(tr)} images are not in the audits table" in res.output


def test_reviewed_test_images_are_those_with_a_decision(sample_split: Path):
    """A dataset's review lists every sample; the corrected test view counts the ones a reviewer decided on, as a
    review CSV does (retrain --compare said "17 reviewed test image(s)" for two)."""
    from curate.export import corrected_view

    _, te = manifests(sample_split)
    listed = normalize_review(pd.DataFrame({"path": te["path"], "tags": ""}))
    listed.loc[0, "tags"], listed.loc[1, "age_corrected"] = ("exclude",), te["age"][1] + 10
    kept, info = corrected_view(te, listed)
    assert info["n_review_rows"] == 2 and info["n_removed"] == 1 and info["n_corrected"] == 1
    assert len(kept) == len(te) - 1


def test_a_review_is_read_one_way_whatever_the_reviewer_wrote(sample_split: Path, tmp_path: Path):
    """A correction equal to the label corrects nothing (the image is dropped as labelled wrong, not kept with the
    label called wrong); "label is right" with a correction is a conflict; a `decision` column (review-status writes
    one) is obeyed, and tags that said otherwise are warned about; --drop-low-quality spares images a reviewer
    kept; unreviewed suspects kept as labelled are counted; a leftover oversampled split is warned about."""
    tr, _ = manifests(sample_split)
    f, g = tr.filename, lambda i: ("male", "female")[tr.gender[i]]  # noqa: E731
    r = lambda i, **kw: {"filename": f[i], "content_hash": tr.content_hash[i], **kw}  # noqa: E731
    rows = [
        r(0, tags="confirmed:mislabel;suspect:gender", gender_corrected=g(0)),  # "corrected" to its own label
        r(1, tags="confirmed:ok", age_corrected=tr.age[1] + 5),
        r(2, tags="confirmed:ok", decision="exclude"),  # the decision column edited, the tags not
        r(3, tags="", decision="exclude"),  # filename and decision only
        r(4, tags="confirmed:ok;low_quality", is_low_quality_issue=True),
        r(5, tags="suspect:gender", is_gender_label_issue=True),
        r(6, tags="low_quality", is_low_quality_issue=True),
        r(7, tags="confirmed:mislabel", age_corrected=tr.age[7], gender_corrected=1 - tr.gender[7]),
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "review.csv", index=False)
    out = tmp_path / "out"

    def cli(*args):
        base = ["export", "--from", sample_split / "train_8_folds_first", "--root", out, "--quiet"]
        return CliRunner().invoke(main, [str(a) for a in [*base, *args]])

    res = cli("--review", tmp_path / "review.csv", "--name", "a", "--drop-low-quality", "--oversample",
              "--max-factor", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    removed = pd.read_csv(out / "a" / "removed.csv").set_index("filename")["reason"].to_dict()
    assert removed == {
        f[0]: "labelled wrong, but the correction given equals the label",
        f[1]: "conflicting review (confirmed:ok and a correction)",
        f[2]: "tagged exclude",
        f[3]: "tagged exclude",
        f[6]: "low quality (policy --drop-low-quality)",
    }
    kept = read_manifest(out / "a").set_index("source_filename")
    assert f[4] in kept.index and kept.loc[f[5], "label_source"] == "original"
    assert kept.loc[f[7], ["age", "gender"]].tolist() == [tr.age[7], 1 - tr.gender[7]]  # the no-op age ignored
    summary = json.loads((out / "a" / "export.json").read_text())
    assert summary["n_suspects_kept"] == 1 and summary["review_decisions"] == 6
    said = f"1 review row(s) whose decision column and tags disagree: the decision column was obeyed (first: {f[2]}: "
    assert said + "decision exclude, tags and corrections said ok)" in res.output
    assert "1 unreviewed label suspect(s) kept as labelled" in res.output
    again = cli("--review", tmp_path / "review.csv", "--name", "a", "--force")
    assert again.exit_code == 0 and f"{out / 'a_oversampled'} is from an earlier export" in again.output
    pd.DataFrame([r(0, decision="maybe")]).to_csv(tmp_path / "bad.csv", index=False)
    bad = cli("--review", tmp_path / "bad.csv", "--name", "b")
    said = f"1 row(s) with a decision that is not exclude/conflict/mislabel/ok/pending: {f[0]} (maybe)"
    assert bad.exit_code == 1 and said in bad.output


def test_copied_originals_keep_their_format_in_the_name():
    """`export --copy` names a copy after its corrected labels but keeps the source's format: a PNG stays .png (a
    tool trusting extensions reads it right); UTKFace's .jpg.chip.jpg stays; .JPG and .jpeg become .jpg."""
    from curate.export import utk_name

    assert utk_name("33_1_2_20170101000000004.png", 34, 0, 2) == "34_0_2_20170101000000004.png"
    assert utk_name("33_1_2_20170101000000004.jpg.chip.jpg", 33, 1, 2) == "33_1_2_20170101000000004.jpg.chip.jpg"
    assert utk_name("33_1_2_20170101000000004.JPG", 33, 1, None) == "33_1_20170101000000004.jpg"
    assert utk_name("33_1_2_20170101000000004.webp", 33, 1, 2).endswith(".webp")
    assert utk_name("33_1_2_20170101000000004.png", 33, 1, 2, suffix="_aug0").endswith("_aug0.jpg")  # a JPEG


def test_two_copies_of_one_photo_are_augmented_differently_and_a_label_conflict_is_warned(
    sample_split: Path, tmp_path: Path
):
    """Oversampling draws each copy's augmentation from the source's pixels, name and k: two names of one photo
    (a pixel-identical pair) no longer get byte-identical augmented images; when such a pair's labels disagree,
    the export says that a wrong label now counts several times."""
    tr, _ = manifests(sample_split)
    pairs = tr[tr["content_hash"].duplicated(keep=False)]
    assert len(pairs) >= 2, "the sample holds pixel-identical pairs"
    audits = skin_categories(tr).assign(is_label_conflict_issue=tr["content_hash"].duplicated(keep=False).to_numpy())
    audits.to_parquet(tmp_path / "audits.parquet")
    s = export(ExportOptions(sample_split / "train_8_folds_first", tmp_path / "out", "c", oversample=True,
                             audits=tmp_path / "audits.parquet", targets={"age_group": "uniform"}, max_factor=10,
                             test_split=sample_split / "test_2_folds_last"))  # fmt: skip
    from curate.export import draw_transform
    from curate.export.oversample import transform_rng

    h = pairs["content_hash"].iloc[0]
    a, b = (draw_transform(transform_rng(0, h, 1, n)) for n in pairs.loc[pairs["content_hash"] == h, "filename"][:2])
    assert a != b and a == draw_transform(transform_rng(0, h, 1, pairs["filename"].iloc[0]))  # seeded, per name
    gen = read_manifest(tmp_path / "out" / "c_oversampled")
    gen = gen[gen["generated"]]
    twins = gen[gen["source_content_hash"].isin(set(pairs["content_hash"]))]
    assert len(twins) and twins["transform"].is_unique
    said = [w for w in s["warnings"] if "have copies labelled otherwise" in w]
    assert said and "saved view duplicate-label-conflicts" in said[0]
