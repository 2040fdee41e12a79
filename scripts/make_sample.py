"""Rebuild dataset/sample/ from the full UTKFace folder (maintainers only; the sample is committed).

Picks about 200 real images stratified by age bin x gender x race (round-robin over strata, seeded),
plus the five malformed names and two pixel-identical pairs, so the fast tests meet the real quirks.
"""

import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.images import decode_image, pixel_hash  # noqa: E402
from core.labels import age_group  # noqa: E402
from curate.splits import parse_name  # noqa: E402

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/utkface/UTKFace")
dst = Path(__file__).resolve().parent.parent / "dataset" / "sample"
N = 200
rng = random.Random(7)
strata, quirky, by_hash = defaultdict(list), [], defaultdict(list)
for p in sorted(src.iterdir()):
    parsed = parse_name(p.name)
    if parsed.note:
        quirky.append(p)
        continue
    strata[(age_group(parsed.age), parsed.gender, parsed.race)].append(p)
    if parsed.age in (1, 2, 26, 35):  # a cheap place to look for pixel-identical groups
        img, _ = decode_image(p)
        by_hash[pixel_hash(img)].append(p)
dups = [g for g in by_hash.values() if len(g) == 2][:2]
chosen = list(quirky) + [p for g in dups for p in g]
keys = sorted(strata)
for k in keys:
    rng.shuffle(strata[k])
i = 0
while len(chosen) < N:
    k = keys[i % len(keys)]
    if strata[k]:
        p = strata[k].pop()
        if p not in chosen:
            chosen.append(p)
    i += 1
for p in dst.glob("*.jpg"):
    p.unlink()
for p in chosen:
    shutil.copy2(p, dst / p.name)
print(f"{len(chosen)} images, {sum(p.stat().st_size for p in chosen) / 1e6:.2f} MB -> {dst}")
