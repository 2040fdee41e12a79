"""The whole export: read the source split, apply the review, write the cleaned and oversampled splits."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import write_csv
from core.labels import GENDER_NAMES, RACE_NAMES
from core.manifest import TEST_SPLIT, TRAIN_SPLIT, DataError, manifest_hash, read_manifest
from core.schema import columns as schema_columns
from core.schema import upgrade_columns
from curate.export.common import ExportError, Policy
from curate.export.oversample import plan_oversampling
from curate.export.review import apply_decisions, has_decision, match_review, normalize_review
from curate.export.writer import (
    SplitWriter,
    finish_manifest,
    generate_oversampled,
    keeps_layout,
    labels_file,
    place_originals,
)

SCHEMA_NAMES = [c.name for c in schema_columns()]


def with_issue_columns(src: pd.DataFrame, audits: pd.DataFrame, review: pd.DataFrame) -> pd.DataFrame:
    """`src` with the one schema's columns for its rows: the audits' checks, then the label checks the
    review carries (flag-mislabels' scores from FiftyOne or a --flags file). The exported manifest and
    removed.csv then say how each image scored, under the names Parquet and FiftyOne use; columns the
    manifest already has (width, height) are left as they are."""
    out = src.copy()
    rv = review[review["split"] == "source"] if "split" in review else review
    rv = rv.drop_duplicates("filename").set_index("filename") if "filename" in rv else rv.iloc[0:0]
    names = out["filename"].astype(str)
    for c in SCHEMA_NAMES:
        if c in out:
            continue
        if c in audits:
            out[c] = audits[c].to_numpy()
        elif c in rv and rv[c].notna().any():
            out[c] = names.map(rv[c]).to_numpy()
    return out


def load_audits(path: str | Path, df: pd.DataFrame, warnings: list[str] | None = None) -> pd.DataFrame:
    """The one schema's columns an audits table holds (skin_category, is_low_quality_issue, every check's
    measurements, score, flag and reason), aligned with `df`'s rows: joined on path, file name or content
    hash, whichever of those the audits table has matches the most rows.

    An audit of other images (the photos, for a split of their aligned crops) would leave every row without
    a skin tone or a quality flag, and oversampling or --drop-low-quality would quietly do nothing: an error
    when under half of `df` is in the table, a warning (into `warnings`) when some rows are missing."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: audits file not found")
    a = upgrade_columns(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path), str(path))
    keys = [k for k in ("path", "filename", "content_hash") if k in a]
    if not keys:
        raise ExportError(f"{path}: audits table needs a path, filename or content_hash column")
    mine = {k: df[k].astype(str) for k in keys}
    key = max(keys, key=lambda k: int(mine[k].isin(set(a[k].astype(str))).sum()))  # first of equals wins
    n_in = int(mine[key].isin(set(a[key].astype(str))).sum())
    if n_in * 2 < len(df):
        raise ExportError(
            f"{path}: {len(df) - n_in} of {len(df)} images are not in this audits table (joined "
            "on path, file name or content hash): audit them (`curate audit` on their manifest)"
        )
    if n_in < len(df) and warnings is not None:
        warnings.append(f"{len(df) - n_in} of {len(df)} images are not in the audits table {path}: no skin tone or "
                        "quality flag for them")  # fmt: skip
    t = a.drop_duplicates(key).set_index(a.drop_duplicates(key)[key].astype(str))
    return pd.DataFrame({c: mine[key].map(t[c]).to_numpy() for c in SCHEMA_NAMES if c in a}, index=df.index)


@dataclass
class ExportOptions:
    """One export: where from and to, the review and policy, how images are written, oversampling."""

    source: str | Path = f"dataset/{TRAIN_SPLIT}"
    root: str | Path = "dataset"
    name: str = "train_cleaned"
    review: pd.DataFrame | None = None
    review_source: str = ""
    policy: Policy = field(default_factory=Policy)
    images: str = "ref"  # ref (manifest points at the originals), copy, or link
    oversample: bool = False
    oversample_name: str | None = None
    by: list[str] | None = None
    targets: dict[str, object] | None = None
    max_factor: float = 5.0
    audits: str | Path | None = None
    seed: int = 0
    force: bool = False
    allow_missing: bool = False
    test_split: str | Path | None = None
    progress: bool = False
    review_lists_all: bool = False  # the review holds every sample of a dataset (--dataset), not only decisions


def export(opts: ExportOptions) -> dict:
    """Write the cleaned split (and the oversampled one); returns the summary also saved as export.json."""
    t0 = time.time()
    if opts.images not in ("ref", "copy", "link"):
        raise ExportError("images must be ref, copy or link")
    src, src_dir = _read_source(opts.source)
    test_dir, test = _test_split(opts, src, src_dir)
    warnings = (
        []
        if test is not None
        else [f"no test split found at {test_dir}: overlap with the test split not checked (pass --test-split)"]
    )
    review, n_review_test = _review_for(opts, src, test, warnings)
    audit_cols = load_audits(opts.audits, src, warnings) if opts.audits else pd.DataFrame(index=src.index)
    if "skin_category" in audit_cols:
        src["skin_category"] = audit_cols["skin_category"]
    kept, removed, corrections = apply_decisions(
        with_issue_columns(src, audit_cols, review), review, opts.policy, audit_cols.get("is_low_quality_issue")
    )
    kept["source_filename"] = kept["filename"]
    if kept.empty:
        raise ExportError("every image was removed: nothing to export")
    summary = _summary(
        opts, src, test_dir if test is not None else None, review, n_review_test, removed, corrections, warnings
    )
    summary["n_suspects_kept"] = _suspects_kept(kept)
    _warn_leftovers(opts, summary)
    writers = [SplitWriter(opts.root, opts.name, opts.force, [src_dir, test_dir])]
    try:
        splits = {"cleaned": _write_cleaned(opts, kept, writers[0], summary)}
        if opts.oversample:
            oname = opts.oversample_name or f"{opts.name}_oversampled"
            writers.append(SplitWriter(opts.root, oname, opts.force, [src_dir, test_dir, writers[0].final]))
            splits["oversampled"] = _write_oversampled(opts, kept, splits["cleaned"], writers[1], summary)
        _write_tables(splits, writers, removed, summary, t0)
        written = {w.final.name: w.commit() for w in writers}
    except BaseException:
        for w in writers:
            w.abort()
        raise
    summary["written"] = {k: str(v) for k, v in written.items()}
    return summary


def _read_source(source: str | Path) -> tuple[pd.DataFrame, Path]:
    """The source split's manifest, with the optional columns filled, and its folder."""
    try:
        src = read_manifest(source)
    except DataError as e:
        raise ExportError(str(e)) from None
    if "filename" not in src:
        src["filename"] = [os.path.basename(p) for p in src["path"]]
    for c in ("race", "fold", "width", "height", "name_note"):
        if c not in src:
            src[c] = np.nan if c != "name_note" else ""
    return src, Path(source) if Path(source).is_dir() else Path(source).parent


def _test_split(opts: ExportOptions, src: pd.DataFrame, src_dir: Path) -> tuple[Path, pd.DataFrame | None]:
    """The test split (given, else next to the source split, else under ROOT), checked for no overlap."""
    root = Path(opts.root)
    if opts.test_split:
        test_dir = Path(opts.test_split)
        if not (test_dir / "manifest.csv").exists():
            raise ExportError(f"{test_dir}: test split manifest not found")
    else:
        candidates = (src_dir.parent / TEST_SPLIT, root / TEST_SPLIT)
        test_dir = next((d for d in candidates if (d / "manifest.csv").exists()), candidates[0])
    if not (test_dir / "manifest.csv").exists():
        return test_dir, None
    test = pd.read_csv(test_dir / "manifest.csv", dtype={"content_hash": str})
    leak = set(src["content_hash"]) & set(test["content_hash"])
    if leak:
        raise ExportError(
            f"{opts.source}: {len(leak)} image(s) are also in the test split {test_dir}; "
            "export only from a training split"
        )
    return test_dir, test


def _review_for(
    opts: ExportOptions, src: pd.DataFrame, test: pd.DataFrame | None, warnings: list[str]
) -> tuple[pd.DataFrame, int]:
    """The review matched to the source (and test) manifests, and how many of its rows are on the test split."""
    n_review_test = 0
    if opts.review is not None:
        if opts.review_lists_all:  # first: a split of other images would make every review row look missing
            _check_coverage(opts, src, opts.review, warnings)
        manifests = {"source": src} | ({"test": test} if test is not None else {})
        review, w = match_review(opts.review, manifests, allow_missing=opts.allow_missing)
        warnings += w
        n_review_test = int(((review["split"] == "test") & has_decision(review)).sum())  # decisions, not listed samples
        notes = review.get("decision_note", pd.Series(dtype=str)).fillna("")
        if (notes != "").any():
            warnings.append(f"{int((notes != '').sum())} review row(s) whose decision column and tags disagree: the "
                            f"decision column was obeyed (first: {notes[notes != ''].iloc[0]})")  # fmt: skip
    else:
        review = normalize_review(pd.DataFrame({"filename": []}))
    if not opts.review_lists_all:  # a dataset lists every sample it holds (its coverage is checked above)
        _check_suspects_listed(opts.policy, review, src)
    return review, n_review_test


def _check_suspects_listed(policy: Policy, review: pd.DataFrame, src: pd.DataFrame) -> None:
    """A suspect policy acts on the unreviewed images the review lists with their flags. A review-status CSV lists
    only the reviewed ones: with images of the split left out and no unreviewed one listed, the policy could only
    do nothing, which the user asked not to happen: an error saying where the flags are."""
    acts = [f for f, on in (("--drop-suspects", policy.drop_suspects), ("--mask-suspects", policy.mask_suspects),
                            ("--relabel-suspects", policy.relabel_suspects)) if on]  # fmt: skip
    unlisted = int((~src["filename"].astype(str).isin(set(review["filename"].astype(str)))).sum())
    if acts and unlisted and not (~has_decision(review)).any():
        raise ExportError(
            f"{acts[0]}: the review lists no unreviewed image ({unlisted} of the split's {len(src)} are not in it), "
            "so no suspect could be acted on (a review-status CSV holds reviewed samples only: use --dataset NAME "
            "or add --flags FILE)"
        )


def _check_coverage(opts: ExportOptions, src: pd.DataFrame, review: pd.DataFrame, warnings: list[str]) -> None:
    """A dataset's review lists every sample it scored: when most of the source split is not among them, the
    split and the dataset hold different images (e.g. a split of the originals, a dataset of their aligned
    crops), and exporting would apply none of its flags. An error then (a warning with --allow-missing)."""
    hashes = dict(zip(review["filename"].astype(str), review["content_hash"].astype(str)))
    same = [f in hashes and hashes[f] in ("", str(h)) for f, h in zip(src["filename"].astype(str), src["content_hash"])]
    n_in = sum(same)
    if n_in == len(src):
        return
    msg = (f"{len(src) - n_in} of the {len(src)} images of {opts.source} are not in {opts.review_source} (matched "
           "by file name and pixels): their labels are exported unflagged")  # fmt: skip
    if n_in * 2 < len(src) and not opts.allow_missing:
        raise ExportError(
            f"{msg}. Export from the split the dataset was scored from (after `curate split --align`, the aligned "
            "split), or pass --allow-missing to export anyway"
        )
    warnings.append(msg)


def _suspects_kept(kept: pd.DataFrame) -> int:
    """Unreviewed label suspects (tag or flag) that leave the export with their label as it was: the default
    export's quiet choice, said in numbers so that nobody reads "removed 0" as "nothing doubtful left"."""
    tags = kept["review_tags"].fillna("").astype(str)
    flagged = tags.str.contains("suspect:", regex=False)
    for c in ("is_gender_label_issue", "is_age_label_issue"):
        if c in kept:
            flagged |= kept[c].fillna(False).astype(bool)
    reviewed = tags.str.contains("|".join(("exclude", "confirmed:")), regex=True)
    return int((flagged & ~reviewed & (kept["label_source"] == "original")).sum())


def _warn_leftovers(opts: ExportOptions, summary: dict) -> None:
    """Warnings about what this export leaves as it was: suspects kept unchanged (no suspect policy), and an
    oversampled split of an earlier export beside a cleaned split this one replaces."""
    p = opts.policy
    n = summary["n_suspects_kept"]
    if n and not (p.drop_suspects or p.mask_suspects or p.relabel_suspects):
        summary["warnings"].append(f"{n} unreviewed label suspect(s) kept as labelled: review them, or let "
                                   "--auto-clean, --mask-suspects or --drop-suspects act on them")  # fmt: skip
    stale = Path(opts.root) / (opts.oversample_name or f"{opts.name}_oversampled")
    if not opts.oversample and (stale / "manifest.csv").exists():
        summary["warnings"].append(f"{stale} is from an earlier export, not this one: export again with --oversample "
                                   "to replace it, or delete it")  # fmt: skip


def _summary(
    opts: ExportOptions,
    src: pd.DataFrame,
    test_dir: Path | None,
    review: pd.DataFrame,
    n_review_test: int,
    removed: pd.DataFrame,
    corrections: pd.DataFrame,
    warnings: list[str],
) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": str(Path(opts.source).resolve()),
        "source_manifest_hash": manifest_hash(src),
        "n_source": len(src),
        "test_split": str(test_dir.resolve()) if test_dir is not None else None,
        "review": opts.review_source or None,
        "review_rows": int(len(review)),
        "review_decisions": int(has_decision(review).sum()) if len(review) else 0,
        "review_rows_on_test_split": n_review_test,
        "policy": asdict(opts.policy),
        "images": opts.images,
        "seed": opts.seed,
        "removed": removed["reason"].value_counts().to_dict() if len(removed) else {},
        "n_removed": len(removed),
        "n_corrected": int(corrections["label_source"].isin(["corrected", "relabelled"]).sum()),
        "n_age_corrected": int((corrections["age"] != corrections["original_age"]).sum()),
        "n_gender_corrected": int((corrections["gender"] != corrections["original_gender"]).sum()),
        "n_relabelled": int((corrections["label_source"] == "relabelled").sum()),
        "n_gender_masked": int(corrections["label_note"].str.contains("gender masked", regex=False).sum()),
        "n_age_masked": int(corrections["label_note"].str.contains("age masked", regex=False).sum()),
        "warnings": warnings,
    }


def _write_cleaned(opts: ExportOptions, kept: pd.DataFrame, w: SplitWriter, summary: dict) -> pd.DataFrame:
    cleaned = finish_manifest(place_originals(kept, w.tmp, w.final, opts.name, opts.images))
    summary["cleaned"] = {
        "name": opts.name,
        "path": str(w.final),
        "n": len(cleaned),
        "manifest_hash": manifest_hash(cleaned),
    }
    return cleaned


def _write_oversampled(
    opts: ExportOptions, kept: pd.DataFrame, cleaned: pd.DataFrame, w: SplitWriter, summary: dict
) -> pd.DataFrame:
    """The cleaned split plus augmented copies of the groups below their target share."""
    has_skin = "skin_category" in cleaned and cleaned["skin_category"].notna().any()
    dims = opts.by or (["age_group", "skin_category"] if has_skin else ["age_group", "gender"])
    if "skin_category" in dims and not has_skin:
        raise ExportError("oversampling by skin_category needs skin tones: --audits with a skin_category column, or "
                          "--dataset of a dataset `curate score` audited")  # fmt: skip
    if "skin_category" not in dims and not has_skin:
        summary["warnings"].append("no skin tones (--audits, or --dataset of an audited dataset): oversampling by "
                                   + " x ".join(dims) + " only")  # fmt: skip
    if has_skin:
        summary["skin_tones_from"] = str(opts.audits) if opts.audits else opts.review_source
    base = cleaned.copy()
    if "skin_category" in base:
        base["skin_category"] = base["skin_category"].fillna("unknown").astype(str)
    base["gender"] = base["gender"].astype(int)
    named = base.assign(
        gender=base["gender"].map(lambda g: GENDER_NAMES[g]),
        race=base["race"].map(lambda r: RACE_NAMES[int(r)] if pd.notna(r) else "unknown"),
    )
    plan = plan_oversampling(named, dims, opts.targets or {}, max_factor=opts.max_factor, seed=opts.seed)
    if "is_label_conflict_issue" in base:  # a copy labelled otherwise: one of the two labels is wrong
        used = base.iloc[sorted({r for r, _ in plan.jobs})]
        bad = used[used["is_label_conflict_issue"].fillna(False).astype(bool)]
        if len(bad):
            said = f"{len(bad)} oversampled image(s) have copies labelled otherwise (first: {bad['filename'].iloc[0]})"
            summary["warnings"].append(f"{said}: one of their labels is wrong and now counts several times; review "
                                       "them (saved view duplicate-label-conflicts) first")  # fmt: skip
    name = w.final.name
    originals = place_originals(kept, w.tmp, w.final, name, opts.images)
    originals["source_filename"] = cleaned["source_filename"].to_numpy()
    gen = generate_oversampled(base, plan, w.tmp, w.final, name, opts.seed, opts.progress)
    over = finish_manifest(pd.concat([originals, gen], ignore_index=True))
    summary["oversampled"] = {
        "name": name,
        "path": str(w.final),
        "n": len(over),
        "n_generated": len(gen),
        "manifest_hash": manifest_hash(over),
        "plan": plan.summary(),
    }
    if plan.capped:
        summary["warnings"].append(
            f"max_factor {opts.max_factor} capped the oversampling: largest share error {plan.max_share_error:.3f}"
        )
    return over


CORRECTION_COLUMNS = [
    "source_path",
    "source_filename",
    "filename",
    "content_hash",
    "original_age",
    "age",
    "original_gender",
    "gender",
    "gender_label_weight",
    "age_label_weight",
    "review_tags",
    "label_source",
    "label_note",
]


def _write_tables(
    splits: dict[str, pd.DataFrame], writers: list[SplitWriter], removed: pd.DataFrame, summary: dict, t0: float
) -> None:
    """Manifest, removed.csv, corrections.csv, export.json and EXPORT.md into every split folder."""
    removed = removed.assign(race=pd.to_numeric(removed["race"], errors="coerce").astype("Int64"))
    cleaned = splits["cleaned"]
    corrections = cleaned.loc[cleaned["label_source"] != "original", CORRECTION_COLUMNS]
    summary["changed_labels"] = corrections[["filename", "label_source", "label_note"]].to_dict("records")
    summary["seconds"] = round(time.time() - t0, 1)
    for w, df in zip(writers, splits.values()):
        write_csv(df, w.tmp / "manifest.csv")
        if keeps_layout(df):  # a labels-table dataset: its labels (corrections included) as a table again
            write_csv(labels_file(df, w.final), w.tmp / "labels.csv")
        write_csv(removed, w.tmp / "removed.csv")
        write_csv(corrections, w.tmp / "corrections.csv")
    for w in writers:
        (w.tmp / "export.json").write_text(json.dumps(summary, indent=2, default=str))
        (w.tmp / "EXPORT.md").write_text(export_report(summary, w.final.name))


def export_report(s: dict, this: str) -> str:
    lines = [
        f"# Export `{this}`",
        "",
        f"Source: `{s['source']}` ({s['n_source']} images, manifest {s['source_manifest_hash']}); seed "
        f"{s['seed']}; images: {s['images']}.",
        "",
        f"Review: {s['review'] or 'none'}.",
        "",
        f"Review rows: {s['review_rows']} listed, {s.get('review_decisions', s['review_rows'])} with a decision "
        f"({s['review_rows_on_test_split']} of them on the test split, not used here).",
        "",
        "## Cleaned split",
        "",
        f"- kept: {s['cleaned']['n']}",
        f"- removed: {s['n_removed']}",
    ]
    lines += [f"  - {why}: {n}" for why, n in s["removed"].items()]
    lines += [
        f"- labels corrected: {s['n_corrected']} (age {s['n_age_corrected']}, gender {s['n_gender_corrected']})",
        f"- of which relabelled by the policy (unreviewed suspects, suggested label): {s['n_relabelled']}",
        f"- labels masked in training (weight 0; the image kept for the other label): gender "
        f"{s.get('n_gender_masked', 0)}, age {s.get('n_age_masked', 0)}",
        f"- unreviewed label suspects kept as labelled: {s.get('n_suspects_kept', 0)}",
        f"- policy: {json.dumps(s['policy'])}",
    ]
    if s.get("changed_labels"):
        lines += ["", "## Changed labels", "", "| file | by | what and why |", "|---|---|---|"]
        lines += [f"| {c['filename']} | {c['label_source']} | {c['label_note']} |" for c in s["changed_labels"]]
    if "oversampled" in s:
        o = s["oversampled"]
        p = o["plan"]
        lines += [
            "",
            "## Oversampled split",
            "",
            f"{o['n']} images: {p['n_before']} originals + {o['n_generated']} "
            f"augmented (at most {p['max_factor']} per source), by {' x '.join(p['dims'])}; largest "
            f"difference between achieved and target share: {p['max_share_error']:.4f}.",
            "",
        ]
        for d in p["dims"]:
            lines += [f"| {d} | before | share | after | share | target |", "|---|---:|---:|---:|---:|---:|"]
            for c in p["before"][d]:
                b, a = p["before"][d][c], p["after"][d][c]
                lines.append(
                    f"| {c} | {b} | {b / p['n_before']:.3f} | {a} | {a / p['n_after']:.3f} | {p['targets'][d][c]:.3f} |"
                )
            lines.append("")
    if s["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in s["warnings"]]
    return "\n".join(lines) + "\n"
