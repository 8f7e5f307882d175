"""Building envs, networks and learners from a `TrainConfig` (train.py and evaluate share it)."""

from __future__ import annotations

import importlib

import torch

from agent.learning.ensemble import Ensemble
from agent.learning.policy import PolicyNet, ValueNet
from agent.run.config import LEARNERS, TrainConfig
from agent.run.resolve import build_world, eval_seeds, is_black_box, obs_mode
from envs import BatchedGridWorld
from envs.blackbox import BlackBoxEnv


def resolve_device(name: str) -> torch.device:
    """--device -> a device this machine has; checked before anything is built."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: only cpu, cuda and mps are supported; use --device cpu")
    return device


def world_size(world) -> tuple[int, int]:
    """(cells S, observation numbers per env under --obs image or onehot) of a world spec."""
    if world.layouts_vary:
        return world.height * world.width, 4 * world.height * world.width
    layout = world.layout
    return world.num_states, (4 * layout.height * layout.width if layout is not None else world.num_states)


def memory_estimate(cfg: TrainConfig, world) -> dict[str, int]:
    """Bytes an update and an evaluation hold at their peak, from measured costs per env step
    (see benchmarks/memory.py): about 10 bytes per B x T x (S + observation) for one-hot
    observations and 64 for images (convolution activations), doubled here as a margin."""
    S, image_obs = world_size(world)
    obs = image_obs if cfg.obs == "image" else S
    per = 128 if cfg.obs == "image" else 24
    return {
        "update": cfg.num_envs * cfg.num_seeds * cfg.horizon * (S + obs) * per,
        "evaluation": cfg.eval_episodes * (S + obs) * 4 * 16,
    }


def available_memory(device: torch.device) -> int | None:
    """Bytes free for this run on `device` (None when it can't be told)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(cfg: TrainConfig, world, device: torch.device) -> None:
    """Refuse, before anything is built, a run whose update or evaluation would not fit (on a
    gridworld: a black-box env's size is not known before it runs)."""
    free = available_memory(device)
    if free is None or is_black_box(world):
        return
    need = memory_estimate(cfg, world)
    S, _ = world_size(world)
    gib = 2**30
    if need["update"] > 0.8 * free:
        raise ValueError(
            f"--num-envs {cfg.num_envs} x --horizon {cfg.horizon}"
            + (f" x --num-seeds {cfg.num_seeds}" if cfg.num_seeds > 1 else "")
            + f" needs about {need['update'] / gib:.1f} GiB for "
            f"one update ({S} cells, {cfg.obs} observations), but {device.type} has {free / gib:.1f} GiB free; "
            "lower --num-envs or --horizon"
        )
    if need["evaluation"] > 0.8 * free:
        raise ValueError(
            f"--eval-episodes {cfg.eval_episodes} needs about {need['evaluation'] / gib:.1f} GiB, but "
            f"{device.type} has {free / gib:.1f} GiB free; lower --eval-episodes"
        )


def build_env(
    cfg: TrainConfig,
    device: torch.device,
    *,
    world=None,
    num_envs: int | None = None,
    seed: int | None = None,
    maze_seed: int | None = None,
    maze_pool: int = 0,
    explore_starts: float = 0.0,
) -> BatchedGridWorld | BlackBoxEnv:
    """The batched env of a run on `world` (the run's, built once by `agent.run.config.resolve`; or
    another, e.g. unseen mazes to evaluate on; None builds the config's). The observation mode
    always follows the config, since the policy was built for it. A black-box world steps in
    gymnasium's vector env."""
    world = build_world(cfg) if world is None else world
    if is_black_box(world):
        return BlackBoxEnv(world, num_envs or cfg.num_envs, seed=cfg.seed if seed is None else seed, device=device)
    return BatchedGridWorld(
        world,
        num_envs or cfg.num_envs * cfg.num_seeds,  # --num-seeds: B envs for each agent
        obs_mode=trained_obs_mode(cfg),
        device=device,
        seed=cfg.seed if seed is None else seed,
        maze_seed=maze_seed,
        maze_pool=maze_pool or None,
        slip_gradient=cfg.slip_gradient,
        explore_starts=explore_starts,
    )


def trained_obs_mode(cfg: TrainConfig) -> str:
    """The observation mode the config's policy sees: resolved configs (every run's config.json)
    name it; only an unresolved "auto" needs the config's world built to tell."""
    return cfg.obs if cfg.obs != "auto" else obs_mode(cfg, build_world(cfg))


def build_eval_env(
    cfg: TrainConfig, device: torch.device, split: str, *, world=None, episodes: int | None = None, seed: int = 0
) -> BatchedGridWorld:
    """An evaluation env (`split` "validation" or "test", seeded by `agent.run.config.eval_seeds`) with one episode
    per copy; a family of mazes gets its own pool of that split's mazes."""
    world = build_world(cfg) if world is None else world
    seeds = eval_seeds(cfg, split, seed)
    return build_env(
        cfg,
        device,
        world=world,
        num_envs=episodes or cfg.eval_episodes,
        seed=seeds["env"],
        maze_seed=seeds["mazes"] if not is_black_box(world) and world.layouts_vary else None,
    )


def build_networks(
    cfg: TrainConfig, obs_shape: tuple[int, ...], num_actions: int, device: torch.device
) -> tuple[PolicyNet, ValueNet] | tuple[Ensemble, Ensemble]:
    """The policy and critic; for --num-seeds M, an `Ensemble` of M of each, member k
    initialised as a single run with seed --seed + k would be."""

    def pair() -> tuple[PolicyNet, ValueNet]:
        return (
            PolicyNet(obs_shape, num_actions, cfg.hidden).to(device),
            ValueNet(obs_shape, cfg.hidden, cfg.value_map, table=cfg.obs != "flat").to(device),
        )

    if cfg.num_seeds == 1:
        return pair()
    members = []
    for k in range(cfg.num_seeds):
        torch.manual_seed(cfg.seed + k)
        members.append(pair())
    return Ensemble([p for p, _ in members]), Ensemble([c for _, c in members])


def build_learner(
    cfg: TrainConfig, env: BatchedGridWorld, policy: PolicyNet, critic: ValueNet, generator: torch.Generator
):
    from agent.learning.rollout import VisitBonus

    module, name = LEARNERS[cfg.algo][1].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    bonus = VisitBonus(env.num_worlds, env.S, cfg.explore_bonus, env.device)
    return cls(cfg, policy, critic, generator, bonus)
