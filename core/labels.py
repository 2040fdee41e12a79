"""Label conventions shared by every layer: gender and race names, the reference age groups.

UTKFace's convention: gender 0 = male, 1 = female; race 0-4 = White, Black, Asian, Indian, Others.
Age groups are the reference notebook's, read as half-open [lo, hi) intervals in years; the last is
open-ended ("80+").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GENDER_NAMES = ("male", "female")
RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")
AGE_GROUP_EDGES = (0, 4, 14, 24, 30, 40, 50, 60, 70, 80)
AGE_GROUP_LABELS = ("0-4", "4-14", "14-24", "24-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80+")
# Words for reasons a reviewer reads ("infant 0-4"), one per age group.
AGE_GROUP_WORDS = ("infant", "child", "young", "adult", "adult", "adult", "adult", "senior", "senior", "senior")
MAX_AGE = 120
# The spellings of a gender people write in tables and review CSVs (any case; "1.0" as a spreadsheet saves 1).
GENDER_CODES = {"0": 0, "1": 1, "male": 0, "female": 1, "m": 0, "f": 1}


def gender_code(value: object) -> int | None:
    """0 (male) or 1 (female) for a spelling of GENDER_CODES, else None: one reading for labels tables, review
    CSVs and corrections typed in FiftyOne, so `review-status` and `export` never judge a value differently."""
    return GENDER_CODES.get(str(value).strip().lower().removesuffix(".0"))


def age_group_index(age: float | np.ndarray) -> np.ndarray | int:
    """Index into AGE_GROUP_LABELS for one age or an array of ages (ages below 0 fall in the first)."""
    idx = np.searchsorted(AGE_GROUP_EDGES, age, side="right") - 1
    return np.maximum(idx, 0) if isinstance(idx, np.ndarray) else max(int(idx), 0)


def age_group(age: int | float) -> str:
    """Label of the reference age group holding `age`."""
    return AGE_GROUP_LABELS[age_group_index(age)]


def age_groups(age: np.ndarray | pd.Series) -> pd.Categorical:
    """Ordered categorical of age-group labels for many ages (NaN stays missing)."""
    edges = list(AGE_GROUP_EDGES) + [np.inf]
    return pd.cut(np.asarray(age, dtype=float), edges, right=False, labels=list(AGE_GROUP_LABELS))
