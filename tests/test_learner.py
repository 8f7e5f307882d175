"""agent.learning.learner: the learning rates over a run (`--actor-warmup`, `--anneal-lr`) and the clipped step."""

from __future__ import annotations

import pytest
import torch

from agent.learning.learner import clip_and_step, percentiles
from agent.learning.optim import Adam
from agent.learning.rollout import EpisodeStats
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import build_world, resolve_defaults


def make_learner(**overrides):
    cfg = TrainConfig(
        **{"env": "four_rooms", "num_envs": 32, "horizon": 4, "hidden": 16, "wandb_mode": "disabled", **overrides}
    )
    cfg = resolve_defaults(cfg, build_world(cfg))
    torch.manual_seed(0)
    env = build_env(cfg, torch.device("cpu"))
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    return cfg, env, policy, build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("step", "fraction"), [(0, 1 / 1000), (499, 0.5), (999, 1.0), (5000, 1.0)])
def test_the_learning_rate_rises_linearly_over_the_warmup(step, fraction):
    cfg, _, _, learner = make_learner(actor_warmup=1000, learning_rate=0.02, anneal_lr=False)
    learner.set_learning_rates(step)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * fraction)
    assert learner.critic_optimizer.param_groups[0]["lr"] == cfg.critic_learning_rate  # the critic learns at once


def test_no_warmup_keeps_the_learning_rate():
    _, _, _, learner = make_learner(actor_warmup=0, learning_rate=0.02, anneal_lr=False)
    learner.set_learning_rates(0)
    assert learner.optimizer.param_groups[0]["lr"] == 0.02


@pytest.mark.parametrize("warmup", [0, 10_000])
def test_a_first_update_moves_the_policy_by_the_warmed_up_rate(warmup):
    # Adam's first step moves each weight by about lr * sign(gradient): the rate set by
    # set_learning_rates is the one the update uses, so a warming-up policy barely moves at step 0.
    cfg, env, policy, learner = make_learner(actor_warmup=warmup, actor_steps=1)  # one Adam step
    before = [p.detach().clone() for p in policy.parameters()]
    learner.set_learning_rates(0)
    learner.update(env, env.reset()[0], tau=1.0, stats=EpisodeStats())
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(policy.parameters(), before, strict=True))
    rate = cfg.learning_rate * (1 / warmup if warmup else 1.0)
    assert 0.5 * rate < moved <= 1.01 * rate


@pytest.mark.parametrize(("step", "left"), [(0, 1.0), (2500, 0.75), (5000, 0.5), (10_000, 0.0), (12_000, 0.0)])
def test_anneal_lr_lowers_the_policy_rate_linearly_to_zero_at_the_budget(step, left):
    cfg, _, _, learner = make_learner(
        total_timesteps=10_000, learning_rate=0.02, critic_learning_rate=0.01, actor_warmup=1000
    )
    learner.set_learning_rates(step)
    warm = min(1.0, (step + 1) / 1000)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * warm * left)
    assert learner.critic_optimizer.param_groups[0]["lr"] == 0.01  # the critic's stays


@pytest.mark.parametrize("max_norm", [1.0, 1e6, 0.0])
def test_clip_and_step_clips_as_torchs_clip_grad_norm(max_norm):
    """The norm returned and the gradients left are torch.nn.utils.clip_grad_norm_'s, bit for bit
    (0: no clipping, the norm still reported)."""
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(11, 5)
    for net in nets:
        (net(x).pow(2).sum() * 10).backward()
    norm = clip_and_step(nets[0].parameters(), Adam(nets[0].parameters(), lr=0.0), max_norm)
    expected = torch.nn.utils.clip_grad_norm_(nets[1].parameters(), max_norm or float("inf"))
    assert norm.shape == (1,) and norm[0].item() == expected.item() > 1.0
    for mine, theirs in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(mine.grad, theirs.grad)
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in nets[0].parameters()]))
    assert clipped.item() == pytest.approx(min(max_norm or float("inf"), expected.item()), rel=1e-5)


def test_percentiles_are_torch_quantile_bit_for_bit():
    """The return scale's 5th and 95th percentiles by selection equal torch.quantile's, ties,
    tiny rows and rows of one repeated value included."""
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(3, n, generator=gen) for n in (2, 3, 7, 20, 101, 4096, 65_536)]
    rows += [torch.randint(-3, 4, (4, n), generator=gen).float() for n in (5, 21, 1000, 8192)]  # many ties
    rows += [torch.full((2, 50), 0.25), torch.randn(1, 1, generator=gen)]
    for x in rows:
        for qs in ((0.05, 0.95), (0.0, 0.5, 1.0), (0.37,)):
            want = torch.quantile(x, torch.tensor(qs), dim=1)
            assert torch.equal(percentiles(x, qs), want), (tuple(x.shape), qs)


def test_the_guides_learner_meets_the_contract_and_a_learner_without_update_does_not():
    """docs/guide.md's "Adding a learner" block, run as written: it subclasses `Learner`, updates
    on a real env, and its metrics reach the names the trainer logs. `Learner` itself refuses to
    be built without an `update`."""
    from pathlib import Path

    from agent.learning.learner import Learner
    from agent.learning.policy import PolicyNet, ValueNet
    from agent.learning.rollout import VisitBonus

    guide = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()
    block = guide.split("## Adding a learner", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "docs/guide.md", "exec"), namespace)
    cfg, env, policy, _ = make_learner(algo="reinforce", step_reward=-0.1)  # a reward every step: a gradient
    critic = ValueNet(env.observation_shape, cfg.hidden)
    bonus = VisitBonus(env.num_worlds, env.S, 0.0, env.device)
    mine = namespace["MyLearner"](cfg, policy, critic, torch.Generator().manual_seed(0), bonus)
    before = [p.detach().clone() for p in policy.parameters()]
    obs, _ = env.reset()
    obs, metrics = mine.update(env, obs, 1.0, EpisodeStats())
    assert obs.shape == (cfg.num_envs, env.S)
    assert {"losses/policy_loss", "losses/value_loss", "losses/grad_norm"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))
    with pytest.raises(TypeError, match="update"):
        Learner(cfg, PolicyNet(env.observation_shape), critic, torch.Generator(), bonus)
