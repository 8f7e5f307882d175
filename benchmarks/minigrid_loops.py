"""Where a kept Minigrid policy fails: the episodes it does not finish, whether they go round a
loop, and what the critic says about each action where the first loop starts.

    python -m benchmarks.minigrid_loops RUN_DIR [RUN_DIR ...] --episodes 300

For each run (a train.py directory on a Minigrid env), the kept policy (best.pt; the last one,
checkpoint.pt, with `--policy last`) plays `--episodes` greedy episodes, and as many sampled ones
(Gumbel-max), one env at a time, on seeds from `--seed-base` on (train.py's runs use 0, 10000 and
20000 upwards for training, validation and test). At every step the agent's
situation is its cell, its direction, and the kind and state of the cell in front of it. A failed
episode loops when one situation comes back at least `LOOP` times.

At each situation of the first looping episode's loop (those that come back `LOOP` times, at
their first visit; at most `MAX_SHOWN`), each action gets:
- its probability under the policy;
- q = r + gamma (1 - terminated) V(s'), the critic at the true successor s' (a copy of the env
  stepped once): what a one-step look-ahead through a perfect model would rank the actions by;
- of a model learner's run, q through its learnt model, r^ + gamma c^ V(s'^): what its actor
  climbs (the exact one-step return of `agent.learning.model_based`);
- the return of s' itself: the discounted return of `--rollouts` episodes from s' under the
  sampled policy, r + gamma (1 - terminated) G(s'), which is what q estimates.
Results go to OUT/NAME.json and .md (NAME: minigrid_loops unless `--name`).
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import tyro

from benchmarks.common import (
    DEFAULT_OUT,
    announce_machine,
    fail,
    format_table,
    machine_info,
    parse_args,
    provenance,
    run_header,
    write_json,
)

LOOP = 3  # a situation seen this many times in one failed episode makes it a loop
MAX_SHOWN = 4  # situations of the first loop analysed
ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")  # Minigrid's 7 actions


@dataclass
class Args:
    runs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR...")]
    """train.py run directories on Minigrid envs."""
    episodes: int = 300
    """Greedy episodes per run."""
    rollouts: int = 64
    """Sampled episodes from each successor, for its return."""
    policy: Literal["best", "last"] = "best"
    """Of each run: the kept policy (best.pt), or the last one (checkpoint.pt)."""
    seed_base: int = 50_000
    """The first episode's seed; episode i uses seed_base + i."""
    out: str = DEFAULT_OUT
    """Directory for NAME.json and .md."""
    name: str = "minigrid_loops"
    """File stem of the results."""


class Kept:
    """A run's kept policy and critic, and its env made as the run made it."""

    def __init__(self, run_dir: str, which: str = "best") -> None:
        from agent.learning.model_based import WorldModel
        from agent.run.checkpoint import BEST, LATEST, load_checkpoint
        from agent.run.config import TrainConfig
        from agent.run.factory import build_networks
        from agent.run.resolve import parse_env_kwargs
        from envs.blackbox import is_minigrid, open_black_box

        state = load_checkpoint(run_dir, device=torch.device("cpu"), which=BEST if which == "best" else LATEST)
        self.cfg = TrainConfig.from_dict(state["config"])
        if not is_minigrid(self.cfg.env):
            raise ValueError(f"{run_dir}: its env, {self.cfg.env}, is not a Minigrid env")
        self.spec = open_black_box(self.cfg.env, parse_env_kwargs(self.cfg.env_kwargs))
        shape, A = tuple(state["obs_shape"]), int(state["num_actions"])
        self.policy, self.critic = build_networks(self.cfg, shape, A, torch.device("cpu"))
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.env = self.spec.make()
        self.global_step = int(state["global_step"])
        self.model = None  # the model learner's, whose one-step q is what its actor climbs
        if "model" in state.get("learner", {}):
            self.model = WorldModel(shape[0], A, self.cfg.model_hidden)
            self.model.load_state_dict(state["learner"]["model"])

    def observe(self, obs) -> torch.Tensor:
        from envs.blackbox import observe_one

        return torch.as_tensor(observe_one(self.spec, self.env.observation_space, obs))  # (1, D)

    @torch.no_grad()
    def model_q(self, obs) -> torch.Tensor | None:
        """r^ + gamma c^ V(s'^) of every action through the learnt model, (A,); None without one."""
        if self.model is None:
            return None
        x = self.observe(obs)  # (1, D)
        out = self.model.every_action(x)[0]  # (A, D + 2)
        nexts = x + out[:, : self.model.obs_dim]  # (A, D)
        return out[:, -2] + self.cfg.gamma * torch.sigmoid(out[:, -1]) * self.critic(nexts)

    @torch.no_grad()
    def logits(self, obs) -> torch.Tensor:
        return self.policy(self.observe(obs))[0]  # (A,)

    @torch.no_grad()
    def value(self, env, obs) -> float:  # (env: a copy of the env, whose observation space is the same)
        return float(self.critic(self.observe(obs))[0])


def situation(env) -> tuple:
    """The agent's cell, direction, and the kind and state of the cell in front."""
    u = env.unwrapped
    front = u.grid.get(*u.front_pos)
    return (*map(int, u.agent_pos), int(u.agent_dir), front.type if front else None, getattr(front, "is_open", None))


def play(kept: Kept, seed: int, generator: torch.Generator | None = None) -> tuple[str, list[tuple], list[int]]:
    """One greedy episode (sampled with a `generator`): its outcome (success, ended, timeout),
    situations and actions."""
    from agent.learning.gumbel import gumbel_max_sample

    obs, _ = kept.env.reset(seed=seed)
    seen, actions = [], []
    while True:
        seen.append(situation(kept.env))
        logits = kept.logits(obs)  # (A,)
        actions.append(int(logits.argmax() if generator is None else gumbel_max_sample(logits, generator=generator)))
        obs, reward, terminated, truncated, _ = kept.env.step(actions[-1])
        if terminated or truncated:
            return ("success" if reward > 0 else "ended") if terminated else "timeout", seen, actions


def sampled_return(kept: Kept, env, obs, rollouts: int, generator: torch.Generator) -> float:
    """Mean discounted return from (env, obs) under the sampled policy, over copies of env."""
    total = 0.0
    for _ in range(rollouts):
        e, o, discount = copy.deepcopy(env), obs, 1.0
        while True:
            probs = torch.softmax(kept.logits(o), -1)
            o, r, terminated, truncated, _ = e.step(int(torch.multinomial(probs, 1, generator=generator)))
            total += discount * r
            discount *= kept.cfg.gamma
            if terminated or truncated:
                break
    return total / rollouts


def at_loop_start(kept: Kept, seed: int, actions: list[int], step: int, rollouts: int) -> list[dict[str, Any]]:
    """Each action at `step` of the episode of `seed`: its probability, q through the critic, and
    the sampled return that q estimates."""
    obs, _ = kept.env.reset(seed=seed)
    for a in actions[:step]:
        obs, *_ = kept.env.step(a)
    probs = torch.softmax(kept.logits(obs), -1)
    through_model = kept.model_q(obs)  # (A,) or None
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for a in range(kept.spec.num_actions):
        env = copy.deepcopy(kept.env)
        nxt, r, terminated, truncated, _ = env.step(a)
        going_on = kept.cfg.gamma * (not terminated)
        ahead = 0.0 if terminated or truncated else sampled_return(kept, env, nxt, rollouts, generator)
        rows.append(
            {
                "action": ACTIONS[a] if a < len(ACTIONS) else str(a),
                "policy": round(float(probs[a]), 3),
                "q (critic)": round(r + going_on * kept.value(env, nxt), 3),
                "q (sampled return)": round(r + going_on * ahead, 3),
            }
            | ({} if through_model is None else {"q (model)": round(float(through_model[a]), 3)})
        )
    return rows


def diagnose(run_dir: str, args: Args) -> dict[str, Any]:
    kept = Kept(run_dir, args.policy)
    generator = torch.Generator().manual_seed(args.seed_base)
    sampled = sum(play(kept, args.seed_base + i, generator)[0] == "success" for i in range(args.episodes))
    outcomes, loop_actions, first = collections.Counter(), collections.Counter(), None
    for i in range(args.episodes):
        outcome, seen, actions = play(kept, args.seed_base + i)
        outcomes[outcome] += 1
        counts = collections.Counter(seen)
        if outcome != "success" and max(counts.values()) >= LOOP:
            outcomes["loops"] += 1
            loop_actions.update(a for s, a in zip(seen, actions, strict=True) if counts[s] >= LOOP)
            if first is None:
                steps = [t for t, s in enumerate(seen) if counts[s] >= LOOP and seen.index(s) == t]
                first = (args.seed_base + i, actions, steps[:MAX_SHOWN])
    failed = args.episodes - outcomes["success"]
    row = {
        "run": Path(run_dir).name,
        "env": kept.cfg.env,
        "learner": kept.cfg.algo,
        "episodes": args.episodes,
        "step": kept.global_step,
        "success": outcomes["success"] / args.episodes,
        "success (sampled)": sampled / args.episodes,
        "timeouts": outcomes["timeout"],
        "ended otherwise": outcomes["ended"],
        "failures that loop": f"{outcomes['loops']}/{failed}",
        "action in loops": ACTIONS[loop_actions.most_common(1)[0][0]] if loop_actions else None,
    }
    loop = []
    if first is not None:
        seed, actions, steps = first
        for t in steps:
            kept.env.reset(seed=seed)
            for a in actions[:t]:
                kept.env.step(a)
            where = {"seed": seed, "step": t, "situation": list(situation(kept.env))}
            loop.append(where | {"actions": at_loop_start(kept, seed, actions, t, args.rollouts)})
    return row | {"loop": loop}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.minigrid_loops", __doc__)
    stamp = provenance("benchmarks.minigrid_loops", argv)
    if not args.runs:
        fail("name at least one run directory: python -m benchmarks.minigrid_loops RUN_DIR")
    if min(args.episodes, args.rollouts) < 1:
        fail("--episodes and --rollouts must be at least 1")
    torch.set_num_threads(1)
    announce_machine()
    results = []
    for run in args.runs:
        try:
            results.append(diagnose(run, args))
        except (ValueError, OSError) as e:
            fail(str(e).splitlines()[0])
    summary = [{k: v for k, v in r.items() if k != "loop"} for r in results]
    lines = [format_table(summary, list(summary[0]))]
    for r in results:
        for at in r["loop"]:
            x, y, direction, front, is_open = at["situation"]
            facing = f"{'an open' if is_open else 'a closed'} {front}" if is_open is not None else front or "nothing"
            where = f"{r['run']}, seed {at['seed']}, step {at['step']}: at ({x}, {y}) facing {facing}"
            lines.append(f"\nIn the first loop ({where}):\n")
            lines.append(format_table(at["actions"], list(at["actions"][0])))
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    write_json(out / f"{args.name}.json", stamp | run_header(machine_info(), args) | {"runs": results})
    (out / f"{args.name}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
