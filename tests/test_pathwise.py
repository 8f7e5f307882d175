"""agent.learning.pathwise: the entropy bonus over the next cell (`--entropy-over cells`)."""

from __future__ import annotations

import math

import pytest
import torch

from agent.learning.pathwise import action_entropy, cell_entropy, steps_without_positions
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import build_world, resolve_defaults


def test_cell_entropy_is_the_action_entropy_when_every_move_lands_elsewhere():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    next_cell = torch.tensor([[1, 2, 3, 4]]).expand(6, 4)
    expected = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(cell_entropy(logits, next_cell), expected)


def test_action_entropy_and_its_gradient_are_categoricals():
    """The entropy and its gradient are torch.distributions.Categorical's, computed in float64,
    to float32 rounding (Categorical's own float32 gradient is off from that by as much)."""
    torch.manual_seed(0)
    logits = torch.randn(300, 4) * 5
    logits[0, 1] = -1e30  # a probability that underflows to 0 adds 0, not NaN
    weights = torch.randn(300)
    mine, exact = logits.clone().requires_grad_(), logits.double().requires_grad_()
    got, expected = action_entropy(mine), torch.distributions.Categorical(logits=exact).entropy()
    (got * weights).sum().backward()
    (expected * weights.double()).sum().backward()
    assert torch.isfinite(got).all() and torch.isfinite(mine.grad).all()
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mine.grad, exact.grad.float(), rtol=1e-4, atol=1e-5)


def test_cell_entropy_is_the_entropy_of_the_next_cell_distribution():
    # Brute force: add up the probability of each distinct next cell, then take its entropy.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=g)
    next_cell = torch.randint(0, 3, (50, 4), generator=g)  # many repeated outcomes
    got = cell_entropy(logits, next_cell)
    pi = logits.softmax(-1)
    for b in range(50):
        mass: dict[int, float] = {}
        for a in range(4):
            mass[int(next_cell[b, a])] = mass.get(int(next_cell[b, a]), 0.0) + float(pi[b, a])
        expected = -sum(q * math.log(q) for q in mass.values())
        assert got[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_in_a_dead_end_the_bonus_pulls_towards_the_way_out():
    # Cell 7 is a dead end: up/down/left bump (stay at 7), right leads to 8.
    logits = torch.zeros(1, 4, requires_grad=True)  # uniform: 3/4 of the mass stays
    next_cell = torch.tensor([[7, 7, 7, 8]])
    h = cell_entropy(logits, next_cell)
    assert h.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    h.sum().backward()
    assert logits.grad[0, 3] > 0 > logits.grad[0, 0]  # more entropy = more mass on the exit
    # Its maximum is stay/leave at 1/2 each (ln 2), above the uniform policy's value.
    half = torch.log(torch.tensor([[1 / 6, 1 / 6, 1 / 6, 1 / 2]]))
    assert cell_entropy(half, next_cell).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("world", "entropy_over", "uses_cells"),
    [
        ({"env": "maze:9x9"}, "cells", True),
        ({"env": "four_rooms"}, "cells", True),
        ({"env": "four_rooms"}, "actions", False),
        ({"env": "four_rooms", "slip": 0.2}, "cells", False),  # random moves: no single next cell
    ],
)
def test_the_learner_reads_the_bonus_the_config_and_world_ask_for(world, entropy_over, uses_cells):
    cfg = TrainConfig(**world, num_envs=8, hidden=16, entropy_over=entropy_over, wandb_mode="disabled")
    cfg = resolve_defaults(cfg, build_world(cfg))
    env = build_env(cfg, torch.device("cpu"))
    env.reset()
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    logits = torch.randn(8, 4)
    got = learner._entropy(env, logits, env.world_id, env.state)
    by_cells = cell_entropy(logits, env.next_state[env.world_id, env.state, :, 0])
    by_actions = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(got, by_cells if uses_cells else by_actions)
    # Starts sit next to walls, so the two readings differ there: the test can tell them apart.
    assert not torch.allclose(by_cells, by_actions)


# --------------------------------------------------------------------------- the one-step objective
class _TablePolicy(torch.nn.Module):
    """Logits as a free (S, A) table read off one-hot observations."""

    def __init__(self, S: int, A: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.randn(S, A, generator=torch.Generator().manual_seed(4)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs @ self.logits


@pytest.mark.parametrize(
    ("slip", "penalty", "state_norm", "backups", "estimator"),
    [
        (0.0, 0.0, False, 0, "st"),
        (0.0, 0.0, False, 0, "exact"),
        (0.3, 0.0, False, 0, "st"),
        (0.3, 0.0, False, 0, "exact"),
        (0.0, 0.05, False, 0, "st"),
        (0.0, 0.0, True, 0, "st"),
        (0.3, 0.05, True, 0, "exact"),
        (0.0, 0.0, False, 3, "st"),
        (0.3, 0.0, False, 2, "exact"),
    ],
)
def test_a_one_step_lookahead_gradient_is_the_exact_policy_gradient_of_q(slip, penalty, state_norm, backups, estimator):
    # With a one-step look-ahead the objective at each action is linear in the one-hot action:
    # f(D) = sum_a D_a Q(s, a), Q(s, a) = E_o[r + gamma (1 - done) V(s')], read through the env and
    # the critic. ST at tau = 1 back-propagates J(pi) Q, the exact gradient of E_pi[Q]; with slip
    # the expected-outcome backward makes Q the expectation over outcomes. The logit penalty adds
    # its own gradient, 2 * penalty * (z - mean z) / A per visit, which does not vanish however
    # unlikely an action has become. With --state-norm, Q is standardised over each state's
    # actions first, (Q - mean Q) / max(rms, floor * scale), in units of the return scale. With
    # --critic oracle --actor-backups k, V is the critic after k greedy backups V <- max_a Q. The
    # exact estimator is this gradient by definition, at any tau.
    from agent.learning.pathwise import PathwiseLearner, StateNorm
    from agent.learning.rollout import EpisodeStats, VisitBonus
    from envs import load_map

    world = "#######\n#S..G.#\n#.L...#\n#...L.#\n#######"
    mdp = load_map(world, slip=slip, step_reward=-0.1, hazard_reward=-2.0)
    live = torch.nonzero(mdp.reachable()).flatten()
    B, S = len(live), mdp.num_states
    cfg = TrainConfig(
        env=world,
        slip=slip,
        step_reward=-0.1,
        hazard_reward=-2.0,
        num_envs=B,
        horizon=1,
        actor_steps=1,
        lookahead=1,
        estimator=estimator,
        tau=1.0,
        entropy_coef=0.0,
        logit_penalty=penalty,
        state_norm=state_norm,
        critic="oracle" if backups else "visited",
        actor_backups=backups,
        max_grad_norm=0.0,
        hidden=16,
    )
    env = build_env(cfg, torch.device("cpu"))
    obs = env.reset(options={"state": live})[0]
    policy = _TablePolicy(S, 4)
    _, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = PathwiseLearner(cfg, policy, critic, torch.Generator().manual_seed(0), VisitBonus(1, S, 0.0))
    learner.optimizer.step = lambda: None  # keep the gradient, skip the step
    with torch.no_grad():
        torch.nn.init.normal_(critic.head.weight, std=0.3)  # a critic with something to say (a table starts at 0)
        V = critic(torch.eye(S))  # (S,) the critic the actor reads (it is fitted after the actor)
        z = policy.logits.clone()  # (S, A)
        pi = z.softmax(-1)
    (scale,) = learner.return_scale.values  # the actor steps in the units known before its rollout
    learner.update(env, obs, 1.0, EpisodeStats())

    def q_of(V):  # (S,) -> (S, A)
        return (mdp.prob * (mdp.reward + learner.cfg.gamma * (~mdp.done) * V[mdp.next_state])).sum(-1)

    for _ in range(backups):
        V = q_of(V).max(-1).values
    Q = q_of(V)
    J = torch.diag_embed(pi) - pi[:, :, None] * pi[:, None, :]  # (S, A, A)
    expected = torch.zeros(S, 4)
    if state_norm:
        Q = Q - Q.mean(-1, keepdim=True)
        Q = Q / Q.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(StateNorm.FLOOR * scale) * scale
        assert (Q[live].pow(2).mean(-1) > 0.5 * scale**2).any()  # some rows are rescaled, not floored
    expected[live] = -(J[live] @ Q[live][:, :, None]).squeeze(-1) / (B * scale)  # each cell once
    expected[live] += 2 * penalty * (z[live] - z[live].mean(-1, keepdim=True)) / (4 * B)
    torch.testing.assert_close(policy.logits.grad, expected, rtol=1e-4, atol=1e-7)
    assert policy.logits.grad[live].abs().sum() > 0


def test_each_step_reads_the_value_map_of_the_world_the_env_is_in_now():
    # Procedural mazes: an env whose episode ends resets into another maze mid-update, and from
    # then on its successor values must come from that maze's value map. Every step asks for the
    # rows with the worlds the envs acted in at that step (a stale row, read once per update, was
    # a bug of the --num-seeds change).
    from agent.learning.rollout import EpisodeStats

    cfg = resolve_defaults(
        TrainConfig(env="maze:5x5", num_envs=32, horizon=16, maze_pool=4, device="cpu"),
        build_world(TrainConfig(env="maze:5x5")),
    )
    env = build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    acted_in, asked = [], []  # the envs' worlds at each step, and those each read of the values was given
    real_step, real_values = env.step, learner._closing_values

    def step(action, **kwargs):
        acted_in.append(env.world_id.clone())
        return real_step(action, **kwargs)

    def closing_values(*args):
        table = real_values(*args)
        row = table.row
        table.row = lambda world_id: asked.append((world_id.clone(), row(world_id))) or asked[-1][1]
        return table

    env.step, learner._closing_values = step, closing_values
    learner.update(env, env.reset()[0], cfg.tau, EpisodeStats())
    assert len(asked) == len(acted_in) == cfg.horizon
    assert any(not torch.equal(w, acted_in[0]) for w in acted_in), "no env changed maze: the test shows nothing"
    for (given, rows), world_id in zip(asked, acted_in, strict=True):
        assert torch.equal(given, world_id) and torch.equal(rows, world_id)  # one agent: world w's map is row w


@pytest.mark.parametrize(
    "flags",
    [
        {"env": "lake8x8", "num_seeds": 2},
        {"env": "maze:5x5", "maze_pool": 4, "explore_bonus": 0.1},  # images, worlds that change on reset
        {"env": "FrozenLake-v1", "explore_bonus": 0.1},  # slip, the expected-outcome gradient
        {"env": "FrozenLake-v1", "slip_gradient": "sampled"},
        {"env": "lake8x8", "critic": "oracle"},
    ],
)
def test_steps_without_positions_are_the_one_hot_path_bit_for_bit(flags, monkeypatch):
    """A look-ahead of one steps without (B, S) positions (`steps_without_positions`); two whole
    updates leave the networks, the optimiser and the metrics exactly as the one-hot path does."""
    from agent.learning import pathwise
    from agent.learning.rollout import EpisodeStats

    def two_updates(positionless: bool):
        monkeypatch.setattr(pathwise, "steps_without_positions", lambda cfg: positionless)
        cfg = TrainConfig(**flags, num_envs=32, horizon=8, device="cpu", wandb_mode="disabled")
        cfg = resolve_defaults(cfg, build_world(cfg))
        torch.manual_seed(0)
        env = build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
        policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
        learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
        obs, metrics = env.reset(seed=0)[0], []
        for _ in range(2):
            obs, m = learner.update(env, obs, cfg.tau, EpisodeStats(learner.members))
            metrics.append(m)
        return [*policy.state_dict().values(), *critic.state_dict().values(), obs], metrics

    assert steps_without_positions(TrainConfig())  # what train.py's defaults take
    (fast, fast_metrics), (slow, slow_metrics) = two_updates(True), two_updates(False)
    assert fast_metrics == slow_metrics
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))


@pytest.mark.parametrize(("critic", "updates", "explore_starts"), [("oracle", 36, 0.0), ("visited", 80, 0.5)])
def test_the_critic_learns_the_optimal_values_of_every_reachable_cell(critic, updates, explore_starts):
    # The critic's targets are greedy backups, so under a policy that never learns (learning rate
    # ~0) it still converges to V*, the value of acting greedily; each member of an ensemble
    # (--num-seeds) to its own copy. The oracle critic backs up every reachable cell, visited or
    # not; the visited one only the cells its rollouts were in, which exploring starts spread over
    # every reachable cell, so it gets there too, more slowly.
    from agent.learning.rollout import EpisodeStats
    from envs.oracle import value_iteration

    num_seeds = 2
    cfg = TrainConfig(
        env="lava_gap",
        num_envs=16,
        horizon=16,
        learning_rate=1e-12,
        num_seeds=num_seeds,
        wandb_mode="disabled",
        critic=critic,
        explore_starts=explore_starts,
    )
    cfg = resolve_defaults(cfg, build_world(cfg))
    env = build_env(cfg, torch.device("cpu"), num_envs=cfg.num_envs * num_seeds, explore_starts=explore_starts)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    v_star = value_iteration(env.mdp, cfg.gamma).values.float()  # (S,)
    live = env.reachable[0]
    obs = env.reset()[0]
    errors = []
    for _ in range(updates):
        obs, _ = learner.update(env, obs, cfg.tau, EpisodeStats(num_seeds))
        values = learner._value_tables(env)  # (num_seeds, S)
        errors.append(float((values[:, live] - v_star[live]).abs().max()))
    assert errors[0] > 0.3  # it starts far off: the test can tell
    assert errors[-1] < 0.03, errors[-10:]  # oracle 0.02, visited 0.004 on this seed


def test_the_exact_estimator_trains_as_st_at_tau_one_bit_for_bit():
    # At the default look-ahead of one the two are the same gradient (tests/test_straight_through.py),
    # so whole updates leave the same networks: a run with --estimator exact is the st run.
    from agent.learning.rollout import EpisodeStats

    def two_updates(estimator):
        cfg = TrainConfig(env="lava_gap", num_envs=32, horizon=8, estimator=estimator, wandb_mode="disabled")
        cfg = resolve_defaults(cfg, build_world(cfg))
        env = build_env(cfg, torch.device("cpu"), explore_starts=cfg.explore_starts)
        torch.manual_seed(0)
        policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
        learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
        obs = env.reset(seed=0)[0]
        for _ in range(2):
            obs, metrics = learner.update(env, obs, cfg.tau, EpisodeStats())
        return [*policy.state_dict().values(), *critic.state_dict().values()], metrics

    (st, st_metrics), (exact, exact_metrics) = two_updates("st"), two_updates("exact")
    assert st_metrics == exact_metrics
    assert all(torch.equal(a, b) for a, b in zip(st, exact, strict=True))
