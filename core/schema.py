"""The one issue schema: every check, its columns and what they mean, defined once.

Rule (cleanlab Datalab's): every check `<name>` gives raw measurement column(s) with units,
`<name>_score` in [0, 1] where LOWER means WORSE, the flag `is_<name>_issue`, and `<name>_reason`
where a reason exists. The same names are used in the audit Parquet, the predictions and label
scores, the FiftyOne fields, the exported manifests and every CSV. The audit runner, the FiftyOne
field schema, the audit sidecar's column documentation and README's column table are all generated
from `CHECKS`, declared in core/checks.yaml; a test iterates it against real outputs.

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
    family: str  # quality | skin_tone | face | duplicates | label
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


def _column(spec: list) -> Column:
    name, kind, doc = spec
    if kind not in ("float", "int", "str", "bool"):
        raise ValueError(f"core/checks.yaml: column {name} has kind {kind!r}, not float, int, str or bool")
    return Column(name, kind, doc)


def _load(path: Path) -> tuple[Check, ...]:
    """The checks declared in core/checks.yaml (data, so that a new check is a few lines there)."""
    import yaml

    return tuple(
        Check(d["name"], d["family"], tuple(map(_column, d["raw"])), d["score"], d["issue"], d.get("reason"),
              tuple(map(_column, d.get("extra", ()))))
        for d in yaml.safe_load(path.read_text())
    )  # fmt: skip


CHECKS: tuple[Check, ...] = _load(Path(__file__).with_name("checks.yaml"))
_BY_NAME = {c.name: c for c in CHECKS}
QUALITY_CHECKS = tuple(c for c in CHECKS if c.family == "quality" and c.name != "low_quality")
LOW_QUALITY, SKIN_TONE, DUPLICATE = _BY_NAME["low_quality"], _BY_NAME["skin_tone"], _BY_NAME["duplicate"]
FACE = _BY_NAME["face"]
LABEL_CONFLICT, GENDER_LABEL, AGE_LABEL = _BY_NAME["label_conflict"], _BY_NAME["gender_label"], _BY_NAME["age_label"]
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


def checks(family: str | None = None) -> list[Check]:
    return [c for c in CHECKS if family is None or c.family == family]


def columns(family: str | None = None) -> list[Column]:
    """Every column of the checks of one family (or all), in table order."""
    return [col for c in checks(family) for col in c.columns()]


def kinds() -> dict[str, str]:
    """name -> value kind for every schema column (the FiftyOne field types follow from it)."""
    out = {col.name: col.kind for col in columns()}
    out[LABEL_STATUS.name] = LABEL_STATUS.kind
    return out


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
