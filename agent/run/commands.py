"""train.py's command line: one subcommand per learner, over the sections every learner shares.

    python train.py [LEARNER] [FLAGS]       LEARNER: pathwise (the default), model, ppo or reinforce

A learner's own flags are its config's fields (`agent.run.config.PathwiseConfig`, ...): they are the
only learner flags it shows and accepts. The shared sections (world, budget, run, logging) are
listed by `python train.py --help` and may stand anywhere on the line. `--algo NAME` still picks
the learner, and `--resume RUN` without one continues with the run's own.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Union

import tyro

from agent.run.cli import CliError, given_fields, parse
from agent.run.config import LEARNERS, BudgetConfig, LoggingConfig, RunConfig, TrainConfig, WorldConfig
from agent.run.resolve import default_learner, flag

LEARNER_CONFIGS: dict[str, type] = {name: config for name, (config, _) in LEARNERS.items()}
DEFAULT_LEARNER = "pathwise"


def _first_line(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


Learner = Union[  # noqa: UP007 (tyro reads the subcommands from a Union)
    tuple(
        Annotated[cls, tyro.conf.subcommand(name, description=_first_line(cls))]
        for name, cls in LEARNER_CONFIGS.items()
    )
]


@dataclass
class Command:
    """Train a gridworld agent whose gradients flow through its sampled (Gumbel) actions.

    Name a learner first (pathwise, the default; model, the default on gymnasium envs without a
    table; ppo; reinforce) for its own flags: `python train.py ppo --help`. The options below are
    every learner's, and may stand anywhere."""

    learner: Learner
    world: WorldConfig = field(default_factory=WorldConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    run: RunConfig = field(default_factory=RunConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS = ("world", "budget", "run", "logging")
_SHARED = {f.name for cls in (WorldConfig, BudgetConfig, RunConfig, LoggingConfig) for f in fields(cls)}
_OWN = {name: {f.name for f in fields(cls)} for name, cls in LEARNER_CONFIGS.items()}


def _is_flag_of(names: set[str], token: str) -> bool:
    name = token[2:].split("=", 1)[0].replace("-", "_")
    return name in names or (name.startswith("no_") and name[3:] in names)


def _takes_value(token: str) -> bool:
    """Whether `--x` is followed by a value: every flag but the booleans (and `--x=v` has its own)."""
    if "=" in token:
        return False
    name = token[2:].replace("-", "_")
    hints = typing.get_type_hints(TrainConfig)
    return not (name in hints and hints[name] is bool) and not (name.startswith("no_") and hints.get(name[3:]) is bool)


def _learner_of(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the learner argv names: a subcommand, or --algo NAME; None if neither), argv without it."""
    rest, learner, i = [], None, 0
    while i < len(argv):
        token = argv[i]
        after_flag = i > 0 and argv[i - 1].startswith("--") and _takes_value(argv[i - 1])
        if learner is None and token in LEARNER_CONFIGS and not after_flag:
            learner = token
        elif token == "--algo" and i + 1 < len(argv):
            learner = argv[i + 1]
            i += 1
        elif token.startswith("--algo="):
            learner = token.split("=", 1)[1]
        else:
            rest.append(token)
        i += 1
    if learner is not None and learner not in LEARNER_CONFIGS:
        raise CliError(f"--algo {learner!r} is not a learner; choose one of {', '.join(LEARNER_CONFIGS)}")
    return learner, rest


def _stored_learner(argv: list[str]) -> str | None:
    """The learner of the run that `--resume RUN` continues (None if it can't be read here; the
    resume itself then says why)."""
    for i, token in enumerate(argv):
        path = token.split("=", 1)[1] if token.startswith("--resume=") else None
        if token == "--resume" and i + 1 < len(argv):
            path = argv[i + 1]
        if path is not None:
            record = Path(path) / "config.json" if Path(path).is_dir() else Path(path).parent / "config.json"
            try:
                return json.loads(record.read_text()).get("algo")
            except (OSError, ValueError):
                return None
    return None


def _ordered(learner: str | None, argv: list[str]) -> list[str]:
    """argv as tyro reads it: the shared flags (with their values) first, then the learner and its
    flags; with no learner, the shared flags alone (`--help` is then the top level's)."""
    shared, own = _split(argv, top_help=learner is None)
    return shared + ([learner] if learner else []) + own


def _split(argv: list[str], *, top_help: bool = False) -> tuple[list[str], list[str]]:
    """argv -> (the shared flags with their values, the rest)."""
    shared, own, group = [], [], None
    for token in argv:
        if token.startswith("--") or token in ("-h",):
            is_top_help = token in ("-h", "--help") and top_help
            group = shared if is_top_help or _is_flag_of(_SHARED, token) else own
        (group if group is not None else own).append(token)
    return shared, own


def _config(command: Command, algo: str) -> TrainConfig:
    values = asdict(command.learner)
    for section in SECTIONS:
        values |= asdict(getattr(command, section))
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}, algo=algo)


def _default_for(argv: list[str], prog: str) -> str:
    """The learner a run that names none trains, read from its shared flags (its --env): pathwise,
    or the model learner on a black box, whose flags the run may then be given."""
    try:
        command, _ = parse(Command, _split(argv)[0], prog=prog, config=_CONFIG, flat=TrainConfig, default=_DEFAULT)
    except CliError:  # the whole parse below says what is wrong
        return DEFAULT_LEARNER
    return default_learner(_config(command, DEFAULT_LEARNER))


def parse_train(argv: list[str], *, prog: str = "train.py") -> tuple[TrainConfig, set[str]]:
    """argv -> (the TrainConfig it names, the fields it set). A flag of another learner than the
    one trained is one line naming the flag, its learner and the fix."""
    learner, rest = _learner_of(argv)
    asked_help = any(t in ("-h", "--help") for t in rest)
    if learner or asked_help:
        chosen = learner
    elif any(t == "--resume" or t.startswith("--resume=") for t in rest):  # the run's own, where it can be read
        chosen = _stored_learner(argv) or DEFAULT_LEARNER
    else:  # none named: pathwise, or the model learner on a black box
        chosen = _default_for(rest, prog)
    try:
        command, _ = parse(
            Command, _ordered(chosen, rest), prog=prog, config=_CONFIG, flat=TrainConfig, default=_DEFAULT
        )
    except CliError:
        others = [
            (t.split("=", 1)[0], name)
            for t in rest
            if t.startswith("--") and not _is_flag_of(_SHARED | _OWN[chosen or DEFAULT_LEARNER], t)
            for name, own in _OWN.items()
            if _is_flag_of(own, t)
        ]
        if others:
            bad, owner = others[0]
            raise CliError(
                f"{bad} is a flag of {owner}, and this run trains {chosen}: drop it, or train that learner "
                f"(python train.py {owner} ...)"
            ) from None
        raise
    cfg = _config(command, chosen)
    given = given_fields(TrainConfig, rest) | ({"algo"} if learner else set())
    return cfg, given


_CONFIG = (tyro.conf.OmitArgPrefixes, tyro.conf.OmitSubcommandPrefixes)
_DEFAULT = Command(learner=LEARNER_CONFIGS[DEFAULT_LEARNER]())  # what `--help` names as the default


def learner_flags(name: str) -> list[str]:
    """The flags `python train.py NAME --help` lists as the learner's own."""
    return [flag(f.name) for f in dataclasses.fields(LEARNER_CONFIGS[name])]
