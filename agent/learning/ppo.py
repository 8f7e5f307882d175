"""PPO (Schulman et al. 2017): clipped surrogate objective with GAE advantages, on the
integer fast path of the same batched env."""

from __future__ import annotations

import torch

from agent.learning.critic import lambda_returns
from agent.learning.learner import Learner, clip_and_step
from agent.learning.rollout import EpisodeStats, collect
from agent.run import interrupt


class PPOLearner(Learner):
    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        roll, obs = collect(env, obs, self.policy, self.critic, cfg.horizon, stats, self.generator, self.bonus)
        returns = lambda_returns(roll.rewards, roll.next_values, roll.continues, cfg.gamma, cfg.gae_lambda)
        flat_obs = roll.obs.flatten(0, 1)  # (T*B, ...)
        actions, old_logp = roll.actions.flatten(), roll.logprobs.flatten()  # (T*B,)
        advantages = (returns - roll.values).flatten()  # (T*B,)
        n = advantages.shape[0]
        size = max(1, n // cfg.num_minibatches)
        for _ in range(cfg.update_epochs):
            order = torch.randperm(n, generator=self.generator, device=self.generator.device)
            for i in range(0, n, size):
                interrupt.check()
                idx = order[i : i + size]
                dist = torch.distributions.Categorical(logits=self.policy(flat_obs[idx]))
                ratio = torch.exp(dist.log_prob(actions[idx]) - old_logp[idx])  # (n_mb,)
                adv = advantages[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                # The loss: -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) - entropy bonus.
                clipped = torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
                entropy = dist.entropy().mean()
                loss = -torch.min(ratio * adv, clipped * adv).mean() - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm)
        metrics = self.fit_critic_and_report(
            env, roll.obs, roll.cells, roll.worlds, returns, loss, entropy, grad_norm, rewards=roll.rewards
        )
        return obs, metrics
