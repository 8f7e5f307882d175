"""An ensemble of N networks (--num-seeds) is N independent agents: each member computes what it
would alone, is clipped by its own gradient norm, and nothing of one member reaches another."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from agent.learning.ensemble import Ensemble, clip_per_member
from agent.learning.policy import PolicyNet, ValueNet
from agent.learning.rollout import EpisodeStats
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import resolve


def test_each_member_computes_what_it_would_alone():
    torch.manual_seed(0)
    policies = [PolicyNet((9,), 4, 16) for _ in range(3)]
    critics = [ValueNet((9,), 16, scale=2.0) for _ in range(3)]
    for c in critics:
        torch.nn.init.normal_(c.head.weight)  # a table starts at 0: make it say something
    x = torch.randn(3, 5, 9)  # (N, B, S) each member's own inputs
    for nets in (policies, critics):
        out = Ensemble(nets)(x)
        for k, net in enumerate(nets):
            torch.testing.assert_close(out[k], net(x[k]), rtol=0, atol=1e-6)
            torch.testing.assert_close(Ensemble(nets).member(k)(x[k]), net(x[k]), rtol=0, atol=0)


def test_the_mlp_policy_runs_as_batched_matmuls_with_the_numbers_and_gradients_of_vmap():
    torch.manual_seed(2)
    fast = Ensemble([PolicyNet((9,), 4, 16) for _ in range(3)])
    slow = copy.deepcopy(fast)
    object.__setattr__(slow, "_chain", None)  # the general path: vmap over functional_call
    assert fast._chain is not None
    assert Ensemble([PolicyNet((2, 3, 3), 4, 16) for _ in range(2)])._chain is None  # a CNN: vmap
    x = torch.randn(3, 5, 9)
    out_fast, out_slow = fast(x), slow(x)
    torch.testing.assert_close(out_fast, out_slow, rtol=0, atol=1e-6)
    (out_fast * torch.arange(4.0)).sum().backward()
    (out_slow * torch.arange(4.0)).sum().backward()
    for p_fast, p_slow in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_slow.grad, rtol=1e-5, atol=1e-6)


def test_each_member_is_clipped_by_its_own_norm():
    torch.manual_seed(1)
    nets = [PolicyNet((9,), 4, 16) for _ in range(3)]
    ensemble, alone = Ensemble(nets), copy.deepcopy(nets)
    x = torch.randn(3, 7, 9)
    ensemble(x).pow(2).sum().backward()
    for k, net in enumerate(alone):
        (net(x[k]).pow(2).sum() * (k + 1) * 10).backward()  # norms far apart: some clipped, some not
    for p in ensemble.member_parameters():
        p.grad *= torch.tensor([10.0, 20.0, 30.0]).view(3, *[1] * (p.dim() - 1))
    norms = clip_per_member(ensemble.member_parameters(), 3, max_norm=5.0)
    for k, net in enumerate(alone):
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        torch.testing.assert_close(norms[k], norm, rtol=1e-5, atol=0)
        for p_stacked, p in zip(ensemble.member_parameters(), net.parameters(), strict=True):
            torch.testing.assert_close(p_stacked.grad[k], p.grad, rtol=1e-4, atol=1e-6)
    assert norms.min() < 5.0 < norms.max()


def group(seed: int = 0, perturb: bool = False):
    """A 2-member pathwise learner on the slippery 4x4 lake, member 1's policy perturbed or not."""
    cfg = TrainConfig(
        env="FrozenLake-v1", env_kwargs=("is_slippery:true",), num_envs=32, horizon=8, num_seeds=2, seed=seed
    )
    cfg, _ = resolve(replace(cfg, device="cpu"))
    env = build_env(cfg, torch.device("cpu"), explore_starts=cfg.explore_starts)
    torch.manual_seed(seed)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    if perturb:
        with torch.no_grad():
            for p in policy.member_parameters():
                p[1] += 0.5 * torch.randn_like(p[1])
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(seed))
    return cfg, env, policy, critic, learner


def test_nothing_of_one_member_reaches_another():
    # Member 1 acts differently (its policy perturbed): member 0's parameters, critic and
    # optimiser state after three updates are bit for bit what they are without the perturbation.
    runs = []
    for perturb in (False, True):
        cfg, env, policy, critic, learner = group(perturb=perturb)
        obs = env.reset()[0]
        stats = EpisodeStats(2)
        for _ in range(3):
            obs, metrics = learner.update(env, obs, cfg.tau, stats)
        runs.append((policy, critic, learner, metrics))
    (p0, c0, l0, m0), (p1, c1, l1, m1) = runs
    for a, b in zip([*p0.parameters(), *c0.parameters()], [*p1.parameters(), *c1.parameters()], strict=True):
        assert torch.equal(a[0], b[0]), "member 0 changed with member 1's parameters"
    assert not torch.equal(p0.member_parameters()[0][1], p1.member_parameters()[0][1])
    for key in ("losses/policy_loss", "losses/value_loss", "losses/return_scale", "losses/grad_norm"):
        assert len(m0[key]) == 2 and m0[key][0] == m1[key][0], key
    assert l0.member_state_dict(0)["optimizer"]["state"][0]["exp_avg"].equal(
        l1.member_state_dict(0)["optimizer"]["state"][0]["exp_avg"]
    )


def test_a_members_state_is_a_single_agents():
    # What a member's checkpoint holds loads into a learner of one agent, which then has exactly
    # that member's networks and optimiser moments: each RUN/seed-K resumes as a run of its own.
    cfg, env, policy, critic, learner = group()
    obs = env.reset()[0]
    learner.update(env, obs, cfg.tau, EpisodeStats(2))
    single = replace(cfg, num_seeds=1, seed=1)
    one_env = build_env(single, torch.device("cpu"))
    alone_policy, alone_critic = build_networks(single, one_env.observation_shape, one_env.A, torch.device("cpu"))
    alone = build_learner(single, one_env, alone_policy, alone_critic, torch.Generator())
    alone_policy.load_state_dict(policy.member(1).state_dict())
    alone_critic.load_state_dict(critic.member(1).state_dict())
    alone.load_state_dict(learner.member_state_dict(1))
    for stacked, p in zip(policy.member_parameters(), alone_policy.parameters(), strict=True):
        assert torch.equal(alone.optimizer.state[p]["exp_avg_sq"], learner.optimizer.state[stacked]["exp_avg_sq"][1])
    assert alone.return_scale.values == [learner.return_scale.values[1]]


@pytest.mark.parametrize("flags", ["--algo ppo", "--env maze:7x7", "--explore-bonus 0.1"])
def test_what_num_seeds_does_not_cover_is_refused_by_name(flags):
    from agent.run.cli import parse

    cfg, _ = parse(TrainConfig, [*"--num-seeds 2".split(), *flags.split()], prog="train.py")
    with pytest.raises(ValueError, match=r"^--num-seeds 2 trains pathwise agents .* not with --"):
        resolve(cfg)
