"""The pathwise learner: the return of a T-step window, back-propagated through Gumbel
straight-through actions and the differentiable env into the policy.

Episodes are longer than the window, so the env state is carried from window to window
(truncated back-propagation: `env.detach()` cuts the graph at the window start) and, with
`critic=True`, the window return is closed with a learned value V of the state it ends in,
itself differentiable in that state (a short-horizon actor-critic).
"""

from __future__ import annotations

import torch

from agent.gumbel import straight_through
from agent.learner import Learner
from agent.rollout import EpisodeStats, clip_and_step, lambda_returns


class PathwiseLearner(Learner):
    def _readers(self, env):
        """How the window reads the policy and the critic off an observation.

        The pathwise gradient asks "what if the agent were partly in another cell?", i.e. for
        derivatives along directions the networks never saw in training. For one-hot
        observations we answer with the networks' values *at* the cells: logits = pos @ L and
        V = pos @ v, L = policy(I), v = critic(I), which equal the networks at every one-hot
        position and are exact (linear) in between. Read directly, an MLP's input derivative is
        unconstrained there, and measured on `cliff` it sent the agent into the lava. For image
        observations (mazes) the critic is itself linear in the agent plane (a value map,
        `agent.policy.ValueNet`), so reading it directly is exact; the policy falls back to its
        input gradient, which one-step windows (the maze default) never use. Either way mass on
        terminal cells is masked out (`without_terminal`): the value there is 0 by definition.
        """
        if env.obs_mode == "onehot" and env.num_worlds == 1:
            alive = 1.0 - env.terminal_f[0]  # (S,)
            eye = torch.eye(env.S, device=alive.device)  # (S, S)
            logit_table = self.policy(eye) * alive[:, None]  # (S, A), differentiable in the policy
            value_table = self.critic(eye) * alive  # (S,), critic frozen during the actor pass
            return (lambda obs: obs @ logit_table), (lambda obs, world_id: obs @ value_table)
        return (lambda obs: self.policy(env.without_terminal(obs))), \
            (lambda obs, world_id: self.critic(env.without_terminal(obs, world_id)))

    def _entropy(self, env, logits: torch.Tensor, world_id: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The entropy bonus of this step, (B,): over the next cell (`--entropy-over cells`, on
        worlds where each move has one outcome) or over the actions."""
        if self.cfg.entropy_over == "cells" and env.O == 1:
            return cell_entropy(logits, env.next_state[world_id, state, :, 0])
        return torch.distributions.Categorical(logits=logits).entropy()

    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        cfg, gamma = self.cfg, self.cfg.gamma
        env.detach()
        obs = obs.detach()
        B = env.num_envs
        window_return = torch.zeros(B, device=obs.device)  # (B,) differentiable
        discount = torch.ones(B, device=obs.device)  # (B,) gamma^k since the episode (re)started
        entropy = torch.zeros((), device=obs.device)
        record: dict[str, list[torch.Tensor]] = {"obs": [], "rewards": [], "next_values": [], "continues": []}
        self.critic.requires_grad_(False)  # the actor loss must not train the critic
        policy, value = self._readers(env)
        for _ in range(cfg.horizon):
            logits = policy(obs)  # (B, A)
            action, _ = straight_through(logits, cfg.estimator, tau=tau, generator=self.generator)  # (B, A)
            world_id, state = env.world_id, env.state
            next_obs, reward, terminated, truncated, info = env.step(action)
            stats.add(info)
            reward = reward + self.bonus(info["final_pos"], world_id)  # (B,) differentiable
            self.bonus.visit(info["final_state"], world_id)
            window_return = window_return + discount * reward
            # V of the true successor: 0 after a real end; after a time limit the state
            # goes on, so the return is closed with its value (differentiable in the state).
            next_value = value(info["final_obs"], world_id) * (~terminated)  # (B,)
            if cfg.critic:
                window_return = window_return + discount * gamma * next_value * truncated
            discount = torch.where(info["done"], 1.0, discount * gamma)
            entropy = entropy + self._entropy(env, logits, world_id, state).mean()
            record["obs"].append(obs.detach())
            record["rewards"].append(reward.detach())
            record["next_values"].append(next_value.detach())
            record["continues"].append((~info["done"]).float())
            obs = next_obs
        if cfg.critic:
            window_return = window_return + discount * value(obs, env.world_id)
        self.critic.requires_grad_(True)

        # The loss: minus the mean (bootstrapped) discounted window return.
        entropy = entropy / cfg.horizon
        loss = -window_return.mean() - cfg.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm)

        rec = {k: torch.stack(v) for k, v in record.items()}  # (T, B, ...)
        targets = lambda_returns(rec["rewards"], rec["next_values"], rec["continues"], gamma, cfg.gae_lambda)
        metrics = self.fit_critic_and_report(rec["obs"].flatten(0, 1), targets.flatten(), loss, entropy, grad_norm)
        return obs.detach(), metrics


def cell_entropy(logits: torch.Tensor, next_cell: torch.Tensor) -> torch.Tensor:
    """Entropy of the cell the policy moves to, (B,), from logits (B, A) and each action's next
    cell (B, A): H = -sum_a pi_a log q(next_cell_a), q(c) = sum of pi_b over the actions b that
    lead to c. Actions with the same outcome (the bumps into walls around a cell) merge into one,
    so a uniform policy over a dead end's moves is no longer the most random one: staying and
    leaving are."""
    pi = logits.softmax(-1)  # (B, A)
    same = (next_cell[:, :, None] == next_cell[:, None, :]).to(pi.dtype)  # (B, A, A)
    q = torch.einsum("bij,bj->bi", same, pi)  # (B, A) probability of action i's outcome
    return -(pi * q.clamp_min(torch.finfo(pi.dtype).tiny).log()).sum(-1)
