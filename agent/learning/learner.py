"""What every learner owns: the policy and critic, their optimisers and the exploration bonus.

Each learner file (pathwise.py, reinforce.py, ppo.py) only adds its `update`, where its loss is
written out."""

from __future__ import annotations

import abc

import torch

from agent.learning.critic import fit_critic, rescale_critic
from agent.learning.ensemble import clip_per_member, member_count
from agent.learning.information import InformationClass, information_class
from agent.learning.optim import Adam
from agent.learning.policy import PolicyNet, ValueNet
from agent.learning.rollout import EpisodeStats, VisitBonus
from agent.run.config import TrainConfig


def percentiles(x: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """torch.quantile(x, qs, dim=1) of x (M, n), (len(qs), M), bit for bit (linear interpolation
    between the order statistics at floor and ceil of q (n - 1)), by selection instead of a sort
    of every row: the lower order statistic by `kthvalue`, the next one as the smallest value
    above it unless the lower one repeats: no sort of every target of the update."""
    if torch.isnan(x).any():  # quantile's NaN rule, kept as it is
        return torch.quantile(x, torch.tensor(qs, dtype=x.dtype, device=x.device), dim=1)
    n = x.shape[1]
    ranks = torch.tensor(qs, dtype=x.dtype) * (n - 1)  # in x's dtype, as quantile computes them
    lows, weights = ranks.floor(), ranks - ranks.floor()
    out = []
    for low, weight in zip(lows.long().tolist(), weights, strict=True):
        below = x.kthvalue(low + 1, dim=1).values  # (M,) order statistic `low` (from 0)
        above = below
        if weight > 0:  # order statistic low + 1: `below` again if it fills that place too
            repeats = (x <= below[:, None]).sum(1) >= low + 2  # (M,)
            larger = torch.where(x > below[:, None], x, torch.inf).amin(1)  # (M,)
            above = torch.where(repeats, below, larger)
        out.append(torch.lerp(below, above, weight.to(x.device)))
    return torch.stack(out)


class ReturnScale:
    """The scale the policy's objective is divided by, so that one entropy bonus and one learning
    rate fit every reward scale: max(1, S), S a running average of the range between the 5th and
    95th percentile of the return targets (DreamerV3's return normalisation, Hafner et al. 2023).
    The floor keeps small, sparse returns (a goal worth 1) from being blown up into noise.
    With `members` agents (--num-seeds) each has its own, from its own block of the B envs."""

    def __init__(self, decay: float = 0.95, members: int = 1) -> None:
        self.decay, self.members = decay, members
        self.range: list[float] | None = None

    def update(self, returns: torch.Tensor) -> list[float]:
        """Take this update's targets (T, members * B); return the scales, one per member."""
        M = self.members
        per = returns.detach().float().reshape(returns.shape[0], M, -1).transpose(0, 1).reshape(M, -1)  # (M, T*B)
        q = percentiles(per, (0.05, 0.95))  # (2, M)
        spread = (q[1] - q[0]).tolist()
        if self.range is None:
            self.range = spread
        else:
            self.range = [self.decay * r + (1 - self.decay) * s for r, s in zip(self.range, spread, strict=True)]
        return self.values

    @property
    def values(self) -> list[float]:
        return [1.0] * self.members if self.range is None else [max(1.0, r) for r in self.range]

    def state_dict(self, member: int | None = None) -> dict:
        """The state; of one member as a single agent's (a float) with `member`."""
        if self.range is None or (member is None and self.members > 1):
            return {"range": self.range}
        return {"range": self.range[member or 0]}

    def load_state_dict(self, state: dict) -> None:
        r = state["range"]
        self.range = None if r is None else (list(r) if isinstance(r, list) else [r])


class Learner(abc.ABC):
    """The contract every learner meets (register a new one in `agent.run.factory.LEARNERS`):

    - what it may know of the env: `information`, one class of `agent.learning.information`
      (samples, simulator or model), read from its config; a simulator-class learner reads the
      env only through `agent.learning.information.view_for`;
    - `update(env, obs, tau, stats) -> (obs, metrics)`: one window of B x T env steps, then its
      optimiser steps; `obs` is where the next window starts, `metrics` maps TensorBoard names
      to a float (or, for --num-seeds, a list of one per member, `per_member`);
    - what it checkpoints: `state_dict` / `member_state_dict` / `load_state_dict` (optimisers,
      visit bonus, return scale; a subclass with more state extends them), and `stop_state` /
      `load_stop_state`, what only a stopped run's checkpoint holds (the model learner's replay).
      The policy and critic themselves are saved by the trainer.

    The base class owns the policy, the critic, their optimisers and the exploration bonus."""

    @property
    def information(self) -> InformationClass:
        """What this learner may know of the env (`agent.learning.information.information_class`)."""
        return information_class(self.cfg)

    def __init__(
        self, cfg: TrainConfig, policy: PolicyNet, critic: ValueNet, generator: torch.Generator, bonus: VisitBonus
    ) -> None:
        cfg = cfg.with_learner_defaults()  # a config built by hand, not through resolve(), has them unset
        self.cfg, self.policy, self.critic, self.generator, self.bonus = cfg, policy, critic, generator, bonus
        self.members = member_count(policy)  # agents trained side by side (--num-seeds)
        self.return_scale = ReturnScale(members=self.members)
        self.optimizer = Adam(policy.parameters(), lr=cfg.learning_rate)
        self.critic_optimizer = Adam(critic.parameters(), lr=cfg.critic_learning_rate)
        self._views: dict = {}  # the env as this learner's information class sees it (`view_for`)

    @abc.abstractmethod
    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        """Collect B x T env steps from `obs` (Gumbel temperature `tau`, finished episodes counted
        in `stats`) and take this learner's optimiser steps; returns (next obs, metrics)."""

    def set_learning_rates(self, global_step: int) -> None:
        """Set both learning rates for the update that starts at `global_step`, a function of the
        step alone (so a resumed run picks them up where it stopped). With `anneal_lr` the policy's
        falls linearly to 0 at the end of the budget: a policy still taking full steps at the end
        drifts off what it has learnt. The critic's stays: its targets do not move with the policy,
        and one frozen before it has converged keeps errors larger than the gaps between the
        actions' values far from a reward, which the policy then follows. The policy's also rises
        linearly over the first `actor_warmup` env steps."""
        cfg = self.cfg
        left = max(0.0, 1.0 - global_step / cfg.total_timesteps) if cfg.anneal_lr else 1.0
        warm = min(1.0, (global_step + 1) / cfg.actor_warmup) if cfg.actor_warmup else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate * warm * left
        for group in self.critic_optimizer.param_groups:
            group["lr"] = cfg.critic_learning_rate

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "bonus": self.bonus.state_dict(),
            "return_scale": self.return_scale.state_dict(),
        }

    def member_state_dict(self, k: int) -> dict:
        """Member k's state as a single agent's learner would hold it (its slice of each stacked
        optimiser moment), so its checkpoint resumes as a run of its own."""
        if self.members == 1:
            return self.state_dict()

        def sliced(optimizer: Adam) -> dict:
            state = optimizer.state_dict()
            return {
                "state": {
                    i: {name: (v[k].clone() if v.dim() > 0 else v.clone()) for name, v in moments.items()}
                    for i, moments in state["state"].items()
                },
                "param_groups": state["param_groups"],
            }

        return {
            "optimizer": sliced(self.optimizer),
            "critic_optimizer": sliced(self.critic_optimizer),
            "bonus": self.bonus.state_dict(),
            "return_scale": self.return_scale.state_dict(member=k),
        }

    def stop_state(self) -> dict:
        """What a run that stops early (a signal, an env failure) keeps beyond `state_dict`, so that
        --resume goes on with it: a subclass's large state, which the periodic checkpoints skip."""
        return {}

    def load_stop_state(self, state: dict) -> None:
        """Restore what `stop_state` returned (here nothing)."""
        if state:
            raise ValueError(f"this learner keeps no stop state, and the checkpoint has {sorted(state)}")

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.bonus.load_state_dict(state["bonus"])
        if "return_scale" in state:  # checkpoints from before the return scale start unscaled
            self.return_scale.load_state_dict(state["return_scale"])

    def fit_critic_and_report(
        self,
        env,
        obs: torch.Tensor | None,
        cells: torch.Tensor,
        worlds: torch.Tensor,
        targets: torch.Tensor,
        loss: torch.Tensor,
        entropy: torch.Tensor,
        grad_norm: torch.Tensor,
        *,
        rewards: torch.Tensor,
    ) -> dict[str, float | list[float]]:
        """Regress the critic on this update's targets (samples given as observations and as
        (world, cell), each (T, members * B, ...); no observations where the critic is read as a
        table), its unit first raised to the largest reward seen (`rewards`, (T, members * B));
        return the update's loss metrics (per-member ones as `per_member` gives them)."""

        def by_member(x: torch.Tensor) -> torch.Tensor:  # (T, M*B, ...) -> (M, T*B, ...), each member's samples
            T, M = x.shape[0], self.members
            return x.reshape(T, M, -1, *x.shape[2:]).transpose(0, 1).reshape(M, -1, *x.shape[2:])

        rescale_critic(self.critic, by_member(rewards))
        value_loss = fit_critic(
            self.critic,
            self.critic_optimizer,
            env,
            by_member(targets),
            obs=None if obs is None else by_member(obs),
            cells=by_member(cells),
            worlds=by_member(worlds),
            epochs=self.cfg.update_epochs,
            num_minibatches=self.cfg.num_minibatches,
            generator=self.generator,
        )
        return {
            "losses/policy_loss": per_member(loss),
            "losses/value_loss": per_member(value_loss),
            "losses/entropy": per_member(entropy),
            "losses/grad_norm": per_member(grad_norm),
        }


def per_member(x: torch.Tensor) -> float | list[float]:
    """A metric of every member, (M,) -> a float for a single agent, a list of M for --num-seeds."""
    x = x.detach().reshape(-1)
    return float(x[0]) if x.numel() == 1 else x.tolist()


def clip_and_step(params, optimizer: Adam, max_grad_norm: float, members: int = 1) -> torch.Tensor:
    """Clip the gradient to `max_grad_norm` (if > 0), each member's by its own norm, step, and
    return the pre-clip norms, (members,)."""
    params = list(params)
    if members > 1:
        norm = clip_per_member(params, members, max_grad_norm)
    else:  # torch.nn.utils.clip_grad_norm_'s arithmetic, in one _foreach call per op
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if max_grad_norm > 0:
            torch._foreach_mul_(grads, (max_grad_norm / (norm + 1e-6)).clamp(max=1.0))
    optimizer.step()
    return norm.detach().reshape(members)
