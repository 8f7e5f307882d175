"""N independent copies of a network, run as one: `--num-seeds`.

The members' parameters are stacked along a leading axis (N, ...) and the network is applied to
each member's own inputs with `torch.func.vmap` over `functional_call`, so N policies cost the
small ops of one, on N times the rows (as PureJaxRL vmaps over seeds). Members share no
parameter, and Adam is elementwise, so one optimiser over the stacked tensors steps each member
exactly as its own optimiser would; only gradient clipping needs a norm per member
(`clip_per_member`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def _key(name: str) -> str:  # parameter names hold dots, which module attribute names can't
    return name.replace(".", "__")


class Ensemble(nn.Module):
    """N networks of one architecture; `forward(x)` takes (N, B, ...) and returns (N, B, ...)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(members)  # name -> (N, ...) each
        self.size = len(members)
        self.param_names = list(params)  # the order of members[0].parameters()
        self.buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_key(name), nn.Parameter(value))
        for name, value in buffers.items():
            self.register_buffer(_key(name), value)
        # The architecture without storage; kept out of the module tree so .to() and
        # state_dict() see only the stacked tensors.
        object.__setattr__(self, "_template", copy.deepcopy(members[0]).to("meta"))
        object.__setattr__(self, "_member_type", members[0])

    def _stacked(self) -> dict[str, torch.Tensor]:
        return {name: self.stacked(name) for name in self.param_names + self.buffer_names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def one(state: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self._template, state, (inputs,))

        return vmap(one)(self._stacked(), x)  # (N, B, ...)

    def stacked(self, name: str) -> torch.Tensor:
        """The members' parameter or buffer `name` (as a member names it), stacked, (N, ...)."""
        return getattr(self, _key(name))

    def member(self, k: int) -> nn.Module:
        """Member k as a plain network of its own (a copy: what its checkpoint and evaluation hold)."""
        net = copy.deepcopy(self._member_type).to(self.stacked(self.param_names[0]).device)
        net.load_state_dict({name: t[k].detach().clone() for name, t in self._stacked().items()})
        return net

    def member_parameters(self) -> list[nn.Parameter]:
        """The stacked parameters in the order of a member's own `parameters()`."""
        return [self.stacked(name) for name in self.param_names]


def member_count(net: nn.Module) -> int:
    return net.size if isinstance(net, Ensemble) else 1


def clip_per_member(params: list[torch.Tensor], members: int, max_norm: float) -> torch.Tensor:
    """Clip each member's gradient (the k-th slice of every stacked parameter) to `max_norm` (if
    > 0) by its own norm, as `clip_grad_norm_` would on that member alone; returns the pre-clip
    norms, (N,)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.reshape(members, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (N,)
    if max_norm > 0:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (N,)
        for g in grads:
            g.mul_(coef.view(members, *[1] * (g.dim() - 1)))
    return norms
