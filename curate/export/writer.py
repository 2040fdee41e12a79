"""Split folders: UTKFace names with the corrected labels, originals placed, augmented images written,
all in a temporary folder renamed into place.

Output
------
ROOT/NAME/manifest.csv (readable by trainer.data.read_manifest), export.json (provenance, policy,
counts), EXPORT.md (the same for people), removed.csv, corrections.csv, and the images: generated
ones always, the kept originals when `images` is "copy" or "link" (hard link, falling back to a copy),
named in UTKFace's scheme with the corrected labels. With `images="ref"` the manifest points at the
original files and its `filename` column carries the UTKFace name with the corrected labels.
A dataset read from a labels table (curate.sources; its manifest has `labels_table`) keeps its layout
instead: images under their paths relative to the table, the labels (corrected ones included) in the
split's labels.csv, which `curate split` reads back as a labels-table dataset. Every
split is built in a temporary folder and renamed into place; an existing split is replaced only with
`force`, and the source split and the test split are never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath

import cv2
import pandas as pd

from core.atomic import pid_alive
from core.images import pixel_hash
from core.labels import age_group
from curate.export.common import EXPORT_COLUMNS, JPEG_QUALITY, ExportError
from curate.export.oversample import OversamplePlan, apply_transform, draw_transform, transform_rng
from curate.splits import _NAME_RE


def utk_name(filename: str, age: int, gender: int, race, suffix: str = "") -> str:
    """A UTKFace name carrying the given labels and the original file's datetime stamp."""
    m = _NAME_RE.match(filename)
    stamp = m["stamp"] if m else hashlib.blake2b(filename.encode(), digest_size=6).hexdigest()
    ext = ".jpg.chip.jpg" if (m is not None and m["chip"]) else _ext(m["ext"] if m else Path(filename).suffix)
    race_part = "" if race is None or pd.isna(race) else f"{int(race)}_"
    if suffix:
        ext = ".jpg"
    return f"{int(age)}_{int(gender)}_{race_part}{stamp}{suffix}{ext}"


def _ext(ext: str) -> str:
    """The source's format in a copy's name (a PNG stays .png: tools that trust extensions read it right)."""
    e = ext.lower().lstrip(".")
    return ".jpg" if e in ("jpg", "jpeg", "") else f".{e}"


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        if k:
            stem, dot, rest = n.partition(".")
            n = f"{stem}_dup{k}{dot}{rest}"
        out.append(n)
    return out


def _write_image(src: str, dst: Path, mode: str) -> None:
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def keeps_layout(df: pd.DataFrame) -> bool:
    """Whether the rows came from a labels table: their files keep their relative paths on export (no
    UTKFace names, whose labels would disagree with the table's)."""
    return "labels_table" in df and bool(df["labels_table"].notna().any())


def layout_aug_name(filename: str, k: int) -> str:
    """An augmented copy's name beside its source's: a/001.jpg -> a/001_aug3.jpg (always JPEG)."""
    p = PurePosixPath(filename)
    return str(p.with_name(f"{p.name.split('.')[0]}_aug{k}.jpg"))


LABELS_FILE_COLUMNS = ["path", "age", "gender", "race", "id", "original_age", "original_gender", "label_source",
                       "label_note", "generated", "source_filename"]  # fmt: skip


def labels_file(df: pd.DataFrame, final_dir: Path) -> pd.DataFrame:
    """A split's labels.csv (the curate.sources schema plus provenance): paths relative to the split folder
    for the images placed in it, absolute for the ones referenced (`images="ref"`)."""
    final = str(final_dir) + os.sep
    rel = [p[len(final) :] if str(p).startswith(final) else str(p) for p in df["path"]]
    return df.assign(path=rel)[[c for c in LABELS_FILE_COLUMNS if c in df]]


class SplitWriter:
    """Builds ROOT/.NAME.tmp-PID and renames it to ROOT/NAME on commit (replacing only with force)."""

    def __init__(self, root: Path, name: str, force: bool, protected: list[Path]):
        self.final = (root / name).resolve()
        for p in protected:
            if self.final == Path(p).resolve():
                raise ExportError(f"{self.final}: refusing to write over the source or test split")
        if self.final.exists() and not force:
            raise ExportError(
                f"{self.final}: split already exists; pass --force to replace it, or choose another --name"
            )
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root, name)
        self.tmp = root / f".{name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()

    def commit(self) -> Path:
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _remove_stale(root: Path, name: str) -> None:
    """Folders a killed export left (.NAME.tmp-PID, .NAME.old-PID) whose process is gone."""
    for p in root.glob(f".{name}.*-*"):
        kind, _, pid = p.name.rpartition("-")
        if not (kind.endswith((".tmp", ".old")) and pid.isdigit()) or pid_alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)


def place_originals(kept: pd.DataFrame, split_dir: Path, final_dir: Path, name: str, images: str) -> pd.DataFrame:
    out = kept.copy()
    out["source_path"] = out["path"]
    out["source_filename"] = out.get("source_filename", out["filename"])
    if keeps_layout(out):
        names = [str(f) for f in out["source_filename"]]
    else:
        labels = zip(out["source_filename"], out["age"], out["gender"], out["race"])
        names = _unique_names([utk_name(f, a, g, r) for f, a, g, r in labels])
    out["filename"] = names
    if images in ("copy", "link"):
        for src, nm in zip(out["source_path"], names):
            (split_dir / nm).parent.mkdir(parents=True, exist_ok=True)
            _write_image(src, split_dir / nm, images)
        out["path"] = [str(final_dir / nm) for nm in names]
    out["split"] = name
    out["generated"] = False
    return out


def finish_manifest(df: pd.DataFrame) -> pd.DataFrame:
    for c in EXPORT_COLUMNS:
        if c not in df:
            df[c] = ""
    df["age_group"] = df["age"].map(age_group)
    df["race"] = pd.to_numeric(df["race"], errors="coerce").astype("Int64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    return df[EXPORT_COLUMNS + [c for c in df.columns if c not in EXPORT_COLUMNS]]


def generate_oversampled(
    base: pd.DataFrame,
    plan: OversamplePlan,
    split_dir: Path,
    final_dir: Path,
    name: str,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Write the plan's augmented images into `split_dir`; return their manifest rows."""
    from tqdm import tqdm

    rows = []
    names_taken = set(base["filename"])
    layout = keeps_layout(base)
    for r, k in tqdm(plan.jobs, desc="augment", unit="img", disable=not progress, mininterval=1.0):
        src = base.iloc[r]
        img = cv2.imread(str(src["source_path"]), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"{src['source_path']}: cannot decode source image")
        t = draw_transform(transform_rng(seed, src["content_hash"], k, str(src["source_filename"])))
        ok, buf = cv2.imencode(".jpg", apply_transform(img, t), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ExportError(f"{src['source_path']}: cannot encode augmented image")
        if layout:
            fname = layout_aug_name(src["source_filename"], k)
        else:
            fname = utk_name(src["source_filename"], src["age"], src["gender"], src["race"], suffix=f"_aug{k}")
        while fname in names_taken:
            fname = fname.replace(".jpg", "x.jpg", 1)  # only on a stamp collision between two sources
        names_taken.add(fname)
        (split_dir / fname).parent.mkdir(parents=True, exist_ok=True)
        (split_dir / fname).write_bytes(buf.tobytes())
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        rows.append(
            {
                "path": str(final_dir / fname),
                "filename": fname,
                "age": int(src["age"]),
                "gender": int(src["gender"]),
                "race": src["race"],
                "fold": src["fold"],
                "split": name,
                "content_hash": pixel_hash(decoded),
                "width": decoded.shape[1],
                "height": decoded.shape[0],
                "name_note": "generated (augmented)",
                "source_path": src["source_path"],
                "source_filename": src["source_filename"],
                "original_age": src["original_age"],
                "original_gender": src["original_gender"],
                "label_source": src["label_source"],
                "gender_label_weight": src.get("gender_label_weight", 1.0),
                "age_label_weight": src.get("age_label_weight", 1.0),
                "review_tags": src["review_tags"],
                "generated": True,
                "source_content_hash": src["content_hash"],
                "transform": json.dumps(t, sort_keys=True),
                "seed": seed,
                **{c: src[c] for c in ("skin_category", "id", "labels_table") if c in src},
            }
        )
    return pd.DataFrame(rows)
