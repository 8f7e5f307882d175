"""Metrics to wandb and to a local JSONL file (offline users and `agent.plot` read it)."""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


def resolve_wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "online" if has_wandb_credentials() else "offline"


class RunLogger:
    """One run's metric sink. `global_step` is the x-axis everywhere."""

    def __init__(self, cfg, run_dir: Path, *, wandb_id: str | None = None) -> None:
        self.run_dir = run_dir
        self.file = open(run_dir / METRICS_FILE, "a", encoding="utf-8")
        self.mode = resolve_wandb_mode(cfg.wandb_mode)
        self.wandb = None
        if self.mode == "disabled":
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb.init(
            project=cfg.wandb_project, entity=cfg.wandb_entity, group=cfg.wandb_group,
            tags=list(cfg.tags) or None, name=run_dir.name, config=cfg.to_dict(),
            dir=str(run_dir), mode=self.mode, id=wandb_id, resume="allow" if wandb_id else None,
        )
        self.wandb.define_metric("global_step")
        self.wandb.define_metric("*", step_metric="global_step")
        if self.mode == "offline" and cfg.wandb_mode == "auto":
            print("wandb: no credentials found, logging offline; upload later with "
                  f"`wandb sync {run_dir}/wandb/offline-run-*`", file=sys.stderr)

    @property
    def wandb_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"global_step": step, **{k: v for k, v in metrics.items() if _is_number(v)}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.wandb is not None:
            self.wandb.log({**metrics, "global_step": step})

    def log_video(self, key: str, frames, step: int, fps: int = 8) -> None:
        if self.wandb is None:
            return
        import numpy as np
        import wandb

        video = np.stack(frames).transpose(0, 3, 1, 2)  # (T, C, H, W) as wandb expects
        self.wandb.log({key: wandb.Video(video, fps=fps, format="gif"), "global_step": step})

    def finish(self, exit_code: int = 0) -> None:
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=exit_code)
            self.wandb = None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {METRICS_FILE}; pass a run directory written by train.py")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
