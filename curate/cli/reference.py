"""docs/commands.md's option tables, generated from the commands themselves.

Why: the prose of docs/commands.md says what a command is for; the options it lists by hand drift as
options come and go. Each command's section holds a block between `<!-- BEGIN options: curate NAME -->`
and `<!-- END options -->` that this module writes from click's own parameters, so every option, its
default and its help text are in the reference, and tests/test_docs.py fails when the file is stale.
`python -m curate.cli.reference --write docs/commands.md` regenerates the blocks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click

_BEGIN = re.compile(r"<!-- BEGIN options: (curate[\w -]*?) -->\n")
_END = "<!-- END options -->"


def commands(group: click.Group | None = None, prefix: str = "curate") -> Iterator[tuple[str, click.Command]]:
    """Every leaf command under `group` (default: `curate` itself), with its full name, in registration order."""
    if group is None:
        from curate.cli import main as group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _row(p: click.Parameter, ctx: click.Context) -> str:
    """A table row as `curate NAME --help` shows the parameter, defaults included (click's own wording)."""
    if isinstance(p, click.Argument):
        return f"| `{_cell(p.make_metavar(ctx))}` | argument{'' if p.required else ', optional'} |"
    names, text = p.get_help_record(ctx) or ("", "")
    return f"| `{_cell(names)}` | {_cell(text)} |"


def options_table(cmd: click.Command) -> str:
    """One row per argument and option of `cmd` (not --help), with its help text and default."""
    ctx = click.Context(cmd, info_name=cmd.name, show_default=True)
    rows = ["| option | what it does |", "|---|---|"]
    rows += [_row(p, ctx) for p in cmd.params if p.name != "help"]
    return "\n".join(rows)


def replace_in(text: str) -> str:
    """`text` with every options block replaced by the current table of the command it names.

    Raises ValueError naming a block whose command does not exist or a command without a block.
    """
    known = dict(commands())
    seen, out, pos = set(), [], 0
    for m in _BEGIN.finditer(text):
        name = m.group(1).strip()
        if name not in known:
            raise ValueError(f"options block for an unknown command: {name}")
        end = text.index(_END, m.end())
        out += [text[pos : m.end()], options_table(known[name]), "\n"]
        pos = end
        seen.add(name)
    missing = [n for n in known if n not in seen]
    if missing:
        raise ValueError(f"commands without an options block: {', '.join(missing)}")
    return "".join(out) + text[pos:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curate.cli.reference", description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, required=True, help="the file whose options blocks to replace")
    args = ap.parse_args(argv)
    args.write.write_text(replace_in(args.write.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
