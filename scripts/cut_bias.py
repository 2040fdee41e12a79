"""Where the detector puts a face cut tighter than UTKFace's, against where UTKFace's own alignment has it:
the table `core.faces.CUT_BIAS` is printed from this, on training images only.

Why: a face whose chin, hairline and ears are cut off (a crop 0.7-0.9x UTKFace's) is re-aligned from five
landmarks the detector finds on an incomplete face, and they are biased: the face comes out ~4% larger and
1-2 px lower than UTKFace's alignment would put it, while the tight-crop model learned on UTKFace's own
alignment (configs/tight_crop_model.yaml). The truth is known exactly here: each training crop is cut by a
known transform (`core.faces.recrop`), so the detector's transform composed with the cut's, E, would be the
identity with a perfect detector. E's scale and vertical shift (about the crop's centre) are averaged per
band of crop_fill (what predict knows about a face: the share of its aligned crop outside the image) over
the faces predict sends to the tight-crop model (crop_fill >= CUT_FILL_MIN). Horizontal shift and turn are
left alone: their means are ~1.4 px and ~0 degrees on standard crops too (UTKFace's faces sit off-centre;
training flips them), and correcting them would break the mirror symmetry of the alignment.

The cuts: a centred square of a random side 0.7-0.9x (log-uniform, as scripts/tight_crop_data.py), shifted by
up to 3% of the side, one per image, seeded. Half the images fit the table, the other half measure it: the
mean distance (px of the 200x200 crop, over a 10x10 grid) between the re-aligned face and UTKFace's alignment
of it, without and with the correction, beside the same distance for the standard crops re-aligned. Geometry
only: no model is involved.

Usage: python scripts/cut_bias.py [--split dataset/folds.csv] [--n 4000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.faces import (  # noqa: E402
    CROP_SIZE,
    CUT_FILL_MIN,
    crop_fill,
    detect_faces,
    face_transform,
    mirrored_landmarks,
    recrop,
    unbias_cut,
)

CENTRE = (CROP_SIZE - 1) / 2
CUTS = (0.7, 0.9)  # as scripts/tight_crop_data.py: the cuts the tight-crop model is sent (crop_fill >= 0.2 from ~0.87x)
BANDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 1.0)
GRID = np.stack(np.meshgrid(np.linspace(10, 190, 10), np.linspace(10, 190, 10)), -1).reshape(-1, 2)


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64), [0, 0, 1]])


def cut_matrix(scale: float, dx: float, dy: float, size: int = CROP_SIZE) -> np.ndarray:
    """The 2x3 transform `recrop` applies (source crop -> cut), turn 0."""
    c = np.array([size / 2 + dx * size, size / 2 + dy * size])
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), 0, 1 / scale)
    m[:, 2] += np.array([size / 2, size / 2]) - c
    return m


def measure(path: str, rng: np.random.Generator) -> list[dict]:
    """E (UTKFace's crop -> re-aligned crop) for the standard crop and one tight cut of one image."""
    img = cv2.imread(path)
    rows = []
    side = float(np.exp(rng.uniform(*np.log(CUTS))))
    for kind, (scale, dx, dy) in (("standard", (1.0, 0.0, 0.0)), ("cut", (side, *rng.uniform(-0.03, 0.03, 2)))):
        cut = recrop(img, scale, dx, dy)
        faces = detect_faces(cut)
        if not faces:
            continue
        m = face_transform(faces[0], CROP_SIZE, mirrored_landmarks(cut, faces[0]))
        rows.append({"path": path, "kind": kind, "cut": scale, "fill": crop_fill(cut.shape, m), "m": m,
                     "cut_m": cut_matrix(scale, dx, dy)})  # fmt: skip
    return rows


def error(m: np.ndarray, cut_m: np.ndarray) -> np.ndarray:
    """E = m after the cut: UTKFace's crop -> the re-aligned crop (3x3)."""
    return _h(m) @ _h(cut_m)


def grid_distance(e: np.ndarray) -> float:
    """Mean distance (px) between where E puts the grid's points and where they are."""
    return float(np.linalg.norm(GRID @ e[:2, :2].T + e[:2, 2] - GRID, axis=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dataset/folds.csv", help="A manifest with a `split` column.")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    df = pd.read_csv(args.split)
    paths = df.loc[df["split"] == "train_8_folds_first", "path"].sample(n=args.n, random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    rows = [r for p in tqdm(list(paths), desc="cut and re-align", unit="img") for r in measure(p, rng)]
    d = pd.DataFrame(rows)
    e = [error(m, c) for m, c in zip(d["m"], d["cut_m"])]
    d["scale"] = [float(np.hypot(x[0, 0], x[1, 0])) for x in e]
    d["down"] = [float((x[:2, :2] @ [CENTRE, CENTRE] + x[:2, 2])[1] - CENTRE) for x in e]
    routed = d[(d["kind"] == "cut") & (d["fill"] >= CUT_FILL_MIN)]
    fit, held = routed.iloc[::2], routed.iloc[1::2]
    table = fit.groupby(pd.cut(fit["fill"], BANDS), observed=True)[["fill", "scale", "down"]].agg(["mean", "count"])
    print(table.round(3).to_string())
    print("CUT_BIAS = (")
    for _, r in table.iterrows():
        n = int(r[("fill", "count")])
        print(f"    ({r[('fill', 'mean')]:.3f}, {r[('scale', 'mean')]:.3f}, {r[('down', 'mean')]:.2f}),  # {n} faces")
    print(")")
    before = [grid_distance(error(m, c)) for m, c in zip(held["m"], held["cut_m"])]
    after = [grid_distance(error(unbias_cut(m, f), c)) for m, c, f in zip(held["m"], held["cut_m"], held["fill"])]
    std = d[d["kind"] == "standard"]
    near = held["cut"].between(0.77, 0.83).to_numpy()
    before, after = np.array(before), np.array(after)
    standard = np.mean([grid_distance(error(m, c)) for m, c in zip(std["m"], std["cut_m"])])
    print(f"held-out tight cuts ({len(held)}): {before.mean():.2f} px -> {after.mean():.2f} px with CUT_BIAS; "
          f"cuts 0.77-0.83x ({near.sum()}): {before[near].mean():.2f} -> {after[near].mean():.2f}; "
          f"standard crops re-aligned ({len(std)}): {standard:.2f} px")  # fmt: skip


if __name__ == "__main__":
    main()
