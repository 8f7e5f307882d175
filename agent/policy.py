"""Networks: a policy giving 4 action logits, and a critic giving a state value.

Both take the float observation (one-hot position (B, S) or image (B, 4, H, W), the agent
plane last) so the pathwise learner's gradient can flow from a later action back through the
observation into the position that produced it. Integer observations are one-hot encoded at the edge.
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
            nn.Conv2d(C, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * H * W, hidden),
            nn.ReLU(),
        )
        return conv, hidden
    raise ValueError(f"observation shape {obs_shape} is neither flat (S,) nor an image (C, H, W)")


class PlanningMap(nn.Module):
    """Static planes (B, C, H, W) -> the value of every cell, (B, H*W), by value iteration on the
    grid's four moves through a learned local model.

    A convolution reads, for each cell, what entering it pays and how likely the episode goes on
    after (a goal or lava ends it, a wall pays nothing); then `iters` backups
    V(x) <- max over the four neighbours y of [payoff(y) + gamma * go_on(y) * V(y)]
    carry that outward, one move per backup (a value iteration network, Tamar et al. 2016,
    with the moves fixed). Neighbouring cells' values are then tied by the backup itself, so the
    differences the actor ranks actions by, about (1 - gamma) V apart, are not left to a
    regression that would have to get each cell right to a fraction of that gap.
    `iters` = ceil(H * W / 2) backups reach the far end of any path through the grid's open cells
    that visits at most half of them (a maze's longest).
    """

    def __init__(self, C: int, H: int, W: int, gamma: float, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
        )
        self.model = nn.Conv2d(width, 2, 1)  # per cell: payoff of entering it, chance the episode ends there
        nn.init.zeros_(self.model.bias)
        self.gamma, self.iters = gamma, (H * W + 1) // 2

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        payoff, ends = self.model(self.features(planes)).unbind(1)  # (B, H, W) each
        # A clamp, not a sigmoid: most cells go on with weight exactly gamma from the start, and
        # a goal reaches 0 in a few steps; a sigmoid would need a logit of ~7 to lose under 0.1% a
        # move, which over a 27-move path is a 3% error in values that differ by 1% a move.
        return self.backups(payoff, self.gamma * (1 - ends).clamp(0, 1))

    def backups(self, payoff: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`iters` backups from V = 0 of the local model: entering a cell pays `payoff` and then
        goes on with weight `keep` (gamma times the chance it goes on), both (B, H, W). -> (B, H*W)"""
        v = torch.zeros_like(payoff)  # (B, H, W)
        for _ in range(self.iters):
            # off the grid is never the best move; a cell's value is its best neighbour's
            enter = nn.functional.pad(torch.addcmul(payoff, keep, v), (1, 1, 1, 1), value=float("-inf"))
            up_down = torch.maximum(enter[:, :-2, 1:-1], enter[:, 2:, 1:-1])  # (B, H, W)
            v = torch.maximum(up_down, torch.maximum(enter[:, 1:-1, :-2], enter[:, 1:-1, 2:]))  # (B, H, W)
        return v.flatten(1)  # (B, H*W)


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
    """Observation -> state value (B,).

    For a one-hot position it is a table of cells (see __init__).
    For an image it is a value map of the world read off the agent plane: the network sees only
    the static planes (walls, goal, hazards) and gives one value per cell, (B, H*W), and V is that
    map at the agent's cell. Any value of (world, cell) can be written so, but this one is linear
    in the agent plane: the pathwise read of V at a successor position is exactly the map there
    (as the one-hot table is for flat observations), not a network's input derivative in a
    direction it was never trained on. One forward also values every cell of a maze. On procedural
    9x9 mazes the pathwise learner needs it (README, `--no-value-map`).
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden: int = 128,
        value_map: bool = True,
        scale: float = 1.0,
        gamma: float = 0.99,
    ) -> None:
        super().__init__()
        # Values are given in units of `scale` (the world's largest reward, `agent.factory.value_scale`):
        # optimiser steps have a size of their own, so a table of -100s learns as fast as one of 1s.
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.map_form = len(obs_shape) == 3 and value_map  # False: one value from the whole image
        if self.map_form:
            C, H, W = obs_shape
            self.body, self.head = PlanningMap(C - 1, H, W, gamma), nn.Identity()  # the static planes only
        elif len(obs_shape) == 1:
            # A one-hot position has nothing to generalise over, so the critic is a table: one value
            # per cell (and a shared offset), starting at 0. Hidden layers shared by every cell let
            # the pathwise learner's max-backups raise all values together and feed on their own
            # overestimates; a table holds each cell's error to that cell.
            self.body, width = nn.Identity(), obs_shape[0]
            self.head = nn.Linear(width, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            self.body, width = _body(obs_shape, hidden)
            self.head = nn.Linear(width, 1)

    def value_map(self, planes: torch.Tensor) -> torch.Tensor:
        """Static planes (B, C - 1, H, W) -> the value of every cell, (B, H*W)."""
        return self.head(self.body(planes)) * self.scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.map_form:
            return (self.value_map(obs[:, :-1]) * obs[:, -1].flatten(1)).sum(-1)  # (B,)
        return self.head(self.body(obs)).squeeze(-1) * self.scale  # (B,)
