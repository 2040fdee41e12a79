"""The audit on a Ray cluster: a real multi-node cluster on this machine (127.0.0.1; a head that runs no
task and two worker nodes of one CPU each), the same rows as the local path, and a worker node killed
mid-run costs a retry, not a row, a duplicate or a different value."""

from __future__ import annotations

import os

# Every Ray process on 127.0.0.1: Ray reads this at import (otherwise it advertises the machine's own
# address, which a sandbox may not route back to itself).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import fo_common  # noqa: I001 - first: it isolates FiftyOne's database before anything imports fiftyone
import pandas as pd
import pytest
from click.testing import CliRunner
from fo_common import TINY, run

from curate.cli import main

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[ray]' (scripts/setup.sh does)")
pytestmark = pytest.mark.timeout(900)
env, model, fo, scored = fo_common.env, fo_common.model, fo_common.fo, fo_common.scored
MB = 2**20


@pytest.fixture(scope="module")
def cluster():
    """Head (no CPU for tasks) + two one-CPU worker nodes, every process on 127.0.0.1; stopped after."""
    from ray.cluster_utils import Cluster

    node = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * MB}
    c = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(**node, num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _worker_nodes() -> int:
    """Alive nodes that run tasks (the head has no CPU)."""
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))


def _local(sample_dir, tmp_path) -> pd.DataFrame:
    res = CliRunner().invoke(main, ["audit", str(sample_dir), "--out", str(tmp_path / "local.parquet"), "--workers",
                                    "1", "--no-cache", "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return pd.read_parquet(tmp_path / "local.parquet")


def test_audit_on_a_two_node_cluster_equals_the_local_audit(cluster, sample_dir, tmp_path):
    c, _ = cluster
    local = _local(sample_dir, tmp_path)
    out = tmp_path / "ray.parquet"
    res = CliRunner().invoke(main, ["audit", str(sample_dir), "--out", str(out), "--ray", c.address, "--quiet"])
    assert res.exit_code == 0, res.output
    on_ray = pd.read_parquet(out)
    pd.testing.assert_frame_equal(on_ray, local)
    import json

    meta = json.loads(out.with_name("ray.meta.json").read_text())
    assert meta["config"]["executor"] == f"ray {c.address}: 3 node(s), 2 CPU(s)"
    # a re-run on the cluster reads the cache the first one wrote: nothing recomputed, same table
    res = CliRunner().invoke(main, ["audit", str(sample_dir), "--out", str(out), "--ray", c.address, "--quiet"])
    assert "(0 computed, 200 from cache)" in res.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), local)


def test_a_worker_node_killed_mid_audit_costs_a_retry_not_a_row(cluster, sample_dir, tmp_path, monkeypatch):
    from audits.runner import AuditCache, AuditConfig, run_audit
    from core import ray_cluster
    from curate.splits import scan_folder

    c, workers = cluster
    local = _local(sample_dir, tmp_path)
    usable, _ = scan_folder(sample_dir, progress=False)
    original, seen = ray_cluster.map_unordered, []

    def kill_a_node_after_five_chunks(*args, **kwargs):
        for i, recs in enumerate(original(*args, **kwargs)):
            if i == 5:  # both nodes are busy with a chunk each: one of them dies with its task
                c.remove_node(workers[0])
            seen.extend(r["pos"] for r in recs)
            yield recs

    monkeypatch.setattr(ray_cluster, "map_unordered", kill_a_node_after_five_chunks)
    cfg = AuditConfig(chunk_size=4, cache_root=tmp_path / "cache", progress=False, ray_address=c.address)
    table = run_audit(list(usable["path"]), usable[["age", "gender", "race"]], cfg).table
    assert _worker_nodes() == 1, "one worker node was really removed"
    assert sorted(seen) == list(range(200)), "every image audited once: none lost, none twice"
    assert len(table) == 200 and table["path"].is_unique
    cols = [c for c in local.columns if c not in ("path",)]
    pd.testing.assert_frame_equal(table[cols].reset_index(drop=True), local[cols].reset_index(drop=True))
    cached = AuditCache(tmp_path / "cache").results
    assert cached["content_hash"].is_unique and len(cached) == table["content_hash"].nunique()


def test_crossfit_folds_on_ray_equal_the_sequential_ones_even_when_a_node_dies(cluster, sample_split, tmp_path):
    """Two folds train at once, one per worker node; a node is removed once a fold has saved an epoch: its
    fold is re-run on the other node (resuming from that checkpoint) and every prediction is the
    sequential cross-fit's, bit for bit."""
    import threading
    import time

    from trainer.config import TrainConfig, replace
    from trainer.crossfit import crossfit

    c, _ = cluster
    node = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * MB, "num_cpus": 1}
    while _worker_nodes() < 2:
        victim = c.add_node(**node)
    c.wait_for_nodes()
    man = pd.read_csv(sample_split / "folds.csv", dtype={"content_hash": str})
    cfg = replace(TrainConfig(), image_size=32, num_epochs=6, override_cycle_epoch_count=6, batch_size=32,
                  threads=1, keep_epoch_checkpoints=False)  # fmt: skip
    local = crossfit(man, tmp_path / "local", cfg, k=2, seed=0, progress=False)

    def remove_a_node_after_an_epoch():
        ckpts = [tmp_path / "ray" / f"fold_{i}" / "run" / "checkpoints" / "last.pt" for i in (0, 1)]
        while not any(p.exists() for p in ckpts):
            time.sleep(0.05)
        c.remove_node(victim)

    killer = threading.Thread(target=remove_a_node_after_an_epoch, daemon=True)
    killer.start()
    on_ray = crossfit(man, tmp_path / "ray", cfg, k=2, seed=0, progress=False, ray_address=c.address)
    killer.join(timeout=60)
    assert not killer.is_alive() and _worker_nodes() == 1
    cols = [col for col in local.columns if col != "model"]  # the model id hashes a file that names its folder
    pd.testing.assert_frame_equal(on_ray[cols], local[cols])
    import json

    meta = json.loads((tmp_path / "ray" / "crossfit.json").read_text())
    assert sorted(meta["folds"]) == ["0", "1"] and all(f["n_holdout"] > 0 for f in meta["folds"].values())


def test_flag_mislabels_on_ray_stores_what_the_local_cross_fit_stores(cluster, scored, fo, tmp_path):
    """`curate flag-mislabels --ray ADDRESS`: the same out-of-sample predictions, scores and tags in the
    dataset as the local cross-fit (the review state is untouched either way)."""
    c, _ = cluster
    name, _ = scored
    base = ["flag-mislabels", "--dataset", name, "--oos", "crossfit", "--full", *TINY, "--top-k", "5",
            "--allow-weak-model", "--quiet"]  # fmt: skip
    fields = ["filename", "oos_fold", "gender_flip_prob", "age_residual_z", "gender_suggested", "tags"]

    def stored():
        ds = fo.load_dataset(name)
        ds.reload()
        df = pd.DataFrame(dict(zip(fields, ds.values(fields))))
        df["tags"] = df["tags"].map(sorted)
        df["oos_age_pred"] = [p.value for p in ds.values("oos_age_pred")]
        return df.sort_values("filename").reset_index(drop=True)

    run(*base, "--crossfit-dir", tmp_path / "local")
    local = stored()
    res = run(*base, "--crossfit-dir", tmp_path / "ray", "--ray", c.address)
    assert "cross-fitting 200 images" in res.output
    pd.testing.assert_frame_equal(stored(), local)
    res = run("review-status", "--dataset", name, "--csv", tmp_path / "d.csv")
    assert f"2-fold cross-fit of 200 images in {tmp_path / 'ray'}" in res.output


def test_predict_on_ray_returns_the_local_rows(cluster, sample_dir, tmp_path):
    """`curate predict --ray`: shards of whole batches as tasks, rows in file order, the local values."""
    c, _ = cluster
    import cv2

    from core.faces import recrop
    from curate.cli.common import DEFAULT_MODEL, TIGHT_MODELS
    from trainer.predict import predict_images, predict_images_on_ray

    files = sorted(sample_dir.glob("*.jpg"))[:150] + [tmp_path / "tight.jpg", tmp_path / "broken.jpg"]
    cv2.imwrite(str(files[-2]), recrop(cv2.imread(str(files[0])), scale=0.75))  # goes to the tight-crop model
    files[-1].write_bytes(b"not a jpeg")
    local = pd.DataFrame(predict_images(DEFAULT_MODEL, files, tight_checkpoint=TIGHT_MODELS))
    on_ray = pd.DataFrame(
        predict_images_on_ray(DEFAULT_MODEL, files, address=c.address, shard=64, tight_checkpoint=TIGHT_MODELS)
    )
    pd.testing.assert_frame_equal(on_ray, local)
    assert (
        on_ray["status"].iloc[-1].startswith("unreadable image")
        and on_ray["model"].iloc[-2] == "tight_crop.pt+tight_crop_2.pt"
    )
    out = tmp_path / "p.csv"
    res = run("predict", str(sample_dir), "--ray", c.address, "--out", out)
    assert "200 predictions" in res.output and len(pd.read_csv(out)) == 200
