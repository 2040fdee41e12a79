"""The one issue schema: every check, its columns and what they mean, defined once.

Rule (cleanlab Datalab's): every check `<name>` gives raw measurement column(s) with units,
`<name>_score` in [0, 1] where LOWER means WORSE, the flag `is_<name>_issue`, and `<name>_reason`
where a reason exists. The same names are used in the audit Parquet, the predictions and label
scores, the FiftyOne fields, the exported manifests and every CSV. The audit runner, the FiftyOne
field schema, the audit sidecar's column documentation and README's column table are all generated
from `CHECKS` below; a test iterates it against real outputs.

`python -m core.schema --markdown` prints README's table; `--write README.md` replaces it in place.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2  # 1: the names before the one schema (RENAMED_FROM_V1 maps them)


@dataclass(frozen=True)
class Column:
    """One column: its name, value kind (float, int, str, bool) and what it holds, with units."""

    name: str
    kind: str
    doc: str


@dataclass(frozen=True)
class Check:
    """One check: raw measurements, a [0, 1] score (lower = worse), an issue flag, maybe a reason."""

    name: str
    family: str  # quality | skin_tone | duplicates | label
    raw: tuple[Column, ...]
    score_doc: str
    issue_doc: str
    reason_doc: str | None = None
    extra: tuple[Column, ...] = field(default=())  # e.g. suggestions, statuses

    @property
    def score(self) -> str:
        return f"{self.name}_score"

    @property
    def issue(self) -> str:
        return f"is_{self.name}_issue"

    @property
    def reason(self) -> str | None:
        return f"{self.name}_reason" if self.reason_doc else None

    def columns(self) -> list[Column]:
        """Every column of the check, raw first, in the order the tables use."""
        cols = [
            *self.raw,
            Column(self.score, "float", f"[0, 1], lower = worse: {self.score_doc}"),
            Column(self.issue, "bool", self.issue_doc),
        ]
        if self.reason:
            cols.append(Column(self.reason, "str", self.reason_doc))
        return cols + list(self.extra)


def _q(name: str, raw: tuple[Column, ...], score_doc: str, issue_doc: str) -> Check:
    return Check(name, "quality", raw, score_doc, issue_doc)


QUALITY_CHECKS = (
    _q(
        "blurry",
        (
            Column(
                "laplacian_var",
                "float",
                "variance of the 3x3 Laplacian of the gray image, gray levels^2 (higher = sharper)",
            ),
            Column(
                "fft_blur",
                "float",
                "log10 share of spectral energy above half Nyquist (higher = "
                "sharper; reported, not flagged: smooth skin reads as blur)",
            ),
        ),
        "clip(log10(1 + laplacian_var) / 4)",
        "laplacian_var below laplacian_var_min",
    ),
    _q(
        "brisque",
        (Column("brisque", "float", "BRISQUE (piq's, to 1e-3), about 0-100, higher = worse; NaN where undefined"),),
        "clip(1 - brisque / 100)",
        "brisque above the threshold brisque_max",
    ),
    _q(
        "dark",
        (
            Column("brightness_p95", "float", "95th percentile of gray levels, 0-255"),
            Column("brightness_p50", "float", "median gray level, 0-255"),
        ),
        "brightness_p95 / 255",
        "even the brightest 5 % darker than brightness_p95_max_dark",
    ),
    _q(
        "overexposed",
        (Column("brightness_p5", "float", "5th percentile of gray levels, 0-255"),),
        "1 - brightness_p5 / 255",
        "even the darkest 5 % brighter than brightness_p5_min_over",
    ),
    _q(
        "low_contrast",
        (Column("contrast", "float", "standard deviation of gray levels (RMS contrast), 0-127.5"),),
        "clip(contrast / 64)",
        "contrast below contrast_min",
    ),
    _q(
        "low_information",
        (Column("entropy", "float", "Shannon entropy of the gray histogram, bits (0-8)"),),
        "entropy / 8",
        "entropy below entropy_min",
    ),
    _q(
        "grayscale",
        (Column("chroma", "float", "mean of max(B,G,R) - min(B,G,R), 0-255; about 0 for grayscale stored as RGB"),),
        "clip(chroma / 20)",
        "chroma below chroma_max_gray",
    ),
    _q(
        "odd_size",
        (
            Column("width", "int", "pixels"),
            Column("height", "int", "pixels"),
            Column("aspect", "float", "width / height"),
        ),
        "clip(min(width, height) / 200) * clip(1 - |log(aspect)|)",
        "shorter side below min_side, or aspect off aspect_expected by more than aspect_tolerance",
    ),
)

LOW_QUALITY = Check(
    "low_quality",
    "quality",
    (
        Column(
            "audit_status",
            "str",
            '"ok", or why the image was not fully audited ("corrupt image ...", "too small (1x1)", "constant image")',
        ),
    ),
    "the lowest quality score of the image; 0 when audit_status is not ok",
    "audit_status not ok, or any quality check's issue (the FiftyOne tag `low_quality`)",
    'the status and the words of every quality issue ("too dark; blurry")',
)

SKIN_TONE = Check(
    "skin_tone",
    "skin_tone",
    (
        Column("ita", "float", "median Individual Typology Angle of the skin pixels, degrees"),
        Column("skin_category", "str", "ITA category (very light ... dark) or unknown"),
        Column("monk_tone", "int", "nearest Monk Skin Tone 1-10 (missing when unknown)"),
        Column("skin_L", "float", "median CIELAB L* of the skin pixels"),
        Column("skin_a", "float", "median CIELAB a* of the skin pixels"),
        Column("skin_b", "float", "median CIELAB b* of the skin pixels"),
    ),
    "skin-pixel fraction of the central face region (how much the estimate rests on)",
    "no skin-tone estimate (skin_category unknown: grayscale, or too few skin pixels)",
    "why there is no estimate",
)

DUPLICATE = Check(
    "duplicate",
    "duplicates",
    (
        Column("phash", "str", "64-bit DCT perceptual hash, hex"),
        Column("exact_group", "int", "id of the pixel-identical group, -1 if unique"),
        Column(
            "near_group",
            "int",
            "id of the near-duplicate group (phash within the radius, exact groups included), -1 if none",
        ),
        Column("duplicate_distance", "float", "phash Hamming distance (bits) to the closest copy; NaN if none"),
    ),
    "0 for a pixel-identical copy, distance / (radius + 1) for a near one, 1 for none",
    "the image has a pixel-identical or near-duplicate copy (near_group >= 0)",
    "how many copies, and how close",
)

LABEL_CONFLICT = Check(
    "label_conflict",
    "duplicates",
    (Column("label_conflict_count", "int", "copies (exact or near) labelled with another age or gender"),),
    "1 / (1 + label_conflict_count)",
    "a copy carries another age or gender: one photo cannot have two ages",
    "the copies' labels",
)

GENDER_LABEL = Check(
    "gender_label",
    "label",
    (
        Column(
            "gender_flip_prob",
            "float",
            "posterior probability that the gender label is flipped (noisy-channel EM on out-of-sample predictions)",
        ),
    ),
    "1 - gender_flip_prob (the probability the label is right)",
    "gender_flip_prob at least the threshold (default 0.5), or among the top k",
    "prediction, label, image quality, age group, look-alikes, copies, P(label wrong)",
    (
        Column(
            "gender_suggested",
            "int",
            "the likelier gender (0 male, 1 female): the other one when gender_flip_prob >= 0.5, else the label",
        ),
        Column("gender_label_status", "str", '"ok", or why the label was not scored'),
    ),
)

AGE_LABEL = Check(
    "age_label",
    "label",
    (
        Column(
            "age_residual_z",
            "float",
            "|label - refined estimate| in expected errors at that age (robust z; copies' labels taken into account)",
        ),
    ),
    "2 * (1 - Phi(age_residual_z)): the two-sided normal tail of the residual",
    "age_residual_z at least the threshold (default 3.5) and the suggestion at least 4 years away, or top k",
    "label, estimate, how far off against the usual error there, quality, copies, suggestion",
    (
        Column(
            "age_suggested", "int", "suggested age in years (copies' label when they back the model, else the estimate)"
        ),
        Column("age_label_status", "str", '"ok", or why the label was not scored'),
    ),
)

CHECKS: tuple[Check, ...] = (
    *QUALITY_CHECKS,
    LOW_QUALITY,
    SKIN_TONE,
    DUPLICATE,
    LABEL_CONFLICT,
    GENDER_LABEL,
    AGE_LABEL,
)
LABEL_STATUS = Column("label_status", "str", '"ok", or why a label was not scored (gender and age together)')

# The names before the one schema (SCHEMA_VERSION 1), for reading old audit files and upgrading old
# FiftyOne datasets. Columns dropped without a successor: fft_blur_score (fft_blur is kept raw).
RENAMED_FROM_V1 = {
    "status": "audit_status",
    "sharpness_score": "blurry_score",
    "contrast_score": "low_contrast_score",
    "information_score": "low_information_score",
    "color_score": "grayscale_score",
    "is_blurry": "is_blurry_issue",
    "is_high_brisque": "is_brisque_issue",
    "is_dark": "is_dark_issue",
    "is_overexposed": "is_overexposed_issue",
    "is_low_contrast": "is_low_contrast_issue",
    "is_low_information": "is_low_information_issue",
    "is_grayscale": "is_grayscale_issue",
    "is_odd_size": "is_odd_size_issue",
    "low_quality": "is_low_quality_issue",
    "quality_reasons": "low_quality_reason",
    "skin_confidence": "skin_tone_score",
    "dup_label_conflict": "is_label_conflict_issue",
    "gender_issue_score": "gender_flip_prob",
    "gender_label_quality": "gender_label_score",
    "gender_suspect": "is_gender_label_issue",
    "gender_reason": "gender_label_reason",
    "gender_status": "gender_label_status",
    "age_issue_score": "age_residual_z",
    "age_label_quality": "age_label_score",
    "age_suspect": "is_age_label_issue",
    "age_reason": "age_label_reason",
    "age_status": "age_label_status",
    "age_bin": "age_group",
}
# FiftyOne-only names of schema 1 (the Parquet names differed).
RENAMED_FROM_V1_FIFTYONE = {"mislabel_status": "label_status", "pred_model": "model"}
DROPPED_IN_V2 = ("fft_blur_score",)


def check(name: str) -> Check:
    """The check called `name` (KeyError names the known ones)."""
    for c in CHECKS:
        if c.name == name:
            return c
    raise KeyError(f"no check {name!r}; known: {', '.join(c.name for c in CHECKS)}")


def checks(family: str | None = None) -> list[Check]:
    return [c for c in CHECKS if family is None or c.family == family]


def columns(family: str | None = None) -> list[Column]:
    """Every column of the checks of one family (or all), in table order."""
    return [col for c in checks(family) for col in c.columns()]


def column_names(family: str | None = None) -> list[str]:
    return [col.name for col in columns(family)]


def kinds() -> dict[str, str]:
    """name -> value kind for every schema column (the FiftyOne field types follow from it)."""
    out = {col.name: col.kind for col in columns()}
    out[LABEL_STATUS.name] = LABEL_STATUS.kind
    return out


def column_doc(family: str | None = None) -> dict[str, str]:
    """name -> meaning, for sidecars and tables."""
    return {col.name: col.doc for col in columns(family)}


def upgrade_columns(df, where: str = ""):
    """A frame with schema-1 column names renamed to schema 2 (a no-op on schema-2 frames).

    Why: audit tables and prediction files written before the one schema must keep working as inputs;
    a frame holding both an old and a new name is ambiguous and refused.
    """
    from core.errors import CurateError

    ren = {o: n for o, n in RENAMED_FROM_V1.items() if o in df.columns}
    clash = [o for o, n in ren.items() if n in df.columns]
    if clash:
        raise CurateError(
            f"{where or 'table'}: holds both old and new names ({', '.join(clash)}); re-run the command that wrote it"
        )
    return df.rename(columns=ren).drop(columns=[c for c in DROPPED_IN_V2 if c in df.columns])


def markdown_table() -> str:
    """README's column table: one row per check."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [
        "| check | raw measurement(s) and extras | score (lower = worse) | issue flag | reason |",
        "|---|---|---|---|---|",
    ]
    for c in CHECKS:
        raw = "<br>".join(f"`{col.name}`: {cell(col.doc)}" for col in (*c.raw, *c.extra))
        reason = f"`{c.reason}`: {cell(c.reason_doc)}" if c.reason else ""
        rows.append(
            f"| {c.name} | {raw} | `{c.score}` = {cell(c.score_doc)} | `{c.issue}`: {cell(c.issue_doc)} | {reason} |"
        )
    return "\n".join(rows)


_BEGIN = re.compile(r"<!-- BEGIN issue-schema[^\n]*-->\n")
_END = "<!-- END issue-schema -->"


def replace_in(text: str) -> str:
    """`text` with the block between the issue-schema markers replaced by the current table."""
    m = _BEGIN.search(text)
    if not m or _END not in text[m.end() :]:
        raise ValueError("issue-schema markers not found")
    end = text.index(_END, m.end())
    return text[: m.end()] + markdown_table() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.schema", description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print README's column table")
    ap.add_argument("--write", type=Path, help="replace the table between the markers of this file")
    args = ap.parse_args(argv)
    if args.write:
        args.write.write_text(replace_in(args.write.read_text()))
    elif args.markdown:
        print(markdown_table())
    else:
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
