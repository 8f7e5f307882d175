"""Gumbel noise and Gumbel-max sampling: the draws the envs and the learners share.

The lowest floor of the package (it imports only torch): `envs` samples start cells and slip
outcomes with it, and `agent.learning.gumbel` builds the Gumbel-Softmax relaxation on it. Nothing here
touches the global RNG unless no generator is given.

G = -log(-log U) with U uniform is Gumbel(0, 1), and argmax(logits + G) is an exact sample of
softmax(logits) (Gumbel 1954; Maddison, Tarlow & Minka, "A* Sampling", NeurIPS 2014).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_F32 = torch.finfo(torch.float32)
# U in [tiny, 1 - eps] keeps both logs finite: -log(tiny) ~ 87.3 and -log(1 - eps) ~ 1.2e-7 > 0,
# so G = -log(-log U) lies in [-4.47, 15.9].  Truncating there moves ~1e-7 probability mass,
# far below anything a test or an agent can see (torch.rand already has 2**-24 resolution).
_U_MIN = _F32.tiny
_U_MAX = 1.0 - _F32.eps


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp16/bf16 (and integer) logits are lifted to float32; float64 stays float64.
    return torch.promote_types(dtype, torch.float32)


def _check_scale(scale: float | Tensor) -> None:
    if not isinstance(scale, Tensor) and not scale > 0:
        raise ValueError(f"Gumbel scale must be > 0, got scale={scale!r}; pass a positive scale.")


def gumbel_from_uniform(u: Tensor, loc: float = 0.0, scale: float = 1.0) -> Tensor:
    """Map uniform draws to Gumbel(loc, scale) noise by inverting the cdf.

    Args:
        u: Uniform draws in [0, 1]; they are clamped into [tiny, 1 - eps] of float32 so
            that exactly 0 or 1 still gives finite noise.
        loc: Location of the Gumbel distribution.
        scale: Scale (> 0) of the Gumbel distribution.

    Returns:
        Float32 tensor of the same shape as ``u``, always finite.
    """
    _check_scale(scale)
    u = u.to(torch.float32).clamp(_U_MIN, _U_MAX)  # (...)
    return loc - scale * torch.log(-torch.log(u))  # (...)


def sample_gumbel(
    shape: int | Sequence[int] | torch.Size,
    *,
    loc: float = 0.0,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw float32 Gumbel(loc, scale) noise that is always finite.

    Args:
        shape: Output shape.
        loc: Location of the distribution.
        scale: Scale (> 0) of the distribution.
        generator: Source of randomness; defaults to torch's global generator only if None.
        device: Output device; defaults to the generator's device.

    Returns:
        Float32 tensor of the given shape.
    """
    if isinstance(shape, int):
        shape = (shape,)
    if device is None and generator is not None:
        device = generator.device
    u = torch.rand(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    return gumbel_from_uniform(u, loc, scale)


def noise_like(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    # Single place that draws the forward noise, so a test can reproduce it with
    # sample_gumbel(logits.shape, generator=<same seed>).
    return sample_gumbel(logits.shape, generator=generator, device=logits.device)


def gumbel_max_sample(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Exact sample of softmax(logits) by the Gumbel-max trick.

    Args:
        logits: Unnormalised log-probabilities, shape (..., A); no log-softmax needed since
            argmax is invariant to the per-row constant.
        generator: Source of randomness.

    Returns:
        LongTensor of class indices, shape (...).
    """
    noise = noise_like(logits, generator)  # (..., A)
    return (logits.to(_compute_dtype(logits.dtype)) + noise).argmax(dim=-1)  # (...)
