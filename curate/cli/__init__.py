"""`curate`: the command line. Thin by design: parse options, call the libraries, print results.

Each workflow stage's commands live in their own module and are registered here with `add_command`;
the modules import only `curate.cli.common`, never this package, so there is no import circle.
Every error a user can cause derives from `core.errors.CurateError` and is caught once, in `Main`,
as a one-line message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click

from core.errors import CurateError
from curate import __version__
from curate.cli import audit, data, evaluate, export, fiftyone


class Main(click.Group):
    """The `curate` group: turns a CurateError from any command into `Error: <message>`, exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CurateError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Curate face datasets with age and gender labels (UTKFace first).

    Typical flow: split -> train -> evaluate -> audit/score -> flag-mislabels -> app -> export ->
    retrain --compare. Run `curate COMMAND -h` for each command's options.
    """
    from core.allocator import keep_freed_memory

    # 2-2.5x faster torch steps on glibc (core/allocator.py); CURATE_MALLOC=system turns it off
    ctx.with_resource(keep_freed_memory())


for command in (
    data.split,
    data.train,
    evaluate.evaluate,
    evaluate.predict,
    audit.audit,
    fiftyone.score,
    fiftyone.flag_mislabels,
    fiftyone.app,
    fiftyone.review_status,
    fiftyone.plugin,
    export.export_cmd,
    export.retrain,
    export.explain,
):
    main.add_command(command)
