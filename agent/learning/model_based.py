"""The model-based learner: a model of the env learnt from the agent's own transitions, and a
policy trained by imagining H steps through it, the return back-propagated through the
straight-through Gumbel actions and the model's dynamics into the policy (Dreamer's actor and
critic, Hafner et al. 2020-2023, whose discrete actions take REINFORCE instead).

It knows only what it experienced (information class: samples), so it runs where no table and no
differentiable step exist: black-box envs such as Minigrid, and the gridworlds alike.

Each update: T real steps of the B envs (Gumbel-max actions), added to a replay of the last
`--replay-size` transitions; then `--train-steps` times, on a minibatch of replayed transitions:
a step of the model; H imagined steps under the policy from the minibatch's observations; a step
of the actor, whose loss is minus the imagined TD(lambda) returns (pathwise, `--actor-grad
pathwise`) or their score-function form (`--actor-grad reinforce`); a step of the critic on real
experience (`fit_critic`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from agent.learning.critic import lambda_returns
from agent.learning.gumbel import gumbel_max_sample
from agent.learning.learner import Learner, clip_and_step
from agent.learning.optim import Adam
from agent.learning.rollout import EpisodeStats, collect
from agent.learning.straight_through import straight_through
from agent.run import interrupt


class WorldModel(nn.Module):
    """(observation (N, D), one-hot action (N, A)) -> (next observation (N, D), reward (N,),
    continuation logit (N,)).

    An MLP of the observation predicts the outcome of every action, (N, A, D + 2), and the action
    picks its own: the prediction is linear in the one-hot action, as the gridworlds' step is. A
    straight-through gradient through one step is then J(pi) times the predictions' differences
    between the actions, not the network's derivative in a direction between them, which
    need not rank the actions at all. The next observation is predicted as a change of the current
    one, most of which stays as it is from one step to the next."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 256) -> None:
        super().__init__()
        self.obs_dim, self.num_actions = obs_dim, num_actions
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, num_actions * (obs_dim + 2)),
        )

    def every_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The predicted change of observation, reward and continuation logit of every action, (N, A, D + 2)."""
        return self.net(obs).view(*obs.shape[:-1], self.num_actions, self.obs_dim + 2)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = (action.unsqueeze(-1) * self.every_action(obs)).sum(-2)  # (N, D + 2)
        return self.split(obs, out)

    def split(self, obs: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next observation (N, D), reward (N,), continuation logit (N,)) from one action's outcome (N, D + 2)."""
        return obs + out[..., : self.obs_dim], out[..., self.obs_dim], out[..., self.obs_dim + 1]

    def taken(self, obs: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward` for the one-hot actions `index` (N,): the same numbers (and gradients), from
        the last layer's rows of each row's own action only, a fraction 1 / A of that layer's work."""
        hidden = self.net[:-1](obs)  # (N, H)
        last = self.net[-1]
        weights = last.weight.view(self.num_actions, self.obs_dim + 2, -1).unbind(0)  # A x (D + 2, H)
        biases = last.bias.view(self.num_actions, self.obs_dim + 2).unbind(0)  # A x (D + 2,)
        order = torch.argsort(index, stable=True)  # (N,) the rows grouped by action
        groups = hidden[order].split(torch.bincount(index, minlength=self.num_actions).tolist())
        out = torch.cat([F.linear(h, w, b) for h, w, b in zip(groups, weights, biases, strict=True)])  # (N, D + 2)
        return self.split(obs, out[torch.argsort(order)])

    def loss(self, obs, action, reward, next_obs, terminal) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Squared errors of the next observation and the reward, and the cross-entropy of the
        continuation, on a batch of real transitions (each (N, ...); `action` one-hot)."""
        predicted, r, cont = self(obs, action)
        parts = {
            "obs": (predicted - next_obs).pow(2).sum(-1).mean(),
            "reward": (r - reward).pow(2).mean(),
            "continue": F.binary_cross_entropy_with_logits(cont, (~terminal).float()),
        }
        return sum(parts.values()), parts


class Replay:
    """The last `capacity` real transitions, sampled uniformly, on the learner's device. A run that
    stops early keeps them in its checkpoint (`state_dict`), for --resume; the periodic checkpoints
    do not (100,000 of Minigrid's transitions are about 120 MB)."""

    def __init__(self, capacity: int, obs_dim: int, num_actions: int, device: torch.device) -> None:
        self.capacity, self.size, self.at = capacity, 0, 0
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.action = torch.zeros(capacity, num_actions, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.terminal = torch.zeros(capacity, dtype=torch.bool, device=device)

    FIELDS = ("obs", "action", "reward", "next_obs", "terminal")  # the order `add` takes them in

    def add(self, obs, action, reward, next_obs, terminal) -> None:
        """Transitions (n, ...), overwriting the oldest once full."""
        n = obs.shape[0]
        idx = (self.at + torch.arange(n, device=obs.device)) % self.capacity  # (n,)
        for name, value in zip(self.FIELDS, (obs, action, reward, next_obs, terminal), strict=True):
            getattr(self, name)[idx] = value
        self.at = (self.at + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The transitions held, oldest first."""
        order = (self.at - self.size + torch.arange(self.size, device=self.obs.device)) % self.capacity  # (size,)
        return {k: getattr(self, k)[order].clone() for k in self.FIELDS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Hold the newest `capacity` of the stored transitions (all of them, unless the capacity
        is now smaller)."""
        self.at = self.size = 0
        n = min(len(state["reward"]), self.capacity)
        self.add(*(state[k][len(state[k]) - n :].to(self.obs.device) for k in self.FIELDS))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(self.size, (n,), generator=generator, device=generator.device)
        return self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.terminal[idx]


def imagined_returns(
    rewards: torch.Tensor,
    values: torch.Tensor | None,
    conts: torch.Tensor,
    gamma: float,
    lam: float,
    one_step: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD(lambda) returns of H imagined steps, (H, N): G_t = r_t + gamma c_t ((1 - lambda) V_{t+1}
    + lambda G_{t+1}), G_H = V_H, from rewards (H, N), values (H + 1, N) and the predicted chances
    of going on, c (H, N) (DreamerV1's returns, Hafner et al. 2020). `one_step` (H, N), if given,
    is r_t + gamma c_t V_{t+1} written so that it is linear in the step's action; it replaces
    (1 - lambda) of that part of G_t, and the whole of the last step's (the same numbers, another
    gradient). With H = 1 the return is then linear in the action, and straight-through at tau = 1
    gives its exact gradient, whatever lambda. The values are then not read (None will do)."""
    out, ahead, H = [], values[-1] if one_step is None else None, rewards.shape[0]
    for t in reversed(range(H)):
        if one_step is None:
            ahead = rewards[t] + gamma * conts[t] * ((1 - lam) * values[t + 1] + lam * ahead)
        elif t == H - 1:  # G_H = V_H: the whole last step is its one-step return
            ahead = one_step[t]
        else:
            ahead = (1 - lam) * one_step[t] + lam * (rewards[t] + gamma * conts[t] * ahead)
        out.append(ahead)
    return torch.stack(out[::-1])


class Imagined(NamedTuple):
    """H imagined steps from N real observations."""

    returns: torch.Tensor  # (H, N) TD(lambda) returns, with the gradient of the actions (pathwise)
    weights: torch.Tensor  # (H, N) the chance that the episode is still going at each step
    states: torch.Tensor  # (H + 1, N, D) the imagined observations, the real one first
    logits: torch.Tensor  # (H, N, A) the policy's at each step
    logps: torch.Tensor | None  # (H, N) log pi of the actions sampled (--actor-grad reinforce)
    first_q: torch.Tensor  # (N, A) every action's one-step q at the first step, r + gamma c V(next), detached


class Window(NamedTuple):
    """The last window of real steps: the critic's data, and the actor's for --real-actor-coef."""

    obs: torch.Tensor  # (M, D) the M = T x B observations
    returns: torch.Tensor  # (M,) their real TD(lambda) returns
    next_action: torch.Tensor  # (M', A) the one-hot actions of the M' steps that did not terminate
    next_from: torch.Tensor  # (M', D) the observations they were taken in
    next_returns: torch.Tensor  # (M',) the target of each one's successor, (G_t - r_t) / gamma
    action: torch.Tensor | None = None  # (M,) the action taken at each observation
    advantage: torch.Tensor | None = None  # (M,) its real TD(lambda) return less V when it was taken


class ModelBasedLearner(Learner):
    def __init__(self, cfg, policy, critic, generator, bonus) -> None:
        super().__init__(cfg, policy, critic, generator, bonus)
        first = policy.body[0]
        if not isinstance(first, nn.Linear):
            raise ValueError(
                "--algo model reads flat observations; use --obs onehot (image observations are not supported)"
            )
        device = first.weight.device
        self.num_actions = policy.head.out_features
        self.model = WorldModel(first.in_features, self.num_actions, cfg.model_hidden).to(device)
        self.model_optimizer = Adam(self.model.parameters(), lr=cfg.model_learning_rate)
        self.replay = Replay(cfg.replay_size, first.in_features, self.num_actions, device)

    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        roll, obs = collect(
            env, obs, self.policy, self.critic, cfg.horizon, stats, self.generator, self.bonus, keep_next=True
        )
        actions = F.one_hot(roll.actions, self.num_actions).float()  # (T, B, A)
        self.replay.add(
            roll.obs.flatten(0, 1),
            actions.flatten(0, 1),
            roll.rewards.flatten(),
            roll.next_obs.flatten(0, 1),
            roll.terminals.flatten(),
        )
        # The critic's targets: the window's real TD(lambda) returns.
        real = lambda_returns(roll.rewards, roll.next_values, roll.continues, cfg.gamma, cfg.gae_lambda)  # (T, B)
        # The target at each step's successor, (G_t - r_t) / gamma, where the episode went on.
        going_on = ~roll.terminals.flatten()  # (T*B,)
        window = Window(
            roll.obs.flatten(0, 1),
            real.flatten(),
            actions.flatten(0, 1)[going_on],
            roll.obs.flatten(0, 1)[going_on],
            ((real - roll.rewards) / cfg.gamma).flatten()[going_on],
            roll.actions.flatten(),
            (real - roll.values).flatten(),
        )
        # Many gradient steps per window of real steps: the model and the imagination are where
        # the experience is reused, which is what makes a model-based learner sample-efficient.
        for _ in range(cfg.train_steps):
            interrupt.check()
            batch = self.replay.sample(cfg.model_batch, self.generator)
            model_metrics = self.fit_model(batch)
            metrics = self.train_actor_critic(batch, tau, window)
        return obs, metrics | {f"losses/model_{k}": float(v) for k, v in model_metrics.items()}

    def train_actor_critic(self, batch: tuple[torch.Tensor, ...], tau: float, window: Window) -> dict[str, float]:
        """One step of the actor on H steps imagined from the replayed minibatch's observations, and
        one of the critic on real returns."""
        cfg = self.cfg
        returns, weights, states, logits, logps, first_q = self.imagine(batch[0], tau)
        # The actor: minus the weighted imagined returns (in units of the return scale), minus the regulariser.
        scale = self.return_scale.update(returns.detach())[0]
        entropy = (weights * torch.distributions.Categorical(logits=logits).entropy()).mean()
        if cfg.actor_regulariser == "log-barrier":
            # mean_a log pi(a) = -KL(uniform || pi) - log A. Its gradient in logit a is 1/A - pi(a),
            # so an action that the policy has all but dropped is still pulled back up, and the
            # exact gradient pi(a) (q_a - E_pi q) can find it again once its q is the largest.
            regulariser = (weights * torch.log_softmax(logits, -1).mean(-1)).mean()
        else:
            regulariser = entropy
        if cfg.actor_grad == "pathwise":
            objective = (weights * returns).mean() / scale
        elif cfg.actor_grad == "natural":  # H = 1: logit a moves by q_a - E_pi q, not pi(a) times that
            advantage = first_q - (torch.softmax(logits[0], -1) * first_q).sum(-1, keepdim=True)  # (N, A)
            objective = (advantage.detach() * logits[0]).sum(-1).mean() / scale
        else:  # REINFORCE on the imagined steps, the critic as baseline (DreamerV2/V3's discrete actor)
            advantage = (returns - self.critic(states[:-1].flatten(0, 1)).view_as(returns)).detach()
            objective = (weights * logps * advantage).mean() / scale
        if cfg.real_actor_coef:
            # The actions the real steps took, ranked by the returns they got: the env's own word,
            # where the critic's q at the model's predictions can rank a no-op first (docs/guide.md).
            logp = torch.log_softmax(self.policy(window.obs), -1).gather(1, window.action[:, None]).squeeze(1)  # (M,)
            objective = objective + cfg.real_actor_coef * (logp * window.advantage).mean() / scale
        loss = -objective - cfg.entropy_coef * regulariser
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm)

        value_loss = self.fit_critic(window, batch)
        return {
            "losses/policy_loss": float(loss.detach()),
            "losses/value_loss": float(value_loss),
            "losses/entropy": float(entropy.detach()),
            "losses/grad_norm": float(grad_norm[0]),
        }

    def fit_model(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """One step of the model on a minibatch of real transitions; its losses."""
        loss, parts = self.model.loss(*batch)
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_and_step(self.model.parameters(), self.model_optimizer, 100.0)
        return {k: v.detach() for k, v in parts.items()}

    def imagine(self, start: torch.Tensor, tau: float) -> Imagined:
        """H steps from `start` (N, D) under the policy, through the model (`Imagined`)."""
        cfg = self.cfg
        frozen = [*self.model.parameters(), *self.critic.parameters()]
        for p in frozen:  # the actor's gradient flows through the model and the critic, not into them
            p.requires_grad_(False)
        try:
            o, states, rewards, conts, all_logits, logps = start.detach(), [start.detach()], [], [], [], []
            one_step, qs = [], []
            for _ in range(cfg.imagine_horizon):
                logits = self.policy(o)  # (N, A)
                if cfg.actor_grad == "pathwise":
                    action, _ = straight_through(logits, cfg.estimator, tau=tau, generator=self.generator)
                else:
                    index = gumbel_max_sample(logits.detach(), generator=self.generator)  # (N,)
                    action = F.one_hot(index, self.num_actions).float()
                    logps.append(torch.log_softmax(logits, -1).gather(1, index[:, None]).squeeze(1))
                # Every action's outcome, and the critic at each: the one-step part of the return,
                # r + gamma c V(next), is then linear in the one-hot action.
                outcome = self.model.every_action(o)  # (N, A, D + 2)
                nexts = o.unsqueeze(1) + outcome[..., : self.model.obs_dim]  # (N, A, D)
                cont_k = torch.sigmoid(outcome[..., -1])  # (N, A)
                v_k = self.critic(nexts.flatten(0, 1)).view(cont_k.shape)  # (N, A)
                q_k = outcome[..., -2] + cfg.gamma * cont_k * v_k  # (N, A)
                qs.append(q_k.detach())
                one_step.append((action * q_k).sum(-1))  # (N,)
                o = (action.unsqueeze(-1) * nexts).sum(1)  # (N, D) the action's own outcome
                states.append(o)
                rewards.append((action * outcome[..., -2]).sum(-1))
                conts.append((action * cont_k).sum(-1))
                all_logits.append(logits)
            states_t = torch.stack(states)  # (H + 1, N, D)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        conts_t = torch.stack(conts)  # (H, N)
        returns = imagined_returns(
            torch.stack(rewards), None, conts_t, cfg.gamma, cfg.gae_lambda, torch.stack(one_step)
        )
        # Step t counts as much as the chance that the episode lasts until it (DreamerV1's weights).
        alive = torch.cat([torch.ones_like(conts_t[:1]), torch.cumprod(conts_t[:-1], 0)]).detach()  # (H, N)
        return Imagined(returns, alive, states_t, torch.stack(all_logits), torch.stack(logps) if logps else None, qs[0])

    def fit_critic(self, window: Window, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One step regressing V on the window's real TD(lambda) returns at their observations; at
        the model's prediction of each step's successor on the target of the real successor (of all
        the window's steps, or `--critic-batch` of them drawn afresh); and on
        the one-step TD target r + gamma V(s') of the replayed transitions (N,), which keeps a
        reward seen windows ago in the critic after the window that saw it has gone.

        Not on the imagined returns: a critic fit to them bootstraps on itself at the model's
        predictions, and its values ran away from the returns that are possible (docs/guide.md).
        The second part is there because the actor reads V at predicted observations, where a critic
        fit to real ones only would extrapolate (its effect has not been measured on its own)."""
        obs, _, reward, next_obs, terminal = batch
        window = self.thinned(window)
        with torch.no_grad():
            predicted = self.model.taken(window.next_from, window.next_action.argmax(-1))[0]  # (M', D)
        # One forward for the four sets of observations: the critic is small, and a call costs more
        # than its rows.
        parts = (window.obs, predicted, obs, next_obs)
        values = self.critic(torch.cat(parts)).split([len(x) for x in parts])  # (M,), (M',), (N,), (N,)
        td = (reward + self.cfg.gamma * (~terminal) * values[3]).detach()  # (N,)
        loss = (values[0] - window.returns).pow(2).mean() / 2 + (values[2] - td).pow(2).mean() / 2
        if window.next_returns.numel():  # (a window in which every step ended an episode has none)
            loss = loss + (values[1] - window.next_returns).pow(2).mean() / 2
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return loss.detach()

    def thinned(self, window: Window) -> Window:
        """`--critic-batch` of the window's steps and as many of its successors, each drawn with
        replacement (the whole window with 0)."""
        n, device = self.cfg.critic_batch, window.obs.device
        if not n:
            return window
        i = torch.randint(len(window.obs), (n,), generator=self.generator, device=device)  # (n,)
        j = (  # (n,), or none when every step of the window ended its episode
            torch.randint(len(window.next_from), (n,), generator=self.generator, device=device)
            if len(window.next_from)
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        return Window(window.obs[i], window.returns[i], *(x[j] for x in window[2:5]))  # the critic's part

    def state_dict(self) -> dict:
        return super().state_dict() | {
            "model": self.model.state_dict(),
            "model_optimizer": self.model_optimizer.state_dict(),
        }

    def member_state_dict(self, k: int) -> dict:
        return self.state_dict()

    def stop_state(self) -> dict:
        return {"replay": self.replay.state_dict()}

    def load_stop_state(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.model.load_state_dict(state["model"])
        self.model_optimizer.load_state_dict(state["model_optimizer"])
