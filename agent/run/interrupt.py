"""Stopping a run on SIGINT / SIGTERM within about a second, wherever it is.

A signal is process-wide, so is this flag. `install()` makes the first SIGINT or SIGTERM set it;
the long loops (an update's env steps, the critic's minibatches, an evaluation's episodes) call
`check()`, which raises `Interrupted` once it is set, so the run abandons the update it is in and
saves the last consistent state. A second signal raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable


class Interrupted(Exception):
    """A stop was requested; the work in progress is abandoned."""


_signal: int | None = None


def _handler(signum: int, frame) -> None:
    global _signal
    if _signal is not None:  # asked twice: stop now
        raise KeyboardInterrupt
    _signal = signum


def _at_once(signum: int, frame) -> None:
    global _signal
    _signal = signum
    raise KeyboardInterrupt


def install(*, at_once: bool = False) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to the flag (cleared first), or with `at_once` (while starting,
    when there is nothing to save yet) to a KeyboardInterrupt raised there and then, SIGTERM
    included; returns a function restoring the previous handlers."""
    global _signal
    _signal = None
    handler = _at_once if at_once else _handler
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def requested() -> int | None:
    """The signal number that asked to stop, or None."""
    return _signal


def check() -> None:
    """Raise `Interrupted` if a stop was requested."""
    if _signal is not None:
        raise Interrupted(f"signal {_signal}")
