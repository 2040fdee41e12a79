"""Labels-table datasets (curate/sources.py): a CSV or Parquet table over photos in subfolders. Every bad
row is named once with its row number and reason, people never straddle train and test, recorded folds
hold, `--copy` and `curate export` keep the source's layout and write the labels back as a table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from dataset_builders import BAD_ROWS, DUPLICATE, labels_dataset, photo_dataset, sample_faces

from core.manifest import TEST_SPLIT, TRAIN_SPLIT
from curate.cli import main

N_GOOD = 40  # 20 people x 2 photos


def run(*args, ok: bool = True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in res.output
    if ok:
        assert res.exit_code == 0, res.output
    return res


def folds(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "folds.csv", dtype={"content_hash": str, "id": str})


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    labels_dataset(tmp_path / "ds")
    return tmp_path / "ds"


def test_split_names_every_bad_row_once_and_keeps_each_person_in_one_split(dataset: Path, tmp_path: Path):
    res = run("split", dataset, "--out", tmp_path / "out")
    rej = pd.read_csv(tmp_path / "out" / "rejected.csv")
    for name, words in BAD_ROWS.items():
        mine = rej[rej["filename"] == name]
        assert len(mine) == 1 and words in mine["reason"].iloc[0] and mine["reason"].iloc[0].startswith("row "), name
        assert len([ln for ln in res.output.splitlines() if f"'{name}'" in ln]) == 1, name
    dup = rej[rej["filename"] == DUPLICATE]
    assert list(dup["reason"]) == ["row 12: duplicate path a/001.jpg: the same file as row 1"]  # the first is kept
    assert len(rej) == len(BAD_ROWS) + 1
    f = folds(tmp_path / "out")
    assert len(f) == N_GOOD and f["filename"].is_unique and {"a/001.jpg", "b/001.jpg"} <= set(f["filename"])
    assert f.groupby("id")["split"].nunique().max() == 1  # no person in both train and test
    assert f.groupby("content_hash")["split"].nunique().max() == 1
    assert set(f["split"]) == {TRAIN_SPLIT, TEST_SPLIT} and f["id"].nunique() == N_GOOD // 2
    first = f.set_index("filename").loc["a/001.jpg"]
    assert (first["age"], first["gender"]) == (int(sample_faces(1)[0].name.split("_")[0]), 0)
    assert "identities (id): 20" in res.output
    # the table given as a file, and as Parquet, read the same
    run("split", dataset / "labels.csv", "--out", tmp_path / "file")
    pd.read_csv(dataset / "labels.csv", dtype=str).to_parquet(dataset / "labels.parquet")
    (dataset / "labels.csv").rename(tmp_path / "moved.csv")
    run("split", dataset, "--out", tmp_path / "pq")
    for other in ("file", "pq"):
        g = folds(tmp_path / other)
        assert g.drop(columns="labels_table").equals(f.drop(columns="labels_table")), other
        assert pd.read_csv(tmp_path / other / "rejected.csv")["reason"].tolist() == rej["reason"].tolist()


def test_a_missing_required_column_is_one_line_naming_the_file_and_its_columns(dataset: Path, tmp_path: Path):
    t = pd.read_csv(dataset / "labels.csv").rename(columns={"age": "years"})
    t.to_csv(dataset / "labels.csv", index=False)
    res = run("split", dataset, "--out", tmp_path / "out", ok=False)
    assert res.exit_code == 1
    assert res.output.strip() == (
        f"Error: {dataset / 'labels.csv'}: missing required column(s) age; it has: path, years, gender, race, id "
        "(needs path, age, gender; optional race, id)"
    )
    pd.DataFrame(columns=["path", "age", "gender"]).to_csv(dataset / "labels.csv", index=False)  # a header only
    res = run("split", dataset, "--out", tmp_path / "out", ok=False)
    assert res.exit_code == 1 and res.output.strip() == (
        f"Error: {dataset / 'labels.csv'}: the labels table has its columns but no rows (one row per image: path, "
        "age, gender)"
    )


def test_recorded_folds_hold_and_a_new_photo_of_a_known_person_joins_that_persons_fold(dataset: Path, tmp_path):
    out = tmp_path / "out"
    run("split", dataset, "--out", out)
    before = folds(out)
    table = pd.read_csv(dataset / "labels.csv", dtype=str)
    person = before[before["split"] == TEST_SPLIT]["id"].iloc[0]
    new = sample_faces(3, offset=2)
    for i, src in enumerate(new):
        shutil.copy(src, dataset / "c" / f"new{i}.jpg")
    extra = [{"path": "c/new0.jpg", "age": "40", "gender": "f", "id": person},  # a known person
             {"path": "c/new1.jpg", "age": "41", "gender": "m", "id": "newcomer"},
             {"path": "c/new2.jpg", "age": "42", "gender": "m", "id": "newcomer"}]  # fmt: skip
    pd.concat([table, pd.DataFrame(extra)]).to_csv(dataset / "labels.csv", index=False)
    s = run("split", dataset, "--out", out)
    after = folds(out).set_index("filename")
    old = before.set_index("filename")
    assert (after.loc[old.index, "fold"] == old["fold"]).all()  # nobody moved
    assert after.loc["c/new0.jpg", "fold"] == old[old["id"] == person]["fold"].iloc[0]
    assert after.loc["c/new1.jpg", "fold"] == after.loc["c/new2.jpg", "fold"]
    assert f"kept the recorded fold of {N_GOOD} image(s); new images: 3" in s.output
    # a person whose earlier photos are gone from the table still has the fold folds.csv recorded
    shutil.copy(dataset / "c" / "new0.jpg", tmp_path / "c_new0.jpg")
    pd.DataFrame([{**extra[0], "path": "c_new0.jpg"}]).to_csv(tmp_path / "only.csv", index=False)
    run("split", tmp_path / "only.csv", "--out", out)
    assert folds(out)["fold"].iloc[0] == old[old["id"] == person]["fold"].iloc[0]


def test_identity_groups_join_pixel_identical_photos_of_two_ids_and_leave_utkface_alone():
    from curate.splits import assign_folds, balanced_folds, identity_groups

    ages = [20, 30, 40, 50, 60, 25, 35, 45, 55, 65] * 3
    df = pd.DataFrame({"content_hash": [f"h{i}" for i in range(30)], "age": ages, "gender": [i % 2 for i in range(30)]})
    assert identity_groups(df) is None and (assign_folds(df) == balanced_folds(df)).all()
    df["id"] = [f"p{i // 3}" for i in range(30)]
    df.loc[29, "content_hash"] = "h0"  # p9's last photo is p0's first, pixel for pixel
    g = identity_groups(df)
    assert g[0] == g[29] == g[27] == "id:p0" and g.nunique() == 9
    f = assign_folds(df, seed=3)
    assert pd.Series(f).groupby(g.to_numpy()).nunique().max() == 1
    assert (assign_folds(df, previous={"h5": 7})[3:6] == 7).all()  # p1's photos follow its recorded one


def test_copy_and_export_keep_the_layout_and_write_the_labels_back_as_a_table(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    run("split", dataset, "--out", out, "--copy")
    train = pd.read_csv(out / TRAIN_SPLIT / "manifest.csv")
    assert all(Path(p) == (out / TRAIN_SPLIT / f).resolve() for p, f in zip(train["path"], train["filename"]))
    flip, drop = train["filename"].iloc[0], train["filename"].iloc[1]
    g = int(train["gender"].iloc[0])
    review = pd.DataFrame({"filename": [flip, drop], "tags": ["confirmed:mislabel", "exclude"],
                           "gender_corrected": [1 - g, None]})  # fmt: skip
    review.to_csv(tmp_path / "review.csv", index=False)
    run("export", "--from", out / TRAIN_SPLIT, "--review", tmp_path / "review.csv", "--root", tmp_path / "exp",
        "--name", "clean", "--copy", "--oversample", "--by", "age_group,gender")  # fmt: skip
    clean = tmp_path / "exp" / "clean"
    labels = pd.read_csv(clean / "labels.csv", dtype={"id": str})
    assert sorted(labels["path"]) == sorted(set(train["filename"]) - {drop})
    assert all((clean / p).is_file() for p in labels["path"]) and not list(clean.glob("*_*_*_*.jpg"))
    row = labels.set_index("path").loc[flip]
    assert (row["gender"], row["original_gender"], row["label_source"]) == (1 - g, g, "corrected")
    assert labels["id"].notna().all()
    over = pd.read_csv(tmp_path / "exp" / "clean_oversampled" / "labels.csv")
    gen = over[over["generated"]]
    assert len(gen) and all("_aug" in p and (tmp_path / "exp" / "clean_oversampled" / p).is_file() for p in gen["path"])
    # the exported split is a labels-table dataset again, corrections included
    run("split", clean, "--out", tmp_path / "again")
    back = folds(tmp_path / "again").set_index("filename")
    assert len(back) == len(labels) and back.loc[flip, "gender"] == 1 - g


def test_align_on_a_utkface_folder_keeps_the_names_and_points_at_the_crops(tmp_path: Path):
    src = tmp_path / "utk"
    src.mkdir()
    for p in sample_faces(4, offset=30):
        shutil.copy(p, src / p.name)
    run("split", src, "--out", tmp_path / "out", "--align", "--quiet")
    f = folds(tmp_path / "out")
    assert sorted(f["filename"]) == sorted(p.name for p in src.iterdir())
    assert all(Path(p) == (tmp_path / "out" / "aligned" / n).resolve() for p, n in zip(f["path"], f["filename"]))
    assert set(f["face_status"]) == {"one face"} and (f["source_path"].map(lambda p: Path(p).parent) == src).all()


def test_windows_paths_and_semicolon_or_tab_separated_tables_read_as_the_plain_csv(dataset: Path, tmp_path: Path):
    run("split", dataset, "--out", tmp_path / "plain")
    plain, n_rejected = folds(tmp_path / "plain"), len(pd.read_csv(tmp_path / "plain" / "rejected.csv"))
    table = pd.read_csv(dataset / "labels.csv", dtype=str, keep_default_na=False)
    windows = table.assign(path=table["path"].str.replace("/", "\\"))  # a table written on Windows
    windows.to_csv(dataset / "windows.csv", index=False)
    table.to_csv(dataset / "labels.csv", index=False, sep=";")  # a spreadsheet in a ';' locale
    table.to_csv(dataset / "labels.tsv", index=False, sep="\t")
    for name, given in (("win", dataset / "windows.csv"), ("semi", dataset), ("tab", dataset / "labels.tsv")):
        run("split", given, "--out", tmp_path / name)
        f = folds(tmp_path / name)
        assert f.drop(columns="labels_table").equals(plain.drop(columns="labels_table")), name
        assert len(pd.read_csv(tmp_path / name / "rejected.csv")) == n_rejected, name
    assert "a/001.jpg" in set(folds(tmp_path / "win")["filename"])  # the name is the POSIX relative path
    table.rename(columns={"age": "years"}).to_csv(dataset / "labels.csv", index=False, sep=";")
    res = run("split", dataset, "--out", tmp_path / "bad", "--quiet", ok=False)
    assert res.exit_code == 1 and "it has: path, years, gender, race, id" in res.output
    assert "the file seems to be separated by ';'" in res.output and len(res.output.strip().splitlines()) == 1


def test_a_folder_without_a_table_or_utkface_names_says_what_was_looked_for(tmp_path: Path):
    flat, nested = tmp_path / "flat", tmp_path / "nested"
    for i, src in enumerate(sample_faces(4)):
        for dst in (flat / f"photo_{i}.jpg", nested / "set1" / f"photo_{i}.jpg"):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    for folder, extra in ((flat, "4 other file(s)"), (nested, "images in subfolders (e.g. set1/photo_0.jpg)")):
        res = run("split", folder, "--out", tmp_path / "out", "--quiet", ok=False)
        line = res.output.strip()
        assert res.exit_code == 1 and len(line.splitlines()) == 1, line
        assert "no labels.csv or labels.parquet in the folder" in line and extra in line, line
        assert "{age}_{gender}_{race}_{datetime}.jpg" in line and "docs/datasets.md" in line, line


def test_a_tiny_dataset_is_warned_that_its_test_split_is_empty(tmp_path: Path):
    labels_dataset(tmp_path / "ds", n_people=4)  # 8 usable images, 4 persons: 4 of the 10 folds
    res = run("split", tmp_path / "ds", "--out", tmp_path / "out")
    assert set(folds(tmp_path / "out")["split"]) == {TRAIN_SPLIT}
    warning = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and "the test split is empty (8 train, 0 test of 8 usable image(s))" in warning[0]
    assert "at least 10 images (with an id column: 10 persons); add images" in warning[0]
    labels_dataset(tmp_path / "ds40")
    res = run("split", tmp_path / "ds40", "--out", tmp_path / "out40")  # 40 images: a test split, but a small one
    n_test = int((folds(tmp_path / "out40")["split"] == TEST_SPLIT).sum())
    assert 0 < n_test < 10 and f"warning: only {n_test} image(s) in the test split" in res.output


def test_align_on_a_table_names_the_row_of_a_faceless_photo_and_keeps_race_whole(tmp_path: Path):
    table, n_faces = photo_dataset(tmp_path / "photos")
    t = pd.read_csv(table, dtype=str)
    t.loc[0, "race"] = None  # one race unknown: the column must not turn into floats
    t.to_csv(table, index=False)
    run("split", table, "--out", tmp_path / "out", "--align", "--quiet")
    rej = pd.read_csv(tmp_path / "out" / "rejected.csv")
    no_face = [f for f, k in n_faces.items() if k == 0]
    assert list(rej["filename"]) == no_face and list(rej["reason"]) == [f"row {len(t)}: no face found"]
    for manifest in ("folds.csv", f"{TRAIN_SPLIT}/manifest.csv"):
        race = pd.read_csv(tmp_path / "out" / manifest, dtype=str, keep_default_na=False)["race"]
        assert all(r == "" or r.isdigit() for r in race), manifest  # 3, never 3.0; blank where unknown
    race = folds(tmp_path / "out").set_index("filename")["race"]
    assert pd.isna(race[t["path"][0]]) and race.drop(t["path"][0]).tolist() == t["race"][1:-1].astype(int).tolist()


def test_a_folder_with_both_labels_csv_and_parquet_asks_which(dataset: Path, tmp_path: Path):
    pd.read_csv(dataset / "labels.csv", dtype=str).to_parquet(dataset / "labels.parquet")
    res = run("split", dataset, "--out", tmp_path / "out", "--quiet", ok=False)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert f"{dataset}: holds both labels.csv and labels.parquet; pass the table's path" in res.output
    run("split", dataset / "labels.parquet", "--out", tmp_path / "out")


def test_a_table_names_links_case_clashes_unreadable_values_and_reads_windows_encodings(tmp_path: Path):
    """A row pointing through a link at a file another usable row has is a duplicate (one file, one label); a row
    whose file was rejected does not block a later usable row of it; "age"/"Age" columns are refused; "inf" is no
    age; a blank gender is missing; a name in another case is hinted; an Excel CSV in Windows-1252 or UTF-16
    reads."""
    d = tmp_path / "t"
    d.mkdir()
    faces = sample_faces(4)
    for i, f in enumerate(faces):
        shutil.copy(f, d / f"img_{i}.jpg")
    (d / "link.jpg").symlink_to("img_0.jpg")
    (d / "café.jpg").write_bytes(faces[3].read_bytes())
    rows = ["path,age,gender", "img_0.jpg,20,m", "link.jpg,70,f", "img_1.jpg,inf,f", "./img_1.jpg,31,f",
            "img_2.jpg,40,", "IMG_3.JPG,50,m", "café.jpg,60,f"]  # fmt: skip
    (d / "labels.csv").write_bytes("\r\n".join(rows).encode("cp1252"))
    res = run("split", d, "--out", tmp_path / "o", "--quiet", ok=False)
    rej = pd.read_csv(tmp_path / "o" / "rejected.csv").set_index("filename")["reason"]
    assert rej["link.jpg"] == "row 2: duplicate path link.jpg: the same file as row 1 through a link"
    assert rej["img_1.jpg"] == "row 3: age 'inf' is not a number" and "./img_1.jpg" not in rej
    assert rej["img_2.jpg"] == "row 5: gender missing"
    assert rej["IMG_3.JPG"] == "row 6: missing file IMG_3.JPG (there is img_3.jpg: names are case-sensitive)"
    f = folds(tmp_path / "o").set_index("filename")
    assert set(f.index) == {"img_0.jpg", "img_1.jpg", "café.jpg"} and f.loc["img_1.jpg", "age"] == 31
    assert res.exit_code in (0, 1)  # a 3-image dataset may be too small to split; the rows above are what counts
    (d / "labels.csv").write_bytes("\n".join(rows[:2] + ["café.jpg,60,f"]).encode("utf-16"))
    run("split", d, "--out", tmp_path / "o16", "--quiet", ok=False)
    assert set(folds(tmp_path / "o16")["filename"]) == {"img_0.jpg", "café.jpg"}
    (d / "labels.csv").write_text("path,age,gender,Age\nimg_0.jpg,30,f,99\n")
    res = run("split", d, "--out", tmp_path / "o2", ok=False)
    assert res.exit_code == 1 and "columns 'age' and 'Age' are one column to curate" in res.output
