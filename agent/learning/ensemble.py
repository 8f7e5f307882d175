"""M independent copies of a network, run as one: `--num-seeds`.

The members' parameters are stacked along a leading axis (M, ...) and the network is applied to
each member's own inputs with `torch.func.vmap` over `functional_call`, so M policies cost the
small ops of one, on M times the rows (as PureJaxRL vmaps over seeds). A network that lists its
`layers()` as a plain stack of linear and elementwise layers (the MLP policy) runs without vmap,
as one batched matmul per layer: the same numbers, with less of vmap's per-call overhead, which
on a CPU is most of the cost of these small networks. Members share no
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
    """M networks of one architecture; `forward(x)` takes (M, B, ...) and returns (M, B, ...)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(members)  # name -> (M, ...) each
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
        object.__setattr__(self, "_chain", _linear_chain(self._template))

    def _stacked(self) -> dict[str, torch.Tensor]:
        return {name: self.stacked(name) for name in self.param_names + self.buffer_names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._chain is not None and x.dim() == 3:
            return self._chain_forward(x)

        def one(state: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self._template, state, (inputs,))

        return vmap(one)(self._stacked(), x)  # (M, B, ...)

    def every_cell(self, S: int) -> torch.Tensor:
        """Each member's output at every one-hot input of size S, (M, S, out): forward(eye(S)),
        with the first linear layer's product with the identity read off as its weight, the
        same numbers and gradients (each sum has one nonzero term) for one matmul fewer."""
        if self._chain is None or not _has_bias(self._chain[0][1]):
            eye = torch.eye(S, device=self.stacked(self.param_names[0]).device)
            return self(eye.expand(self.size, -1, -1))
        name = self._chain[0][0]
        x = self.stacked(f"{name}.weight").transpose(1, 2) + self.stacked(f"{name}.bias").unsqueeze(1)
        x = x.contiguous()  # (M, S, h), laid out as the matmul's output: the next layers' kernels round alike
        return self._chain_forward(x, self._chain[1:])

    def _chain_forward(self, x: torch.Tensor, chain: list | None = None) -> torch.Tensor:
        """(M, B, in) -> (M, B, out) through the stack of layers (or the tail `chain` of it),
        each linear one as a batched matmul over the members."""
        for name, layer in self._chain if chain is None else chain:
            if isinstance(layer, nn.Linear):
                weight = self.stacked(f"{name}.weight").transpose(1, 2)  # (M, in, out)
                if layer.bias is None:
                    x = torch.bmm(x, weight)
                else:
                    x = torch.baddbmm(self.stacked(f"{name}.bias").unsqueeze(1), x, weight)  # (M, B, out)
            else:  # elementwise: the same for every member
                x = layer(x)
        return x

    def stacked(self, name: str) -> torch.Tensor:
        """The members' parameter or buffer `name` (as a member names it), stacked, (M, ...)."""
        return getattr(self, _key(name))

    def member(self, k: int) -> nn.Module:
        """Member k as a plain network of its own (a copy: what its checkpoint and evaluation hold)."""
        net = copy.deepcopy(self._member_type).to(self.stacked(self.param_names[0]).device)
        net.load_state_dict({name: t[k].detach().clone() for name, t in self._stacked().items()})
        return net

    def member_parameters(self) -> list[nn.Parameter]:
        """The stacked parameters in the order of a member's own `parameters()`."""
        return [self.stacked(name) for name in self.param_names]


_ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.Identity)


def _has_bias(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) and layer.bias is not None


def _linear_chain(net: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The network's `layers()` (name, module), in the order its forward applies them, when that
    method exists and every layer is linear or elementwise; None otherwise (vmap is used)."""
    layers = getattr(net, "layers", None)
    if layers is None:
        return None
    chain = list(layers())
    return chain if all(isinstance(m, (nn.Linear, *_ELEMENTWISE)) for _, m in chain) else None


def member_count(net: nn.Module) -> int:
    return net.size if isinstance(net, Ensemble) else 1


def clip_per_member(params: list[torch.Tensor], members: int, max_norm: float) -> torch.Tensor:
    """Clip each member's gradient (the k-th slice of every stacked parameter) to `max_norm` (if
    > 0) by its own norm, as `clip_grad_norm_` would on that member alone; returns the pre-clip
    norms, (M,)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.reshape(members, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (M,)
    if max_norm > 0:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (M,)
        for g in grads:
            g.mul_(coef.view(members, *[1] * (g.dim() - 1)))
    return norms
