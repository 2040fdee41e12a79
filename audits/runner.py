"""One pass over a set of images: decode each image once, compute every audit from it, in parallel,
with a content-hash cache, then flag (dataset thresholds) and group duplicates.

Why one pass: decoding and memory traffic are shared by all audits, BRISQUE is batched, and a
re-run only stats the files (the file index maps path + size + mtime to the content hash, the result
cache maps content hash to measurements), so it finishes in seconds and recomputes nothing unchanged.

Library only (no click, no FiftyOne): `curate audit` and `curate score` call `run_audit` and
`write_audit`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from audits.brisque import brisque_batch
from audits.duplicates import DEFAULT_NEAR_RADIUS, DUPLICATES_VERSION, find_duplicates, phash, summarize_duplicates
from audits.face import FACE_OFFSET_MAX, FACE_VERSION, face_issues, face_summary, measure_face
from audits.face import RAW_COLUMNS as FACE_COLUMNS
from audits.quality import (
    QUALITY_VERSION,
    RAW_COLUMNS,
    SCORE_DEFINITIONS,
    add_quality_flags,
    image_status,
    measure_quality,
    working_copy,
)
from audits.skin_tone import DEFAULT_SKIN_CONFIG, SKIN_VERSION, SkinConfig, skin_tone, skin_tone_issues
from audits.thresholds import QualityThresholds, compute_thresholds
from core.allocator import keep_freed_memory
from core.atomic import remove_stale_temps, write_json, write_parquet
from core.images import decode_image, full_size, pixel_hash
from core.manifest import default_cache_dir
from core.schema import CHECKS, SKIN_TONE

AUDIT_VERSION = f"{QUALITY_VERSION}+{SKIN_VERSION}+{FACE_VERSION}+{DUPLICATES_VERSION}"

AUDIT_CHECKS = [chk for chk in CHECKS if chk.family in ("quality", "skin_tone", "face", "duplicates")]
SKIN_COLUMNS = [col.name for col in SKIN_TONE.raw] + [SKIN_TONE.score]
# Per-content measurements kept in the cache (threshold-independent).
CACHED_COLUMNS = ["content_hash", "audit_status"] + RAW_COLUMNS + SKIN_COLUMNS + FACE_COLUMNS + ["phash"]
LABEL_COLUMNS = ["age", "gender", "race"]
OUTPUT_COLUMNS = (
    ["path", "filename"]
    + LABEL_COLUMNS
    + ["content_hash", "audit_version"]
    + [col.name for chk in AUDIT_CHECKS for col in chk.columns()]
)
COLUMN_DOC = {
    "content_hash": "blake2b-128 of shape + decoded BGR pixels (joins split manifests)",
    "audit_version": "versions of the quality, skin-tone, face and duplicate code that measured the row",
    **{col.name: col.doc for chk in AUDIT_CHECKS for col in chk.columns()},
}


# --------------------------------------------------------------------------------------------------
# Decoding and the per-image audit
# --------------------------------------------------------------------------------------------------
def audit_image(
    img: np.ndarray,
    skin_cfg: SkinConfig = DEFAULT_SKIN_CONFIG,
    content_hash: str | None = None,
    small: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every per-image measurement except BRISQUE (batched separately) for one decoded BGR image.

    Why: the single place that defines what one pass computes from one set of pixels; tiny images
    get their size only, constant ones every measure that is defined. `small` is the image's working copy
    (audits.quality.working_copy) when the caller already made it.
    """
    row: dict[str, Any] = {"content_hash": content_hash or pixel_hash(img), "audit_status": image_status(img)}
    h, w = img.shape[:2]
    row.update(width=int(w), height=int(h), aspect=float(w / h))
    if row["audit_status"].startswith("too small"):
        return row
    small = working_copy(img) if small is None else small  # the pixel measures see at most AUDIT_PIXELS
    q = measure_quality(small)
    row.update({k: v for k, v in q.items() if k not in row})  # width / height / aspect: the image's own
    row.update(skin_tone(small, skin_cfg, chroma=q["chroma"]))
    row.update(measure_face(img))
    row["phash"] = phash(img)
    return row


def _audit_paths(
    items: Sequence[tuple[int, str]], known: frozenset[str] | set[str], skin_cfg: SkinConfig
) -> list[dict[str, Any]]:
    """Worker body: decode, hash, audit a chunk of (position, path); BRISQUE batched over the chunk.

    Content already in the cache (`known`) is only hashed, not re-audited.
    """
    out: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []
    for pos, p in items:
        rec: dict[str, Any] = {"pos": pos, "path": p}
        try:
            st = os.stat(p)
            rec["size"], rec["mtime_ns"] = int(st.st_size), int(st.st_mtime_ns)
        except OSError:
            rec["size"], rec["mtime_ns"] = -1, -1
        img, reason = decode_image(Path(p))
        rec["file_status"] = reason  # "" when the file decoded
        if img is None:
            rec.update(content_hash="", audit_status=reason)
            out.append(rec)
            continue
        ch = pixel_hash(img)
        if ch in known:
            rec.update(content_hash=ch, cached=True)
            out.append(rec)
            continue
        small = working_copy(img)  # reduced once, for every pixel measure and BRISQUE
        rec.update(audit_image(img, skin_cfg, content_hash=ch, small=small))
        w, h = full_size(Path(p), img)  # the file's size, not the reduced decode's (odd_size judges it)
        rec.update(width=w, height=h, aspect=w / h)
        out.append(rec)
        if rec["audit_status"] == "ok":
            pending.append((rec, small))  # a chunk holds no full-size photo
    if pending:
        scores = brisque_batch([im for _, im in pending])
        for (rec, _), s in zip(pending, scores):
            rec["brisque"] = float(s)
            if not np.isfinite(s):
                rec["audit_status"] = "BRISQUE undefined (too flat)"
    return out


_WORKER_STATE: dict[str, Any] = {}


def _pool(workers: int, known: frozenset[str], skin_cfg: SkinConfig):
    """Worker pool of freshly spawned interpreters.

    Why spawn: forking a process that holds threads (torch/OpenMP, Arrow's jemalloc thread, a
    caller's own) can deadlock the children on a lock held at fork time - even a fork server
    deadlocks once its preloaded modules have started a thread. Spawning costs each worker its
    imports (~2-3 s of CPU), once per run.
    """
    import multiprocessing as mp

    return mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(known, skin_cfg))


def _init_worker(known: frozenset[str], skin_cfg: SkinConfig) -> None:
    """One thread per worker process (the pool is the parallelism), and glibc malloc told to keep
    freed memory for the worker's life: BRISQUE's 2.5 MB intermediates would otherwise be fresh
    mmap()s, ~600 page faults per image."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    _WORKER_STATE["malloc"] = contextlib.ExitStack()
    _WORKER_STATE["malloc"].enter_context(keep_freed_memory())
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    _WORKER_STATE["known"] = known
    _WORKER_STATE["skin_cfg"] = skin_cfg


def _worker_chunk(items: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    return _audit_paths(items, _WORKER_STATE["known"], _WORKER_STATE["skin_cfg"])


def _ray_chunk(items: Sequence[tuple[int, str]], known: frozenset[str], skin_cfg: SkinConfig) -> list[dict[str, Any]]:
    """A Ray task: the pool worker's body, the worker set up once per Ray worker process."""
    if "malloc" not in _WORKER_STATE:
        _init_worker(known, skin_cfg)
    return _audit_paths(items, known, skin_cfg)


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """$CURATE_CACHE_DIR/audits (default ~/.cache/utkface-curate/audits)."""
    return default_cache_dir().expanduser() / "audits"


class AuditCache:
    """File index (path, size, mtime_ns -> content hash, status) and results (content hash ->
    measurements, per AUDIT_VERSION), as two parquet files rewritten atomically.

    Why keyed by content: a renamed or copied image reuses its measurements; why a file index:
    a re-run must not even decode 23k images to learn that nothing changed.
    """

    def __init__(
        self, root: Path | None = None, version: str = AUDIT_VERSION, skin_cfg: SkinConfig = DEFAULT_SKIN_CONFIG
    ) -> None:
        import hashlib

        self.root = Path(root) if root else cache_dir()
        self.version = version
        # measurements depend on the code version and on the skin parameters
        cfg_key = hashlib.blake2b(repr(asdict(skin_cfg)).encode(), digest_size=4).hexdigest()
        safe = f"{version.replace('+', '_')}_{cfg_key}"
        if self.root.is_dir():
            remove_stale_temps(self.root)  # a killed run's half-written cache files
        self.files_path = self.root / f"files-{safe}.parquet"
        self.results_path = self.root / f"results-{safe}.parquet"
        self.files = self._read(self.files_path, ["path", "size", "mtime_ns", "content_hash", "status"])
        self.results = self._read(self.results_path, CACHED_COLUMNS)
        self._files_map = {
            (p, int(s), int(m)): (c, st)
            for p, s, m, c, st in zip(
                self.files["path"],
                self.files["size"],
                self.files["mtime_ns"],
                self.files["content_hash"],
                self.files["status"],
            )
        }
        self._new_files: list[dict] = []
        self._new_results: list[dict] = []

    @staticmethod
    def _read(path: Path, cols: list[str]) -> pd.DataFrame:
        if path.exists():
            try:
                df = pd.read_parquet(path)
                if all(c in df.columns for c in cols):
                    return df
            except Exception:  # a damaged cache is a cache miss, never an error
                pass
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})

    def lookup_file(self, path: str, size: int, mtime_ns: int) -> tuple[str, str] | None:
        """(content hash, decode failure or "") of an unchanged file, None if unknown or changed."""
        return self._files_map.get((path, size, mtime_ns))

    def known_hashes(self) -> set[str]:
        """Content hashes whose measurements are cached (workers skip auditing those)."""
        return set(self.results["content_hash"].astype(str))

    def add(self, file_rec: dict, result: dict | None) -> None:
        """Remember a file (its content hash, or why it did not decode) and, if new, its results."""
        key = (file_rec["path"], file_rec["size"], file_rec["mtime_ns"])
        if key[1] >= 0:
            self._files_map[key] = (file_rec["content_hash"], file_rec["file_status"])
            self._new_files.append(
                {
                    "path": key[0],
                    "size": key[1],
                    "mtime_ns": key[2],
                    "content_hash": file_rec["content_hash"],
                    "status": file_rec["file_status"],
                }
            )
        if result is not None:
            self._new_results.append({c: result.get(c) for c in CACHED_COLUMNS})

    def flush(self) -> None:
        """Merge new entries and rewrite both files (atomic rename); a no-op when nothing is new."""
        if not self._new_files and not self._new_results:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self._new_files:
            new = pd.DataFrame(self._new_files)
            files = pd.concat([self.files, new], ignore_index=True) if len(self.files) else new
            self.files = files.drop_duplicates(["path"], keep="last").reset_index(drop=True)
            write_parquet(self.files, self.files_path)
        if self._new_results:
            new = _normalise_results(pd.DataFrame(self._new_results, columns=CACHED_COLUMNS))
            res = pd.concat([_normalise_results(self.results), new], ignore_index=True) if len(self.results) else new
            self.results = res.drop_duplicates(["content_hash"], keep="last").reset_index(drop=True)
            write_parquet(self.results, self.results_path)
        self._new_files, self._new_results = [], []


def _normalise_results(df: pd.DataFrame) -> pd.DataFrame:
    """Stable dtypes for the cached measurements (parquet needs one type per column)."""
    df = df.copy()
    for c in RAW_COLUMNS + ["ita", SKIN_TONE.score, "skin_L", "skin_a", "skin_b", "face_confidence", "face_offset"]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in ("width", "height", "n_faces"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    df["monk_tone"] = pd.to_numeric(df["monk_tone"], errors="coerce").astype("Int64")
    for c in ("content_hash", "audit_status", "skin_category", "phash"):
        df[c] = df[c].astype("string")
    return df


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------
@dataclass
class AuditConfig:
    """Knobs of one audit run (all recorded in the sidecar metadata).

    workers: processes (default: the CPUs this process may use); chunk_size: images per task;
    near_radius: phash Hamming radius of near duplicates; robust_k: MAD multiple of the dataset
    thresholds; thresholds: fixed QualityThresholds (skip dataset statistics, e.g. at predict time);
    threshold_overrides: values that win over dataset statistics (config); face_offset_max: how far (px of a
    200x200 crop) a face may sit off UTKFace's geometry before it is a face issue; ray_address: the chunks run
    as Ray tasks on that cluster instead of local processes (same chunks, same results, same cache).
    """

    workers: int | None = None
    chunk_size: int = 64
    near_radius: int = DEFAULT_NEAR_RADIUS
    robust_k: float = 3.0
    thresholds: QualityThresholds | None = None
    threshold_overrides: dict[str, float] = field(default_factory=dict)
    skin: SkinConfig = DEFAULT_SKIN_CONFIG
    face_offset_max: float = FACE_OFFSET_MAX  # px of a 200x200 crop (audits/face.py)
    use_cache: bool = True
    cache_root: Path | None = None
    progress: bool = True
    ray_address: str | None = None  # run the chunks as Ray tasks: an address, "auto" or "local" (core.ray_cluster)


@dataclass
class AuditResult:
    """Output of `run_audit`: one row per input image, duplicate pairs, and run metadata."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    meta: dict


def default_workers() -> int:
    """CPUs available to this process (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _absolute(p: str | os.PathLike) -> str:
    """The resolved path (as split and score use it); a dangling link or a link loop keeps its own name,
    so the row that says what is wrong with it carries the name the user sees."""
    q = Path(p)
    try:
        return str(q.resolve(strict=True))
    except (OSError, RuntimeError):
        return str(q.parent.resolve() / q.name)


def run_audit(
    paths: Sequence[str | os.PathLike], labels: pd.DataFrame | None = None, config: AuditConfig | None = None
) -> AuditResult:
    """Audit every image in `paths` (one row each, in order) and return table, pairs and metadata.

    `labels` (optional, aligned with `paths`) may hold age, gender, race: they are copied into the
    table and used to find duplicate pairs with conflicting labels.
    Why a library function: `curate audit`, `curate score` and the benchmarks share one code path.
    """
    cfg = config or AuditConfig()
    t0 = time.perf_counter()
    paths = [_absolute(p) for p in paths]
    cache = AuditCache(cfg.cache_root, skin_cfg=cfg.skin) if cfg.use_cache else None
    known = _Known.from_cache(cache, paths)
    n_computed = _measure(known, cache, cfg)
    t_measure = time.perf_counter() - t0
    table = _labelled(_table(known), labels)
    if cfg.thresholds is not None:
        thr = cfg.thresholds.with_overrides(cfg.threshold_overrides)
    else:
        thr = compute_thresholds(table, k=cfg.robust_k, overrides=cfg.threshold_overrides)
    table = add_quality_flags(table, thr)
    table = pd.concat([table, skin_tone_issues(table, cfg.skin), face_issues(table, cfg.face_offset_max)], axis=1)
    dup_rows, pairs = find_duplicates(table, radius=cfg.near_radius)
    table[list(dup_rows.columns)] = dup_rows
    table = table[OUTPUT_COLUMNS]
    meta = _metadata(table, pairs, thr, cfg, n_computed, time.perf_counter() - t0, t_measure)
    return AuditResult(table=table, pairs=pairs, meta=meta)


@dataclass
class _Known:
    """Per path position: its content hash ("" = did not decode), its decode failure ("" if decoded,
    None if unknown yet); per content hash: its measurements."""

    paths: list[str]
    content: list[str]
    file_status: list[str | None]
    results: dict[str, dict[str, Any]]

    @classmethod
    def from_cache(cls, cache: AuditCache | None, paths: list[str]) -> _Known:
        """What the cache already knows: path + size + mtime -> content hash -> measurements."""
        n = len(paths)
        known = cls(paths, [""] * n, [None] * n, {})
        if cache is None:
            return known
        for pos, p in enumerate(paths):
            try:
                st = os.stat(p)
            except OSError:
                continue
            hit = cache.lookup_file(p, int(st.st_size), int(st.st_mtime_ns))
            if hit is not None:
                known.content[pos], known.file_status[pos] = hit
        wanted = {c for c in known.content if c}
        if len(cache.results) and wanted:
            known.add_cached(cache, wanted)
        return known

    def add_cached(self, cache: AuditCache, hashes: set[str]) -> None:
        sub = cache.results[cache.results["content_hash"].isin(hashes)]
        self.results.update({r["content_hash"]: r for r in sub.to_dict("records")})

    def todo(self) -> list[tuple[int, str]]:
        """(position, path) of what must be decoded: unknown files, or content without measurements."""
        return [
            (pos, p)
            for pos, p in enumerate(self.paths)
            if self.file_status[pos] is None or (self.content[pos] and self.content[pos] not in self.results)
        ]


def _measure(known: _Known, cache: AuditCache | None, cfg: AuditConfig) -> int:
    """Decode and audit what is new, in worker processes (or in-process for one); returns how many."""
    from tqdm import tqdm

    todo = known.todo()
    if not todo:
        return 0
    hashes = frozenset(cache.known_hashes()) if cache is not None else frozenset()
    workers = max(1, min(cfg.workers or default_workers(), -(-len(todo) // cfg.chunk_size)))
    chunks = [todo[i : i + cfg.chunk_size] for i in range(0, len(todo), cfg.chunk_size)]
    bar = tqdm(total=len(todo), desc="audit", unit="img", disable=not cfg.progress, mininterval=0.5)
    from_cache: set[str] = set()
    n_computed = n_seen = 0

    def consume(recs: list[dict[str, Any]]) -> None:
        nonlocal n_computed, n_seen
        n_seen += len(recs)
        for rec in recs:
            pos = rec["pos"]
            known.content[pos] = rec["content_hash"]
            known.file_status[pos] = rec.get("file_status", rec.get("audit_status", ""))
            new = bool(rec["content_hash"]) and not rec.get("cached")
            if new:
                known.results[rec["content_hash"]] = rec
                n_computed += 1
            elif rec.get("cached"):
                from_cache.add(rec["content_hash"])
            if cache is not None:
                cache.add(rec, rec if new else None)
        bar.update(len(recs))

    try:
        _run_chunks(chunks, workers, hashes, cfg, cache, consume)
    except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on, not only click's "Aborted!"
        bar.close()
        kept = f"{n_seen} of {len(todo)} images audited and kept in the cache; the same command goes on from there"
        print(f"\ninterrupted: {kept if cache is not None else 'nothing kept (no cache)'}", file=sys.stderr, flush=True)
        raise
    finally:
        bar.close()
        if cache is not None:
            cache.flush()
    missing = from_cache - set(known.results)
    if missing and cache is not None:
        known.add_cached(cache, missing)
    return n_computed


FLUSH_EVERY_S = 30.0  # an interrupted audit (kill -9 included) loses at most this much work


def _run_chunks(chunks, workers: int, hashes: frozenset[str], cfg: AuditConfig, cache: AuditCache | None,
                consume) -> None:  # fmt: skip
    """Each chunk through `_audit_paths`, in this process (one worker) or a spawned pool; the cache is
    written every FLUSH_EVERY_S seconds (CURATE_AUDIT_FLUSH_S), so a re-run resumes where a killed one was."""
    every = float(os.environ.get("CURATE_AUDIT_FLUSH_S", FLUSH_EVERY_S))
    last = time.perf_counter()

    def done(recs) -> None:
        nonlocal last
        consume(recs)
        if cache is not None and time.perf_counter() - last >= every:
            cache.flush()
            last = time.perf_counter()

    if cfg.ray_address is not None:
        from core.ray_cluster import map_unordered

        for recs in map_unordered(_ray_chunk, chunks, shared=(hashes, cfg.skin), address=cfg.ray_address):
            done(recs)
        return
    if workers == 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batched ops: extra threads only spin
        try:
            for chunk in chunks:
                done(_audit_paths(chunk, hashes, cfg.skin))
        finally:
            torch.set_num_threads(threads)
        return
    with _pool(workers, hashes, cfg.skin) as pool:
        for recs in pool.imap_unordered(_worker_chunk, chunks):
            done(recs)


def _table(known: _Known) -> pd.DataFrame:
    """One row per path: its measurements, or the reason it has none."""
    rows = []
    for pos, p in enumerate(known.paths):
        ch = known.content[pos]
        base = {"path": p, "filename": Path(p).name, "content_hash": ch}
        res = known.results.get(ch) if ch else None
        if res is not None:
            base.update({c: res.get(c) for c in CACHED_COLUMNS if c != "content_hash"})
        else:
            base["audit_status"] = known.file_status[pos] or "unreadable file"
        rows.append(base)
    table = pd.DataFrame(rows)
    for c in CACHED_COLUMNS:
        if c not in table:
            table[c] = None
    return _normalise_results(table)


def _labelled(table: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """The table with the label columns (nullable ints, missing where unknown) and the audit version."""
    n = len(table)
    lab = labels.reset_index(drop=True) if labels is not None else pd.DataFrame(index=range(n))
    for c in LABEL_COLUMNS:
        table[c] = (
            pd.to_numeric(lab[c], errors="coerce").astype("Int64") if c in lab else pd.array([pd.NA] * n, "Int64")
        )
    table["audit_version"] = AUDIT_VERSION
    return table


def _versions() -> dict[str, str]:
    """Library versions for the sidecar, read from package metadata (importing torch and piq in the
    parent just to print their versions would cost ~6 s of CPU)."""
    from importlib import metadata

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pandas": pd.__version__,
    }
    for dist in ("torch", "piq", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unavailable"
    return out


def _metadata(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    thr: QualityThresholds,
    cfg: AuditConfig,
    n_computed: int,
    wall: float,
    t_measure: float,
) -> dict:
    ok = table["audit_status"] == "ok"
    flags = {chk.issue: int(table[chk.issue].sum()) for chk in AUDIT_CHECKS}
    return {
        "audit_version": AUDIT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_images": int(len(table)),
        "n_ok": int(ok.sum()),
        "status_counts": {str(k): int(v) for k, v in table["audit_status"].value_counts().items()},
        "flag_counts": flags,
        "skin_category_counts": {str(k): int(v) for k, v in table["skin_category"].value_counts().items()},
        "face": face_summary(table, cfg.face_offset_max),
        "duplicates": {**summarize_duplicates(table, pairs), "near_radius": cfg.near_radius},
        "quality_thresholds": thr.to_dict(),
        "score_definitions": SCORE_DEFINITIONS,
        "skin_config": asdict(cfg.skin),
        "config": {
            "workers": cfg.workers or default_workers(),
            "executor": _executor(cfg),
            "chunk_size": cfg.chunk_size,
            "robust_k": cfg.robust_k,
            "threshold_overrides": dict(cfg.threshold_overrides),
            "use_cache": cfg.use_cache,
        },
        "timing": {
            "wall_s": round(wall, 3),
            "measure_s": round(t_measure, 3),
            "computed": n_computed,
            "from_cache": int(len(table) - n_computed),
            "computed_img_per_s": round(n_computed / t_measure, 1) if n_computed and t_measure > 0 else None,
        },
        "libraries": _versions(),
        "columns": COLUMN_DOC,
    }


def _executor(cfg: AuditConfig) -> str:
    if cfg.ray_address is None:
        return "local processes"
    from core.ray_cluster import connect, describe

    return f"ray {cfg.ray_address}: {describe(connect(cfg.ray_address))}"


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """(metadata JSON, duplicate-pairs parquet) written next to the audit parquet `out`."""
    out = Path(out)
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(stem + ".meta.json"), out.with_name(stem + ".dup_pairs.parquet")


def write_audit(result: AuditResult, out: str | os.PathLike) -> dict[str, Path]:
    """Write the table (parquet), the metadata sidecar (JSON) and the duplicate pairs (parquet).

    Why a sidecar: thresholds, versions and counts travel with the table, and `QualityThresholds.load`
    reads the sidecar directly, so `curate predict` can reuse the thresholds of an audited dataset.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path, pairs_path = sidecar_paths(out)
    pairs = result.pairs.copy()
    if len(pairs):
        pairs.insert(2, "path_a", result.table["path"].to_numpy()[pairs["i"].to_numpy()])
        pairs.insert(3, "path_b", result.table["path"].to_numpy()[pairs["j"].to_numpy()])
    # Sidecars first, the table last: a table on disk always has whole sidecars of its own pass.
    write_parquet(pairs, pairs_path)
    meta = dict(result.meta, outputs={"table": str(out), "pairs": str(pairs_path)})
    write_json(meta_path, meta)
    write_parquet(result.table, out)
    return {"table": out, "meta": meta_path, "pairs": pairs_path}
