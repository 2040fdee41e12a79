"""Exact and near duplicates, and the label conflicts they reveal.

Why: UTKFace holds hundreds of pixel-identical groups, many with conflicting labels (one photo, two
ages): those are label errors found without any model, and duplicates that straddle train and test
inflate test scores. Exact duplicates share a pixel hash (`pixel_hash`, also the `content_hash` of
every audit row and of the split manifests); near duplicates (re-encoded, slightly resized or
recompressed copies) have perceptual hashes (`phash`) within a small Hamming radius. Groups are
connected components of the duplicate pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from core.labels import GENDER_NAMES
from core.schema import DUPLICATE, LABEL_CONFLICT

DUPLICATES_VERSION = "dup-2"  # 2: the one schema (distance, score, reasons added)
# 64-bit phash distances are even (32 bits set in every hash). On UTKFace's aligned crops, pairs at
# distance 0-2 are nearly all the same photo (re-encoded, re-cropped) or the same sitting; at 4 about
# half are different people who merely look alike once aligned.
DEFAULT_NEAR_RADIUS = 2


def phash(img: np.ndarray) -> str:
    """64-bit DCT perceptual hash as 16 hex digits (the `imagehash.phash` recipe, in OpenCV).

    Gray, area-resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies, bit = coefficient > their
    median. Why: robust to re-encoding, mild resizing and brightness changes, so copies of one photo
    stay within a few bits of each other.
    """
    gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


def _to_uint64(hashes: Sequence[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def hamming_pairs(hashes: Sequence[str], radius: int, block: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) of 64-bit hex hashes within Hamming distance `radius`: (i, j, distance).

    Exact (no missed pairs). Multi-index hashing first: split the 64 bits into radius+1 chunks; two
    hashes within `radius` bits agree exactly on at least one chunk (pigeonhole), so only hashes
    sharing a chunk value need comparing (milliseconds for 23,708 hashes at radius 2). Aligned faces
    share many phash bits, so for larger radii the chunk buckets grow; when they would hold more
    candidate pairs than a sweep costs, a blocked all-pairs popcount sweep is used instead.
    """
    h = _to_uint64(hashes)
    n = len(h)
    if n < 2:
        z = np.zeros(0, np.int64)
        return z, z, z
    n_chunks = min(radius + 1, 64)
    if 64 // n_chunks >= 4:
        keys = _chunk_keys(h, n_chunks)
        n_cand = sum(int((c * (c - 1) // 2).sum()) for c in (np.unique(k, return_counts=True)[1] for k in keys))
        if n_cand <= n * n // 400:  # generating a candidate costs ~100x a popcount in the sweep
            return _pairs_multi_index(h, keys, radius)
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, block):
        a = h[s : s + block]
        d = np.bitwise_count(a[:, None] ^ h[None, s:])
        ii, jj = np.nonzero(d <= radius)
        keep = jj > ii  # upper triangle only (j counts from s)
        ii, jj = ii[keep], jj[keep]
        out_i.append(ii + s)
        out_j.append(jj + s)
        out_d.append(d[ii, jj])
    return (
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_j).astype(np.int64),
        np.concatenate(out_d).astype(np.int64),
    )


def _chunk_keys(h: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    bounds = np.linspace(0, 64, n_chunks + 1).astype(int)
    return [(h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _pairs_multi_index(h: np.ndarray, keys: list[np.ndarray], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(h)
    cand = []
    for key in keys:
        order = np.argsort(key, kind="stable")
        ks = key[order]
        # run of equal keys containing each sorted position: pair it with every later member
        run_start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        run_end = np.r_[run_start[1:], n]
        later = np.repeat(run_end, np.diff(np.r_[run_start, n])) - np.arange(n) - 1
        total = int(later.sum())
        if total == 0:
            continue
        a = np.repeat(np.arange(n), later)
        offset = np.arange(total) - np.repeat(np.cumsum(later) - later, later) + 1
        pa, pb = order[a], order[a + offset]
        cand.append(np.minimum(pa, pb) * n + np.maximum(pa, pb))
    if not cand:
        z = np.zeros(0, np.int64)
        return z, z, z
    uniq = np.unique(np.concatenate(cand).astype(np.int64))
    ci, cj = uniq // n, uniq % n
    d = np.bitwise_count(h[ci] ^ h[cj]).astype(np.int64)
    keep = d <= radius
    return ci[keep], cj[keep], d[keep]


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes given edges (i, j) (union-find)."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)])


def _group_ids(labels: np.ndarray) -> np.ndarray:
    """Component labels -> group ids 0..G-1 for components with > 1 member (by first member), else -1."""
    uniq, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = counts[inverse] > 1
    ids = np.full(len(labels), -1, dtype=np.int64)
    if multi.any():
        roots = labels[multi]
        _, first_idx = np.unique(roots, return_index=True)
        order = np.argsort(first_idx)
        remap = {int(r): k for k, r in enumerate(np.unique(roots)[order])}
        ids[multi] = [remap[int(r)] for r in roots]
    return ids


def find_duplicates(df: pd.DataFrame, radius: int = DEFAULT_NEAR_RADIUS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group exact and near duplicates and report label conflicts.

    `df` needs `content_hash` and `phash` (empty/missing for images that have none: a corrupt file
    joins no group, a tiny one only exact groups) and may carry `age`, `gender` (and `race`) labels.
    Returns (rows, pairs):
    rows, aligned on df's index: the columns of the `duplicate` and `label_conflict` checks of the one
    schema (core/schema.py): exact_group (id or -1), near_group (id or -1; exact groups are inside near
    groups), duplicate_distance, duplicate_score / is_duplicate_issue / duplicate_reason, and
    label_conflict_count (partners with another label), its score, issue and reason;
    pairs: i, j (positions in df, i < j), kind ("exact" or "near"), hamming (phash distance) and,
    when labels exist, age_a, age_b, gender_a, gender_b, [race_a, race_b], label_conflict.

    A pair conflicts when both sides are labelled and their ages or genders differ: one face cannot
    have two ages in one photo. Exact pairs are certain; near pairs within `radius` bits are
    candidates (faces aligned the same way can look alike to a 64-bit hash).
    """
    n = len(df)
    ch = df["content_hash"] if "content_hash" in df else pd.Series([""] * n, index=df.index)
    ch = ch.astype("string").fillna("").to_numpy(dtype=object)
    ph = df["phash"] if "phash" in df else pd.Series([""] * n, index=df.index)
    ph = ph.astype("string").fillna("").to_numpy(dtype=object)

    # exact duplicates: equal content hash
    has_ch = np.array([bool(c) for c in ch])
    exact_lab = np.full(n, -1, dtype=np.int64)
    exact_lab[has_ch] = pd.factorize(ch[has_ch])[0]
    exact_ids = np.full(n, -1, dtype=np.int64)
    if has_ch.any():
        exact_ids[has_ch] = _group_ids(exact_lab[has_ch])
    ei, ej = [], []
    in_group = np.nonzero(exact_ids >= 0)[0]
    for _, members in pd.Series(in_group).groupby(exact_ids[in_group]):
        m = np.sort(members.to_numpy())
        a, b = np.triu_indices(len(m), k=1)
        ei.append(m[a])
        ej.append(m[b])
    ei = np.concatenate(ei) if ei else np.zeros(0, np.int64)
    ej = np.concatenate(ej) if ej else np.zeros(0, np.int64)

    # near duplicates: phash within radius, minus the pairs that are exact already
    has_ph = np.array([bool(p) for p in ph])
    pos = np.nonzero(has_ph)[0]
    vi, vj, vd = hamming_pairs(ph[pos].tolist(), radius)
    ni, nj = pos[vi], pos[vj]
    not_exact = ~((exact_lab[ni] >= 0) & (exact_lab[ni] == exact_lab[nj]))
    ni, nj, nd = ni[not_exact], nj[not_exact], vd[not_exact]
    near_ids = _group_ids(_components(n, np.concatenate([ei, ni]), np.concatenate([ej, nj])))

    exact_d = np.array([_hamming_hex(ph[a], ph[b]) for a, b in zip(ei, ej)], dtype=np.float64)
    pairs = pd.DataFrame(
        {
            "i": np.concatenate([ei, ni]).astype(np.int64),
            "j": np.concatenate([ej, nj]).astype(np.int64),
            "kind": ["exact"] * len(ei) + ["near"] * len(ni),
            "hamming": np.concatenate([exact_d, nd.astype(np.float64)]),
        }
    )
    if {"age", "gender"} <= set(df.columns):
        _label_pairs(df, pairs)
    rows = _duplicate_columns(n, exact_ids, near_ids, pairs, radius)
    rows.index = df.index
    return rows, pairs


def _label_pairs(df: pd.DataFrame, pairs: pd.DataFrame) -> None:
    """Add both sides' labels and `label_conflict` to `pairs` (in place)."""
    gi, gj = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    age = pd.to_numeric(df["age"], errors="coerce").to_numpy(dtype=np.float64)
    gen = pd.to_numeric(df["gender"], errors="coerce").to_numpy(dtype=np.float64)
    pairs["age_a"], pairs["age_b"] = age[gi], age[gj]
    pairs["gender_a"], pairs["gender_b"] = gen[gi], gen[gj]
    if "race" in df.columns:
        race = pd.to_numeric(df["race"], errors="coerce").to_numpy(dtype=np.float64)
        pairs["race_a"], pairs["race_b"] = race[gi], race[gj]
    both = ~np.isnan(age[gi]) & ~np.isnan(age[gj]) & ~np.isnan(gen[gi]) & ~np.isnan(gen[gj])
    pairs["label_conflict"] = both & ((age[gi] != age[gj]) | (gen[gi] != gen[gj]))


def _duplicate_columns(
    n: int, exact_ids: np.ndarray, near_ids: np.ndarray, pairs: pd.DataFrame, radius: int
) -> pd.DataFrame:
    """Per image: the `duplicate` and `label_conflict` checks' columns, from the pairs."""
    both = pd.DataFrame(
        {
            "row": np.concatenate([pairs["i"], pairs["j"]]),
            "other": np.concatenate([pairs["j"], pairs["i"]]),
            "hamming": np.concatenate([pairs["hamming"], pairs["hamming"]]),
            "exact": np.concatenate([pairs["kind"] == "exact"] * 2),
        }
    )
    dist = np.full(n, np.nan)
    n_exact, n_near = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if len(both):
        g = both.groupby("row")
        dist[g["hamming"].min().index] = g["hamming"].min().to_numpy()
        n_exact[g["exact"].sum().index] = g["exact"].sum().to_numpy()
        n_near[g.size().index] = g.size().to_numpy()
    n_near -= n_exact
    score = np.where(n_exact > 0, 0.0, np.where(np.isnan(dist), 1.0, np.clip(dist / (radius + 1), 0, 1)))
    reason = [_copies_words(e, m, d) for e, m, d in zip(n_exact, n_near, dist)]
    conflicts = np.zeros(n, np.int64)
    words = [""] * n
    if "label_conflict" in pairs and pairs["label_conflict"].any():
        lab = pairs[pairs["label_conflict"].astype(bool)]
        for a, b, age_b, gen_b in zip(
            np.concatenate([lab["i"], lab["j"]]),
            np.concatenate([lab["j"], lab["i"]]),
            np.concatenate([lab["age_b"], lab["age_a"]]),
            np.concatenate([lab["gender_b"], lab["gender_a"]]),
        ):
            conflicts[a] += 1
            sep = "; " if words[a] else ""
            words[a] += f"{sep}a copy is labelled {age_b:g} {GENDER_NAMES[int(gen_b)]}"
    return pd.DataFrame(
        {
            "exact_group": exact_ids,
            "near_group": near_ids,
            "duplicate_distance": dist,
            DUPLICATE.score: score,
            DUPLICATE.issue: near_ids >= 0,
            DUPLICATE.reason: reason,
            "label_conflict_count": conflicts,
            LABEL_CONFLICT.score: 1.0 / (1 + conflicts),
            LABEL_CONFLICT.issue: conflicts > 0,
            LABEL_CONFLICT.reason: words,
        }
    )


def _copies_words(n_exact: int, n_near: int, dist: float) -> str:
    parts = []
    if n_exact:
        parts.append(f"pixel-identical to {n_exact} image(s)")
    if n_near:
        parts.append(
            f"near duplicate of {n_near} image(s) (phash distance {dist:g})"
            if not n_exact
            else f"near duplicate of {n_near} more"
        )
    return "; ".join(parts)


def _hamming_hex(a: str, b: str) -> float:
    if not a or not b:
        return float("nan")
    return float(bin(int(a, 16) ^ int(b, 16)).count("1"))


def summarize_duplicates(rows: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Counts for reports and metadata: groups, images in groups, pairs, conflicting pairs/groups."""
    ex = rows["exact_group"]
    nr = rows["near_group"]
    out = {
        "exact_groups": int(ex[ex >= 0].nunique()),
        "images_in_exact_groups": int((ex >= 0).sum()),
        "near_groups": int(nr[nr >= 0].nunique()),
        "images_in_near_groups": int((nr >= 0).sum()),
        "exact_pairs": int((pairs["kind"] == "exact").sum()) if len(pairs) else 0,
        "near_pairs": int((pairs["kind"] == "near").sum()) if len(pairs) else 0,
        "images_with_label_conflict": int(rows[LABEL_CONFLICT.issue].sum()),
    }
    if len(pairs) and "label_conflict" in pairs:
        lc = pairs["label_conflict"].astype(bool)
        ex_pairs = pairs["kind"] == "exact"
        out["exact_pairs_label_conflict"] = int((lc & ex_pairs).sum())
        out["near_pairs_label_conflict"] = int((lc & ~ex_pairs).sum())
        conf_idx = np.unique(np.concatenate([pairs.loc[lc & ex_pairs, "i"], pairs.loc[lc & ex_pairs, "j"]]))
        out["exact_groups_label_conflict"] = int(ex.iloc[conf_idx].nunique()) if len(conf_idx) else 0
    return out
