"""Command lines from typed dataclasses (tyro), with bad input reported as one line.

tyro checks types and choices and writes `--help` from the fields' docstrings; its own errors are
a multi-line box. `parse` keeps tyro's words and flattens them into one `error: ...` line, and
tells which fields the command line set (a resumed run applies exactly those).
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import io
import os
import re
import sys
import typing
from typing import TypeVar

import tyro

T = TypeVar("T")
_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")
_RULE = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]+|-{3,}")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HELP_POINTERS = ("For full helptext", "Argument helptext", "usage:")


def say(text: str, stream) -> None:
    """Print that survives a closed pipe (`train.py | tee` after Ctrl-C): the text is lost, not the run."""
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, OSError):
        silence(stream)


def silence(stream) -> None:
    """Point a stream whose reader has gone at /dev/null, so the interpreter's own flush at exit
    stays quiet too."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError):
        pass


class CliError(ValueError):
    """A command line that could not be parsed; the message is one line."""


def parse(
    cls: type[T],
    argv: list[str],
    *,
    prog: str,
    description: str | None = None,
    config: tuple = (),
    flat: type | None = None,
    default: T | None = None,
) -> tuple[T, set[str]]:
    """argv -> (an instance of the dataclass `cls`, the names of the fields argv set).

    `config` and `default` are tyro's; `flat`, a dataclass whose fields are the flags (when `cls`
    nests them).
    `--help` prints and exits 0, as usual; a parse error raises `CliError` with tyro's message on
    one line."""
    flat = flat or cls
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = _integral_exponents(flat, argv)
            value = tyro.cli(cls, args=args, prog=prog, description=description, config=config or None, default=default)
    except BrokenPipeError:  # `--help | head`: the reader has what it wanted
        silence(sys.stdout)
        raise SystemExit(0) from None
    except SystemExit as e:
        if e.code in (0, None):  # --help
            sys.stderr.write(err.getvalue())
            raise
        raise CliError(_one_line(err.getvalue()) or f"cannot parse {' '.join(argv)}") from None
    return value, given_fields(flat, argv)


_EXPONENT = re.compile(r"^[+-]?\d+(\.\d*)?[eE]\+?\d+$")  # 1e6, 2.5e5, 1E+6: no negative exponent


def _integral_exponents(cls: type, argv: list[str]) -> list[str]:
    """argv with whole numbers written with an exponent (`--total-timesteps 1e6`, as RL code often
    writes budgets) given to integer flags as integers; exact (decimal), so 2.5e5 is 250000 and
    1.5e0 stays as written for tyro to refuse."""
    hints = typing.get_type_hints(cls)
    ints = {
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(cls)
        if hints[f.name] is int or (int in typing.get_args(hints[f.name]) and str not in typing.get_args(hints[f.name]))
    }
    out = list(argv)
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not eq and i > 0 and argv[i - 1] in ints:
            flag, value = argv[i - 1], arg
        elif not eq:
            continue
        if flag in ints and _EXPONENT.match(value) and (d := decimal.Decimal(value)) == d.to_integral_value():
            out[i] = f"{flag}={int(d)}" if eq else str(int(d))
    return out


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
    """tyro's error box -> "title: message" on one line.

    tyro draws the box with Unicode lines (title inside the top border) or, when stdout is not
    UTF-8, with a title line over a row of dashes; either may carry ANSI colours. Rules split the
    text into blocks; the title and the first message block are kept, the help pointers dropped."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for raw in _ANSI.sub("", text).splitlines():
        if "───" in raw or "---" in raw:  # a rule, maybe with the title inside it
            if current:
                blocks.append(current)
                current = []
            title = _RULE.sub(" ", raw).strip()
            if title:
                blocks.append([title])
            continue
        line = _BOX.sub("", raw).strip()
        if line:
            current.append(line)
    if current:
        blocks.append(current)
    kept = [" ".join(b) for b in blocks if not b[0].startswith(_HELP_POINTERS)][:2]
    if len(kept) == 2 and kept[1].startswith(kept[0]):  # a title the message repeats
        kept = kept[1:]
    return ": ".join(kept)
