"""Gumbel-Softmax temperature schedules over training steps (Jang, Gu & Poole 2016, sec. 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.learning.gumbel import check_tau

__all__ = ["TAU_SCHEDULES", "TauSchedule", "tau_schedule"]

#: Names accepted by :func:`tau_schedule`.
TAU_SCHEDULES: tuple[str, ...] = ("constant", "exponential", "linear")


def tau_schedule(
    kind: str, step: int, *, tau0: float = 1.0, tau_min: float = 0.5, rate: float = 1e-4, total_steps: int | None = None
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
    check_tau(tau0)
    check_tau(tau_min)
    if step < 0:
        raise ValueError(f"step must be >= 0, got step={step!r}.")
    if kind == "constant":
        return float(tau0)
    if kind == "exponential":
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got rate={rate!r}.")
        return max(float(tau_min), tau0 * math.exp(-rate * step))
    if total_steps is None or total_steps <= 0:
        raise ValueError(f"the linear schedule needs total_steps > 0, got total_steps={total_steps!r}.")
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
            self.kind, step, tau0=self.tau0, tau_min=self.tau_min, rate=self.rate, total_steps=self.total_steps
        )
