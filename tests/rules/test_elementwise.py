"""Sampling soundness of curvature_rules.elementwise (range, Lipschitz, curvature, rounding)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import Suite, box, check_rule

aten = torch.ops.aten
S = (3, 4)
R2 = math.sqrt(2.0)

#: Critical points: kinks, the peaks of |f'| and |f''|, the minima of GELU/SiLU.
GELU_CRIT = [0.0, R2, -R2, -0.7517915247, 2.0, -2.0]
SILU_CRIT = [0.0, 2.39936, -2.39936, -1.2784645, 1.0, -1.0]
TANH_CRIT = [0.0, 0.6584789485, -0.6584789485]
SIG_CRIT = [0.0, 1.3169578969, -1.3169578969]
ERF_CRIT = [0.0, 1 / R2, -1 / R2]


def _f(fn):
    """A distinct function object per case (the capture cache is keyed on it)."""
    return lambda x: fn(x)


# (id, function, target op, boxes [(lo, hi)], critical points, smooth, decompose)
CASES = [
    ("relu", _f(torch.relu), aten.relu.default, [(-3, 3), (0.5, 2), (-2, -1), (-1e-3, 1e-3)], [0.0], False, True),
    ("leaky_relu", _f(lambda x: F.leaky_relu(x, 0.1)), aten.leaky_relu.default, [(-3, 3), (-2, -1), (1e-3, 5)], [0.0], False, True),
    ("leaky_relu_steep", _f(lambda x: F.leaky_relu(x, 3.0)), aten.leaky_relu.default, [(-3, 3), (-2, -1)], [0.0], False, True),
    ("hardtanh", _f(F.hardtanh), aten.hardtanh.default, [(-3, 3), (-0.5, 0.5), (2, 4)], [-1.0, 1.0], False, True),
    ("clamp", _f(lambda x: x.clamp(-1.0, 2.0)), aten.clamp.default, [(-3, 3), (-5, -2), (0, 1)], [-1.0, 2.0], False, True),
    ("clamp_min", _f(lambda x: aten.clamp_min(x, 0.5)), aten.clamp_min.default, [(-3, 3), (1, 2)], [0.5], False, False),
    ("clamp_max", _f(lambda x: aten.clamp_max(x, -0.25)), aten.clamp_max.default, [(-3, 3), (-2, -1)], [-0.25], False, False),
    ("abs", _f(torch.abs), aten.abs.default, [(-3, 3), (-2, -1), (-1e-3, 1e-3)], [0.0], False, True),
    ("neg", _f(torch.neg), aten.neg.default, [(-3, 3), (1e3, 2e3)], [], True, True),
    ("exp", _f(torch.exp), aten.exp.default, [(0, 12), (-5, 5), (-20, -10), (-1e-3, 1e-3), (-80, -60)], [0.0], True, True),
    ("expm1", _f(torch.expm1), aten.expm1.default, [(-1e-4, 1e-4), (-3, 3), (0, 10), (-30, -20)], [0.0], True, True),
    ("log", _f(torch.log), aten.log.default, [(1e-3, 10), (0.5, 2), (100, 1e4), (0.999, 1.001)], [1.0], True, True),
    ("log1p", _f(torch.log1p), aten.log1p.default, [(-0.5, 3), (-1e-4, 1e-4), (10, 1e3)], [0.0], True, True),
    ("sqrt", _f(torch.sqrt), aten.sqrt.default, [(1e-4, 4), (100, 1e4), (0.25, 0.2501)], [1.0], True, True),
    ("rsqrt", _f(torch.rsqrt), aten.rsqrt.default, [(1e-3, 1), (1, 100), (1e-6, 1e-5)], [], True, True),
    ("reciprocal", _f(torch.reciprocal), aten.reciprocal.default, [(0.1, 2), (-3, -0.5), (1e-2, 1e2)], [], True, True),
    ("tanh", _f(torch.tanh), aten.tanh.default, [(-3, 3), (2, 5), (-0.01, 0.01), (-20, -1)], TANH_CRIT, True, True),
    ("sigmoid", _f(torch.sigmoid), aten.sigmoid.default, [(-8, 8), (5, 20), (-30, -10), (-0.5, 0.5)], SIG_CRIT, True, True),
    ("erf", _f(torch.erf), aten.erf.default, [(-3, 3), (0.5, 1), (-6, -2)], ERF_CRIT, True, True),
    ("gelu", _f(F.gelu), aten.gelu.default, [(-3, 3), (-6, -2), (1, 8), (-0.1, 0.2), (-10, 10), (-1, -0.5)], GELU_CRIT, True, True),
    ("gelu_tanh", _f(lambda x: F.gelu(x, approximate="tanh")), aten.gelu.default, [(-3, 3), (-6, -2), (1, 8), (-12, 12)], GELU_CRIT, True, True),
    ("silu", _f(lambda x: aten.silu(x)), aten.silu.default, [(-6, 6), (-10, -1), (2, 3), (-0.5, 0.5)], SILU_CRIT, True, False),
    ("softplus", _f(lambda x: aten.softplus(x, 1.0, 20.0)), aten.softplus.default, [(-5, 5), (-30, -10), (20.5, 30)], [0.0, 20.0], True, False),
    ("softplus_beta", _f(lambda x: aten.softplus(x, 2.0, 5.0)), aten.softplus.default, [(-5, 2.4), (2.6, 4)], [0.0, 2.5], True, False),
    ("sin", _f(torch.sin), aten.sin.default, [(-4, 4), (0.1, 0.1005), (100, 100.0001), (1.5, 1.6)], [math.pi / 2, 0.0], True, True),
    ("cos", _f(torch.cos), aten.cos.default, [(-4, 4), (0.1, 0.1005), (3.1, 3.2), (-1e-4, 1e-4)], [0.0, math.pi], True, True),
]


SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}
REGISTERED = {c[0]: SUITES[c[6]].case(c[1], [box(S, *c[3][0])]) for c in CASES}


def _gelu_ref(x, approximate="none"):
    """GELU in float64 without the cancellation of 1 + erf (torch's float64 gelu is off by
    1e-10 relative at x = -6, more than the harness's few-ulp allowance)."""
    if approximate == "tanh":
        return x * torch.sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
    return 0.5 * x * torch.special.erfc(-x / math.sqrt(2))


@pytest.mark.parametrize(
    "name,op,lo,hi,crit,smooth",
    [pytest.param(c[0], c[2], b[0], b[1], c[4], c[5], id=f"{c[0]}[{b[0]},{b[1]}]") for c in CASES for b in c[3]],
)
def test_elementwise_rule(name, op, lo, hi, crit, smooth):
    ref = {aten.gelu.default: _gelu_ref} if name.startswith("gelu") else None
    REGISTERED[name].check([box(S, lo, hi)], op, critical=crit, smooth=smooth, reference=ref)


def test_log_box_reaching_zero_is_unbounded_but_sound():
    """A box touching 0 gives an unbounded range and infinite L (fail closed), never a NaN."""
    fn = _f(torch.log)
    rep = check_rule(fn, [box(S, 0.0, 2.0)], aten.log.default, require_finite=False, formats=None, n=8)
    assert rep.range_checked == 8


def test_gelu_lipschitz_is_not_the_source_value():
    """DESIGN 4.1: GELU's sup|f'| is 1.1285, the source's 1.1 is unsound; the harness sees it."""
    rep = check_rule(_f(F.gelu), [box(S, 1.0, 2.0)], aten.gelu.default, critical=[R2], formats=None)
    assert rep.lipschitz_ratio["gelu:self"] > 1.1 / 1.1289


SOFTPLUS_2_5 = _f(lambda x: aten.softplus(x, 2.0, 5.0))
SOFTPLUS_1_20 = _f(lambda x: aten.softplus(x, 1.0, 20.0))


@pytest.mark.parametrize(
    "fn,lo,hi",
    [(SOFTPLUS_2_5, -5.0, 5.0), (SOFTPLUS_2_5, 1.0, 2.502), (SOFTPLUS_2_5, 2.4, 2.6), (SOFTPLUS_1_20, 15.0, 25.0)],
    ids=["beta2_thr5_wide", "beta2_thr5_below_jump", "beta2_thr5_narrow", "default_thr20"],
)
def test_softplus_threshold_jump_regression(fn, lo, hi):
    """Regression: PyTorch's softplus switches to x where beta x > threshold, and its smooth
    branch is log1p(e^-threshold)/beta above x at the switch: f jumps down (by 0.0033 for
    beta 2, threshold 5; by 2e-9 for the defaults). The rule claimed L = 1 across the jump
    (pairs straddling it gave ratios up to 1118) and the range [f(lo), f(hi)] (on [1, 2.502]
    f reaches 2.50335 > f(2.502)). Now the range covers the jump and L = kappa = inf there."""
    rep = check_rule(fn, [box(S, lo, hi)], aten.softplus.default, critical=[2.5, 20.0], require_finite=False, decompose=False)
    assert rep.lipschitz["softplus:self"] == math.inf and rep.curvature["softplus"] == math.inf
