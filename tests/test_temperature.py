"""agent.learning.temperature: the Gumbel-Softmax temperature schedules."""

from __future__ import annotations

import math

import pytest

from agent.learning.temperature import TAU_SCHEDULES, TauSchedule, tau_schedule


def test_tau_schedules():
    assert tau_schedule("constant", 12345, tau0=0.8) == 0.8
    for step in (0, 10, 1000, 10**6):
        expected = max(0.5, 1.0 * math.exp(-1e-4 * step))
        got = tau_schedule("exponential", step, tau0=1.0, tau_min=0.5, rate=1e-4)
        assert got == pytest.approx(expected, rel=1e-12)
    assert tau_schedule("exponential", 10**7, tau0=1.0, tau_min=0.5, rate=1e-4) == 0.5
    lin = dict(tau0=2.0, tau_min=0.5, total_steps=100)
    assert tau_schedule("linear", 0, **lin) == 2.0
    assert tau_schedule("linear", 50, **lin) == pytest.approx(1.25)
    assert tau_schedule("linear", 100, **lin) == 0.5
    assert tau_schedule("linear", 10**5, **lin) == 0.5
    sched = TauSchedule("linear", tau0=2.0, tau_min=0.5, total_steps=100)
    assert [sched(s) for s in (0, 100)] == [2.0, 0.5]
    assert set(TAU_SCHEDULES) == {"constant", "exponential", "linear"}


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="cosine") as err:
        tau_schedule("cosine", 0)
    assert all(k in str(err.value) for k in TAU_SCHEDULES)
    with pytest.raises(ValueError, match="total_steps"):
        tau_schedule("linear", 3, tau0=1.0, tau_min=0.5)
    with pytest.raises(ValueError, match="total_steps"):
        TauSchedule("linear")
    with pytest.raises(ValueError, match="-1"):
        tau_schedule("constant", 0, tau0=-1.0)
