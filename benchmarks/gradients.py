"""Policy gradients of a tabular world, exact and sampled: what the estimator lab
(`benchmarks/estimators.py`) compares. The exact gradient of J = start . v_pi by autograd through
`envs.oracle.expected_return`; per-sample estimates from `envs.BatchedGridWorld` rollouts on the
differentiable path (straight-through actions) or on the integer path (REINFORCE)."""

from __future__ import annotations

import torch

from agent.learning.gumbel import gumbel_max_sample
from agent.learning.straight_through import straight_through
from envs import BatchedGridWorld, TabularMDP, expected_return, load_map, make_world, policy_values, time_limited_return
from envs.maze import MazeSpec

# The default world: a 5x5 open room, start and goal in opposite corners (the grid edge is a wall).
MAPS = {
    "room5": """
        S....
        .....
        .....
        .....
        ....G
    """
}
REINFORCE = ("reinforce+v", "reinforce")  # exact v_pi baseline, no baseline


# ----------------------------------------------------------------------------- the exact side
def build_mdp(spec: str, seed: int = 0) -> TabularMDP:
    """A lab world: a name from `MAPS` or any `envs.make_world` spec (a maze family: one maze)."""
    if spec in MAPS:
        return load_map(MAPS[spec])
    world = make_world(spec)
    if isinstance(world, MazeSpec):
        return world.sample_many(1, seed)[0]
    return world


def init_theta(mdp: TabularMDP, std: float, seed: int) -> torch.Tensor:
    """Policy logits (S, A) ~ N(0, std), float32, from their own generator."""
    g = torch.Generator().manual_seed(seed)
    return std * torch.randn(mdp.num_states, mdp.num_actions, generator=g)


def exact_gradient(mdp: TabularMDP, theta: torch.Tensor, gamma: float) -> tuple[float, torch.Tensor]:
    """(J, dJ/dtheta (S, A)) of J = expected_return(mdp, softmax(theta), gamma), in float64."""
    th = theta.detach().double().requires_grad_()
    J = expected_return(mdp, torch.softmax(th, -1), gamma)
    (g,) = torch.autograd.grad(J, th)
    return float(J.detach()), g


def truncation_bias(mdp: TabularMDP, theta: torch.Tensor, gamma: float, horizon: int, g: torch.Tensor) -> float:
    """||g_H - g|| / ||g||, g_H the exact gradient of the H-step objective."""
    th = theta.detach().double().requires_grad_()
    (g_h,) = torch.autograd.grad(time_limited_return(mdp, torch.softmax(th, -1), gamma, horizon), th)
    return float((g_h - g).norm() / g.norm())


def choose_horizon(
    mdp: TabularMDP, theta: torch.Tensor, gamma: float, g: torch.Tensor, tol: float, max_horizon: int = 4096
) -> int:
    """Smallest H (to bisection) with truncation bias below `tol`: double, then bisect."""
    hi = 1
    while truncation_bias(mdp, theta, gamma, hi, g) >= tol:
        if hi >= max_horizon:
            raise ValueError(
                f"truncation bias stays above --trunc-tol {tol} up to H={max_horizon}; "
                "lower --gamma or raise --trunc-tol"
            )
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if truncation_bias(mdp, theta, gamma, mid, g) < tol else (mid, hi)
    return hi


# ----------------------------------------------------------------------------- the estimates
def _chunks(n: int, chunk: int):
    for i, start in enumerate(range(0, n, chunk)):
        yield i, min(chunk, n - start)


def pathwise_samples(
    mdp: TabularMDP,
    theta: torch.Tensor,
    estimator: str,
    *,
    tau: float,
    n: int,
    horizon: int,
    gamma: float,
    seed: int,
    chunk: int = 8192,
    **options: int,
) -> torch.Tensor:
    """Per-sample gradients (n, S, A) of sum_t gamma^t r_t over each env's first episode.

    `n` envs run in chunks of `chunk`, each chunk with its own seeds (seed, chunk index), so the
    same `seed` gives the same noise to every estimator (common random numbers).
    """
    S, A = theta.shape
    out = []
    for i, b in _chunks(n, chunk):
        env = BatchedGridWorld(mdp, b, obs_mode="onehot", seed=seed * 7919 + i, max_episode_steps=horizon)
        gen = torch.Generator().manual_seed(seed * 7919 + i)
        theta_b = theta.detach().expand(b, S, A).clone().requires_grad_()  # (b, S, A) per sample
        obs, _ = env.reset()  # (b, S) one-hot position
        ret = torch.zeros(b)  # (b,) differentiable
        alive = torch.ones(b, dtype=torch.bool)  # (b,) still in the first episode
        discount = 1.0
        for _ in range(horizon):
            logits = torch.einsum("bs,bsa->ba", obs, theta_b)  # (b, A), differentiable in pos too
            action, _ = straight_through(logits, estimator, tau=tau, generator=gen, **options)  # (b, A)
            obs, reward, _, _, info = env.step(action)
            ret = ret + discount * reward * alive  # (b,)
            alive = alive & ~info["done"]
            discount *= gamma
            if not alive.any():
                break
        ret.sum().backward()
        out.append(theta_b.grad)
    return torch.cat(out)


def reinforce_samples(
    mdp: TabularMDP, theta: torch.Tensor, *, n: int, horizon: int, gamma: float, seed: int, chunk: int = 8192
) -> dict[str, torch.Tensor]:
    """Per-sample score-function gradients (n, S, A).

    Returns {"reinforce+v": baseline v_pi, "reinforce": no baseline}, from the same rollouts.
    """
    S, A = theta.shape
    theta = theta.detach()
    v = policy_values(mdp, torch.softmax(theta.double(), -1), gamma).float()  # (S,) exact baseline
    out: dict[str, list[torch.Tensor]] = {k: [] for k in REINFORCE}
    for i, b in _chunks(n, chunk):
        env = BatchedGridWorld(mdp, b, obs_mode="index", seed=seed * 7919 + i, max_episode_steps=horizon)
        gen = torch.Generator().manual_seed(seed * 7919 + i)
        state, _ = env.reset()  # (b,)
        alive = torch.ones(b, dtype=torch.bool)
        states, actions, rewards, masks = [], [], [], []
        for _ in range(horizon):
            action = gumbel_max_sample(theta[state], generator=gen)  # (b,)
            states.append(state)
            actions.append(action)
            masks.append(alive)
            state, reward, _, _, info = env.step(action)
            rewards.append(reward * alive)
            alive = alive & ~info["done"]
            if not alive.any():
                break
        s_t, a_t = torch.stack(states), torch.stack(actions)  # (T, b)
        r_t, m_t = torch.stack(rewards), torch.stack(masks).float()  # (T, b)
        T = s_t.shape[0]
        returns = torch.zeros_like(r_t)  # (T, b) G_t, discounted from t
        acc = torch.zeros(b)
        for t in reversed(range(T)):
            acc = r_t[t] + gamma * acc
            returns[t] = acc
        discount = gamma ** torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
        theta_b = theta.expand(b, S, A).clone().requires_grad_()  # (b, S, A)
        logits = theta_b[torch.arange(b)[None, :], s_t]  # (T, b, A)
        logp = torch.log_softmax(logits, -1).gather(-1, a_t[..., None]).squeeze(-1)  # (T, b)
        for name, baseline in (("reinforce+v", v[s_t]), ("reinforce", torch.zeros(()))):
            surrogate = (discount * m_t * logp * (returns - baseline)).sum()
            (grad,) = torch.autograd.grad(surrogate, theta_b, retain_graph=True)
            out[name].append(grad)
    return {k: torch.cat(grads) for k, grads in out.items()}


# ----------------------------------------------------------------------------- look-aheads
def lookahead_objective(mdp: TabularMDP, policy: torch.Tensor, gamma: float, lookahead: int, values: torch.Tensor):
    """J_K = d . v_K: the expected K-step look-ahead return from d, uniform over the reachable
    cells, closed by the fixed values (S,): v_0 = values, v_{k+1}(s) = sum_a pi(a|s) sum_o p(o|s,a)
    [r + gamma (1 - done) v_k(s'_o)]. Differentiable in `policy` (S, A)."""
    prob, reward = mdp.prob.to(policy.dtype), mdp.reward.to(policy.dtype)  # (S, A, O)
    cont = (~mdp.done).to(policy.dtype)  # (S, A, O)
    v = values.to(policy.dtype)  # (S,)
    for _ in range(lookahead):
        q = (prob * (reward + gamma * cont * v[mdp.next_state])).sum(-1)  # (S, A)
        v = (policy * q).sum(-1)  # (S,)
    start = mdp.reachable().to(policy.dtype)
    return (start / start.sum() * v).sum()


def exact_lookahead_gradient(
    mdp: TabularMDP, theta: torch.Tensor, gamma: float, lookahead: int, values: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """(J_K, dJ_K/dtheta (S, A)) of `lookahead_objective` at pi = softmax(theta), in float64."""
    th = theta.detach().double().requires_grad_()
    J = lookahead_objective(mdp, torch.softmax(th, -1), gamma, lookahead, values)
    (g,) = torch.autograd.grad(J, th)
    return float(J.detach()), g


def lookahead_samples(
    mdp: TabularMDP,
    theta: torch.Tensor,
    estimator: str,
    *,
    tau: float,
    n: int,
    lookahead: int,
    gamma: float,
    values: torch.Tensor,
    seed: int,
    chunk: int = 4096,
    **options: int,
) -> torch.Tensor:
    """Per-sample gradients (n, S, A) of sum_{t<K} gamma^t r_t + gamma^K V(live position after K
    steps) (0 after an episode's end) from a reachable cell drawn uniformly, K = `lookahead`, on the
    differentiable path. Common random numbers across estimators, as `pathwise_samples`."""
    S, A = theta.shape
    cells = torch.nonzero(mdp.reachable()).flatten()  # (k,)
    out = []
    for i, b in _chunks(n, chunk):
        env = BatchedGridWorld(mdp, b, obs_mode="onehot", seed=seed * 7919 + i, max_episode_steps=lookahead + 1)
        gen = torch.Generator().manual_seed(seed * 7919 + i)
        start = cells[torch.randint(len(cells), (b,), generator=gen)]  # (b,)
        pos, _ = env.reset(options={"state": start})  # (b, S)
        theta_b = theta.detach().expand(b, S, A).clone().requires_grad_()  # (b, S, A) per sample
        ret, alive, discount = torch.zeros(b), torch.ones(b, dtype=torch.bool), 1.0
        for k in range(lookahead):
            logits = torch.einsum("bs,bsa->ba", pos, theta_b)  # (b, A), differentiable in pos too
            action, _ = straight_through(logits, estimator, tau=tau, generator=gen, **options)  # (b, A)
            pos, reward, _, _, info = env.step(action)
            step = reward if k + 1 < lookahead else reward + gamma * (info["live_pos"] @ values)  # (b,)
            ret = ret + discount * step * alive
            alive = alive & ~info["done"]
            discount *= gamma
        ret.sum().backward()
        out.append(theta_b.grad)
    return torch.cat(out)
