"""Networks: a policy giving 4 action logits, and a critic giving a state value.

Both take the float observation (one-hot position (B, S) or image (B, 4, H, Wd), the agent
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

    def every_cell(self, S: int) -> torch.Tensor:
        """The logits at every one-hot observation of size S, (S, A): forward(eye(S)), with the
        first layer's product with the identity read off as its weight, the same numbers and
        gradients (each sum has one nonzero term) for one matmul fewer."""
        first, *rest = self.layers()
        if not isinstance(first[1], nn.Linear) or first[1].bias is None or first[1].in_features != S:
            return self(torch.eye(S, device=self.head.weight.device))
        # Contiguous as the matmul's output is: the next layers' kernels then round alike.
        x = (first[1].weight.t() + first[1].bias).contiguous()  # (S, hidden)
        for _, layer in rest:
            x = layer(x)
        return x

    def layers(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every layer, in the order `forward` applies them."""
        return [(f"body.{i}", m) for i, m in enumerate(self.body)] + [("head", self.head)]


def logits_of_every_cell(policy: nn.Module, S: int) -> torch.Tensor:
    """`policy` at every one-hot observation of size S, (S, A) (an ensemble's (M, S, A)), by its
    `every_cell` shortcut where it has one: that never builds the (S, S) identity, 16 GiB on a
    256 x 256 map."""
    every_cell = getattr(policy, "every_cell", None)
    if every_cell is not None:
        return every_cell(S)
    return policy(torch.eye(S, device=next(policy.parameters()).device))


class ValueNet(nn.Module):
    """Observation -> state value (B,).

    For a one-hot position it is a table of cells (see __init__); any other flat observation
    (`table=False`: a black-box env's) goes through an MLP.
    For an image it is a value map of the world read off the agent plane: the network sees only
    the static planes (walls, goal, hazards) and gives one value per cell, (B, H*Wd), and V is that
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
        table: bool = True,
    ) -> None:
        super().__init__()
        # Values are given in units of `scale` (the largest reward seen, `agent.learning.critic.rescale_critic`):
        # optimiser steps have a size of their own, so a table of -100s learns as fast as one of 1s.
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.map_form = len(obs_shape) == 3 and value_map  # False: one value from the whole image
        if self.map_form:
            C, H, W = obs_shape
            self.body, width = _body((C - 1, H, W), hidden)  # the static planes only
            self.head = nn.Linear(width, H * W)
        elif len(obs_shape) == 1 and table:
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
        """Static planes (B, C - 1, H, Wd) -> the value of every cell, (B, H*Wd)."""
        return self.head(self.body(planes)) * self.scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.map_form:
            return (self.value_map(obs[:, :-1]) * obs[:, -1].flatten(1)).sum(-1)  # (B,)
        return self.head(self.body(obs)).squeeze(-1) * self.scale  # (B,)
