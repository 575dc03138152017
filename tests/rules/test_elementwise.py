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
    # bounds that no format holds exactly (their rounding is the error where they bind)
    ("clamp_inexact", _f(lambda x: x.clamp(0.1, 0.7)), aten.clamp.default, [(-1, 1), (0.2, 0.5), (0.69, 3)], [0.1, 0.7], False, True),
    ("clamp_tiny", _f(lambda x: x.clamp(min=1e-12)), aten.clamp.default, [(0, 1), (-1, 1e-11)], [1e-12], False, True),
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
    ("sinh", _f(torch.sinh), aten.sinh.default, [(-3, 3), (5, 10), (-1e-3, 1e-3), (-12, -11)], [0.0], True, True),
    ("cosh", _f(torch.cosh), aten.cosh.default, [(-3, 3), (5, 10), (-1e-3, 1e-3), (-12, -11)], [0.0], True, True),
    ("asinh", _f(torch.asinh), aten.asinh.default, [(-4, 4), (0.5, 0.9), (-1e-3, 1e-3), (100, 1e4)], [0.0, 1 / math.sqrt(2), -1 / math.sqrt(2)], True, True),
    ("erfc", _f(torch.erfc), aten.erfc.default, [(-3, 3), (0.5, 0.9), (3, 9), (-1e-3, 1e-3)], [0.0, 1 / math.sqrt(2), -1 / math.sqrt(2)], True, True),
    ("asin", _f(torch.asin), aten.asin.default, [(-0.9, 0.9), (0.5, 0.999), (-1e-3, 1e-3)], [0.0], True, True),
    ("acos", _f(torch.acos), aten.acos.default, [(-0.9, 0.9), (-0.999, -0.5), (-1e-3, 1e-3)], [0.0], True, True),
    ("atanh", _f(torch.atanh), aten.atanh.default, [(-0.9, 0.9), (0.5, 0.999), (-1e-3, 1e-3)], [0.0], True, True),
    ("atan", _f(torch.atan), aten.atan.default, [(-4, 4), (0.5, 0.7), (-1e-3, 1e-3), (100, 1e4), (-30, -1)], [0.0, 1 / math.sqrt(3), -1 / math.sqrt(3)], True, True),
    # steps on boxes without a jump (finite L = 0); across jumps see test_step_functions
    ("floor", _f(torch.floor), aten.floor.default, [(1.1, 1.9), (-2.9, -2.2)], [], False, True),
    ("ceil", _f(torch.ceil), aten.ceil.default, [(1.1, 1.9), (-0.9, -0.1)], [], False, True),
    ("round", _f(torch.round), aten.round.default, [(1.6, 2.4), (-0.4, 0.4)], [], False, True),
    ("trunc", _f(torch.trunc), aten.trunc.default, [(-0.9, 0.9), (3.1, 3.9)], [], False, True),
    ("sign", _f(torch.sign), aten.sign.default, [(0.5, 3), (-3, -1e-3)], [], False, True),
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


# ---------------------------------------------------------------------- exp2, log2, log10, ELU
import contextlib  # noqa: E402
import dataclasses  # noqa: E402

from certifier.interval import Interval  # noqa: E402
from tests.rules.harness import build, halve_lipschitz, scale_error, wrong_rule  # noqa: E402

SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805

# (id, function, target op, boxes, critical points); all exported once as NEW_SUITE.
NEW_CASES = [
    ("exp2", _f(torch.exp2), aten.exp2.default, [(0, 12), (-5, 5), (-20, -10), (-1e-3, 1e-3), (-140, -120)], [0.0]),
    ("log2", _f(torch.log2), aten.log2.default, [(1e-3, 10), (0.5, 2), (100, 1e4), (0.999, 1.001)], [1.0]),
    ("log10", _f(torch.log10), aten.log10.default, [(1e-3, 10), (0.5, 2), (100, 1e4), (0.999, 1.001)], [1.0]),
    ("elu", _f(F.elu), aten.elu.default, [(-3, 3), (-20, -1), (0.5, 4), (-1e-3, 1e-3), (-1e-6, 0)], [0.0]),
    ("selu", _f(F.selu), aten.elu.default, [(-3, 3), (-0.01, 0.01), (-10, -2), (1, 5)], [0.0]),
    # alpha < 0: f = -expm1(x) >= 0 on x <= 0, not monotone (minimum 0 at the origin)
    ("elu_neg_alpha", _f(lambda x: F.elu(x, -1.0)), aten.elu.default, [(-3, 3), (-2, -0.5)], [0.0]),
    # CELU's parameters (alpha 0.5, input_scale 1/alpha): f' continuous at 0
    ("elu_celu_params", _f(lambda x: aten.elu(x, 0.5, 1.0, 2.0)), aten.elu.default, [(-4, 2), (-0.1, 0.05)], [0.0]),
    # s a c = 0.9 != s = 3: f' jumps at 0
    ("elu_scaled", _f(lambda x: aten.elu(x, 1.0, 3.0, 0.3)), aten.elu.default, [(-8, 3), (-30, -5)], [0.0]),
]
NEW_SUITE = Suite(decompose=True)
NEW_REGISTERED = {c[0]: NEW_SUITE.case(c[1], [box(S, *c[3][0])]) for c in NEW_CASES}


@pytest.mark.parametrize(
    "name,op,lo,hi,crit",
    [pytest.param(c[0], c[2], b[0], b[1], c[4], id=f"{c[0]}[{b[0]},{b[1]}]") for c in NEW_CASES for b in c[3]],
)
def test_new_elementwise_rule(name, op, lo, hi, crit):
    NEW_REGISTERED[name].check([box(S, lo, hi)], op, critical=crit)


def test_exp2_log2_log10_elu_are_the_exported_ops():
    """torch.export + run_decompositions keeps these ATen ops (F.selu becomes aten.elu with
    SELU's alpha and scale; F.celu does not reach aten.elu: it decomposes into div / expm1 /
    where, torch 2.13)."""
    cap = NEW_SUITE._build()[0]
    targets = {str(n.target) for n in cap.graph.nodes if n.op == "call_function"}
    assert {"aten.exp2.default", "aten.log2.default", "aten.log10.default", "aten.elu.default"} <= targets
    elus = [n for n in cap.graph.nodes if n.target == aten.elu.default]
    assert any(tuple(n.args[1:3]) == (SELU_A, SELU_S) for n in elus)


@pytest.mark.parametrize("fn,op", [(torch.log2, aten.log2.default), (torch.log10, aten.log10.default)], ids=["log2", "log10"])
@pytest.mark.parametrize("lo", [-1.0, -1e-30], ids=["wide", "just_below_0"])
def test_log2_log10_below_their_domain_fail_closed(fn, op, lo):
    """As log: a box reaching below 0 (NaN there) is declined, not bounded."""
    from certifier.walker import analyze_bounds

    _, cap, loaded = build(fn, [box(S, lo, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == [str(op)]


@pytest.mark.parametrize("fn,op", [(_f(torch.log2), aten.log2.default), (_f(torch.log10), aten.log10.default)], ids=["log2", "log10"])
def test_log2_log10_box_reaching_zero_is_unbounded_but_sound(fn, op):
    rep = check_rule(fn, [box(S, 0.0, 2.0)], op, require_finite=False, formats=None, n=8)
    assert rep.range_checked == 8 and rep.lipschitz[next(iter(rep.lipschitz))] == math.inf


def test_elu_negative_input_scale_fails_closed():
    """input_scale < 0: f = s a expm1(c x) grows like e^(|c x|) as x -> -inf (declined)."""
    from certifier.walker import analyze_bounds

    _, cap, loaded = build(_f(lambda x: aten.elu(x, 1.0, 1.0, -1.0)), [box(S, -1.0, 1.0)], None, False)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.elu.default"]


def _with_lipschitz(L):
    return lambda r: dataclasses.replace(r, lipschitz={k: L for k in r.lipschitz})


def _with_curvature(k):
    return lambda r: dataclasses.replace(r, curvature=k)


def _with_range_lo(v):
    return lambda r: dataclasses.replace(r, out=Interval(torch.full(S, v, dtype=torch.float64), r.out.hi, r.out.dtype))


# Plausible mistakes, each caught by the harness: (id, case, op, box, wrong result, check kind)
WRONG = [
    # exp's slope e^hi for exp2: 4.5e-5 < ln2 2^-10 = 6.8e-4 on [-20, -10]
    ("exp2_with_exp_slope", "exp2", aten.exp2.default, (-20, -10), _with_lipschitz(math.exp(-10.0)), "lipschitz"),
    # exp2's curvature taken at the wrong end of the box: (ln 2)^2 2^lo / 2
    ("exp2_kappa_at_lo", "exp2", aten.exp2.default, (-5, 5), _with_curvature(0.5 * math.log(2) ** 2 * 2.0**-5), "curvature"),
    # log's slope 1/lo for log2 (missing 1/ln 2)
    ("log2_with_log_slope", "log2", aten.log2.default, (0.5, 2), _with_lipschitz(1 / 0.5), "lipschitz"),
    # log10's curvature taken at the wrong end of the box: 1/(2 hi^2 ln 10)
    ("log10_kappa_at_hi", "log10", aten.log10.default, (0.5, 2), _with_curvature(1 / (2 * 4 * math.log(10))), "curvature"),
    ("log10_error_underestimated", "log10", aten.log10.default, (0.5, 2), lambda r: scale_error(r, 0.05), "rounding error"),
    # SELU's L as max(1, alpha), forgetting the scale: 1.673 < s a = 1.758
    ("selu_lipschitz_without_scale", "selu", aten.elu.default, (-1, 1), _with_lipschitz(SELU_A), "lipschitz"),
    ("selu_error_underestimated", "selu", aten.elu.default, (-3, 3), lambda r: scale_error(r, 0.05), "rounding error"),
    # alpha < 0: the endpoint hull [f(-3), f(3)] = [0.95, 3] misses f(0) = 0
    ("elu_neg_alpha_endpoint_range", "elu_neg_alpha", aten.elu.default, (-3, 3), _with_range_lo(-math.expm1(-3.0)), "range"),
    ("elu_halved_lipschitz", "elu", aten.elu.default, (-3, 3), halve_lipschitz, "lipschitz"),
]


@pytest.mark.parametrize("case,op,b,transform,kind", [pytest.param(*w[1:], id=w[0]) for w in WRONG])
def test_new_rules_wrong_variants_are_caught(case, op, b, transform, kind):
    formats = ("fp16", "bf16", "fp32") if kind == "rounding error" else None
    with wrong_rule(op, transform), pytest.raises(AssertionError, match=kind):
        NEW_REGISTERED[case].check([box(S, *b)], op, critical=[0.0, 1.0], formats=formats)


class _Exp2Softmax(torch.nn.Module):
    """2^z / sum(2^z): the sum's absolute error dwarfs its smallest value, so the quotient
    is bounded only through exp2's relative error bound (ExpError.propagate_rel with rate ln 2)."""

    def forward(self, z):
        e = torch.exp2(z)
        return e / e.sum(-1, keepdim=True)


EXP2_SOFTMAX = _Exp2Softmax()


def _drop_rel(res):
    err = res.error

    class NoRel:
        def propagate(self, ctx):
            return err.propagate(ctx)

    return dataclasses.replace(res, error=NoRel())


def test_exp2_relative_bound_certifies_the_base2_softmax():
    b = [box((1, 8), -28.0, 28.0)]
    rep = check_rule(EXP2_SOFTMAX, b, aten.div.Tensor, formats=("fp32", "bf16"), n=8, n_round=12)
    assert rep.bounds["fp32"] < 1e-5 and rep.bounds["bf16"] < 0.5
    with wrong_rule(aten.exp2.default, _drop_rel):  # without it: no finite bound
        rep2 = check_rule(EXP2_SOFTMAX, b, aten.div.Tensor, formats=("fp32",), n=4, n_round=2)
    assert rep2.bounds["fp32"] > 100 * rep.bounds["fp32"]


def _selu_fp32_bound(transform=None):
    from certifier.rounding import run_errors
    from certifier.walker import analyze_bounds

    selu = next(c[1] for c in NEW_CASES if c[0] == "selu")
    _, cap, loaded = build(selu, [box(S, -1e-3, 1e-3)], None, True)
    with contextlib.ExitStack() as st:
        if transform is not None:
            st.enter_context(wrong_rule(aten.elu.default, transform))
        ba = analyze_bounds(loaded, cap)
    er = run_errors(ba, [{"*": "fp32"}])
    (bound,) = er.output_err.values()
    return bound[0]


def test_elu_bound_covers_the_exp_minus_one_kernel():
    """PyTorch's CPU ELU computed (exp(c x) - 1) * (a s) before it used expm1 (torch >= 2.5 is
    supported): near 0 that cancels, an error of ~u |a s| rather than u |f|. The rule's
    absolute term (EluError.neg_abs) covers it; without it the bound fails there."""
    x = torch.linspace(-1e-3, 1e-3, 12, dtype=torch.float32).reshape(S)
    k32 = torch.tensor(SELU_A, dtype=torch.float32) * torch.tensor(SELU_S, dtype=torch.float32)
    old = torch.where(x > 0, x * torch.tensor(SELU_S, dtype=torch.float32), (torch.exp(x) - 1) * k32)
    x64 = x.double()
    exact = SELU_S * torch.where(x64 > 0, x64, SELU_A * torch.expm1(x64))
    err = (old.double() - exact).abs()
    assert bool((err <= _selu_fp32_bound()).all())
    no_abs = _selu_fp32_bound(lambda r: dataclasses.replace(r, error=dataclasses.replace(r.error, neg_abs=0.0)))
    assert bool((err > no_abs).any())


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
def test_clamp_charges_its_bounds_rounding_not_a_storage_rounding(fmt):
    """A clamped value is the computed input itself or a bound rounded to the format: on a
    box strictly inside the bounds with an exact input the error is 0 (it was u |y| + he);
    where 0.1 can bind, the charge is |fl(0.1) - 0.1| <= u 0.1 + he, not u |y|."""
    from certifier.adjoint import certified_errors
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    def bound(fn, lo, hi):
        module, cap, loaded = build(fn, [box(S, lo, hi)], None, True)
        ba = analyze_bounds(loaded, cap)
        return float(certified_errors(ba, [{"*": fmt}], keep_nodes=False).bound[0])

    u = {"bf16": 2.0**-8, "fp16": 2.0**-11}[fmt]
    x_cast = 4.0 * u + 2.0**-24  # the domain input's own cast into the format (|x| <= 4, + he)
    inside = bound(lambda x: x.clamp(-8.0, 8.0), -4.0, 4.0)
    assert inside <= x_cast * (1 + 1e-6)
    binds = bound(lambda x: x.clamp(0.1, 0.7), -4.0, 4.0)
    assert binds <= x_cast * (1 + 1e-6) + 0.7 * u * (1 + 1e-6)


STEP_OPS = [
    ("floor", _f(lambda x: torch.floor(x) * 1.5), aten.floor.default),
    ("ceil", _f(lambda x: torch.ceil(x) * 1.5), aten.ceil.default),
    ("round", _f(lambda x: torch.round(x) * 1.5), aten.round.default),
    ("trunc", _f(lambda x: torch.trunc(x) * 1.5), aten.trunc.default),
    ("sign", _f(lambda x: torch.sign(x) * 1.5), aten.sign.default),
]
STEP_CASES = {c[0]: SUITES[True].case(c[1], [box(S, -2.0, 2.0)]) for c in STEP_OPS}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in STEP_OPS])
@pytest.mark.parametrize("lo,hi", [(-2.0, 2.0), (0.45, 0.55), (2.9999, 3.0001)])
def test_step_functions(name, op, lo, hi):
    """Across a jump: the range is [g(lo), g(hi)], L and kappa are infinite, and a rounding
    error of the input may move the output by a whole step (real runs near the jumps: the
    harness's corner and critical points sit on them)."""
    rep = STEP_CASES[name].check([box(S, lo, hi)], op, critical=[0.0, 0.5, 3.0, -0.5, 1.5], require_finite=False)
    g = getattr(torch, name)
    jump = bool(g(torch.tensor(lo)) != g(torch.tensor(hi)))
    assert rep.lipschitz[f"{rep.nodes[0]}:self"] == (math.inf if jump else 0.0)


def test_step_error_is_one_step_where_a_rounding_crosses_a_jump():
    """floor(x * 0.1) on x in [29.9, 30.1]: x * 0.1 lands on either side of 3 depending on
    the format's rounding, and the step's error bound must cover the jump of 1 (it is 0
    only where the inflated box holds no integer)."""
    fn = _f(lambda x: torch.floor(x * 0.1))
    rep = check_rule(fn, [box(S, 29.9, 30.1)], aten.floor.default, require_finite=False, n=8)
    assert all(b >= 1.0 for b in rep.bounds.values())


def _erfc_d2(a: float) -> float:
    return 4 / math.sqrt(math.pi) * abs(a) * math.exp(-a * a)


# Plausible mistakes in the hyperbolic / inverse trigonometric rules, each caught by the
# harness: (id, case, op, box, wrong result, check kind)
WRONG_MORE = [
    # cosh's image from its endpoints only, missing the minimum 1 at 0: [cosh(1), ...]
    ("cosh_endpoint_range", "cosh", aten.cosh.default, (-1, 2), _with_range_lo(math.cosh(1.0)), "range"),
    # asinh's slope taken at mag instead of mig: 1/sqrt(17) < 1 on [-4, 4]
    ("asinh_slope_at_mag", "asinh", aten.asinh.default, (-4, 4), _with_lipschitz(1 / math.sqrt(17)), "lipschitz"),
    # erfc's curvature from the endpoints, missing the peak at 1/sqrt 2
    ("erfc_kappa_endpoints", "erfc", aten.erfc.default, (-3, 3), _with_curvature(0.5 * _erfc_d2(3.0)), "curvature"),
    # atanh's curvature at mig instead of mag
    ("atanh_kappa_at_mig", "atanh", aten.atanh.default, (0.5, 0.99), _with_curvature(0.5 * 2 * 0.5 / 0.75**2), "curvature"),
    # asin's slope at mig
    ("asin_slope_at_mig", "asin", aten.asin.default, (0.5, 0.99), _with_lipschitz(1 / math.sqrt(0.75)), "lipschitz"),
    ("sinh_error_underestimated", "sinh", aten.sinh.default, (5, 10), lambda r: scale_error(r, 0.05), "rounding error"),
]


@pytest.mark.parametrize("case,op,b,transform,kind", [pytest.param(*w[1:], id=w[0]) for w in WRONG_MORE])
def test_hyperbolic_and_inverse_trig_wrong_variants_are_caught(case, op, b, transform, kind):
    formats = ("fp16", "bf16", "fp32") if kind == "rounding error" else None
    crit = [0.0, 1 / math.sqrt(2), -1 / math.sqrt(2)]
    with wrong_rule(op, transform), pytest.raises(AssertionError, match=kind):
        REGISTERED[case].check([box(S, *b)], op, critical=crit, formats=formats)


@pytest.mark.parametrize("fn,op,lo,hi", [(torch.asin, "aten.asin.default", 0.5, 1.5), (torch.acos, "aten.acos.default", -1.01, 0.0), (torch.atanh, "aten.atanh.default", -1.0, 0.5)])
def test_inverse_trig_outside_their_domain_fail_closed(fn, op, lo, hi):
    from certifier.walker import analyze_bounds

    _, cap, loaded = build(_f(fn), [box(S, lo, hi)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == [op]
    assert not ba.nodes[ba.outputs[0]].primary.is_bounded()
