"""Statistical and exact checks of agent.learning.gumbel.

Every random test uses a fixed torch.Generator seed, so each p-value and each Monte-Carlo
error is a fixed number: the thresholds below are chosen so that a *correct*
implementation would fail them only with negligible probability over seeds, while the
seeded run is deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from agent.learning.gumbel import (
    gumbel_cdf,
    gumbel_from_uniform,
    gumbel_max_sample,
    gumbel_pdf,
    gumbel_softmax,
    sample_gumbel,
    softmax,
)
from agent.learning.straight_through import ESTIMATORS, straight_through

ONE_HOT_ESTIMATORS = tuple(e for e in ESTIMATORS if e != "gs")
F32 = torch.finfo(torch.float32)

# A p-value threshold of 1e-3 rejects a correct sampler in 0.1% of seeds; with fixed seeds
# the outcome is deterministic, and a wrong sampler at these sample sizes gives p ~ 0.
P_MIN = 1e-3
# Monte-Carlo means are compared within 5 standard errors: a correct estimator lands
# outside with probability ~6e-7 per component (Gaussian tails, N = 200k).
N_SE = 5.0

LOGIT_VECTORS = [
    [0.0, 0.0, 0.0, 0.0],
    [1.0, -0.5, 2.0, 0.3],
    [-20.0, 10.0, 9.6, 6.2],  # class 0 has probability ~1e-13: merged into another bin
    [3.0, -1.0, 0.5],  # a different number of classes
    [0.2, -1.3, 0.8, 2.1, -0.4, 0.0, 1.1],
]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numpy_cdf(v, loc: float = 0.0, scale: float = 1.0):
    """gumbel_cdf on a float64 numpy array, for scipy.stats.kstest."""
    return gumbel_cdf(torch.from_numpy(v), loc, scale).numpy()


def chi2_pvalue(index: torch.Tensor, logits: torch.Tensor) -> float:
    """Chi-squared p-value of sampled indices against softmax(logits).

    Classes with expected count < 5 (where the chi-squared approximation breaks) are merged
    into one bin; if that bin is still below 5 it is folded into the smallest other bin.
    """
    num_classes = logits.shape[-1]
    observed = torch.bincount(index.flatten(), minlength=num_classes).double()
    expected = torch.softmax(logits.double(), -1) * index.numel()
    small = expected < 5
    obs, exp = observed[~small], expected[~small]
    if small.any():
        merged_obs, merged_exp = observed[small].sum(), expected[small].sum()
        if merged_exp < 5:
            j = exp.argmin()
            obs, exp = obs.clone(), exp.clone()
            obs[j] += merged_obs
            exp[j] += merged_exp
        else:
            obs = torch.cat([obs, merged_obs[None]])
            exp = torch.cat([exp, merged_exp[None]])
    assert len(obs) >= 2
    return float(stats.chisquare(obs.numpy(), exp.numpy()).pvalue)


# --------------------------------------------------------------------------------------
# Gumbel distribution
# --------------------------------------------------------------------------------------


def test_gumbel_from_uniform_is_finite_at_the_endpoints():
    u = torch.tensor([0.0, F32.tiny, 0.5, 1.0 - F32.eps, 1.0])
    g = gumbel_from_uniform(u)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    # U = 0 is clamped to tiny and U = 1 to 1 - eps: exact values from float64 math.
    lo = -math.log(-math.log(F32.tiny))
    hi = -math.log(-math.log1p(-F32.eps))
    # 1e-5 relative: float32 rounding of two logs.
    torch.testing.assert_close(g[[0, 1]], torch.tensor([lo, lo]), rtol=1e-5, atol=0)
    torch.testing.assert_close(g[[3, 4]], torch.tensor([hi, hi]), rtol=1e-5, atol=0)
    assert g[0] < g[2] < g[4]
    # loc/scale are an affine map of the standard noise.
    torch.testing.assert_close(gumbel_from_uniform(u, 2.0, 3.0), 2.0 + 3.0 * g)


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (2.0, 0.5), (-1.0, 3.0)])
def test_sample_gumbel_matches_cdf_ks(loc, scale):
    x = sample_gumbel(50_000, loc=loc, scale=scale, generator=gen(1))
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    res = stats.kstest(x.double().numpy(), lambda v: numpy_cdf(v, loc, scale))
    assert res.pvalue > P_MIN, res


def test_sample_gumbel_shape_device_and_determinism():
    a = sample_gumbel((3, 5), generator=gen(7))
    b = sample_gumbel([3, 5], generator=gen(7))
    assert a.shape == (3, 5) and a.device == torch.device("cpu")
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_gumbel((3, 5), generator=gen(8)))


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (0.0, 2.0), (2.0, 1.0), (-1.0, 0.5)])
def test_pdf_integrates_to_one_and_is_cdf_derivative(loc, scale):
    # The left tail dies like exp(-exp(10)) and the right like exp(-z): [-10, 60] scales
    # leave < 1e-26 of mass outside; the trapezoid error at 400k points is ~1e-10.
    x = torch.linspace(loc - 10 * scale, loc + 60 * scale, 400_001, dtype=torch.float64)
    pdf = gumbel_pdf(x, loc, scale)
    assert abs(torch.trapezoid(pdf, x).item() - 1.0) < 1e-8
    # Autograd derivative of the cdf in float64: equal up to rounding (1e-12).
    xr = x[::1000].clone().requires_grad_()
    (dcdf,) = torch.autograd.grad(gumbel_cdf(xr, loc, scale).sum(), xr)
    torch.testing.assert_close(dcdf, gumbel_pdf(xr.detach(), loc, scale), rtol=1e-12, atol=1e-12)


def test_pdf_cdf_accept_numbers_and_are_finite_in_the_tails():
    assert gumbel_cdf(0.0) == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert gumbel_pdf(0.0) == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert gumbel_pdf(2.0, loc=2.0, scale=2.0) == pytest.approx(math.exp(-1.0) / 2, rel=1e-6)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        x = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
        pdf, cdf = gumbel_pdf(x), gumbel_cdf(x)
        assert pdf.dtype == dtype and cdf.dtype == dtype
        assert torch.isfinite(pdf).all() and torch.isfinite(cdf).all()
        assert cdf[0] == 0 and cdf[-1] == 1 and pdf[0] == 0 and pdf[-1] == 0


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("logits", LOGIT_VECTORS, ids=lambda v: f"A{len(v)}-{v[0]}")
def test_gumbel_max_sample_matches_softmax_chi2(logits):
    logits = torch.tensor(logits)
    index = gumbel_max_sample(logits.expand(200_000, -1), generator=gen(2))
    assert index.dtype == torch.long and index.shape == (200_000,)
    assert chi2_pvalue(index, logits) > P_MIN


@pytest.mark.parametrize("estimator", ONE_HOT_ESTIMATORS)
def test_straight_through_forward_matches_softmax_chi2(estimator):
    for i, logits in enumerate(LOGIT_VECTORS):
        logits = torch.tensor(logits)
        batch = logits.expand(100_000, -1)
        onehot, index = straight_through(batch, estimator, generator=gen(30 + i))
        assert torch.equal(onehot.argmax(-1), index)
        assert chi2_pvalue(index, logits) > P_MIN, (estimator, logits)


def test_gumbel_max_sample_any_leading_shape():
    logits = torch.randn(2, 3, 5, generator=gen(0))
    assert gumbel_max_sample(logits, generator=gen(1)).shape == (2, 3)
    assert gumbel_max_sample(logits[0, 0], generator=gen(1)).shape == ()


def test_library_never_touches_the_global_rng():
    state = torch.get_rng_state()
    logits = torch.randn(8, 4, generator=gen(0), requires_grad=True)
    sample_gumbel(10, generator=gen(1))
    gumbel_max_sample(logits, generator=gen(1))
    gumbel_softmax(logits, 0.5, hard=True, generator=gen(1))
    for est in ESTIMATORS:
        out, _ = straight_through(logits, est, generator=gen(1))
        out.sum().backward()
    assert torch.equal(state, torch.get_rng_state())


def test_shifting_logits_changes_nothing():
    logits = torch.randn(64, 5, generator=gen(3), dtype=torch.float64)
    g = torch.randn(64, 5, generator=gen(4), dtype=torch.float64)
    shifted = logits + 7.25
    assert torch.equal(gumbel_max_sample(logits, generator=gen(5)), gumbel_max_sample(shifted, generator=gen(5)))
    # float64 softmax of shifted inputs differs only by rounding (~1e-15).
    torch.testing.assert_close(
        gumbel_softmax(logits, 0.7, generator=gen(5)),
        gumbel_softmax(shifted, 0.7, generator=gen(5)),
        rtol=0,
        atol=1e-12,
    )
    for est in ESTIMATORS:
        outs, grads = [], []
        for base in (logits, shifted):
            lg = base.clone().requires_grad_()
            out, idx = straight_through(lg, est, tau=0.7, generator=gen(6))
            (out * g).sum().backward()
            outs.append((out.detach(), idx))
            grads.append(lg.grad)
        assert torch.equal(outs[0][1], outs[1][1]), est
        torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-12)
        # Gradients involve a few more float64 operations on values of size ~10: 1e-10.
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10, msg=est)


def test_temperature_limits():
    # Noise is bounded to [-4.47, 15.94] (clamped uniforms), so logits 25 apart keep a
    # perturbed gap > 4.5: at tau = 0.01 the runner-up weight is < 3 exp(-450), i.e. one-hot.
    separated = torch.tensor([0.0, 25.0, 50.0, 75.0]).expand(1000, -1)
    y = gumbel_softmax(separated, 0.01, generator=gen(9))
    assert (y.max(-1).values > 1 - 1e-4).all()
    # Perturbed logits span < 5 + 20.41, so at tau = 1e4 every weight is within
    # (exp(25.41e-4) - 1) / 4 < 7e-4 of 1/A.
    moderate = torch.tensor([-2.0, 0.0, 1.0, 3.0]).expand(1000, -1)
    y = gumbel_softmax(moderate, 1e4, generator=gen(9))
    assert ((y - 0.25).abs() < 1e-3).all()
    # And the small-tau soft sample agrees with the Gumbel-max sample of the same noise.
    assert torch.equal(
        gumbel_softmax(separated, 0.01, generator=gen(9)).argmax(-1), gumbel_max_sample(separated, generator=gen(9))
    )


def test_hard_gumbel_softmax_is_straight_through_gs():
    logits = torch.randn(32, 4, generator=gen(10), dtype=torch.float64)
    g = torch.randn(32, 4, generator=gen(11), dtype=torch.float64)
    grads = []
    for fn in (
        lambda lg: gumbel_softmax(lg, 0.6, hard=True, generator=gen(12)),
        lambda lg: straight_through(lg, "st-gs", tau=0.6, generator=gen(12))[0],
    ):
        lg = logits.clone().requires_grad_()
        out = fn(lg)
        assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
        (out * g).sum().backward()
        grads.append(lg.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tau", [0.1, 1.0, 5.0])
def test_low_precision_and_huge_logits_stay_finite(dtype, tau):
    logits = torch.tensor(
        [[60000.0, -60000.0, 0.0, 1.0], [-60000.0, -60000.0, 60000.0, 60000.0], [0.1, 0.2, 0.3, 0.4]], dtype=dtype
    )
    g = torch.randn(3, 4, generator=gen(13)).to(dtype)
    assert torch.isfinite(logits).all()
    assert gumbel_max_sample(logits, generator=gen(14)).shape == (3,)
    for hard in (False, True):
        lg = logits.clone().requires_grad_()
        y = gumbel_softmax(lg, tau, hard=hard, generator=gen(14))
        (y * g).sum().backward()
        assert y.dtype == dtype and torch.isfinite(y).all() and torch.isfinite(lg.grad).all()
    for est in ESTIMATORS:
        lg = logits.clone().requires_grad_()
        out, idx = straight_through(lg, est, tau=tau, generator=gen(14))
        (out * g).sum().backward()
        assert out.dtype == dtype and lg.grad.dtype == dtype, est
        assert torch.isfinite(out).all() and torch.isfinite(lg.grad).all(), est
        # The dominant +60000 logit always wins (no noise can bridge a 60000 gap).
        assert idx[0].item() == 0 and idx[1].item() in (2, 3), est


def test_masked_minus_inf_logits_are_never_sampled_and_grads_stay_finite():
    logits = torch.tensor([[0.5, -math.inf, 1.0, -0.2]]).expand(20_000, -1)
    for est in ESTIMATORS:
        lg = logits.clone().requires_grad_()
        out, idx = straight_through(lg, est, tau=0.8, generator=gen(15))
        (out * torch.arange(4.0)).sum().backward()
        assert (idx != 1).all() and torch.isfinite(out).all(), est
        assert torch.isfinite(lg.grad).all() and (lg.grad[:, 1] == 0).all(), est


@pytest.mark.parametrize("estimator", ONE_HOT_ESTIMATORS)
def test_forward_is_exact_one_hot_for_any_shape(estimator):
    logits = torch.randn(3, 5, 7, generator=gen(16)) * 3
    onehot, index = straight_through(logits, estimator, tau=0.5, generator=gen(17))
    assert onehot.shape == (3, 5, 7) and index.shape == (3, 5) and index.dtype == torch.long
    assert ((onehot == 0) | (onehot == 1)).all()
    assert (onehot.sum(-1) == 1).all()
    assert torch.equal(onehot.argmax(-1), index)
    # The sample is the Gumbel-max sample of the first noise drawn from the generator.
    assert torch.equal(index, gumbel_max_sample(logits, generator=gen(17)))
    # A single unbatched row works too.
    onehot, index = straight_through(logits[0, 0], estimator, generator=gen(17))
    assert onehot.shape == (7,) and index.shape == ()


def test_gs_forward_is_the_soft_sample():
    logits = torch.randn(10, 4, generator=gen(18))
    y, index = straight_through(logits, "gs", tau=0.5, generator=gen(19))
    expected = torch.softmax((logits + sample_gumbel(logits.shape, generator=gen(19))) / 0.5, -1)
    torch.testing.assert_close(y, expected)
    assert torch.equal(index, y.argmax(-1))
    assert ((y > 0) & (y < 1)).any()  # genuinely soft


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_tau_raises_with_the_value(tau):
    logits = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=f"tau={tau!r}"):
        gumbel_softmax(logits, tau)
    with pytest.raises(ValueError, match=f"tau={tau!r}"):
        straight_through(logits, "st", tau=tau)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_smoke():
    logits = torch.randn(1000, 4, device="cuda", requires_grad=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert sample_gumbel(5, generator=g).device.type == "cuda"
    for est in ESTIMATORS:
        out, idx = straight_through(logits, est, generator=g)
        out.sum().backward()
        assert out.device.type == idx.device.type == "cuda"
        assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("shape", [(2048, 4), (3, 5, 4), (7,), (6, 40)])
def test_softmax_is_torchs_softmax_in_value_and_gradient(shape):
    # The column layout it uses for a few actions a row changes only the order of float sums.
    x = (3 * torch.randn(shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
    g = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ours, theirs = softmax(x), torch.softmax(x, dim=-1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0], rtol=0, atol=1e-6
    )
