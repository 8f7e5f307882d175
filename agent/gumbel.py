"""Gumbel noise, Gumbel-max sampling and straight-through gradient estimators.

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
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ESTIMATORS",
    "TAU_SCHEDULES",
    "TauSchedule",
    "conditional_gumbel",
    "gumbel_cdf",
    "gumbel_from_uniform",
    "gumbel_max_sample",
    "gumbel_pdf",
    "gumbel_softmax",
    "sample_gumbel",
    "straight_through",
    "tau_schedule",
]

#: Names accepted by :func:`straight_through`. All but ``"gs"`` return an exact one-hot.
ESTIMATORS: tuple[str, ...] = ("st", "st-gs", "gumbel-rao", "reinmax", "zgr", "gs")

#: Names accepted by :func:`tau_schedule`.
TAU_SCHEDULES: tuple[str, ...] = ("constant", "exponential", "linear")

# Keyword options each estimator understands; anything else is a caller bug.
_ESTIMATOR_OPTIONS: dict[str, frozenset[str]] = {
    "st": frozenset(),
    "st-gs": frozenset(),
    "gumbel-rao": frozenset({"k"}),
    "reinmax": frozenset(),
    "zgr": frozenset(),
    "gs": frozenset(),
}

_F32 = torch.finfo(torch.float32)
# U in [tiny, 1 - eps] keeps both logs finite: -log(tiny) ~ 87.3 and -log(1 - eps) ~ 1.2e-7 > 0,
# so G = -log(-log U) lies in [-4.47, 15.9].  Truncating there moves ~1e-7 probability mass,
# far below anything a test or an agent can see (torch.rand already has 2**-24 resolution).
_U_MIN = _F32.tiny
_U_MAX = 1.0 - _F32.eps


# --------------------------------------------------------------------------------------
# Gumbel distribution
# --------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp16/bf16 (and integer) logits are lifted to float32; float64 stays float64.
    return torch.promote_types(dtype, torch.float32)


def _output_dtype(logits: Tensor) -> torch.dtype:
    return logits.dtype if logits.is_floating_point() else _compute_dtype(logits.dtype)


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


def _check_tau(tau: float) -> None:
    try:
        ok = math.isfinite(float(tau)) and float(tau) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"tau must be a finite number > 0, got tau={tau!r}; use a positive temperature "
            "such as 1.0 (smaller tau gives samples closer to one-hot)."
        )


def _noise_like(logits: Tensor, generator: torch.Generator | None) -> Tensor:
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
    noise = _noise_like(logits, generator)  # (..., A)
    return (logits.to(_compute_dtype(logits.dtype)) + noise).argmax(dim=-1)  # (...)


def gumbel_softmax(
    logits: Tensor,
    tau: float = 1.0,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
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
    _check_tau(tau)
    x = logits.to(_compute_dtype(logits.dtype))  # (..., A)
    perturbed = x + _noise_like(logits, generator)  # (..., A)
    soft = torch.softmax(perturbed / tau, dim=-1)  # (..., A)
    if hard:
        # Index from the perturbed logits, not from `soft`: at tiny tau the softmax can
        # underflow into ties that argmax would break differently.
        onehot = F.one_hot(perturbed.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)  # (..., A)
        soft = onehot + (soft - soft.detach())  # (..., A)
    return soft.to(_output_dtype(logits))


def conditional_gumbel(
    logits: Tensor,
    index: Tensor,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
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
    u = torch.rand(
        (num_samples, *x.shape), generator=generator, device=x.device, dtype=torch.float32
    ).clamp(_U_MIN, _U_MAX)  # (K, ..., A)
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


# --------------------------------------------------------------------------------------
# Straight-through estimators
# --------------------------------------------------------------------------------------


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
        return torch.softmax(x / tau, dim=-1)  # (..., A)
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
        pi0 = torch.softmax(x, dim=-1)  # (..., A)
        pi1 = (onehot + torch.softmax(x.detach() / tau, dim=-1)) / 2  # (..., A)
        return 2 * _jacobian_surrogate(x, pi1) - 0.5 * pi0  # (..., A)
    if estimator == "zgr":
        # Shekhovtsov 2023: average of ST (J(pi) g) and a DARN-style term whose backward is
        # (g_x - g^T pi)(e_x - pi), since d log pi_x / dx = e_x - pi.
        pi = torch.softmax(x, dim=-1)  # (..., A)
        log_px = torch.log_softmax(x, dim=-1).gather(-1, index.unsqueeze(-1))  # (..., 1)
        return 0.5 * (pi + (onehot - pi.detach()) * log_px)  # (..., A)
    raise AssertionError(estimator)  # unreachable: names are validated by the caller


def straight_through(
    logits: Tensor,
    estimator: str,
    *,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
    **options: int,
) -> tuple[Tensor, Tensor]:
    """Sample a one-hot action with a surrogate gradient.

    The forward value is the exact one-hot Gumbel-max sample D of softmax(logits) (the
    noise is drawn first, as ``sample_gumbel(logits.shape, generator=generator)``).  With
    J(p) = diag(p) - p p^T and g the upstream gradient at D, the backward is:

    - ``"st"``: (1/tau) J(softmax(logits/tau)) g.
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
        raise ValueError(
            f"estimator {estimator!r} got unknown option(s) {unknown}; it accepts {accepted}."
        )
    _check_tau(tau)

    x = logits.to(_compute_dtype(logits.dtype))  # (..., A)
    noise = _noise_like(logits, generator)  # (..., A)
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


# --------------------------------------------------------------------------------------
# Temperature schedules
# --------------------------------------------------------------------------------------


def tau_schedule(
    kind: str,
    step: int,
    *,
    tau0: float = 1.0,
    tau_min: float = 0.5,
    rate: float = 1e-4,
    total_steps: int | None = None,
) -> float:
    """Temperature at a training step.

    - ``"constant"``: tau0.
    - ``"exponential"``: max(tau_min, tau0 * exp(-rate * step)) (Jang et al. 2016, Sec. 4).
    - ``"linear"``: from tau0 at step 0 to tau_min at ``total_steps``, then constant.

    Args:
        kind: One of :data:`TAU_SCHEDULES`.
        step: Training step (>= 0).
        tau0: Initial temperature (> 0).
        tau_min: Final / floor temperature (> 0).
        rate: Decay rate of the exponential schedule (>= 0).
        total_steps: Length of the linear ramp (> 0); required for ``"linear"``.

    Returns:
        The temperature as a float.

    Raises:
        ValueError: Unknown kind or invalid parameters.
    """
    if kind not in TAU_SCHEDULES:
        raise ValueError(f"unknown tau schedule {kind!r}; valid kinds are {list(TAU_SCHEDULES)}.")
    _check_tau(tau0)
    _check_tau(tau_min)
    if step < 0:
        raise ValueError(f"step must be >= 0, got step={step!r}.")
    if kind == "constant":
        return float(tau0)
    if kind == "exponential":
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got rate={rate!r}.")
        return max(float(tau_min), tau0 * math.exp(-rate * step))
    if total_steps is None or total_steps <= 0:
        raise ValueError(
            f"the linear schedule needs total_steps > 0, got total_steps={total_steps!r}."
        )
    frac = min(step / total_steps, 1.0)
    return float(tau0 + (tau_min - tau0) * frac)


@dataclass(frozen=True)
class TauSchedule:
    """A validated temperature schedule: ``TauSchedule("exponential", rate=1e-4)(step)``."""

    kind: str = "constant"
    tau0: float = 1.0
    tau_min: float = 0.5
    rate: float = 1e-4
    total_steps: int | None = None

    def __post_init__(self) -> None:
        # Fail at construction rather than at the first training step.
        self(0)

    def __call__(self, step: int) -> float:
        """Temperature at ``step`` (see :func:`tau_schedule`)."""
        return tau_schedule(
            self.kind,
            step,
            tau0=self.tau0,
            tau_min=self.tau_min,
            rate=self.rate,
            total_steps=self.total_steps,
        )
