"""agent.cli: tyro's error boxes, in each of the forms tyro draws them, become one line."""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Literal

import pytest
import tyro._fmtlib

from agent.cli import CliError, given_fields, parse


@dataclasses.dataclass
class Flags:
    algo: Literal["a", "b"] = "a"
    """Which one."""
    num_envs: int = 4
    """How many."""
    fast: bool = False
    """Go fast."""


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])  # Unicode box, or title over dashes
@pytest.mark.parametrize("ansi", [False, True])  # colours, as on a terminal
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--algo", "c"], "Invalid choice: invalid choice 'c' for argument '--algo'. Expected one of ('a', 'b')."),
        (["--num-envs", "x"], "Value error: Error parsing --num-envs: invalid literal for int() with base 10: 'x'"),
        (["--nope"], "--nope"),
    ],
)
def test_tyro_errors_become_one_line(argv, says, encoding, ansi, monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding=encoding))
    monkeypatch.setattr(tyro._fmtlib, "_FORCE_ANSI", ansi)
    with pytest.raises(CliError) as e:
        parse(Flags, argv, prog="x")
    message = str(e.value)
    assert "\n" not in message and "\x1b" not in message
    assert not set(message) & set("│╭╮╰╯─"), message
    assert "---" not in message and "helptext" not in message
    assert says in message


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        parse(Flags, ["--help"], prog="x")
    assert e.value.code == 0
    captured = capsys.readouterr()
    assert "How many." in captured.out + captured.err


def test_given_fields_names_what_the_command_line_set():
    assert given_fields(Flags, "--num-envs=3 --no-fast --algo b value".split()) == {"num_envs", "fast", "algo"}
    value, given = parse(Flags, ["--num-envs", "3"], prog="x")
    assert value.num_envs == 3 and given == {"num_envs"}
