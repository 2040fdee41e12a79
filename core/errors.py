"""One error root for everything a user can cause (bad input, missing files, a refused run).

Why one root: the CLI catches `CurateError` once in `main` and prints its one-line message; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CurateError(Exception):
    """A problem with the user's input or environment, told in one line naming the file and the problem."""
