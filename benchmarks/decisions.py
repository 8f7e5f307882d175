"""Which decisions a trained run gets right: its kept policy's and its critic's, state by state.

    python -m benchmarks.decisions runs/NAME [runs/OTHER ...]        # the runs' evaluation worlds
    python -m benchmarks.decisions runs/NAME --split train            # a maze run's training mazes

A run's score says how often its greedy policy reaches the goal; this says why it does not. On
each world of the run's evaluation env (`--split test`: for procedural mazes, mazes neither
training nor the choice of the kept policy saw; `train`: the maze pool it trained on) it takes
the **decision states**: the reachable cells with V* != 0 (a reward is in reach) where not every
action is optimal (an optimal one: Q* within 1e-9 of the best). There it counts:

- `policy optimal`: the share where the kept policy's (best.pt) greedy action is optimal;
- `critic optimal`: the share where the action greedy on the critic's one-step look-ahead,
  r + gamma V(s'), through the world's own tables, is optimal (the ranking the pathwise actor
  learns from, with the default `--lookahead 1`);
- `value error`: the mean |V - V*| of the critic there, next to the mean gap between the best and
  second-best Q* (how accurate V must be for its ranking to be right);
- `critic-greedy success`: the exact success rate of the policy greedy on that look-ahead.

V* and Q* are the gamma-optimal values by value iteration on the tables (float64). Seconds a run,
no training. Results go to `--out`/decisions_NAME.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from agent.evaluate import load_policy
from agent.learning.critic import cell_values
from agent.run.checkpoint import load_checkpoint
from agent.run.factory import build_env, build_eval_env, build_networks
from agent.run.scoring import policy_table, world_tables
from benchmarks.common import DEFAULT_OUT, fail, format_table, machine_info, parse_args, provenance, write_json
from envs.oracle import _backup, policy_metrics


def optimal_values(tables: dict[str, torch.Tensor], gamma: float, tol: float = 1e-10) -> torch.Tensor:
    """(W, S) gamma-optimal values of every world, by value iteration (float64)."""
    reward = tables["reward"].double()
    values = torch.zeros(reward.shape[:-2], dtype=torch.float64)
    while True:
        new = _backup(tables, values, gamma, reward).amax(-1)  # (W, S)
        if float((new - values).abs().max()) < tol:
            return new
        values = new


def decisions(run: str, split: str) -> dict:
    """The row of one run directory: see the module docstring."""
    dev = torch.device("cpu")
    policy, cfg, _ = load_policy(run, dev, "best.pt")
    state = load_checkpoint(run, device=dev, which="best.pt")
    if split == "test":
        env = build_eval_env(cfg, dev, "test")
    else:
        env = build_env(cfg, dev, num_envs=cfg.maze_pool, maze_pool=cfg.maze_pool)  # the training pool
    _, critic = build_networks(cfg, env.observation_shape, env.A, dev)
    critic.load_state_dict(state["critic"])
    tables, gamma = world_tables(env), cfg.gamma
    with torch.no_grad():
        values = cell_values(critic, env, torch.arange(env.num_worlds))
    if values is None:
        raise ValueError(f"{run}: its critic is not a table of cells (--no-value-map), so it has no look-ahead to rank")
    values = values.double().expand(env.num_worlds, -1)  # (W, S)
    reward = tables["reward"].double()
    star = optimal_values(tables, gamma)  # (W, S)
    q_star = _backup(tables, star, gamma, reward)  # (W, S, A)
    best = q_star.amax(-1, keepdim=True)
    optimal = q_star >= best - 1e-9  # (W, S, A)
    reachable = env.reachable.cpu() & (star != 0)  # cells an agent can stand in that lead somewhere
    decide = reachable & ~optimal.all(-1)  # (W, S)
    q_critic = _backup(tables, values, gamma, reward)  # (W, S, A)
    critic_greedy = torch.nn.functional.one_hot(q_critic.argmax(-1), env.A).double()  # (W, S, A)
    mine = policy_table(policy, env).cpu()  # (W, S, A) greedy one-hot
    second = q_star.masked_fill(optimal, float("-inf")).amax(-1)  # (W, S): the best non-optimal action
    T = env.max_episode_steps
    return {
        "run": Path(run).name,
        "world": cfg.env,
        "split": split,
        "worlds": env.num_worlds,
        "decision states": int(decide.sum()),
        "policy optimal": float((mine * optimal).sum(-1)[decide].mean()),
        "critic optimal": float((critic_greedy * optimal).sum(-1)[decide].mean()),
        "value error": float((values - star).abs()[decide].mean()),
        "Q* gap": float((best[..., 0] - second)[decide].mean()),
        "critic-greedy success": float(policy_metrics(tables, critic_greedy, gamma, T)["success"].mean()),
        "policy success": float(policy_metrics(tables, mine.double(), gamma, T)["success"].mean()),
        "global_step": int(state.get("global_step", 0)),
        "run_git_commit": _run_commit(Path(run)),
    }


def _run_commit(run: Path) -> str | None:
    """The commit the run was trained at, as benchmarks.generalisation writes it into the run's
    final_eval.json (None for a plain train.py run)."""
    final = (run if run.is_dir() else run.parent) / "final_eval.json"
    return json.loads(final.read_text()).get("git_commit") if final.is_file() else None


@dataclass
class Args:
    runs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR...")]
    """Run directories written by train.py (one-hot or image observations, with a critic)."""
    split: Literal["test", "train"] = "test"
    """test: the run's evaluation worlds (unseen mazes for a maze run); train: its maze pool."""
    name: str = "decisions"
    """Results file name (without .json)."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.decisions", __doc__)
    stamp = provenance("benchmarks.decisions", argv)
    rows = []
    for run in args.runs:
        try:
            rows.append(decisions(run, args.split))
        except ValueError as e:
            fail(str(e))
    shares = ("policy optimal", "critic optimal", "critic-greedy success", "policy success")
    print(format_table(rows, None, {k: ".3f" for k in shares} | {"value error": ".4f", "Q* gap": ".4f"}))
    payload = stamp | {"machine": machine_info(), "args": vars(args), "rows": rows}
    write_json(Path(args.out) / f"{args.name}.json", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
