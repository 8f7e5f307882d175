"""Networks: a policy giving 4 action logits, and a critic giving a state value.

Both take the float observation (one-hot position (B, S) or image (B, 4, H, W)) so the
pathwise learner's gradient can flow from a later action back through the observation into
the position that produced it. Integer observations are one-hot encoded at the edge.
"""

from __future__ import annotations

import torch
from torch import nn


def _body(obs_shape: tuple[int, ...], hidden: int) -> tuple[nn.Module, int]:
    """Feature extractor: an MLP for flat observations, a small CNN for images."""
    if len(obs_shape) == 1:
        return nn.Sequential(nn.Linear(obs_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()), hidden
    if len(obs_shape) == 3:
        C, H, W = obs_shape
        # Padding keeps the grid size, so the flatten sees every cell (walls matter everywhere).
        # 16 channels: mazes are read off 3x3 neighbourhoods, and on a CPU the conv is the cost.
        conv = nn.Sequential(
            nn.Conv2d(C, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * H * W, hidden), nn.ReLU(),
        )
        return conv, hidden
    raise ValueError(f"observation shape {obs_shape} is neither flat (S,) nor an image (C, H, W)")


class PolicyNet(nn.Module):
    """Observation -> action logits (B, A)."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.body, width = _body(obs_shape, hidden)
        self.head = nn.Linear(width, num_actions)
        # Small initial logits: a near-uniform first policy explores every corridor.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))  # (B, A)


class ValueNet(nn.Module):
    """Observation -> state value (B,)."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        self.body, width = _body(obs_shape, hidden)
        self.head = nn.Linear(width, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs)).squeeze(-1)  # (B,)


def float_obs(obs: torch.Tensor, num_states: int) -> torch.Tensor:
    """Integer (index) observations -> one-hot floats; float observations pass through."""
    if obs.is_floating_point():
        return obs
    return torch.nn.functional.one_hot(obs.long(), num_states).float()
