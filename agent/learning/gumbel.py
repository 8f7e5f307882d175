"""Gumbel noise, Gumbel-max sampling and the Gumbel-Softmax relaxation (the straight-through
estimators built on them are in `agent.learning.straight_through`).

Everything here is a small pure function of its tensor arguments plus an explicit
``torch.Generator``; nothing touches the global RNG.  Classes (actions) live on the last
dimension and any leading batch shape is accepted.  Noise and softmaxes are computed in at
least float32 (float64 logits stay float64) and results are cast back to the logits dtype,
so fp16/bf16 policies neither overflow nor produce NaN gradients.

References:
    Gumbel (1954); Maddison, Tarlow & Minka, "A* Sampling" (NeurIPS 2014) for the
    Gumbel-max trick and truncated Gumbels; Bengio, Leonard & Courville (2013) for ST;
    Jang, Gu & Poole (2016) and Maddison, Mnih & Teh (2016) for Gumbel-Softmax;
    Paulus, Maddison & Krause, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
    Gradient Estimator" (ICLR 2021); Liu et al., "Bridging Discrete and Backpropagation:
    Straight-Through and Beyond" (ReinMax, NeurIPS 2023); Shekhovtsov, "Cold Analysis of
    Rao-Blackwellized Straight-Through Gumbel-Softmax Gradient Estimator" (ZGR, ICML 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# The distribution and Gumbel-max live on the envs' floor, which samples with them too.
from envs.gumbel_max import (
    _U_MAX,
    _U_MIN,
    _check_scale,
    _compute_dtype,
    gumbel_from_uniform,
    gumbel_max_sample,
    noise_like,
    sample_gumbel,
)

__all__ = [
    "check_tau",
    "softmax",
    "conditional_gumbel",
    "gumbel_cdf",
    "gumbel_from_uniform",
    "gumbel_max_sample",
    "gumbel_pdf",
    "gumbel_softmax",
    "sample_gumbel",
]

# --------------------------------------------------------------------------------------
# Gumbel distribution
# --------------------------------------------------------------------------------------


def _output_dtype(logits: Tensor) -> torch.dtype:
    return logits.dtype if logits.is_floating_point() else _compute_dtype(logits.dtype)


def _as_float_tensor(x: float | Tensor) -> Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _standardised(x: float | Tensor, loc: float, scale: float) -> tuple[Tensor, Tensor]:
    """x as a float tensor, and z = (x - loc) / scale computed in at least float32."""
    _check_scale(scale)
    t = _as_float_tensor(x)
    return t, (t.to(_compute_dtype(t.dtype)) - loc) / scale


def gumbel_cdf(x: float | Tensor, loc: float = 0.0, scale: float = 1.0) -> float | Tensor:
    """Gumbel cdf ``exp(-exp(-(x - loc) / scale))``.

    Args:
        x: Points to evaluate (tensor or Python number).
        loc: Location of the distribution.
        scale: Scale (> 0) of the distribution.

    Returns:
        A tensor like ``x`` (computed in at least float32), or a float for a number input.
    """
    t, z = _standardised(x, loc, scale)  # z: (...)
    out = torch.exp(-torch.exp(-z))  # (...)
    return out.item() if not isinstance(x, Tensor) else out.to(t.dtype)


def gumbel_pdf(x: float | Tensor, loc: float = 0.0, scale: float = 1.0) -> float | Tensor:
    """Gumbel pdf ``exp(-(z + exp(-z))) / scale`` with ``z = (x - loc) / scale``.

    Args:
        x: Points to evaluate (tensor or Python number).
        loc: Location of the distribution.
        scale: Scale (> 0) of the distribution.

    Returns:
        A tensor like ``x`` (computed in at least float32), or a float for a number input.
    """
    t, z = _standardised(x, loc, scale)  # z: (...)
    # One exp of the summed exponent: exp(-z) may overflow to inf far in the left tail, which
    # then correctly gives exp(-inf) = 0 instead of the inf * 0 = NaN of a factored form.
    out = torch.exp(-(z + torch.exp(-z))) / scale  # (...)
    return out.item() if not isinstance(x, Tensor) else out.to(t.dtype)


# --------------------------------------------------------------------------------------
# Sampling and relaxations
# --------------------------------------------------------------------------------------


def softmax(x: Tensor) -> Tensor:
    """softmax over the last dim, (..., A). A few actions per row on CPU are computed over the
    first dim of a moved view instead: torch's CPU kernel is several times slower on rows of 4
    than on columns (the straight-through estimators take two or three per env step)."""
    if x.device.type != "cpu" or x.dim() < 2 or x.shape[-1] > 16:
        return torch.softmax(x, dim=-1)
    return torch.softmax(x.movedim(-1, 0), dim=0).movedim(0, -1)


def check_tau(tau: float) -> None:
    try:
        ok = math.isfinite(float(tau)) and float(tau) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"tau must be a finite number > 0, got tau={tau!r}; use a positive temperature "
            "such as 1.0 (smaller tau gives samples closer to one-hot)."
        )


def gumbel_softmax(
    logits: Tensor, tau: float = 1.0, *, hard: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """Gumbel-Softmax sample ``softmax((logits + G) / tau)``.

    Args:
        logits: Unnormalised log-probabilities, shape (..., A).
        tau: Temperature > 0; tau -> 0 approaches one-hot, tau -> inf approaches uniform.
        hard: If True, return the straight-through variant: forward is the one-hot of
            argmax(logits + G), backward is the gradient of the soft sample.
        generator: Source of randomness.

    Returns:
        Tensor of shape (..., A) in the logits dtype.
    """
    check_tau(tau)
    x = logits.to(_compute_dtype(logits.dtype))  # (..., A)
    perturbed = x + noise_like(logits, generator)  # (..., A)
    soft = torch.softmax(perturbed / tau, dim=-1)  # (..., A)
    if hard:
        # Index from the perturbed logits, not from `soft`: at tiny tau the softmax can
        # underflow into ties that argmax would break differently.
        onehot = F.one_hot(perturbed.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)  # (..., A)
        soft = onehot + (soft - soft.detach())  # (..., A)
    return soft.to(_output_dtype(logits))


def conditional_gumbel(
    logits: Tensor, index: Tensor, *, num_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """Gumbel-perturbed logits conditioned on their argmax being ``index``.

    Draws ``logits + G`` with G standard Gumbel, conditioned on argmax == index
    (Paulus et al. 2021, App.; Maddison et al. 2014): the top value is Gumbel(logsumexp)
    and every other value is a Gumbel(logit) truncated below it.  No gradient flows.

    Args:
        logits: Unnormalised log-probabilities, shape (..., A).
        index: Conditioning class per row, shape (...).
        num_samples: Number K of independent draws.
        generator: Source of randomness.

    Returns:
        Perturbed logits of shape (K, ..., A) whose argmax over the last dim is ``index``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}.")
    x = logits.detach().to(_compute_dtype(logits.dtype))  # (..., A)
    u = torch.rand((num_samples, *x.shape), generator=generator, device=x.device, dtype=torch.float32).clamp(
        _U_MIN, _U_MAX
    )  # (K, ..., A)
    # E = -log U ~ Exp(1); with U clamped, E is in (0, 88) so log E is finite.
    log_e = torch.log(-torch.log(u)).to(x.dtype)  # (K, ..., A)
    lse = torch.logsumexp(x, dim=-1, keepdim=True)  # (..., 1)
    idx = index.unsqueeze(-1).expand(num_samples, *index.shape, 1)  # (K, ..., 1)
    log_e_top = log_e.gather(-1, idx)  # (K, ..., 1)
    top = lse - log_e_top  # (K, ..., 1)
    # -log(E_j exp(-x_j) + E_i exp(-lse)) evaluated in log space so huge |logits| stay finite.
    others = -torch.logaddexp(log_e - x, log_e_top - lse)  # (K, ..., A)
    # Rounding can make a dominant non-sampled class tie with `top`; keep it strictly below so
    # the conditioning event holds exactly (a one-ulp change).
    others = torch.minimum(others, torch.nextafter(top, top.new_tensor(-math.inf)))  # (K, ..., A)
    return others.scatter(-1, idx, top)  # (K, ..., A)
