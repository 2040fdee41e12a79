"""`curate export`, `curate retrain` (--compare) and `curate explain`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from curate.cli.common import fail, path_option, resolve_checkpoint, which_option


class ScoreOrEstimated(click.ParamType):
    """A label score in [0, 1], or `estimated` (resolved from the dataset by _estimated_max_score)."""

    name = "SCORE|estimated"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "estimated":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'estimated'", param, ctx)


def _scored(dataset: str | None):
    """The --dataset export reads (its flags' provenance, estimate and freshness), opened once; None without."""
    if not dataset:
        return None
    from curate.fo_db import connect
    from curate.fo_schema import open_scored

    return open_scored(connect(), dataset)


def _scored_split(ds, default: Path, quiet: bool) -> Path:
    """--dataset without --from: the training split of what the dataset's latest `curate score --manifest` read
    (that split itself; or, for `curate split`'s folds.csv or its test split, the training split beside it),
    when it is there; else the default. A user who scored their own split would otherwise export the
    repository's default split, or be told its images are not in the dataset."""
    from core.manifest import TEST_SPLIT, TRAIN_SPLIT

    runs = (ds.info.get("curate") or {}).get("runs") or []
    src = ((runs[-1].get("provenance") or {}).get("labels") if runs else None) or ""
    p = Path(src)
    if not src or not p.exists() or (p.is_dir() and not (p / "manifest.csv").is_file()):
        if src and not Path(default).exists():  # scored from a folder of images: which split is meant is unknown
            fail(f"dataset {ds.name!r} was scored from {src}, which is not a split here, and {default} does not "
                 "exist: pass --from with the training split `curate split` wrote")  # fmt: skip
        return default
    folder = p if p.is_dir() else p.parent
    if p.is_file() and p.stem != "manifest" or folder.name == TEST_SPLIT:  # folds.csv or the test split
        folder = folder.parent / TRAIN_SPLIT if folder.name == TEST_SPLIT else folder / TRAIN_SPLIT
        if not (folder / "manifest.csv").is_file():
            return default
    if not quiet:
        click.echo(f"--from {folder}: the training split of what dataset {ds.name!r} was scored from "
                   "(give --from to export another)")  # fmt: skip
    return folder


def _estimated_max_score(ds) -> tuple[float | None, str]:
    """--gender-max-score estimated: the threshold `curate flag-mislabels` stored with its estimate of the
    number of wrong gender labels; (threshold, what to say in the export's provenance)."""
    if ds is None:
        fail("--gender-max-score estimated needs --dataset (flag-mislabels stores the estimate there)")
    est = (ds.info.get("curate") or {}).get("gender_errors") or {}
    if est.get("count") is None:
        why = est.get("why") or "no estimate stored"
        fail(f"dataset {ds.name!r}: {why}; run `curate flag-mislabels` (with a model that learned) or give a number")
    if est["count"] == 0:  # nothing estimated wrong: only the tagged suspects remain
        return None, f"--gender-max-score estimated: flag-mislabels estimated no wrong gender label ({est['at']})"
    return float(est["max_score"]), (
        f"--gender-max-score estimated = {est['max_score']:.4g}: {est['count']} wrong gender labels estimated "
        f"by flag-mislabels ({est['at']})"
    )


def _review(review: Path | None, dataset: str | None, flags: Path | None = None):
    from curate.export import merge_reviews, read_review_csv, read_review_fiftyone

    if review and dataset:
        fail("give either --review or --dataset, not both")
    rev, src = None, ""
    if review:
        rev, src = read_review_csv(review), str(review)
    elif dataset:
        rev, src = read_review_fiftyone(dataset), f"FiftyOne dataset {dataset}"
    if flags:
        rev = merge_reviews(rev, read_review_csv(flags))
        src = f"{src + ' + ' if src else ''}flags {flags}"
    return rev, src


def _targets(specs: tuple[str, ...]) -> dict:
    """--target DIM=SPEC (repeatable), --target SPEC (every dimension) or --target FILE.json."""
    out: dict = {}
    for s in specs:
        p = Path(s)
        if s.endswith(".json"):
            if not p.is_file():
                fail(f"{p}: target file not found")
            try:
                data = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                fail(f"{p}: not valid JSON ({e.msg})")
            if not isinstance(data, dict) or not all(isinstance(v, (dict, str)) for v in data.values()):
                fail(f"{p}: expected {{dimension: {{category: share}} or spec}}")
            out.update(data)
        elif "=" in s:
            k, v = s.split("=", 1)
            out[k.strip()] = v.strip()
        else:
            out["*"] = s
    return out


@click.command("export")
@path_option(
    "--from",
    "source",
    default=Path("dataset/train_8_folds_first"),
    show_default=True,
    help="Training split (folder or manifest) to clean.",
)
@path_option("--review", help="Review CSV (`curate review-status --csv`): "
              "path/filename, content_hash, tags, age_corrected, gender_corrected[, is_gender_label_issue, "
              "is_age_label_issue, *_label_score, is_low_quality_issue].")  # fmt: skip
@click.option("--dataset", help="Read the review from this FiftyOne dataset instead of a CSV (every sample, so "
              "--drop-suspects also sees the unreviewed suspects, and --oversample its skin tones); without --from, "
              "export the split it was scored from (`curate score --manifest`).")  # fmt: skip
@path_option("--flags", help="Per-image candidate flags for all images "
              "(CSV/Parquet: path or filename, and any of tags, is_gender_label_issue, is_age_label_issue, "
              "*_label_score, is_low_quality_issue), merged with the review.")  # fmt: skip
@path_option(
    "--root",
    default=Path("dataset"),
    show_default=True,
    help="Folder the new split folders go into.",
)
@click.option("--name", default="train_cleaned", show_default=True, help="Name of the cleaned split folder.")
@click.option(
    "--drop-suspects", is_flag=True, help="Also drop unreviewed suspects (suspect:* tags / is_*_label_issue columns)."
)
@click.option(
    "--gender-max-score",
    type=ScoreOrEstimated(),
    help="With --drop-suspects or --mask-suspects: a gender_label_score at most this (in [0, 1], lower = worse) "
    "also makes a suspect; `estimated` (with --dataset): as many of the lowest scores as `curate flag-mislabels` "
    "estimated wrong gender labels (confident-joint count; docs/cleaning_payoff.md, policy g).",
)
@click.option(
    "--age-max-score",
    type=float,
    help="With --drop-suspects or --mask-suspects: an age_label_score at most this (in [0, 1], lower = worse) "
    "also makes a suspect.",
)
@click.option(
    "--age-rank",
    type=click.Choice(["residual", "two-sided"]),
    default="residual",
    show_default=True,
    help="With --mask-suspects or --drop-suspects: how the age suspects are chosen. two-sided: as many as "
    "is_age_label_issue and --age-max-score pick, but those with the highest age_two_sided_z, which spares right "
    "labels of children and the elderly that fold models predict towards the middle (docs/cleaning_payoff.md, "
    "policy m: with --gender-max-score estimated --age-max-score 0.05, 73-76% of the age and of the gender loss "
    "recovered at 20% injected noise, two noise seeds; after flag-mislabels --rounds 2, policy p: 72-82%, ahead of "
    "cleanlab's drop on both tasks).",
)
@click.option(
    "--age-min-z",
    type=float,
    help="With --age-rank two-sided: every unreviewed age whose age_two_sided_z is at least this is a suspect, a "
    "count of its own, instead of as many as is_age_label_issue and --age-max-score pick (1.96: fewer, surer "
    "age suspects; docs/cleaning_payoff.md, policy n).",
)
@click.option(
    "--auto-clean",
    is_flag=True,
    help="Clean the unreviewed labels as docs/cleaning_payoff.md recommends (policy p, after `curate "
    "flag-mislabels --rounds 2`): the same as --mask-suspects --gender-max-score estimated --age-max-score 0.05 "
    "--age-rank two-sided. Needs --dataset; reviewed decisions win.",
)
@click.option(
    "--relabel-suspects",
    is_flag=True,
    help="Give unreviewed suspects the suggested label (gender_suggested, age_suggested) instead of dropping "
    "them; reviewed decisions win; with --drop-suspects, the suspects left unresolved are dropped.",
)
@click.option(
    "--mask-suspects",
    is_flag=True,
    help="Keep unreviewed suspects but mask the suspected label in training (gender_label_weight / "
    "age_label_weight 0): a suspected gender no longer teaches the gender head while the image still trains "
    "age, and the reverse. After --relabel-suspects if given; not with --drop-suspects.",
)
@click.option(
    "--relabel-gender-max-score",
    type=float,
    help="With --relabel-suspects: change a gender only where gender_label_score is at most this.",
)
@click.option(
    "--relabel-age-max-score",
    type=float,
    help="With --relabel-suspects: change an age only where age_label_score is at most this.",
)
@click.option(
    "--relabel-what",
    type=click.Choice(["both", "gender", "age"]),
    help="With --relabel-suspects: which labels it may change [default: both]. `gender` with "
    "--mask-suspects and --relabel-gender-max-score 0.1 relabels the genders the scores are sure of and masks "
    "the rest (docs/cleaning_payoff.md, policy i).",
)
@click.option("--drop-low-quality", is_flag=True, help="Also drop low_quality images (tag, review or --audits column).")
@click.option(
    "--copy",
    "copy_",
    is_flag=True,
    help="Copy the kept originals into the split folder, UTKFace-named "
    "with the corrected labels (default: the manifest references the original files). A dataset read from a "
    "labels table keeps its relative paths instead, with the labels in the split's labels.csv.",
)
@click.option("--link", is_flag=True, help="Like --copy, with hard links (copies where links are impossible).")
@click.option(
    "--oversample",
    is_flag=True,
    help="Also write NAME_oversampled: the cleaned split plus augmented copies of under-represented groups.",
)
@click.option("--oversample-name", help="Folder name of the oversampled split [default: NAME_oversampled].")
@path_option(
    "--audits",
    help="Audits parquet/CSV (`curate audit`): skin_category (oversampling; else a --dataset's), "
    "is_low_quality_issue (--drop-low-quality); every check's columns are copied into the exported manifests.",
)
@click.option(
    "--by",
    help="Comma-separated oversampling dimensions among age_group, skin_category, gender, race "
    "[default: age_group,skin_category with --audits, else age_group,gender].",
)
@click.option(
    "--target",
    "target_specs",
    multiple=True,
    metavar="SPEC",
    help="Target shares: mix:A (default mix:0.5 = halfway between current and uniform), uniform, "
    "floor:F, DIM=SPEC for one dimension, or a JSON file {dim: {category: share}} (repeatable).",
)
@click.option("--max-factor", default=5.0, show_default=True, help="At most this many augmented images per source.")
@click.option("--seed", default=0, show_default=True, help="Seed of the augmentation (same seed, same images).")
@path_option(
    "--test-split",
    help="The test split (never written; checked for overlap, and review rows on it are recognised) "
    "[default: test_2_folds_last next to --from, else under --root].",
)
@click.option("--force", is_flag=True, help="Replace existing split folders of the same names.")
@click.option("--allow-missing", is_flag=True, help="Skip review rows whose image no longer exists, and export "
              "a split most of whose images are not in --dataset (default: error).")  # fmt: skip
@click.option(
    "--fiftyone",
    "fo_name",
    help="Also load the exported split(s) into FiftyOne datasets of this name (plus _oversampled).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def export_cmd(**o) -> None:
    """Write a cleaned training split (and an oversampled one) from the review's decisions.

    Cleaned: the training split minus images tagged `exclude` or `confirmed:mislabel` without a
    correction, with reviewed age/gender corrections applied; --drop-suspects / --drop-low-quality also
    remove the unreviewed suspects / low-quality images (--auto-clean: masks, see below). Oversampled
    (--oversample): the cleaned split plus augmented images (flip, rotation, crop, colour, exposure;
    recorded per image) for age bins and skin-tone categories below their target share. The test split
    and the source images are never changed.
    """
    from curate.export import ExportOptions, Policy, export

    if o["copy_"] and o["link"]:
        fail("give --copy or --link, not both")
    rev, rev_src = _review(o["review"], o["dataset"], o["flags"])
    if rev is None and not o["quiet"]:
        click.echo("no review given (--dataset, --review or --flags): every image and label is exported as it is")
    ds = _scored(o["dataset"])
    from_given = click.get_current_context().get_parameter_source("source") != click.core.ParameterSource.DEFAULT
    if ds is not None and not from_given:
        o["source"] = _scored_split(ds, o["source"], o["quiet"])
    auto = _auto_clean(o, ds) if o["auto_clean"] else None
    if o["gender_max_score"] == "estimated":
        o["gender_max_score"], said = _estimated_max_score(ds)
        rev_src += f"; {said}"
        if not o["quiet"]:
            click.echo(said)
    _check_policy(o, rev is not None)
    if ds is not None:
        _check_flags(o, ds)
    if auto:
        rev_src += "; " + auto
        if not o["quiet"]:
            click.echo(auto)
    dims = [d.strip() for d in o["by"].split(",")] if o["by"] else None
    targets = _target_dims(_targets(o["target_specs"]), dims)
    if not o["oversample"] and (targets or dims or o["oversample_name"]):
        fail("--target/--by/--oversample-name need --oversample")
    fo = _fiftyone_check(o["fo_name"], o["oversample"], o["force"]) if o["fo_name"] else None
    policy = Policy(o["drop_low_quality"], o["drop_suspects"], o["gender_max_score"], o["age_max_score"],
                    o["relabel_suspects"], o["relabel_gender_max_score"], o["relabel_age_max_score"],
                    o["mask_suspects"], o["relabel_what"] or "both", o["age_rank"], o["age_min_z"])  # fmt: skip
    opts = ExportOptions(
        o["source"], o["root"], o["name"], review=rev, review_source=rev_src, policy=policy,
        images="copy" if o["copy_"] else "link" if o["link"] else "ref", oversample=o["oversample"],
        oversample_name=o["oversample_name"], by=dims, targets=targets, max_factor=o["max_factor"],
        audits=o["audits"], seed=o["seed"], force=o["force"], allow_missing=o["allow_missing"],
        test_split=o["test_split"], progress=not o["quiet"], review_lists_all=bool(o["dataset"]),
    )  # fmt: skip
    s = export(opts)
    _print_summary(s)
    if o["fo_name"]:
        _to_fiftyone(fo, s, o["fo_name"])


AUTO_CLEAN = {"mask_suspects": True, "gender_max_score": "estimated", "age_max_score": 0.05, "age_rank": "two-sided"}


def _auto_clean(o: dict, ds) -> str:
    """--auto-clean: the recommended policy's options set in `o`. An option of the policy given as well is an
    error rather than a silent override, so the export is exactly the policy the docs measured or what was
    spelled out."""
    if not o["dataset"]:
        fail("--auto-clean needs --dataset (flag-mislabels stores its estimate of the wrong labels there)")
    ctx = click.get_current_context()
    names = ("drop_suspects", "relabel_suspects", "age_min_z", *AUTO_CLEAN)
    given = [n for n in names if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if given:
        spelled = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in AUTO_CLEAN.items())
        fail(f"--auto-clean is {spelled}: give those options instead of --auto-clean to change "
             f"--{given[0].replace('_', '-')}")  # fmt: skip
    o.update(AUTO_CLEAN)
    return _auto_clean_said(ds)


def _auto_clean_said(ds) -> str:
    """Which measured policy --auto-clean is on this dataset: p after two cross-fit rounds, m after one (said
    on the terminal too, since p is what paid best and needs `flag-mislabels --rounds 2` first); on another
    model's predictions, no measured policy."""
    info = ds.info.get("curate") or {}
    source = (info.get("model_checks") or {}).get("source") or {}
    rounds = source.get("rounds", 1)
    if source.get("kind") != "crossfit":
        what = "the shipped model's" if source.get("kind") == "model" else "given"
        return (f"--auto-clean on {what} out-of-sample predictions (no cross-fit): the thresholds of policy m of "
                "docs/cleaning_payoff.md, which was measured after a cross-fit")  # fmt: skip
    if rounds >= 2:
        return f"--auto-clean after {rounds} cross-fit rounds: policy p of docs/cleaning_payoff.md"
    return ("--auto-clean after one cross-fit round: policy m of docs/cleaning_payoff.md (policy p, which paid "
            "best, needs `curate flag-mislabels --rounds 2` first)")  # fmt: skip


def _check_flags(o: dict, ds) -> None:
    """With --dataset: a suspect policy needs flags (an error when `curate flag-mislabels` never ran on it), and
    flags computed before samples or labels changed, and decisions made on labels changed since, get a warning."""
    from curate.fo_review import flags_outdated, stale_decisions_warning

    acts = [f"--{k.replace('_', '-')}" for k in ("drop_suspects", "mask_suspects", "relabel_suspects") if o[k]]
    if acts and not (ds.info.get("curate") or {}).get("model_checks"):
        fail(f"{acts[0]}: dataset {o['dataset']!r} has no flags yet; run `curate flag-mislabels --dataset "
             f"{o['dataset']}` first")  # fmt: skip
    for stale in (flags_outdated(ds), stale_decisions_warning(ds)):
        if stale:
            click.echo(f"warning: {stale}", err=True)


def _check_policy(o: dict, have_flags: bool) -> None:
    limits = {"--gender-max-score": o["gender_max_score"], "--age-max-score": o["age_max_score"]}
    relabel = {"--relabel-gender-max-score": o["relabel_gender_max_score"],
               "--relabel-age-max-score": o["relabel_age_max_score"], "--relabel-what": o["relabel_what"]}  # fmt: skip
    given = [k for k, v in limits.items() if v is not None]
    acts = {"--drop-suspects": o["drop_suspects"], "--relabel-suspects": o["relabel_suspects"],
            "--mask-suspects": o["mask_suspects"]}  # fmt: skip
    for flag, wanted in acts.items():
        if wanted and not have_flags:
            fail(f"{flag} needs the flags (--dataset, --flags or --review)")
    if o["drop_suspects"] and o["mask_suspects"]:
        fail("--drop-suspects and --mask-suspects both decide what happens to a suspect: give one")
    if given and not any(acts.values()):
        fail(f"{given[0]} only applies with --drop-suspects, --mask-suspects or --relabel-suspects")
    if o["age_rank"] != "residual" and not (o["drop_suspects"] or o["mask_suspects"]):
        fail("--age-rank two-sided only applies with --mask-suspects or --drop-suspects")
    if o["age_min_z"] is not None and o["age_rank"] != "two-sided":
        fail("--age-min-z only applies with --age-rank two-sided")
    r_given = [k for k, v in relabel.items() if v is not None]
    if r_given and not o["relabel_suspects"]:
        fail(f"{r_given[0]} only applies with --relabel-suspects")
    scores = {**limits, **relabel}
    scores.pop("--relabel-what")
    bad = [f"{k} {v}" for k, v in scores.items() if v is not None and not 0 <= v <= 1]
    if bad:
        fail(f"{bad[0]}: label scores are in [0, 1] (lower = worse)")


DIMS = ("age_group", "skin_category", "gender", "race")


def _target_dims(tg: dict, dims: list[str] | None) -> dict:
    """Targets per oversampling dimension; a bare spec ("*") applies to every dimension."""
    bad = [d for d in dims or () if d not in DIMS]
    if bad:
        fail(f"--by: unknown dimension(s) {', '.join(bad)} ({', '.join(DIMS)})")
    if "*" in tg:
        default = tg.pop("*")
        tg = {d: tg.get(d, default) for d in (dims or DIMS)} | tg
    return tg


def _print_summary(s: dict) -> None:
    click.echo(
        f"source {s['n_source']} images; removed {s['n_removed']}; labels corrected {s['n_corrected']} "
        f"(age {s['n_age_corrected']}, gender {s['n_gender_corrected']})"
    )
    for why, n in s["removed"].items():
        click.echo(f"  removed, {why}: {n}")
    if s.get("n_gender_masked") or s.get("n_age_masked"):
        click.echo(f"labels masked in training: gender {s['n_gender_masked']}, age {s['n_age_masked']}")
    click.echo(f"cleaned split: {s['cleaned']['n']} images -> {s['cleaned']['path']}")
    if "oversampled" in s:
        o = s["oversampled"]
        p = o["plan"]
        click.echo(
            f"oversampled split: {o['n']} images ({o['n_generated']} augmented, by {' x '.join(p['dims'])}; "
            f"largest share error {p['max_share_error']:.4f}) -> {o['path']}"
        )
    for w in s["warnings"]:
        click.echo(f"warning: {w}", err=True)


def _fiftyone_check(fo_name: str, oversample: bool, force: bool):
    """Connect (failing fast) and refuse existing dataset names before anything is written."""
    try:
        from curate.fo_db import connect
    except ImportError as e:
        fail(f"FiftyOne support is not available ({e})")
    fo = connect()
    names = [fo_name] + ([fo_name + "_oversampled"] if oversample else [])
    taken = [n for n in names if n in fo.list_datasets()]
    if taken and not force:
        fail(f"FiftyOne dataset(s) {', '.join(map(repr, taken))} exist; pass --force to replace them")
    return fo


def _to_fiftyone(fo, s: dict, fo_name: str) -> None:
    import pandas as pd

    from core.labels import GENDER_NAMES

    for key, suffix in (("cleaned", ""), ("oversampled", "_oversampled")):
        if key not in s:
            continue
        ds_name = fo_name + suffix
        if ds_name in fo.list_datasets():
            fo.delete_dataset(ds_name)
        m = pd.read_csv(Path(s[key]["path"]) / "manifest.csv", dtype={"content_hash": str})
        ds = fo.Dataset(ds_name)
        ds.persistent = True
        samples = []
        for r in m.itertuples():
            smp = fo.Sample(filepath=r.path, tags=["generated"] if r.generated else [])
            # Ground truth as `curate score` writes it (one data model): fo.Regression / fo.Classification.
            smp["age"] = fo.Regression(value=float(r.age))
            smp["gender"] = fo.Classification(label=GENDER_NAMES[int(r.gender)])
            smp["content_hash"], smp["label_source"] = r.content_hash, r.label_source
            if r.generated:
                smp["source_path"], smp["transform"] = r.source_path, r.transform
            samples.append(smp)
        ds.add_samples(samples)
        click.echo(f"FiftyOne dataset {ds_name}: {len(ds)} samples")


@click.command()
@path_option(
    "--split",
    "split",
    required=True,
    help="Exported split folder (e.g. dataset/train_cleaned) to train on.",
)
@path_option(
    "--baseline",
    required=True,
    help="Baseline run folder: its config and seed are reused, its test manifest is the test.",
)
@path_option("--out", "out_dir", required=True, help="New run folder.")
@click.option("--compare", is_flag=True, help="Then evaluate both runs and write OUT/compare/report.md.")
@path_option(
    "--review",
    help="Review CSV: also report on the test split with its corrections applied.",
)
@click.option("--dataset", help="Read that review from this FiftyOne dataset instead.")
@click.option(
    "--audits", type=click.Path(path_type=Path), help="Audits parquet with skin_category for the test images."
)
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--gallery", "n_gallery", default=12, show_default=True, help="Images per gallery.")
@click.option(
    "--explain", "n_explain", default=8, show_default=True, help="Grad-CAM images per model and head (0: none)."
)
@click.option("--age-tol", default=5.0, show_default=True, help="Age error (years) counted as wrong in the galleries.")
@click.option("--min-group", default=10, show_default=True, help="Smallest group that takes part in worst-group gaps.")
@click.option("--threads", type=int, help="CPU threads for training and prediction [default: the baseline's].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def retrain(**o) -> None:
    """Train on an exported split with the baseline run's config and seed; --compare writes the report.

    The report (OUT/compare/report.md, PNGs, CSVs) puts both models' evaluate tables side by side, gives
    per age group / gender / race / skin-tone category MAE and accuracy with paired-bootstrap 95 %
    intervals and worst-group gaps, galleries of fixed and broken predictions, Grad-CAM overlays, and a
    verdict naming the differences larger than their uncertainty. A finished run in OUT is reused.
    """
    from curate.compare import CompareOptions, compare_runs
    from curate.compare import retrain as do_retrain

    rev, rev_src = _review(o["review"], o["dataset"])
    meta = do_retrain(o["split"], o["baseline"], o["out_dir"], threads=o["threads"], progress=not o["quiet"])
    did = "reused the finished run in" if meta.get("reused") else "trained"
    click.echo(
        f"{did} {o['out_dir']}: best epoch {meta['best_epoch']} (while training, without flip TTA: val MAE "
        f"{meta['best_val_mae']:.2f}, gender acc {100 * meta['best_val_acc']:.1f}%)"
    )
    if o["compare"]:
        opts = CompareOptions(
            review=rev, review_source=rev_src, audits=o["audits"], n_boot=o["n_boot"], n_gallery=o["n_gallery"],
            n_explain=o["n_explain"], age_tol=o["age_tol"], min_group=o["min_group"], threads=o["threads"] or 0,
            progress=not o["quiet"],
        )  # fmt: skip
        _print_comparison(compare_runs(o["baseline"], o["out_dir"], opts=opts))


def _print_comparison(s: dict) -> None:
    """The overall deltas with their intervals and the verdict count; the rest is in the report."""
    for r in s["overall"]:
        k = 100 if r["metric"] == "gender accuracy" else 1
        click.echo(
            f"{r['metric']}: {k * r['baseline']:.2f} -> {k * r['new']:.2f} (delta {k * r['delta']:+.2f}, "
            f"95% CI [{k * r['delta_lo']:+.2f}, {k * r['delta_hi']:+.2f}])"
        )
    click.echo(f"{len(s['verdict'])} difference(s) larger than their uncertainty")
    for line in s.get("barely_trained", []):
        click.echo(f"warning: {line}", err=True)
    click.echo(f"report -> {s['report']}")


@click.command()
@path_option("--run", help="Run folder (uses best.pt; see --which).")
@path_option("--checkpoint", help="A checkpoint instead of --run.")
@which_option
@path_option(
    "--manifest",
    help="Split folder or manifest [default: the run's val_path, else dataset/test_2_folds_last].",
)
@path_option(
    "--predictions",
    help="Reuse a predictions.parquet of this model (from `curate evaluate`) instead of predicting.",
)
@click.option("--n", "n", default=12, show_default=True, type=click.IntRange(min=1), help="Images per head.")
@click.option("--head", type=click.Choice(["gender", "age", "both"]), default="both", show_default=True)
@path_option("--out", "out_dir", help="[default: RUN/explain (RUN/explain_last with --which last), else explain/]")
@click.option("--threads", default=0, help="CPU threads (0: all).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def explain(**o) -> None:
    """Grad-CAM overlays for the most-misclassified images (gender: the highest-loss wrong answers;
    age: the largest errors), as PNG grids: OUT/gradcam_gender.png, OUT/gradcam_age.png."""
    from trainer.explain import explain_run

    run = o["run"]
    ckpt = resolve_checkpoint(run, o["checkpoint"], o["which"])
    pred = _explain_predictions(ckpt, o)
    out_dir = o["out_dir"] or ((run / f"explain{'_last' if o['which'] == 'last' else ''}") if run else Path("explain"))
    heads = ("gender", "age") if o["head"] == "both" else (o["head"],)
    for h, p in explain_run(ckpt, pred, out_dir, o["n"], heads).items():
        click.echo(f"{h}: {p}")


def _explain_predictions(ckpt: Path, o: dict):
    """The predictions to explain: --predictions as given, else the model on --manifest (or the run's test)."""
    import pandas as pd

    from trainer.evaluate import predict_manifest
    from trainer.model import load_checkpoint

    if o["predictions"]:
        if not Path(o["predictions"]).is_file():
            fail(f"{o['predictions']}: predictions file not found")
        if o["manifest"] is not None:
            fail("give --predictions or --manifest, not both (the predictions say which images)")
        pred = pd.read_parquet(o["predictions"])
        from core.manifest import checkpoint_id

        made_by, mine = set(pred.get("model", pd.Series(dtype=str)).astype(str)), checkpoint_id(ckpt)
        if made_by and made_by != {mine}:  # the wrong answers chosen and titled would be another model's
            fail(f"{o['predictions']}: predictions of {', '.join(sorted(made_by))}, not of {mine} ({ckpt}); run "
                 "`curate evaluate` with this model, or leave out --predictions")  # fmt: skip
        return pred
    manifest = o["manifest"]
    if manifest is None:
        val = load_checkpoint(ckpt).get("config", {}).get("val_path") if o["run"] else None
        manifest = Path(val or "dataset/test_2_folds_last")
    return predict_manifest(ckpt, manifest, threads=o["threads"], progress=not o["quiet"])
