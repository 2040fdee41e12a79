"""`curate`: the command line. Thin by design: parse options, call the libraries, print results.

Each workflow stage's commands live in their own module and are registered here with `add_command`;
the modules import only `curate.cli.common`, never this package, so there is no import circle.
Every error a user can cause derives from `core.errors.CurateError` and is caught once, in `Main`,
as a one-line message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

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


def run() -> None:
    """The console script: `main`, then an exit that skips the interpreter's teardown.

    Tearing down torch's modules and its CUDA libraries' static objects touches ~165 MB of library pages
    that the command never used and takes ~0.5 s, after the work is done and written (every output is
    written atomically before a command returns); that teardown alone made a one-image `curate predict`
    peak above issue 16's 1 GB. The exit handlers still run (logging, multiprocessing, temporary files,
    FiftyOne), and the output streams are flushed. With a non-daemon thread still alive the ordinary
    exit (which joins it) is kept. A bug's traceback is printed as usual.
    """
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)
