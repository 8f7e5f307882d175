"""wandb's side of a training process, run as a process of its own (`RunLogger` starts it).

Why a process: wandb's import, its start and each `log` are Python work (0.7 s, about a second,
and about 5 ms a row on this CPU). In a thread of the training process they share its one
interpreter lock with training, which then runs at half speed while they last; here they run on
another core. This file imports nothing of the project and nothing but wandb beyond the standard
library, so the process starts in a fraction of a second.

Protocol, one JSON object a line. In (stdin), each naming the run `key` it is for:
    {"op": "init", "key", "id", "mode", "asked", "resuming", "timeout", "kwargs"}
    {"op": "log", "key", "row"}      {"op": "video", "key", "name", "path", "step"}
    {"op": "finish", "key", "exit_code"}
Out (stdout): {"key", "started": true, "mode", "id"} or {"key", "error": "one line"} after an
init; {"key", "finished": true} after a finish. Requests are read as they come (a thread drains
stdin), so the training process never waits on a full pipe while a start is slow. At the end of
stdin (the training process is gone) every run still open is finished as failed.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import string
import sys
import threading

_EOF = None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:200]


def new_run_id() -> str:
    """A fresh wandb run id, as wandb makes them (8 of a-z0-9), from the OS's randomness: runs
    seeded alike must not share one."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _init(msg: dict, mode: str, run_id: str):
    import wandb

    run = wandb.init(
        **msg["kwargs"],
        mode=mode,
        id=run_id,
        resume="allow" if msg["resuming"] else None,
        settings=wandb.Settings(init_timeout=msg["timeout"], reinit="create_new"),  # one run per seed
    )
    run.define_metric("global_step")
    run.define_metric("*", step_metric="global_step")
    return run


def _start(msg: dict):
    """The run `msg` asks for -> (run, mode, id). An online start that fails goes on offline
    (with a line saying so) when the mode was auto; raises a one-line RuntimeError otherwise."""
    mode, run_id = msg["mode"], msg["id"]
    try:
        return _init(msg, mode, run_id), mode, run_id
    except Exception as e:  # noqa: BLE001 (wandb raises many kinds)
        if msg["asked"] != "auto" or mode != "online":
            raise RuntimeError(
                f"--wandb-mode {msg['asked']}: wandb could not start ({_reason(e)}); check "
                "`wandb login` and the network, or use --wandb-mode offline"
            ) from None
        print(f"wandb: could not start an online run ({_reason(e)}); logging offline instead", file=sys.stderr)
    if not msg["resuming"]:  # wandb's service still holds the failed run's id
        run_id = new_run_id()
    try:
        return _init(msg, "offline", run_id), "offline", run_id
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"--wandb-mode {msg['asked']}: wandb could not start offline ({_reason(e)})") from None


def serve(lines, reply) -> None:
    """Carry out the requests in `lines` (dicts, then _EOF), answering with `reply(dict)`."""
    runs: dict[str, object] = {}
    for msg in iter(lines.get, _EOF):
        key, op = msg["key"], msg["op"]
        if op == "init":
            try:
                runs[key], mode, run_id = _start(msg)
            except Exception as e:  # noqa: BLE001 (answered, not raised: the training process decides)
                reply({"key": key, "error": str(e) if isinstance(e, RuntimeError) else _reason(e)})
                continue
            if mode == "offline" and msg["asked"] == "auto":
                where = f"{msg['kwargs']['dir']}/wandb/offline-run-*"
                print(f"wandb: logging offline; upload later with `wandb sync {where}`", file=sys.stderr)
            reply({"key": key, "started": True, "mode": mode, "id": run_id})
        elif key not in runs:  # its start failed: nothing to log to
            if op == "finish":
                reply({"key": key, "finished": True})
        elif op == "log":
            runs[key].log(msg["row"])
        elif op == "video":
            import wandb

            # A file, not raw frames: wandb encodes raw frames with moviepy, which it does not install.
            runs[key].log({msg["name"]: wandb.Video(msg["path"], format="gif"), "global_step": msg["step"]})
        elif op == "finish":
            runs.pop(key).finish(exit_code=msg["exit_code"])
            reply({"key": key, "finished": True})
    for run in runs.values():  # the training process is gone without finishing these
        run.finish(exit_code=1)


def main() -> None:
    # Ctrl-C is the training process's to handle (it then finishes the run here); this process is
    # in a session of its own, and ignores the signal should it come anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("WANDB_SILENT", "true")
    lines: queue.Queue = queue.Queue()

    def drain() -> None:
        for line in sys.stdin:
            if line.strip():
                lines.put(json.loads(line))
        lines.put(_EOF)

    threading.Thread(target=drain, daemon=True).start()
    # The answers get stdout's pipe to themselves: whatever else writes to it (wandb, its service)
    # goes to stderr instead.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def reply(obj: dict) -> None:
        try:
            answers.write(json.dumps(obj) + "\n")
            answers.flush()
        except OSError:  # the training process has gone: the runs still finish here
            pass

    serve(lines, reply)


if __name__ == "__main__":
    main()
