"""What every learner owns: the policy and critic, their optimisers and the exploration bonus.

Each learner file (pathwise.py, reinforce.py, ppo.py) only adds its `update`, where its loss is
written out."""

from __future__ import annotations

import torch
from torch import nn

from agent.config import TrainConfig
from agent.critic import fit_critic
from agent.policy import PolicyNet, ValueNet
from agent.rollout import VisitBonus


class ReturnScale:
    """The scale the policy's objective is divided by, so that one entropy bonus and one learning
    rate fit every reward scale: max(1, S), S a running average of the range between the 5th and
    95th percentile of the return targets (DreamerV3's return normalisation, Hafner et al. 2023).
    The floor keeps small, sparse returns (a goal worth 1) from being blown up into noise."""

    def __init__(self, decay: float = 0.95) -> None:
        self.decay = decay
        self.range: float | None = None

    def update(self, returns: torch.Tensor) -> float:
        q = torch.quantile(returns.detach().flatten().float(), torch.tensor([0.05, 0.95], device=returns.device))
        spread = float(q[1] - q[0])
        self.range = spread if self.range is None else self.decay * self.range + (1 - self.decay) * spread
        return max(1.0, self.range)

    @property
    def value(self) -> float:
        return 1.0 if self.range is None else max(1.0, self.range)

    def state_dict(self) -> dict:
        return {"range": self.range}

    def load_state_dict(self, state: dict) -> None:
        self.range = state["range"]


class Learner:
    def __init__(
        self, cfg: TrainConfig, policy: PolicyNet, critic: ValueNet, generator: torch.Generator, bonus: VisitBonus
    ) -> None:
        self.cfg, self.policy, self.critic, self.generator, self.bonus = cfg, policy, critic, generator, bonus
        self.return_scale = ReturnScale()
        # Not fused=True: on CPU its constructor costs ~1.8 s of start-up (benchmarks/startup.py) for
        # ~10% faster updates.
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_learning_rate)

    def set_learning_rates(self, global_step: int) -> None:
        """Set both learning rates for the update that starts at `global_step`, a function of the
        step alone (so a resumed run picks them up where it stopped). With `anneal_lr` they fall
        linearly to 0 at the end of the budget: the critic's max-backups turn the jitter of
        constant-size optimiser steps into overestimates, and a policy still taking full steps at
        the end drifts off what it has learnt. The policy's also rises linearly over the first
        `actor_warmup` env steps."""
        cfg = self.cfg
        left = max(0.0, 1.0 - global_step / cfg.total_timesteps) if cfg.anneal_lr else 1.0
        warm = min(1.0, (global_step + 1) / cfg.actor_warmup) if cfg.actor_warmup else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate * warm * left
        for group in self.critic_optimizer.param_groups:
            group["lr"] = cfg.critic_learning_rate * left

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "bonus": self.bonus.state_dict(),
            "return_scale": self.return_scale.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.bonus.load_state_dict(state["bonus"])
        if "return_scale" in state:  # checkpoints from before the return scale start unscaled
            self.return_scale.load_state_dict(state["return_scale"])

    def fit_critic_and_report(
        self,
        env,
        obs: torch.Tensor,
        cells: torch.Tensor,
        worlds: torch.Tensor,
        targets: torch.Tensor,
        loss: torch.Tensor,
        entropy: torch.Tensor,
        grad_norm: float,
    ) -> dict[str, float]:
        """Regress the critic on this update's targets (samples given as observations and as
        (world, cell), each (T, B, ...)); return the update's loss metrics."""
        value_loss = fit_critic(
            self.critic,
            self.critic_optimizer,
            env,
            targets.flatten(),
            obs=obs.flatten(0, 1),
            cells=cells.flatten(),
            worlds=worlds.flatten(),
            epochs=self.cfg.update_epochs,
            num_minibatches=self.cfg.num_minibatches,
            generator=self.generator,
        )
        return {
            "losses/policy_loss": float(loss.detach()),
            "losses/value_loss": value_loss,
            "losses/entropy": float(entropy.detach()),
            "losses/grad_norm": grad_norm,
        }


def clip_and_step(params, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> float:
    """Clip the gradient to `max_grad_norm` (if > 0), step, and return the pre-clip norm."""
    params = list(params)
    if max_grad_norm > 0:
        norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    optimizer.step()
    return float(norm)
