"""What every learner owns: the policy and critic, their optimisers and the exploration bonus.

Each learner file (pathwise.py, reinforce.py, ppo.py) only adds its `update`, where its loss is
written out."""

from __future__ import annotations

import torch

from agent.config import TrainConfig
from agent.policy import PolicyNet, ValueNet
from agent.rollout import VisitBonus


class Learner:
    def __init__(self, cfg: TrainConfig, policy: PolicyNet, critic: ValueNet, generator: torch.Generator,
                 bonus: VisitBonus) -> None:
        self.cfg, self.policy, self.critic, self.generator, self.bonus = cfg, policy, critic, generator, bonus
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_learning_rate)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
                "bonus": self.bonus.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.bonus.load_state_dict(state["bonus"])
