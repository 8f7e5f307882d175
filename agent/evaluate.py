"""Score a trained policy: `python -m agent.evaluate runs/NAME [--episodes N] [--env OTHER] ...`.

Loads a checkpoint written by train.py (in a run directory the kept policy, best.pt, unless
--policy last), rebuilds its policy from the stored config, scores it exactly on the
tabular core (success probability, expected return and length under the time limit, normalised
score) and plays one episode in each of N env copies, greedy (argmax) by default. A
procedural-maze run is scored on mazes it never saw: neither its training mazes nor those of
train.py's periodic evaluation (`agent.run.config.eval_seeds`). A run on a gymnasium env without
a table (Minigrid, CartPole) has only the sampled episodes, 1,000 by default, with 95% intervals.

Examples:
    python -m agent.evaluate runs/four_rooms__pathwise__0__1700000000
    python -m agent.evaluate runs/NAME --episodes 1000 --sample --json
    python -m agent.evaluate runs/NAME --env my_map.txt        # another map of the same size
    python -m agent.evaluate runs/NAME --gif episode.gif       # needs pip install '.[plots]'
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import tyro

from agent.run.checkpoint import BEST, LATEST, CheckpointError, load_checkpoint, resolve_checkpoint
from agent.run.cli import parse
from agent.run.config import TrainConfig
from agent.run.factory import build_eval_env, build_networks, resolve_device
from agent.run.resolve import build_world, eval_seeds, is_black_box
from agent.run.scoring import evaluate, record_episode

GIF_FPS = 8
BLACK_BOX_EPISODES = 1000


def load_policy(path: str | Path, device: torch.device, which: str = BEST):
    """Checkpoint -> (policy in eval mode, its TrainConfig, the raw checkpoint dict). A run
    directory gives its kept (best) policy, or with which=LATEST its last one."""
    state = load_checkpoint(path, device=device, which=which)
    where = resolve_checkpoint(path, which)
    missing = [k for k in ("config", "policy", "obs_shape", "num_actions") if k not in state]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}; it was not written by train.py")
    try:
        cfg = TrainConfig.from_dict(state["config"])
    except TypeError as e:
        raise CheckpointError(f"{where} holds a config this version can't read ({e})") from None
    policy, _ = build_networks(cfg, tuple(state["obs_shape"]), int(state["num_actions"]), device)
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{where}: policy weights don't fit its stored config ({first})") from None
    policy.eval()
    return policy, cfg, state


def evaluate_checkpoint(
    path: str | Path,
    *,
    episodes: int | None = None,
    env: str | None = None,
    greedy: bool = True,
    seed: int = 0,
    device: str = "auto",
    gif: str | Path | None = None,
    which: str = BEST,
) -> dict[str, Any]:
    """Evaluate a checkpoint (a run directory or a .pt file); see the module docstring.

    Returns `agent.run.scoring.evaluate`'s metrics plus where they came from (checkpoint, env,
    global_step, greedy, seed, maze_seed, gif).
    """
    if episodes is not None and episodes < 1:
        raise ValueError(f"--episodes {episodes} must be >= 1")
    dev = resolve_device(device)
    policy, cfg, state = load_policy(path, dev, which)
    world = build_world(cfg, env=env) if env is not None else build_world(cfg)
    black_box = is_black_box(world)
    # Sampled episodes are all a black box has, so it gets more of them.
    episodes = episodes or (BLACK_BOX_EPISODES if black_box else 256)
    env_name = env or cfg.env
    eval_env = build_eval_env(cfg, dev, "test", world=world, episodes=episodes, seed=seed)
    maze_seed = eval_seeds(cfg, "test", seed)["mazes"] if not black_box and world.layouts_vary else None

    trained = (tuple(state["obs_shape"]), int(state["num_actions"]))
    given = (tuple(eval_env.observation_shape), int(eval_env.A))
    if given != trained:
        fix = "an env with the same observations and actions" if black_box else "a world with the same grid size"
        raise ValueError(
            f"--env {env_name} gives observations of shape {given[0]} with {given[1]} actions, "
            f"but the policy was trained on {cfg.env} with shape {trained[0]} and {trained[1]} "
            f"actions; pick {fix}"
        )

    generator = torch.Generator(device=dev).manual_seed(seed)
    result: dict[str, Any] = evaluate(policy, eval_env, gamma=cfg.gamma, greedy=greedy, generator=generator)
    result |= {
        "checkpoint": str(resolve_checkpoint(path, which)),
        "env": env_name,
        "global_step": int(state.get("global_step", 0)),
        "greedy": greedy,
        "seed": seed,
        "maze_seed": maze_seed,
        "time_limit": eval_env.max_episode_steps,
        "gamma": cfg.gamma,
        "success_rule": world.success_rule if black_box else eval_env.mdp.success_rule,
    }
    if gif is not None:
        # A maze GIF plays an unseen maze too: gymnasium seeds its maze draw like our pool does.
        frames = record_episode(policy, cfg, seed=seed if maze_seed is None else maze_seed, world=world, greedy=greedy)
        result["gif"] = str(write_gif(gif, frames))
    return result


def write_gif(path: str | Path, frames: list, fps: int = GIF_FPS) -> Path:
    """Frames (H, W, 3) uint8 -> a looping GIF; imageio is an optional extra."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ValueError("--gif needs imageio: pip install 'gumbel-gridworld[plots]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hold the last frame a second so the loop shows where the episode ended.
    durations = [1000 / fps] * (len(frames) - 1) + [1000]
    imageio.mimsave(path, frames, duration=durations, loop=0)
    return path


def summary(result: dict[str, Any]) -> str:
    mode = "greedy" if result["greedy"] else "sampled"
    seed = result["maze_seed"]
    unseen = "" if seed is None else f" on unseen mazes (maze seed {seed})"
    lines = [
        f"{result['checkpoint']} (step {result['global_step']:,}) on {result['env']}, "
        f"{result['episodes']} {mode} episodes{unseen}",
        f"  success means {result['success_rule'] or 'nothing: the env defines no success'}",
    ]
    # A black-box env has the sampled episodes only.
    lines += black_box_lines(result) if "normalized_score" not in result else exact_lines(result)
    if "gif" in result:
        lines.append(f"  episode GIF       {result['gif']}")
    return "\n".join(lines)


def exact_lines(result: dict[str, Any]) -> list[str]:
    """The exact evaluation on the tabular core, then the sampled episodes."""
    return [
        f"  exact (no sampling noise, under the time limit of {result['time_limit']} steps):",
        f"    success probability  {result['exact_success_rate']:.1%}",
        f"    expected return      {result['exact_return']:.4g}  (discounted, gamma {result['gamma']})",
        f"    expected length      {result['exact_length']:.1f}",
        f"    normalised score     {result['normalized_score']:.3f}  ((R - R_random) / (R* - R_random): "
        f"R* {result['optimal_return']:.4g}, R_random {result['uniform_return']:.4g})",
        "  sampled episodes:",
        f"    success rate         {result['success_rate']:.1%}",
        f"    mean return          {result['mean_return']:.4g}  (undiscounted)",
        f"    mean length          {result['mean_length']:.1f}",
    ]


def black_box_lines(result: dict[str, Any]) -> list[str]:
    """The sampled episodes of a black-box env, with their 95% intervals (no exact part)."""
    lines = [
        f"  sampled episodes (no tables to be exact with; time limit {result['time_limit']} steps):",
        f"    mean return          {result['mean_return']:.4g}  [{result['return_ci95_low']:.4g}, "
        f"{result['return_ci95_high']:.4g}]  (undiscounted, 95% interval)",
    ]
    if "success_rate" in result:
        lines.append(
            f"    success rate         {result['success_rate']:.1%}  [{result['success_ci95_low']:.1%}, "
            f"{result['success_ci95_high']:.1%}]  (Wilson 95% interval)"
        )
    return lines + [f"    mean length          {result['mean_length']:.1f}"]


@dataclass
class EvaluateArgs:
    """Score a policy train.py saved: exactly on the tabular core, and by sampled episodes."""

    run: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """A run directory written by train.py (runs/NAME) or one of its .pt files."""
    episodes: int | None = None
    """Sampled episodes to play, one per parallel env copy (default: 256; 1,000 on a gymnasium env
    without a table, where they are the whole evaluation)."""
    env: str | None = None
    """Evaluate on another world (map name, map file, maze:HxW, gymnasium id) with the same
    observation shape; default: the training world."""
    sample: bool = False
    """Sample actions from the policy (Gumbel-Max) instead of taking the most likely one."""
    policy: Literal["best", "last"] = "best"
    """Of a run directory: the kept policy, the best evaluated (best.pt), or the last one."""
    seed: int = 0
    """Seeds starts, slips, sampled actions and unseen mazes."""
    gif: str | None = None
    """Also write one episode as a GIF to this path (needs the [plots] extra: imageio)."""
    json: bool = False
    """Print one JSON object instead of the table."""
    device: str = "auto"
    """cpu, cuda, cuda:1, ...; auto = cuda when available."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, _ = parse(EvaluateArgs, argv, prog="python -m agent.evaluate", description=__doc__)
        if args.episodes is not None and args.episodes < 1:
            raise ValueError(f"--episodes {args.episodes} is out of range: it must be an integer >= 1")
        result = evaluate_checkpoint(
            args.run,
            episodes=args.episodes,
            env=args.env,
            greedy=not args.sample,
            seed=args.seed,
            device=args.device,
            gif=args.gif,
            which=BEST if args.policy == "best" else LATEST,
        )
    except (ValueError, OSError) as e:  # CheckpointError and CliError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
