"""The pathwise learner: returns back-propagated through Gumbel straight-through actions and
the differentiable env into the policy.

Each update rolls the B envs T steps forward. Every action's gradient looks `lookahead` steps
ahead through the model (the graph is cut at each look-ahead's start, truncated
back-propagation) and is closed there, with `critic=True`, by a value V of the live position it
reaches, itself differentiable in that position: the learned critic's table after
`actor_backups` greedy backups through the env's tables. A short-horizon actor-critic whose
look-ahead does not depend on the rollout length T. With `state_norm`, the gradient reaching each
action is standardised over the actions, so every state has the same say (`StateNorm`). The
critic learns the value of the greedy policy by value iteration through the env's tables, at every
cell of the worlds the rollout was in.
"""

from __future__ import annotations

import torch

from agent.learning.critic import cell_values, greedy_backups, lambda_returns, visited_backups
from agent.learning.ensemble import Ensemble
from agent.learning.gumbel import softmax
from agent.learning.information import view_for
from agent.learning.learner import Learner, clip_and_step, per_member
from agent.learning.policy import logits_of_every_cell
from agent.learning.rollout import EpisodeStats
from agent.learning.straight_through import straight_through
from agent.run import interrupt
from envs.diffstep import ActionStep


class PathwiseLearner(Learner):
    _backed_up: torch.Tensor | None = None  # the visited critic's last backed-up tables (M or 1, W, S)

    def _value_tables(self, env) -> torch.Tensor:
        """The critic's value of every cell, (1, S) for one-hot observations (the same in every
        world) or (W, S) for images (the value map of each world's layout), without gradient.

        The pathwise gradient asks "what if the agent had taken another action?", so the critic is
        read at cells the agent was never in. Read as a table, its value there is exactly its
        value at that cell, and the reading is linear in the position, not a network's input
        derivative in a direction it never saw."""
        with torch.no_grad():
            values = cell_values(self.critic, env, torch.arange(env.num_worlds, device=env.device))
        if values is None:
            raise ValueError(
                "the pathwise learner reads its critic as a table of cells: use one-hot or "
                "image observations with the value-map critic (--value-map)"
            )
        return values

    def _rows(self, env, world_id: torch.Tensor) -> torch.Tensor:
        """(B,) which row of the value tables each env reads now: the world it is in (images: a
        value map per world, and an env that resets may enter another one), or its agent's
        (one-hot: one table per member, the first B / M envs are member 0's, and so on)."""
        if env.obs_mode != "onehot":
            return world_id
        return torch.arange(self.members, device=env.device).repeat_interleave(env.num_envs // self.members)

    def _oracle_actor_backups(self, env, values: torch.Tensor | None) -> dict[int, torch.Tensor]:
        """The model class only (`--critic oracle`, the one that allows `actor_backups`): value
        iteration over the env's whole tables. With `actor_backups` k: the critic's tables `values`
        (rows as `_value_tables`) after k
        greedy backups, in every world, (M or 1, W, S), under the key k; and after `backup_steps`,
        the critic's own targets, under that key: one run of value iteration gives both. Empty
        without (the actor reads `values`, and the targets are backed up in the worlds visited only)."""
        if values is None or not self.cfg.actor_backups:
            return {}
        worlds = torch.arange(env.num_worlds, device=env.device)
        if env.obs_mode == "onehot":  # a table per member, the same in every world
            table = values[:, None, :].expand(-1, env.num_worlds, -1)  # (M, W, S)
        else:
            table = values[None]  # (1, W, S)
        out, done = {}, 0
        for steps in sorted({self.cfg.actor_backups, self.cfg.backup_steps}):
            table = greedy_backups(env, table, worlds, self.cfg.gamma, steps - done)  # backups are a pure iteration
            out[steps], done = table, steps
        return out

    def _closing_values(self, env, closing: torch.Tensor | None, values: torch.Tensor | None) -> _CellTable | None:
        """What each env's look-ahead closes with: the critic's tables after `actor_backups`
        backups, `closing` (M or 1, W, S), each env reading its agent's (one-hot) or the one
        table (images) in its world; without those, its tables `values` (rows as
        `_value_tables`); None without a critic."""
        if closing is not None:
            if closing.shape[0] * closing.shape[1] == 1:
                return _CellTable(closing.reshape(1, -1))
            M, W, B = closing.shape[0], closing.shape[1], env.num_envs
            owner = torch.arange(M, device=env.device).repeat_interleave(B // M)  # (B,)
            return _CellTable(closing.flatten(0, 1), lambda world_id: owner * W + world_id)  # (M * W, S)
        if values is None:
            return None
        return _CellTable(values, None if len(values) == 1 else lambda world_id: self._rows(env, world_id))

    def _policy_reader(self, env):
        if env.obs_mode == "onehot":
            logit_table = logits_of_every_cell(self.policy, env.S)
            if isinstance(self.policy, Ensemble):
                logit_table = logit_table.flatten(0, 1)  # (M*S, A)
            offset = self._rows(env, env.world_id) * env.S  # (B,) where each env's agent's rows begin
            # Each step's position is one-hot and cut from the graph, so its logits are a row of L.
            return lambda obs: logit_table.index_select(0, env.state + offset)
        return self.policy

    def _entropy(self, env, logits: torch.Tensor, world_id: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The entropy bonus of this step, (B,): over the next cell (`--entropy-over cells`, on
        worlds where each move has one outcome) or over the actions."""
        if self.cfg.entropy_over == "cells" and env.O == 1:
            return cell_entropy(logits, env.every_action(world_id, state, torch.zeros_like(state))[0])
        return action_entropy(logits)

    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        """T steps of B envs on the differentiable path.

        Actor: the loss is minus the mean over the steps of each step's look-ahead return, the
        rewards of the next `lookahead` steps and the value of the live position after them (the
        critic's, after `actor_backups` greedy backups), discounted, back-propagated through the
        actions, the env and (within a look-ahead) the positions. With the default look-ahead of 1
        each action's gradient is that of r + gamma V(next) alone.

        Critic: at every reachable cell of the worlds the rollout was in, V regresses onto
        `backup_steps` greedy backups max_a E[r + gamma V(s')] of its own values through the env's
        tables (`greedy_backups`), so it learns the value of acting greedily on what it knows, not
        of the current (random, early on) policy: a random policy's value next to lava is that of
        falling in, which would teach the actor to shun the only way through. The targets do not
        follow the rollout, so the policy's random walk never enters them."""
        cfg, gamma, K, M = self.cfg, self.cfg.gamma, self.cfg.lookahead, self.members
        env = view_for(self.information, env, self._views)  # a simulator-class learner sees no table
        B = env.num_envs  # members x the B envs of each
        scale = torch.tensor(self.return_scale.values, device=env.device)  # (M,) each member's return scale
        # No observations: the critic is read as a table of (world, cell).
        record: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("cells", "worlds", "rewards", "terminated", "truncated")
        }
        values = self._value_tables(env) if cfg.critic != "none" else None  # (W or 1, S)
        if cfg.critic == "oracle":
            backed_up = self._oracle_actor_backups(env, values)
            closing = self._closing_values(env, backed_up.get(cfg.actor_backups), values)
        else:  # the visited critic: the last update's targets where its rollout was, the critic elsewhere
            closing = self._closing_values(env, self._backed_up if values is not None else None, values)
        policy = self._policy_reader(env)
        positionless = steps_without_positions(cfg)
        every = cfg.horizon // cfg.actor_steps  # env steps between the actor's optimiser steps
        # The gradient one return-scale unit of objective sends to an action: the loss is the
        # mean over a member's B / M envs and its look-aheads, in units of its return scale.
        unit = torch.tensor(1.0 / ((B // M) * -(-every // K)), device=env.device)
        losses, entropies, norms = [], [], []
        chunk = _Chunk(B, env.device, K)
        for t in range(cfg.horizon):
            interrupt.check()
            if t % K == 0:  # a look-ahead begins: cut the graph, so its gradient looks no further back
                env.detach()
                obs = None if obs is None else obs.detach()
                chunk.discount = torch.ones_like(chunk.discount)
            logits = policy(obs)  # (B, A)
            action, index = straight_through(logits, cfg.estimator, tau=tau, generator=self.generator)  # (B, A), (B,)
            if cfg.state_norm:
                action = StateNorm.apply(action, unit)
            world_id, state = env.world_id, env.state
            # The reward (with the visit bonus) and V of the true successor, 0 after an ending
            # transition (read off the live position, empty there); after a time limit the state
            # goes on, so it is closed with its value too. Both (B,), differentiable.
            if positionless:  # a one-hot observation is read as the state: the env need not build it
                next_obs, _, terminated, truncated, info = env.step(index, observe=env.obs_mode != "onehot")
                outcome = info["outcome"]
                cells, r, c, p = env.every_action(world_id, state, outcome, env.slip_gradient == "expected")
                bonus = self.bonus.at_cells(cells, world_id)
                value = None if closing is None else closing.at(world_id, cells)
                read_off = [u for u in (bonus, value) if u is not None]  # cell tables read off the live position
                reward, *reads = ActionStep.apply(action, r, c, p, index, outcome, *read_off)
                reward = reward if bonus is None else reward + reads.pop(0)
                next_value = torch.zeros_like(reward) if value is None else reads[0]
            else:
                next_obs, reward, terminated, truncated, info = env.step(action)
                reward = reward + self.bonus(info["live_pos"], world_id)
                live = info["live_pos"]  # (B, S)
                next_value = torch.zeros_like(reward) if closing is None else (live * closing.rows(world_id)).sum(-1)
            stats.add(info)
            self.bonus.visit(info["final_state"], world_id)
            closes_here = (t + 1) % K == 0 or t + 1 == cfg.horizon  # the look-ahead ends with this step
            closes = torch.ones_like(reward) if closes_here else truncated.float()
            chunk.add(
                reward + gamma * next_value * closes,
                info["done"],
                gamma,
                self._entropy(env, logits, world_id, state).reshape(M, -1).mean(1),  # (M,)
                (logits - logits.mean(-1, keepdim=True)).pow(2).reshape(M, -1).mean(1),  # (M,)
            )
            record["cells"].append(state)
            record["worlds"].append(world_id)
            record["rewards"].append(reward.detach())
            record["terminated"].append(terminated)
            record["truncated"].append(truncated)
            obs = next_obs
            if (t + 1) % every == 0:
                # The loss: minus the mean look-ahead return, in units of the return scale, minus
                # the entropy bonus, plus the logit penalty; the actor steps on it at once.
                chunk_loss, entropy = chunk.loss(scale, cfg.entropy_coef, cfg.logit_penalty)  # (M,) each
                self.optimizer.zero_grad(set_to_none=True)
                chunk_loss.sum().backward()  # the members share no parameter: each gets its own gradient
                norms.append(clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm, M))
                losses.append(chunk_loss.detach())
                entropies.append(entropy.detach())
                chunk = _Chunk(B, env.device, K)
                if t + 1 < cfg.horizon:
                    policy = self._policy_reader(env)  # the policy has moved

        rec = {k: torch.stack(v) for k, v in record.items()}  # (T, B)
        if cfg.critic == "oracle":
            visited, (targets, *fit_on) = self._oracle_targets(
                env, values, rec["cells"], rec["worlds"], backed_up.get(cfg.backup_steps)
            )
        elif values is not None:
            visited = self._visited_targets(env, values, rec["cells"], rec["worlds"])
            targets, fit_on = visited, (rec["cells"], rec["worlds"])
        else:  # no critic: the discounted rewards within the window, for the return scale only
            continues = (~(rec["terminated"] | rec["truncated"])).float()
            visited = lambda_returns(rec["rewards"], torch.zeros_like(rec["rewards"]), continues, gamma, 1.0)
        self.return_scale.update(visited)
        loss, entropy, grad_norm = (torch.stack(x).mean(0) for x in (losses, entropies, norms))  # (M,) each
        metrics = {
            "losses/return_scale": per_member(torch.tensor(self.return_scale.values)),
            "losses/actor_steps": float(len(losses)),
        }
        if values is not None:
            metrics |= self.fit_critic_and_report(
                env, None, *fit_on, targets, loss, entropy, grad_norm, rewards=rec["rewards"]
            )
        else:
            metrics |= {
                "losses/policy_loss": per_member(loss),
                "losses/entropy": per_member(entropy),
                "losses/grad_norm": per_member(grad_norm),
            }
        return (env.pos if obs is None else obs).detach(), metrics  # a one-hot observation is the position

    def _visited_targets(self, env, values: torch.Tensor, cells: torch.Tensor, worlds: torch.Tensor) -> torch.Tensor:
        """The visited critic's targets at the rollout's cells (T, B): `backup_steps` greedy
        backups of its value tables `values` (rows as `_value_tables`) at the cells the rollout
        was in, read through the simulator's step from those cells alone (`visited_backups`).
        The backed-up tables, (M or 1, W, S), are what the next update's actor closes with."""
        T, B = cells.shape
        if env.obs_mode == "onehot":  # a table per member, the same in every world
            table = values[:, None, :].expand(-1, env.num_worlds, -1)  # (M, W, S)
            rows = self._rows(env, worlds[0]).expand(T, B)  # (T, B) whose table
        else:  # a value map per world
            table, rows = values[None], torch.zeros_like(cells)  # (1, W, S)
        table = visited_backups(
            table, rows.reshape(-1), worlds.reshape(-1), cells.reshape(-1), env.step_rows, self.cfg.gamma,
            self.cfg.backup_steps,
        )  # fmt: skip
        self._backed_up = table
        return table[rows, worlds, cells]  # (T, B)

    def _oracle_targets(
        self,
        env,
        values: torch.Tensor,
        cells: torch.Tensor,
        worlds: torch.Tensor,
        every_world: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The model class only (`--critic oracle`): the critic's targets from `backup_steps` greedy
        backups over the env's whole tables of its value tables `values`
        (rows as `_value_tables`; `every_world`, (R, W, S): those backups already made in every
        world), at every reachable cell of the worlds the rollout (cells, worlds: (T, B)) was in.
        Returns (the targets at the rollout's own cells, (T, B), for the return scale; then, to
        fit on, the targets, cells and worlds, each (1, M * n): member 0's n samples first, as
        `fit_critic_and_report` reads an ensemble's (T, M * B) layout)."""
        T, B, M = *cells.shape, self.members
        if env.obs_mode == "onehot":  # one table per member, the same for every world
            fit_worlds = torch.arange(env.num_worlds, device=env.device)  # (k,)
            where = worlds  # (T, B) which of the k worlds
            start = values[:, None, :].expand(M, len(fit_worlds), env.S)  # (M, k, S)
            row = self._rows(env, worlds[0]).expand(T, B)  # (T, B) whose table
        else:  # a value map per world: the worlds the rollout was in
            fit_worlds, where = torch.unique(worlds, return_inverse=True)  # (k,), (T, B)
            start = values.index_select(0, fit_worlds)[None]  # (1, k, S)
            row = torch.zeros_like(cells)
        if every_world is not None:
            table = every_world.index_select(1, fit_worlds)  # (R, k, S)
        else:
            table = greedy_backups(env, start, fit_worlds, self.cfg.gamma, self.cfg.backup_steps)  # (R, k, S)
        w, s = env.reachable.index_select(0, fit_worlds).nonzero(as_tuple=True)  # (n,) each
        R = table.shape[0]
        fit = (table[:, w, s], s.expand(R, -1), fit_worlds[w].expand(R, -1))  # (R, n) each
        return table[row, where, cells], tuple(x.reshape(1, -1) for x in fit)


def steps_without_positions(cfg) -> bool:
    """With a look-ahead of one, every step starts from a position cut from the graph, so a
    one-hot action (every estimator but the soft "gs") needs no (B, S) positions: ActionStep
    gives the one-hot path's numbers, bit for bit."""
    return cfg.lookahead == 1 and cfg.estimator != "gs"


class _CellTable:
    """A table of cell values (R, S) and, given the envs' worlds (B,), which row each env reads
    (`row` None: the one row, broadcast rather than gathered B times)."""

    def __init__(self, table: torch.Tensor, row=None) -> None:
        self.table, self.row = table, row

    def rows(self, world_id: torch.Tensor) -> torch.Tensor:
        """Each env's row, (B, S) (or the one row, (1, S))."""
        return self.table if self.row is None else self.table.index_select(0, self.row(world_id))

    def at(self, world_id: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Each env's row at cells (B, ...), (B, ...)."""
        if self.row is None:
            return self.table[0][cells]
        row = self.row(world_id).view(-1, *[1] * (cells.dim() - 1))  # (B, 1, ...)
        return self.table.reshape(-1)[row * self.table.shape[1] + cells]


_FLOOR = 1e-3  # StateNorm.FLOOR, read as a module constant in backward: torch.compile traces it there


class StateNorm(torch.autograd.Function):
    """Identity in the forward; in the backward, each row of the gradient g (B, A) reaching the
    actions is centred and rescaled to a root mean square of `unit`, the gradient that one
    return-scale unit of objective sends: g_c * unit / max(rms(g_c), FLOOR * unit). In return-scale
    units each state's action values are standardised, (Q - mean Q) / max(rms, FLOOR), so every
    state has the same say, whatever the size of their spread (about (1 - gamma) V far from a
    reward). A spread below FLOOR (a state where no action matters yet) is enlarged only to a
    fraction of one. The estimators' backwards pass the gradient through softmax Jacobians, which
    ignore a constant added to a row, so the centring alone changes nothing."""

    FLOOR = _FLOOR

    @staticmethod
    def forward(ctx, action, unit):  # noqa: D102
        ctx.save_for_backward(unit)
        return action.view_as(action)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (unit,) = ctx.saved_tensors  # ()
        centred = g - g.mean(-1, keepdim=True)  # (B, A)
        rms = centred.pow(2).mean(-1, keepdim=True).sqrt()  # (B, 1)
        return centred * unit / torch.maximum(rms, _FLOOR * unit), None


class _Chunk:
    """The actor's loss terms accumulated over the steps since its last optimiser step."""

    def __init__(self, B: int, device: torch.device, lookahead: int) -> None:
        self.lookahead = lookahead
        self.objective = torch.zeros(B, device=device)  # (B,) differentiable
        self.discount = torch.ones(B, device=device)  # (B,) gamma^k since the look-ahead (or episode) began
        self.entropy = self.logit_size = torch.zeros((), device=device)
        self.steps = 0

    def add(
        self,
        step_return: torch.Tensor,
        done: torch.Tensor,
        gamma: float,
        entropy: torch.Tensor,
        logit_size: torch.Tensor,
    ) -> None:
        self.objective = self.objective + self.discount * step_return
        self.discount = torch.where(done, 1.0, self.discount * gamma)
        self.entropy, self.logit_size = self.entropy + entropy, self.logit_size + logit_size
        self.steps += 1

    def loss(self, scale: torch.Tensor, entropy_coef: float, logit_penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss, the mean entropy) of each of the M members over the steps added, (M,) each,
        from each member's return scale (M,): the objective is the sum of each look-ahead's
        return, averaged over the look-aheads and over the member's envs."""
        M = scale.shape[0]
        entropy = self.entropy / self.steps  # (M,)
        lookaheads = -(-self.steps // self.lookahead)  # ceil
        objective = self.objective.reshape(M, -1).mean(1)  # (M,)
        return (
            -objective / lookaheads / scale - entropy_coef * entropy + logit_penalty * self.logit_size / self.steps,
            entropy,
        )


def action_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim, (B,): -sum_a pi_a log pi_a, with log pi
    clamped at the dtype's lowest finite value so that a zero probability adds 0, not NaN (as
    torch.distributions.Categorical computes it, without its per-call checks)."""
    log_pi = logits - logits.logsumexp(-1, keepdim=True)  # (B, A)
    return -(softmax(logits) * log_pi.clamp(min=torch.finfo(log_pi.dtype).min)).sum(-1)


def cell_entropy(logits: torch.Tensor, next_cell: torch.Tensor) -> torch.Tensor:
    """Entropy of the cell the policy moves to, (B,), from logits (B, A) and each action's next
    cell (B, A): H = -sum_a pi_a log q(next_cell_a), q(c) = sum of pi_b over the actions b that
    lead to c. Actions with the same outcome (the bumps into walls around a cell) merge into one,
    so a uniform policy over a dead end's moves is no longer the most random one: staying and
    leaving are."""
    pi = softmax(logits)  # (B, A)
    same = (next_cell[:, :, None] == next_cell[:, None, :]).to(pi.dtype)  # (B, A, A)
    q = torch.einsum("bij,bj->bi", same, pi)  # (B, A) probability of action i's outcome
    return -(pi * q.clamp_min(torch.finfo(pi.dtype).tiny).log()).sum(-1)
