"""Building envs, networks and learners from a `TrainConfig` (train.py and evaluate share it)."""

from __future__ import annotations

from dataclasses import replace

import torch

from agent.config import TrainConfig, parse_env_kwargs
from agent.policy import PolicyNet, ValueNet
from envs import BatchedGridWorld, MapOptions, MazeSpec, make_world


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def build_world(cfg: TrainConfig, env: str | None = None):
    # Only options that differ from the defaults: gymnasium ids take none.
    given = {"slip": cfg.slip, "step_reward": cfg.step_reward, "hazard_reward": cfg.hazard_reward}
    options = {k: v for k, v in given.items() if v != getattr(MapOptions, k)}
    spec = env or cfg.env
    kwargs = parse_env_kwargs(cfg.env_kwargs) if env is None else {}
    return make_world(spec, env_kwargs=kwargs or None, **options)


DEFAULT_HORIZON = 16
DEFAULT_EXPLORE_BONUS = 0.05
DEFAULT_MAZE_ACTOR_WARMUP = 300_000


def resolve_defaults(cfg: TrainConfig, world) -> TrainConfig:
    """`cfg` with the world-dependent defaults filled in (see `TrainConfig.horizon` and
    `.explore_bonus`, `.actor_warmup`); the run's config.json records these values."""
    return replace(cfg, horizon=resolve_horizon(cfg, world), explore_bonus=resolve_explore_bonus(cfg, world),
                   actor_warmup=resolve_actor_warmup(cfg, world))


def resolve_horizon(cfg: TrainConfig, world) -> int:
    """`--horizon`, or (when it is 0) its default for this algo and world."""
    if cfg.horizon:
        return cfg.horizon
    one_step = has_random_moves(world) or isinstance(world, MazeSpec)
    return 1 if cfg.algo == "pathwise" and one_step else DEFAULT_HORIZON


def resolve_explore_bonus(cfg: TrainConfig, world) -> float:
    """`--explore-bonus`, or (when unset) 0 on procedural mazes and 0.05 elsewhere."""
    if cfg.explore_bonus is not None:
        return cfg.explore_bonus
    return 0.0 if isinstance(world, MazeSpec) else DEFAULT_EXPLORE_BONUS


def resolve_actor_warmup(cfg: TrainConfig, world) -> int:
    """`--actor-warmup`, or (when unset) 300k env steps for pathwise on procedural mazes, else 0."""
    if cfg.actor_warmup is not None:
        return cfg.actor_warmup
    return DEFAULT_MAZE_ACTOR_WARMUP if cfg.algo == "pathwise" and isinstance(world, MazeSpec) else 0


def has_random_moves(world) -> bool:
    """Whether some move of the world (a `TabularMDP` or `MazeSpec`) has more than one outcome."""
    if isinstance(world, MazeSpec):
        return world.options.slip > 0
    return bool((world.prob < 1).any())


def obs_mode(cfg: TrainConfig, world) -> str:
    if cfg.obs != "auto":
        return cfg.obs
    return "image" if isinstance(world, MazeSpec) else "onehot"


def build_env(cfg: TrainConfig, device: torch.device, *, world=None, num_envs: int | None = None,
              seed: int | None = None, maze_seed: int | None = None, maze_pool: int = 0) -> BatchedGridWorld:
    """The batched env of a run; `world` overrides the config's (e.g. unseen mazes to evaluate on),
    the observation mode always follows the config, since the policy was built for it."""
    trained_on = build_world(cfg)
    return BatchedGridWorld(
        trained_on if world is None else world, num_envs or cfg.num_envs, obs_mode=obs_mode(cfg, trained_on),
        device=device, seed=cfg.seed if seed is None else seed, maze_seed=maze_seed,
        maze_pool=maze_pool or None,
        slip_gradient=cfg.slip_gradient,
    )


def build_networks(cfg: TrainConfig, obs_shape: tuple[int, ...], num_actions: int,
                   device: torch.device) -> tuple[PolicyNet, ValueNet]:
    return (PolicyNet(obs_shape, num_actions, cfg.hidden).to(device),
            ValueNet(obs_shape, cfg.hidden, cfg.value_map).to(device))


def build_learner(cfg: TrainConfig, env: BatchedGridWorld, policy: PolicyNet, critic: ValueNet,
                  generator: torch.Generator):
    from agent.pathwise import PathwiseLearner
    from agent.ppo import PPOLearner
    from agent.reinforce import ReinforceLearner
    from agent.rollout import VisitBonus

    cls = {"pathwise": PathwiseLearner, "reinforce": ReinforceLearner, "ppo": PPOLearner}[cfg.algo]
    unset = [name for name in ("explore_bonus", "actor_warmup") if getattr(cfg, name) is None]
    if unset:
        raise ValueError(f"{', '.join(unset)} unset; pass the config through resolve_defaults first")
    bonus = VisitBonus(env.terminal, cfg.explore_bonus)
    return cls(cfg, policy, critic, generator, bonus)
