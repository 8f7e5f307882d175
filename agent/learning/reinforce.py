"""REINFORCE with a learned baseline: the score-function gradient on the integer fast path.

Returns are Monte-Carlo within the T-step window and bootstrapped with the critic at its end
(episodes are longer than the window)."""

from __future__ import annotations

import torch

from agent.learning.critic import lambda_returns
from agent.learning.learner import Learner, clip_and_step
from agent.learning.rollout import EpisodeStats, collect


class ReinforceLearner(Learner):
    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        roll, obs = collect(env, obs, self.policy, self.critic, cfg.horizon, stats, self.generator, self.bonus)
        returns = lambda_returns(roll.rewards, roll.next_values, roll.continues, cfg.gamma, 1.0)  # (T, B)
        advantage = (returns - roll.values).flatten() / self.return_scale.update(returns)[0]  # (T*B,)

        # The loss: -E[log pi(a|s) * (G - b(s))] / return scale - entropy bonus.
        logits = self.policy(roll.obs.flatten(0, 1))  # (T*B, A)
        dist = torch.distributions.Categorical(logits=logits)
        entropy = dist.entropy().mean()
        loss = -(dist.log_prob(roll.actions.flatten()) * advantage).mean() - cfg.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm)

        metrics = self.fit_critic_and_report(
            env, roll.obs, roll.cells, roll.worlds, returns, loss, entropy, grad_norm, rewards=roll.rewards
        )
        return obs, metrics
