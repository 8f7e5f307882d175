"""The model-based learner (agent/learning/model_based.py): its model learns a table world from
random transitions, its actor's gradient is the finite-difference one, and it is the default on a
black-box env, which it solves."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import run_train

from agent.learning.model_based import Replay, Window, WorldModel, imagined_returns
from agent.run.cli import CliError
from agent.run.commands import parse_train
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import resolve


def test_the_model_learns_a_deterministic_table_world_from_random_transitions():
    # lava_gap: walls, lava that ends the episode, a goal worth 1; one-hot cells as observations.
    torch.manual_seed(0)
    env = build_env(TrainConfig(env="lava_gap"), torch.device("cpu"), num_envs=256, explore_starts=1.0)
    obs, _ = env.reset(seed=0)
    batches = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        action = torch.randint(0, env.A, (env.num_envs,), generator=generator)
        next_obs, reward, terminated, _, info = env.step(action)
        batches.append((obs, F.one_hot(action, env.A).float(), reward, info["final_obs"], terminated))
        obs = next_obs
    data = [torch.cat(x) for x in zip(*batches, strict=True)]  # 10,240 transitions
    train, test = [x[:8192] for x in data], [x[8192:] for x in data]
    model = WorldModel(env.S, env.A, hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, 8192, (256,), generator=generator)
        loss, _ = model.loss(*(x[idx] for x in train))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted, reward, cont = model(test[0], test[1])
    # Stated tolerance: the next cell right on 99% of held-out transitions, rewards within 0.1,
    # and whether the episode ends right on 99%.
    assert (predicted.argmax(-1) == test[3].argmax(-1)).float().mean() >= 0.99
    assert (reward - test[2]).abs().max() < 0.1
    assert ((cont < 0) == test[4]).float().mean() >= 0.99


def test_the_taken_action_alone_gives_what_the_whole_forward_gives():
    # `taken` (the critic's targets) computes only each row's own action; `forward` computes every
    # action and picks one. Same numbers and gradients, with an action that no row took.
    torch.manual_seed(0)
    model = WorldModel(obs_dim=9, num_actions=4, hidden=16)
    obs, index = torch.rand(11, 9), torch.tensor([2, 0, 2, 1, 0, 0, 2, 1, 1, 2, 0])  # action 3: none
    weights = [torch.randn(11, 9), torch.randn(11), torch.randn(11)]  # a loss that reads every output

    def grads(outputs):
        loss = sum((w * out).sum() for w, out in zip(weights, outputs, strict=True))
        return torch.autograd.grad(loss, list(model.parameters()))

    whole, alone = model(obs, F.one_hot(index, 4).float()), model.taken(obs, index)
    for a, b in zip(whole, alone, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    d_whole, d_alone = grads(whole), grads(alone)
    for a, b in zip(d_whole, d_alone, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert d_alone[-1].view(4, 11)[3].abs().max() == 0  # the untaken action's bias is untouched


def _tiny_learner(lam: float = 0.0):
    cfg = TrainConfig(
        env="empty", algo="model", imagine_horizon=1, gae_lambda=lam, hidden=8, model_hidden=8, num_envs=4
    )
    cfg, world = resolve(cfg)
    env = build_env(cfg, torch.device("cpu"), world=world)
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    torch.manual_seed(1)
    for p in critic.parameters():  # a critic that is not all zeros, so V(next) matters
        p.data.normal_(0, 0.3)
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    return cfg, env, learner


@pytest.mark.parametrize("lam", [0.0, 0.95])
def test_the_actors_gradient_through_the_model_is_the_finite_difference_one(lam):
    # With H = 1 the imagined return is r + gamma c V(next) of the action taken, whatever lambda,
    # linear in the one-hot action (WorldModel predicts every action's outcome); straight-through
    # at tau = 1 then gives exactly the gradient of its expectation sum_a pi(a|s) q(s, a), which is
    # a smooth function of the policy's parameters and can be differenced.
    cfg, env, learner = _tiny_learner(lam)
    torch.set_default_dtype(torch.float64)
    try:
        learner.model.double(), learner.critic.double(), learner.policy.double()
        start = torch.eye(env.S, dtype=torch.float64)[:12]  # (N, S): 12 cells as observations
        returns, weights, *_ = learner.imagine(start, 1.0)
        params = list(learner.policy.parameters())
        grad = torch.autograd.grad((weights * returns).mean(), params)

        def expected(policy_params) -> float:
            with torch.no_grad():
                saved = [p.clone() for p in params]
                for p, v in zip(params, policy_params, strict=True):
                    p.copy_(v)
                outcome = learner.model.every_action(start)  # (N, A, D + 2)
                nexts = start.unsqueeze(1) + outcome[..., : env.S]
                q = outcome[..., -2] + cfg.gamma * torch.sigmoid(outcome[..., -1]) * learner.critic(
                    nexts.flatten(0, 1)
                ).view(12, env.A)
                value = float((learner.policy(start).softmax(-1) * q).sum(-1).mean())
                for p, v in zip(params, saved, strict=True):
                    p.copy_(v)
            return value

        eps = 1e-6
        base = [p.detach().clone() for p in params]
        checked = 0
        for i, p in enumerate(params):
            for j in range(0, p.numel(), max(1, p.numel() // 5)):
                up = [b.clone() for b in base]
                down = [b.clone() for b in base]
                up[i].view(-1)[j] += eps
                down[i].view(-1)[j] -= eps
                fd = (expected(up) - expected(down)) / (2 * eps)
                assert grad[i].view(-1)[j].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)
                checked += 1
        assert checked >= 15 and any(g.abs().sum() > 0 for g in grad)
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_critic_learns_a_reward_from_the_replay_after_its_window_has_gone():
    # Cells 0-3 step to cell 4 for a reward of 1 and the episode ends; the window (no reward) says
    # nothing of it. Only the replay's one-step TD targets r + gamma (1 - terminal) V(s') can teach it.
    cfg, env, learner = _tiny_learner()
    eye = torch.eye(env.S)
    obs, nxt = eye[:4], eye[4:5].expand(4, -1)
    batch = (
        obs,
        F.one_hot(torch.zeros(4, dtype=torch.long), env.A).float(),
        torch.ones(4),
        nxt,
        torch.ones(4, dtype=torch.bool),
    )
    window = Window(eye[10:14], torch.zeros(4), torch.zeros(0, env.A), torch.zeros(0, env.S), torch.zeros(0))
    with torch.no_grad():
        assert learner.critic(obs).sub(1).abs().min() > 0.2  # not there to begin with
    learner.critic_optimizer.param_groups[0]["lr"] = 3e-3  # three times the default, for a short test
    for _ in range(1000):
        learner.fit_critic(window, batch)
    with torch.no_grad():
        assert learner.critic(obs).tolist() == pytest.approx([1.0] * 4, abs=0.05)
        assert learner.critic(eye[10:14]).abs().max() < 0.05  # the window's returns, 0, held too


def test_the_critic_reads_critic_batch_of_the_window_s_rows_each_whole_and_all_with_0():
    cfg, env, learner = _tiny_learner()
    eye = torch.eye(env.S)
    steps = torch.arange(6)
    actions = F.one_hot(steps % env.A, env.A).float()
    window = Window(eye[:6], steps.float(), actions[:4], eye[10:14], 10 + steps[:4].float())
    learner.cfg = replace(cfg, critic_batch=0)
    assert learner.thinned(window) is window  # --critic-batch 0: all of it
    learner.cfg = replace(cfg, critic_batch=32)
    thin = learner.thinned(window)
    assert [len(x) for x in thin[:5]] == [32] * 5 and thin.action is None  # the actor's part is not thinned
    # Each row drawn keeps its own target: observation i with return i, successor j with 10 + j.
    assert torch.equal(thin.obs, eye[thin.returns.long()])
    j = thin.next_returns.long() - 10
    assert torch.equal(thin.next_from, eye[10 + j]) and torch.equal(thin.next_action, actions[j])
    assert len(set(thin.returns.tolist())) > 1  # drawn, not one row repeated
    ended = Window(eye[:6], steps.float(), actions[:0], eye[:0], steps[:0].float())  # every step ended
    assert [len(x) for x in learner.thinned(ended)[:5]] == [32, 32, 0, 0, 0]
    learner.fit_critic(ended, (eye[:4], actions[:4], torch.zeros(4), eye[1:5], torch.zeros(4, dtype=torch.bool)))


@pytest.mark.parametrize("regulariser", ["log-barrier", "entropy"])
def test_the_log_barrier_pulls_a_dropped_action_back_and_the_entropy_does_not(regulariser):
    # Every action's q is 0 (a model that predicts nothing, a critic of zeros), so the actor's
    # gradient is the regulariser's alone; the policy puts all but e^-20 on action 0. The log
    # barrier's gradient in each dropped action's logit is coef (1/A - pi(a)) ~ coef / A; the
    # entropy's is pi(a) (log pi(a) + H), all but 0.
    cfg, env, learner = _tiny_learner()
    learner.cfg = cfg = replace(cfg, actor_regulariser=regulariser)
    with torch.no_grad():
        learner.model.net[-1].weight.zero_(), learner.model.net[-1].bias.zero_()
        for p in learner.critic.parameters():
            p.zero_()
        head = learner.policy.head
        head.weight.zero_(), head.bias.zero_()
        head.bias[0] = 20.0
    eye = torch.eye(env.S)
    batch = (eye[:8], torch.zeros(8, env.A), torch.zeros(8), eye[:8], torch.zeros(8, dtype=torch.bool))
    window = Window(eye[:4], torch.zeros(4), torch.zeros(0, env.A), torch.zeros(0, env.S), torch.zeros(0))
    learner.train_actor_critic(batch, 1.0, window)
    pull = -learner.policy.head.bias.grad[1:]  # (A - 1,) how hard the loss pushes each dropped logit up
    if regulariser == "log-barrier":
        assert pull.tolist() == pytest.approx([cfg.entropy_coef / env.A] * (env.A - 1), rel=1e-4)
    else:
        assert pull.abs().max() < 1e-6


def test_real_actor_coef_adds_the_score_function_of_the_window_s_real_advantages():
    # Every imagined q is 0 and the regulariser weighs nothing, so the actor's gradient is the
    # real steps' term alone: -coef mean(A_t grad log pi(a_t | s_t)).
    cfg, env, learner = _tiny_learner()
    learner.cfg = cfg = replace(cfg, entropy_coef=0.0, real_actor_coef=0.5)
    with torch.no_grad():
        learner.model.net[-1].weight.zero_(), learner.model.net[-1].bias.zero_()
        for p in learner.critic.parameters():
            p.zero_()
    eye = torch.eye(env.S)
    batch = (eye[:8], torch.zeros(8, env.A), torch.zeros(8), eye[:8], torch.zeros(8, dtype=torch.bool))
    action, advantage = torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, -2.0, 0.5, 0.0])
    window = Window(
        eye[:4], torch.zeros(4), torch.zeros(0, env.A), torch.zeros(0, env.S), torch.zeros(0), action, advantage
    )
    head = learner.policy.head
    logp = torch.log_softmax(learner.policy(eye[:4]), -1)[torch.arange(4), action]  # (4,)
    (expected,) = torch.autograd.grad(-0.5 * (logp * advantage).mean(), head.bias)
    learner.optimizer.param_groups[0]["lr"] = 0.0  # the gradient is read, the policy left as it is
    learner.train_actor_critic(batch, 1.0, window)
    assert torch.allclose(head.bias.grad, expected, atol=1e-6) and expected.abs().max() > 1e-3
    learner.cfg = replace(cfg, real_actor_coef=0.0)  # and without it, nothing
    learner.train_actor_critic(batch, 1.0, window)
    assert head.bias.grad.abs().max() < 1e-7


def test_the_natural_actor_moves_each_logit_by_its_action_s_q_less_the_policy_s_mean():
    # Action a's reward is 0.1 a through the model and nothing else differs, so q_a = 0.1 a + const;
    # the natural gradient in logit a is q_a - E_pi q, where the exact one is pi(a) times that.
    cfg, env, learner = _tiny_learner()
    learner.cfg = cfg = replace(cfg, entropy_coef=0.0, actor_grad="natural")
    last = learner.model.net[-1]
    with torch.no_grad():
        last.weight.zero_(), last.bias.zero_()
        last.bias.view(env.A, env.S + 2)[:, env.S] = 0.1 * torch.arange(env.A)  # each action's reward
    eye = torch.eye(env.S)
    batch = (eye[:8], torch.zeros(8, env.A), torch.zeros(8), eye[:8], torch.zeros(8, dtype=torch.bool))
    window = Window(eye[:4], torch.zeros(4), torch.zeros(0, env.A), torch.zeros(0, env.S), torch.zeros(0))
    with torch.no_grad():
        pi = torch.softmax(learner.policy(eye[:8]), -1)  # (8, A)
    q = 0.1 * torch.arange(env.A).float()  # (A,) up to a constant per state
    expected = -(q - (pi * q).sum(-1, keepdim=True)).mean(0)  # (A,) d loss / d head bias
    learner.optimizer.param_groups[0]["lr"] = 0.0
    learner.train_actor_critic(batch, 1.0, window)
    assert torch.allclose(learner.policy.head.bias.grad, expected, atol=1e-5)
    with pytest.raises(ValueError, match="--actor-grad natural with --imagine-horizon 2"):
        resolve(replace(TrainConfig(env="empty", algo="model"), actor_grad="natural", imagine_horizon=2))


def test_a_replay_is_saved_oldest_first_and_loads_its_newest_into_any_capacity():
    def transitions(first: int, n: int) -> tuple[torch.Tensor, ...]:
        k = torch.arange(first, first + n, dtype=torch.float32)  # transition k carries k everywhere
        return k[:, None].repeat(1, 3), F.one_hot(k.long() % 2, 2).float(), k, k[:, None].repeat(1, 3) + 0.5, k > 5

    replay = Replay(5, 3, 2, torch.device("cpu"))
    replay.add(*transitions(0, 4))
    replay.add(*transitions(4, 4))  # 8 added into 5 places: 3 to 7 are held, wrapped round
    state = replay.state_dict()
    assert state["reward"].tolist() == [3, 4, 5, 6, 7] and state["terminal"].tolist() == [False] * 3 + [True] * 2
    assert torch.equal(state["next_obs"][:, 0], state["reward"] + 0.5)
    smaller, larger = Replay(3, 3, 2, torch.device("cpu")), Replay(10, 3, 2, torch.device("cpu"))
    smaller.load_state_dict(state)
    larger.load_state_dict(state)
    assert smaller.state_dict()["reward"].tolist() == [5, 6, 7]
    larger.add(*transitions(8, 2))  # it goes on after what it loaded
    assert larger.size == 7 and larger.state_dict()["reward"].tolist() == [3, 4, 5, 6, 7, 8, 9]
    draws = larger.sample(64, torch.Generator().manual_seed(0))
    assert set(draws[2].tolist()) <= set(range(3, 10)) and torch.equal(draws[0][:, 0], draws[2])


def test_imagined_returns_are_the_lambda_returns_and_the_one_step_form_keeps_their_value():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])  # (H, N)
    values = torch.tensor([[0.5], [1.0], [3.0], [4.0]])  # (H + 1, N)
    conts = torch.tensor([[1.0], [0.5], [1.0]])
    gamma, lam = 0.9, 0.8
    g2 = 2.0 + gamma * 1.0 * 4.0
    g1 = 0.0 + gamma * 0.5 * ((1 - lam) * 3.0 + lam * g2)
    g0 = 1.0 + gamma * 1.0 * ((1 - lam) * 1.0 + lam * g1)
    assert imagined_returns(rewards, values, conts, gamma, lam)[:, 0].tolist() == pytest.approx([g0, g1, g2])
    one_step = rewards + gamma * conts * values[1:]
    same = imagined_returns(rewards, values, conts, gamma, lam, one_step)
    assert same[:, 0].tolist() == pytest.approx([g0, g1, g2])
    assert torch.equal(imagined_returns(rewards, None, conts, gamma, lam, one_step), same)  # V is not read


def test_the_default_learner_of_a_black_box_env_is_the_model_learner():
    assert parse_train(["--env", "MiniGrid-Empty-5x5-v0"])[0].algo == "model"
    assert parse_train(["--env", "CartPole-v1"])[0].algo == "model"
    assert parse_train(["--env", "FrozenLake-v1"])[0].algo == "pathwise"  # a table: the pathwise learner
    assert parse_train(["ppo", "--env", "CartPole-v1"])[0].algo == "ppo"
    cfg, _ = resolve(replace(parse_train(["--env", "CartPole-v1"])[0]))
    assert (cfg.num_envs, cfg.explore_starts, cfg.obs) == (16, 0.0, "flat")
    # The learner the env chooses takes its own flags unnamed, and another learner's are refused as its.
    cfg, given = parse_train(["--env", "MiniGrid-Empty-5x5-v0", "--train-steps", "4"])
    assert (cfg.algo, cfg.train_steps) == ("model", 4) and "train_steps" in given and "algo" not in given
    with pytest.raises(CliError, match="--clip-coef is a flag of ppo, and this run trains model"):
        parse_train(["--env", "MiniGrid-Empty-5x5-v0", "--clip-coef", "0.1"])
    with pytest.raises(CliError, match="--train-steps is a flag of model, and this run trains pathwise"):
        parse_train(["--env", "four_rooms", "--train-steps", "4"])
    with pytest.raises(ValueError, match="--env MiniGrid-Nope-v0: no such gymnasium env"):  # the env's error first
        parse_train(["--env", "MiniGrid-Nope-v0", "--train-steps", "4"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["model", "--env", "CartPole-v1"], (3e-4, 1e-3, 0.01, 0.95)),
        (["ppo", "--env", "CartPole-v1"], (3e-3, 3e-3, 0.01, 0.99)),
        (["pathwise", "--env", "lava_gap"], (3e-3, 3e-3, 0.01, 0.99)),
        (["--env", "MiniGrid-Empty-5x5-v0"], (3e-4, 1e-3, 0.01, 0.95)),  # the model learner, chosen by the env
        (
            ["model", "--env", "CartPole-v1", "--learning-rate", "0.02", "--entropy-coef", "0", "--gamma", "0.99"],
            (0.02, 1e-3, 0.0, 0.99),
        ),
    ],
)
def test_each_learner_resolves_its_own_optimiser_defaults_and_a_given_value_stays(argv, expected):
    cfg, _ = resolve(parse_train(argv)[0])
    assert (cfg.learning_rate, cfg.critic_learning_rate, cfg.entropy_coef, cfg.gamma) == expected


@pytest.mark.learning
def test_the_default_learner_solves_minigrid_empty_5x5(tmp_path):
    # The model learner (pathwise through the learnt model), from train.py's defaults: the
    # shortest path is 5 steps, worth 1 - 0.9 * 5 / 100 = 0.955.
    runs = tmp_path / "runs"
    args = "--env MiniGrid-Empty-5x5-v0 --total-timesteps 30720 --eval-every 10240 --eval-episodes 32"
    common = ["--runs-dir", str(runs), "--run-name", "mg", "--wandb-mode", "disabled", "--no-progress"]
    proc = run_train([*args.split(), "--stop-at-success", "1.0", *common], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((runs / "mg" / "config.json").read_text())["algo"] == "model"
    final = json.loads((runs / "mg" / "final_eval.json").read_text())
    assert final["success_rate"] == 1.0 and final["mean_return"] >= 0.93
