"""Turn the review's decisions into new training splits: a cleaned split and an oversampled split.

The parts, each in its own module:
- `review`: the review in (CSV or FiftyOne), matched to the manifests, and the decisions applied;
- `oversample`: target shares per group, the plan of augmented copies, the seeded augmentation;
- `writer`: split folders built in a temporary folder and renamed into place, UTKFace names;
- `run`: `export(ExportOptions)`, the whole export, and its report.
"""

from curate.export.common import ExportError, Policy
from curate.export.oversample import OversamplePlan, apply_transform, draw_transform, plan_oversampling, target_shares
from curate.export.review import (
    apply_decisions,
    corrected_view,
    merge_reviews,
    normalize_review,
    read_review_csv,
    read_review_fiftyone,
)
from curate.export.run import ExportOptions, export, load_audits
from curate.export.writer import utk_name

__all__ = [
    "ExportError",
    "ExportOptions",
    "OversamplePlan",
    "Policy",
    "apply_decisions",
    "apply_transform",
    "corrected_view",
    "draw_transform",
    "export",
    "load_audits",
    "merge_reviews",
    "normalize_review",
    "plan_oversampling",
    "read_review_csv",
    "read_review_fiftyone",
    "target_shares",
    "utk_name",
]
