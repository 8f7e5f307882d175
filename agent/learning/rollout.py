"""Collecting experience: episode bookkeeping, the exploration bonus, and the score-function
learners' rollout on the env's integer fast path."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.learning.gumbel import gumbel_max_sample
from agent.learning.policy import PolicyNet, ValueNet
from agent.run import interrupt


class EpisodeStats:
    """Finished episodes seen since the last `pop()`, of each of `members` agents (--num-seeds:
    the first B / M envs are member 0's, and so on)."""

    def __init__(self, members: int = 1) -> None:
        self.members = members
        # Each member's finished episodes in the order they ended: returns, lengths, successes.
        self.finished: list[tuple[list[float], list[int], list[bool]]] = [([], [], []) for _ in range(members)]

    def add(self, info: dict) -> None:
        if "episode" not in info:  # no episode ended this step
            return
        # Episodes that began at an exploring start are training data, not what the agent scores
        # from the world's own start.
        done = info["_episode"] & ~info["explored"]
        if done.any():
            which = done.nonzero().squeeze(1)  # (k,) the envs whose episode ended, in order
            columns = (info["episode"]["r"][which].tolist(), info["episode"]["l"][which].tolist())
            # An env without a notion of success (a black-box one other than Minigrid) gives none.
            columns += (info["success"][which].tolist() if "success" in info else [],)
            # Member m owns envs [m B/M, (m+1) B/M), so `which` holds member 0's first, then 1's, ...
            per_member = len(done) // self.members
            counts = (
                torch.bincount(which // per_member, minlength=self.members).tolist()
                if self.members > 1
                else [len(which)]
            )
            start = 0
            for member, count in enumerate(counts):
                for mine, column in zip(self.finished[member], columns, strict=True):
                    mine.extend(column[start : start + count])
                start += count

    def pop(self, member: int = 0) -> dict[str, float]:
        """Means of a member's finished episodes (empty dict when none finished), then forget them."""
        (returns, lengths, successes), self.finished[member] = self.finished[member], ([], [], [])
        if not returns:
            return {}
        n = len(returns)
        out = {"charts/episodic_return": sum(returns) / n, "charts/episodic_length": sum(lengths) / n}
        if successes:
            out["charts/success_rate"] = sum(successes) / n
        return out | {"charts/episodes": float(n)}


class VisitBonus:
    """Count-based exploration bonus beta / sqrt(1 + visits(world, s)) for entering cell s and going on
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

    def at_cells(self, cells: torch.Tensor, world_id: torch.Tensor) -> torch.Tensor | None:
        """The bonus table at cells (B, ...) of each env's world, (B, ...); None when switched off."""
        if self.beta == 0:
            return None
        table = self.beta * torch.rsqrt(1.0 + self.counts)  # (W, S)
        return table[0][cells] if table.shape[0] == 1 else table[world_id.view(-1, *[1] * (cells.dim() - 1)), cells]

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
    next_obs: torch.Tensor | None = None  # (T, B, *obs_shape) where each step landed (`keep_next`)
    terminals: torch.Tensor | None = None  # (T, B) whether it ended the episode by the env's dynamics


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
    keep_next: bool = False,
) -> tuple[Rollout, torch.Tensor]:
    """Run the current policy for `horizon` steps with integer actions; returns the rollout
    (with where each step landed and whether it terminated, for `keep_next`) and the observation
    to continue from."""
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
        if keep_next:
            buf["next_obs"].append(info["final_obs"])
            buf["terminals"].append(terminated)
        obs = next_obs
    return Rollout(**{k: torch.stack(v) for k, v in buf.items() if v}), obs
