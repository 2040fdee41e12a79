"""Oversampling: per-group target shares, a plan of augmented copies, and the seeded augmentation.

Oversampling
------------
Per grouping dimension (age bin always; skin_category from an audits parquet when given, otherwise
gender) a target share per category: `mix:A` (default A=0.5: (1-A) x current share + A x uniform),
`uniform`, `floor:F` (every category at least F) or a JSON file {dimension: {category: share}}; an
"unknown" category keeps its current share and the spec applies to the known ones within the rest. Only
images are added, never removed, so the new size N' is the smallest that lets every category reach
its target (N' = max n_c / t_c); the per-dimension deficits are distributed over the joint cells
(age bin x skin category x ...) by iterative proportional fitting, seeded with the cells' sizes, and
capped at `max_factor` generated images per source image. Within a cell, sources are used round-robin
in a seeded random order. Each generated image gets its own parameters drawn from a generator seeded by
(seed, source content hash, k, source file name: two copies of one photo differ): horizontal flip,
rotation (+-10 deg), scale/crop (0.9-1.1) and shift (+-5 %), brightness, contrast, saturation
(x0.8-1.2) and exposure (gamma 0.8-1.25), applied with OpenCV and saved as JPEG (quality 95) named
`{age}_{gender}_{race}_{datetime}_aug{k}.jpg`. The manifest row records source_path, source_content_hash,
transform (JSON: every parameter, enough to regenerate the pixels with `apply_transform`) and seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import pandas as pd

from core.labels import AGE_GROUP_LABELS
from curate.export.common import ExportError


@dataclass
class OversamplePlan:
    dims: list[str]
    targets: dict[str, dict[str, float]]
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    n_before: int
    n_after: int
    max_factor: float
    max_share_error: float
    capped: bool
    jobs: list[tuple[int, int]] = field(default_factory=list)  # (row in source frame, k)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("jobs")
        d["n_generated"] = len(self.jobs)
        return d


def draw_transform(rng: np.random.Generator) -> dict:
    """Random, recorded parameters of one augmentation (all plain floats/bools, JSON-ready)."""
    return {
        "hflip": bool(rng.random() < 0.5),
        "angle": round(float(rng.uniform(-10, 10)), 4),
        "scale": round(float(rng.uniform(0.9, 1.1)), 4),
        "tx": round(float(rng.uniform(-0.05, 0.05)), 4),
        "ty": round(float(rng.uniform(-0.05, 0.05)), 4),
        "brightness": round(float(rng.uniform(0.8, 1.2)), 4),
        "contrast": round(float(rng.uniform(0.8, 1.2)), 4),
        "saturation": round(float(rng.uniform(0.8, 1.2)), 4),
        "gamma": round(float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))), 4),
    }


def apply_transform(img: np.ndarray, t: dict) -> np.ndarray:
    """Apply recorded parameters to a BGR uint8 image (deterministic: same input, same output)."""
    h, w = img.shape[:2]
    out = img[:, ::-1] if t["hflip"] else img
    m = cv2.getRotationMatrix2D((w / 2, h / 2), t["angle"], t["scale"])
    m[0, 2] += t["tx"] * w
    m[1, 2] += t["ty"] * h
    out = cv2.warpAffine(
        np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    x = out.astype(np.float32) / 255.0
    x = np.clip(x * t["brightness"], 0, 1)
    mean = x.mean()
    x = np.clip((x - mean) * t["contrast"] + mean, 0, 1)
    gray = (0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2])[..., None]
    x = np.clip(gray + (x - gray) * t["saturation"], 0, 1)
    x = np.power(x, t["gamma"])
    return np.uint8(np.clip(np.rint(x * 255), 0, 255))


def transform_rng(seed: int, content_hash: str, k: int, name: str = "") -> np.random.Generator:
    """The generator of one augmented copy: seeded by the source's pixels, its file name (two copies of one photo
    under two names would otherwise get the very same augmentation) and k."""
    import zlib

    return np.random.default_rng([int(seed), int(str(content_hash)[:15] or "0", 16), int(k), zlib.crc32(name.encode())])


def _category_order(c: str):
    if c in AGE_GROUP_LABELS:
        return (0, AGE_GROUP_LABELS.index(c), "")
    return (2, 0, str(c)) if str(c) in UNKNOWN else (1, 0, str(c))


UNKNOWN = ("unknown", "nan", "")


def target_shares(counts: pd.Series, spec) -> dict[str, float]:
    """Target share per category (present categories only) from a spec (see module doc).

    An "unknown" category (e.g. a skin tone the audit could not measure) is not a group to rebalance:
    it keeps its current share, and the spec applies to the known categories within the rest.
    """
    counts = counts.copy()
    counts.index = counts.index.map(str)
    unknown = [c for c in counts.index if c in UNKNOWN]
    if unknown and len(unknown) < len(counts):
        p_u = counts[unknown] / counts.sum()
        if isinstance(spec, dict):
            spec = {c: v for c, v in spec.items() if str(c) not in UNKNOWN}
            total = sum(spec.values())
            spec = {c: v / total for c, v in spec.items()} if total > 0 else spec
        known = target_shares(counts.drop(unknown), spec)
        rest = 1 - p_u.sum()
        return {**{c: v * rest for c, v in known.items()}, **{c: float(v) for c, v in p_u.items()}}
    p = counts / counts.sum()
    k = len(p)
    if isinstance(spec, dict):
        unknown = sorted(set(map(str, spec)) - set(map(str, p.index)))
        if unknown:
            raise ExportError(f"target names categories with no source image: {', '.join(unknown)}")
        t = pd.Series({str(c): float(spec.get(str(c), 0.0)) for c in p.index})
        if abs(t.sum() - 1) > 1e-3 or (t < 0).any():
            raise ExportError(f"target shares must be >= 0 and sum to 1 (sum {t.sum():.4f})")
        if ((t > 0) & (counts.to_numpy() == 0)).any():
            raise ExportError("target gives a share to a category with no source image")
    elif spec == "uniform":
        t = pd.Series(1.0 / k, index=p.index)
    elif isinstance(spec, str) and spec.startswith("mix:"):
        a = float(spec[4:])
        if not 0 <= a <= 1:
            raise ExportError(f"target {spec}: the mix must be in 0..1")
        t = (1 - a) * p + a / k
    elif isinstance(spec, str) and spec.startswith("floor:"):
        f = float(spec[6:])
        if not 0 <= f * k < 1:
            raise ExportError(f"target {spec}: {k} categories x {f} must stay below 1")
        low = p < f
        t = p.copy()
        t[low] = f
        t[~low] = p[~low] * (1 - f * low.sum()) / p[~low].sum()
    else:
        raise ExportError(f"unknown target {spec!r}: use mix:A, uniform, floor:F or a JSON file")
    return {str(c): float(v) for c, v in t.items()}


def plan_oversampling(
    df: pd.DataFrame,
    dims: list[str],
    specs: dict[str, object],
    max_factor: float = 5.0,
    seed: int = 0,
    iters: int = 500,
) -> OversamplePlan:
    """How many augmented copies of which rows bring every dimension to its target shares."""
    keys = df[dims].astype(str)
    n = len(df)
    targets, before = {}, {}
    for d in dims:
        c = keys[d].value_counts()
        c = c.reindex(sorted(c.index, key=_category_order))
        before[d] = {k: int(v) for k, v in c.items()}
        targets[d] = target_shares(c, specs.get(d, "mix:0.5"))
    # The smallest total at which no category is above its target count (we only add images).
    n_new = max(before[d][c] / targets[d][c] for d in dims for c in before[d] if targets[d][c] > 0)
    n_new = max(n_new, n)
    deficit = {d: {c: targets[d][c] * n_new - before[d][c] for c in before[d]} for d in dims}
    cells = keys.groupby(dims, sort=True).size()
    cell_keys = list(cells.index) if len(dims) > 1 else [(c,) for c in cells.index]
    m = cells.to_numpy(float)
    cap = cells.to_numpy(float) * max_factor
    member = {d: np.array([ck[j] for ck in cell_keys]) for j, d in enumerate(dims)}
    for _ in range(iters):  # iterative proportional fitting onto every dimension's deficits
        for d in dims:
            for c, want in deficit[d].items():
                sel = member[d] == c
                s = m[sel].sum()
                m[sel] = 0.0 if s <= 0 or want <= 0 else m[sel] * (want / s)
        m = np.minimum(m, cap)
        err = max(abs(m[member[d] == c].sum() - w) for d in dims for c, w in deficit[d].items())
        if err < 0.25:
            break
    capped = bool((m >= cap - 1e-9).any() and err >= 0.5)
    total = int(round(m.sum()))
    base = np.floor(m).astype(int)
    order = np.argsort(-(m - base), kind="stable")
    extra = total - base.sum()
    for i in order[: max(extra, 0)]:
        if base[i] < cap[i]:
            base[i] += 1
    base = _repair_rounding(base, cap, member, deficit, dims)
    rng = np.random.default_rng(seed)
    cell_rows = keys.groupby(dims, sort=True).indices
    jobs: list[tuple[int, int]] = []
    for ck, count in zip(cells.index, base):
        if count <= 0:
            continue
        rows = np.asarray(cell_rows[ck])
        rows = rows[rng.permutation(len(rows))]
        for j in range(int(count)):
            jobs.append((int(rows[j % len(rows)]), j // len(rows)))
    jobs.sort()
    gen = pd.DataFrame(jobs, columns=["row", "k"]) if jobs else pd.DataFrame(columns=["row", "k"])
    after = {}
    for d in dims:
        added = keys[d].iloc[gen["row"].to_numpy(int)].value_counts() if len(gen) else pd.Series(dtype=int)
        after[d] = {c: int(before[d][c] + added.get(c, 0)) for c in before[d]}
    n_after = n + len(jobs)
    share_err = max(abs(after[d][c] / n_after - targets[d][c]) for d in dims for c in before[d])
    return OversamplePlan(dims, targets, before, after, n, n_after, max_factor, float(share_err), capped, jobs)


def _repair_rounding(
    counts: np.ndarray, cap: np.ndarray, member: dict, deficit: dict, dims: list[str], max_moves: int = 100_000
) -> np.ndarray:
    """Move single images between cells while that lowers the squared miss of the per-category
    deficits (rounding cells one by one can leave a category a few images off on another dimension).

    Moving one image from cell j to cell i changes the squared miss by
    sum over dimensions of 2 (r_cat(i) - r_cat(j)) + 2 [cat(i) != cat(j)], r = current count - deficit;
    the best pair is taken until none improves (cells: a few dozen, so the K x K table is cheap).
    """
    counts = counts.astype(np.int64).copy()
    cats = {
        d: (np.unique(member[d], return_inverse=True)[1], np.array([deficit[d][c] for c in np.unique(member[d])]))
        for d in dims
    }
    for _ in range(max_moves):
        gain = np.zeros((len(counts), len(counts)))
        for d in dims:
            idx, want = cats[d]
            r = np.bincount(idx, weights=counts, minlength=len(want)) - want
            g = 2 * r[idx]
            gain += g[:, None] - g[None, :] + 2 * (idx[:, None] != idx[None, :])
        gain[counts >= cap, :] = np.inf  # cannot add to a full cell
        gain[:, counts <= 0] = np.inf  # cannot take from an empty one
        np.fill_diagonal(gain, np.inf)
        i, j = np.unravel_index(int(np.argmin(gain)), gain.shape)
        if not gain[i, j] < -1e-9:
            break
        counts[i] += 1
        counts[j] -= 1
    return counts
