"""The differentiable transition, two ways.

A step is bilinear in the one-hot position `pos` (B, S) and the one-hot action `act` (B, A):

    next_pos[b, j] = sum_{s, a} pos[b, s] act[b, a] 1[ns[s, a] = j]
    reward[b]      = sum_{s, a} pos[b, s] act[b, a] R[s, a]
    live[b, j]     = sum_{s, a} pos[b, s] act[b, a] 1[ns[s, a] = j] C[s, a]

(ns, R: the tables at this step's slip outcome; C = 1 - done, so `live` is the part of the next
position where the episode goes on: a value read off it is 0 after an ending transition).
`dense_step` writes that out with (B, S, A) scatters; it is the reference and the path for soft
(non one-hot) inputs. `OneHotStep` is the fast path for exact one-hot inputs: the forward is a
table look-up, and the backward gathers just the rows the derivative needs. At a one-hot point,
    d/d act[b, k] = g_next[b, ns[s_b, k]] + g_r[b] R[s_b, k] + g_live[b, ns[s_b, k]] C[s_b, k]
    d/d pos[b, j] = g_next[b, ns[j, a_b]] + g_r[b] R[j, a_b] + g_live[b, ns[j, a_b]] C[j, a_b]
(row of the current state, column of the taken action), exactly the dense formula's gradient.
"""

from __future__ import annotations

import torch


class StepTables:
    """Transition tables laid out so each backward gather reads contiguous rows.

    `*_by_action[(w, o, a)]` is the (S,) row "from every state under action a";
    `*_by_state[(w, s, o)]` is the (A,) row "from state s under every action".
    """

    def __init__(
        self, next_state: torch.Tensor, reward: torch.Tensor, done: torch.Tensor, prob: torch.Tensor | None = None
    ) -> None:
        W, S, A, O = next_state.shape  # (W, S, A, O)
        self.shape = (W, S, A, O)
        self.next_state = next_state
        self.reward = reward
        self.cont = (~done).to(reward.dtype)  # (W, S, A, O) 1 where the episode goes on
        self.prob = prob  # (W, S, A, O); needed only by the expected-outcome backward

        def by_action(t: torch.Tensor) -> torch.Tensor:
            return t.permute(0, 3, 2, 1).reshape(W * O * A, S).contiguous()

        def by_state(t: torch.Tensor) -> torch.Tensor:
            return t.permute(0, 1, 3, 2).reshape(W * S * O, A).contiguous()

        self.ns_by_action, self.r_by_action, self.c_by_action = map(by_action, (next_state, reward, self.cont))
        self.ns_by_state, self.r_by_state, self.c_by_state = map(by_state, (next_state, reward, self.cont))

    def flat_rows(self, w: torch.Tensor, s: torch.Tensor, a: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        _, S, A, O = self.shape
        return ((w * S + s) * A + a) * O + o  # (B,) the row of (w, s, a, o) in the flattened tables

    def action_rows(self, w: torch.Tensor, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        _, _, A, O = self.shape
        return (w * O + o) * A + a  # (B,)

    def state_rows(self, w: torch.Tensor, s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        _, S, _, O = self.shape
        return (w * S + s) * O + o  # (B,)

    def every_action(
        self, w: torch.Tensor, s: torch.Tensor, o: torch.Tensor, expected: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(next cell, reward, continues, probability) from each env's state s under every
        action: at outcome o, (B, A) each and no probability; with `expected` (and more than one
        outcome), under every outcome, (B, A, O) each."""
        if expected and self.shape[3] > 1:
            return tuple(t[w, s] for t in (self.next_state, self.reward, self.cont, self.prob))
        rows = self.state_rows(w, s, o)
        return (*(t.index_select(0, rows) for t in (self.ns_by_state, self.r_by_state, self.c_by_state)), None)


def one_hot(index: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) cell indices -> (B, n) one-hot rows of `dtype`: the values of
    `torch.nn.functional.one_hot(index, n).to(dtype)`, written once in place of an int64 tensor
    and then a converted copy (the (B, S) positions are written every env step)."""
    return torch.zeros(index.shape[0], n, dtype=dtype, device=index.device).scatter_(1, index[:, None], 1.0)


def _pull(g_next, g_reward, g_live, ns, r, c):
    """The chain rule at one-hot points: g_next[ns] + g_r * R + g_live[ns] * C, rows (B, K)."""
    return g_next.gather(1, ns) + g_reward[:, None] * r.to(g_next.dtype) + g_live.gather(1, ns) * c.to(g_next.dtype)


class OneHotStep(torch.autograd.Function):
    """(pos, act) one-hot -> (next_pos, reward, live, next_state), with the gather backward above."""

    @staticmethod
    def forward(ctx, pos, act, tables: StepTables, w, s, a, o, expected=False, row=None):  # noqa: D102
        row = tables.flat_rows(w, s, a, o) if row is None else row  # (B,) the caller may have it already
        next_state = tables.next_state.view(-1).index_select(0, row)  # (B,)
        reward = tables.reward.view(-1).index_select(0, row).to(pos.dtype)  # (B,)
        cont = tables.cont.view(-1).index_select(0, row).to(pos.dtype)  # (B,)
        next_pos = one_hot(next_state, pos.shape[1], pos.dtype)  # (B, S)
        live = torch.zeros_like(next_pos).scatter_(1, next_state[:, None], cont[:, None])  # (B, S)
        ctx.tables, ctx.expected = tables, expected and tables.shape[3] > 1
        ctx.save_for_backward(w, s, a, o)
        ctx.mark_non_differentiable(next_state)
        return next_pos, reward, live, next_state

    @staticmethod
    def backward(ctx, g_next, g_reward, g_live, _):  # noqa: D102
        tables: StepTables = ctx.tables
        w, s, a, o = ctx.saved_tensors
        g_pos = g_act = None
        if ctx.expected:
            return (*_expected_backward(tables, g_next, g_reward, g_live, w, s, a, ctx.needs_input_grad), *[None] * 7)
        if ctx.needs_input_grad[0]:
            rows = tables.action_rows(w, o, a)
            g_pos = _pull(
                g_next,
                g_reward,
                g_live,
                tables.ns_by_action.index_select(0, rows),
                tables.r_by_action.index_select(0, rows),
                tables.c_by_action.index_select(0, rows),
            )  # (B, S)
        if ctx.needs_input_grad[1]:
            g_act = _pull(g_next, g_reward, g_live, *tables.every_action(w, s, o)[:3])  # (B, A)
        return g_pos, g_act, None, None, None, None, None, None, None


class ActionStep(torch.autograd.Function):
    """The one-hot step for a position that carries no gradient (the first step of a look-ahead),
    without (B, S) positions: act (B, A) one-hot at a_b (B,), slip outcome o (B,) -> the reward
    R[s_b, a_b, o_b] and, for each cell table u_i given at the next cells, the read
    C[s_b, a_b, o_b] u_i[next cell] that `live . u_i` gives, all (B,) and differentiable in
    `act`. `r`, `c`, `p` and the `reads` are the tables from the state under every action
    (`StepTables.every_action`): at the drawn outcome, (B, A) with `p` None, or under every
    outcome, (B, A, O) with its probabilities `p`. The backward is OneHotStep's action gradient
    with g_live = sum_i g_i u_i, term for term, so the same numbers bit for bit:
        d/d act[b, k] = g_r R[s_b, k] + (sum_i g_i u_i[b, k]) C[s_b, k]     (drawn outcome)
        d/d act[b, k] = sum_o p[s_b, k, o] (the same at outcome o)          (expected)"""

    @staticmethod
    def forward(ctx, act, r, c, p, a_idx, o, *reads):  # noqa: D102
        b = torch.arange(act.shape[0], device=act.device)
        taken = (b, a_idx) if p is None else (b, a_idx, o)  # the action taken, at the outcome drawn
        live = c[taken]  # (B,) 1 where the episode goes on
        ctx.save_for_backward(r, c, p, *reads)
        return (r[taken], *(live * u[taken] for u in reads))

    @staticmethod
    def backward(ctx, g_reward, *g_reads):  # noqa: D102
        r, c, p, *reads = ctx.saved_tensors
        at = (slice(None), None) if p is None else (slice(None), None, None)  # g (B,) against (B, A[, O])
        g_live = None
        for g, u in zip(g_reads, reads, strict=True):
            g_live = g[at] * u if g_live is None else g_live + g[at] * u  # at the next cells
        if p is None:
            g_act = g_reward[at] * r if g_live is None else g_reward[at] * r + g_live * c  # (B, A)
        else:
            g = g_reward[at] * r if g_live is None else g_live * c + g_reward[at] * r  # (B, A, O)
            g_act = (p * g).sum(-1)  # (B, A)
        return (g_act, *[None] * (5 + len(reads)))


def _expected_backward(tables: StepTables, g_next, g_reward, g_live, w, s, a, needs):
    """The backward averaged over slip outcomes with their probabilities instead of taking the
    sampled one: the derivative of E_o[next_pos], E_o[reward], E_o[live] (Rao-Blackwellised)."""
    g_pos = g_act = None
    B = g_next.shape[0]

    def expect(idx):  # the tables at idx, (B, K, O) each -> (B, K)
        ns, r, c, p = (t[idx] for t in (tables.next_state, tables.reward, tables.cont, tables.prob))
        K, O = ns.shape[1:]
        flat = ns.reshape(B, K * O)
        g = (g_next.gather(1, flat) + g_live.gather(1, flat) * c.reshape(B, K * O).to(g_next.dtype)).reshape(B, K, O)
        g = g + g_reward[:, None, None] * r.to(g_next.dtype)
        return (p.to(g_next.dtype) * g).sum(-1)

    if needs[0]:  # every state j under the taken action
        g_pos = expect((w[:, None], torch.arange(tables.shape[1], device=w.device)[None, :], a[:, None]))  # (B, S)
    if needs[1]:  # the current state under every action
        g_act = expect((w, s))  # (B, A)
    return g_pos, g_act


def dense_step(
    pos: torch.Tensor, act: torch.Tensor, tables: StepTables, w: torch.Tensor, o: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bilinear step written out densely; works for soft `pos`/`act` too.
    Returns next_pos (B, S), reward (B,), live (B, S)."""
    B, S = pos.shape
    A = act.shape[1]
    states = torch.arange(S, device=pos.device)[None, :, None]
    actions = torch.arange(A, device=pos.device)[None, None, :]
    at = (w[:, None, None], states, actions, o[:, None, None])
    ns = tables.next_state[at]  # (B, S, A)
    rs = tables.reward[at].to(pos.dtype)  # (B, S, A)
    cs = tables.cont[at].to(pos.dtype)  # (B, S, A)
    joint = pos[:, :, None] * act[:, None, :]  # (B, S, A)
    flat = ns.reshape(B, S * A)
    zeros = torch.zeros(B, S, device=pos.device, dtype=joint.dtype)
    next_pos = zeros.scatter_add(1, flat, joint.reshape(B, S * A))  # (B, S)
    live = zeros.scatter_add(1, flat, (joint * cs).reshape(B, S * A))  # (B, S)
    reward = (joint * rs).sum((1, 2))  # (B,)
    return next_pos, reward, live


def is_one_hot(x: torch.Tensor) -> bool:
    """Every row exactly one-hot (values, not gradients)."""
    x = x.detach()
    return bool(((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all())
