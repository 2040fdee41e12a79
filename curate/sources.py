"""Datasets that are not UTKFace-named: a labels table (CSV or Parquet) naming photos in any folders.

Why a second source: UTKFace carries its labels in its file names; other face datasets keep them in a
table. `scan_table` returns exactly what `curate.splits.scan_folder` returns (usable rows in the
manifest schema, rejected rows path/filename/reason; `curate.splits.scan_source` picks the reader), so
every later step (folds, manifests, audits, FiftyOne, export) works unchanged.

Schema (column names are matched case-insensitively):

    path    required  image file, relative to the table's folder or absolute
    age     required  whole years, 0-120
    gender  required  0/1 or male/female/m/f (any case); 0 = male, 1 = female (UTKFace's convention)
    race    optional  0-4 or White/Black/Asian/Indian/Others (any case); blank = unknown
    id      optional  identity (person): all images of one id share a fold (curate.splits)

Each bad row is rejected once, with "row N: problem" as its reason (N counts the table's rows from 1,
header not counted). A missing required column is an error about the whole file. A CSV may be separated
by ",", ";", tab or "|" (read from its header), and a path written on Windows (a\\b.jpg) is found as a/b.jpg:
tables come from spreadsheets and other systems, and failing every row on the form would say nothing useful.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd

from core.errors import CurateError
from core.images import IMAGE_EXTS, decode_image, full_size, pixel_hash
from core.labels import MAX_AGE, RACE_NAMES, gender_code
from core.manifest import MANIFEST_COLUMNS

LABEL_FILES = ("labels.csv", "labels.parquet")  # a folder holding one of these is a labels-table dataset
REQUIRED = ("path", "age", "gender")
OPTIONAL = ("race", "id")
_RACES = {name.lower(): i for i, name in enumerate(RACE_NAMES)} | {"other": len(RACE_NAMES) - 1}
DELIMITERS = (",", ";", "\t", "|")  # what a CSV "labels table" is separated by (spreadsheets export ; or tabs)


class SourceError(CurateError, ValueError):
    """A labels table cannot be used at all (unreadable, or a required column is missing)."""


def labels_table(source: Path) -> Path | None:
    """The labels table `source` stands for: the file itself (CSV/Parquet), or the labels.csv /
    labels.parquet in a folder; None for a folder without one (a UTKFace-named folder)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in IMAGE_EXTS:  # not a table to decode as text
        raise SourceError(f"{source}: is an image; give the folder that holds it, or a labels table (CSV/Parquet)")
    if source.is_file():
        return source
    if not source.is_dir():
        return None
    found = [source / n for n in LABEL_FILES if (source / n).is_file()]
    if len(found) > 1:  # picking one silently could split the stale one: the user says which
        raise SourceError(
            f"{source}: holds both {' and '.join(p.name for p in found)}; pass the table's path (e.g. {found[0]})"
        )
    return found[0] if found else None


def scan_table(table: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every row of a labels table and decode its image once; (usable, rejected) as `scan_folder`."""
    from tqdm import tqdm

    table = Path(table).resolve()
    raw = read_labels(table)
    rows, rejected, seen = [], [], {}
    for n, r in enumerate(tqdm(raw.to_dict("records"), desc="scan", unit="img", disable=not progress, mininterval=0.5)):
        path, name = _locate(table.parent, r["path"])
        row, problem = _read_row(r, path, name, seen, n + 1)
        if problem:
            rejected.append({"path": str(path or ""), "filename": name, "reason": f"row {n + 1}: {problem}"})
        else:
            rows.append(row | {"labels_table": str(table)} | ({"id": r["id"] or None} if "id" in raw else {}))
    scanned = [c for c in MANIFEST_COLUMNS if c not in ("fold", "split")]
    usable = pd.DataFrame(rows, columns=scanned + (["id"] if "id" in raw else []) + ["labels_table"])
    usable["race"] = usable["race"].astype("Int64")
    return usable, pd.DataFrame(rejected, columns=["path", "filename", "reason"])


def _read_row(r: dict, path: Path | None, name: str, seen: dict[Path, int], n: int) -> tuple[dict | None, str]:
    """(manifest row, "") for a usable table row, (None, why not) otherwise: path, labels, then the image
    (the cheap checks first: a row with a bad label is never decoded)."""
    problem = _path_problem(r, path, seen, n)
    if problem:
        return None, problem
    try:
        age, gender, race = parse_labels(r)
    except ValueError as e:
        return None, str(e)
    img, problem = decode_image(path)
    if img is None:
        return None, problem
    seen[_file_key(path)] = n  # only a usable row claims its file: a later row of it is then a duplicate
    row = {"path": str(path.resolve()), "filename": name, "age": age, "gender": gender, "race": race}
    width, height = full_size(path, img)
    return row | {"content_hash": pixel_hash(img), "width": width, "height": height, "name_note": ""}, ""


def read_labels(table: Path) -> pd.DataFrame:
    """The table as strings ("" for blanks), column names lower-cased; a whole-file problem is one error."""
    encoding = None if table.suffix.lower() == ".parquet" else text_encoding(table)  # the table read once for it
    sep = "," if encoding is None else csv_delimiter(table, encoding)
    try:
        if table.suffix.lower() == ".parquet":
            raw = pd.read_parquet(table)
            raw = raw.astype(object).where(raw.notna(), "")
            raw = raw.map(_plain)
        else:
            raw = pd.read_csv(table, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True,
                              encoding=encoding)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types for a damaged or wrong file
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        raise SourceError(f"{table}: not a readable CSV or Parquet labels table ({type(e).__name__}: {msg})") from None
    given = [str(c).strip() for c in raw.columns]
    raw.columns = [c.lower() for c in given]
    twice = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1 and c in (*REQUIRED, *OPTIONAL)})
    if twice:  # "age" and "Age": which one holds the labels cannot be guessed
        both = [g for g in given if g.lower() == twice[0]]
        raise SourceError(f"{table}: columns {' and '.join(map(repr, both))} are one column to curate (names are "
                          "read without case): rename or drop one")  # fmt: skip
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise SourceError(
            f"{table}: missing required column(s) {', '.join(missing)}; it has: "
            f"{', '.join(map(str, raw.columns)) or 'no columns'} (needs path, age, gender; optional race, id)"
            + (f"; the file seems to be separated by {sep!r}" if sep != "," else "")
        )
    if raw.empty:  # "no usable image (0 rejected)" would not say that the table lists nothing
        raise SourceError(f"{table}: the labels table has its columns but no rows (one row per image: path, age, "
                          "gender)")  # fmt: skip
    return raw[[c for c in (*REQUIRED, *OPTIONAL) if c in raw.columns]].map(lambda v: str(v).strip())


def text_encoding(table: Path) -> str:
    """The encoding of a CSV labels table: UTF-16 where it starts with its byte-order mark (Excel's "Unicode
    text"), UTF-8 (with or without BOM) where it decodes as such, else Windows-1252 (Excel's "CSV" on Windows in
    Western locales; a name misread then shows as a missing file, named)."""
    try:
        data = Path(table).read_bytes()
    except OSError:
        return "utf-8-sig"  # pandas names the problem
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    try:
        data.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "cp1252"


def csv_delimiter(table: Path, encoding: str | None = None) -> str:
    """The separator of a CSV labels table, read from its header line: the one that yields the required
    columns, else the most frequent candidate (a spreadsheet in a ';' or tab locale exports those), else ','.

    Why not guess from the data: a path may hold ',' or ';'; the header holds only column names."""
    try:
        with open(table, encoding=encoding or text_encoding(table), errors="replace", newline="") as f:
            header = f.readline(65536)
    except OSError:
        return ","  # pandas names the problem
    for d in DELIMITERS:
        fields = {c.strip().lower() for c in next(csv.reader([header], delimiter=d), [])}
        if set(REQUIRED) <= fields:
            return d
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # the first (",") on a tie
    return best if counts[best] else ","


def _plain(v: object) -> str:
    """A Parquet cell as the text a CSV would hold (12.0 -> "12", so an int column with gaps reads the same)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _locate(root: Path, given: str) -> tuple[Path | None, str]:
    """(absolute path, unique name): the name is the path relative to the table's folder, so that
    a/001.jpg and b/001.jpg stay two images; a file outside that folder is named external/<its path>."""
    if not given:
        return None, ""
    p = _resolve(root, given)
    if not os.path.lexists(p) and "\\" in given and os.sep == "/":  # a table written on Windows
        q = _resolve(root, given.replace("\\", "/"))
        p = q if os.path.lexists(q) else p
    try:
        return p, p.relative_to(root).as_posix()
    except ValueError:
        return p, "external/" + p.as_posix().lstrip("/")


def _resolve(root: Path, given: str) -> Path:
    """`given` as an absolute, normalised path (relative paths are relative to the table's folder)."""
    return Path(os.path.normpath(given if os.path.isabs(given) else root / given))


def row_numbers(table: Path) -> dict[str, int]:
    """Unique name (as `scan_table` gives it) -> the table row it came from (the first, for a path listed
    twice). Why: a step after the scan (`split --align`) rejects rows too, with the row number every
    rejected row of a table carries."""
    table = Path(table).resolve()
    out: dict[str, int] = {}
    for n, given in enumerate(read_labels(table)["path"], start=1):
        out.setdefault(_locate(table.parent, given)[1], n)
    return out


def _path_problem(r: dict, path: Path | None, seen: dict[Path, int], n: int) -> str:
    """Why a row's path cannot be used ("" when it can). A file a usable row already has (the same path, another
    spelling of it, or a link to it) is a duplicate: two rows would give one file two labels, and every later
    step keys an image on its file."""
    if path is None:
        return "no path"
    if not os.path.lexists(path):
        return f"missing file {r['path']}" + _other_case(path)
    first = seen.get(_file_key(path))
    if first is not None:
        link = " through a link" if path.is_symlink() else ""
        return f"duplicate path {r['path']}: the same file as row {first}{link}"
    return ""


def _other_case(path: Path) -> str:
    """ " (there is X: names are case-sensitive)" when the folder holds the name in another case, else ""."""
    try:
        near = [n for n in os.listdir(path.parent) if n.lower() == path.name.lower()]
    except OSError:
        return ""
    return f" (there is {near[0]}: names are case-sensitive)" if near else ""


def _file_key(path: Path) -> Path:
    """The file a path stands for (links followed; a broken or looping link stands for itself)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def parse_labels(r: dict) -> tuple[int, int, int | None]:
    """(age, gender, race) of one row; ValueError with the reason when a value cannot be used."""
    age_s, gender_s, race_s = r["age"], r["gender"], r.get("race", "")
    if not age_s:
        raise ValueError("age missing")
    try:
        age_f = float(age_s)
    except ValueError:
        raise ValueError(f"age {age_s!r} is not a number") from None
    if not math.isfinite(age_f):  # "inf", "NaN": float() reads them, no table means them
        raise ValueError(f"age {age_s!r} is not a number")
    if not age_f.is_integer():
        raise ValueError(f"age {age_s} is not whole years")
    if not 0 <= age_f <= MAX_AGE:
        raise ValueError(f"age {age_s} outside 0-{MAX_AGE}")
    if not gender_s:
        raise ValueError("gender missing")
    gender = gender_code(gender_s)
    if gender is None:
        raise ValueError(f"gender {gender_s!r} is not 0/1/male/female/m/f")
    return int(age_f), gender, _race(race_s)


def _race(s: str) -> int | None:
    if not s:
        return None
    race = _RACES.get(s.lower())
    if race is None and s.removesuffix(".0").isdigit():
        race = int(s.removesuffix(".0"))
    if race is None or not 0 <= race < len(RACE_NAMES):
        raise ValueError(f"race {s!r} outside 0-{len(RACE_NAMES) - 1} / {'/'.join(RACE_NAMES)}")
    return race
