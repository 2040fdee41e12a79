"""`curate score`, `curate flag-mislabels`, `curate app` and `curate review-status` (FiftyOne).

The work is in curate/fo_*.py: fo_db (connecting), fo_inputs (manifest, predictions, audits, cached
by content hash), fo_dataset (bulk ingestion, schema checks, brain runs), fo_review (mislabel flags,
saved views, review decisions).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from core.atomic import write_csv
from curate.cli.common import (
    DEFAULT_MODEL,
    SAMPLE_DIR,
    config_options,
    data_argument,
    fail,
    load_cfg,
    model_option,
    path_option,
    ray_option,
    resolve_checkpoint,
)

DEFAULT_DATASET = "utkface"

dataset_option = click.option(
    "--dataset",
    "name",
    default=DEFAULT_DATASET,
    show_default=True,
    envvar="CURATE_DATASET",
    help="FiftyOne dataset name (env CURATE_DATASET).",
)


def _connect():
    from curate.fo_db import connect

    return connect()


def _open(fo, name: str, create: bool):
    """Ours, created when absent and `create`; without `create` it must hold samples (`open_scored`)."""
    from curate.fo_schema import open_dataset, open_scored

    return open_dataset(fo, name, create=True) if create else open_scored(fo, name)


@click.command()
@data_argument("data_dir")
@path_option("--manifest", help="A manifest (CSV/Parquet) or split folder instead of DATA_DIR.")
@model_option
@path_option("--predictions", help="Precomputed predictions.parquet (shared schema) instead of running --model.")
@path_option("--audits", "audits_file", help="Precomputed audits (Parquet/CSV) instead of running the audits.")
@click.option("--no-audits", is_flag=True, help="Leave the audit fields as they are.")
@dataset_option
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment of DATA_DIR.")
@click.option(
    "--brain/--no-brain",
    default=True,
    show_default=True,
    help="Similarity index, 2-D visualisation and uniqueness from the embeddings.",
)
@click.option(
    "--viz-method",
    type=click.Choice(["auto", "umap", "tsne", "pca"]),
    default="auto",
    show_default=True,
    help="auto: UMAP if installed, else t-SNE up to 5,000 samples, else PCA.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def score(**o) -> None:
    """Create or update the FiftyOne dataset: labels, predictions, losses, audits, embeddings.

    DATA_DIR defaults to the embedded sample. Idempotent and incremental: a re-run adds new images,
    rewrites only what changed, keeps review tags and corrections, and never duplicates a sample.
    Images that disappeared keep their sample with score_status "missing file"; moved images are
    followed by content hash.
    """
    from curate.fo_dataset import ingest
    from curate.fo_inputs import join_inputs

    if o["data_dir"] is not None and o["manifest"] is not None:
        fail("pass DATA_DIR or --manifest, not both")
    fo = _connect()  # fail fast, before minutes of predictions, when the database is unreachable
    ds = _open(fo, o["name"], create=True) if fo.dataset_exists(o["name"]) else None  # checked to be ours
    t0 = time.time()
    table, rejected, labels_src = _score_labels(o, _stored_folds(ds) if ds is not None else {})
    pred, pred_src = _score_predictions(table, o)
    provenance = {"labels": labels_src, "predictions": pred_src}
    audit, audit_version = _score_audits(table, o)
    if audit is not None:
        provenance["audits"] = audit_version
    joined = join_inputs(table, pred, audit)
    t_in = time.time() - t0
    ds = ds if ds is not None else _open(fo, o["name"], create=True)  # created once its inputs are read
    counts = ingest(fo, ds, joined, rejected, audit_version=audit_version, provenance=provenance)
    upd = ", ".join(f"{g} {n}" for g, n in counts["updated"].items()) or "none"
    click.echo(
        f"dataset {o['name']!r}: {counts['samples']} samples | added {counts['added']}, updated ({upd}), "
        f"unchanged {counts['unchanged']}, moved {counts['moved']}, missing files {counts['missing']}, "
        f"rejected {len(rejected)} | inputs {t_in:.1f}s, ingest {counts['seconds']:.1f}s"
    )
    for r in rejected.head(20).itertuples():
        click.echo(f"  rejected {r.filename!r}: {r.reason}")
    if len(rejected) > 20:
        click.echo(f"  ... and {len(rejected) - 20} more")
    if o["brain"]:
        _brain(fo, ds, o["viz_method"])


def _stored_folds(ds) -> dict[str, int]:
    """content hash -> fold of the samples already scored: they keep it whatever else came or went."""
    if not len(ds) or "fold" not in ds.get_field_schema():
        return {}
    return {h: int(f) for h, f in zip(*ds.values(["content_hash", "fold"])) if h is not None and f is not None}


def _score_labels(o: dict, previous: dict[str, int]):
    """(images with labels, rejected images, where they came from): --manifest, else DATA_DIR or the sample;
    folds recorded in the dataset (`previous`) are kept."""
    from curate import fo_inputs as fi

    source = o["manifest"] or o["data_dir"] or SAMPLE_DIR
    if o["manifest"] is not None:
        table, rejected = fi.file_manifest(o["manifest"], seed=o["seed"])
    else:
        table, rejected = fi.folder_manifest(source, seed=o["seed"], progress=not o["quiet"], previous=previous)
    if table.empty:
        fail(f"{source}: no usable image ({len(rejected)} rejected)")
    return table, rejected, str(source)


def _read_predictions(path: Path):
    """A predictions table in the shared schema (checked), as `score` and `flag-mislabels` accept it."""
    from curate import fo_inputs as fi

    return fi.check_predictions(fi.read_table(path, "predictions"), str(path))


def _score_predictions(table, o: dict):
    """(predictions, their provenance): the --predictions file, else --model run on the images."""
    from curate import fo_inputs as fi

    if o["predictions"] is not None:
        pred = _read_predictions(o["predictions"])
        return pred, f"{o['predictions']} (models {', '.join(sorted(set(pred['model'].astype(str))))})"
    ckpt = resolve_checkpoint(None, o["checkpoint"])
    pred = fi.compute_predictions(table, ckpt, progress=not o["quiet"])
    return pred, f"{ckpt} (model {pred['model'].iloc[0]})"


def _score_audits(table, o: dict):
    """(audits or None, audit version): the --audits file, else the audits runner when installed."""
    from curate import fo_inputs as fi

    audit, version = None, None
    if o["audits_file"] is not None:
        audit = fi.read_table(o["audits_file"], "audits")
        version = f"file:{o['audits_file'].name}"
    elif not o["no_audits"]:
        if fi.audits_available():
            audit = fi.compute_audits(table, progress=not o["quiet"])
        elif not o["quiet"]:
            click.echo("audits runner not available: audit fields left as they are (pass --audits FILE)")
    if audit is not None and "audit_version" in audit:
        version = ",".join(sorted(set(audit["audit_version"].dropna().astype(str)))) or version
    return audit, version


def _brain(fo, ds, method: str) -> None:
    """Similarity index, 2-D visualisation and uniqueness, and a line saying what was computed."""
    from curate.fo_dataset import run_brain

    t1 = time.time()
    b = run_brain(fo, ds, method=method)
    if "skipped" in b:
        click.echo(f"brain: skipped ({b['skipped']})")
    else:
        click.echo(
            f"brain: similarity index {b['similarity']!r}, visualization {b['visualization']!r}, "
            f"field {b['uniqueness']!r} on {b['n']} samples ({time.time() - t1:.1f}s)"
        )


# The thresholds, --top-k, --quality-top-k and --neighbors: fo_review.flag_mislabels takes them as they are.
FLAG_OPTIONS = (
    "gender_threshold", "age_z_threshold", "age_min_years", "top_k", "quality_top_k", "neighbors", "allow_weak_model"
)  # fmt: skip


@click.command("flag-mislabels")
@dataset_option
@path_option(
    "--predictions",
    help="Out-of-sample predictions (e.g. crossfit's predictions.parquet) instead of cross-fitting.",
)
@path_option(
    "--crossfit-dir",
    help="Cross-fit folder, reused on re-runs [default: $CURATE_CACHE_DIR/crossfit/<manifest hash>].",
)
@click.option(
    "--recipe",
    type=click.Choice(["cheap", "thorough", "full"]),
    help="Cross-fit recipe: thorough (128 px, 12 epochs; on the full UTKFace with 5% injected noise gender AP 0.747 "
    "and age AP 0.559 in 25 min on 2 cores), cheap (96 px, 8 epochs: 0.701 and 0.407 in 12 min; a quick look) or "
    "the full training run [thorough].",
)
@click.option("--cheap", "recipe", flag_value="cheap", help="Same as --recipe cheap.")
@click.option("--full", "recipe", flag_value="full", help="Same as --recipe full.")
@config_options("YAML training config for the cross-fit models.")
@click.option(
    "--oos",
    "oos_from",
    type=click.Choice(["auto", "model", "crossfit"]),
    default="auto",
    show_default=True,
    help="Out-of-sample predictions: the --model's own, allowed only when its card shows it never trained on "
    "any image of the dataset (model); a cross-fit (crossfit); model when allowed, else crossfit (auto).",
)
@model_option
@click.option("-k", "--folds", "k", default=2, show_default=True, help="Cross-fit folds.")
@click.option("--rounds", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Cross-fit rounds: each after the first masks the labels the one before estimates wrong "
              "(as export --mask-suspects --gender-max-score estimated would) and cross-fits again; implies "
              "a cross-fit. 2 ranks noisy labels better for twice the time; before export's best policy it "
              "recovered more of the gender loss than 1 (docs/cleaning_payoff.md, policy p).")  # fmt: skip
@ray_option("The cross-fit's folds (in parallel, one task each)")
@click.option("--seed", default=0, show_default=True)
@click.option("--gender-threshold", type=float, help="Tag suspect:gender at P(label wrong) >= this [0.5].")
@click.option("--age-z-threshold", type=float, help="Tag suspect:age at this many expected errors [3.5] ...")
@click.option("--age-min-years", type=float, help="... and at least this many years off [4].")
@click.option("--top-k", type=int, help="Tag exactly the top K per kind instead of thresholds.")
@click.option("--allow-weak-model", is_flag=True, help="Tag suspects even from a fold model no better than always "
              "answering the majority gender / median age (default: its suspects are not tagged).")  # fmt: skip
@click.option(
    "--quality-top-k", type=int, help="Tag the K lowest BRISQUE scores low_quality instead of the audit flag."
)
@click.option("--neighbors", type=int, help="Look-alikes per image in the label vote [10]; 0 = off.")
@click.option(
    "--worst-n", default=12, show_default=True, help="Samples per group and error kind in the worst-error views."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def flag_mislabels(**o) -> None:
    """Score every label with out-of-sample predictions, tag the suspects, save the review views.

    Stores gender/age issue scores, reasons and suggested corrections on each sample; tags
    suspect:gender, suspect:age and low_quality (re-derived each run); saves the views suspect-gender,
    suspect-age, low-quality, duplicate-label-conflicts, face-issues (when audited),
    worst-errors-by-age-group, worst-errors-by-skin-tone and review-queue.
    """
    from curate.fo_review import flag_mislabels as run_flags

    fo = _connect()
    ds = _open(fo, o["name"], create=False)
    oos, source = _oos_predictions(ds, o)
    summary = run_flags(fo, ds, oos, worst_n=o["worst_n"], source=source, **{k: o[k] for k in FLAG_OPTIONS})
    _echo_model_checks(summary["model_checks"])
    if not any(r["gender_ok"] or r["age_ok"] for r in summary["model_checks"]) and source.get("kind") == "crossfit":
        click.echo(f"no fold model learned from {source['images']} images: with this few, cross-fit from the shipped "
                   f"weights (--set weights={DEFAULT_MODEL}, when its card shows it never saw them) or "
                   "score with the shipped model (--oos model)")  # fmt: skip
    click.echo(
        f"scored {summary['scored']} samples ({summary['not_scored']} not scored) with {summary['version']}: "
        f"suspect:gender {summary['suspect:gender']}, suspect:age {summary['suspect:age']}, "
        f"low_quality {summary['low_quality']}"
    )
    click.echo("saved views: " + ", ".join(f"{v} ({n})" for v, n in summary["views"].items()))
    est = summary["gender_errors"]
    if est.get("count") is not None:
        click.echo(f"estimated wrong gender labels: {est['count']} of {est['n']} (confident-joint count; "
                   f"gender_label_score <= {est['max_score']:.3g}): `curate export --dataset {o['name']} "
                   "--mask-suspects --gender-max-score estimated` masks them")  # fmt: skip


def _oos_predictions(ds, o: dict):
    """(out-of-sample predictions, where they came from): --predictions, the model when every image is new
    to it (--oos auto/model), else a cross-fit on the dataset's own labels (its folder reused)."""
    if o["rounds"] > 1 and (o["predictions"] is not None or o["oos_from"] == "model"):
        fail(f"--rounds {o['rounds']} cross-fits again on masked labels: not with --predictions or --oos model")
    if o["predictions"] is not None:
        return _read_predictions(o["predictions"]), {"kind": "file", "file": str(o["predictions"])}
    man = _label_manifest(ds, o["name"])
    if o["oos_from"] != "crossfit" and o["rounds"] == 1:
        got = _model_predictions(man, o)
        if got is not None:
            return got
    return _crossfit_predictions(ds, man, o)


def _model_predictions(man, o: dict):
    """The model's predictions with their provenance when its card shows that it never trained on any of the
    images (content hashes); else None (--oos auto) or a refusal (--oos model)."""
    from core.training_set import load
    from curate import fo_inputs as fi

    ckpt = resolve_checkpoint(None, o["checkpoint"])
    ts = load(ckpt)
    seen = ts.seen(man["content_hash"]) if ts is not None else None
    if ts is None:
        why = f"{ckpt}: its card lists no training images, so its predictions may not be out-of-sample"
    elif seen.any():
        first = Path(man.loc[seen, "path"].iloc[0]).name
        why = f"{int(seen.sum())} of {len(man)} images were in {ckpt.name}'s training set (e.g. {first})"
    else:
        click.echo(f"all {len(man)} images are out-of-sample for {ckpt.name} ({ts.describe()}): its predictions "
                   "score the labels, no cross-fit")  # fmt: skip
        pred = fi.compute_predictions(man, ckpt, progress=not o["quiet"]).assign(fold=-1)
        src = {"kind": "model", "checkpoint": str(ckpt), "model": str(pred["model"].iloc[0]),
               "training_manifest": ts.record["manifest_hash"], "images": len(man), "in_training": 0}  # fmt: skip
        return pred, src
    if o["oos_from"] == "model":
        fail(f"--oos model: {why}; use --oos crossfit")
    click.echo(f"{why}: cross-fitting instead")
    return None


def _crossfit_predictions(ds, man, o: dict):
    """Out-of-sample predictions from models cross-fitted on the dataset's own labels (folder reused); with
    --rounds, again on the labels masked by the round before (curate.fo_rounds), in OUT/round_N-<labels hash>."""
    from core.manifest import manifest_hash
    from curate.fo_rounds import masked_manifest
    from trainer.crossfit import crossfit

    # Today's defaults (L1 1e-6), not the reference run's L1 1e-4: under the cheap recipe that penalty pruned
    # ~97% of the weights and the fold models barely learned age (docs/cleaning_payoff.md, 2026-12-06);
    # `--config configs/reference.yaml` is the recipe the earlier detection figures were measured with.
    cfg = load_cfg(o["config"], o["sets"])
    recipe = o["recipe"] or "thorough"  # docs/benchmarks.md: better rankings at about twice cheap's time
    cfg = crossfit_config(cfg, recipe, o["sets"])
    out = o["crossfit_dir"] or _crossfit_dir(man, cfg, o["k"], o["seed"])
    epochs = f"{cfg.num_epochs} epoch{'s' * (cfg.num_epochs != 1)}"
    click.echo(f"cross-fitting {len(man)} images ({recipe} recipe: {cfg.image_size} px, {epochs}, k={o['k']}) in "
               f"{out}")  # fmt: skip
    run = lambda m, d: crossfit(m, d, cfg, k=o["k"], seed=o["seed"], progress=not o["quiet"],  # noqa: E731
                                ray_address=o["ray_address"])  # fmt: skip
    pred = run(man, out)
    src = {"kind": "crossfit", "folder": str(out), "k": o["k"], "seed": o["seed"], "images": len(man),
           "ray": o["ray_address"], "rounds": 1}  # fmt: skip
    for r in range(2, o["rounds"] + 1):
        masked, info = masked_manifest(ds, pred, **{k: o[k] for k in FLAG_OPTIONS})
        if masked is None:
            click.echo(f"round {r} not run: {info['why']}; the scores are round {r - 1}'s")
            break
        est = info["estimated_gender_errors"]
        click.echo(f"round {r}: {info['genders_masked']} gender and {info['ages_masked']} age labels masked (round "
                   f"{r - 1} estimates {est} wrong genders); cross-fitting again")  # fmt: skip
        # named by the masked labels: a review between two runs changes them, and a cross-fit folder holds one manifest
        pred = run(masked, Path(out) / f"round_{r}-{manifest_hash(masked)[:12]}")
        src |= {"rounds": r, f"round_{r}": info}
    return pred, src


def _label_manifest(ds, name: str):
    """The dataset's usable samples as a training manifest (path, age, gender, content_hash)."""
    import pandas as pd

    from curate.fo_review import dataset_frame

    df = dataset_frame(ds)
    if df.empty:
        fail(f"dataset {name!r} has no usable samples: run `curate score` first")
    return pd.DataFrame(
        {
            "path": df["path"],
            "age": df["age"].astype(int),
            "gender": df["gender"].astype(int),
            "content_hash": df["content_hash"],
        }
    )


def _crossfit_dir(man, cfg, k: int, seed: int) -> Path:
    """The default cross-fit folder, named by labels, folds, seed and config, so that a re-run reuses it."""
    import hashlib

    from core.manifest import manifest_hash
    from curate.fo_inputs import cache_dir

    ckey = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir().parent / "crossfit" / f"{manifest_hash(man)}-k{k}-s{seed}-{ckey}"


@click.command()
@dataset_option
@click.option("--view", "view_name", help="Open this saved view (e.g. suspect-gender).")
@click.option("--port", default=5151, show_default=True)
@click.option(
    "--address",
    default="localhost",
    show_default=True,
    help="Interface to listen on (0.0.0.0 for every interface; prefer an SSH tunnel).",
)
@click.option(
    "--remote",
    "--no-browser",
    "remote",
    is_flag=True,
    help="Serve only; open no browser (remote machine: reach it through an SSH tunnel).",
)
@click.option("--start-timeout", default=600.0, show_default=True, help="Seconds to wait for the App server to start.")
def app(name: str, view_name: str | None, port: int, address: str, remote: bool, start_timeout: float) -> None:
    """Launch the FiftyOne App on the dataset, with its saved views; Ctrl-C stops it.

    Remote use: run `curate app --remote` on the server, then on your machine
    `ssh -N -L 5151:127.0.0.1:5151 USER@SERVER` and open http://localhost:5151.
    """
    fo = _connect()
    ds = _open(fo, name, create=False)
    view = None
    if view_name:
        saved = ds.list_saved_views()
        if view_name not in saved:
            fail(
                f"no saved view {view_name!r} in dataset {name!r}; saved views: {', '.join(saved) or 'none'} "
                "(run `curate flag-mislabels`)"
            )
        view = ds.load_saved_view(view_name)
    from curate.fo_app import serve
    from curate.fo_plugin import configure_app, record_workdir, use_plugin

    plugins = use_plugin(fo)
    configure_app(fo, ds)
    record_workdir(ds, os.environ["CURATE_WORKDIR"])

    def ready():
        click.echo(
            f"App serving dataset {name!r}{f' view {view_name!r}' if view_name else ''} at "
            f"http://{address}:{port}/ (saved views: {', '.join(ds.list_saved_views()) or 'none'}); "
            "Ctrl-C stops it"
        )
        click.echo(f"review: open a sample and the 'Curate review' panel (+ next to the tabs); plugins from {plugins}")
        if remote:
            click.echo(
                f"from your machine: ssh -N -L {port}:127.0.0.1:{port} USER@THIS_HOST, then open "
                f"http://localhost:{port}"
            )

    serve(fo, ds, view, address=address, port=port, remote=remote, start_timeout=start_timeout, on_ready=ready)


@click.command("review-status")
@dataset_option
@path_option("--out", "--csv", "out_csv", help="Decisions CSV [default: reviews/<dataset>_decisions.csv].")
def review_status(name: str, out_csv: Path | None) -> None:
    """Summarise review decisions (reviewed / pending per saved view) and export them to CSV.

    A reviewer tags samples confirmed:mislabel, confirmed:ok or exclude, and may set age_corrected /
    gender_corrected. The CSV has one row per reviewed sample with its `decision` (exclude, conflict,
    mislabel, ok); `curate export` obeys it.
    """
    from curate.fo_review import decisions, flags_outdated, stale_decisions_warning
    from curate.fo_review import review_status as summary

    fo = _connect()
    ds = _open(fo, name, create=False)
    table = summary(ds)
    dec = decisions(ds)
    out_csv = out_csv or Path("reviews") / f"{name}_decisions.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(dec, out_csv)
    click.echo(table.to_string(index=False))
    stored = ds.info.get("curate", {}).get("model_checks", {})
    if stored.get("source"):
        click.echo(describe_source(stored["source"]))
    _echo_model_checks(stored.get("folds", []))
    for stale in (flags_outdated(ds), stale_decisions_warning(ds), _mistyped_tags(ds)):
        if stale:
            click.echo(f"warning: {stale}", err=True)
    bad = dec[dec["problem"] != ""]
    if len(bad):
        click.echo(f"{len(bad)} correction(s) need fixing, e.g. {bad['filename'].iloc[0]}: {bad['problem'].iloc[0]}")
    click.echo(f"{len(dec)} decisions -> {out_csv}")


def _mistyped_tags(ds) -> str | None:
    """The tags `curate export` would refuse as typos ("exlude"), said where the reviewer checks progress."""
    from curate.export.review import mistyped_tag

    bad = {t: n for t, n in ds.count_sample_tags().items() if mistyped_tag(t)}
    if not bad:
        return None
    shown = ", ".join(f"{mistyped_tag(t)}: {n} sample(s)" for t, n in sorted(bad.items()))
    return f"tags that look mistyped, which `curate export` refuses: {shown}; these samples count as pending"


def crossfit_config(cfg, recipe: str, sets: tuple[str, ...]):
    """The fold models' config: the named recipe (trainer.crossfit.RECIPES; "full": the config as it is),
    except the keys --set names (it wins)."""
    from trainer.config import parse_overrides
    from trainer.crossfit import recipe_config

    named = tuple(k for k in parse_overrides(sets) if k in ("image_size", "num_epochs", "batch_size"))
    if named and recipe != "full":
        click.echo(f"--recipe {recipe}: keeping --set {', '.join(sorted(named))}", err=True)
    return recipe_config(cfg, recipe, named)


def describe_source(src: dict) -> str:
    """One line: where the out-of-sample predictions behind the label scores came from."""
    if src.get("kind") == "model":
        return (f"out-of-sample predictions: model {src['model']} ({src['checkpoint']}), none of the {src['images']} "
                f"images in its training set (manifest {src['training_manifest']})")  # fmt: skip
    if src.get("kind") == "crossfit":
        rounds = (
            f", round {src['rounds']} (the labels round {src['rounds'] - 1} estimates wrong masked)"
            if src.get("rounds", 1) > 1
            else ""
        )
        return (f"out-of-sample predictions: {src['k']}-fold cross-fit of {src['images']} images in "
                f"{src['folder']}{rounds}")  # fmt: skip
    return f"out-of-sample predictions: {src.get('file', src)}"


def _echo_model_checks(folds: list[dict]) -> None:
    """The per-fold check of the models behind the label scores, one line each."""
    from audits.model_checks import describe

    for row in folds:
        click.echo(describe(row))


@click.group("plugin")
def plugin() -> None:
    """The review plugin for the FiftyOne App (`curate app` finds it by itself)."""


@plugin.command("install")
@path_option("--dir", "plugins_dir", help="Plugins folder [default: FiftyOne's, fo.config.plugins_dir].")
def plugin_install(plugins_dir: Path | None) -> None:
    """Link the plugin into FiftyOne's plugins folder, so a plain `fiftyone app launch` has it."""
    import fiftyone as fo

    from curate.fo_plugin import install

    given = plugins_dir is not None
    plugins_dir = plugins_dir if given else Path(fo.config.plugins_dir)
    link = install(plugins_dir)
    click.echo(f"review plugin linked: {link} -> {link.resolve()}")
    if given and Path(fo.config.plugins_dir or "").resolve() != Path(plugins_dir).resolve():
        click.echo(f"FiftyOne looks in {fo.config.plugins_dir}: set FIFTYONE_PLUGINS_DIR={Path(plugins_dir).resolve()} "
                   "for `fiftyone app launch` and `fiftyone delegated launch` to find it")  # fmt: skip


@plugin.command("path")
def plugin_path() -> None:
    """Print the plugin's folder (e.g. for FIFTYONE_PLUGINS_DIR's parent or a manual link)."""
    from curate.fo_plugin import plugin_source

    click.echo(str(plugin_source()))
