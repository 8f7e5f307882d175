"""The pathwise learner: returns back-propagated through Gumbel straight-through actions and
the differentiable env into the policy.

Each update rolls the B envs T steps forward. Every action's gradient looks `lookahead` steps
ahead through the model (the graph is cut at each look-ahead's start, truncated
back-propagation) and is closed there, with `critic=True`, by a learned value V of the live
position it reaches, itself differentiable in that position: a short-horizon actor-critic whose
look-ahead does not depend on the rollout length T. The critic learns the value of the greedy
policy from the whole T-step rollout (Watkins's Q(lambda) with one-step greedy backups through the
env's tables).
"""

from __future__ import annotations

import torch

from agent import interrupt
from agent.critic import cell_values, greedy_lambda_returns, lambda_returns
from agent.ensemble import Ensemble
from agent.gumbel import softmax
from agent.learner import Learner, clip_and_step, per_member
from agent.rollout import EpisodeStats
from agent.straight_through import straight_through


class PathwiseLearner(Learner):
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
        (one-hot: one table per member, the first B / N envs are member 0's, and so on)."""
        if env.obs_mode != "onehot":
            return world_id
        return torch.arange(self.members, device=env.device).repeat_interleave(env.num_envs // self.members)

    def _policy_reader(self, env):
        if env.obs_mode == "onehot":
            eye = torch.eye(env.S, device=env.device)
            if isinstance(self.policy, Ensemble):
                logit_table = self.policy(eye.expand(self.members, -1, -1)).flatten(0, 1)  # (N*S, A)
            else:
                logit_table = self.policy(eye)  # (S, A), differentiable
            offset = self._rows(env, env.world_id) * env.S  # (B,) where each env's agent's rows begin
            # Each step's position is one-hot and cut from the graph, so its logits are a row of L.
            return lambda obs: logit_table.index_select(0, env.state + offset)
        return self.policy

    def _entropy(self, env, logits: torch.Tensor, world_id: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The entropy bonus of this step, (B,): over the next cell (`--entropy-over cells`, on
        worlds where each move has one outcome) or over the actions."""
        if self.cfg.entropy_over == "cells" and env.O == 1:
            return cell_entropy(logits, env.next_state[world_id, state, :, 0])
        return torch.distributions.Categorical(logits=logits).entropy()

    def update(self, env, obs: torch.Tensor, tau: float, stats: EpisodeStats) -> tuple[torch.Tensor, dict]:
        """T steps of B envs on the differentiable path.

        Actor: the loss is minus the mean over the steps of each step's look-ahead return, the
        rewards of the next `lookahead` steps and the critic's value of the live position after
        them, discounted, back-propagated through the actions, the env and (within a look-ahead)
        the positions. With the default look-ahead of 1 each action's gradient is that of
        r + gamma V(next) alone.

        Critic: V regresses Watkins's Q(lambda) targets over the T steps (`greedy_lambda_returns`),
        built from one-step greedy backups max_a E[r + gamma V(s')] read off the env's tables, so
        it learns the value of acting (near-)greedily on what it knows, not of the current
        (random, early on) policy: a random policy's value next to lava is that of falling in,
        which would teach the actor to shun the only way through. A trace follows the rollout
        through greedy actions (by default; within `trace_cut` times the return scale of the best
        one otherwise) and is cut at the others."""
        cfg, gamma, K, N = self.cfg, self.cfg.gamma, self.cfg.lookahead, self.members
        B = env.num_envs  # members x the B envs of each
        scale = torch.tensor(self.return_scale.values, device=env.device)  # (N,) each member's return scale
        record: dict[str, list[torch.Tensor]] = {
            k: []
            for k in (  # no observations: the critic is read as a table of (world, cell)
                "cells",
                "worlds",
                "rewards",
                "terminated",
                "truncated",
                "final_values",
                "greedy_values",
                "greedy_taken",
            )
        }
        values = self._value_tables(env) if cfg.critic else None  # (W or 1, S)
        policy = self._policy_reader(env)
        every = cfg.horizon // cfg.actor_steps  # env steps between the actor's optimiser steps
        losses, entropies, norms = [], [], []
        chunk = _Chunk(B, obs.device, K)
        for t in range(cfg.horizon):
            interrupt.check()
            if t % K == 0:  # a look-ahead begins: cut the graph, so its gradient looks no further back
                env.detach()
                obs = obs.detach()
                chunk.discount = torch.ones_like(chunk.discount)
            logits = policy(obs)  # (B, A)
            action, index = straight_through(logits, cfg.estimator, tau=tau, generator=self.generator)  # (B, A)
            world_id, state = env.world_id, env.state
            rows = self._rows(env, world_id)  # (B,)
            if values is not None:
                q = one_step_values(env, values, rows, world_id, state, gamma)  # (B, A) what each action earns
                best = q.max(-1).values  # (B,)
                record["greedy_values"].append(best)
                # Near-greedy actions keep the trace; clearly worse ones (into lava, say) cut it.
                slack = cfg.trace_cut * scale.repeat_interleave(B // N)  # (B,)
                record["greedy_taken"].append(q.gather(1, index[:, None]).squeeze(1) >= best - slack)
            next_obs, reward, terminated, truncated, info = env.step(action)
            stats.add(info)
            reward = reward + self.bonus(info["live_pos"], world_id)  # (B,) differentiable
            self.bonus.visit(info["final_state"], world_id)
            # V of the true successor, 0 after an ending transition (the live position is empty
            # there); after a time limit the state goes on, so it is closed with its value too.
            if values is not None:
                next_value = (info["live_pos"] * values[rows if len(values) > 1 else 0]).sum(-1)  # (B,)
            else:
                next_value = torch.zeros_like(reward)
            closes_here = (t + 1) % K == 0 or t + 1 == cfg.horizon  # the look-ahead ends with this step
            closes = torch.ones_like(reward) if closes_here else truncated.float()
            chunk.add(
                reward + gamma * next_value * closes,
                info["done"],
                gamma,
                self._entropy(env, logits, world_id, state).reshape(N, -1).mean(1),  # (N,)
                (logits - logits.mean(-1, keepdim=True)).pow(2).reshape(N, -1).mean(1),  # (N,)
            )
            record["cells"].append(state)
            record["worlds"].append(world_id)
            record["rewards"].append(reward.detach())
            record["terminated"].append(terminated)
            record["truncated"].append(truncated)
            record["final_values"].append(next_value.detach())
            obs = next_obs
            if (t + 1) % every == 0:
                # The loss: minus the mean look-ahead return, in units of the return scale, minus
                # the entropy bonus, plus the logit penalty; the actor steps on it at once.
                chunk_loss, entropy = chunk.loss(scale, cfg.entropy_coef, cfg.logit_penalty)  # (N,) each
                self.optimizer.zero_grad(set_to_none=True)
                chunk_loss.sum().backward()  # the members share no parameter: each gets its own gradient
                norms.append(clip_and_step(self.policy.parameters(), self.optimizer, cfg.max_grad_norm, N))
                losses.append(chunk_loss.detach())
                entropies.append(entropy.detach())
                chunk = _Chunk(B, obs.device, K)
                if t + 1 < cfg.horizon:
                    policy = self._policy_reader(env)  # the policy has moved

        rec = {k: torch.stack(v) for k, v in record.items() if v}  # (T, B, ...)
        if values is not None:
            last = one_step_values(env, values, self._rows(env, env.world_id), env.world_id, env.state, gamma)
            last = last.max(-1).values  # (B,)
            targets = greedy_lambda_returns(
                rec["rewards"],
                rec["greedy_values"],
                rec["greedy_taken"],
                rec["terminated"],
                rec["truncated"],
                rec["final_values"],
                last,
                gamma,
                cfg.gae_lambda,
            )
        else:  # no critic: the discounted rewards within the window, for the return scale only
            zeros = torch.zeros_like(rec["rewards"])
            targets = lambda_returns(
                rec["rewards"], zeros, (~(rec["terminated"] | rec["truncated"])).float(), gamma, 1.0
            )
        self.return_scale.update(targets)
        loss, entropy, grad_norm = (torch.stack(x).mean(0) for x in (losses, entropies, norms))  # (N,) each
        metrics = {
            "losses/return_scale": per_member(torch.tensor(self.return_scale.values)),
            "losses/actor_steps": float(len(losses)),
        }
        if values is not None:
            greedy_share = rec["greedy_taken"].float().reshape(cfg.horizon, N, -1).mean((0, 2))  # (N,)
            metrics["losses/greedy_action_share"] = per_member(greedy_share)
            metrics |= self.fit_critic_and_report(
                env, None, rec["cells"], rec["worlds"], targets, loss, entropy, grad_norm
            )
        else:
            metrics |= {
                "losses/policy_loss": per_member(loss),
                "losses/entropy": per_member(entropy),
                "losses/grad_norm": per_member(grad_norm),
            }
        return obs.detach(), metrics


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
        """(the loss, the mean entropy) of each of the N members over the steps added, (N,) each,
        from each member's return scale (N,): the objective is the sum of each look-ahead's
        return, averaged over the look-aheads and over the member's envs."""
        N = scale.shape[0]
        entropy = self.entropy / self.steps  # (N,)
        lookaheads = -(-self.steps // self.lookahead)  # ceil
        objective = self.objective.reshape(N, -1).mean(1)  # (N,)
        return (
            -objective / lookaheads / scale - entropy_coef * entropy + logit_penalty * self.logit_size / self.steps,
            entropy,
        )


def one_step_values(
    env, values: torch.Tensor, rows: torch.Tensor, world_id: torch.Tensor, state: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Q(s, a) = E_o[r + gamma (1 - done) V(s'_o)] for every action, (B, A), read off the env's
    tables at (world_id, state) (B,) and the critic's value tables `values` (R, S), each env
    reading its row `rows` (B,) of them (all the one row when R = 1)."""
    at = world_id * env.S + state  # (B,) rows of the tables flattened to (W*S, A, O)
    ns, done, prob, reward = (
        t.flatten(0, 1).index_select(0, at) for t in (env.next_state, env.done, env.prob, env.reward_table)
    )
    offset = (rows * env.S)[:, None, None] if len(values) > 1 else 0
    v_next = values.reshape(-1)[ns + offset] * ~done  # (B, A, O)
    return (prob * (reward + gamma * v_next)).sum(-1)


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
