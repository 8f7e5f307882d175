"""The pathwise actor on procedural mazes with the critic taken out of the question.

    python -m benchmarks.maze_actor            # the README's table (about 10 minutes on one core)
    python -m benchmarks.maze_actor --smoke    # seconds, for CI

`train.py --env maze:9x9` with the pathwise learner solves 0% of unseen mazes (README). Its actor
follows a learned critic; is the critic the problem, or the actor's gradient? Here the critic is
replaced by the exact action values Q*(s, a) of every maze (value iteration), so each state's
one-step objective sum_a D_a Q*(s, a), D the straight-through one-hot action, has the exact
derivative a one-step pathwise window through the deterministic env would give it
(`envs.diffstep`: d/dD_a = r(s, a) + gamma V*(s'(a))). States are drawn uniformly from the open
cells of `--train-mazes` mazes, and train.py's CNN policy is fitted by Adam on them. On unseen
mazes we report how often its greedy action is optimal (argmax Q*), its mean entropy, and the
greedy success rate of episodes from the start cell (one per maze).

Variants (each a row of the table):
- `cross-entropy`: supervised, on argmax Q*. Tells whether the CNN can represent the policy at all.
- `reinmax (train.py defaults)`: the pathwise objective at train.py's lr 3e-3, entropy bonus 0.01.
- `exact expected gradient (defaults)`: the gradient of sum_a pi(a) Q*(a) itself, without sampling.
  It tells estimator noise apart from the objective.
- `reinmax lr 1e-3`: the objective scaled to unit advantage spread (as PPO normalises
  advantages), at a lower learning rate. Neighbouring cells' Q* differ by about 1%, so the scaling
  makes the advantages ~100x larger than the fixed entropy bonus.
- `reinmax lr 1e-3, entropy target`: as above, with the entropy coefficient adapted every step to
  hold the mean entropy at `--entropy-target` nats (as SAC tunes its temperature).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from agent.evaluation import evaluate
from agent.gumbel import straight_through
from agent.policy import PolicyNet
from benchmarks.common import format_table, machine_description, write_json
from envs import BatchedGridWorld, MazeSpec, make_world, value_iteration


@dataclass(frozen=True)
class Variant:
    name: str
    loss: str  # "ce", "reinmax" or "expected"
    lr: float
    entropy: float  # fixed entropy-bonus coefficient, or the initial one with a target
    normalise: bool  # divide the objective by the batch's advantage spread
    entropy_target: bool = False


VARIANTS = [
    Variant("cross-entropy", "ce", 3e-3, 0.0, False),
    Variant("reinmax (train.py defaults)", "reinmax", 3e-3, 0.01, False),
    Variant("exact expected gradient (defaults)", "expected", 3e-3, 0.01, False),
    Variant("reinmax lr 1e-3", "reinmax", 1e-3, 0.01, True),
    Variant("reinmax lr 1e-3, entropy target", "reinmax", 1e-3, 0.01, True, entropy_target=True),
]


class MazeStates:
    """Mazes with their exact action values; draws (observation, Q*) for uniform open cells."""

    def __init__(self, spec: MazeSpec, n: int, seed: int, gamma: float) -> None:
        self.mdps = spec.sample_many(n, seed)
        self.env = BatchedGridWorld(self.mdps, n, obs_mode="image")
        self.q = torch.stack([value_iteration(m, gamma).q.float() for m in self.mdps])  # (W, S, A)
        self.open = self.env.reachable.float()  # (W, S) cells an agent can stand on

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.randint(len(self.mdps), (n,), generator=generator)  # (n,)
        s = torch.multinomial(self.open[w], 1, generator=generator).squeeze(1)  # (n,)
        H, W = self.env.grid_shape
        agent = torch.nn.functional.one_hot(s, self.env.S).float().reshape(n, 1, H, W)
        return torch.cat([self.env.static_planes[w], agent], 1), self.q[w, s]  # (n, 4, H, W), (n, A)


def fit(variant: Variant, train: MazeStates, iters: int, batch: int, target: float, seed: int):
    torch.manual_seed(seed)
    H, W = train.env.grid_shape
    policy = PolicyNet((4, H, W))
    optimizer = torch.optim.Adam(policy.parameters(), lr=variant.lr)
    generator = torch.Generator().manual_seed(seed)
    log_alpha = math.log(variant.entropy) if variant.entropy > 0 else -math.inf
    for _ in range(iters):
        obs, q = train.draw(batch, generator)  # (n, 4, H, W), (n, A)
        logits = policy(obs)  # (n, A)
        p = logits.softmax(-1)
        entropy = -(p * logits.log_softmax(-1)).sum(-1).mean()
        if variant.loss == "ce":
            loss = torch.nn.functional.cross_entropy(logits, q.argmax(-1))
        else:
            if variant.normalise:
                # Q* of neighbouring cells differ by a factor gamma: advantages are ~1% of Q.
                q = q / ((q - (p.detach() * q).sum(-1, keepdim=True)).std() + 1e-8)
            if variant.loss == "expected":
                loss = -(p * q).sum(-1).mean()
            else:
                action, _ = straight_through(logits, variant.loss, generator=generator)  # (n, A)
                loss = -(action * q).sum(-1).mean()
            if variant.entropy_target:
                log_alpha += 0.05 * (target - float(entropy.detach()))
            loss = loss - math.exp(log_alpha) * entropy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)  # train.py's --max-grad-norm
        optimizer.step()
    return policy


@torch.no_grad()
def score(policy: PolicyNet, unseen: MazeStates, spec: MazeSpec, maze_seed: int, episodes: int, gamma: float,
          generator: torch.Generator) -> dict[str, float]:
    obs, q = unseen.draw(4096, generator)
    logits = policy(obs)
    optimal = q.gather(1, logits.argmax(-1, keepdim=True)).squeeze(1) >= q.amax(-1) - 1e-6  # (n,) ties count
    entropy = torch.distributions.Categorical(logits=logits).entropy().mean()
    env = BatchedGridWorld(spec, episodes, obs_mode="image", maze_pool=episodes, maze_seed=maze_seed, seed=maze_seed)
    result = evaluate(policy, env, gamma=gamma)
    return {"optimal_action": float(optimal.float().mean()), "entropy": float(entropy),
            "unseen_success": result["success_rate"]}


def table(rows: list[dict]) -> str:
    out = []
    for v in VARIANTS:
        runs = [r for r in rows if r["variant"] == v.name]
        if runs:
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("optimal_action", "entropy", "unseen_success", "wall_clock_s")}
            out.append({"variant": v.name, "seeds": len(runs), **med})
    return format_table(out, formats={"optimal_action": ".1%", "entropy": ".3f", "unseen_success": ".1%",
                                      "wall_clock_s": ".0f"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--maze", default="maze:9x9")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=1200, help="Adam steps per run")
    p.add_argument("--batch", type=int, default=1024, help="states per Adam step")
    p.add_argument("--train-mazes", type=int, default=512)
    p.add_argument("--episodes", type=int, default=200, help="unseen mazes played greedily from the start")
    p.add_argument("--entropy-target", type=float, default=0.5, help="nats, for the entropy-target variant")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--out", default="docs/benchmarks", help="directory for maze_actor.json and .md")
    p.add_argument("--smoke", action="store_true", help="a few steps on a few mazes (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.iters, args.batch, args.train_mazes, args.episodes = [0], 3, 32, 8, 8
    spec = make_world(args.maze)
    if not isinstance(spec, MazeSpec):
        p.error(f"--maze {args.maze!r} is not a procedural maze; write maze:HxW, e.g. maze:9x9")
    print(machine_description(), flush=True)
    rows = []
    for seed in args.seeds:
        # Training and unseen mazes come from disjoint seed streams (as in train.py's evaluation).
        train = MazeStates(spec, args.train_mazes, 10_000 + seed, args.gamma)
        unseen = MazeStates(spec, args.episodes, 2_000_000 + seed, args.gamma)
        for v in VARIANTS:
            start = time.perf_counter()
            policy = fit(v, train, args.iters, args.batch, args.entropy_target, seed)
            r = {"variant": v.name, "seed": seed, **score(policy, unseen, spec, 2_000_000 + seed, args.episodes,
                                                           args.gamma, torch.Generator().manual_seed(seed)),
                 "wall_clock_s": time.perf_counter() - start}
            rows.append(r)
            print(json.dumps(r), flush=True)
    md = table(rows)
    print(md)
    payload = {"machine": machine_description(), "args": vars(args), "variants": [asdict(v) for v in VARIANTS],
               "runs": rows}
    write_json(f"{args.out}/maze_actor.json", payload)
    with open(f"{args.out}/maze_actor.md", "w") as f:
        f.write(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
