"""Adam, the learners' optimiser.

Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1) with
betas (0.9, 0.999) and eps 1e-8, in the arithmetic of `torch.optim.Adam(fused=True)` on CPU (one
fused kernel per parameter), so a run steps exactly as it would with that optimiser
(tests/test_optim.py), and the same `state_dict` layout, so checkpoints load in either. Why not
`torch.optim.Adam` itself: its first call imports `torch._dynamo`, 1.3-2 s of every process's start
on this CPU (benchmarks/startup.py), longer than many runs' training.
"""

from __future__ import annotations

import torch

_TORCH_DEFAULTS = {
    "weight_decay": 0.0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": True,
    "decoupled_weight_decay": False,
}


class Adam:
    """`param_groups` (one group, its "lr" set by the learner each update), `zero_grad`, `step`,
    `state_dict` and `load_state_dict`, as `torch.optim.Adam` has them."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        # torch.optim.Adam's group keys, so a state saved here loads there too; only these defaults are implemented.
        self.param_groups = [{"params": list(params), "lr": lr, "betas": betas, "eps": eps, **_TORCH_DEFAULTS}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        # torch.optim.Adam(fused=True)'s CPU path: the moments and the parameter are updated in
        # one pass by one kernel per parameter, where the _foreach path makes seven passes of
        # small ops (the learners step after every env step, so those ops are most of the cost).
        for group in self.param_groups:
            (beta1, beta2), params = group["betas"], [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:  # as torch's fused: a float32 step count on the parameter's device
                    self.state[p] = {
                        "step": torch.zeros((), dtype=torch.float32, device=p.device),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
            states = [self.state[p] for p in params]
            counts = [s["step"] for s in states]
            torch._foreach_add_(counts, 1)
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],  # no amsgrad
                counts,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=group["eps"],
                maximize=False,
            )

    def state_dict(self) -> dict:
        """torch.optim's layout: parameters by their index in the groups."""
        index = {p: i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            groups.append(
                {
                    **{k: v for k, v in group.items() if k != "params"},
                    "params": list(range(start, start + len(group["params"]))),
                }
            )
            start += len(group["params"])
        return {"state": {index[p]: dict(s) for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state of this layout (this class's or `torch.optim.Adam`'s) for parameters of the
        same shapes in the same order."""
        params = self._params()
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
            len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups, strict=True)
        ):
            raise ValueError("the optimiser state holds other parameter groups than this optimiser")
        for group, s in zip(self.param_groups, saved, strict=True):
            group.update({k: s[k] for k in ("lr", "betas", "eps") if k in s})
        self.state = {}
        for i, moments in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {
                "step": torch.as_tensor(moments["step"], dtype=torch.float32).to(p.device).clone(),
                "exp_avg": moments["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": moments["exp_avg_sq"].to(p.device, p.dtype).clone(),
            }
