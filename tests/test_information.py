"""agent.learning.information: every learner's information class, and the default learner reads the step
only from cells that some env has been in."""

from __future__ import annotations

import pytest
import torch

from agent.learning.critic import rescale_critic
from agent.learning.information import INFORMATION_CLASSES, SimulatorView, view_for
from agent.learning.rollout import EpisodeStats
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import build_world, resolve_defaults
from envs import load_map

# A room split by a wall with a door: most cells are far from the start, and a short run
# without exploring starts leaves many of them unvisited.
ROOMS = """
S....#.....
.....#.....
...........
.....#.....
.....#....G
"""


def make(**overrides):
    cfg = TrainConfig(env=ROOMS, num_envs=32, horizon=16, wandb_mode="disabled", **overrides)
    cfg = resolve_defaults(cfg, build_world(cfg))
    env = build_env(cfg, torch.device("cpu"), explore_starts=cfg.explore_starts)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    return cfg, env, build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, "simulator"),
        ({"critic": "none"}, "simulator"),
        ({"critic": "oracle"}, "model"),
        ({"lookahead": 2}, "model"),  # the derivative in the position reads every cell's step
        ({"estimator": "gs"}, "model"),  # soft actions mix every cell's step
        ({"algo": "ppo"}, "samples"),
        ({"algo": "reinforce"}, "samples"),
    ],
)
def test_every_learner_has_one_information_class(flags, expected):
    _, _, learner = make(**flags)
    assert learner.information == expected and learner.information in INFORMATION_CLASSES
    assert TrainConfig().critic == "visited"  # the default learner is of the simulator class


@pytest.mark.parametrize("explore_starts", [0.0, 0.5])
def test_the_default_learner_reads_no_step_from_a_cell_no_env_has_been_in(explore_starts):
    # Every read of the env's dynamics by the default learner goes through its SimulatorView; the
    # test records the cells the envs have been in itself, from the env's own states after every
    # reset and step (an exploring start counts as being in the start cell), and fails on a read
    # of any other cell.
    cfg, env, learner = make(explore_starts=explore_starts)
    obs = env.reset(seed=0)[0]
    been = torch.zeros(env.num_worlds, env.S, dtype=torch.bool)  # (W, S)
    been[env.world_id, env.state] = True
    real_step, reads = env.step, []

    def step(action, **kwargs):
        worlds = env.world_id
        out = real_step(action, **kwargs)
        been[worlds, out[4]["final_state"]] = True
        been[env.world_id, env.state] = True
        return out

    def on_read(worlds, cells):
        reads.append(len(cells))
        assert bool(been[worlds, cells].all()), "a read of the step from a cell that no env had been in"

    env.step = step
    view_for(learner.information, env, learner._views).on_read = on_read  # the view the learner will use
    for _ in range(4):
        obs, _ = learner.update(env, obs, cfg.tau, EpisodeStats())
    assert sum(reads) > 0, "the learner read nothing: the test shows nothing"
    if explore_starts == 0:
        assert not bool(been[0, env.mdp.reachable()].all()), "every cell was visited: the test shows nothing"


def test_the_simulator_view_hides_the_tables_and_refuses_unvisited_cells():
    env = build_env(TrainConfig(env=ROOMS, num_envs=4), torch.device("cpu"))
    env.reset(seed=0)
    view = SimulatorView(env)
    for name in ("next_state", "reward_table", "prob", "done", "tables", "reachable", "mdp", "start"):
        with pytest.raises(AttributeError, match="simulator-class"):
            getattr(view, name)
    start = env.state[:1]  # (1,)
    ns, r, c, p = view.step_rows(env.world_id[:1], start)  # the cell the env is in: allowed
    assert ns.shape == (1, env.A, env.O)
    far = torch.tensor([env.S - 1])  # the goal corner: no env has been there
    with pytest.raises(ValueError, match="no env has been in"):
        view.step_rows(torch.zeros(1, dtype=torch.long), far)


def test_the_critics_unit_comes_from_the_rewards_seen():
    # The critic counts values in units of the largest reward magnitude seen so far, never the
    # tables' largest entry: 1 before any reward is seen, -100 after the first fall off the cliff.
    world = ".......\n.......\nS.LLL.G"
    cfg = resolve_defaults(
        TrainConfig(env=world, hazard_reward=-100.0, step_reward=-1.0, num_envs=64, wandb_mode="disabled"),
        build_world(TrainConfig(env=world, hazard_reward=-100.0, step_reward=-1.0)),
    )
    env = build_env(cfg, torch.device("cpu"), explore_starts=cfg.explore_starts)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    assert float(critic.scale) == 1.0
    obs = env.reset(seed=0)[0]
    before = critic(torch.eye(env.S)).detach()
    rescale_critic(critic, torch.tensor([[-1.0, -100.0]]))
    assert float(critic.scale) == 100.0
    torch.testing.assert_close(critic(torch.eye(env.S)).detach(), before)  # every value stays what it was
    rescale_critic(critic, torch.tensor([[-1.0]]))
    assert float(critic.scale) == 100.0  # a unit never falls
    learner.update(env, obs, cfg.tau, EpisodeStats())
    assert float(critic.scale) == 100.0


def test_exact_is_the_exact_policy_gradient_of_the_oracle_with_the_critic_fixed():
    # On a small room with every reachable cell in one env, the exact estimator's gradient at
    # look-ahead 1 equals the gradient of sum_s sum_a pi(a|s) Q(s, a), Q from the oracle's backup
    # of the fixed critic through the whole tables (envs.oracle), by autograd: enumeration of the
    # four actions on the learner's side, a different computation on the oracle's.
    from agent.learning.pathwise import PathwiseLearner
    from agent.learning.rollout import VisitBonus
    from envs.oracle import _backup

    room = "S....\n.....\n..#..\n.....\n....G"
    mdp = load_map(room, step_reward=-0.05)
    live = torch.nonzero(mdp.reachable()).flatten()
    B, S = len(live), mdp.num_states
    cfg = TrainConfig(
        env=room, step_reward=-0.05, num_envs=B, horizon=1, estimator="exact", tau=3.0, entropy_coef=0.0,
        logit_penalty=0.0, state_norm=False, max_grad_norm=0.0, explore_starts=0.0,
    )  # fmt: skip
    cfg = resolve_defaults(cfg, mdp)
    env = build_env(cfg, torch.device("cpu"))
    obs = env.reset(options={"state": live})[0]

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.randn(S, 4, generator=torch.Generator().manual_seed(1)))

        def forward(self, x):
            return x @ self.logits

    policy = Table()
    _, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    with torch.no_grad():
        torch.nn.init.normal_(critic.head.weight, std=0.5)
        V = critic(torch.eye(S))  # (S,) the fixed critic
    learner = PathwiseLearner(cfg, policy, critic, torch.Generator().manual_seed(0), VisitBonus(1, S, 0.0))
    learner.optimizer.step = lambda: None  # keep the gradient
    learner.update(env, obs, cfg.tau, EpisodeStats())

    z = policy.logits.detach().clone().requires_grad_()
    Q = _backup(mdp, V.double(), cfg.gamma, mdp.reward.double())  # (S, A) the oracle's
    objective = (torch.softmax(z.double(), -1) * Q)[live].sum() / B
    (expected,) = torch.autograd.grad(-objective, z)
    torch.testing.assert_close(policy.logits.grad.double(), expected.double(), rtol=1e-5, atol=1e-8)
    assert policy.logits.grad[live].abs().sum() > 0
