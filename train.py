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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from agent import interrupt
from agent.checkpoint import BEST, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from agent.cli import parse
from agent.config import (
    FIXED_ON_RESUME,
    TrainConfig,
    flag,
    member_configs,
    refuse_other_learners_flags,
    refuse_renamed_flags,
    resolve,
    run_record,
)
from agent.factory import build_env, build_eval_env, build_learner, build_networks, check_memory, resolve_device
from agent.logger import RunLogger, WandbError, has_wandb_credentials
from agent.progress import Progress
from agent.rollout import EpisodeStats
from agent.rundir import CONFIG_FILE, FINAL_FILE, RunLock, holds_a_run, prepare_new, run_path, truncate_metrics
from agent.scoring import evaluate, record_episode, reference_returns
from agent.temperature import TauSchedule


def next_eval_step(step: int, every: int, update_size: int) -> int | None:
    """The first evaluation point after `step`: 1, 2, 4, 8, ... updates of `update_size` env steps
    while below `every`, then every multiple of `every` (None with `every` 0: only at the end).
    Doubling keeps the early evaluations to about log2(every / update_size) in all, whatever the
    world, while a quick solution is seen within twice the steps it took."""
    if not every:
        return None
    point = update_size
    while point <= step and point < every:
        point *= 2
    return point if step < point < every else (step // every + 1) * every


def plan(cli: TrainConfig, given: set[str]) -> tuple[TrainConfig, dict | None, Path, torch.device]:
    """The command line (or, with --resume, the stored config with the flags given on top) ->
    (the resolved config, the checkpoint resumed from, the run directory, the device).

    Everything that can be refused is refused here, before anything is written."""
    resumed = None
    if cli.resume:
        refuse_group_resume(cli.resume)
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
    refuse_other_learners_flags(cfg, given)  # after the ranges: a value out of range is named as such
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if resumed is not None:
        check_networks_fit(cfg, resumed)
    check_memory(cfg, world, device)
    if cfg.capture_video:
        try:
            import imageio  # noqa: F401  (the [plots] extra)
        except ImportError:
            raise ValueError(
                "--capture-video needs imageio to write its GIFs: pip install 'gumbel-gridworld[plots]'"
            ) from None
    if cfg.wandb_mode == "online" and not has_wandb_credentials():
        raise ValueError(
            "--wandb-mode online: wandb finds no credentials (WANDB_API_KEY, or `wandb login`); log in, "
            "or use --wandb-mode auto (offline without credentials)"
        )
    if resumed is None and holds_a_run(run_dir) and not cfg.overwrite:
        prepare_new(run_dir, overwrite=False)  # raises: the directory holds another run
    return cfg, resumed, run_dir, device


def refuse_group_resume(path: str) -> None:
    """A --num-seeds run is resumed seed by seed: each RUN/seed-K is a whole run of its own."""
    record = Path(path) / CONFIG_FILE
    if record.is_file() and json.loads(record.read_text()).get("num_seeds", 1) > 1:
        raise ValueError(
            f"--resume {path}: a --num-seeds run continues seed by seed; use --resume {Path(path) / 'seed-K'} "
            "for each seed K"
        )


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


@dataclass
class Member:
    """One agent of the run and what is its own: its config (a single run's), directory, logger,
    evaluation env and kept policy. A run has one, or --num-seeds of them in RUN/seed-K."""

    index: int
    cfg: TrainConfig
    run_dir: Path
    logger: RunLogger
    eval_env: object
    best: dict = field(default_factory=lambda: {"score": float("-inf"), "step": None})


def _train(cfg: TrainConfig, resumed: dict | None, run_dir: Path, device: torch.device) -> dict:
    # --- the run directory: a new run starts clean; a resume drops what came after its checkpoint
    grouped = cfg.num_seeds > 1
    configs = member_configs(cfg, run_dir) if grouped else [cfg]
    dirs = [run_path(run_dir, m.run_name) for m in configs] if grouped else [run_dir]
    if resumed is None:
        for d in [run_dir, *dirs] if grouped else [run_dir]:
            prepare_new(d, cfg.overwrite)
    else:
        truncate_metrics(run_dir, int(resumed["global_step"]))
    (run_dir / CONFIG_FILE).write_text(json.dumps(run_record(cfg), indent=2))
    for m, d in zip(configs, dirs, strict=True):
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG_FILE).write_text(json.dumps(run_record(m), indent=2))

    # --- seed, envs, networks, learner
    torch.manual_seed(cfg.seed)  # network initialisation; all other noise uses `generator`
    torch.set_flush_denormal(True)  # saturating softmaxes make denormals, which are ~10x slower on CPU
    env = build_env(cfg, device, maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)  # B envs per member
    # wandb starts in the background while the rest is built and trains (see RunLogger).
    members = [
        Member(
            k,
            m,
            d,
            RunLogger(
                m,
                d,
                wandb_id=resumed.get("wandb_id") if resumed else None,
                resume_step=int(resumed["global_step"]) if resumed else None,
            ),
            build_eval_env(m, device, "validation"),
        )
        for k, (m, d) in enumerate(zip(configs, dirs, strict=True))
    ]
    reference = reference_returns(members[0].eval_env, cfg.gamma)  # the normalised score's ends, computed once
    policy, critic = build_networks(cfg, env.observation_shape, env.A, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    learner = build_learner(cfg, env, policy, critic, generator)
    schedule = TauSchedule(
        cfg.tau_schedule,
        cfg.tau,
        cfg.tau_min,
        cfg.tau_anneal_rate,
        cfg.total_timesteps if cfg.tau_schedule == "linear" else None,
    )
    global_step = 0  # env steps of each member
    if resumed is not None:
        policy.load_state_dict(resumed["policy"])
        critic.load_state_dict(resumed["critic"])
        learner.load_state_dict(resumed["learner"])
        generator.set_state(resumed["generator"].cpu() if device.type == "cpu" else resumed["generator"])
        global_step = int(resumed["global_step"])
        members[0].best = resumed.get("best", members[0].best)
    started = []
    try:  # wandb keeps starting in the background, unless online was asked for explicitly
        for member in members:
            member.logger.start(wait_for_wandb=cfg.wandb_mode == "online")
            started.append(member)
    except BaseException:
        for member in members:
            member.logger.finish(1)
        raise

    def networks(member: Member) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The member's own policy and critic (for --num-seeds, copies out of the ensemble)."""
        return (policy.member(member.index), critic.member(member.index)) if grouped else (policy, critic)

    def checkpoint(member: Member, name: str = LATEST, nets: tuple | None = None) -> Path:
        member_policy, member_critic = nets or networks(member)
        return save_checkpoint(
            member.run_dir / name,
            {
                "policy": member_policy.state_dict(),
                "critic": member_critic.state_dict(),
                "learner": learner.member_state_dict(member.index),
                "generator": generator.get_state(),
                "global_step": global_step,
                "config": member.cfg.to_dict(),
                "obs_shape": list(env.observation_shape),
                "num_actions": env.A,
                "wandb_id": member.logger.wandb_id,
                "best": member.best,
            },
        )

    def checkpoint_all(name: str = LATEST) -> list[Path]:
        return [checkpoint(member, name) for member in members]

    def run_eval(member: Member) -> dict:
        nets = networks(member)
        result = evaluate(nets[0], member.eval_env, gamma=cfg.gamma, reference=reference)
        member.logger.log(
            {f"eval/{k}": v for k, v in result.items()} | {"charts/normalized_score": result["normalized_score"]},
            global_step,
        )
        if cfg.capture_video:
            member.logger.log_video(
                "eval/episode", record_episode(nets[0], member.cfg, seed=member.cfg.seed + global_step), global_step
            )
        # Keep the policy with the best exact score (a later one that ties replaces it): what a
        # user gets even when training drifts off a solution afterwards.
        if result["normalized_score"] >= member.best["score"]:
            member.best.update(score=result["normalized_score"], step=global_step)
            checkpoint(member, BEST, nets)
        return result

    restore_signals = interrupt.install()
    stats = EpisodeStats(len(members))
    progress = Progress(cfg.total_timesteps, start=global_step, enabled=cfg.progress)
    exit_code = 0
    try:
        # --- the loop: one window of B x T env steps per member per update
        obs, _ = env.reset()
        update_size = cfg.num_envs * cfg.horizon
        next_eval = next_eval_step(global_step, cfg.eval_every, update_size)
        next_save = (global_step // cfg.save_every + 1) * cfg.save_every if cfg.save_every else None
        start_time, start_step = time.time(), global_step
        saved_at = start_time
        last_eval_step = results = None
        try:
            while global_step < cfg.total_timesteps:
                tau = schedule(global_step)
                learner.set_learning_rates(global_step)
                obs, metrics = learner.update(env, obs, tau, stats)  # a stop request abandons it midway
                global_step += cfg.num_envs * cfg.horizon
                sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
                for member in members:  # a metric of every member is a list, one value each (per_member)
                    own = {k: v[member.index] if isinstance(v, list) else v for k, v in metrics.items()}
                    own |= stats.pop(member.index) | {"charts/SPS": sps, "charts/tau": tau}
                    member.logger.log(own, global_step)
                    if member.index == 0:
                        progress.update(global_step, own)
                if next_eval is not None and global_step >= next_eval:
                    results = [run_eval(member) for member in members]
                    last_eval_step = global_step
                    progress.note(global_step, results[0])
                    next_eval = next_eval_step(global_step, cfg.eval_every, update_size)
                    if cfg.stop_at_success is not None and all(
                        r["exact_success_rate"] >= cfg.stop_at_success for r in results
                    ):
                        break
                if (next_save is not None and global_step >= next_save) or (
                    cfg.save_every_s and time.time() - saved_at >= cfg.save_every_s
                ):
                    checkpoint_all()
                    saved_at = time.time()
                    while next_save is not None and next_save <= global_step:
                        next_save += cfg.save_every
                interrupt.check()
        except interrupt.Interrupted:
            pass
        progress.close()
        checkpoint_all()  # saved before anything is printed: a closed pipe can't cost it
        if interrupt.requested() is not None:
            exit_code = 128 + interrupt.requested()
            say(f"\ninterrupted at step {global_step}: {saved_where(run_dir, grouped)}", sys.stderr)
            return {"interrupted": True, "global_step": global_step, "exit_code": exit_code}
        wall_clock = time.time() - start_time
        lasts = [run_eval(member) for member in members] if last_eval_step != global_step else results
        finals = []
        for member, last in zip(members, lasts, strict=True):
            final = report_kept_policy(member.cfg, device, member.run_dir, env, member.best) | {
                "global_step": global_step,
                "wall_clock_s": wall_clock,
                "final_policy": {k: last[k] for k in ("normalized_score", "exact_success_rate", "success_rate")},
            }
            (member.run_dir / FINAL_FILE).write_text(json.dumps(final, indent=2))
            finals.append(final)
            say(
                f"done: {global_step} steps; kept the policy of step {final['kept_step']}: greedy success "
                f"{final['exact_success_rate']:.1%}, normalised score {final['normalized_score']:.3f}; "
                f"run saved in {member.run_dir}",
                sys.stdout,
            )
        return finals[0] if not grouped else {"members": finals, "global_step": global_step, "wall_clock_s": wall_clock}
    except KeyboardInterrupt:  # a second signal: the state is what the last step left
        exit_code = 130
        checkpoint_all()
        say(f"\nstopped at step {global_step}: {saved_where(run_dir, grouped)}", sys.stderr)
        return {"interrupted": True, "global_step": global_step, "exit_code": exit_code}
    except BaseException:
        exit_code = 1
        raise
    finally:
        restore_signals()
        for member in started:
            member.logger.finish(exit_code)


def saved_where(run_dir: Path, grouped: bool) -> str:
    """Where an interrupted run's checkpoints are, and how to continue it."""
    if grouped:
        return (
            f"each seed's checkpoint saved in {run_dir}/seed-K; continue a seed with: "
            f"python train.py --resume {run_dir}/seed-K"
        )
    return f"checkpoint saved to {run_dir / LATEST}; continue with: python train.py --resume {run_dir}"


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
        refuse_renamed_flags(argv)
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
    sys.exit(main())
