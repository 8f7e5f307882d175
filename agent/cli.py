"""Command lines from typed dataclasses (tyro), with bad input reported as one line.

tyro checks types and choices and writes `--help` from the fields' docstrings; its own errors are
a multi-line box. `parse` keeps tyro's words and flattens them into one `error: ...` line, and
tells which fields the command line set (a resumed run applies exactly those).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
from typing import TypeVar

import tyro

T = TypeVar("T")
_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")


class CliError(ValueError):
    """A command line that could not be parsed; the message is one line."""


def parse(cls: type[T], argv: list[str], *, prog: str, description: str | None = None) -> tuple[T, set[str]]:
    """argv -> (an instance of the dataclass `cls`, the names of the fields argv set).

    `--help` prints and exits 0, as usual; a parse error raises `CliError` with tyro's message on
    one line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            value = tyro.cli(cls, args=argv, prog=prog, description=description)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            sys.stderr.write(err.getvalue())
            raise
        raise CliError(_one_line(err.getvalue()) or f"cannot parse {' '.join(argv)}") from None
    return value, given_fields(cls, argv)


def given_fields(cls: type, argv: list[str]) -> set[str]:
    """Field names written on the command line: `--x-y v`, `--x-y=v`, and `--no-x-y` for `x_y`."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = set()
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        if name not in names and name.startswith("no_") and name[3:] in names:
            name = name[3:]
        if name in names:
            given.add(name)
    return given


def _one_line(text: str) -> str:
    """tyro's box -> the lines above its first rule, joined."""
    lines = []
    for raw in text.splitlines():
        if "───" in raw or "━━━" in raw:
            if lines:
                break
            continue
        line = _BOX.sub("", raw).strip()
        if line:
            lines.append(line)
    # The box's title ("Invalid choice", "Value error") precedes the message.
    return " ".join(lines)
