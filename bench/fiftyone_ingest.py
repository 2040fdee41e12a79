"""Benchmark: ingesting every precomputed field of the full UTKFace set into FiftyOne.

    python bench/fiftyone_ingest.py [--manifest dataset/folds.csv]
        [--predictions runs/default/eval/test_2_folds_last/predictions.parquet]
        [--audits AUDITS.parquet | --audit-results RUNNER_CACHE_results-*.parquet] [--naive-n 2000]

Times, in one run and one (temporary, isolated) database:
  bulk      `curate score`'s path (curate.fo_dataset.ingest): all samples with labels, predictions
            (Regression / Classification with logits), losses, every audit field and the 576-d
            embedding, inserted in bulk (insert_many in FiftyOne's layout); and the same through
            FiftyOne's public add_samples (CURATE_FO_INSERT=add_samples)
  noop      the same ingest again (nothing changed: fingerprints only)
  update    ingest after every prediction changed (one $set per sample in a bulk write)
  naive     the per-sample loop people write first: add bare samples, then for each sample set
            every field and `sample.save()`; timed on --naive-n samples and EXTRAPOLATED to the full set
Inputs are real wherever files exist: labels from the manifest; predictions from the given parquet
(rows it lacks are filled by resampling its real rows, labels and errors recomputed per image); audit
fields from an audits table, or from the audits runner's per-content cache (flags recomputed with
dataset thresholds); rows either lacks are filled by resampling real rows. The report says how many
rows of each kind were real.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=REPO / "dataset" / "folds.csv")
    ap.add_argument(
        "--predictions", type=Path, default=REPO / "runs/default/eval/test_2_folds_last/predictions.parquet"
    )
    ap.add_argument("--audits", type=Path, help="A full audits table (curate audit output).")
    ap.add_argument("--audit-results", type=Path, help="The audits runner's results cache (content_hash keyed).")
    ap.add_argument("--limit", type=int, help="Only the first N manifest rows.")
    ap.add_argument("--naive-n", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="Write the figures here too.")
    ap.add_argument(
        "--use-configured-db",
        action="store_true",
        help="Use FiftyOne's configured database instead of a temporary one.",
    )
    return ap.parse_args()


def fill(base, real, key: str, seed: int = 0):
    """Rows of `real` for every row of `base` (joined on key); missing ones resampled from real rows."""
    import numpy as np

    real = real.drop_duplicates(key).set_index(key)
    have = base[key].isin(real.index).to_numpy()
    rng = np.random.default_rng(seed)
    src = np.where(
        have,
        base[key].map({k: i for i, k in enumerate(real.index)}).fillna(-1).astype(int),
        rng.integers(0, len(real), len(base)),
    )
    out = real.iloc[src].reset_index(drop=True)
    return out, int(have.sum())


def main() -> None:
    args = parse()
    tmpdb = None
    if not args.use_configured_db:
        # A fixed folder, emptied at the start: the previous run's mongod has exited by then (removing
        # it at exit would race FiftyOne's own shutdown of mongod).
        tmpdb = os.path.join(tempfile.gettempdir(), "curate-bench-fo-db")
        shutil.rmtree(tmpdb, ignore_errors=True)
        os.makedirs(tmpdb)
        os.environ["FIFTYONE_DATABASE_DIR"] = tmpdb
        os.environ.pop("FIFTYONE_DATABASE_URI", None)
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import numpy as np
    import pandas as pd

    from curate.fo_dataset import ingest
    from curate.fo_db import connect
    from curate.fo_inputs import file_manifest, join_inputs
    from curate.fo_schema import open_dataset
    from curate.fo_values import build_values
    from curate.fo_write import as_fo

    t = time.time()
    man, _ = file_manifest(args.manifest)
    if args.limit:
        man = man.head(args.limit).reset_index(drop=True)
    n = len(man)
    report: dict = {"n": n}

    # predictions: real rows where the file has them, else resampled real rows
    pred_real = pd.read_parquet(args.predictions)
    pred_real["path"] = [str(Path(p).resolve()) for p in pred_real["path"]]
    prows, n_real_pred = fill(man, pred_real.drop(columns=["age", "gender", "filename", "content_hash"]), "path")
    pred = pd.concat(
        [man[["path", "filename", "content_hash", "age", "gender"]], prows.drop(columns=["path"], errors="ignore")],
        axis=1,
    )
    pred["age_abs_error"] = (pred["age_pred"] - pred["age"]).abs()
    lg = pred[["gender_logit_0", "gender_logit_1"]].to_numpy(float)
    lse = np.logaddexp(lg[:, 0], lg[:, 1])
    pred["gender_loss"] = lse - lg[np.arange(n), pred["gender"].to_numpy(int)]
    report["predictions_real_rows"] = n_real_pred

    audit = None
    if args.audits:
        audit_real = pd.read_parquet(args.audits)
        audit_real["path"] = [str(Path(p).resolve()) for p in audit_real["path"]]
        arows, n_real_a = fill(man, audit_real.drop(columns=["content_hash", "filename"], errors="ignore"), "path")
        audit = pd.concat([man[["path", "content_hash"]], arows.drop(columns=["path"], errors="ignore")], axis=1)
    elif args.audit_results:
        from audits.quality import add_quality_flags
        from audits.runner import AUDIT_VERSION
        from audits.thresholds import compute_thresholds

        res = pd.read_parquet(args.audit_results)
        arows, n_real_a = fill(man[["content_hash"]], res, "content_hash")
        audit = pd.concat(
            [
                man[["path", "content_hash"]],
                arows.drop(columns=["width", "height"], errors="ignore"),
                man[["width", "height"]],
            ],
            axis=1,
        )
        audit = add_quality_flags(audit, compute_thresholds(audit))
        codes = audit.groupby("content_hash").ngroup()
        dup = audit["content_hash"].duplicated(keep=False)
        audit["exact_group"] = np.where(dup, codes, -1)
        audit["near_group"] = audit["exact_group"]
        lab = man.groupby("content_hash")[["age", "gender"]].nunique().max(axis=1) > 1
        audit["is_label_conflict_issue"] = man["content_hash"].map(lab).to_numpy() & dup.to_numpy()
        audit["audit_version"] = AUDIT_VERSION
    if audit is not None:
        report["audit_real_rows"] = n_real_a
        report["audit_columns"] = len(audit.columns)
    table = join_inputs(man, pred, audit)
    report["prepare_seconds"] = round(time.time() - t, 1)

    fo = connect()
    name = f"bench-ingest-{os.getpid()}"
    ds = open_dataset(fo, name)
    t = time.time()
    c = ingest(fo, ds, table, provenance={"predictions": str(args.predictions)})
    report["bulk_seconds"] = round(time.time() - t, 2)
    assert c["added"] == n and len(ds) == n
    report["fields"] = len(ds.get_field_schema())

    t = time.time()
    c = ingest(fo, ds, table)
    report["noop_seconds"] = round(time.time() - t, 2)
    assert c["added"] == 0 and not c["updated"]

    t2 = table.copy()
    t2["age_pred"] = t2["age_pred"] + 0.5
    t = time.time()
    c = ingest(fo, ds, t2)
    report["update_predictions_seconds"] = round(time.time() - t, 2)
    assert c["updated"].get("predictions") == n

    # FiftyOne's public add_samples path for the same fresh ingest
    os.environ["CURATE_FO_INSERT"] = "add_samples"
    ds2 = open_dataset(fo, name + "-add")
    t = time.time()
    c = ingest(fo, ds2, table)
    report["bulk_add_samples_seconds"] = round(time.time() - t, 2)
    assert c["added"] == n
    ds2.delete()
    os.environ["CURATE_FO_INSERT"] = "fast"

    # naive: bare samples, then a per-sample save() loop over every field
    k = min(args.naive_n, n)
    sub = table.head(k).reset_index(drop=True)
    values, _, _ = build_values(fo, sub, "bench", table.attrs.get("audit_columns"))
    flat = {f: v for g in values.values() for f, v in g.items()}
    nds = fo.Dataset(f"bench-naive-{os.getpid()}")
    t = time.time()
    nds.add_samples([fo.Sample(filepath=p) for p in sub["path"]], progress=False)
    for i, sample in enumerate(nds.iter_samples(progress=False)):
        for f, v in flat.items():
            if v[i] is not None:
                sample[f] = as_fo(fo, v[i])
        sample.save()
    naive = time.time() - t
    report["naive_seconds_measured"] = round(naive, 2)
    report["naive_n"] = k
    report["naive_seconds_extrapolated_full"] = round(naive * n / k, 1)
    report["speedup_vs_naive"] = round(naive * n / k / report["bulk_seconds"], 1)
    nds.delete()
    ds.delete()

    print(
        f"{n} samples, {report['fields']} fields (predictions: {n_real_pred} real rows"
        + (f", audits: {report['audit_real_rows']} real rows" if audit is not None else ", no audits")
        + ")"
    )
    print(f"  bulk ingest (curate score path)     {report['bulk_seconds']:8.2f} s")
    print(f"  same, via FiftyOne's add_samples    {report['bulk_add_samples_seconds']:8.2f} s")
    print(f"  re-run, nothing changed             {report['noop_seconds']:8.2f} s")
    print(f"  re-run, all predictions changed     {report['update_predictions_seconds']:8.2f} s")
    print(
        f"  naive per-sample save() loop        {report['naive_seconds_measured']:8.2f} s for {k} samples -> "
        f"{report['naive_seconds_extrapolated_full']:.0f} s for {n} (EXTRAPOLATED), "
        f"{report['speedup_vs_naive']}x slower than bulk"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
