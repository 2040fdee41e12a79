"""Turn a folder of UTKFace images into reproducible, leakage-free split manifests.

Every image is decoded once: that is how we know it is usable (a truncated JPEG or a text file with a
JPEG name must be rejected here, not crash training an hour later) and how we get its content hash
(a hash of the decoded pixels, so pixel-identical files are one group and never straddle train/test).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_path, write_csv
from core.errors import CurateError
from core.images import IMAGE_EXTS, decode_image, full_size, pixel_hash, walk_images
from core.labels import AGE_GROUP_LABELS, GENDER_NAMES, MAX_AGE, RACE_NAMES, age_group
from core.manifest import MANIFEST_COLUMNS, N_FOLDS, TEST_FOLDS, TEST_SPLIT, TRAIN_SPLIT

DOC_EXTS = (".md", ".txt", ".csv", ".json", ".yaml", ".yml", ".parquet", ".pdf", ".html")  # beside images, not images
# {age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]; the race field is optional (3 real files lack it),
# and we tolerate whitespace before the extension and a missing dot ("...357jpg.chip.jpg"), and
# suffixes such as "_aug3" / "_dup1" that `curate export` gives generated or renamed samples.
_NAME_RE = re.compile(
    r"^(?P<age>\d+)_(?P<gender>\d+)_(?:(?P<race>\d)_)?(?P<stamp>\d+)(?P<suffix>(?:_[A-Za-z]+\d*)*)"
    r"(?P<space>\s*)(?P<dot>\.?)(?P<ext>jpe?g|png|webp|bmp|gif|tiff?)(?P<chip>\.chip\.jpg)?$",
    re.IGNORECASE,
)

# Columns some datasets add after MANIFEST_COLUMNS: identity and labels table (curate.sources), the
# aligned face's source and detection (`--align`, curate.align).
EXTRA_COLUMNS = ["id", "labels_table", "source_path", "face_status", "n_faces", "face_score"]
MIN_TEST_IMAGES = 10  # fewer in the test split: `curate split` warns that its metrics are noise


class SplitError(CurateError):
    """The run cannot produce any usable split (e.g. no usable image at all)."""


@dataclass(frozen=True)
class ParsedName:
    age: int
    gender: int
    race: int | None
    note: str  # "" for a well-formed name, otherwise what was unusual about it


def parse_name(name: str) -> ParsedName:
    """Parse a UTKFace file name; raises ValueError with the reason when it cannot be used."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError("file name does not match {age}_{gender}_{race}_{datetime}.jpg")
    age, gender = int(m["age"]), int(m["gender"])
    if not 0 <= age <= MAX_AGE:
        raise ValueError(f"age {age} outside 0-{MAX_AGE}")
    if gender not in (0, 1):
        raise ValueError(f"gender {gender} is not 0 (male) or 1 (female)")
    race = None if m["race"] is None else int(m["race"])
    if race is not None and race >= len(RACE_NAMES):
        raise ValueError(f"race {race} outside 0-{len(RACE_NAMES) - 1}")
    notes = []
    if race is None:
        notes.append("no race field (race unknown)")
    if m["space"]:
        notes.append("stray whitespace before extension")
    if not m["dot"]:
        notes.append("missing dot before extension")
    return ParsedName(age, gender, race, "; ".join(notes))


def scan_source(source: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable rows, rejected rows) of a dataset: a labels table (a CSV/Parquet file, or a folder holding
    labels.csv or labels.parquet: curate.sources), else a folder of UTKFace-named images."""
    from curate.sources import labels_table, scan_table

    table = labels_table(source)
    return scan_folder(source, progress=progress) if table is None else scan_table(table, progress=progress)


def scan_folder(data_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every file under `data_dir` (not recursive); return (usable rows, rejected rows)."""
    from tqdm import tqdm

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SplitError(f"{data_dir}: {'not a folder' if data_dir.exists() else 'no such file or folder'}")
    files = sorted(  # regular files, and anything named like an image (a directory, FIFO or broken link is
        p  # rejected with what it is rather than silently skipped); notes and tables beside the images are not
        for p in data_dir.iterdir()  # images to reject (README.md, labels.csv)
        if not p.name.startswith(".")
        and not p.name.lower().endswith(DOC_EXTS)
        and (p.is_file() or p.name.rstrip().lower().endswith(IMAGE_EXTS))
    )
    files.sort(key=lambda p: p.is_symlink())  # (stable) the files themselves first, then the links to them
    rows, rejected, taken = [], [], {}
    for p in tqdm(files, desc="scan", unit="img", disable=not progress, mininterval=0.5):
        try:
            parsed = parse_name(p.name)
        except ValueError as e:
            rejected.append({"path": _abs(p), "filename": p.name, "reason": str(e)})
            continue
        if _abs(p) in taken:  # a link to an image already read: one file, one label (its own name's)
            reason = f"a link to {taken[_abs(p)]}, already read under that name: one file cannot have two labels"
            rejected.append({"path": str(p.absolute()), "filename": p.name, "reason": reason})
            continue
        img, reason = decode_image(p)
        if img is None:
            rejected.append({"path": _abs(p), "filename": p.name, "reason": reason})
            continue
        taken[_abs(p)] = p.name
        rows.append(
            {
                "path": str(p.resolve()),
                "filename": p.name,
                "age": parsed.age,
                "gender": parsed.gender,
                "race": parsed.race,
                "content_hash": pixel_hash(img),
                **dict(zip(("width", "height"), full_size(p, img))),
                "name_note": parsed.note,
            }
        )
    usable = pd.DataFrame(rows, columns=[c for c in MANIFEST_COLUMNS if c not in ("fold", "split")])
    usable["race"] = usable["race"].astype("Int64")
    return usable, pd.DataFrame(rejected, columns=["path", "filename", "reason"])


def _abs(p: Path) -> str:
    """The absolute path, resolved where it can be (a symlink loop cannot)."""
    try:
        return str(p.resolve())
    except (OSError, RuntimeError):
        return str(p.absolute())


def assign_folds(
    df: pd.DataFrame,
    seed: int = 0,
    n_folds: int = N_FOLDS,
    previous: Mapping[str, int] | None = None,
    previous_ids: Mapping[str, int] | None = None,
) -> np.ndarray:
    """Folds per row. With `previous` (content hash -> fold of an earlier split: its record), every image
    seen before keeps its fold and only new ones get a fold, from their content hash alone
    (`stable_fold`), so no image ever moves because others came or went. Without it, a fresh
    stratified assignment (`balanced_folds`).

    With an `id` column (a person per image) the unit is a group of images connected by id or content
    hash (`identity_groups`): one fold per group, so no person is in both train and test; a new image of
    a known identity takes that identity's fold (from its recorded images, else `previous_ids`)."""
    groups = identity_groups(df)
    if not previous:
        if groups is None:
            return balanced_folds(df, seed, n_folds)
        return balanced_folds(df.assign(_group=groups.to_numpy()), seed, n_folds, key="_group")
    hashes = df["content_hash"].astype(str).to_numpy()
    if groups is None:
        return np.array([previous.get(h, stable_fold(h, seed, n_folds)) for h in hashes], dtype=np.int64)
    ids = df["id"].to_numpy()
    out = np.zeros(len(df), dtype=np.int64)
    for key, idx in groups.reset_index(drop=True).groupby(groups.to_numpy(), sort=True).indices.items():
        recorded = [previous[hashes[i]] for i in idx if hashes[i] in previous]
        known = [(previous_ids or {}).get(str(ids[i])) for i in idx if _has_id(ids[i])]
        known = [f for f in known if f is not None]
        fold = _most_common(recorded) if recorded else known[0] if known else stable_fold(key, seed, n_folds)
        out[idx] = [previous.get(hashes[i], fold) for i in idx]
    return out


def identity_groups(df: pd.DataFrame) -> pd.Series | None:
    """Per row, the key of its group: images connected through a shared id or a shared content hash
    (a person's photos, and pixel-identical copies even under two ids). The key is the group's smallest
    id ("id:<id>"), else its content hash. None without an `id` column or without any id in it."""
    if "id" not in df or not any(_has_id(v) for v in df["id"]):
        return None
    parent = list(range(len(df)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    keys = []
    for i, (h, pid) in enumerate(zip(df["content_hash"].astype(str), df["id"])):
        keys.append((0, f"id:{pid}") if _has_id(pid) else (1, h))
        for k in (f"h:{h}", f"id:{pid}" if _has_id(pid) else None):
            if k is not None:
                parent[find(i)] = find(first.setdefault(k, i))
    roots = [find(i) for i in range(len(df))]
    best: dict[int, tuple[int, str]] = {}
    for r, k in zip(roots, keys):
        best[r] = min(best.get(r, k), k)
    return pd.Series([best[r][1] for r in roots], index=df.index)


def _has_id(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and v is not pd.NA and str(v).strip() != ""


def _most_common(folds: list[int]) -> int:
    """The fold most of a group's recorded images have (the smallest on a tie)."""
    values, counts = np.unique(folds, return_counts=True)
    return int(values[np.argmax(counts)])


def stable_fold(content_hash: str, seed: int = 0, n_folds: int = N_FOLDS) -> int:
    """A fold from the image's content hash (its duplicate group) and the seed alone: copies share it,
    and about TEST_FOLDS / N_FOLDS (20 %) of new images land in the test split."""
    return int(hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).hexdigest(), 16) % n_folds


def previous_folds(out_dir: Path) -> dict[str, int]:
    """content hash -> fold recorded by an earlier `curate split` into `out_dir` (folds.csv), {} if none."""
    p = Path(out_dir) / "folds.csv"
    if not p.is_file():
        return {}
    rec = pd.read_csv(p, usecols=["content_hash", "fold"], dtype={"content_hash": str})
    return dict(zip(rec["content_hash"], rec["fold"].astype(int)))


def previous_id_folds(out_dir: Path) -> dict[str, int]:
    """identity -> fold recorded in `out_dir`/folds.csv (its id column), {} if none: where a new image of a
    known person goes even when that person's earlier images are gone."""
    p = Path(out_dir) / "folds.csv"
    if not p.is_file() or "id" not in pd.read_csv(p, nrows=0).columns:
        return {}
    rec = pd.read_csv(p, usecols=["id", "fold"], dtype={"id": str}).dropna()
    return {i: _most_common(list(g)) for i, g in rec.groupby("id")["fold"]}


def balanced_folds(df: pd.DataFrame, seed: int = 0, n_folds: int = N_FOLDS, key: str = "content_hash") -> np.ndarray:
    """Stratified (age bin x gender), duplicate-grouped fold assignment, deterministic for a seed.

    Pixel-identical images (or, with `key`, any group: an identity) form one group that takes one fold.
    Within each stratum the groups are shuffled with the seed and dealt round-robin; the dealer's
    position carries over from one stratum to the next, so fold sizes differ by at most a handful of
    images overall (plain per-stratum round-robin would bias every stratum's remainder towards fold 0).
    """
    if df.empty:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    first = df.groupby(key, sort=True).head(1)
    strata = first.assign(stratum=[f"{age_group(a)}|{g}" for a, g in zip(first["age"], first["gender"])])
    group_fold: dict[str, int] = {}
    fill = np.zeros(n_folds, dtype=np.int64)
    sizes = df[key].value_counts()
    for _, grp in strata.groupby("stratum", sort=True):
        hashes = grp[key].to_numpy()
        hashes = hashes[rng.permutation(len(hashes))]
        for h in hashes:
            fold = int(np.argmin(fill))  # emptiest fold first: balances sizes incl. duplicate groups
            group_fold[h] = fold
            fill[fold] += sizes[h]
    return df[key].map(group_fold).to_numpy(dtype=np.int64)


def make_splits(
    data_dir: Path,
    out_dir: Path,
    seed: int = 0,
    copy: bool = False,
    progress: bool = True,
    reassign: bool = False,
    align: bool = False,
) -> dict:
    """Scan, assign folds and write manifests; returns a summary dict (also printed by the CLI).

    An earlier split in `out_dir` (its folds.csv) is the record: its images keep their folds, new ones
    get `stable_fold` (or their identity's recorded fold); `reassign` ignores the record and assigns
    every fold afresh. `align`: the manifests point at aligned face crops written under OUT/aligned/
    (curate.align), and images without a face are rejected."""
    usable, rejected = scan_source(data_dir, progress=progress)
    out_dir = Path(out_dir)
    previous = {} if reassign else previous_folds(out_dir)
    previous_ids = {} if reassign else previous_id_folds(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if align and not usable.empty:
        usable, rejected = _align(usable, rejected, data_dir, out_dir, progress)
    write_csv(rejected, out_dir / "rejected.csv")
    if usable.empty:
        raise SplitError(_nothing_usable(Path(data_dir), rejected, out_dir / "rejected.csv"))
    usable = usable.sort_values("filename", kind="stable").reset_index(drop=True)
    usable["fold"] = assign_folds(usable, seed=seed, previous=previous, previous_ids=previous_ids)
    usable["split"] = np.where(usable["fold"].isin(TEST_FOLDS), TEST_SPLIT, TRAIN_SPLIT)
    usable = usable[MANIFEST_COLUMNS + [c for c in EXTRA_COLUMNS if c in usable]]
    n_kept = int(usable["content_hash"].astype(str).isin(previous).sum())
    write_csv(usable, out_dir / "folds.csv")
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        _write_split(usable[usable["split"] == split].reset_index(drop=True), out_dir / split, copy)
    warnings = split_warnings(usable, recorded=bool(previous)) + _augmented_warning(usable)
    n_new = len(usable) - n_kept if previous else 0
    return {**summarize(usable, rejected), "folds_kept": n_kept, "folds_new": n_new, "warnings": warnings}


def _align(
    usable: pd.DataFrame, rejected: pd.DataFrame, data_dir: Path, out_dir: Path, progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`--align` (curate.align): the usable rows pointing at their crops, and the rejected rows with those
    without a face added; for a labels table each with its row number, as every other rejected row."""
    from curate.align import align_faces
    from curate.sources import labels_table, row_numbers

    usable, no_face = align_faces(usable, out_dir / "aligned", progress=progress)
    table = labels_table(data_dir)
    if table is not None and not no_face.empty:
        rows = row_numbers(table)
        reasons = zip(no_face["filename"], no_face["reason"])
        no_face["reason"] = [f"row {rows[f]}: {r}" if f in rows else r for f, r in reasons]
    return usable, pd.concat([rejected, no_face], ignore_index=True)


def _nothing_usable(data_dir: Path, rejected: pd.DataFrame, rejected_csv: Path) -> str:
    """The one-line error of a scan without a usable image. For a folder without a labels table whose
    files are not UTKFace-named, "0 rejected" or "41 rejected" would not say why: say what was looked for."""
    from curate.sources import labels_table

    base = f"{data_dir}: no usable image ({len(rejected)} rejected, see {rejected_csv})"
    if not data_dir.is_dir() or labels_table(data_dir) is not None:
        return base
    if any(_NAME_RE.match(str(f)) for f in rejected["filename"]):
        return base  # UTKFace-named files, each rejected for its own reason
    others = f"{len(rejected)} other file(s), see {rejected_csv}" if len(rejected) else "no image in the folder itself"
    nested = _image_in_subfolder(data_dir)
    if nested:
        nested = f"; images in subfolders (e.g. {nested}) are read only through a labels table listing them"
    return (
        f"{data_dir}: no usable image: no labels.csv or labels.parquet in the folder, and no file named like "
        f"UTKFace's {{age}}_{{gender}}_{{race}}_{{datetime}}.jpg ({others})"
        + nested
        + "; for other names, add a labels table (path, age, gender[, race, id]): see docs/datasets.md"
    )


def _image_in_subfolder(data_dir: Path) -> str:
    """The relative path of one image below a subfolder of `data_dir` ("" if none): what a folder of
    photos sorted into subfolders holds, which only a labels table can name."""
    found, _ = walk_images(data_dir)  # the search `curate predict` makes of a folder
    return next((p.relative_to(data_dir).as_posix() for p in found if p.parent != data_dir), "")


def split_warnings(usable: pd.DataFrame, recorded: bool = False) -> list[str]:
    """What makes a split of too few images unusable, in words, with what to do. Why: each image (or
    person) takes one of 10 folds and the test split is folds 8-9, so a handful of images gives an empty
    or a tiny test split that nothing downstream can measure on, while the split itself succeeds.
    `recorded`: folds came from an earlier split's record (OUT/folds.csv), which --reassign ignores."""
    n_test = int((usable["split"] == TEST_SPLIT).sum())
    n_train = len(usable) - n_test
    counts = f"{n_train} train, {n_test} test of {len(usable)} usable image(s)"
    if n_test == 0 or n_train == 0:
        fix = "add images" + (", or pass --reassign to deal the recorded folds afresh" if recorded else "")
        return [
            f"the {'test' if n_test == 0 else 'training'} split is empty ({counts}): each image takes one of "
            f"{N_FOLDS} folds and the test split is folds {TEST_FOLDS[0]}-{TEST_FOLDS[-1]}, so a split needs at "
            f"least {N_FOLDS} images (with an id column: {N_FOLDS} persons); {fix}"
        ]
    if n_test < MIN_TEST_IMAGES:
        return [
            f"only {n_test} image(s) in the test split ({counts}): its MAE and accuracy move with every image; "
            f"add images (about {MIN_TEST_IMAGES * N_FOLDS // len(TEST_FOLDS)} or more) for metrics worth comparing"
        ]
    return []


def _augmented_warning(usable: pd.DataFrame) -> list[str]:
    """Augmented copies written by `curate export --oversample` (names ending _augN) split like any image would put
    copies of one photo on both sides of the split (a leak that flatters the test metrics): say so."""
    aug = usable["filename"].astype(str).str.contains(r"_aug\d+\.", regex=True)
    if not aug.any():
        return []
    return [f"{int(aug.sum())} image(s) are augmented copies from `curate export --oversample` (e.g. "
            f"{usable.loc[aug, 'filename'].iloc[0]}): their sources may land in the other split; split the source "
            "images (or the cleaned split) and oversample only the training part"]  # fmt: skip


def _write_split(part: pd.DataFrame, split_dir: Path, copy: bool) -> None:
    """A split's manifest.csv, with `copy` its images too: under their own names, or for a labels-table
    dataset under their paths relative to the table (a/001.jpg and b/001.jpg are two images)."""
    split_dir.mkdir(exist_ok=True)
    if copy:
        layout = "labels_table" in part
        names = part["filename"] if layout else [Path(p).name for p in part["path"]]
        for src, name in zip(part["path"], names):
            dst = split_dir / name
            if not dst.exists():  # copied under a temporary name: a killed copy is never half a JPEG
                dst.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dst) as tmp:
                    shutil.copy2(src, tmp)
        part = part.assign(path=[str((split_dir / n).resolve()) for n in names])
    write_csv(part, split_dir / "manifest.csv")


def summarize(usable: pd.DataFrame, rejected: pd.DataFrame) -> dict:
    bins = usable["age"].map(age_group)
    race = usable["race"].map(lambda r: "unknown" if pd.isna(r) else RACE_NAMES[int(r)])
    gender = usable["gender"].map(lambda g: GENDER_NAMES[int(g)])
    tables = {
        "age_group": pd.crosstab(pd.Series(pd.Categorical(bins, AGE_GROUP_LABELS), name="age_group"), usable["split"]),
        "gender": pd.crosstab(gender, usable["split"]),
        "race": pd.crosstab(race, usable["split"]),
    }
    dup_groups = usable["content_hash"].duplicated(keep=False)
    return {
        "n_usable": len(usable),
        "n_rejected": len(rejected),
        "per_split": usable["split"].value_counts().to_dict(),
        "tables": tables,
        "quirks": usable.loc[usable["name_note"] != "", ["filename", "name_note"]].to_dict("records"),
        "rejected": rejected.to_dict("records"),
        "n_in_duplicate_groups": int(dup_groups.sum()),
        "n_duplicate_groups": int(usable.loc[dup_groups, "content_hash"].nunique()),
        "faces": usable["face_status"].value_counts().to_dict() if "face_status" in usable else {},
        **_identities(usable),
    }


def _identities(usable: pd.DataFrame) -> dict:
    """How many persons (ids), how many fold groups they form, and how many groups are in both splits
    (0 unless folds recorded before the ids existed keep an identity apart: --reassign fixes that)."""
    groups = identity_groups(usable)
    if groups is None:
        return {"n_identities": 0, "n_identity_groups": 0, "identity_groups_straddling": 0}
    ids = usable["id"][usable["id"].map(_has_id)].astype(str)
    straddling = usable.groupby(groups.to_numpy())["split"].nunique() > 1
    return {
        "n_identities": int(ids.nunique()),
        "n_identity_groups": int(groups.nunique()),
        "identity_groups_straddling": int(straddling.sum()),
    }
