"""The command reference cannot drift from the commands: docs/commands.md's option tables are generated
from click's parameters, and README's short table names every command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from curate.cli.reference import commands, replace_in

REPO = Path(__file__).resolve().parent.parent


def test_commands_md_lists_every_option_as_the_commands_define_it():
    text = (REPO / "docs/commands.md").read_text()
    assert replace_in(text) == text, "run `python -m curate.cli.reference --write docs/commands.md`"
    for name, cmd in commands():
        assert f"\n## {name.rsplit(' ', 1)[0] if name.startswith('curate plugin') else name}\n" in text
        for p in cmd.params:
            if p.name != "help" and p.opts[0].startswith("--"):
                assert f"`{p.opts[0]}" in text, f"{name}: {p.opts[0]} missing"


def test_readme_command_table_names_every_command():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Command reference") : readme.index("## What each column means")]
    rows = re.findall(r"^\| `(curate [\w-]+(?: (?:install|path))?)", section, flags=re.M)
    assert {n for n, _ in commands()} <= set(rows) | {"curate plugin path"} and "curate plugin install" in rows


def test_a_stale_or_unknown_block_is_named():
    text = (REPO / "docs/commands.md").read_text()
    without = re.sub(r"<!-- BEGIN options: curate explain -->.*?<!-- END options -->\n", "", text, flags=re.S)
    with pytest.raises(ValueError, match="curate explain"):
        replace_in(without)
    with pytest.raises(ValueError, match="curate nonesuch"):
        replace_in(text + "\n<!-- BEGIN options: curate nonesuch -->\n<!-- END options -->\n")
    stale = text.replace("| `--n INTEGER RANGE` |", "| `--n N` |", 1)
    assert stale != text and replace_in(stale) == text
