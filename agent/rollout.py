"""Collecting experience: episode bookkeeping, the exploration bonus, and the score-function
learners' rollout on the env's integer fast path."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from agent import interrupt
from agent.gumbel import gumbel_max_sample
from agent.policy import PolicyNet, ValueNet


@dataclass
class EpisodeStats:
    """Finished episodes seen since the last `pop()`."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)

    def add(self, info: dict) -> None:
        if "episode" not in info:  # no episode ended this step
            return
        # Episodes that began at an exploring start are training data, not what the agent scores
        # from the world's own start.
        done = info["_episode"] & ~info["explored"]
        if done.any():
            self.returns += info["episode"]["r"][done].tolist()
            self.lengths += info["episode"]["l"][done].tolist()
            self.successes += info["success"][done].tolist()

    def pop(self) -> dict[str, float]:
        """Means of the finished episodes (empty dict when none finished), then forget them."""
        if not self.returns:
            return {}
        n = len(self.returns)
        out = {
            "charts/episodic_return": sum(self.returns) / n,
            "charts/episodic_length": sum(self.lengths) / n,
            "charts/success_rate": sum(self.successes) / n,
            "charts/episodes": float(n),
        }
        self.returns, self.lengths, self.successes = [], [], []
        return out


class VisitBonus:
    """Count-based exploration bonus beta / sqrt(1 + N(world, s)) for entering cell s and going on
    (the MBIE-EB form, Strehl & Littman 2008); a transition that ends the episode earns none, or
    a fresh lava cell would pay the agent to end its episode there.

    It is read off the live position as `live_pos . bonus`, so on the differentiable path the
    pathwise gradient sees it too: it points towards cells visited less. beta = 0 switches it off.
    """

    def __init__(self, num_worlds: int, num_states: int, beta: float, device: torch.device | str = "cpu") -> None:
        self.beta = beta
        self.counts = torch.zeros(num_worlds, num_states, device=device)  # (W, S)

    def __call__(self, live_pos: torch.Tensor, world_id: torch.Tensor) -> torch.Tensor:
        if self.beta == 0:
            return torch.zeros(live_pos.shape[0], device=live_pos.device)
        table = self.beta * torch.rsqrt(1.0 + self.counts)  # (W, S)
        rows = table[0] if table.shape[0] == 1 else table[world_id]  # (S,) or (B, S)
        return (live_pos * rows).sum(-1)  # (B,)

    def at_states(self, state: torch.Tensor, world_id: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """The same bonus read off (B,) cell indices where `live` (B,) (the integer path, no gradient)."""
        if self.beta == 0:
            return torch.zeros(state.shape[0], device=state.device)
        return self.beta * torch.rsqrt(1.0 + self.counts[world_id, state]) * live  # (B,)

    def visit(self, state: torch.Tensor, world_id: torch.Tensor) -> None:
        if self.beta:
            self.counts.index_put_((world_id, state), torch.ones_like(state, dtype=self.counts.dtype), accumulate=True)

    def state_dict(self) -> dict:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict) -> None:
        self.counts.copy_(state["counts"])


@dataclass
class Rollout:
    """T steps of B envs on the integer path, everything detached. Shapes (T, B, ...)."""

    obs: torch.Tensor  # (T, B, *obs_shape)
    cells: torch.Tensor  # (T, B) the state each step acted in
    worlds: torch.Tensor  # (T, B) and its world
    actions: torch.Tensor  # (T, B)
    logprobs: torch.Tensor  # (T, B)
    values: torch.Tensor  # (T, B)
    rewards: torch.Tensor  # (T, B)
    next_values: torch.Tensor  # (T, B) V of the true successor (0 after termination)
    continues: torch.Tensor  # (T, B)


@torch.no_grad()
def collect(
    env,
    obs: torch.Tensor,
    policy: PolicyNet,
    critic: ValueNet,
    horizon: int,
    stats: EpisodeStats,
    generator: torch.Generator,
    bonus: VisitBonus,
) -> tuple[Rollout, torch.Tensor]:
    """Run the current policy for `horizon` steps with integer actions; returns the rollout
    and the observation to continue from."""
    buf: dict[str, list[torch.Tensor]] = {k: [] for k in Rollout.__dataclass_fields__}
    for _ in range(horizon):
        interrupt.check()
        logits = policy(obs)  # (B, A)
        dist = torch.distributions.Categorical(logits=logits)
        action = gumbel_max_sample(logits, generator=generator)  # (B,)
        world_id = env.world_id
        buf["cells"].append(env.state)
        buf["worlds"].append(world_id)
        next_obs, reward, terminated, truncated, info = env.step(action)
        stats.add(info)
        reward = reward + bonus.at_states(info["final_state"], world_id, (~terminated).float())
        bonus.visit(info["final_state"], world_id)
        next_value = critic(info["final_obs"]) * (~terminated)  # (B,)
        buf["obs"].append(obs)
        buf["actions"].append(action)
        buf["logprobs"].append(dist.log_prob(action))
        buf["values"].append(critic(obs))
        buf["rewards"].append(reward)
        buf["next_values"].append(next_value)
        buf["continues"].append((~info["done"]).float())
        obs = next_obs
    return Rollout(**{k: torch.stack(v) for k, v in buf.items()}), obs
