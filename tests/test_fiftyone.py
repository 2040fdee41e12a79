"""FiftyOne: `curate score`, `flag-mislabels`, `review-status`, `app` (real browser), own mongod.

Real images only (the embedded sample). FiftyOne reads its config at import, so this module gives it an
isolated database before anything imports fiftyone (CI sets its own FIFTYONE_DATABASE_DIR; a user's
FIFTYONE_DATABASE_URI is never used by the tests). Every test works on its own dataset name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fo_common
import pandas as pd
import pytest
from fo_common import CHROMIUM_ARGS, REPO, SAMPLE, TINY, free_port, run, serve_app, usable_sample

from trainer.config import TrainConfig

# the module-scoped fixtures, by name (each module that takes them gets its own scored dataset)
env, model, fo, scored, flagged = fo_common.env, fo_common.model, fo_common.fo, fo_common.scored, fo_common.flagged

pytestmark = pytest.mark.timeout(1200)  # a hang (database, App, audit pool) fails instead of blocking CI


# ------------------------------------------------------------------------------------------ score
def test_score_stores_labels_predictions_embeddings_and_provenance(scored, model, fo):
    from core.manifest import file_sha256

    name, out = scored
    usable, rejected = usable_sample()
    ds = fo.load_dataset(name)
    assert len(ds) == len(usable) and f"added {len(usable)}" in out
    # every image of the sample is usable (its README.md is not an image to reject; bad files: test_bad_inputs)
    assert len(rejected) == 0 and "rejected 0" in out and "README" not in out
    assert ds.persistent
    s = ds.first()
    row = usable.set_index("path").loc[s.filepath]
    assert isinstance(s.age, fo.Regression) and s.age.value == row["age"]
    assert isinstance(s.gender, fo.Classification) and s.gender.label == ("male", "female")[row["gender"]]
    assert isinstance(s.age_pred, fo.Regression)
    assert s.gender_pred.label in ("male", "female") and 0.5 <= s.gender_pred.confidence <= 1
    assert len(s.gender_pred.logits) == 2 and s.embedding.shape == (576,)
    assert s.split == row["split"] and s.fold == row["fold"] and s.content_hash == row["content_hash"]
    assert abs(s.age_abs_error - abs(s.age_pred.value - s.age.value)) < 1e-4
    assert set(ds.distinct("model")) == {file_sha256(model)[:12]}
    assert ds.distinct("score_status") == ["ok"]
    # audits: every audit check of the one schema is there under its own names, with its version
    from core.schema import CHECKS

    schema = ds.get_field_schema()
    for c in (c for c in CHECKS if c.family != "label"):
        for col in c.columns():
            assert col.name in schema, f"{c.name}: {col.name} is not a field"
        vals = [v for v in ds.values(c.score) if v is not None]
        assert vals and 0 <= min(vals) and max(vals) <= 1, c.score
    assert ds.count("audit_version") == len(ds)
    info = ds.info["curate"]
    assert info["runs"][-1]["added"] == len(ds) and "predictions" in info["fields"]
    # brain from our embeddings
    assert {"img_sim", "img_viz"} <= set(ds.list_brain_runs()) and ds.count("uniqueness") == len(ds)


def test_second_score_adds_nothing_and_keeps_review_decisions(scored, model, fo):
    name, _ = scored
    ds = fo.load_dataset(name)
    n = len(ds)
    s = ds.first()
    s.tags.append("confirmed:ok")
    s.age_corrected = 33
    s.save()
    sid = s.id
    del s
    res = run("score", SAMPLE, "--model", model, "--dataset", name, "--quiet")
    assert "added 0," in res.output and "updated (none)" in res.output and "brain: skipped" in res.output
    ds.reload()
    assert len(ds) == n and len(set(ds.values("filepath"))) == n
    s = ds[sid]
    assert "confirmed:ok" in s.tags and s.age_corrected == 33


# --------------------------------------------------------------------------- flags and review loop
def test_flag_mislabels_tags_candidates_and_saves_views(flagged, fo):
    name, out = flagged
    ds = fo.load_dataset(name)
    views = set(ds.list_saved_views())
    assert {
        "suspect-gender",
        "suspect-age",
        "low-quality",
        "duplicate-label-conflicts",
        "face-issues",
        "worst-errors-by-age-group",
        "worst-errors-by-skin-tone",
        "review-queue",
    } <= views
    assert ds.count_sample_tags()["suspect:gender"] == 5 == ds.count_sample_tags()["suspect:age"]
    sg = ds.load_saved_view("suspect-gender")
    scores = sg.values("gender_flip_prob")
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= max(ds.match_tags("suspect:gender", bool=False).values("gender_flip_prob"))
    assert all(r for r in sg.values("gender_label_reason"))
    assert ds.count("oos_age_pred") == len(ds) and set(ds.distinct("label_status")) == {"ok"}
    from core.schema import CHECKS

    for c in (c for c in CHECKS if c.family == "label"):  # the label checks, same names as the Parquet
        assert {col.name for col in c.columns()} <= set(ds.get_field_schema()), c.name
        assert 0 <= min(ds.values(c.score)) and max(ds.values(c.score)) <= 1
    assert set(sg.values("gender_suggested")) <= {"male", "female"}
    assert set(ds.distinct("oos_fold")) == {0, 1}
    # low_quality tag = the quality audit's flag
    assert ds.count_sample_tags().get("low_quality", 0) == len(ds.match(fo.ViewField("is_low_quality_issue") == True))  # noqa: E712
    # face-issues = the face audit's flag (a field, no tag): the sample's two crops without a face
    faces = ds.load_saved_view("face-issues")
    assert len(faces) == len(ds.match(fo.ViewField("is_face_issue") == True)) >= 2  # noqa: E712
    # the sample holds a pixel-identical pair labelled male and female: the conflict view finds it
    dup = ds.load_saved_view("duplicate-label-conflicts")
    assert len(dup) >= 2


def test_review_status_summarises_and_exports_decisions(flagged, fo, tmp_path):
    name, _ = flagged
    ds = fo.load_dataset(name)
    sg = ds.load_saved_view("suspect-gender")
    ids = sg.values("id")
    ds.select(ids[:1]).tag_samples("confirmed:mislabel")
    ds.select(ids[1:2]).tag_samples("confirmed:ok")
    ds.select(ids[2:3]).tag_samples("exclude")
    ds.set_values("gender_corrected", {ids[3]: "female"}, key_field="id")
    csv = tmp_path / "decisions.csv"
    res = run("review-status", "--dataset", name, "--out", csv)
    dec = pd.read_csv(csv)
    by_id = dict(zip(dec["id"], dec["decision"]))
    assert by_id[ids[0]] == "mislabel" and by_id[ids[1]] == "ok" and by_id[ids[2]] == "exclude"
    assert by_id[ids[3]] == "mislabel" and dec.set_index("id").loc[ids[3], "gender_corrected"] == "female"
    tags = dec.set_index("id").loc[ids[0], "tags"]  # one order (decisions first), not the order tags were added in
    assert tags.startswith("confirmed:mislabel;") and "suspect:gender" in tags
    line = next(x for x in res.output.splitlines() if x.strip().startswith("suspect-gender"))
    reviewed = sum(i in by_id for i in ids)
    assert reviewed >= 4 and line.split()[1:4] == [str(len(ids)), str(reviewed), str(len(ids) - reviewed)], line
    # re-flagging re-derives the candidate tags but leaves the reviewer's alone
    run("flag-mislabels", "--dataset", name, "--oos", "crossfit", "--full", *TINY, "--top-k", "3", "--allow-weak-model",
        "--quiet")  # fmt: skip
    ds.reload()
    assert ds.count_sample_tags()["suspect:gender"] == 3
    assert ds.count_sample_tags()["confirmed:mislabel"] >= 1 and ds.count_sample_tags()["exclude"] >= 1


# ----------------------------------------------------------------------------- errors and safety
def test_foreign_or_conflicting_dataset_is_refused_untouched(fo, model, env):
    foreign = fo.Dataset(f"t-foreign-{uuid.uuid4().hex[:6]}")
    foreign.add_sample(fo.Sample(filepath=str(next(SAMPLE.glob("*.jpg"))), age=3.5))
    res = run("score", SAMPLE, "--model", model, "--dataset", foreign.name, "--no-brain", ok=False)
    assert res.exit_code == 1 and "was not created by `curate score`" in res.output
    foreign.info["curate"] = {"schema_version": 1}  # marked, but `age` is a float, not fo.Regression
    foreign.save()
    res = run("score", SAMPLE, "--model", model, "--dataset", foreign.name, "--no-brain", "--no-audits", ok=False)
    assert (
        res.exit_code == 1
        and "different schema: age is FloatField, expected EmbeddedDocumentField(Regression)" in res.output
    )
    foreign.reload()
    assert len(foreign) == 1 and foreign.first().age == 3.5 and "embedding" not in foreign.get_field_schema()
    foreign.delete()


def test_unreachable_database_uri_fails_fast_with_a_clear_error(fo, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setattr(fo.config, "database_uri", f"mongodb://curator:s3cret@127.0.0.1:{port}/?authSource=admin")
    monkeypatch.setattr("curate.fo_db.DEFAULT_TIMEOUT_S", 2.0)
    from curate import fo_db

    t0 = time.time()
    with pytest.raises(fo_db.DatabaseError) as e:
        fo_db.connect(timeout_s=2.0)
    assert time.time() - t0 < 30
    msg = str(e.value)
    assert (
        f"cannot reach the FiftyOne database at mongodb://curator:***@127.0.0.1:{port}" in msg and "s3cret" not in msg
    )
    res = run("review-status", "--dataset", "whatever", ok=False)
    assert res.exit_code == 1 and "cannot reach the FiftyOne database" in res.output


def test_moved_and_vanished_images_keep_their_samples(fo, model, env, tmp_path):
    src = tmp_path / "a"
    src.mkdir()
    files = sorted(SAMPLE.glob("*.jpg"))[:12]
    for f in files:
        shutil.copy2(f, src / f.name)
    name = f"t-move-{uuid.uuid4().hex[:6]}"
    run("score", src, "--model", model, "--dataset", name, "--no-brain", "--no-audits", "--quiet")
    ds = fo.load_dataset(name)
    assert len(ds) == 12
    folds = dict(zip(ds.values("filename"), ds.values("fold")))
    first = ds.match(fo.ViewField("filename") == files[0].name).first()
    first.tags.append("exclude")
    first.save()
    del first
    dst = tmp_path / "b"
    src.rename(dst)
    (dst / files[1].name).unlink()
    res = run("score", dst, "--model", model, "--dataset", name, "--no-brain", "--no-audits", "--quiet")
    assert "added 0," in res.output and "moved 11" in res.output and "missing files 1" in res.output
    ds.reload()
    assert len(ds) == 12
    s = ds.match(fo.ViewField("filename") == files[0].name).first()
    assert s.filepath == str(dst / files[0].name) and s.previous_filepath == str(src / files[0].name)
    assert "exclude" in s.tags and s.score_status == "ok"
    gone = ds.match(fo.ViewField("filename") == files[1].name).first()
    assert gone.score_status == "missing file" and gone.age_pred is not None  # stored data kept
    assert dict(zip(ds.values("filename"), ds.values("fold"))) == folds, "a fold moved because an image went"
    ds.delete()


# ---------------------------------------------------------------------------- own mongod server
@pytest.mark.slow
def test_score_against_a_separately_started_mongod(model, tmp_path, env):
    import pymongo
    from fiftyone.core.service import DatabaseService

    mongod = DatabaseService.find_mongod()
    port = free_port()
    dbpath = tmp_path / "mongo"
    dbpath.mkdir()
    proc = subprocess.Popen(
        [
            mongod,
            "--dbpath",
            str(dbpath),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--logpath",
            str(tmp_path / "mongod.log"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=120_000)
        client.admin.command("ping")
        imgs = tmp_path / "imgs"
        imgs.mkdir()
        for f in sorted(SAMPLE.glob("*.jpg"))[:10]:
            shutil.copy2(f, imgs / f.name)
        envv = {
            k: v for k, v in os.environ.items() if k not in ("FIFTYONE_DATABASE_DIR", "FIFTYONE_PRIVATE_DATABASE_PORT")
        }
        envv["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "curate",
                "score",
                str(imgs),
                "--model",
                str(model),
                "--dataset",
                "team",
                "--no-audits",
                "--quiet",
            ],
            env=envv,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "added 10" in r.stdout
        db = client["fiftyone"]
        ds_doc = db["datasets"].find_one({"name": "team"})
        assert ds_doc is not None
        assert db[ds_doc["sample_collection_name"]].count_documents({}) == 10
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.browser
def test_app_shows_a_saved_view_in_headless_chromium(flagged, fo, tmp_path):
    import re

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium) and could not be here")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright python package is not installed")
    name, _ = flagged
    ds = fo.load_dataset(name)
    expected = len(ds.load_saved_view("suspect-age"))
    assert expected > 0
    shot = tmp_path / "app.png"
    with serve_app(name, "suspect-age", tmp_path / "app.log") as port:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            media: set[str] = set()
            page.on("response", lambda r: media.add(r.url) if "/media?" in r.url and r.ok else None)
            page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
            count = None
            t1 = time.time()
            while time.time() - t1 < 300:
                m = re.search(r"([\d,]+)\s+samples?\b", page.inner_text("body"))
                if m and len(media) >= expected:
                    count = int(m.group(1).replace(",", ""))
                    break
                time.sleep(2)
            dismiss = page.get_by_text("Dismiss")
            if dismiss.count():
                dismiss.first.click()
            time.sleep(1)
            page.screenshot(path=str(shot))
            browser.close()
        assert count == expected, f"grid shows {count} samples, view has {expected}"
        assert len(media) >= expected and all("sample" in u for u in media)
        assert shot.stat().st_size > 10_000
        if os.environ.get("CURATE_UPDATE_SCREENSHOT"):
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copy2(shot, REPO / "docs" / "app_screenshot.png")


def test_an_integer_audit_column_with_a_gap_is_not_a_schema_change(fo, env):
    """exact_group is stored as int; a later table where one row lacks it (pandas: float + NaN) updates fine."""
    from curate.fo_dataset import ingest
    from curate.fo_inputs import folder_manifest, join_inputs
    from curate.fo_schema import open_dataset

    man, _ = folder_manifest(SAMPLE, progress=False)
    man = man.head(6).reset_index(drop=True)
    audit = man[["path", "content_hash"]].assign(exact_group=[-1, -1, 3, 3, -1, -1], status="ok")
    ds = open_dataset(fo, f"t-int-{uuid.uuid4().hex[:6]}")
    ingest(fo, ds, join_inputs(man, None, audit), audit_version="a1")
    assert type(ds.get_field_schema()["exact_group"]).__name__ == "IntField"
    audit2 = audit.assign(exact_group=[-1.0, float("nan"), 3.0, 3.0, -1.0, 7.0])
    c = ingest(fo, ds, join_inputs(man, None, audit2), audit_version="a1")
    assert c["updated"] == {"audits": 2} and c["added"] == 0
    by_name = dict(zip(ds.values("filename"), ds.values("exact_group")))
    assert by_name[man.at[1, "filename"]] is None and by_name[man.at[5, "filename"]] == 7
    bad = audit.assign(exact_group=[0.5, 1, 1, 1, 1, 1])  # a real float is a schema change: refused
    from curate.fo_schema import SchemaError

    with pytest.raises(SchemaError, match="exact_group is IntField, expected FloatField"):
        ingest(fo, ds, join_inputs(man, None, bad), audit_version="a1")
    ds.delete()


def test_fast_insert_stores_exactly_what_add_samples_stores(fo, env, monkeypatch):
    """The default insert path writes documents itself; FiftyOne must read them back identically."""
    import numpy as np

    from curate.fo_dataset import ingest
    from curate.fo_inputs import folder_manifest, join_inputs
    from curate.fo_schema import open_dataset

    man, _ = folder_manifest(SAMPLE, progress=False)
    man = man.head(8).reset_index(drop=True)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 2))
    pred = man[["path", "content_hash"]].assign(
        age_pred=rng.uniform(1, 80, 8),
        gender_prob=1 / (1 + np.exp(logits[:, 0] - logits[:, 1])),
        gender_logit_0=logits[:, 0],
        gender_logit_1=logits[:, 1],
        age_abs_error=1.0,
        gender_loss=0.5,
        embedding=list(rng.normal(size=(8, 576)).astype(np.float32)),
        model="abc",
    )
    audit = man[["path", "content_hash"]].assign(
        low_quality=[True, False] * 4,
        low_quality_reason="blurry",
        ita=rng.normal(size=8),
        monk_tone=list(range(8)),
        status="ok",
    )
    table = join_inputs(man, pred, audit)
    pred2 = pred.assign(age_pred=pred["age_pred"] + 1, model="def")  # then the predictions change
    pred2.loc[2, ["age_pred", "gender_prob", "gender_logit_0", "gender_logit_1"]] = np.nan
    table2 = join_inputs(man, pred2, audit)
    out = {}
    for mode in ("fast", "add_samples"):
        monkeypatch.setenv("CURATE_FO_INSERT", mode)
        ds = open_dataset(fo, f"t-{mode}-{uuid.uuid4().hex[:6]}")
        assert ingest(fo, ds, table, audit_version="v")["added"] == 8
        # row 2 has no prediction in the new file: it keeps the stored one
        assert ingest(fo, ds, table2, audit_version="v")["updated"] == {"predictions": 7}
        out[mode] = ds
    assert out["fast"].count("age_pred") == 8 and out["fast"].count_values("model") == {"def": 7, "abc": 1}
    a, b = out["fast"], out["add_samples"]
    assert a.get_field_schema().keys() == b.get_field_schema().keys()
    skip = {"id", "created_at", "last_modified_at", "scored_at"}
    for sa, sb in zip(a.sort_by("filepath"), b.sort_by("filepath")):
        da, db = sa.to_dict(), sb.to_dict()
        for k in set(da) | set(db):
            if k in skip or k.startswith("_"):
                continue
            va, vb = da.get(k), db.get(k)
            if isinstance(va, dict):
                va = {x: y for x, y in va.items() if x != "_id"}
                vb = {x: y for x, y in vb.items() if x != "_id"}
            assert va == vb, k
        assert np.array_equal(sa.embedding, sb.embedding) and sa.embedding.dtype == np.float32
        assert np.allclose(sa.gender_pred.logits, sb.gender_pred.logits)
    assert len(a.take(3, seed=1)) == 3
    # the stored documents have the same layout (FiftyOne's private keys included)
    ra, rb = a._sample_collection.find_one(), b._sample_collection.find_one()
    assert set(ra) == set(rb) and {type(ra[k]) for k in ra} == {type(rb[k]) for k in rb}
    assert set(ra["gender_pred"]) == set(rb["gender_pred"]) and 0.999 <= ra["_rand"] <= 1.0
    for ds in (a, b):
        ds.delete()


def test_a_partial_predictions_file_does_not_erase_stored_predictions(fo, env):
    import numpy as np

    from curate.fo_dataset import ingest
    from curate.fo_inputs import folder_manifest, join_inputs
    from curate.fo_schema import open_dataset

    man, _ = folder_manifest(SAMPLE, progress=False)
    man = man.head(6).reset_index(drop=True)

    def preds(rows, shift):
        p = man.iloc[rows][["path", "content_hash"]].reset_index(drop=True)
        return p.assign(
            age_pred=np.arange(len(p)) + shift,
            gender_prob=0.3,
            gender_logit_0=0.5,
            gender_logit_1=-0.3,
            embedding=list(np.ones((len(p), 576), np.float32)),
            model=f"m{shift}",
        )

    ds = open_dataset(fo, f"t-partial-{uuid.uuid4().hex[:6]}")
    ingest(fo, ds, join_inputs(man, preds(range(6), 10), None))
    c = ingest(fo, ds, join_inputs(man, preds(range(3), 50), None))  # a file covering half the images
    assert c["updated"] == {"predictions": 3}
    got = dict(zip(ds.values("filename"), ds.values("model")))
    assert [got[f] for f in man["filename"]] == ["m50"] * 3 + ["m10"] * 3
    assert ds.count("age_pred") == 6
    ds.delete()


def test_schema_1_dataset_is_upgraded_in_place_keeping_every_decision(flagged, fo, sample_split, tmp_path):
    """A dataset written before the one schema (old field names, schema_version 1) with review decisions
    is upgraded when opened: every decision stays, and `curate export` gives the same split as from a
    dataset that was always on the new schema."""
    from core.schema import RENAMED_FROM_V1, RENAMED_FROM_V1_FIFTYONE

    name, _ = flagged
    src = fo.load_dataset(name)
    ids = src.values("id")
    new, old = src.clone(f"{name}-v2", persistent=True), src.clone(f"{name}-v1", persistent=True)
    try:
        for ds in (new, old):
            ds.select(ids[:2]).tag_samples("confirmed:mislabel")
            ds.select(ids[2:3]).tag_samples("exclude")
            ds.select(ids[3:4]).tag_samples("confirmed:ok")
            ds.set_values("age_corrected", {ids[0]: 71}, key_field="id")
            ds.set_values("gender_corrected", {ids[1]: "female"}, key_field="id")
        back = {n: o for o, n in {**RENAMED_FROM_V1, **RENAMED_FROM_V1_FIFTYONE}.items()}
        have = set(old.get_field_schema())
        for n, o in back.items():
            if n in have and n != "age_group":  # FiftyOne always called it age_group
                old.rename_sample_field(n, o)
        old.info["curate"]["schema_version"] = 1
        old.save()
        assert "gender_issue_score" in old.get_field_schema() and "gender_flip_prob" not in old.get_field_schema()

        out = {}
        for ds in (new, old):
            res = run(
                "export",
                "--dataset",
                ds.name,
                "--from",
                sample_split / "train_8_folds_first",
                "--root",
                tmp_path,
                "--name",
                ds.name,
                "--drop-suspects",
                "--drop-low-quality",
                "--quiet",
            )
            out[ds.name] = pd.read_csv(tmp_path / ds.name / "manifest.csv").drop(columns=["split"], errors="ignore")
            assert res.exit_code == 0
        old.reload()
        assert old.info["curate"]["schema_version"] == 2 and old.info["curate"]["upgrades"][-1]["from"] == 1
        schema = set(old.get_field_schema())
        assert {"gender_flip_prob", "is_gender_label_issue", "is_low_quality_issue", "model"} <= schema
        assert not {"gender_issue_score", "gender_suspect", "low_quality", "pred_model"} & schema
        for f in ("tags", "age_corrected", "gender_corrected"):
            assert old.values(f) == new.values(f), f
        assert out[old.name].equals(out[new.name]) and len(out[new.name]) > 0
    finally:
        fo.delete_dataset(new.name)
        fo.delete_dataset(old.name)


def test_a_service_on_another_database_dir_is_refused(fo, tmp_path):
    """FiftyOne reuses whatever database service runs on the machine; curate checks the folder it serves.
    This test process's service is running (the `fo` fixture): a command configured for another folder
    must refuse it in one line instead of reading and writing this database."""
    other = tmp_path / "other-db"
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(other)}
    env.pop("FIFTYONE_DATABASE_URI", None)
    curate = str(Path(sys.executable).parent / "curate")
    res = subprocess.run([curate, "review-status", "--dataset", "nope"], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"not the configured database_dir {other.resolve()}" in res.stderr and "Traceback" not in res.stderr
    assert not other.exists() or not any(other.iterdir()), "nothing may be written for the other folder"


def test_two_scores_at_once_leave_one_sample_per_file(model, env, fo):
    """Two `curate score` processes on one new dataset: the unique filepath index refuses the second
    insert of a file, and the loser writes only what is missing; both succeed."""
    name = f"t-race-{uuid.uuid4().hex[:6]}"
    curate = str(Path(sys.executable).parent / "curate")
    # (samples only: two brain runs at once are not coordinated, so this race leaves them out)
    cmd = [curate, "score", str(SAMPLE), "--model", str(model), "--dataset", name, "--no-brain", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    try:
        assert [p.returncode for p in procs] == [0, 0], outs
        ds = fo.load_dataset(name)
        usable, _ = usable_sample()
        assert len(ds) == len(usable) == len(set(ds.values("filepath")))
        assert ds.get_index_information()["filepath"].get("unique")
    finally:
        fo.delete_dataset(name)


def test_duplicate_samples_are_merged_keeping_every_decision(model, env, fo):
    """A dataset holding two samples of one file (what two runs at once left before the unique index):
    the next `curate score` merges them, keeping the review tags and corrections of both."""
    name = f"t-dups-{uuid.uuid4().hex[:6]}"
    ds = fo.Dataset(name, persistent=True)  # as an older curate left it: marked, no unique index
    ds.info["curate"] = {"schema_version": 2, "runs": [], "fields": {}}
    ds.save()
    path = str(sorted(SAMPLE.glob("*.jpg"))[0].resolve())
    first = fo.Sample(filepath=path, tags=["confirmed:ok"])
    ds.add_sample(first)
    dup = fo.Sample(filepath=path, tags=["exclude"])
    dup["gender_corrected"] = "female"
    ds.add_sample(dup)
    assert len(ds) == 2 and not ds.get_index_information()["filepath"].get("unique")
    import logging

    said: list[str] = []
    catch = logging.Handler()
    catch.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("fiftyone.core.collections").addHandler(catch)
    try:
        run("score", SAMPLE, "--model", model, "--dataset", name, "--quiet")
        assert not [m for m in said if "Converting existing index" in m], said  # FiftyOne's chatter, not news
        ds.reload()
        usable, _ = usable_sample()
        assert len(ds) == len(usable) == len(set(ds.values("filepath")))
        kept = ds.one(fo.ViewField("filepath") == path)
        assert set(kept.tags) == {"confirmed:ok", "exclude"} and kept.gender_corrected == "female"
        assert kept.id == first.id and ds.get_index_information()["filepath"].get("unique")
    finally:
        logging.getLogger("fiftyone.core.collections").removeHandler(catch)
        fo.delete_dataset(name)


def _predictions(ds, age, prob, path: Path) -> Path:
    """A predictions table in the shared schema for every sample of `ds` (one model, fold -1)."""
    import numpy as np

    prob = np.clip(np.asarray(prob, float), 1e-3, 1 - 1e-3)
    pd.DataFrame({"path": ds.values("filepath"), "content_hash": ds.values("content_hash"), "age_pred": age,
                  "gender_prob": prob, "gender_logit_0": np.log1p(-prob), "gender_logit_1": np.log(prob),
                  "model": path.stem, "fold": -1}).to_parquet(path)  # fmt: skip
    return path


def test_suspects_from_a_model_no_better_than_chance_are_not_tagged(scored, fo, tmp_path):
    """Random predictions (a model that learned nothing): on a dataset never flagged every label is scored, none
    is tagged, and flag-mislabels and review-status say why. Once it holds flags from a model that learned,
    random predictions write nothing (those flags stay) unless --allow-weak-model."""
    import numpy as np

    src = fo.load_dataset(scored[0])
    ds = src.clone(f"{src.name}-weak", persistent=True)
    try:
        ds.info["curate"].pop("model_checks", None)  # as never flagged
        ds.save()
        rng = np.random.default_rng(0)
        random = _predictions(ds, rng.uniform(20, 50, len(ds)), rng.random(len(ds)), tmp_path / "random.parquet")
        res = run("flag-mislabels", "--dataset", ds.name, "--predictions", random, "--quiet")
        assert "not clearly better: its suspects are not tagged" in res.output
        assert "suspect:gender 0, suspect:age 0" in res.output
        ds.reload()
        assert ds.count("gender_label_score") == len(ds) and not ds.match_tags(["suspect:gender", "suspect:age"])
        res = run("review-status", "--dataset", ds.name, "--csv", tmp_path / "d.csv")
        assert "gender accuracy" in res.output and "not clearly better" in res.output
        # a model that learned (the labels, three genders turned): its flags are not replaced by random ones
        female = np.array(ds.values("gender.label")) == "female"
        female[:3] = ~female[:3]
        ages = np.array(ds.values("age.value"), float) + rng.normal(0, 3, len(ds))
        good = _predictions(ds, ages, np.where(female, 0.95, 0.05), tmp_path / "good.parquet")
        res = run("flag-mislabels", "--dataset", ds.name, "--predictions", good, "--top-k", "3", "--quiet")
        assert "clearly better" in res.output and "suspect:gender 3" in res.output
        ds.reload()
        before = (ds.values("tags"), ds.values("gender_label_score"))
        res = run("flag-mislabels", "--dataset", ds.name, "--predictions", random, "--quiet", ok=False)
        assert res.exit_code == 1 and "nothing is written" in res.output and "keeps its flags" in res.output
        assert f"--set weights={REPO / 'curate' / 'models' / 'default.pt'}," in res.output  # usable from any folder
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
        ds.reload()
        assert (ds.values("tags"), ds.values("gender_label_score")) == before
        res = run("flag-mislabels", "--dataset", ds.name, "--predictions", random,
                  "--allow-weak-model", "--top-k", "3", "--quiet")  # fmt: skip
        assert "suspect:gender 3, suspect:age 3" in res.output
    finally:
        fo.delete_dataset(ds.name)


def test_a_failed_score_leaves_no_dataset_and_an_empty_one_is_named(env, fo, sample_split, tmp_path):
    """score with a manifest that is not there creates nothing; a dataset with no samples (left by a score that
    failed before this check existed) gets one line naming it from every command that reads it."""
    name = f"t-fail-{uuid.uuid4().hex[:6]}"
    res = run("score", "--manifest", tmp_path / "nosplit" / "folds.csv", "--dataset", name, "--quiet", ok=False)
    assert res.exit_code == 1 and "manifest not found" in res.output and not fo.dataset_exists(name)
    fo.Dataset(name, persistent=True)
    try:
        export = ["export", "--dataset", name, "--from", sample_split / "train_8_folds_first", "--root", tmp_path]
        for args in (["flag-mislabels", "--dataset", name], ["review-status", "--dataset", name], export):
            res = run(*args, ok=False)
            assert res.exit_code == 1 and f"dataset {name!r} has no samples: run `curate score" in res.output, args
            assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    finally:
        fo.delete_dataset(name)


def test_export_checks_the_flags_it_acts_on(flagged, fo, sample_split, tmp_path):
    """export --dataset refuses a split whose images the dataset does not hold (e.g. the originals of an aligned
    dataset: none of its flags would apply), warns when samples or labels changed since flag-mislabels, and a
    suspect policy on a dataset never flagged is an error, not an export that removed nothing."""
    import numpy as np

    train = sample_split / "train_8_folds_first"
    ds = fo.load_dataset(flagged[0]).clone(f"{flagged[0]}-chk", persistent=True)
    try:
        female = np.array(ds.values("gender.label")) == "female"  # flags of its own, whatever other tests did
        good = _predictions(ds, ds.values("age.value"), np.where(female, 0.9, 0.1), tmp_path / "good.parquet")
        run("flag-mislabels", "--dataset", ds.name, "--predictions", good, "--top-k", "3", "--quiet")
        man = pd.read_csv(train / "manifest.csv", dtype={"content_hash": str}).head(12)
        (tmp_path / "other" / "imgs").mkdir(parents=True)
        for i, p in enumerate(man["path"]):
            shutil.copy(p, tmp_path / "other" / "imgs" / f"face_{i}.jpg")
        man["filename"] = [f"face_{i}.jpg" for i in range(len(man))]
        man["path"] = [str(tmp_path / "other" / "imgs" / f) for f in man["filename"]]
        man.to_csv(tmp_path / "other" / "manifest.csv", index=False)
        args = ["export", "--dataset", ds.name, "--root", tmp_path, "--mask-suspects"]
        res = run(*args, "--from", tmp_path / "other", "--name", "x", ok=False)
        assert (
            res.exit_code == 1
            and f"12 of the 12 images of {tmp_path / 'other'} are not in FiftyOne dataset" in res.output
        )
        assert not (tmp_path / "x").exists()
        same_names = pd.read_csv(train / "manifest.csv", dtype={"content_hash": str}).head(12)
        same_names["content_hash"] = [f"{i:032x}" for i in range(12)]  # other pixels under the same names (aligned)
        (tmp_path / "same_names").mkdir()
        same_names.to_csv(tmp_path / "same_names" / "manifest.csv", index=False)
        res = run(*args, "--from", tmp_path / "same_names", "--name", "x", ok=False)
        assert res.exit_code == 1 and "12 of the 12 images" in res.output and "by file name and pixels" in res.output
        res = run(*args, "--from", tmp_path / "other", "--name", "x", "--allow-missing")
        assert "their labels are exported unflagged" in res.output and (tmp_path / "x" / "manifest.csv").exists()
        assert "changed since" not in res.output
        sample = ds.first()
        sample["age"].value += 7  # a label edited after flag-mislabels
        sample.save()
        res = run("review-status", "--dataset", ds.name, "--csv", tmp_path / "d.csv")
        assert (
            f"dataset {ds.name!r} changed since `curate flag-mislabels`" in res.output
            and "labels changed" in res.output
        )
        res = run(*args, "--from", train, "--name", "y")
        assert "changed since `curate flag-mislabels`" in res.output and "re-run flag-mislabels" in res.output
        ds.info["curate"].pop("model_checks")  # as never flagged
        ds.save()
        res = run(*args, "--from", train, "--name", "z", ok=False)
        assert res.exit_code == 1 and f"--mask-suspects: dataset {ds.name!r} has no flags yet" in res.output
    finally:
        fo.delete_dataset(ds.name)


def test_app_on_a_busy_port_fails_in_one_line(scored, tmp_path):
    """Another program holds the port: one line saying so, no server started, no page of tracebacks."""
    import socket

    name, _ = scored
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        curate = str(Path(sys.executable).parent / "curate")
        res = subprocess.run([curate, "app", "--dataset", name, "--port", str(port), "--address", "127.0.0.1"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 1 and f"port {port} on 127.0.0.1 is in use by another program" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and len((res.stderr + res.stdout).strip().splitlines()) <= 2


def test_export_masks_the_estimated_number_of_wrong_genders(flagged, fo, sample_split, tmp_path):
    """flag-mislabels stores the confident-joint estimate of wrong gender labels with its score threshold;
    `export --mask-suspects --gender-max-score estimated` masks the labels at or under it (reviewed ones
    excepted), drops no unreviewed image, and says where the threshold came from."""
    import numpy as np
    from cleanlab.count import num_label_issues

    name, _ = flagged
    # flagged again here: another test in this module re-flags the dataset from a model no better than chance
    out = run("flag-mislabels", "--dataset", name, "--oos", "crossfit", "--full", *TINY, "--top-k", "5",
              "--allow-weak-model", "--quiet").output  # fmt: skip
    ds = fo.load_dataset(name)
    est = ds.info["curate"]["gender_errors"]
    assert f"estimated wrong gender labels: {est['count']} of {len(ds)}" in out
    g = np.array([["male", "female"].index(x) for x in ds.values("gender.label")])
    conf, pred = np.array(ds.values("oos_gender_pred.confidence")), ds.values("oos_gender_pred.label")
    p = np.where(np.array(pred) == "female", conf, 1 - conf)  # P(female)
    assert est["count"] == num_label_issues(g, np.column_stack([1 - p, p])) > 0
    scores = dict(zip(ds.values("filename"), ds.values("gender_label_score")))
    assert sum(s <= est["max_score"] for s in scores.values()) == est["count"]
    train = sample_split / "train_8_folds_first"
    args = ["export", "--dataset", name, "--from", train, "--root", tmp_path, "--mask-suspects"]
    res = run(*args, "--name", "masked", "--gender-max-score", "estimated")
    assert f"--gender-max-score estimated = {est['max_score']:.4g}: {est['count']} wrong gender labels" in res.output
    man = pd.read_csv(tmp_path / "masked" / "manifest.csv")
    src = pd.read_csv(train / "manifest.csv")
    tags = dict(zip(ds.values("filename"), ds.values("tags")))
    reviewed = {f for f, t in tags.items() if {"exclude", "confirmed:mislabel", "confirmed:ok"} & set(t or [])}
    for field in ("age_corrected", "gender_corrected"):  # a correction is a decision too (other tests make some)
        reviewed |= {f for f, v in zip(ds.values("filename"), ds.values(field)) if v is not None}
    assert set(src["filename"]) - set(man["source_filename"]) <= reviewed  # masking drops nothing
    masked = set(man.loc[man["gender_label_weight"] == 0, "source_filename"])
    low = {f for f in src["filename"] if scores.get(f, 1) <= est["max_score"]} - reviewed
    assert masked >= low and len(low) > 0
    assert "estimated by flag-mislabels" in (tmp_path / "masked" / "EXPORT.md").read_text()
    # policy (m): as many ages as --age-max-score picks, the highest age_two_sided_z (stored by flag-mislabels)
    both = ["--gender-max-score", "estimated", "--age-max-score", "0.05"]
    run(*args, "--name", "wide", *both)
    run(*args, "--name", "two_sided", *both, "--age-rank", "two-sided")
    two_man = pd.read_csv(tmp_path / "two_sided" / "manifest.csv")
    ages = lambda m: set(m.loc[m["age_label_weight"] == 0, "source_filename"])  # noqa: E731
    z = dict(zip(ds.values("filename"), ds.values("age_two_sided_z")))
    z = {f: z[f] for f in set(src["filename"]) - reviewed if z.get(f) is not None}
    two = ages(two_man)
    assert len(two) == len(ages(pd.read_csv(tmp_path / "wide" / "manifest.csv"))) > 0 and two <= set(z)
    assert min(z[f] for f in two) >= max(v for f, v in z.items() if f not in two)
    got = two_man.set_index("source_filename")["age_two_sided_z"]  # carried into the manifest, as in FiftyOne
    assert all(abs(got[f] - v) < 1e-9 for f, v in z.items())
    # --auto-clean is the long form in one option: the same rows, labels and weights
    auto = run(*[a for a in args if a != "--mask-suspects"], "--name", "auto", "--auto-clean")
    assert f"--gender-max-score estimated = {est['max_score']:.4g}" in auto.output
    auto_man = pd.read_csv(tmp_path / "auto" / "manifest.csv")
    cols = ["source_filename", "age", "gender", "age_label_weight", "gender_label_weight"]
    assert auto_man[cols].equals(two_man[cols])
    assert "--auto-clean after one cross-fit round: policy m" in auto.output  # p needs --rounds 2: said
    assert "policy m of docs/cleaning_payoff.md" in (tmp_path / "auto" / "EXPORT.md").read_text()
    clash = run(*args, "--name", "y", "--auto-clean", ok=False)  # its own options given too: say, do not guess
    assert clash.exit_code != 0 and "--auto-clean is --mask-suspects --gender-max-score estimated" in clash.output
    assert "to change --mask-suspects" in clash.output and not (tmp_path / "y").exists()
    flags = ["--flags", tmp_path / "masked" / "manifest.csv"]
    bad = run(*args[:1], *args[3:], *flags, "--name", "x", "--gender-max-score", "estimated", ok=False)
    assert bad.exit_code != 0 and "--gender-max-score estimated needs --dataset" in bad.output


def test_a_second_round_cross_fits_on_the_labels_the_first_estimates_wrong(scored, fo, sample_split, tmp_path):
    """`flag-mislabels --rounds 2`: round 1's estimated wrong genders and its age suspects get weight 0 in
    round 2's fold manifests (a label reviewed ok never, an excluded image always), round 2's predictions
    are the ones stored, and review-status says so; without --allow-weak-model a chance-level round 1
    masks nothing and round 2 is not run."""
    import numpy as np

    name, _ = scored
    clone = f"t-rounds-{uuid.uuid4().hex[:6]}"
    ds = fo.load_dataset(name).clone(clone)
    try:
        ds.untag_samples(["confirmed:mislabel", "confirmed:ok", "exclude"])
        for field in ("age_corrected", "gender_corrected"):
            if field in ds.get_field_schema():
                ds.set_values(field, [None] * len(ds))
        cf = tmp_path / "crossfit"
        base = ["flag-mislabels", "--dataset", clone, "--oos", "crossfit", "--full", *TINY, "--crossfit-dir", cf,
                "--top-k", "5", "--allow-weak-model", "--quiet"]  # fmt: skip
        run(*base)
        # the fold models train on today's defaults (L1 1e-6), not the reference run's 1e-4 that pruned them
        meta = json.loads((cf / "fold_0" / "run" / "metadata.json").read_text())
        assert meta["config"]["l1_lambda"] == TrainConfig().l1_lambda == 1e-6 and meta["config"]["image_size"] == 64
        ds.reload()
        est = ds.info["curate"]["gender_errors"]
        score = {p: s for p, s in zip(ds.values("filepath"), ds.values("gender_label_score")) if s is not None}
        age_sus = {p for p, t in zip(ds.values("filepath"), ds.values("tags")) if "suspect:age" in t}
        conf1 = dict(zip(ds.values("filepath"), ds.values("oos_gender_pred.confidence")))
        low = {p for p, s in score.items() if s <= est["max_score"]}
        ok_path, out_path = min(score, key=score.get), max(score, key=score.get)
        assert ok_path in low and out_path not in low and est["count"] == len(low) > 1
        ds.select_by("filepath", [ok_path]).tag_samples("confirmed:ok")
        ds.select_by("filepath", [out_path]).tag_samples("exclude")

        res = run(*base, "--rounds", "2")
        assert f"round 2: {len(low)} gender and {len(age_sus - {ok_path} | {out_path})} age labels masked" in res.output
        (r2,) = cf.glob("round_2-*")  # named by the masked labels
        man = pd.concat([pd.read_csv(f) for f in sorted(r2.glob("fold_*/holdout.csv"))])
        assert len(man) == len(ds) and set(man["path"]) == set(score)
        masked_g = set(man.loc[man["gender_label_weight"] == 0, "path"])
        masked_a = set(man.loc[man["age_label_weight"] == 0, "path"])
        assert masked_g == (low - {ok_path}) | {out_path}
        assert masked_a == (age_sus - {ok_path}) | {out_path}
        ds.reload()
        conf2 = dict(zip(ds.values("filepath"), ds.values("oos_gender_pred.confidence")))
        assert np.mean([abs(conf2[p] - conf1[p]) > 1e-6 for p in conf1]) > 0.5  # round 2's models scored them
        status = run("review-status", "--dataset", clone, "--out", tmp_path / "d.csv").output
        assert "round 2 (the labels round 1 estimates wrong masked)" in status
        auto = run("export", "--dataset", clone, "--from", sample_split / "train_8_folds_first", "--root", tmp_path,
                   "--name", "auto", "--auto-clean")  # fmt: skip
        assert "policy m" not in auto.output  # two rounds: the recommended policy p, nothing to warn of
        assert "--auto-clean after 2 cross-fit rounds: policy p" in (tmp_path / "auto" / "EXPORT.md").read_text()

        # a review after a two-round run changes the masks: the next run cross-fits them in a folder of their own
        ds.select_by("filepath", [ok_path]).untag_samples("confirmed:ok")
        again = run(*base, "--rounds", "2").output
        assert f"round 2: {len(low) + 1} gender" in again and len(list(cf.glob("round_2-*"))) == 2
        weak = run(*[a for a in base if a != "--allow-weak-model"], "--rounds", "2")
        assert "round 2 not run: a first-round fold model is no better than the majority gender" in weak.output
        bad = run("flag-mislabels", "--dataset", clone, "--predictions", cf / "predictions.parquet", "--rounds", "2",
                  ok=False)  # fmt: skip
        assert bad.exit_code != 0 and "not with --predictions" in bad.output
    finally:
        fo.delete_dataset(clone)


def test_export_from_a_dataset_takes_its_split_and_its_skin_tones(
    model, env, fo, scored, sample_split, tmp_path, monkeypatch
):
    """`export --dataset` without --from exports the split the dataset was scored from (not the repository's
    default split), and --oversample balances the skin tones the dataset's audit measured without --audits."""
    train = sample_split / "train_8_folds_first"
    name = f"t-split-{uuid.uuid4().hex[:6]}"
    try:
        args = ["--model", model, "--dataset", name, "--no-brain", "--quiet"]
        run("score", "--manifest", sample_split / "folds.csv", *args)  # as README's own-dataset lines do
        res = run("export", "--dataset", name, "--root", tmp_path, "--name", "c", "--oversample", "--max-factor", "2")
        assert f"--from {train}: the training split of what dataset {name!r} was scored from" in res.output
        assert "no skin tones" not in res.output
        summary = json.loads((tmp_path / "c" / "export.json").read_text())
        src = pd.read_csv(train / "manifest.csv")
        assert summary["n_source"] == len(src) and summary["skin_tones_from"] == f"FiftyOne dataset {name}"
        assert summary["oversampled"]["plan"]["dims"] == ["age_group", "skin_category"]
        skin = dict(zip(*fo.load_dataset(name).values(["filename", "skin_category"])))
        over = pd.read_csv(tmp_path / "c_oversampled" / "manifest.csv")
        orig = over[over["generated"] != True]  # noqa: E712
        assert len(orig) == len(src) and len(over) > len(src)
        got = orig["skin_category"].fillna("unknown").tolist()
        assert [skin[f] or "unknown" for f in orig["source_filename"]] == got
        res = run("export", "--dataset", name, "--from", train, "--root", tmp_path, "--name", "d", "--quiet")
        assert "--from" not in res.output  # given: nothing to say
        run("score", "--manifest", train, *args)  # a split folder itself
        res = run("export", "--dataset", name, "--root", tmp_path, "--name", "e")
        assert f"--from {train}: the training split" in res.output and (tmp_path / "e" / "manifest.csv").exists()
        monkeypatch.chdir(tmp_path)  # no dataset/train_8_folds_first here
        res = run("export", "--dataset", scored[0], "--root", tmp_path, "--name", "f", ok=False)  # scored: a folder
        said = f"dataset {scored[0]!r} was scored from {SAMPLE}, which is not a split here"
        assert res.exit_code == 1 and said in res.output
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
