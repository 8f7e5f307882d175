"""agent.run.cli: tyro's error boxes, in each of the forms tyro draws them, become one line."""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Literal

import pytest
import tyro._fmtlib

from agent.run.cli import CliError, given_fields, parse


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


@dataclasses.dataclass
class Budget:
    steps: int = 10
    """Env steps."""
    lr: float = 0.1
    """A rate."""
    name: str = "x"
    """A name."""
    every: int | None = None
    """Optional."""


@pytest.mark.parametrize(
    ("argv", "steps", "every"),
    [
        (["--steps", "1e6"], 1_000_000, None),
        (["--steps=2.5e5"], 250_000, None),
        (["--steps", "4E+3", "--every", "1e2"], 4_000, 100),
        (["--steps", "123456789012345678e1"], 1234567890123456780, None),  # exact, not through a float
    ],
)
def test_integer_flags_take_whole_numbers_written_with_an_exponent(argv, steps, every):
    value, given = parse(Budget, argv, prog="x")
    assert (value.steps, value.every) == (steps, every) and "steps" in given


@pytest.mark.parametrize("argv", [["--steps", "1.5e0"], ["--steps", "1e-3"], ["--steps", "1.5"]])
def test_an_integer_flag_refuses_a_fraction(argv):
    with pytest.raises(CliError, match=f"--steps: invalid literal for int.*'{argv[1]}'"):
        parse(Budget, argv, prog="x")


def test_other_flags_keep_their_exponents_as_written():
    value, _ = parse(Budget, ["--lr", "1e-3", "--name", "1e6"], prog="x")
    assert value.lr == 1e-3 and value.name == "1e6"


@pytest.mark.parametrize("command", [["train.py", "--help"], ["-m", "agent.sweep", "--help"]])
def test_help_into_a_pipe_closed_early_is_quiet(command):
    # `python train.py --help | head -1`: the reader leaves after one line, and the help that
    # cannot be written is dropped without a traceback.
    import subprocess

    proc = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert first.strip() and "Traceback" not in err, err
