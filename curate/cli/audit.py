"""`curate audit`: per-image quality, skin-tone and duplicate audits without FiftyOne."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from curate.cli.common import SAMPLE_DIR, data_argument, fail, path_option, ray_option


def _inputs(source: Path) -> tuple[list[str], object]:
    """(paths, labels frame) from a folder (labels parsed from UTKFace names), a labels table (a
    CSV/Parquet file without content_hash, or a folder holding labels.csv / labels.parquet: its bad rows
    are named and left out) or a manifest CSV."""
    import pandas as pd

    from curate.sources import labels_table

    table = labels_table(source)
    if table is not None and not _is_manifest(table):
        return _table_inputs(source)
    if source.is_dir():
        return _folder_inputs(source)
    if source.is_file():
        try:
            df = pd.read_csv(source)
        except Exception as e:  # noqa: BLE001 - any parse error is a user error here
            fail(f"{source}: not a readable CSV manifest ({e})")
        if "path" not in df.columns:
            fail(f"{source}: manifest has no 'path' column (expected path, age, gender, race, content_hash)")
        base = source.parent
        paths = [str(p if Path(p).is_absolute() else (base / p)) for p in df["path"].astype(str)]
        labels = df[[c for c in ("age", "gender", "race") if c in df.columns]].copy()
        return _once_each(source, paths, labels)
    fail(f"{source}: no such folder or manifest (nor labels table)")
    raise AssertionError  # unreachable


def _once_each(source: Path, paths: list[str], labels):
    """A manifest's rows with each image file once (the first row that names it), saying which rows repeated one.

    Why: a file audited twice is its own exact duplicate, so both rows would be flagged (and as a label
    conflict where the rows' labels differ) for what is a slip in the table, not in the data."""
    import os

    first: dict[str, int] = {}
    keep, repeats = [], []
    for i, p in enumerate(paths):
        real = os.path.realpath(p)
        if real in first:
            repeats.append(f"row {i + 2} repeats row {first[real] + 2} ({Path(p).name})")
        else:
            first[real] = i
            keep.append(i)
    if repeats:
        click.echo(f"note: {source}: {len(repeats)} row(s) name an image already listed, audited once: "
                   f"{'; '.join(repeats[:3])}{'; ...' if len(repeats) > 3 else ''}")  # fmt: skip
    return [paths[i] for i in keep], labels.iloc[keep].reset_index(drop=True)


def _is_manifest(p: Path) -> bool:
    """A split manifest (it has content hashes) rather than a labels table."""
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        cols = pq.read_schema(p).names if p.suffix.lower() == ".parquet" else pd.read_csv(p, nrows=0).columns
    except Exception:  # noqa: BLE001 - unreadable: the labels-table reader says why
        return False
    return "content_hash" in cols


def _folder_inputs(source: Path) -> tuple[list[str], object]:
    """Every image-named file of a UTKFace folder, with the labels its name gives (none when it gives none)."""
    import pandas as pd

    from core.images import list_images
    from curate.splits import parse_name

    paths = list_images(source)
    if not paths:
        fail(f"{source}: no image files (.jpg, .jpeg, .png, .bmp, .webp)")
    files = {p.resolve() for p in paths if not p.is_symlink()}
    links = [p for p in paths if p.is_symlink() and p.resolve() in files]
    if links:  # one file, one row (as `curate split` reads the folder): the link would repeat its target's row
        click.echo(f"note: {len(links)} link(s) to images of the folder left out, e.g. {links[0].name} -> "
                   f"{links[0].resolve().name}")  # fmt: skip
        paths = [p for p in paths if p not in links]
    labels, unlabelled = [], []
    for p in paths:
        try:
            pn = parse_name(p.name)
            labels.append({"age": pn.age, "gender": pn.gender, "race": pn.race})
        except ValueError as e:
            labels.append({"age": None, "gender": None, "race": None})
            unlabelled.append(f"{p.name} ({e})")
    if unlabelled:  # audited for quality all the same; `curate split` rejects them, so counts differ: say why
        click.echo(f"note: {len(unlabelled)} image(s) audited without labels (their names give none; `curate split` "
                   f"rejects them), e.g. {unlabelled[0]}")  # fmt: skip
    return [str(p) for p in paths], pd.DataFrame(labels, columns=["age", "gender", "race"])


def _table_inputs(source: Path) -> tuple[list[str], object]:
    """The usable rows of a labels table; each rejected row is named once with its reason."""
    from curate.sources import labels_table, scan_table

    usable, rejected = scan_table(labels_table(source), progress=False)
    for r in rejected.itertuples():
        click.echo(f"  rejected {r.filename!r}: {r.reason}")
    if usable.empty:
        fail(f"{source}: no usable image ({len(rejected)} rejected)")
    return usable["path"].tolist(), usable[["age", "gender", "race"]].reset_index(drop=True)


@click.command()
@data_argument("source")
@path_option(
    "--out",
    default=Path("audits.parquet"),
    show_default=True,
    help="Audit table (parquet); OUT.meta.json and OUT.dup_pairs.parquet are written next to it.",
)
@click.option("--workers", type=int, default=None, help="Processes (default: all CPUs available).")
@click.option("--near-radius", type=int, default=None, help="phash Hamming radius of near duplicates (default 2).")
@click.option(
    "--robust-k",
    type=float,
    default=3.0,
    show_default=True,
    help="Flag images beyond k robust standard deviations (MAD) of the dataset.",
)
@click.option(
    "--thresholds",
    "thresholds_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="JSON of quality thresholds: a full set (e.g. another audit's .meta.json) replaces the "
    "dataset statistics; a partial dict overrides single values.",
)
@path_option("--save-thresholds", help="Also write the thresholds used as JSON (for `curate predict`).")
@click.option("--no-cache", is_flag=True, help="Recompute everything (the cache is under $CURATE_CACHE_DIR/audits).")
@ray_option("The per-image audit as Ray tasks")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def audit(**o) -> None:
    """Audit every image of SOURCE: quality (BRISQUE, blur, exposure, contrast, entropy, grayscale,
    size), skin tone (ITA, Monk) and duplicates (exact, near, label conflicts).

    SOURCE is a folder of images (UTKFace labels are parsed from the names), a labels table (CSV/Parquet
    file, or a folder holding labels.csv or labels.parquet; schema in `curate split --help`) or a split
    manifest CSV (columns path, age, gender, race, content_hash); default: the embedded sample. One decode per
    image, all CPUs, cached by content hash: a second run takes seconds.
    """
    from audits.runner import run_audit, write_audit
    from audits.thresholds import QualityThresholds
    from core.atomic import check_output

    check_output(o["out"])  # before minutes of audit, not after
    paths, labels = _inputs(o["source"] or SAMPLE_DIR)
    cfg = _audit_config(o)
    t0 = time.perf_counter()
    result = run_audit(paths, labels=labels, config=cfg)
    written = write_audit(result, o["out"])
    if o["save_thresholds"]:
        QualityThresholds.from_dict(result.meta["quality_thresholds"]).save(o["save_thresholds"])
    _print_audit(result.meta, time.perf_counter() - t0, written)


def _audit_config(o: dict):
    """The runner's AuditConfig from the options, with --thresholds applied."""
    from audits.duplicates import DEFAULT_NEAR_RADIUS
    from audits.runner import AuditConfig

    cfg = AuditConfig(
        workers=o["workers"],
        near_radius=DEFAULT_NEAR_RADIUS if o["near_radius"] is None else o["near_radius"],
        robust_k=o["robust_k"],
        use_cache=not o["no_cache"],
        progress=not o["quiet"],
        ray_address=o["ray_address"],
    )
    if o["thresholds_path"] is not None:
        _apply_thresholds(cfg, o["thresholds_path"])
    return cfg


def _apply_thresholds(cfg, path: Path) -> None:
    """A complete saved set (it names its `source`) replaces the dataset statistics; a partial dict overrides."""
    from audits.thresholds import QualityThresholds

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fail(f"{path}: not a JSON file ({e})")
    raw = raw.get("quality_thresholds", raw)
    try:
        full = QualityThresholds.from_dict(raw)
        if "source" in raw:  # a complete saved set: use it as is
            cfg.thresholds = full
        else:
            cfg.threshold_overrides = {k: float(v) for k, v in raw.items() if k != "details"}
    except (TypeError, ValueError) as e:
        fail(f"{path}: {e}")


def _print_audit(m: dict, wall: float, written: dict) -> None:
    """The run's counts: statuses, quality flags, skin tones, duplicate groups, and the files written."""
    click.echo(
        f"audited {m['n_images']} images in {wall:.1f} s ({m['timing']['computed']} computed, "
        f"{m['timing']['from_cache']} from cache); status ok: {m['n_ok']}"
    )
    for status, n in m["status_counts"].items():
        if status != "ok":
            click.echo(f"  {status}: {n}")
    click.echo(
        f"low quality: {m['flag_counts']['is_low_quality_issue']}  ("
        + ", ".join(
            f"{k[3:-6]} {v}" for k, v in m["flag_counts"].items() if k not in ("is_low_quality_issue", "is_face_issue")
        )
        + ")"
    )
    click.echo("skin tone: " + ", ".join(f"{k} {v}" for k, v in m["skin_category_counts"].items()))
    if "face" in m:
        f = m["face"]
        why = ", ".join(f"{k} {v}" for k, v in f["reasons"].items())
        click.echo(f"faces: {f['flagged']} flagged ({why + '; ' if why else ''}a face offset above "
                   f"{f['face_offset_max']:g} px counts)")  # fmt: skip
    d = m["duplicates"]
    click.echo(
        f"exact duplicate groups: {d['exact_groups']} ({d['images_in_exact_groups']} images), "
        f"{d.get('exact_groups_label_conflict', 0)} with conflicting labels; near groups (radius "
        f"{d['near_radius']}): {d['near_groups']} ({d['images_in_near_groups']} images); "
        f"images with a conflicting duplicate: {d['images_with_label_conflict']}"
    )
    click.echo(f"wrote {written['table']}, {written['meta']}, {written['pairs']}")
