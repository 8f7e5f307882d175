"""Train a gridworld agent: `python train.py --help`.

The job reads top to bottom: parse; plan (the resolved config, checked whole before anything is
written); lock the run directory; seed, envs, networks, learner, logger; then collect-and-update
until the step budget is spent, evaluating, keeping the best policy and checkpointing on the way.
Ctrl-C (SIGINT) or SIGTERM stops within about a second, saves a checkpoint and exits; a second
one stops at once. `--resume RUN_DIR` continues.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from agent import interrupt
from agent.checkpoint import BEST, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from agent.cli import parse
from agent.config import FIXED_ON_RESUME, TrainConfig, flag, resolve, run_record
from agent.factory import (
    build_env,
    build_eval_env,
    build_learner,
    build_networks,
    check_memory,
    resolve_device,
    value_scale,
)
from agent.logger import RunLogger, WandbError, has_wandb_credentials, wandb_holds_exit
from agent.progress import Progress
from agent.rollout import EpisodeStats
from agent.rundir import CONFIG_FILE, FINAL_FILE, RunLock, holds_a_run, prepare_new, run_path, truncate_metrics
from agent.scoring import evaluate, record_episode, reference_returns
from agent.temperature import TauSchedule


def plan(cli: TrainConfig, given: set[str]) -> tuple[TrainConfig, dict | None, Path, torch.device]:
    """The command line (or, with --resume, the stored config with the flags given on top) ->
    (the resolved config, the checkpoint resumed from, the run directory, the device).

    Everything that can be refused is refused here, before anything is written."""
    resumed = None
    if cli.resume:
        resumed = load_checkpoint(cli.resume)
        stored = TrainConfig.from_dict(resumed["config"])
        fixed = sorted(k for k in given & FIXED_ON_RESUME if getattr(cli, k) != getattr(stored, k))
        if fixed:
            was = ", ".join(f"{flag(k)} {getattr(stored, k)!r}" for k in fixed)
            raise ValueError(
                f"--resume can't change {', '.join(flag(k) for k in fixed)} (the run was started with "
                f"{was}); start a new run for that"
            )
        cfg = replace(stored, **{k: getattr(cli, k) for k in given if k != "resume"}, resume=cli.resume)
        run_dir = resolve_checkpoint(cli.resume).parent  # --resume takes a run dir or its .pt
    else:
        cfg = cli
        run_dir = run_path(cfg.runs_dir, cfg.run_name or cfg.default_run_name())
    cfg, world = resolve(cfg)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if resumed is not None:
        check_networks_fit(cfg, resumed)
    check_memory(cfg, world, device)
    if cfg.wandb_mode == "online" and not has_wandb_credentials():
        raise ValueError(
            "--wandb-mode online: wandb finds no credentials (WANDB_API_KEY, or `wandb login`); log in, "
            "or use --wandb-mode auto (offline without credentials)"
        )
    if resumed is None and holds_a_run(run_dir) and not cfg.overwrite:
        prepare_new(run_dir, overwrite=False)  # raises: the directory holds another run
    return cfg, resumed, run_dir, device


def check_networks_fit(cfg: TrainConfig, state: dict) -> None:
    """Refuse a checkpoint whose networks this version builds differently (a run from before a
    change of architecture), before its run directory is touched."""
    policy, critic = build_networks(cfg, tuple(state["obs_shape"]), int(state["num_actions"]), torch.device("cpu"))
    for name, net in (("policy", policy), ("critic", critic)):
        try:
            net.load_state_dict(state[name])
        except RuntimeError:
            raise CheckpointError(
                f"--resume {cfg.resume}: its {name} network was built by an older version of this package and "
                "does not fit this one's; start a new run (its best.pt still evaluates with agent.evaluate)"
            ) from None


def train(cli: TrainConfig, given: set[str] = frozenset()) -> dict:
    """Run one training job; returns the final evaluation (or, interrupted, where it stopped)."""
    cfg, resumed, run_dir, device = plan(cli, given)
    existed = run_dir.exists()
    lock = RunLock(run_dir).acquire()  # one process writes a run at a time
    try:
        return _train(cfg, resumed, run_dir, device)
    except (WandbError, KeyboardInterrupt):  # wandb refused, or Ctrl-C while starting (the loop handles its own)
        if resumed is None:  # a new run that never started leaves nothing behind
            prepare_new(run_dir, overwrite=True)
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()


def _train(cfg: TrainConfig, resumed: dict | None, run_dir: Path, device: torch.device) -> dict:
    # --- the run directory: a new run starts clean; a resume drops what came after its checkpoint
    if resumed is None:
        prepare_new(run_dir, cfg.overwrite)
    else:
        truncate_metrics(run_dir, int(resumed["global_step"]))
    (run_dir / CONFIG_FILE).write_text(json.dumps(run_record(cfg), indent=2))
    # wandb starts in the background while the rest is built and trains (see RunLogger).
    logger = RunLogger(
        cfg,
        run_dir,
        wandb_id=resumed.get("wandb_id") if resumed else None,
        resume_step=int(resumed["global_step"]) if resumed else None,
    )

    # --- seed, envs, networks, learner
    torch.manual_seed(cfg.seed)  # network initialisation; all other noise uses `generator`
    torch.set_flush_denormal(True)  # saturating softmaxes make denormals, which are ~10x slower on CPU
    env = build_env(cfg, device, maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
    eval_env = build_eval_env(cfg, device, "validation")
    reference = reference_returns(eval_env, cfg.gamma)  # the normalised score's ends, computed once
    policy, critic = build_networks(cfg, env.observation_shape, env.A, device, value_scale(env))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    learner = build_learner(cfg, env, policy, critic, generator)
    schedule = TauSchedule(
        cfg.tau_schedule,
        cfg.tau,
        cfg.tau_min,
        cfg.tau_anneal_rate,
        cfg.total_timesteps if cfg.tau_schedule == "linear" else None,
    )
    global_step = 0
    best = {"score": float("-inf"), "step": None}  # the kept policy: the best evaluation so far
    if resumed is not None:
        policy.load_state_dict(resumed["policy"])
        critic.load_state_dict(resumed["critic"])
        learner.load_state_dict(resumed["learner"])
        generator.set_state(resumed["generator"].cpu() if device.type == "cpu" else resumed["generator"])
        global_step = int(resumed["global_step"])
        best = resumed.get("best", best)
    try:  # wandb keeps starting in the background, unless online was asked for explicitly
        logger.start(wait_for_wandb=cfg.wandb_mode == "online")
    except BaseException:
        logger.finish(1)
        raise

    def checkpoint(name: str = LATEST) -> Path:
        return save_checkpoint(
            run_dir / name,
            {
                "policy": policy.state_dict(),
                "critic": critic.state_dict(),
                "learner": learner.state_dict(),
                "generator": generator.get_state(),
                "global_step": global_step,
                "config": cfg.to_dict(),
                "obs_shape": list(env.observation_shape),
                "num_actions": env.A,
                "wandb_id": logger.wandb_id,
                "best": best,
            },
        )

    def run_eval() -> dict:
        result = evaluate(policy, eval_env, gamma=cfg.gamma, reference=reference)
        logger.log(
            {f"eval/{k}": v for k, v in result.items()} | {"charts/normalized_score": result["normalized_score"]},
            global_step,
        )
        if cfg.capture_video:
            logger.log_video("eval/episode", record_episode(policy, cfg, seed=cfg.seed + global_step), global_step)
        # Keep the policy with the best exact score (a later one that ties replaces it): what a
        # user gets even when training drifts off a solution afterwards.
        if result["normalized_score"] >= best["score"]:
            best.update(score=result["normalized_score"], step=global_step)
            checkpoint(BEST)
        return result

    restore_signals = interrupt.install()
    stats = EpisodeStats()
    progress = Progress(cfg.total_timesteps, start=global_step, enabled=cfg.progress)
    exit_code = 0
    try:
        # --- the loop: one window of B x T env steps per update
        obs, _ = env.reset()
        next_eval = (global_step // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
        next_save = (global_step // cfg.save_every + 1) * cfg.save_every if cfg.save_every else None
        start_time, start_step = time.time(), global_step
        saved_at = start_time
        last_eval_step = result = None
        try:
            while global_step < cfg.total_timesteps:
                tau = schedule(global_step)
                learner.set_learning_rates(global_step)
                obs, metrics = learner.update(env, obs, tau, stats)  # a stop request abandons it midway
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
                if (next_save is not None and global_step >= next_save) or (
                    cfg.save_every_s and time.time() - saved_at >= cfg.save_every_s
                ):
                    checkpoint()
                    saved_at = time.time()
                    while next_save is not None and next_save <= global_step:
                        next_save += cfg.save_every
                interrupt.check()
        except interrupt.Interrupted:
            pass
        progress.close()
        path = checkpoint()  # saved before anything is printed: a closed pipe can't cost it
        if interrupt.requested() is not None:
            exit_code = 128 + interrupt.requested()
            say(
                f"\ninterrupted at step {global_step}: checkpoint saved to {path}; "
                f"continue with: python train.py --resume {run_dir}",
                sys.stderr,
            )
            return {"interrupted": True, "global_step": global_step, "exit_code": exit_code}
        wall_clock = time.time() - start_time
        last = run_eval() if last_eval_step != global_step else result
        final = report_kept_policy(cfg, device, run_dir, env, best) | {
            "global_step": global_step,
            "wall_clock_s": wall_clock,
            "final_policy": {k: last[k] for k in ("normalized_score", "exact_success_rate", "success_rate")},
        }
        (run_dir / FINAL_FILE).write_text(json.dumps(final, indent=2))
        say(
            f"done: {global_step} steps; kept the policy of step {final['kept_step']}: greedy success "
            f"{final['exact_success_rate']:.1%}, normalised score {final['normalized_score']:.3f}; "
            f"run saved in {run_dir}",
            sys.stdout,
        )
        return final
    except KeyboardInterrupt:  # a second signal: the state is what the last step left
        exit_code = 130
        path = checkpoint()
        say(
            f"\nstopped at step {global_step}: checkpoint saved to {path}; "
            f"continue with: python train.py --resume {run_dir}",
            sys.stderr,
        )
        return {"interrupted": True, "global_step": global_step, "exit_code": exit_code}
    except BaseException:
        exit_code = 1
        raise
    finally:
        restore_signals()
        logger.finish(exit_code)


def say(text: str, stream) -> None:
    """Print that survives a closed pipe (`train.py | tee` after Ctrl-C): the text is lost, not the run."""
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, OSError):
        # Point the stream at /dev/null so the interpreter's own flush at exit stays quiet too.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass


def report_kept_policy(cfg: TrainConfig, device: torch.device, run_dir: Path, env, best: dict) -> dict:
    """Evaluate the kept (best) policy on the test split: the same world for a single map, mazes
    no evaluation has seen for a family of mazes."""
    state = load_checkpoint(run_dir / BEST, device=device)
    policy, _ = build_networks(cfg, env.observation_shape, env.A, device)
    policy.load_state_dict(state["policy"])
    test_env = build_eval_env(cfg, device, "test")
    result = evaluate(policy, test_env, gamma=cfg.gamma)
    return result | {"kept": BEST, "kept_step": best["step"], "validation_score": best["score"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    restore_signals = interrupt.install(at_once=True)  # until the loop starts there is nothing to save
    try:
        cfg, given = parse(TrainConfig, argv, prog="train.py")
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
    code = main()
    if wandb_holds_exit():
        # A wandb start that failed or was interrupted leaves threads that would hold the exit for
        # up to half a minute (a hung network); the run is saved and its files closed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
