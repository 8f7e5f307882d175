"""agent.learning.optim.Adam steps exactly as torch.optim.Adam(fused=True) does; their states load into each other."""

from __future__ import annotations

import subprocess
import sys

import torch

from agent.learning.optim import Adam


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    unused = torch.nn.Parameter(torch.randn(4))  # never gets a gradient: both must leave it alone
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin.load_state_dict(net.state_dict())
    return [*net.parameters(), unused], net, [*twin.parameters(), unused.detach().clone().requires_grad_()], twin


def _train(net, params, opt, steps: int, lr_at, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(t)
        opt.zero_grad(set_to_none=True)
        x = torch.randn(16, 5, generator=g)
        net(x).pow(2).sum().backward()
        opt.step()


def test_steps_are_bit_for_bit_those_of_torch_fused_adam():
    ours_params, ours, theirs_params, theirs = _nets()
    opt_ours, opt_theirs = Adam(ours_params, lr=3e-3), torch.optim.Adam(theirs_params, lr=3e-3, fused=True)
    lr_at = lambda t: 3e-3 * (1 - t / 50)  # noqa: E731 (a learning rate that moves, as annealing does)
    _train(ours, ours_params, opt_ours, 40, lr_at, seed=1)
    _train(theirs, theirs_params, opt_theirs, 40, lr_at, seed=1)
    for a, b in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ours_params[0].abs().sum() != _nets()[0][0].abs().sum()  # it did move
    assert torch.equal(ours_params[-1], _nets()[0][-1])  # no gradient, no step
    for k, (i, s) in enumerate(opt_theirs.state_dict()["state"].items()):
        mine = opt_ours.state_dict()["state"][i]
        assert k == i and set(mine) == set(s)
        for name in s:
            torch.testing.assert_close(mine[name], s[name], rtol=0, atol=0)


def test_states_load_into_each_other_and_resume_identically():
    lr_at = lambda t: 1e-2  # noqa: E731
    a_params, a, b_params, b = _nets(2)
    opt_a, opt_b = torch.optim.Adam(a_params, lr=1e-2, fused=True), Adam(b_params, lr=1e-2)
    _train(a, a_params, opt_a, 10, lr_at, seed=3)
    _train(b, b_params, opt_b, 10, lr_at, seed=3)
    # Swap: ours takes torch's state and torch takes ours; both go on as one run would.
    swapped_ours, swapped_theirs = Adam(a_params, lr=1e-2), torch.optim.Adam(b_params, lr=1e-2, fused=True)
    swapped_ours.load_state_dict(opt_a.state_dict())
    swapped_theirs.load_state_dict(opt_b.state_dict())
    _train(a, a_params, swapped_ours, 10, lr_at, seed=4)
    _train(b, b_params, swapped_theirs, 10, lr_at, seed=4)
    for p, q in zip(a_params, b_params, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_state_of_other_parameters_is_refused():
    params, *_ = _nets()
    opt = Adam(params, lr=1e-3)
    try:
        Adam(params[:2], lr=1e-3).load_state_dict(opt.state_dict())
    except ValueError as e:
        assert "other parameter groups" in str(e)
    else:
        raise AssertionError("a state of 5 parameters loaded into an optimiser of 2")


def test_training_does_not_import_torch_dynamo():
    """What the class is for: torch._dynamo stays out of a run's process (it costs seconds)."""
    code = (
        "import sys, torch; from agent.learning.optim import Adam; "
        "p = torch.nn.Parameter(torch.ones(3)); opt = Adam([p], lr=0.1); "
        "p.sum().backward(); opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict()); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
