"""The training configuration: typed sections (the world, the budget, the run, logging) and one
config per learner, a docstring per field (`--help` shows them); `TrainConfig` is all of them
flat, the one record a run resolves, stores and reads."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Literal


@dataclass
class WorldConfig:
    """The world and how the policy sees it."""

    env: str = "four_rooms"
    """World: a built-in map (empty, four_rooms, maze, lava_gap, cliff, lake8x8), a map file,
    `maze:HxW` (a new procedural maze per episode), a gymnasium toy-text id (FrozenLake-v1), or
    any gymnasium id with Discrete actions (MiniGrid-Empty-5x5-v0, CartPole-v1; ppo and reinforce)."""
    env_kwargs: tuple[str, ...] = ()
    """Keyword arguments for a gymnasium id, rl-zoo style: `map_name:8x8 is_slippery:False`."""
    slip: float = 0.0
    """Slip probability for our own maps and mazes (each perpendicular move gets slip/2)."""
    step_reward: float = 0.0
    """Reward per move on our own maps and mazes (gymnasium ids keep their own rewards)."""
    hazard_reward: float = 0.0
    """Reward for entering lava on our own maps (the episode ends there)."""
    maze_pool: int = 1024
    """Procedural mazes only: how many training mazes episodes are drawn from."""
    obs: Literal["auto", "onehot", "image", "flat"] = "auto"
    """Observation the policy sees; auto = image for mazes (to generalise), flat (the env's own, as
    floats) for gymnasium envs without a table, onehot otherwise."""


@dataclass
class BudgetConfig:
    """How much experience, in how many copies."""

    num_envs: int | None = None
    """Number of parallel environments B (default: 64 for pathwise, 256 for ppo and reinforce)."""
    horizon: int = 16
    """Env steps T that each of the B envs takes per update (an update trains on B x T steps, and
    the critic's TD(lambda) targets span the T steps)."""
    total_timesteps: int = 2_000_000
    """Env steps to train for (summed over the B envs)."""
    seed: int = 0
    """Seed for the env, the noise and the network initialisation."""


@dataclass
class RunConfig:
    """Where the run goes, when it evaluates and saves, and on what."""

    device: str = "auto"
    """cpu, cuda, cuda:1, ... ; auto = cuda when available."""
    threads: int = 1
    """torch CPU threads (torch.set_num_threads)."""
    run_name: str | None = None
    """Run directory name under runs/; default {env}__{algo}__{seed}__{unix_time}."""
    runs_dir: str = "runs"
    """Where run directories are created."""
    eval_every: int = 200_000
    """Evaluate the greedy policy every this many env steps (0 = only at the end), and before the
    first of these after 1, 2, 4, 8, ... updates."""
    eval_episodes: int = 256
    """Episodes per evaluation."""
    save_every: int = 500_000
    """Write a checkpoint every this many env steps (one is always written at the end)."""
    save_every_s: float = 60.0
    """Also write one when this many seconds have passed since the last (0: off), so a killed
    run loses at most about this much work."""
    stop_at_success: float | None = None
    """Stop early once greedy evaluation reaches this success rate (e.g. 1.0)."""
    resume: str | None = None
    """Continue the run in this run directory (step count, optimiser and logging). Flags given
    with it override the stored config, except those that would make it another run (see
    FIXED_ON_RESUME); the rest is as the run was started."""
    overwrite: bool = False
    """Start a new run in a --run-name directory that already holds one, deleting that run."""


@dataclass
class LoggingConfig:
    """What the run reports, and where."""

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
    """At each evaluation, a GIF of one episode: runs/NAME/videos/, TensorBoard and wandb (needs
    imageio: pip install '.[plots]')."""
    progress: bool = True
    """Show a live progress line on the terminal."""


@dataclass
class LearnerConfig:
    """What every learner takes: the optimisers, the critic, exploration and the entropy bonus."""

    default_num_envs: ClassVar[int] = 256
    """--num-envs when it is not given."""
    defaults: ClassVar[dict[str, float]] = {
        "learning_rate": 3e-3,
        "critic_learning_rate": 3e-3,
        "entropy_coef": 0.01,
        "gamma": 0.99,
    }
    """The values of the fields below that are None when not given."""

    learning_rate: float | None = None
    """Adam learning rate of the policy (default 3e-3; the model learner 3e-4)."""
    anneal_lr: bool = True
    """Let the policy's learning rate fall linearly to 0 over --total-timesteps (--no-anneal-lr:
    constant); the critic's stays constant."""
    actor_warmup: int = 0
    """Env steps over which the policy's learning rate rises linearly from 0 to --learning-rate
    (0 = none)."""
    critic_learning_rate: float | None = None
    """Adam learning rate of the value network (default 3e-3; the model learner 1e-3)."""
    gamma: float | None = None
    """Discount factor (default 0.99; the model learner 0.95)."""
    entropy_coef: float | None = None
    """Weight of the policy-entropy bonus (the model learner: of --actor-regulariser), in units of
    the return scale (default 0.01)."""
    max_grad_norm: float = 1.0
    """Clip the policy gradient to this global norm (0 disables clipping)."""
    hidden: int = 128
    """Width of the hidden layers."""
    value_map: bool = True
    """Image observations: the critic is a value map of the world's static planes, read at the
    agent's cell (--no-value-map: one CNN value of the whole image)."""
    explore_starts: float | None = None
    """Probability that a training episode starts in a cell drawn uniformly from those an episode
    can reach (exploring starts; never in evaluation). Default 0.5; 0 on gymnasium envs without a
    table, which start only where their reset puts them."""
    explore_bonus: float = 0.0
    """beta of the count-based exploration bonus beta / sqrt(1 + visits(cell)) added to the
    training reward (never to logged returns); on a black box, visits of the observation (hashed).
    0 disables it."""
    update_epochs: int = 4
    """Optimisation epochs per rollout for ppo and for the critic."""
    num_minibatches: int = 4
    """Minibatches per epoch for ppo and for the critic."""


@dataclass
class PathwiseConfig(LearnerConfig):
    """The pathwise learner: the return back-propagated through straight-through Gumbel actions
    and the differentiable env."""

    # 4x the updates per env step: why 64 and not 256 is in docs/guide.md
    default_num_envs: ClassVar[int] = 64

    estimator: str = "st"
    """pathwise: gradient estimator through the sampled one-hot action (st, exact, st-gs,
    gumbel-rao, reinmax, zgr, gs). st at tau 1 is the exact gradient at --lookahead 1."""
    tau: float = 1.0
    """Gumbel-Softmax temperature (initial value when annealed)."""
    tau_schedule: Literal["constant", "exponential", "linear"] = "constant"
    """Temperature schedule over env steps."""
    tau_min: float = 0.5
    """Lowest temperature reached by an annealing schedule."""
    tau_anneal_rate: float = 1e-6
    """Rate r of the exponential schedule max(tau_min, tau0 * exp(-r * step))."""
    critic: Literal["visited", "oracle", "none"] = "visited"
    """What closes each look-ahead: visited (learnt at the cells the rollouts were in; simulator
    class), oracle (value iteration over the whole tables; model class, a ceiling), or none."""
    lookahead: int = 1
    """Env steps each action's gradient looks ahead through the differentiable env before the
    critic closes it (1: r + gamma V(next)); above 1 the learner is of the model class."""
    actor_steps: int = 0
    """pathwise: the policy's optimiser steps per update, spread evenly over its T env steps (at
    most T / --lookahead). 0: one after every look-ahead (1 where --lookahead does not divide T)."""
    state_norm: bool = True
    """pathwise: centre the gradient that reaches each step's action over the actions and divide it
    by its root mean square (a spread below 1e-3 of the return scale is not enlarged).
    --no-state-norm: the raw gradient."""
    slip_gradient: Literal["sampled", "expected"] = "expected"
    """pathwise on slippery worlds: differentiate each step at the slip outcome drawn ("sampled"),
    or average its derivative over the outcomes by their probabilities ("expected")."""
    logit_penalty: float = 0.01
    """pathwise: weight of a penalty on the squared logits (centred per state)."""
    entropy_over: Literal["actions", "cells"] = "actions"
    """pathwise: what the entropy bonus spreads: the action distribution, or the cell the action
    leads to (moves into a wall count as one; worlds with slip always use actions)."""
    backup_steps: int = 16
    """pathwise: greedy backups V <- max_a E[r + gamma V(s')] behind each critic target. visited
    critic: at the cells the update's rollout was in; oracle critic: at every reachable cell."""
    actor_backups: int | None = None
    """pathwise with --critic oracle: the actor's look-aheads close with the critic after this many
    greedy backups over the env's whole tables (default 32). The visited critic's actor reads the
    last update's backed-up targets instead."""
    num_seeds: int = 1
    """pathwise on one-hot observations: train this many independent agents in one process, seeds
    --seed, --seed + 1, ..., each with a run directory of its own (RUN/seed-K)."""


@dataclass
class ModelConfig(LearnerConfig):
    """The model-based learner: a model of the env learnt from experience, and a policy trained by
    back-propagating imagined returns through the model and its straight-through Gumbel actions."""

    default_num_envs: ClassVar[int] = 16
    defaults: ClassVar[dict[str, float]] = {
        "learning_rate": 3e-4,
        "critic_learning_rate": 1e-3,
        "entropy_coef": 0.01,
        "gamma": 0.95,
    }

    estimator: str = "st"
    """Gradient estimator through each imagined one-hot action (st, st-gs, gumbel-rao, reinmax,
    zgr, gs)."""
    tau: float = 1.0
    """Gumbel-Softmax temperature."""
    actor_grad: Literal["pathwise", "reinforce", "natural"] = "pathwise"
    """The actor's gradient through the imagined steps: pathwise (through the actions and the
    model), reinforce (score function, DreamerV2/V3's choice for discrete actions), or natural
    (--imagine-horizon 1: the exact one-step gradient with each action's part divided by its
    probability, q_a - E_pi q in logit a, the natural gradient of a softmax policy)."""
    actor_regulariser: Literal["log-barrier", "entropy"] = "log-barrier"
    """What --entropy-coef weighs in the actor's loss: log-barrier, the mean over the actions of
    log pi(a), whose pull on an unlikely action's logit stays near coef / A (Agarwal et al. 2021's
    log barrier), or entropy, whose pull vanishes as pi(a) -> 0."""
    imagine_horizon: int = 1
    """Steps H the actor imagines through the model from each replayed observation (1: the exact
    gradient of the one-step return, summed over the actions)."""
    gae_lambda: float = 0.95
    """lambda of the imagined TD(lambda) returns and of the critic's real ones."""
    model_hidden: int = 256
    """Width of the model's hidden layers."""
    model_learning_rate: float = 1e-3
    """Adam learning rate of the model."""
    train_steps: int = 64
    """Gradient steps of the model, the actor and the critic per update, each on a minibatch of
    --model-batch replayed transitions (the actor and critic on H steps imagined from them)."""
    model_batch: int = 64
    """Transitions per minibatch."""
    critic_batch: int = 0
    """Of the last window's steps, how many the critic regresses on at each train step, drawn
    afresh each time (0: all of them)."""
    replay_size: int = 100_000
    """Real transitions the model is trained on: the most recent ones."""
    real_actor_coef: float = 0.0
    """Weight of a score-function term on the last window's real steps in the actor's loss: log pi
    of each action taken, times its real TD(lambda) return less V (0: the imagined returns only)."""


@dataclass
class PPOConfig(LearnerConfig):
    """PPO (clipped surrogate, GAE): the score-function baseline of the samples class."""

    gae_lambda: float = 0.95
    """lambda of ppo's GAE targets (reinforce's returns are Monte-Carlo within the window, lambda 1;
    pathwise: --backup-steps)."""
    clip_coef: float = 0.2
    """PPO clipping coefficient."""


@dataclass
class ReinforceConfig(LearnerConfig):
    """REINFORCE with a learned baseline: Monte-Carlo returns within the window."""


# The learners by name: (their config, their class, imported when a run needs it). A new learner
# is a line here, its config among TrainConfig's bases, and its name in TrainConfig.algo.
LEARNERS: dict[str, tuple[type, str]] = {
    "pathwise": (PathwiseConfig, "agent.learning.pathwise.PathwiseLearner"),
    "ppo": (PPOConfig, "agent.learning.ppo.PPOLearner"),
    "reinforce": (ReinforceConfig, "agent.learning.reinforce.ReinforceLearner"),
    "model": (ModelConfig, "agent.learning.model_based.ModelBasedLearner"),
}


@dataclass
class TrainConfig(
    PathwiseConfig, ModelConfig, PPOConfig, ReinforceConfig, LoggingConfig, RunConfig, BudgetConfig, WorldConfig
):
    """A run's whole configuration: every section and every learner's fields, flat, with the
    learner named by `algo`. What config.json stores and every module reads; the command line
    fills it from one learner's sections (`agent.run.commands`)."""

    algo: Literal["pathwise", "reinforce", "ppo", "model"] = "pathwise"
    """pathwise: back-propagate the return through Gumbel straight-through actions and the
    differentiable env. model: through a model of the env learnt from experience. reinforce /
    ppo: score-function baselines on the same batched env."""

    def default_run_name(self) -> str:
        env = self.env.replace("/", "-").replace(":", "").replace("\n", "")[:40]
        return f"{env}__{self.algo}__{self.seed}__{int(time.time())}"

    def with_learner_defaults(self) -> TrainConfig:
        """This config with its learner's `defaults` in the fields left unset (None)."""
        unset = {k: v for k, v in LEARNERS[self.algo][0].defaults.items() if getattr(self, k) is None}
        return replace(self, **unset) if unset else self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        # A config written before `value_map` existed was trained with the whole-image critic.
        kw.setdefault("value_map", False)
        # ... and one written before `actor_warmup` existed, with none; before `lookahead`, through
        # the whole window; before `explore_starts`, from the world's start only.
        kw.setdefault("actor_warmup", 0)
        kw.setdefault("lookahead", kw.get("horizon") or 16)
        kw.setdefault("explore_starts", 0.0)
        kw.setdefault("logit_penalty", 0.0)
        kw.setdefault("actor_steps", 1)
        kw.setdefault("state_norm", False)
        kw.setdefault("anneal_lr", False)
        kw.setdefault("save_every_s", 60.0)
        kw.setdefault("actor_backups", 0)  # before it existed the actor read the critic itself
        # Before the information classes, the critic was on or off, and on meant value iteration
        # over the env's tables; the default estimator was reinmax.
        if isinstance(kw.get("critic", True), bool):
            kw["critic"] = "oracle" if kw.get("critic", True) else "none"
        kw.setdefault("estimator", "reinmax")
        kw.pop("overwrite", None)  # a stored run never asks to overwrite itself
        return cls(**kw)
