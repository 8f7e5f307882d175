"""What the learners share: episode bookkeeping, TD(lambda) targets, the critic fit, and the
score-function learners' rollout on the env's integer fast path."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

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


def lambda_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    continues: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """TD(lambda) targets G_t, (T, B).

    Args:
        rewards: r_t, (T, B).
        next_values: V of the true successor of step t (0 if it terminated, V(final obs) if it
            was truncated), (T, B).
        continues: 1 where the episode goes on after step t, 0 where it ended, (T, B).
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    ahead = next_values[-1]  # the last step bootstraps fully
    for t in reversed(range(T)):
        # Mix the one-step bootstrap with the longer return, only while the episode goes on.
        blended = (1 - lam) * next_values[t] + lam * ahead
        ahead = rewards[t] + gamma * torch.where(continues[t] > 0, blended, next_values[t])
        out[t] = ahead
    return out


def greedy_lambda_returns(
    rewards: torch.Tensor,
    greedy_values: torch.Tensor,
    greedy_taken: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    last_greedy_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Watkins's Q(lambda) targets for V(s_t), (T, B), from a rollout and one-step greedy backups
    (Watkins 1989; Sutton & Barto 2018, sec. 12.10): the value of acting greedily from s_t.

    Where the action taken at t was greedy, the target follows what happened, r_t plus gamma
    times a mix of the greedy value of s_{t+1} (weight 1 - lambda) and the next target (lambda);
    where it was not, the trace is cut and the target is the greedy backup at s_t itself.

    Args:
        rewards: r_t, (T, B).
        greedy_values: max_a E[r + gamma V(s')] at s_t, (T, B).
        greedy_taken: whether a_t was a greedy action, (T, B) bool.
        terminated, truncated: how step t ended the episode, if it did, (T, B) bool.
        final_values: V of the successor of step t (used after a time limit: the state goes on).
        last_greedy_value: the greedy backup at the state after the last step, (B,).
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    ahead_value = ahead_return = last_greedy_value
    for t in reversed(range(T)):
        follow = (1 - lam) * ahead_value + lam * ahead_return
        follow = torch.where(truncated[t], final_values[t], follow)
        g = rewards[t] + gamma * torch.where(terminated[t], 0.0, follow)
        out[t] = torch.where(greedy_taken[t], g, greedy_values[t])
        ahead_value, ahead_return = greedy_values[t], out[t]
    return out


def cell_values(critic: ValueNet, env, worlds: torch.Tensor) -> torch.Tensor | None:
    """The critic's value of every cell in each of `worlds` (k,): (k, S) for image observations
    (the value map of each world's layout), (1, S) for one-hot ones (the same in every world).
    None when the critic is not linear in the position (an image critic without the value map)
    and can only be read off whole observations."""
    if env.obs_mode == "onehot":
        return critic(torch.eye(env.S, device=env.device))[None]  # (1, S)
    if env.obs_mode == "image" and critic.map_form:
        return critic.value_map(env.static_planes[worlds])  # (k, S)
    return None


def fit_critic(
    critic: ValueNet,
    optimizer: torch.optim.Optimizer,
    env,
    targets: torch.Tensor,
    *,
    obs: torch.Tensor,
    cells: torch.Tensor,
    worlds: torch.Tensor,
    epochs: int,
    num_minibatches: int,
    generator: torch.Generator,
) -> float:
    """Regress V onto `targets` (n,) with minibatch MSE; returns the last epoch's mean loss.

    Samples are given both as observations `obs` (n, ...) and as the (world, cell) they were in
    (`worlds`, `cells`, (n,)). Where the critic is a table of cells (`cell_values`), each
    minibatch evaluates it once per distinct world and reads its samples' cells off that: the
    same predictions as critic(obs), but S network rows (one-hot) or one value map per world
    (images) instead of one network pass per sample, most of an update's time otherwise.
    """
    n = targets.shape[0]
    size = max(1, n // num_minibatches)
    as_table = cell_values(critic, env, worlds[:1]) is not None
    loss_sum = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator, device=generator.device)
        loss_sum, batches = 0.0, 0
        for i in range(0, n, size):
            interrupt.check()
            idx = order[i : i + size]
            if as_table:
                distinct, which = torch.unique(worlds[idx], return_inverse=True)  # (k,), (size,)
                values = cell_values(critic, env, distinct)  # (k or 1, S)
                pred = values[which if len(values) > 1 else 0, cells[idx]]  # (size,)
            else:
                pred = critic(obs[idx])  # (size,)
            loss = 0.5 * (pred - targets[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
        loss_sum /= batches
    return loss_sum


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
def collect(env, obs: torch.Tensor, policy: PolicyNet, critic: ValueNet, horizon: int,
            stats: EpisodeStats, generator: torch.Generator, bonus: VisitBonus) -> tuple[Rollout, torch.Tensor]:
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


def clip_and_step(params, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> float:
    """Clip the gradient to `max_grad_norm` (if > 0), step, and return the pre-clip norm."""
    params = list(params)
    if max_grad_norm > 0:
        norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    optimizer.step()
    return float(norm)
