"""The training configuration: one typed dataclass, a docstring per field (`--help` shows them)."""

from __future__ import annotations

import ast
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

ALGOS = ("pathwise", "reinforce", "ppo")


@dataclass
class TrainConfig:
    """Train a gridworld agent whose gradients flow through its sampled (Gumbel) actions."""

    # --- world
    env: str = "four_rooms"
    """World: a built-in map (empty, four_rooms, maze, lava_gap, cliff, lake8x8), a map file,
    `maze:HxW` (a new procedural maze per episode), or a gymnasium toy-text id (FrozenLake-v1)."""
    env_kwargs: tuple[str, ...] = ()
    """Keyword arguments for a gymnasium id, rl-zoo style: `map_name:8x8 is_slippery:False`."""
    slip: float = 0.0
    """Slip probability for our own maps and mazes (each perpendicular move gets slip/2)."""
    step_reward: float = 0.0
    """Reward per move on our own maps and mazes (gymnasium ids keep their own rewards)."""
    hazard_reward: float = 0.0
    """Reward for entering lava on our own maps (the episode ends there)."""
    maze_pool: int = 0
    """Procedural mazes only: how many training mazes to draw episodes from (0 = min(num_envs, 1024))."""
    obs: Literal["auto", "onehot", "image"] = "auto"
    """Observation the policy sees; auto = image for mazes (to generalise), onehot otherwise."""

    # --- algorithm
    algo: Literal["pathwise", "reinforce", "ppo"] = "pathwise"
    """pathwise: back-propagate the return through Gumbel straight-through actions and the
    differentiable env. reinforce / ppo: score-function baselines on the same batched env."""
    estimator: str = "reinmax"
    """Straight-through gradient estimator for pathwise (st, st-gs, gumbel-rao, reinmax, zgr, gs)."""
    tau: float = 1.0
    """Gumbel-Softmax temperature (initial value when annealed)."""
    tau_schedule: Literal["constant", "exponential", "linear"] = "constant"
    """Temperature schedule over env steps."""
    tau_min: float = 0.5
    """Lowest temperature reached by an annealing schedule."""
    tau_anneal_rate: float = 1e-6
    """Rate r of the exponential schedule max(tau_min, tau0 * exp(-r * step))."""
    critic: bool = True
    """Bootstrap each pathwise window with a learned value (short-horizon actor-critic);
    the score-function learners always use one as a baseline."""
    value_map: bool = True
    """Image observations: the critic is a value map of the world's static planes read off the
    agent plane, linear in the agent's position (the pathwise learner needs it on procedural
    mazes; see the README). --no-value-map: one CNN value of the whole image."""
    slip_gradient: Literal["sampled", "expected"] = "expected"
    """Pathwise on slippery worlds: differentiate each step at the slip outcome drawn
    ("sampled"), or average its derivative over the outcomes by their probabilities
    ("expected", Rao-Blackwellised: same forward, lower-variance gradient; measured better
    on slippery FrozenLake 8x8). No effect without slip."""
    explore_bonus: float | None = None
    """beta of the count-based exploration bonus beta / sqrt(1 + visits(cell)) added to the
    training reward (never to logged returns); 0 disables it. Default (None): 0.05, but 0 on
    procedural mazes, where each maze's visit counts can't be seen in the observation, so the
    bonus is noise the critic can't fit (pathwise, seed 0: 59% with it vs 100% unseen-maze
    success; see the README). The run's config.json records the value used."""
    entropy_coef: float = 0.01
    """Weight of the policy-entropy bonus."""
    entropy_over: Literal["actions", "cells"] = "actions"
    """pathwise: what the entropy bonus spreads. actions: the entropy of the action distribution.
    cells: the entropy of the cell the action leads to, so the moves into walls, which all leave
    the agent where it stands, count as one outcome (the action entropy pays a policy to bump
    walls). On procedural mazes cells changed which seed fails, not how many (see the README).
    Worlds with random moves (slip) always use actions; reinforce and ppo always do."""
    max_grad_norm: float = 1.0
    """Clip the policy gradient to this global norm (<= 0 disables clipping)."""

    # --- budget and optimisation
    num_envs: int = 1024
    """Number of parallel environments B."""
    horizon: int = 0
    """Steps per rollout window T (pathwise back-propagates through all T). 0 = automatic: 16,
    but 1 for pathwise on a world with random moves (slip), where through longer windows the
    gradient follows the slips that happened to be drawn (normalised score 0.97 vs 0.65 with
    T = 16 on slippery FrozenLake 8x8), and on procedural mazes, where it would ask what
    replaying the same later moves from a neighbouring cell earns, which walls make meaningless
    (see the README). The run's config.json records the T used."""
    total_timesteps: int = 2_000_000
    """Env steps to train for (summed over the B envs)."""
    learning_rate: float = 3e-3
    """Adam learning rate of the policy."""
    actor_warmup: int | None = None
    """Env steps over which the policy's learning rate rises linearly from 0 to --learning-rate,
    so the policy does not commit to what the critic's first, untrained values say (0 = none).
    Default (None): 300,000 for pathwise on procedural mazes, where without it a run can settle
    on a policy that bumps into walls (see the README), and 0 elsewhere. The run's config.json
    records the value used."""
    critic_learning_rate: float = 3e-3
    """Adam learning rate of the value network."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """lambda of the TD(lambda) / GAE targets."""
    update_epochs: int = 4
    """Optimisation epochs per rollout for ppo and for the critic."""
    num_minibatches: int = 4
    """Minibatches per epoch for ppo and for the critic."""
    clip_coef: float = 0.2
    """PPO clipping coefficient."""
    hidden: int = 128
    """Width of the hidden layers."""

    # --- run
    seed: int = 0
    """Seed for the env, the noise and the network initialisation."""
    device: str = "auto"
    """cpu, cuda, cuda:1, ... ; auto = cuda when available."""
    run_name: str | None = None
    """Run directory name under runs/; default {env}__{algo}__{seed}__{unix_time}."""
    runs_dir: str = "runs"
    """Where run directories are created."""
    eval_every: int = 200_000
    """Evaluate the greedy policy every this many env steps (0 = only at the end)."""
    eval_episodes: int = 256
    """Episodes per evaluation."""
    save_every: int = 500_000
    """Write a checkpoint every this many env steps (one is always written at the end)."""
    stop_at_success: float | None = None
    """Stop early once greedy evaluation reaches this success rate (e.g. 1.0)."""
    resume: str | None = None
    """Continue the run in this run directory (step count, optimiser and logging)."""

    # --- logging
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """auto: online when wandb credentials exist, else offline (sync later with `wandb sync`)."""
    wandb_project: str = "gumbel-gridworld"
    """wandb project."""
    wandb_entity: str | None = None
    """wandb entity (team or user)."""
    wandb_group: str | None = None
    """wandb group (e.g. to average seeds)."""
    tags: tuple[str, ...] = ()
    """wandb tags."""
    capture_video: bool = False
    """Log GIFs of evaluation episodes (needs imageio: pip install '.[plots]')."""
    progress: bool = True
    """Show a live progress line on the terminal."""

    def default_run_name(self) -> str:
        env = self.env.replace("/", "-").replace(":", "").replace("\n", "")[:40]
        return f"{env}__{self.algo}__{self.seed}__{int(time.time())}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        # A config written before `value_map` existed was trained with the whole-image critic.
        kw.setdefault("value_map", False)
        # ... and one written before `actor_warmup` existed, with none.
        kw.setdefault("actor_warmup", 0)
        return cls(**kw)


def parse_env_kwargs(items: tuple[str, ...]) -> dict[str, Any]:
    """`("map_name:8x8", "is_slippery:False")` -> {"map_name": "8x8", "is_slippery": False}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition(":")
        if not sep or not key:
            raise ValueError(f"--env-kwargs item {item!r} must look like key:value, e.g. map_name:8x8")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw  # a bare word such as 8x8 stays a string
    return out


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError naming the bad value and the fix; the CLI prints it as one line."""
    from agent.gumbel import ESTIMATORS

    checks = [
        (cfg.num_envs >= 1, f"--num-envs {cfg.num_envs} must be >= 1"),
        (cfg.maze_pool >= 0, f"--maze-pool {cfg.maze_pool} must be >= 1 (or 0 for the default)"),
        (cfg.horizon >= 0, f"--horizon {cfg.horizon} must be >= 1 (or 0 for the automatic default)"),
        (cfg.total_timesteps >= 1, f"--total-timesteps {cfg.total_timesteps} must be >= 1"),
        (cfg.learning_rate > 0, f"--learning-rate {cfg.learning_rate} must be > 0"),
        (0.0 <= cfg.gamma < 1.0, f"--gamma {cfg.gamma} must be in [0, 1)"),
        (cfg.tau > 0, f"--tau {cfg.tau} must be > 0"),
        (cfg.explore_bonus is None or cfg.explore_bonus >= 0, f"--explore-bonus {cfg.explore_bonus} must be >= 0"),
        (cfg.actor_warmup is None or cfg.actor_warmup >= 0,
         f"--actor-warmup {cfg.actor_warmup} must be >= 0 (0 = no warm-up)"),
        (cfg.entropy_coef >= 0, f"--entropy-coef {cfg.entropy_coef} must be >= 0"),
        (cfg.tau_min > 0, f"--tau-min {cfg.tau_min} must be > 0"),
        (cfg.estimator in ESTIMATORS,
         f"--estimator {cfg.estimator!r} is unknown; choose one of {', '.join(ESTIMATORS)}"),
        (0.0 <= cfg.slip < 1.0, f"--slip {cfg.slip} must be in [0, 1)"),
        (cfg.eval_episodes >= 1, f"--eval-episodes {cfg.eval_episodes} must be >= 1"),
        (cfg.update_epochs >= 1 and cfg.num_minibatches >= 1, "--update-epochs and --num-minibatches must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    parse_env_kwargs(cfg.env_kwargs)


__all__ = ["ALGOS", "TrainConfig", "parse_env_kwargs", "validate", "field"]
