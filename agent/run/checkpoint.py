"""Checkpoints: model, critic, optimisers, step, config and package versions in one file,
written atomically and read back with `weights_only=True` (a checkpoint can't run code)."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

FORMAT = "gumbel-gridworld/1"
LATEST = "checkpoint.pt"  # the run's last state, what --resume continues
BEST = "best.pt"  # the policy with the best evaluation so far, what a user gets


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged or not ours; the message is one line with the fix."""


def package_versions() -> dict[str, str]:
    import gymnasium
    import numpy

    # str(): torch.__version__ is a TorchVersion, which a weights_only load refuses to unpickle.
    return {"torch": str(torch.__version__), "gymnasium": str(gymnasium.__version__), "numpy": str(numpy.__version__)}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (plus format and versions) to `path` atomically: a crash mid-write
    leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "versions": package_versions(), **state}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def resolve_checkpoint(path: str | Path, which: str = LATEST) -> Path:
    """A run directory -> its checkpoint `which` (LATEST or BEST; a run without a BEST, e.g. one
    stopped before its first evaluation, falls back to LATEST); a file -> itself."""
    if which not in (LATEST, BEST):
        raise ValueError(f"which={which!r} must be {LATEST!r} or {BEST!r}")
    p = Path(path)
    if p.is_dir():
        p = p / which if (p / which).is_file() else p / LATEST
    if not p.is_file():
        raise CheckpointError(
            f"no checkpoint at {p}; pass a run directory (runs/NAME) or a .pt file written by train.py"
        )
    return p


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", which: str = LATEST) -> dict[str, Any]:
    p = resolve_checkpoint(path, which)
    try:
        with warnings.catch_warnings():
            # A damaged file can start like a pickle of another protocol; torch then warns about
            # it on stderr before failing, which would add lines to our one-line error.
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # A refused weights_only load puts the useful line ("Unsupported global: ...") last.
        useful = [ln for ln in lines if ln.startswith("WeightsUnpickler error")] or lines
        first = re.sub(r"\x1b\[[0-9;]*m", "", useful[0]) if useful else type(e).__name__
        # Garbage files put raw bytes in the message; some (e.g. \x0c, \x85) would break the line.
        first = "".join(ch if ch.isprintable() else "?" for ch in first)
        raise CheckpointError(
            f"cannot read checkpoint {p} ({first[:120]}); it is damaged or not a train.py checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a gumbel-gridworld checkpoint (expected format {FORMAT!r})")
    return state
