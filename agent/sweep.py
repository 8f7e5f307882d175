"""Sweeps over estimators, temperatures, learning rates and seeds, on Optuna with a shared database.

    python -m agent.sweep plan --storage sqlite:///sweep.db --study lr-tau \\
        --estimators reinmax st --taus 0.5 1 --learning-rates 1e-3 3e-3 --seeds 0 1 2 \\
        -- --env maze --total-timesteps 500000          # train.py flags every trial shares
    python -m agent.sweep work --storage sqlite:///sweep.db --study lr-tau   # on each machine, as many as you like
    python -m agent.sweep report --storage sqlite:///sweep.db --study lr-tau

`plan` writes the grid into the study as queued trials, once. Every `work` process takes queued
trials one at a time and runs each as `train.py` would (its run directory under
`--runs-dir/STUDY/trial-NNNN`); the trial's value is the kept policy's exact normalised score.
Workers share nothing but the storage: an SQLite file on one machine, or a PostgreSQL/MySQL URL
(`postgresql://user:pass@host/db`) for many. A worker that dies mid-trial stops its heartbeat;
after `--grace-s` seconds the next worker to look marks that trial failed and queues its
parameters again (Optuna's RetryHeartbeatStaleTrialCallback), so no planned trial is lost, and none is
completed twice. Ctrl-C in a worker saves the run as train.py does, closes the trial as pruned
and queues it again.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.run.cli import CliError, parse, say
from agent.run.commands import parse_train
from agent.run.config import TrainConfig
from agent.run.resolve import validate

PLAN_ATTR = "train_args"  # the study's user attribute holding the flags every trial shares
SPACE_ATTR = "space"  # ... and the values of each parameter
STARTED = "started"  # a trial's user attribute: its number, once its worker recorded a heartbeat for it
# (a retry copies the attributes of the trial it retries, so the number tells the two apart)
PLANNED = "planned"  # a trial's user attribute: its parameters in the plan
MAX_RETRY = 3


@dataclass
class Plan:
    """Write a grid of trials into a new study."""

    storage: str
    """Optuna storage URL: sqlite:///sweep.db, or postgresql://... for many machines."""
    study: str
    """Study name (one sweep)."""
    estimators: tuple[str, ...] = ("reinmax",)
    """Straight-through estimators to try."""
    taus: tuple[float, ...] = (1.0,)
    """Gumbel-Softmax temperatures to try."""
    learning_rates: tuple[float, ...] = (3e-3,)
    """Policy learning rates to try."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of every combination."""


@dataclass
class Work:
    """Run the study's queued trials until none is left."""

    storage: str
    """Optuna storage URL, as given to plan."""
    study: str
    """Study name, as given to plan."""
    runs_dir: str = "runs/sweeps"
    """Where the trials' run directories go (STUDY/trial-NNNN below it)."""
    heartbeat_s: int = 10
    """Seconds between a running trial's heartbeats."""
    grace_s: int = 60
    """Seconds without a heartbeat after which a trial counts as dead and is queued again."""


@dataclass
class Report:
    """Print the completed trials, best first."""

    storage: str
    """Optuna storage URL."""
    study: str
    """Study name."""


def grid(plan: Plan) -> list[dict[str, Any]]:
    return [
        {"estimator": e, "tau": t, "learning_rate": lr, "seed": s}
        for e in plan.estimators
        for t in plan.taus
        for lr in plan.learning_rates
        for s in plan.seeds
    ]


def trial_config(train_args: list[str], params: dict[str, Any], run_dir: Path, study: str) -> tuple[TrainConfig, set]:
    """The trial's TrainConfig: the plan's shared flags, then its own parameters and run directory."""
    cfg, given = parse_train(train_args)
    own = {**params, "run_name": run_dir.name, "runs_dir": str(run_dir.parent), "wandb_group": study}
    return dataclasses.replace(cfg, **own), given | set(own)


def _storage(url: str, work: Work | None = None):
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if work is None:
        return RDBStorage(url)
    return RDBStorage(
        url,
        heartbeat_interval=work.heartbeat_s,
        grace_period=work.grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )


def _load(url: str, name: str, work: Work | None = None):
    """An existing study, or CliError naming what is missing (an SQLite file is not created)."""
    import optuna

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise CliError(f"--storage {url}: no such database file; create the sweep with `plan` first")
    try:
        return optuna.load_study(study_name=name, storage=_storage(url, work))
    except KeyError:
        raise CliError(f"--study {name}: no such study in {url}; create it with `plan`") from None


def plan(args: Plan, train_args: list[str]) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from agent.learning.straight_through import ESTIMATORS

    unknown = [e for e in args.estimators if e not in ESTIMATORS]
    if unknown:
        raise CliError(f"--estimators {' '.join(unknown)}: unknown; choose from {' '.join(ESTIMATORS)}")
    owned = {"estimator", "tau", "learning_rate", "seed", "run_name", "runs_dir", "resume"}
    cfg, given = parse_train(train_args, prog="train.py (after --)")
    if given & owned:
        raise CliError(
            f"the train.py flags after -- set {', '.join(sorted(given & owned))}, which the sweep sets "
            "per trial; give them to plan instead (--estimators, --taus, --learning-rates, --seeds)"
        )
    if cfg.algo not in ("pathwise",):  # the grid's --estimator and --tau are pathwise's flags
        raise CliError(
            f"the sweep searches --estimator and --tau, flags of pathwise, and the train.py flags after -- "
            f"train {cfg.algo}: sweep pathwise, or give {cfg.algo}'s flags to train.py directly"
        )
    for params in grid(args):
        validate(dataclasses.replace(cfg, **params))
    try:
        study = optuna.create_study(storage=_storage(args.storage), study_name=args.study, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        raise CliError(
            f"--study {args.study} already exists in {args.storage}; run `work` on it, or choose a new name"
        ) from None
    study.set_user_attr(PLAN_ATTR, train_args)
    study.set_user_attr(
        SPACE_ATTR,
        {
            "estimator": list(args.estimators),
            "tau": list(args.taus),
            "learning_rate": list(args.learning_rates),
            "seed": list(args.seeds),
        },
    )
    for params in grid(args):
        study.enqueue_trial(params, user_attrs={PLANNED: params})
    return (
        f"planned {len(grid(args))} trials in study {args.study}; start workers with: python -m agent.sweep "
        f"work --storage {args.storage} --study {args.study}"
    )


def work(args: Work) -> int:
    """Run queued trials until the study has none queued or running; returns how many this worker
    completed."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
    from optuna.trial import TrialState

    from agent.run.trainer import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # fail_stale_trials
    study = _load(args.storage, args.study, args)
    train_args = list(study.user_attrs[PLAN_ATTR])
    space = study.user_attrs[SPACE_ATTR]
    done = 0
    stopped: list[int] = []  # the trial a signal interrupted

    def objective(trial: optuna.Trial) -> float:
        # Optuna's heartbeat thread starts with this function, so a worker killed here may not have
        # recorded one yet. Record it first: a STARTED trial then always has a heartbeat to go stale
        # (fail_stale_trials), and one without STARTED is failed by its age in the loop below.
        study._storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr(STARTED, trial.number)
        fixed = trial.user_attrs.get(PLANNED)  # planned, or a retry (it keeps the attributes)
        if fixed is None:
            # Another worker took the last queued trial between our look and our ask, so Optuna
            # made a new one: it is not in the plan, and is closed unrun.
            raise optuna.TrialPruned("not in the plan")
        params = {k: trial.suggest_categorical(k, space[k]) for k in fixed}  # returns the planned values
        run_dir = Path(args.runs_dir) / args.study / f"trial-{trial.number:04d}"
        cfg, given = trial_config(train_args, params, run_dir, args.study)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            result = train(cfg, given)
        except KeyboardInterrupt:  # a signal while the run was starting
            result = {"interrupted": True}
        if result.get("interrupted"):  # Ctrl-C / SIGTERM: the run is saved; the trial goes back in the queue
            retry(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
            stopped.append(trial.number)
            raise optuna.TrialPruned("interrupted")  # closed without a traceback; the worker stops below
        trial.set_user_attr("success_rate", result["exact_success_rate"])
        return float(result["normalized_score"])

    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    while True:
        fail_stale_trials(study)  # a dead worker's trial: failed, and its parameters queued again
        # Optuna only sees a trial as stale once it has had a heartbeat; a worker that died between
        # taking a trial and its first heartbeat left one RUNNING that never started.
        cutoff = datetime.now() - timedelta(seconds=2 * args.grace_s)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(STARTED) != t.number and t.datetime_start < cutoff:
                try:
                    study.tell(t.number, state=TrialState.FAIL)
                except (ValueError, RuntimeError):  # it finished, or another worker failed it first
                    continue
                retry(study, t)
        states = Counter(t.state for t in study.get_trials(deepcopy=False))
        if states[TrialState.WAITING]:
            before = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            # A trial that raises (a bad world, a bug) is recorded as failed and the worker goes on.
            study.optimize(objective, n_trials=1, catch=(Exception,))
            if stopped:
                raise KeyboardInterrupt
            done += len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) > before
        elif states[TrialState.RUNNING]:
            time.sleep(min(args.heartbeat_s, 5))  # another worker's trial may yet die and come back
        else:
            return done


def report(args: Report) -> str:
    from optuna.trial import TrialState

    study = _load(args.storage, args.study)
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
    states = Counter(t.state.name for t in study.get_trials())
    lines = [
        f"study {args.study}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())),
        "| trial | estimator | tau | learning rate | seed | normalised score | success |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.number} | {t.params['estimator']} | {t.params['tau']:g} | {t.params['learning_rate']:g} | "
        f"{t.params['seed']} | {t.value:.3f} | {t.user_attrs.get('success_rate', float('nan')):.3f} |"
        for t in trials
    ]
    return "\n".join(lines)


COMMANDS = {"plan": Plan, "work": Work, "report": Report}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] in ("-h", "--help"):
            say(__doc__, sys.stdout)
            return 0
        print(
            f"error: give a command first: {', '.join(COMMANDS)} (python -m agent.sweep COMMAND --help)",
            file=sys.stderr,
        )
        return 2
    command, rest = argv[0], argv[1:]
    train_args: list[str] = []
    if "--" in rest:
        rest, train_args = rest[: rest.index("--")], rest[rest.index("--") + 1 :]
    try:
        args, _ = parse(COMMANDS[command], rest, prog=f"python -m agent.sweep {command}", description=__doc__)
        if command == "plan":
            print(plan(args, train_args))
        elif command == "work":
            print(f"worker done: {work(args)} trial(s) completed here")
        else:
            print(report(args))
    except (CliError, ValueError) as e:  # bad input (train.py's flags are checked as ValueError)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the trial in progress is queued again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
