"""The utkface-curate review plugin for the FiftyOne App: decisions as operators, and a review panel.

FiftyOne loads this file itself (not as `curate.plugin`), so it imports the package absolutely. All
writing goes through curate.fo_decide (the one writer of decisions) and all wording through
curate.review_card; this module only places buttons and forms in the App.

Operators: in the sample modal (one click, then the next pending sample of the view) "Label is wrong"
(a form prefilled with the suggested correction), "Label is right", "Exclude image", "Undo decision";
in the grid, the same four on the selected samples (bulk; "Label is wrong" applies each sample's own
suggestion). Panel "Curate review": the current sample in words, its duplicates with their labels, the
decision buttons, and reviewed / pending per saved view.
"""

from __future__ import annotations

import os
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types

from core.errors import CurateError
from core.labels import GENDER_NAMES
from curate import fo_decide, fo_plugin, review_card

QUEUE_COLUMNS = (("view", "Saved view"), ("samples", "Samples"), ("reviewed", "Reviewed"), ("pending", "Pending"),
                 ("mislabel", "Wrong"), ("ok", "Right"), ("exclude", "Excluded"))  # fmt: skip
WHAT = {"mislabel": "Label is wrong", "ok": "Label is right", "exclude": "Image excluded", "pending": "Decision undone"}


def _user(ctx) -> str | None:
    user = getattr(ctx, "user", None)
    return (getattr(user, "email", None) or getattr(user, "name", None)) if user else None


def _targets(ctx, grid: bool) -> list[str]:
    """The samples a decision is about: the open sample in the modal, the selection in the grid."""
    one = [ctx.current_sample] if ctx.current_sample else []
    many = list(ctx.selected or [])
    return (many or one) if grid else (one or many)


def decide(ctx, kind: str, grid: bool, age=None, gender=None) -> dict:
    """Store `kind` for the targets; in the modal, open the next pending sample of the view."""
    ids = _targets(ctx, grid)
    t0 = time.perf_counter()
    try:
        if kind == "mislabel" and (grid or len(ids) != 1):
            decisions = {s.id: fo_decide.suggested(s) for s in ctx.dataset.select(ids)}
        elif kind == "mislabel":
            decisions = {ids[0]: fo_decide.mislabel(ctx.dataset[ids[0]], age=age, gender=gender)}
        else:
            decisions = {i: fo_decide.Decision(kind) for i in ids}
        counts = fo_decide.apply(ctx.dataset, decisions, by=_user(ctx))
    except CurateError as e:
        ctx.ops.notify(str(e), variant="error")
        return {"error": str(e)}
    stored_s = time.perf_counter() - t0
    n = len(decisions)
    ctx.ops.notify(f"{WHAT[kind]}: {n} sample{'s' * (n != 1)} ({counts['changed']} changed)", variant="success")
    nxt = None
    if not grid and ctx.current_sample and ctx.params.get("advance", True):
        nxt = review_card.next_pending(ctx.view, ctx.current_sample)
    if nxt:
        ctx.ops.open_sample(id=nxt)
    ctx.ops.reload_dataset()  # the grid's tags and the open sample's fields show the decision
    return {**counts, "next": nxt, "stored_s": round(stored_s, 4)}


class _Decide(foo.Operator):
    kind, name, label, icon, grid = "ok", "label_right", "Label is right", "check_circle", False

    @property
    def config(self):
        where = "selected samples" if self.grid else "the open sample"
        return foo.OperatorConfig(
            name=self.name,
            label=f"Curate: {self.label}" + (" (selected)" if self.grid else ""),
            description=f"{self.label}: stores the review decision on {where}",
            icon=self.icon,
            dynamic=True,
        )

    def resolve_placement(self, ctx):
        place = types.Places.SAMPLES_GRID_SECONDARY_ACTIONS if self.grid else types.Places.SAMPLES_VIEWER_ACTIONS
        return types.Placement(place, types.Button(label=self.label, icon=self.icon, prompt=False))

    def execute(self, ctx):
        return decide(ctx, self.kind, self.grid)


class LabelRight(_Decide):
    pass


class ExcludeImage(_Decide):
    kind, name, label, icon = "exclude", "exclude_image", "Exclude image", "block"


class UndoDecision(_Decide):
    kind, name, label, icon = "pending", "undo_decision", "Undo decision", "undo"


class LabelWrong(_Decide):
    """Prompts for the correction, prefilled with the suggestion (in the grid: each sample's own)."""

    kind, name, label, icon = "mislabel", "label_wrong", "Label is wrong", "report"

    def resolve_placement(self, ctx):
        place = types.Places.SAMPLES_GRID_SECONDARY_ACTIONS if self.grid else types.Places.SAMPLES_VIEWER_ACTIONS
        return types.Placement(place, types.Button(label=self.label, icon=self.icon, prompt=True))

    def resolve_input(self, ctx):
        inputs = types.Object()
        ids = _targets(ctx, self.grid)
        if not ids:
            inputs.view("none", types.Warning(label="Open a sample or select samples first"))
            return types.Property(inputs)
        if self.grid or len(ids) != 1:
            inputs.view(
                "bulk",
                types.Notice(
                    label=f"{len(ids)} selected: each gets its own suggested correction of the labels "
                    "flag-mislabels flagged (none flagged: marked wrong without a correction, which export drops)"
                ),
            )
            return types.Property(inputs, view=types.View(label=self.label))
        fill = fo_decide.prefill(ctx.dataset[ids[0]])
        inputs.enum("gender", list(GENDER_NAMES), label="Gender", default=fill["gender"], view=types.RadioGroup())
        inputs.int("age", label="Age (years)", default=fill["age"], min=0, max=fo_decide.MAX_AGE_CORRECTION)
        hint = "Prefilled with the suggestion; edit if needed. Unchanged = label kept."
        inputs.view("help", types.Notice(label=hint))
        return types.Property(inputs, view=types.View(label="Label is wrong: corrected label"))

    def execute(self, ctx):
        return decide(ctx, self.kind, self.grid, age=ctx.params.get("age"), gender=ctx.params.get("gender"))


def _grid(cls):
    return type(cls.__name__ + "Selected", (cls,), {"name": cls.name.replace("_image", "") + "_selected", "grid": True})


def open_next(ctx) -> str | None:
    """Open the next undecided sample of the App's view after the open one (or say there is none)."""
    nxt = review_card.next_pending(ctx.view, ctx.current_sample)
    if nxt:
        ctx.ops.open_sample(id=nxt)
    else:
        ctx.ops.notify("Nothing pending in this view", variant="info")
    return nxt


class NextPending(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="next_pending", label="Curate: next pending sample", icon="skip_next")

    def execute(self, ctx):
        return {"next": open_next(ctx)}


class _Job(foo.Operator):
    """A long `curate` command run from the App: the very command line a user would type, so the App and the CLI
    share one code path. Delegated by default (`fiftyone delegated launch` runs the queue) where that launcher finds
    this plugin (installed with `curate plugin install`), else run at once by default (curate.fo_plugin.use_plugin).
    It runs in the folder `curate app` started in (curate.fo_plugin.job_workdir), also from a launcher elsewhere."""

    name, label, icon = "run_flag_mislabels", "Curate: flag mislabels", "travel_explore"

    @property
    def config(self):
        return foo.OperatorConfig(
            name=self.name,
            label=self.label,
            icon=self.icon,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=os.environ.get("CURATE_JOBS_DELEGATED") == "1",
        )

    def argv(self, ctx) -> list[str]:
        recipe = ctx.params.get("recipe") if ctx.params.get("recipe") in ("cheap", "full") else "thorough"
        oos = ctx.params.get("oos") if ctx.params.get("oos") in ("model", "crossfit") else "auto"
        rounds = ["--rounds", "2"] if str(ctx.params.get("rounds")) == "2" else []
        return ["flag-mislabels", "--dataset", ctx.dataset.name, "--oos", oos, "--recipe", recipe, *rounds, "--quiet"]

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.enum(
            "oos",
            ["auto", "model", "crossfit"],
            default="auto",
            view=types.RadioGroup(),
            label="Out-of-sample predictions",
            description="auto: the shipped model's when it never trained on these images, else a cross-fit",
        )
        inputs.enum(
            "recipe",
            ["thorough", "cheap", "full"],
            default="thorough",
            label="Cross-fit recipe",
            view=types.RadioGroup(),
            description="thorough: 128 px, 12 epochs (ranks noisy labels much better); cheap: 96 px, 8 epochs, "
            "about half the time, a quick look; full: the training run's config",
        )
        inputs.enum(
            "rounds",
            ["1", "2"],
            default="1",
            view=types.RadioGroup(),
            label="Cross-fit rounds",
            description="2: cross-fit again with the labels the first round estimates wrong masked (twice the time; "
            "ranks noisy labels better, docs/cleaning_payoff.md); not with the model's own predictions",
        )
        return types.Property(inputs, view=types.View(label=self.label))

    def execute(self, ctx):
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "curate", *self.argv(ctx)]
        # the App server runs in FiftyOne's folder: relative paths mean the folder `curate app` started in
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=fo_plugin.job_workdir(ctx.dataset))
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        if proc.returncode != 0:
            raise RuntimeError(f"`curate {' '.join(self.argv(ctx))}` failed: " + " / ".join(tail))
        return {"command": "curate " + " ".join(self.argv(ctx)), "output": "\n".join(tail)}


class RunExport(_Job):
    name, label, icon = "run_export", "Curate: export the cleaned split", "output"

    def argv(self, ctx) -> list[str]:
        p = ctx.params
        out = ["export", "--dataset", ctx.dataset.name] + (["--from", p["source"]] if p.get("source") else [])
        out += ["--name", p.get("name") or "train_cleaned", "--quiet"]
        auto = bool(p.get("auto_clean"))  # the long form's boxes say the same thing: not repeated
        for flag in ("auto_clean", "drop_suspects", "mask_suspects", "relabel_suspects", "drop_low_quality",
                     "oversample", "force"):  # fmt: skip
            if p.get(flag) and not (auto and flag == "mask_suspects"):
                out.append("--" + flag.replace("_", "-"))
        if p.get("estimated") and not auto:
            out += ["--gender-max-score", "estimated"]
        if p.get("two_sided") and not auto:
            out += ["--age-max-score", "0.05", "--age-rank", "two-sided"]
        return out

    def resolve_input(self, ctx):
        inputs = types.Object()
        conflict = export_form_conflict(ctx.params)
        if conflict:  # said in the form, and the job refused before it is run or queued (not a traceback after)
            inputs.view("conflict", types.Error(label="These choices cannot go together", description=conflict))
        inputs.str("source", label="Training split to clean (empty: the training split of what this dataset was "
                   "scored from, else dataset/train_8_folds_first)", default="")  # fmt: skip
        inputs.str("name", label="Name of the cleaned split", default="train_cleaned")
        for flag, label in (("auto_clean", "Clean unreviewed labels as recommended, the policy that paid best (run "
                             "flag-mislabels with 2 rounds first); the same as the next three boxes"),
                            ("mask_suspects", "Keep unreviewed suspects, their suspected label masked in training"),
                            ("estimated", "... and count as suspects as many genders as flag-mislabels estimates "
                             "wrong"), ("two_sided", "... and as many ages as score at most 0.05, those the two-sided "
                             "age score ranks worst (with the above: the policy that paid best)"),
                            ("drop_suspects", "Or drop unreviewed suspects"),
                            ("relabel_suspects",
                            "Relabel unreviewed suspects (suggested label)"), ("drop_low_quality", "Drop low-quality"),
                            ("oversample", "Also write the oversampled split (age bin x the dataset's skin tones)"),
                            ("force", "Replace an existing split of that name")):  # fmt: skip
            inputs.bool(flag, label=label, default=False, invalid=bool(conflict and ctx.params.get(flag)),
                        error_message=conflict or "")  # fmt: skip
        return types.Property(inputs, view=types.View(label=self.label))


def export_form_conflict(p: dict) -> str | None:
    """Why the export form's ticked boxes cannot go together (what `curate export` would refuse), or None."""
    auto, drop, mask, relabel = (bool(p.get(k)) for k in ("auto_clean", "drop_suspects", "mask_suspects",
                                                          "relabel_suspects"))  # fmt: skip
    if auto and (drop or relabel):
        return ("the recommended policy masks unreviewed suspects: untick drop and relabel, or untick the policy "
                "and tick its boxes yourself")  # fmt: skip
    if drop and mask:
        return "drop and mask both decide what happens to an unreviewed suspect: tick one"
    if not auto and p.get("two_sided") and not (drop or mask):
        return "the two-sided age count chooses the suspects that are masked or dropped: tick mask or drop too"
    if not auto and p.get("estimated") and not (drop or mask or relabel):
        return "the estimated count chooses the suspects that are masked, dropped or relabelled: tick one of those too"
    return None


class ReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="curate_review",
            label="Curate review",
            icon="fact_check",
            surfaces="grid modal",
            help_markdown="Label vs model, why a sample was flagged, and one-click decisions (utkface-curate).",
        )

    def on_load(self, ctx):
        self._refresh(ctx, queue=True)

    def on_change_current_sample(self, ctx):
        self._refresh(ctx)

    def on_change_view(self, ctx):
        self._refresh(ctx, queue=True)

    def _refresh(self, ctx, queue: bool = False) -> None:
        sid = ctx.current_sample
        if sid:
            sample = ctx.dataset[sid]
            fill = fo_decide.prefill(sample)
            ctx.panel.state.card = review_card.card_markdown(sample)
            ctx.panel.set_state("fix", {"gender": fill["gender"], "age": fill["age"]})  # the inputs' state
            copies = review_card.copies(ctx.dataset, sample)
            ctx.panel.state.copies = [c["caption"] for c in copies]
            ctx.panel.set_state("copies_row", {f"copy_{i}": c["url"] for i, c in enumerate(copies)})
        else:
            ctx.panel.state.card = None
        if queue or ctx.panel.state.queue is None:
            ctx.panel.state.queue = review_card.queue_rows(ctx.dataset)

    def _decide(self, ctx, kind: str) -> None:
        fix = ctx.panel.get_state("fix") or {}
        decide(ctx, kind, grid=not ctx.current_sample, age=fix.get("age"), gender=fix.get("gender"))
        self._refresh(ctx, queue=True)

    def wrong(self, ctx):
        self._decide(ctx, "mislabel")

    def right(self, ctx):
        self._decide(ctx, "ok")

    def exclude(self, ctx):
        self._decide(ctx, "exclude")

    def undo(self, ctx):
        self._decide(ctx, "pending")

    def next(self, ctx):
        open_next(ctx)

    def render(self, ctx):
        panel = types.Object()
        st = ctx.panel.state
        if st.card:
            panel.md(st.card, name="card")
            row = panel.h_stack("fix", align_x="left", gap=2)
            row.enum("gender", list(GENDER_NAMES), label="Corrected gender")
            row.int("age", label="Corrected age", min=0, max=fo_decide.MAX_AGE_CORRECTION)
            btns = panel.h_stack("decide", align_x="left", gap=1)
            btns.btn("wrong", label="Label is wrong", icon="report", variant="contained", on_click=self.wrong)
            btns.btn("right", label="Label is right", icon="check_circle", variant="outlined", on_click=self.right)
            btns.btn("exclude", label="Exclude image", icon="block", variant="outlined", on_click=self.exclude)
            btns.btn("undo", label="Undo", icon="undo", variant="outlined", on_click=self.undo)
            btns.btn("next", label="Next pending", icon="skip_next", on_click=self.next)
            if st.copies:
                panel.md("**Duplicate group** (same or near-identical pixels):", name="copies_title")
                pics = panel.h_stack("copies_row", align_x="left", gap=1)
                for i, caption in enumerate(st.copies):
                    pics.str(f"copy_{i}", view=types.ImageView(width="96px", height="96px", alt=caption))
                    pics.md(caption, name=f"copy_caption_{i}")
        else:
            panel.md("Open a sample to review it here. Grid: select samples and use the Curate buttons.", name="hint")
        panel.md(review_card.LEGEND_TEXT, name="legend")
        table = types.TableView()
        for key, label in QUEUE_COLUMNS:
            table.add_column(key, label=label)
        panel.list("queue", types.Object(), view=table, label="Review queue")
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=2, padding=2))


def register(p):
    for cls in (LabelWrong, LabelRight, ExcludeImage, UndoDecision):
        p.register(cls)
        p.register(_grid(cls))
    p.register(NextPending)
    p.register(_Job)
    p.register(RunExport)
    p.register(ReviewPanel)
