"""One training run: `train(cfg)` plans it, then a `Trainer` sets it up, loops and finishes.

The run reads top to bottom: plan (the resolved config and its world, checked whole before
anything is written); lock the run directory; `Trainer.setup` (directories, seed, env, networks,
learner, loggers); `Trainer.loop` (collect-and-update until the step budget is spent, evaluating,
keeping the best policy and checkpointing on the way); `Trainer.finish` (the kept policy's
report). Ctrl-C (SIGINT) or SIGTERM stops within about a second and saves a checkpoint; a second
one stops at once. `--resume RUN_DIR` continues. The world is built once, in `plan`, and passed down.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agent.learning.rollout import EpisodeStats
from agent.learning.temperature import TauSchedule
from agent.run import interrupt
from agent.run.checkpoint import BEST, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from agent.run.cli import say
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_eval_env, build_learner, build_networks, check_memory, resolve_device
from agent.run.logger import RunLogger, WandbError, has_wandb_credentials
from agent.run.progress import Progress
from agent.run.resolve import FIXED_ON_RESUME, flag, is_black_box, member_configs, resolve, run_record
from agent.run.rundir import CONFIG_FILE, FINAL_FILE, RunLock, holds_a_run, prepare_new, run_path, truncate_metrics
from agent.run.scoring import evaluate, kept_score, record_episode, reference_returns, success_of
from envs.blackbox import EnvFailure, mission_note


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


@dataclass(frozen=True)
class Plan:
    """What `plan` decided: the resolved config, its world, the checkpoint resumed from (None for
    a new run), the run directory and the device."""

    cfg: TrainConfig
    world: Any
    resumed: dict | None
    run_dir: Path
    device: torch.device


def plan(cli: TrainConfig, given: set[str]) -> Plan:
    """The command line (or, with --resume, the stored config with the flags given on top) -> the
    run's `Plan`. Everything that can be refused is refused here, before anything is written."""
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
    return Plan(cfg, world, resumed, run_dir, device)


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
    p = plan(cli, given)
    existed = p.run_dir.exists()
    lock = RunLock(p.run_dir).acquire()  # one process writes a run at a time
    try:
        # Notes come after the run's own refusals, which are one line each.
        if is_black_box(p.world) and (note := mission_note(p.world)):
            say(note, sys.stderr)
        B, T, budget = p.cfg.num_envs, p.cfg.horizon, p.cfg.total_timesteps
        takes = -(-budget // (B * T)) * B * T  # the loop takes whole updates
        if takes - budget > budget / 100:  # more than asked, by more than 1%: say so rather than run it unannounced
            say(
                f"note: --total-timesteps {budget} is not a whole number of updates of {B * T} env steps "
                f"(--num-envs {B} x --horizon {T}); the run takes {takes}",
                sys.stderr,
            )
        return Trainer(p).run()
    except (WandbError, KeyboardInterrupt):  # wandb refused, or Ctrl-C while starting (the loop handles its own)
        if p.resumed is None:  # a new run that never started leaves nothing behind
            prepare_new(p.run_dir, overwrite=True)
            if not existed:
                shutil.rmtree(p.run_dir, ignore_errors=True)
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


class Trainer:
    """A planned run: `setup` builds it (in the constructor), `run` loops and finishes it."""

    def __init__(self, p: Plan) -> None:
        self.cfg, self.world, self.resumed, self.run_dir, self.device = p.cfg, p.world, p.resumed, p.run_dir, p.device
        self.grouped = self.cfg.num_seeds > 1
        self.global_step = 0  # env steps of each member
        self.update_size = self.cfg.num_envs * self.cfg.horizon
        self.members: list[Member] = []
        self.started: list[Member] = []  # members whose logger started (and must be finished)
        self.setup()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Directories and config.json files, seed, env, members, networks, learner; then the
        loggers (wandb starts in the background while the rest trains, see RunLogger)."""
        cfg, resumed, device = self.cfg, self.resumed, self.device
        # A new run starts clean; a resume drops what came after its checkpoint.
        configs = member_configs(cfg, self.run_dir) if self.grouped else [cfg]
        dirs = [run_path(self.run_dir, m.run_name) for m in configs] if self.grouped else [self.run_dir]
        if resumed is None:
            for d in [self.run_dir, *dirs] if self.grouped else [self.run_dir]:
                prepare_new(d, cfg.overwrite)
        else:
            truncate_metrics(self.run_dir, int(resumed["global_step"]))
        (self.run_dir / CONFIG_FILE).write_text(json.dumps(run_record(cfg), indent=2))
        for m, d in zip(configs, dirs, strict=True):
            d.mkdir(parents=True, exist_ok=True)
            (d / CONFIG_FILE).write_text(json.dumps(run_record(m), indent=2))

        torch.manual_seed(cfg.seed)  # network initialisation; all other noise uses `generator`
        torch.set_flush_denormal(True)  # saturating softmaxes make denormals, which are ~10x slower on CPU
        # B envs per member
        self.env = build_env(cfg, device, world=self.world, maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
        wandb_id = resumed.get("wandb_id") if resumed else None
        resume_step = int(resumed["global_step"]) if resumed else None
        self.members = [
            Member(
                k,
                m,
                d,
                RunLogger(m, d, wandb_id=wandb_id, resume_step=resume_step),
                build_eval_env(m, device, "validation", world=self.world),
            )
            for k, (m, d) in enumerate(zip(configs, dirs, strict=True))
        ]
        # The normalised score's ends, computed once (a black-box env has no tables to compute them from).
        self.black_box = is_black_box(self.world)
        self.reference = None if self.black_box else reference_returns(self.members[0].eval_env, cfg.gamma)
        self.policy, self.critic = build_networks(cfg, self.env.observation_shape, self.env.A, device)
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.learner = build_learner(cfg, self.env, self.policy, self.critic, self.generator)
        linear = cfg.tau_schedule == "linear"
        self.schedule = TauSchedule(
            cfg.tau_schedule, cfg.tau, cfg.tau_min, cfg.tau_anneal_rate, cfg.total_timesteps if linear else None
        )
        if resumed is not None:
            self.policy.load_state_dict(resumed["policy"])
            self.critic.load_state_dict(resumed["critic"])
            self.learner.load_state_dict(resumed["learner"])
            if "stopped" in resumed:
                self.learner.load_stop_state(resumed["stopped"])
            state = resumed["generator"]
            self.generator.set_state(state.cpu() if device.type == "cpu" else state)
            self.global_step = int(resumed["global_step"])
            self.members[0].best = resumed.get("best", self.members[0].best)
        try:  # wandb keeps starting in the background, unless online was asked for explicitly
            for member in self.members:
                member.logger.start(wait_for_wandb=cfg.wandb_mode == "online")
                self.started.append(member)
        except BaseException:
            for member in self.members:
                member.logger.finish(1)
            raise

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        """Loop, then finish; a stop request saves a checkpoint and says where it stopped."""
        restore_signals = interrupt.install()
        self.stats = EpisodeStats(len(self.members))
        self.progress = Progress(self.cfg.total_timesteps, start=self.global_step, enabled=self.cfg.progress)
        exit_code = 0
        try:
            self.last_eval_step = self.results = None
            try:
                self.loop()
            except interrupt.Interrupted:
                pass
            self.progress.close()
            stopped = interrupt.requested() is not None
            self.checkpoint_all(stopping=stopped)  # saved before anything is printed: a closed pipe can't cost it
            if stopped:
                exit_code = 128 + interrupt.requested()
                say(f"\ninterrupted at step {self.global_step}: {saved_where(self.run_dir, self.grouped)}", sys.stderr)
                return {"interrupted": True, "global_step": self.global_step, "exit_code": exit_code}
            return self.finish()
        except KeyboardInterrupt:  # a second signal: the state is what the last step left
            exit_code = 130
            self.checkpoint_all(stopping=True)
            say(f"\nstopped at step {self.global_step}: {saved_where(self.run_dir, self.grouped)}", sys.stderr)
            return {"interrupted": True, "global_step": self.global_step, "exit_code": exit_code}
        except EnvFailure as e:  # raised while stepping, before the update it was collecting for
            exit_code = 1
            self.progress.close()
            self.checkpoint_all(stopping=True)
            say(f"\nerror at step {self.global_step}: {e}; {saved_where(self.run_dir, self.grouped)}", sys.stderr)
            return {"failed": True, "global_step": self.global_step, "exit_code": exit_code}
        except BaseException:
            exit_code = 1
            raise
        finally:
            restore_signals()
            for member in self.started:
                member.logger.finish(exit_code)

    def loop(self) -> None:
        """Collect-and-update, one window of B x T env steps per member per update, until the
        budget is spent (or every member reaches --stop-at-success)."""
        cfg = self.cfg
        obs, _ = self.env.reset()
        self.next_eval = next_eval_step(self.global_step, cfg.eval_every, self.update_size)
        self.next_save = (self.global_step // cfg.save_every + 1) * cfg.save_every if cfg.save_every else None
        self.start_time, self.start_step = time.time(), self.global_step
        self.saved_at = self.start_time
        while self.global_step < cfg.total_timesteps:
            tau = self.schedule(self.global_step)
            self.learner.set_learning_rates(self.global_step)
            obs, metrics = self.learner.update(self.env, obs, tau, self.stats)  # a stop request abandons it midway
            self.global_step += self.update_size
            self.log_update(metrics, tau)
            if self.next_eval is not None and self.global_step >= self.next_eval and self.evaluate_all():
                break  # every member reached --stop-at-success
            if self.save_due():
                self.checkpoint_all()
                self.saved_at = time.time()
            interrupt.check()

    def log_update(self, metrics: dict, tau: float) -> None:
        """Each member's share of an update's metrics (a list holds one value per member)."""
        sps = (self.global_step - self.start_step) / max(time.time() - self.start_time, 1e-9)
        for member in self.members:
            own = {k: v[member.index] if isinstance(v, list) else v for k, v in metrics.items()}
            own |= self.stats.pop(member.index) | {"charts/SPS": sps, "charts/tau": tau}
            member.logger.log(own, self.global_step)
            if member.index == 0:
                self.progress.update(self.global_step, own)

    def save_due(self) -> bool:
        """Whether --save-every (env steps) or --save-every-s (seconds) calls for a checkpoint now."""
        cfg, due = self.cfg, False
        if self.next_save is not None and self.global_step >= self.next_save:
            due = True
            while self.next_save <= self.global_step:
                self.next_save += cfg.save_every
        return due or bool(cfg.save_every_s and time.time() - self.saved_at >= cfg.save_every_s)

    # ------------------------------------------------------------------ evaluation and checkpoints
    def evaluate_all(self) -> bool:
        """Evaluate every member now; True when each reached --stop-at-success."""
        self.results = [self.evaluate(member) for member in self.members]
        self.last_eval_step = self.global_step
        self.progress.note(self.global_step, self.results[0])
        self.next_eval = next_eval_step(self.global_step, self.cfg.eval_every, self.update_size)
        target = self.cfg.stop_at_success
        return target is not None and all(success_of(r) >= target for r in self.results)

    def evaluate(self, member: Member) -> dict:
        """The member's greedy policy, scored (exactly on a gridworld); logged, and kept when it is
        the best so far."""
        nets = self.networks(member)
        start = time.time()
        result = evaluate(nets[0], member.eval_env, gamma=self.cfg.gamma, reference=self.reference)
        # What the evaluation cost, apart from the learning (benchmarks.minigrid reports both).
        charts = {"charts/eval_seconds": time.time() - start}
        if not self.black_box:
            charts["charts/normalized_score"] = result["normalized_score"]
        member.logger.log({f"eval/{k}": v for k, v in result.items()} | charts, self.global_step)
        if self.cfg.capture_video:
            frames = record_episode(nets[0], member.cfg, seed=member.cfg.seed + self.global_step, world=self.world)
            member.logger.log_video("eval/episode", frames, self.global_step)
        # Keep the policy with the best score (a later one that ties replaces it): what a user gets
        # even when training drifts off a solution afterwards.
        if kept_score(result) >= member.best["score"]:
            member.best.update(score=kept_score(result), step=self.global_step)
            self.checkpoint(member, BEST, nets)
        return result

    def networks(self, member: Member) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The member's own policy and critic (for --num-seeds, copies out of the ensemble)."""
        if self.grouped:
            return self.policy.member(member.index), self.critic.member(member.index)
        return self.policy, self.critic

    def checkpoint(self, member: Member, name: str = LATEST, nets: tuple | None = None, stopping: bool = False) -> Path:
        """Save the member's state as `name`; a run `stopping` early also keeps the learner's
        `stop_state` (its replay), which --resume restores."""
        member_policy, member_critic = nets or self.networks(member)
        state = {
            "policy": member_policy.state_dict(),
            "critic": member_critic.state_dict(),
            "learner": self.learner.member_state_dict(member.index),
            "generator": self.generator.get_state(),
            "global_step": self.global_step,
            "config": member.cfg.to_dict(),
            "obs_shape": list(self.env.observation_shape),
            "num_actions": self.env.A,
            "wandb_id": member.logger.wandb_id,
            "best": member.best,
        }
        if stopping and not self.grouped and (extra := self.learner.stop_state()):
            state["stopped"] = extra
        return save_checkpoint(member.run_dir / name, state)

    def checkpoint_all(self, name: str = LATEST, stopping: bool = False) -> list[Path]:
        return [self.checkpoint(member, name, stopping=stopping) for member in self.members]

    # ------------------------------------------------------------------ finish
    def finish(self) -> dict:
        """The last policy's evaluation (if the last update had none) and the kept policy's report,
        written to each member's final.json."""
        wall_clock = time.time() - self.start_time
        lasts = self.results
        if self.last_eval_step != self.global_step:
            lasts = [self.evaluate(member) for member in self.members]
        finals = []
        for member, last in zip(self.members, lasts, strict=True):
            final = self.report_kept_policy(member) | {
                "global_step": self.global_step,
                "wall_clock_s": wall_clock,
                "final_policy": {k: last[k] for k in FINAL_KEYS if k in last},
            }
            (member.run_dir / FINAL_FILE).write_text(json.dumps(final, indent=2))
            finals.append(final)
            say(
                f"done: {self.global_step} steps; kept the policy of step {final['kept_step']}: "
                f"{describe(final)}; run saved in {member.run_dir}",
                sys.stdout,
            )
        if not self.grouped:
            return finals[0]
        return {"members": finals, "global_step": self.global_step, "wall_clock_s": wall_clock}

    def report_kept_policy(self, member: Member) -> dict:
        """Evaluate the kept (best) policy on the test split: the same world for a single map, mazes
        no evaluation has seen for a family of mazes."""
        state = load_checkpoint(member.run_dir / BEST, device=self.device)
        policy, _ = build_networks(member.cfg, self.env.observation_shape, self.env.A, self.device)
        policy.load_state_dict(state["policy"])
        test_env = build_eval_env(member.cfg, self.device, "test", world=self.world)
        # A single map's test env has the validation env's tables: its reference returns are the same.
        reference = None if self.black_box or self.world.layouts_vary else self.reference
        result = evaluate(policy, test_env, gamma=member.cfg.gamma, reference=reference)
        return result | {"kept": BEST, "kept_step": member.best["step"], "validation_score": member.best["score"]}


# What final.json keeps of the last policy's evaluation (those the env has).
FINAL_KEYS = ("normalized_score", "exact_success_rate", "success_rate", "mean_return")


def describe(result: dict) -> str:
    """An evaluation in a few words: exact on a gridworld, sampled with 95% intervals on a black box."""
    if "normalized_score" in result:
        return f"greedy success {result['exact_success_rate']:.1%}, normalised score {result['normalized_score']:.3f}"
    words = f"greedy mean return {result['mean_return']:.3f} [{result['return_ci95_low']:.3f}, "
    words += f"{result['return_ci95_high']:.3f}] over {result['episodes']} episodes"
    if "success_rate" in result:  # an env that defines success (Minigrid)
        words += f", success {result['success_rate']:.1%} [{result['success_ci95_low']:.1%}, "
        words += f"{result['success_ci95_high']:.1%}]"
    return words


def saved_where(run_dir: Path, grouped: bool) -> str:
    """Where an interrupted run's checkpoints are, and how to continue it."""
    if grouped:
        return (
            f"each seed's checkpoint saved in {run_dir}/seed-K; continue a seed with: "
            f"python train.py --resume {run_dir}/seed-K"
        )
    return f"checkpoint saved to {run_dir / LATEST}; continue with: python train.py --resume {run_dir}"
