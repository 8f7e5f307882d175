"""Straight-through gradient estimators: an exact one-hot Gumbel-max sample in the forward, a
surrogate gradient in the backward (ST, ST-GS, Gumbel-Rao, ReinMax, ZGR) or the soft sample itself (GS).

References:
    Bengio, Leonard & Courville (2013) for ST; Jang, Gu & Poole (2016) for ST-GS; Paulus, Maddison
    & Krause, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient Estimator" (ICLR
    2021); Liu et al., "Bridging Discrete and Backpropagation: Straight-Through and Beyond"
    (ReinMax, NeurIPS 2023); Shekhovtsov, "Cold Analysis of Rao-Blackwellized Straight-Through
    Gumbel-Softmax Gradient Estimator" (ZGR, ICML 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from agent.learning.gumbel import _compute_dtype, _output_dtype, check_tau, conditional_gumbel, noise_like, softmax

__all__ = ["ESTIMATORS", "straight_through"]

#: Names accepted by :func:`straight_through`. All but ``"gs"`` return an exact one-hot.
ESTIMATORS: tuple[str, ...] = ("st", "exact", "st-gs", "gumbel-rao", "reinmax", "zgr", "gs")

# Keyword options each estimator understands; anything else is a caller bug.
_ESTIMATOR_OPTIONS: dict[str, frozenset[str]] = {
    "st": frozenset(),
    "exact": frozenset(),
    "st-gs": frozenset(),
    "gumbel-rao": frozenset({"k"}),
    "reinmax": frozenset(),
    "zgr": frozenset(),
    "gs": frozenset(),
}


def _jacobian_surrogate(x: Tensor, p: Tensor) -> Tensor:
    """Tensor whose Jacobian w.r.t. ``x`` is exactly J(p) = diag(p) - p p^T (p constant)."""
    p = p.detach()  # (..., A)
    # Zero-probability entries contribute nothing to J(p); masking them keeps -inf logits
    # (masked actions) from producing inf - inf = NaN.
    x = torch.where(p > 0, x, torch.zeros_like(x))  # (..., A)
    return p * (x - (p * x).sum(dim=-1, keepdim=True))  # (..., A)


def _surrogate(
    estimator: str,
    x: Tensor,
    onehot: Tensor,
    index: Tensor,
    noise: Tensor,
    tau: float,
    generator: torch.Generator | None,
    options: dict,
) -> Tensor:
    """Differentiable tensor whose vector-Jacobian product is the estimator's backward."""
    if estimator == "st":
        # Bengio et al. 2013: backward (1/tau) J(softmax(x/tau)) g.
        return softmax(x / tau)  # (..., A)
    if estimator == "exact":
        # J(pi) g is the gradient of sum_a pi_a g_a: for an objective linear in the one-hot action,
        # f(D) = sum_a D_a g_a, the exact gradient of E_pi[f] from the four values g enumerated.
        return softmax(x)  # (..., A)
    if estimator == "st-gs":
        # Jang et al. 2016: backward (1/tau) J(y) g, y the soft sample of the same noise.
        return torch.softmax((x + noise) / tau, dim=-1)  # (..., A)
    if estimator == "gumbel-rao":
        # Paulus et al. 2021: average ST-GS over K noises drawn given argmax == index.
        k = options.get("k", 10)
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"gumbel-rao needs an integer k >= 1, got k={k!r}.")
        x0 = x.detach()  # (..., A)
        cond = conditional_gumbel(x0, index, num_samples=k, generator=generator)  # (K, ..., A)
        # Noise = conditional value - logits, detached, so the gradient flows through x only;
        # masked (-inf) logits get zero noise instead of inf - inf.
        g_tilde = torch.where(torch.isfinite(x0), cond - x0, torch.zeros_like(cond))  # (K, ..., A)
        return torch.softmax((x + g_tilde) / tau, dim=-1).mean(dim=0)  # (..., A)
    if estimator == "reinmax":
        # Liu et al. 2023, Alg. 2: backward 2 J(pi1) g - 1/2 J(pi0) g (no 1/tau factor).
        pi0 = softmax(x)  # (..., A)
        pi1 = (onehot + softmax(x.detach() / tau)) / 2  # (..., A)
        return 2 * _jacobian_surrogate(x, pi1) - 0.5 * pi0  # (..., A)
    if estimator == "zgr":
        # Shekhovtsov 2023: average of ST (J(pi) g) and a DARN-style term whose backward is
        # (g_x - g^T pi)(e_x - pi), since d log pi_x / dx = e_x - pi.
        pi = softmax(x)  # (..., A)
        log_px = torch.log_softmax(x, dim=-1).gather(-1, index.unsqueeze(-1))  # (..., 1)
        return 0.5 * (pi + (onehot - pi.detach()) * log_px)  # (..., A)
    raise AssertionError(estimator)  # unreachable: names are validated by the caller


def straight_through(
    logits: Tensor, estimator: str, *, tau: float = 1.0, generator: torch.Generator | None = None, **options: int
) -> tuple[Tensor, Tensor]:
    """Sample a one-hot action with a surrogate gradient.

    The forward value is the exact one-hot Gumbel-max sample D of softmax(logits) (the
    noise is drawn first, as ``sample_gumbel(logits.shape, generator=generator)``).  With
    J(p) = diag(p) - p p^T and g the upstream gradient at D, the backward is:

    - ``"st"``: (1/tau) J(softmax(logits/tau)) g.
    - ``"exact"``: J(softmax(logits)) g, whatever ``tau``: the exact gradient of E[f(D)] when f
      is linear in the one-hot D (g then holds f at each action); ``"st"`` at tau = 1.
    - ``"st-gs"``: (1/tau) J(y) g with y = softmax((logits + G)/tau).
    - ``"gumbel-rao"``: ST-GS averaged over ``k`` (default 10) noises drawn conditioned on
      argmax == D; same mean as ST-GS, lower variance.
    - ``"reinmax"``: 2 J(pi1) g - J(pi0) g / 2 with pi0 = softmax(logits),
      pi1 = (D + softmax(logits/tau)) / 2.  Use tau >= 1 (the paper's recommended range).
    - ``"zgr"``: (J(pi) g + (g_x - g^T pi)(e_x - pi)) / 2, pi = softmax(logits); the
      tau -> 0 limit of Gumbel-Rao, so ``tau`` is ignored.
    - ``"gs"``: no straight-through: the forward is the soft sample y itself.

    Args:
        logits: Unnormalised log-probabilities, shape (..., A).
        estimator: One of :data:`ESTIMATORS`.
        tau: Temperature > 0.
        generator: Source of randomness.
        **options: Estimator options (``k`` for ``"gumbel-rao"``).

    Returns:
        ``(action_onehot, action_index)`` of shapes (..., A) in the logits dtype and (...).

    Raises:
        ValueError: Unknown estimator or option, or tau <= 0.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid names are {list(ESTIMATORS)}.")
    unknown = sorted(set(options) - _ESTIMATOR_OPTIONS[estimator])
    if unknown:
        accepted = sorted(_ESTIMATOR_OPTIONS[estimator]) or "no options"
        raise ValueError(f"estimator {estimator!r} got unknown option(s) {unknown}; it accepts {accepted}.")
    check_tau(tau)

    x = logits.to(_compute_dtype(logits.dtype))  # (..., A)
    noise = noise_like(logits, generator)  # (..., A)
    perturbed = x.detach() + noise  # (..., A)
    index = perturbed.argmax(dim=-1)  # (...)
    if estimator == "gs":
        return torch.softmax((x + noise) / tau, dim=-1).to(_output_dtype(logits)), index

    onehot = F.one_hot(index, logits.shape[-1]).to(x.dtype)  # (..., A)
    surrogate = _surrogate(estimator, x, onehot, index, noise, tau, generator, options)  # (..., A)
    # s - s.detach() is exactly 0 in the forward, so the value stays an exact one-hot while
    # the backward is the VJP of the surrogate.
    action = onehot + (surrogate - surrogate.detach())  # (..., A)
    return action.to(_output_dtype(logits)), index
