"""Train a gridworld agent: `python train.py --help`.

The loop reads top to bottom: parse, run directory, seed, device, envs, networks, learner,
logger, then collect-and-update until the step budget is spent, evaluating and checkpointing on
the way. Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits; `--resume RUN_DIR` continues.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import tyro

from agent.checkpoint import BEST, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from agent.config import TrainConfig, validate
from agent.evaluation import evaluate, record_episode, reference_returns
from agent.factory import (
    build_env,
    build_eval_env,
    build_learner,
    build_networks,
    build_world,
    resolve_defaults,
    resolve_device,
)
from agent.gumbel import TauSchedule
from agent.logger import RunLogger
from agent.progress import Progress
from agent.rollout import EpisodeStats


class _Stop:
    """Set by SIGINT/SIGTERM; the loop finishes its update, saves and leaves."""

    signal: int | None = None

    def __call__(self, signum, frame) -> None:
        self.signal = signum


def train(cfg: TrainConfig, explicit: set[str] = frozenset()) -> dict:
    """Run one training job; returns the final evaluation."""
    # --- run directory and config (resume takes the stored config, CLI flags given win)
    resumed = None
    if cfg.resume:
        resumed = load_checkpoint(cfg.resume)
        stored = TrainConfig.from_dict(resumed["config"])
        cfg = replace(stored, **{k: getattr(cfg, k) for k in explicit if k != "resume"}, resume=cfg.resume)
        run_dir = resolve_checkpoint(cfg.resume).parent  # --resume takes a run dir or its .pt
    else:
        run_dir = Path(cfg.runs_dir) / (cfg.run_name or cfg.default_run_name())
        if (run_dir / LATEST).exists():
            raise ValueError(
                f"run directory {run_dir} already has a checkpoint; pick another --run-name or --resume {run_dir}"
            )
    validate(cfg)
    cfg = resolve_defaults(cfg, build_world(cfg))  # the run's config records the values used
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    # --- seed, device, envs, networks, learner
    torch.manual_seed(cfg.seed)  # network initialisation; all other noise uses `generator`
    torch.set_flush_denormal(True)  # saturating softmaxes make denormals, which are ~10x slower on CPU
    device = resolve_device(cfg.device)
    env = build_env(cfg, device, maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
    eval_env = build_eval_env(cfg, device, "validation")
    reference = reference_returns(eval_env, cfg.gamma)  # the normalised score's ends, computed once
    policy, critic = build_networks(cfg, env.observation_shape, env.A, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    learner = build_learner(cfg, env, policy, critic, generator)
    schedule = TauSchedule(cfg.tau_schedule, cfg.tau, cfg.tau_min, cfg.tau_anneal_rate,
                           cfg.total_timesteps if cfg.tau_schedule == "linear" else None)
    global_step = 0
    best = {"score": float("-inf"), "step": None}  # the kept policy: the best evaluation so far
    if resumed is not None:
        policy.load_state_dict(resumed["policy"])
        critic.load_state_dict(resumed["critic"])
        learner.load_state_dict(resumed["learner"])
        generator.set_state(resumed["generator"].cpu() if device.type == "cpu" else resumed["generator"])
        global_step = int(resumed["global_step"])
        best = resumed.get("best", best)
    logger = RunLogger(cfg, run_dir, wandb_id=resumed.get("wandb_id") if resumed else None)

    def checkpoint(name: str = LATEST) -> Path:
        return save_checkpoint(run_dir / name, {
            "policy": policy.state_dict(), "critic": critic.state_dict(), "learner": learner.state_dict(),
            "generator": generator.get_state(), "global_step": global_step, "config": cfg.to_dict(),
            "obs_shape": list(env.observation_shape), "num_actions": env.A, "wandb_id": logger.wandb_id,
            "best": best,
        })

    def run_eval() -> dict:
        result = evaluate(policy, eval_env, gamma=cfg.gamma, reference=reference)
        logger.log({f"eval/{k}": v for k, v in result.items()} | {
            "charts/normalized_score": result["normalized_score"],
        }, global_step)
        if cfg.capture_video:
            logger.log_video("eval/episode", record_episode(policy, cfg, seed=cfg.seed + global_step), global_step)
        # Keep the policy with the best exact score (a later one that ties replaces it): what a
        # user gets even when training drifts off a solution afterwards.
        if result["normalized_score"] >= best["score"]:
            best.update(score=result["normalized_score"], step=global_step)
            checkpoint(BEST)
        return result

    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stats = EpisodeStats()
    progress = Progress(cfg.total_timesteps, start=global_step, enabled=cfg.progress)
    exit_code = 0
    try:
        # --- the loop: one window of B x T env steps per update
        obs = env.reset()
        next_eval = (global_step // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
        next_save = (global_step // cfg.save_every + 1) * cfg.save_every if cfg.save_every else None
        start_time, start_step = time.time(), global_step
        last_eval_step = None
        while global_step < cfg.total_timesteps and stop.signal is None:
            tau = schedule(global_step)
            learner.warm_up(global_step)
            obs, metrics = learner.update(env, obs, tau, stats)
            global_step += env.num_envs * cfg.horizon
            sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
            metrics |= stats.pop() | {"charts/SPS": sps, "charts/tau": tau}
            logger.log(metrics, global_step)
            progress.update(global_step, metrics)
            if next_eval is not None and global_step >= next_eval:
                result = run_eval()
                last_eval_step = global_step
                progress.note(global_step, result)
                next_eval += cfg.eval_every
                if cfg.stop_at_success is not None and result["exact_success_rate"] >= cfg.stop_at_success:
                    break
            if next_save is not None and global_step >= next_save:
                checkpoint()
                next_save += cfg.save_every
        progress.close()
        path = checkpoint()
        if stop.signal is not None:
            exit_code = 128 + stop.signal
            print(f"\ninterrupted at step {global_step}: checkpoint saved to {path}; "
                  f"continue with: python train.py --resume {run_dir}", file=sys.stderr)
            return {"interrupted": True, "global_step": global_step, "exit_code": exit_code}
        wall_clock = time.time() - start_time
        last = run_eval() if last_eval_step != global_step else result
        final = report_kept_policy(cfg, device, run_dir, env, best) | {
            "global_step": global_step, "wall_clock_s": wall_clock,
            "final_policy": {k: last[k] for k in ("normalized_score", "exact_success_rate", "success_rate")},
        }
        (run_dir / "final_eval.json").write_text(json.dumps(final, indent=2))
        print(f"done: {global_step} steps; kept the policy of step {final['kept_step']}: greedy success "
              f"{final['exact_success_rate']:.1%}, normalised score {final['normalized_score']:.3f}; "
              f"run saved in {run_dir}")
        return final
    except BaseException:
        exit_code = 1
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        logger.finish(exit_code)


def report_kept_policy(cfg: TrainConfig, device: torch.device, run_dir: Path, env, best: dict) -> dict:
    """Evaluate the kept (best) policy on the test split: the same world for a single map, mazes
    no evaluation has seen for a family of mazes."""
    state = load_checkpoint(run_dir / BEST, device=device)
    policy, _ = build_networks(cfg, env.observation_shape, env.A, device)
    policy.load_state_dict(state["policy"])
    test_env = build_eval_env(cfg, device, "test")
    result = evaluate(policy, test_env, gamma=cfg.gamma)
    return result | {"kept": BEST, "kept_step": best["step"], "validation_score": best["score"]}


def explicit_fields(argv: list[str]) -> set[str]:
    """Config fields written on the command line (they override a resumed run's config)."""
    names = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    return names & set(TrainConfig.__dataclass_fields__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = tyro.cli(TrainConfig, args=argv)
    try:
        result = train(cfg, explicit_fields(argv))
    except (ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return int(result.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
