"""Errors that end a command with a short message and exit code 2 (no traceback)."""

from __future__ import annotations


class AtlasgenError(Exception):
    """A problem the user can fix. ``errors`` holds one line per problem, each naming the fix."""

    headline = "error"

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))
