"""Train a gridworld agent: `python train.py --help`.

The command line only: parse the flags, refuse what is not meant, and hand the config to
`agent.run.trainer.train`, which plans, runs and finishes the job. Bad input is one line on stderr
(exit 2); Ctrl-C or SIGTERM while starting exits with nothing written.
"""

from __future__ import annotations

import signal
import sys

from agent.run import interrupt
from agent.run.checkpoint import CheckpointError
from agent.run.cli import say
from agent.run.commands import parse_train
from agent.run.resolve import refuse_renamed_flags
from agent.run.trainer import train


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    restore_signals = interrupt.install(at_once=True)  # until the loop starts there is nothing to save
    try:
        refuse_renamed_flags(argv)
        cfg, given = parse_train(argv)
        result = train(cfg, given)
    except (ValueError, CheckpointError) as e:  # bad input: one line, nothing written
        say(f"error: {e}", sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the loop (wandb's start, building worlds)
        say("interrupted while starting; nothing was trained", sys.stderr)
        return 128 + (interrupt.requested() or signal.SIGINT)
    finally:
        restore_signals()
    return int(result.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
