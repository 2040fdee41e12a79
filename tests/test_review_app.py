"""Review in the FiftyOne App: the plugin's decisions clicked in headless Chromium, and the writer behind them.

The browser test fails when the plugin is not loaded (its buttons are what it clicks). Everything the App
stores is checked from Python, then read back by `curate review-status` and obeyed by `curate export`;
re-running `curate score` and `curate flag-mislabels` afterwards must leave every decision as it was.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import fo_common
import pandas as pd
import pytest
from fo_common import CHROMIUM_ARGS, SAMPLE, TINY, run, serve_app

env, model, fo, scored, flagged = fo_common.env, fo_common.model, fo_common.fo, fo_common.scored, fo_common.flagged
pytestmark = pytest.mark.timeout(1200)
PLUGIN = "@utkface-curate/review"
REVIEW_STATE = ("tags", "age_corrected", "gender_corrected", "reviewed_by", "reviewed_at", "review_log")


def _target(ds):
    """A train-split suspect whose suggested correction differs from its label (what the test accepts), with
    no pixel-identical copy (the export is checked by content hash)."""
    from fiftyone import ViewField as F

    from core.manifest import TRAIN_SPLIT
    from curate.fo_decide import prefill

    copies = ds.count_values("content_hash")
    for s in ds.match_tags(["suspect:gender", "suspect:age"]).match(F("split") == TRAIN_SPLIT):
        if copies[s.content_hash] > 1:
            continue
        fill = prefill(s)
        if fill["gender"] != s.gender.label or fill["age"] != round(s.age.value):
            return s, fill
    raise AssertionError("no suspect with a suggested correction among the flagged samples")


def _state(ds, ids) -> dict:
    view = ds.select(ids)
    rows = zip(view.values("id"), zip(*view.values(list(REVIEW_STATE))))
    return {i: (sorted(v[0]), *v[1:]) for i, v in rows}  # tag order is not a decision


# ------------------------------------------------------------------------- the one decision writer
def test_decisions_replace_each_other_are_idempotent_and_logged(flagged, fo, monkeypatch):
    from curate.fo_decide import Decision, apply, current, mislabel
    from curate.fo_review import ReviewError, decisions

    name, _ = flagged
    ds = fo.load_dataset(name)
    s, fill = _target(ds)
    monkeypatch.setenv("CURATE_REVIEWER", "alice")
    d = mislabel(s, age=fill["age"], gender=fill["gender"])
    assert d.kind == "mislabel" and (d.gender is not None or d.age is not None)
    assert apply(ds, {s.id: d}) == {"changed": 1, "unchanged": 0}
    s.reload()
    assert "confirmed:mislabel" in s.tags and current(s) == d and s.reviewed_by == "alice"
    first_at = s.reviewed_at
    assert apply(ds, {s.id: d}, by="bob") == {"changed": 0, "unchanged": 1}  # idempotent: nothing moves
    s.reload()
    assert s.reviewed_by == "alice" and s.reviewed_at == first_at and len(s.review_log) == 1
    apply(ds, {s.id: Decision("ok")}, by="bob")  # a new decision replaces the old one entirely
    s.reload()
    assert "confirmed:ok" in s.tags and "confirmed:mislabel" not in s.tags
    assert s.age_corrected is None and s.gender_corrected is None and s.reviewed_by == "bob"
    assert any(t.startswith("suspect:") for t in s.tags)  # candidate tags are never touched
    apply(ds, {s.id: Decision("pending")}, by="bob")
    s.reload()
    assert current(s) == Decision("pending") and s.reviewed_at is None
    assert [e["decision"] for e in s.review_log] == ["mislabel", "ok", "pending"]  # undone, still on record
    assert s.id not in set(decisions(ds)["id"])
    for bad in (lambda: Decision("maybe"), lambda: Decision("ok", age=3), lambda: mislabel(s, age=200),
                lambda: mislabel(s, age="3.5"), lambda: Decision("mislabel", gender="other")):  # fmt: skip
        with pytest.raises(ReviewError):
            bad()
    with pytest.raises(ReviewError, match="not in"):
        apply(ds, {"0" * 24: Decision("ok")})


def test_next_pending_follows_the_view_order_and_skips_decided(flagged, fo):
    from curate.fo_decide import Decision, apply
    from curate.review_card import next_pending

    name, _ = flagged
    ds = fo.load_dataset(name)
    view = ds.load_saved_view("review-queue")
    ids = view.values("id")
    assert len(ids) >= 4
    apply(ds, {ids[1]: Decision("exclude")})
    try:
        assert next_pending(view, ids[0]) == ids[2]  # the excluded one is skipped
        assert next_pending(view, ids[-1]) == ids[0]  # wraps around
    finally:
        apply(ds, {ids[1]: Decision("pending")})


def test_review_card_says_label_model_suggestion_and_why(flagged, fo):
    from curate.review_card import card_markdown, copies

    name, _ = flagged
    ds = fo.load_dataset(name)
    s, fill = _target(ds)
    text = card_markdown(s)
    assert f"**Label**: {s.age.value:.0f} y · {s.gender.label}" in text
    assert "out-of-sample, fold model" in text and "**Suggested correction**" in text
    assert (f"gender → **{fill['gender']}**" in text) or (f"age → **{fill['age']}**" in text)
    assert s.gender_label_reason in text and "**Decision**: pending" in text
    s["oos_fold"], s.tags = -1, [*s.tags, "confirmed:ok", "confirmed:mislabel"]  # in memory only, not saved
    text = card_markdown(s)
    assert "(out-of-sample, the shipped model, never trained on it)" in text and "**Decision**: conflicting" in text
    s.reload()
    from fiftyone import ViewField as F

    noface = ds.match(F("n_faces") == 0)  # the sample's crop of printed digits and its crop of one eye
    assert len(noface) >= 2 and all("**No face found**" in card_markdown(x) for x in noface)
    assert "**No face found**" not in card_markdown(s)
    worst_age = ds.match_tags("suspect:age").sort_by("age_residual_z", reverse=True).first()
    assert f"(residual z {worst_age.age_residual_z:.1f}; two-sided z {worst_age.age_two_sided_z:.1f})" in card_markdown(
        worst_age
    )
    group = ds.match_tags("suspect:gender").exists("near_group")
    dup = next((x for x in ds.exists("near_group") if x.near_group >= 0), None)
    assert dup is not None and group is not None
    members = copies(ds, dup)
    assert members and all(m["url"].startswith("/media?filepath=") for m in members)
    assert all(re.search(r": \d+ y · (male|female)", m["caption"]) for m in members)


# ------------------------------------------------------------------------------ plugin discovery
def test_plugin_is_found_by_fiftyone_and_the_users_plugins_stay(tmp_path, fo):
    from fiftyone.plugins.core import list_plugins

    from curate.fo_plugin import LINK_NAME, app_plugins_dir, plugin_source

    user = tmp_path / "user-plugins"
    (user / "mine").mkdir(parents=True)
    (user / "mine" / "fiftyone.yml").write_text('name: "@me/mine"\ntype: plugin\noperators: []\n')
    res = run("plugin", "install", "--dir", tmp_path / "fo-plugins")
    assert (tmp_path / "fo-plugins" / LINK_NAME).resolve() == plugin_source() and "linked" in res.output
    run("plugin", "install", "--dir", tmp_path / "fo-plugins")  # idempotent
    merged = app_plugins_dir(str(user), tmp_path / "cache")
    old = fo.config.plugins_dir
    try:
        for d, want in ((tmp_path / "fo-plugins", {PLUGIN}), (merged, {PLUGIN, "@me/mine"})):
            fo.config.plugins_dir = str(d)
            assert {p.name for p in list_plugins()} == want
    finally:
        fo.config.plugins_dir = old
    blocker = tmp_path / "taken"
    (blocker / LINK_NAME).mkdir(parents=True)  # a real folder of that name is never replaced
    res = run("plugin", "install", "--dir", blocker, ok=False)
    assert res.exit_code == 1 and "is not a link" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------------------------ the browser
def _wait(cond, what: str, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        assert time.perf_counter() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.perf_counter() - t0


def _open_grid(page, port: int, name: str, view: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/datasets/{name}?view={view}", timeout=300_000)
    page.wait_for_selector('[data-cy="looker"]', timeout=300_000)
    time.sleep(1)
    dismiss = page.get_by_text("Dismiss")
    if dismiss.count():
        dismiss.first.click(timeout=10_000)


@pytest.mark.slow
@pytest.mark.browser
def test_review_decisions_clicked_in_the_app_are_stored_counted_and_exported(
    flagged, fo, model, sample_split, tmp_path
):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium) and could not be here")
    from playwright.sync_api import sync_playwright

    name, _ = flagged
    ds = fo.load_dataset(name)
    for sample in ds.match_tags(["confirmed:mislabel", "confirmed:ok", "exclude"]):  # other tests' decisions
        sample.tags = [t for t in sample.tags if t not in ("confirmed:mislabel", "confirmed:ok", "exclude")]
        sample.save()
    ds.set_values("age_corrected", [None] * len(ds))
    ds.set_values("gender_corrected", [None] * len(ds))
    target, fill = _target(ds)
    tid = target.id
    one = f"t-one-{uuid.uuid4().hex[:6]}"
    ds.save_view(one, ds.select([tid]))
    lq = ds.load_saved_view("low-quality").values("id")
    bulk = [i for i in lq if i != tid][:3]
    assert len(bulk) == 3

    def stored(i):
        s = ds[i]
        s.reload()
        return s

    timings = {}
    with serve_app(name, one, tmp_path / "app.log") as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        _open_grid(page, port, name, one)
        page.locator('[data-cy="looker"]').first.click()
        modal = page.locator('[data-cy="modal"]')
        modal.wait_for(timeout=120_000)
        # "Label is wrong": the prompt is prefilled with the suggestion; accept it
        modal.locator(".material-icons", has_text=re.compile(r"^report$")).first.click()
        execute = page.get_by_text("Execute", exact=True)
        execute.wait_for(timeout=120_000)
        assert page.get_by_label(fill["gender"], exact=True).is_checked()
        execute.click()
        t0 = time.perf_counter()
        _wait(lambda: "confirmed:mislabel" in stored(tid).tags, "the mislabel decision")
        timings["label wrong"] = time.perf_counter() - t0
        s = stored(tid)
        want_g = fill["gender"] if fill["gender"] != target.gender.label else None
        want_a = fill["age"] if fill["age"] != round(target.age.value) else None
        assert (s.gender_corrected, s.age_corrected) == (want_g, want_a) and s.reviewed_at is not None
        # "Undo" removes both the tag and the correction
        time.sleep(1)
        modal.locator(".material-icons", has_text=re.compile(r"^undo$")).first.click()
        t0 = time.perf_counter()
        _wait(lambda: "confirmed:mislabel" not in stored(tid).tags, "the undo")
        timings["undo"] = time.perf_counter() - t0
        s = stored(tid)
        assert s.gender_corrected is None and s.age_corrected is None and s.reviewed_at is None
        # the panel: the sample in words, and its own buttons
        modal.locator('[data-cy="panel-tab-curate_review"], [data-cy="new-panel-btn"]').first.click()
        if not page.get_by_text("Suggested correction").count():
            page.get_by_text("Curate review", exact=True).last.click()
        t0 = time.perf_counter()
        page.get_by_text("Suggested correction").first.wait_for(timeout=60_000)
        timings["panel"] = time.perf_counter() - t0
        body = page.inner_text("body")
        assert target.filename in body and "Review queue" in body and "low-quality" in body
        page.get_by_role("button", name="Label is wrong").first.click()  # the panel's inputs hold the suggestion
        _wait(lambda: "confirmed:mislabel" in stored(tid).tags, "the panel's decision")
        s = stored(tid)
        assert (s.gender_corrected, s.age_corrected) == (want_g, want_a), "the panel stored another correction"
        page.screenshot(path=str(tmp_path / "panel.png"))
        # bulk in the grid: "Label is right" on 3 selected samples
        page.keyboard.press("Escape")
        _open_grid(page, port, name, "low-quality")
        if page.locator("#modal.modalon").count():
            page.keyboard.press("Escape")
        tiles = page.locator('[data-cy="looker"]')
        order = ds.load_saved_view("low-quality").values("id")
        for i in bulk:
            tile = tiles.nth(order.index(i))
            tile.hover()
            tile.locator('[title^="Click to select"]').first.click()
        page.locator(f'[data-item-id="{PLUGIN}/label_right_selected"]').click()
        t0 = time.perf_counter()
        _wait(lambda: all("confirmed:ok" in stored(i).tags for i in bulk), "the bulk decision")
        timings["bulk of 3"] = time.perf_counter() - t0
        browser.close()
    print("App round trips (click -> stored, s):", {k: round(v, 3) for k, v in timings.items()})

    # review-status counts what the App stored; export obeys it
    csv = tmp_path / "decisions.csv"
    res = run("review-status", "--dataset", name, "--out", csv)
    dec = pd.read_csv(csv).set_index("id")
    assert set(dec.index) == {tid, *bulk} and dec.loc[tid, "decision"] == "mislabel"
    assert set(dec.loc[bulk, "decision"]) == {"ok"}
    line = next(x for x in res.output.splitlines() if x.strip().startswith("low-quality"))
    assert line.split()[1:3] == [str(len(lq)), str(sum(i in dec.index for i in lq))]
    # an App decision survives re-scoring and re-flagging untouched
    from core.manifest import TRAIN_SPLIT
    from curate.fo_decide import Decision, apply

    copies = ds.count_values("content_hash")
    ex = next(  # in the exported split unless excluded, and no pixel-identical copy there
        i for i in lq if i != tid and ds[i].split == TRAIN_SPLIT and copies[ds[i].content_hash] == 1
    )
    apply(ds, {ex: Decision("exclude")}, by="app")
    before = _state(ds, [tid, ex, *bulk])
    run("score", SAMPLE, "--model", model, "--dataset", name, "--quiet")
    run("flag-mislabels", "--dataset", name, "--oos", "crossfit", "--full", *TINY, "--top-k", "5", "--allow-weak-model",
        "--quiet")  # fmt: skip
    ds.reload()
    assert _state(ds, [tid, ex, *bulk]) == before
    out = tmp_path / "export"
    run("export", "--dataset", name, "--from", sample_split / "train_8_folds_first", "--root", out,
        "--name", "cleaned", "--quiet")  # fmt: skip
    man = pd.read_csv(out / "cleaned" / "manifest.csv")
    hashes = dict(zip(*ds.select([tid, ex]).values(["id", "content_hash"])))
    kept = man.set_index("content_hash")
    assert hashes[ex] not in kept.index  # excluded
    row = kept.loc[hashes[tid]]
    gender = {"male": 0, "female": 1}[want_g or target.gender.label]
    assert int(row["gender"]) == gender and int(row["age"]) == (want_a or round(target.age.value))


def test_export_runs_from_the_app_as_a_delegated_operation(flagged, fo, sample_split, tmp_path, monkeypatch):
    """The App's long jobs: queued as delegated operations and run by FiftyOne's executor, same CLI code, in the
    folder `curate app` ran in even when the executor runs elsewhere (it knows only the dataset); queued by default
    only where a separate `fiftyone delegated launch` finds the plugin (installed in FiftyOne's plugins folder)."""
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionError

    from curate.fo_plugin import installed_in, record_workdir, use_plugin

    name, _ = flagged
    monkeypatch.setenv("CURATE_WORKDIR", str(tmp_path))
    old = fo.config.plugins_dir
    try:
        use_plugin(fo)
        record_workdir(fo.load_dataset(name), tmp_path)  # as `curate app` does
        uri = f"{PLUGIN}/run_export"
        assert foo.get_operator(uri).config.default_choice_to_delegated == installed_in(old)
        params = {"source": str(sample_split / "train_8_folds_first"), "name": "from-app", "relabel_suspects": True,
                  "mask_suspects": True, "estimated": True, "two_sided": True}  # fmt: skip
        bad = {**params, "drop_suspects": True}  # drop and mask: refused in the form, never queued to fail later
        with pytest.raises(ExecutionError, match="Validation error.*drop and mask both decide .* tick one"):
            foo.execute_operator(uri, ctx={"dataset": name, "params": bad, "request_delegation": True})
        queued = foo.execute_operator(uri, ctx={"dataset": name, "params": params, "request_delegation": True})
        assert queued.delegated
        monkeypatch.delenv("CURATE_WORKDIR")  # a launcher started in another folder
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        done = DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=name)
        assert done and all(d.error is None for d in done), [d.error_message for d in done]
        assert "curate export" in done[0].result["command"]
        # the one box for the recommended policy: the CLI's --auto-clean, its long form's boxes not repeated
        params = {"source": str(sample_split / "train_8_folds_first"), "name": "auto", "auto_clean": True,
                  "mask_suspects": True}  # fmt: skip
        foo.execute_operator(uri, ctx={"dataset": name, "params": params, "request_delegation": True})
        done = DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=name)
        assert done and all(d.error is None for d in done), [d.error_message for d in done]
        assert "--auto-clean" in done[0].result["command"] and "--mask-suspects" not in done[0].result["command"]
    finally:
        fo.config.plugins_dir = old
    auto = (tmp_path / "dataset" / "auto" / "EXPORT.md").read_text()
    assert "--auto-clean after one cross-fit round: policy m" in auto
    assert '"age_rank": "two-sided"' in auto and 'mask_suspects": true' in auto
    report = (tmp_path / "dataset" / "from-app" / "EXPORT.md").read_text()
    assert 'relabel_suspects": true' in report and (tmp_path / "dataset" / "from-app" / "manifest.csv").exists()
    assert 'mask_suspects": true' in report and "--gender-max-score estimated = " in report
    assert '"age_max_score": 0.05' in report and '"age_rank": "two-sided"' in report  # policy (m)


def test_flag_mislabels_runs_two_rounds_from_the_app(scored, fo, tmp_path, monkeypatch):
    """The App's flag-mislabels job passes "Cross-fit rounds: 2" to the CLI: a delegated run cross-fits
    (the cheap recipe) and either runs the second round on masked labels or says why it did not."""
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from curate.fo_plugin import use_plugin

    name = f"t-app-rounds-{uuid.uuid4().hex[:6]}"
    fo.load_dataset(scored[0]).clone(name)
    monkeypatch.setenv("CURATE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path / "cache"))
    old = fo.config.plugins_dir
    try:
        use_plugin(fo)
        uri = f"{PLUGIN}/run_flag_mislabels"
        params = {"oos": "crossfit", "recipe": "cheap", "rounds": "2"}
        queued = foo.execute_operator(uri, ctx={"dataset": name, "params": params, "request_delegation": True})
        assert queued.delegated
        done = DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=name)
        assert done and all(d.error is None for d in done), [d.error_message for d in done]
        assert "--rounds 2" in done[0].result["command"]
        ds = fo.load_dataset(name)
        ds.reload()  # the job wrote from another process
        checks = ds.info["curate"]["model_checks"]
        src = checks["source"]
        assert src["kind"] == "crossfit" and src["rounds"] in (1, 2)
        # round 2 runs unless a first-round fold model is no better than the majority gender (the App does
        # not offer --allow-weak-model); the stored checks are then the first round's
        assert src["rounds"] == 2 or not all(f["gender_ok"] for f in checks["folds"])
        assert (src["rounds"] == 2) == any(Path(src["folder"]).glob("round_2-*/predictions.parquet"))
    finally:
        fo.config.plugins_dir = old
        fo.delete_dataset(name)


def test_a_decision_on_a_label_changed_since_is_named_by_review_status_and_export(flagged, fo, sample_split, tmp_path):
    """Each decision records the labels the reviewer saw; when the source's labels change afterwards (edited and
    re-scored), `review-status` and `export` name the sample and both labels instead of applying the old
    decision silently; a decision on an unchanged label is not named."""
    from curate.fo_decide import Decision, apply, mislabel

    name, _ = flagged
    ds = fo.load_dataset(name).clone(f"{flagged[0]}-relabel", persistent=True)
    try:
        s, fill = _target(ds)
        other = ds.match_tags(["suspect:gender", "suspect:age"], bool=False).first()
        apply(ds, {s.id: mislabel(s, age=fill["age"], gender=fill["gender"]), other.id: Decision("ok")})
        s.reload()
        assert s.review_log[-1]["label_age"] == round(s.age.value) and s.review_log[-1]["label_gender"]
        res = run("review-status", "--dataset", ds.name, "--csv", tmp_path / "a.csv")
        assert "decision(s) were made on labels" not in res.output
        was = round(s.age.value)
        s["age"].value = was + 9  # the source's label edited after the review
        s.save()
        res = run("review-status", "--dataset", ds.name, "--csv", tmp_path / "b.csv")
        said = f"1 review decision(s) were made on labels that have changed since (first: {s.filename}: age {was} then"
        assert said in res.output and f"{was + 9} now" in res.output and other.filename not in res.output
        args = ["export", "--dataset", ds.name, "--from", sample_split / "train_8_folds_first", "--root", tmp_path]
        assert said in run(*args, "--name", "x").output
    finally:
        fo.delete_dataset(ds.name)


def test_review_status_and_export_read_every_decision_the_same_way(flagged, fo, sample_split, tmp_path):
    """What review-status reports is what export does: a "correction" to the sample's own label is stored as none
    (the image is dropped as labelled wrong, not kept with the label called wrong); "label is right" with a
    correction is a conflict in both; "F" is a gender in both; a mistyped tag is named by review-status, not only
    refused later by export; the CSV says who decided."""
    from fiftyone import ViewField as F

    from core.manifest import TRAIN_SPLIT
    from curate.fo_decide import Decision, apply

    ds = fo.load_dataset(flagged[0]).clone(f"{flagged[0]}-oneway", persistent=True)
    try:
        a, b, c = ds.match(
            (F("split") == TRAIN_SPLIT) & ~F("tags").contains(["exclude", "confirmed:ok", "confirmed:mislabel"])
        ).limit(3)
        apply(ds, {a.id: Decision("mislabel", gender=a.gender.label)})
        a.reload()
        assert a.gender_corrected is None and "confirmed:mislabel" in a.tags
        b.tags = [*b.tags, "confirmed:ok"]
        b["gender_corrected"] = "F" if b.gender.label == "male" else "M"  # typed in the App's field
        b.save()
        c.tags = [*c.tags, "exlude"]
        c.save()
        res = run("review-status", "--dataset", ds.name, "--csv", tmp_path / "d.csv")
        assert "tags that look mistyped, which `curate export` refuses: exlude (did you mean exclude?): 1" in res.output
        dec = pd.read_csv(tmp_path / "d.csv").set_index("filename")
        assert dec.loc[a.filename, "decision"] == "mislabel" and dec.loc[b.filename, "decision"] == "conflict"
        assert dec.loc[b.filename, "problem"] != dec.loc[b.filename, "problem"]  # "F" is a gender: no problem
        assert "reviewed_by" in dec and dec.loc[a.filename, "reviewed_by"]
        args = ["export", "--dataset", ds.name, "--from", sample_split / "train_8_folds_first", "--root", tmp_path]
        assert "exlude (did you mean exclude?)" in run(*args, "--name", "x", ok=False).output
        c.tags = [t for t in c.tags if t != "exlude"]
        c.save()
        run(*args, "--name", "y")
        removed = pd.read_csv(tmp_path / "y" / "removed.csv").set_index("filename")["reason"]
        assert removed[a.filename] == "confirmed:mislabel without a correction"
        assert removed[b.filename] == "conflicting review (confirmed:ok and a correction)"
    finally:
        fo.delete_dataset(ds.name)


def test_export_form_names_the_choices_curate_export_refuses():
    from curate.plugin import export_form_conflict

    assert export_form_conflict({}) is None
    assert export_form_conflict({"auto_clean": True, "mask_suspects": True}) is None
    assert export_form_conflict({"mask_suspects": True, "estimated": True, "two_sided": True}) is None
    assert export_form_conflict({"relabel_suspects": True, "estimated": True}) is None
    assert "tick one" in export_form_conflict({"drop_suspects": True, "mask_suspects": True})
    assert "untick drop and relabel" in export_form_conflict({"auto_clean": True, "relabel_suspects": True})
    assert "tick mask or drop too" in export_form_conflict({"relabel_suspects": True, "two_sided": True})
    assert "tick one of those too" in export_form_conflict({"estimated": True})
