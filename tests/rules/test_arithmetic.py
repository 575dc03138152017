"""Sampling soundness of curvature_rules.arithmetic: add/sub/rsub/mul/div (tensor and scalar
forms), pow with a scalar exponent, maximum/minimum."""

from __future__ import annotations

import pytest
import torch

from certifier.walker import analyze_bounds
from tests.rules.harness import Suite, box, build, check_rule, halve_lipschitz, scale_error, wrong_rule

SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}

aten = torch.ops.aten
S = (3, 4)
W = torch.tensor([[0.5, -2.0, 3.0, 1e-3]])  # a constant operand (broadcast over rows)


def _f(fn):
    return lambda *a, **k: fn(*a, **k)


# Two-box binary ops: (id, fn, op, [(box x), (box y)] cases, decompose)
BINARY = [
    ("add", _f(lambda x, y: x + y), aten.add.Tensor, [((-3, 3), (-1, 2)), ((1e3, 2e3), (-1e-3, 1e-3)), ((-1, 0), (-5, -4))], True),
    ("add_alpha", _f(lambda x, y: torch.add(x, y, alpha=-2.5)), aten.add.Tensor, [((-3, 3), (-1, 2)), ((0, 1), (0, 1))], True),
    ("sub", _f(lambda x, y: x - y), aten.sub.Tensor, [((-3, 3), (-1, 2)), ((1.0, 1.001), (1.0, 1.001))], True),
    ("rsub", _f(lambda x, y: aten.rsub.Tensor(x, y, alpha=2.0)), aten.rsub.Tensor, [((-3, 3), (-1, 2)), ((5, 6), (0, 1))], False),
    ("mul", _f(lambda x, y: x * y), aten.mul.Tensor, [((-3, 3), (-1, 2)), ((2, 4), (-5, -1)), ((-1e-3, 1e-3), (100, 1e3)), ((-20, 20), (-20, 20))], True),
    ("div", _f(lambda x, y: x / y), aten.div.Tensor, [((-3, 3), (0.5, 2)), ((1, 2), (-3, -1)), ((-1e-2, 1e-2), (1e-2, 1e-1)), ((10, 100), (0.1, 0.2))], True),
    ("maximum", _f(torch.maximum), aten.maximum.default, [((-3, 3), (-1, 2)), ((0, 1), (2, 3))], True),
    ("minimum", _f(torch.minimum), aten.minimum.default, [((-3, 3), (-1, 2)), ((-5, -4), (-4.5, 0))], True),
]


BIN_CASES = {c[0]: SUITES[c[4]].case(c[1], [box(S, *c[3][0][0]), box(S, *c[3][0][1])]) for c in BINARY}


@pytest.mark.parametrize(
    "name,op,bx,by",
    [pytest.param(c[0], c[2], b[0], b[1], id=f"{c[0]}{b[0]}{b[1]}") for c in BINARY for b in c[3]],
)
def test_binary_two_boxes(name, op, bx, by):
    smooth = op not in (aten.maximum.default, aten.minimum.default)
    BIN_CASES[name].check([box(S, *bx), box(S, *by)], op, smooth=smooth, critical={"self": [0.0], "other": [0.0]})


BROADCAST = [
    ("mul", _f(lambda x, y: x * y), aten.mul.Tensor),
    ("add", _f(lambda x, y: x + y), aten.add.Tensor),
    ("div", _f(lambda x, y: y / x), aten.div.Tensor),
]


BC_CASES = {c[0]: SUITES[True].case(c[1], [box(S, 0.5, 2), box((4,), -4, -1)]) for c in BROADCAST}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in BROADCAST])
@pytest.mark.parametrize("bx,by", [((0.5, 2), (-4, -1)), ((-3, -0.1), (-1, 2))])
def test_binary_broadcast(name, op, bx, by):
    """(3, 4) op (4,): every output depends on one element of each operand."""
    BC_CASES[name].check([box(S, *bx), box((4,), *by)], op, n=12)


SQUARE = SUITES[True].case(_f(lambda x: x * x), [box(S, -3.0, 2.0)])


def test_mul_same_operand():
    """x * x: both arguments come from one producer; each claim holds separately."""
    SQUARE.check(None, aten.mul.Tensor, critical=[0.0])


@pytest.mark.parametrize("lo,hi", [(-3.0, 2.0), (0.5, 2.0), (-3.0, -1.0)])
def test_mul_same_operand_range_is_the_square(lo, hi):
    """The square's image, not the box product ([-3, 2]^2 = [0, 9], not [-6, 9]): what
    keeps x * x + c away from 0 for a later rsqrt (RMSNorm written as x * x)."""
    SQUARE.check([box(S, lo, hi)], aten.mul.Tensor, critical=[0.0])
    module, cap, loaded = build(lambda x: x * x, [box(S, lo, hi)], None, True)
    ba = analyze_bounds(loaded, cap)
    iv = next(i for i in ba.nodes.values() if i.kind == "call" and i.node.target == aten.mul.Tensor).primary
    mig = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    mag = max(abs(lo), abs(hi))
    assert float(iv.lo.min()) >= 0.0 and float(iv.lo.min()) >= mig * mig * (1 - 1e-12)
    assert float(iv.hi.max()) <= mag * mag * (1 + 1e-12)


# Constant operand (a buffer) and Python scalars.
CONST = [
    ("mul_const", _f(lambda x, w: x * w), aten.mul.Tensor, True),
    ("div_const", _f(lambda x, w: x / w), aten.div.Tensor, True),
    ("const_div", _f(lambda x, w: w / x), aten.div.Tensor, True),
    ("add_const", _f(lambda x, w: x + w), aten.add.Tensor, True),
    ("sub_const", _f(lambda x, w: w - x), aten.sub.Tensor, True),
]


CONST_CASES = {c[0]: SUITES[c[3]].case(c[1], [box(S, 0.5, 3.0)], consts={"w": W}) for c in CONST}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in CONST])
@pytest.mark.parametrize("lo,hi", [(0.5, 3.0), (-4.0, -0.25)])
def test_binary_constant_operand(name, op, lo, hi):
    CONST_CASES[name].check([box(S, lo, hi)], op)


SCALAR = [
    ("add_scalar", _f(lambda x: x + 0.1), aten.add.Tensor, True),
    ("mul_scalar", _f(lambda x: x * -3.3), aten.mul.Tensor, True),
    ("div_scalar", _f(lambda x: x / 7.0), aten.div.Tensor, True),
    ("rsub_scalar", _f(lambda x: 1.0 - x), aten.sub.Tensor, True),
    ("scalar_div", _f(lambda x: 0.3 / x), aten.reciprocal.default, True),
    ("add.Scalar", _f(lambda x: aten.add.Scalar(x, 0.1, alpha=3)), aten.add.Scalar, False),
    ("sub.Scalar", _f(lambda x: aten.sub.Scalar(x, 0.7)), aten.sub.Scalar, False),
    ("mul.Scalar", _f(lambda x: aten.mul.Scalar(x, 1.1)), aten.mul.Scalar, False),
    ("div.Scalar", _f(lambda x: aten.div.Scalar(x, 0.3)), aten.div.Scalar, False),
    ("rsub.Scalar", _f(lambda x: aten.rsub.Scalar(x, 0.1)), aten.rsub.Scalar, False),
]


SCALAR_CASES = {c[0]: SUITES[c[3]].case(c[1], [box(S, 0.5, 3.0)]) for c in SCALAR}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in SCALAR])
@pytest.mark.parametrize("lo,hi", [(0.5, 3.0), (-4.0, -0.25), (-0.1, -0.0999)])
def test_binary_scalar_operand(name, op, lo, hi):
    SCALAR_CASES[name].check([box(S, lo, hi)], op)


POW = [2.0, 3.0, 4.0, 0.5, -1.5, 2.5, 1.0]


_POW = {p: _f(lambda x, p=p: x**p) for p in POW}
POW_CASES = {p: SUITES[True].case(_POW[p], [box(S, 0.25, 4.0)]) for p in POW}


@pytest.mark.parametrize(
    "p,lo,hi",
    # A real exponent on a box reaching 0 or below: the rule declines (tested below).
    [(p, lo, hi) for p in POW for lo, hi in [(-3.0, 2.0), (0.25, 4.0), (-2.0, -0.5), (10.0, 20.0)] if p == int(p) or lo > 0],
)
def test_pow_scalar(p, lo, hi):
    POW_CASES[p].check([box(S, lo, hi)], aten.pow.Tensor_Scalar, critical=[0.0])


def test_pow_real_exponent_on_negative_box_fails_closed():
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, loaded = build(_POW[0.5], [box(S, -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.pow.Tensor_Scalar"]


ADD_01 = _f(lambda x: x + 0.1)
ADD_01_ALPHA = _f(lambda x: aten.add.Scalar(x, 0.1, alpha=3))


@pytest.mark.parametrize("fn,op,dec", [(ADD_01, aten.add.Tensor, True), (ADD_01_ALPHA, aten.add.Scalar, False)], ids=["add", "add.Scalar"])
def test_scalar_is_rounded_to_storage_format_regression(fn, op, dec):
    """Regression: x + 0.1 on an fp16 tensor adds fl16(0.1) = 0.0999756 (type promotion), not
    an fp32 0.1. The rule charged only u_fp32 * 0.1 for the scalar; on x in [-0.1, -0.0999]
    fp16 computed 0.0 where the exact value is 5.07e-5 > the bound 4.90e-5 (add.Scalar with
    alpha 3: error 1.71e-4 > bound 1.47e-4). Now the scalar costs u * |s| + eta/2 of the
    storage format."""
    rep = check_rule(fn, [box(S, -0.1, -0.0999)], op, decompose=dec, n_round=24)
    assert rep.error_ratio["fp16"] <= 1.0


SCALAR_OVERFLOW = [
    ("add", _f(lambda x: x + 1e5), aten.add.Tensor, (-65000.0, -64000.0)),
    ("sub", _f(lambda x: x - 7e4), aten.sub.Tensor, (65000.0, 65500.0)),
]


@pytest.mark.parametrize("fn,op,b", [pytest.param(c[1], c[2], c[3], id=c[0]) for c in SCALAR_OVERFLOW])
def test_scalar_beyond_format_max_regression(fn, op, b):
    """Regression: x + 1e5 with x in [-65000, -64000] fits fp16 (35000), but the scalar 1e5 is
    inf in fp16, so the computed result is inf; the bound was finite (98.2). The scalar is now
    reported as an intermediate (internal_max) and fp16 is refused (overflow)."""
    rep = check_rule(fn, [box(S, *b)], op)
    assert rep.bounds["fp16"] == float("inf") and rep.bounds["bf16"] < float("inf")


NEG_INF_MASK = torch.zeros(S).masked_fill(torch.rand(S, generator=torch.Generator().manual_seed(0)) < 0.5, float("-inf"))


@pytest.mark.parametrize(
    "fn,op",
    [
        (_f(lambda x, m: x + m), aten.add.Tensor),
        (_f(lambda x, m: x - m), aten.sub.Tensor),
        (_f(lambda x, m: torch.sub(x, m, alpha=2.0)), aten.sub.Tensor),
        (_f(lambda x, m: m - x), aten.sub.Tensor),
        (_f(lambda x, m: torch.add(x, m, alpha=-0.5)), aten.add.Tensor),
    ],
    ids=["x+m", "x-m", "x-2m", "m-x", "x-0.5m"],
)
def test_a_fixed_infinity_keeps_its_sign_through_add_and_sub(fn, op):
    """x + alpha * m with m in {0, -inf}: exactly alpha * m's infinity where masked. Regression:
    the sign of alpha was dropped (x - mask was claimed -inf; it is +inf)."""
    check_rule(fn, [box(S, -1.0, 1.0)], op, consts={"m": NEG_INF_MASK}, require_finite=False, n=8)
    module, cap, loaded = build(fn, [box(S, -1.0, 1.0)], {"m": NEG_INF_MASK}, True)
    iv = next(i for i in analyze_bounds(loaded, cap).nodes.values() if i.kind == "call" and i.node.target == op).primary
    truth = fn(torch.zeros(S, dtype=torch.float64), NEG_INF_MASK.double())
    masked = torch.isinf(NEG_INF_MASK)
    assert torch.equal(iv.lo[masked], truth[masked]) and torch.equal(iv.hi[masked], truth[masked])


CLAMP_T = SUITES[True].case(_f(lambda x, a, b: torch.clamp(x, min=a, max=b)), [box(S, -3, 3), box(S, -1, 0), box((4,), 0.5, 1)])


@pytest.mark.parametrize("bx,ba,bb", [((-3, 3), (-1, 0), (0.5, 1)), ((-3, 3), (0.5, 2), (-1, 0)), ((0.1, 0.2), (-1, 1), (0.15, 3))])
def test_clamp_tensor_bounds(bx, ba, bb):
    """clamp(x, min=a, max=b) with tensors (b broadcast): min(max(x, a), b), exact, L = 1 in
    each argument (a > b gives b)."""
    CLAMP_T.check([box(S, *bx), box(S, *ba), box((4,), *bb)], aten.clamp.Tensor, n=12, smooth=False)


def test_exact_integer_arithmetic_is_exact_only_where_the_format_holds_it():
    """x + c and x * c on exactly known integers (a constant tensor) carry no rounding error
    where the result is an integer the format holds (|r| <= 2^p: 256 in bf16, 2048 in
    fp16), and are charged as before beyond it. Checked through the error pass."""
    from certifier.rounding import run_errors
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    k = torch.tensor([[3.0, 200.0, 255.0, 300.0, 2047.0, 5000.0]])

    def fn(x, k):
        return x * 0 + (k * 1.0 + 1.0)

    _, cap, loaded = build(fn, [box((1, 6), -1, 1)], {"k": k}, True)
    ba = analyze_bounds(loaded, cap)
    er = run_errors(ba, [{"*": f} for f in ("bf16", "fp16", "fp32")], keep_errs=True)
    add = next(n for n, v in ba.nodes.items() if v.op == "add" and n != ba.outputs[0] and v.primary.numel() == 6 and bool((v.primary.lo == v.primary.hi).all()))
    e = er.node_err[add]
    # results 4, 201, 256, 301, 2048, 5001
    assert [bool(v == 0) for v in e[0, 0]] == [True, True, True, False, False, False]  # bf16: <= 256
    assert [bool(v == 0) for v in e[1, 0]] == [True, True, True, True, True, False]  # fp16: <= 2048
    assert bool((e[2] == 0).all())  # fp32


ALIBI_N = torch.arange(1, 17, dtype=torch.int32).reshape(1, 16)


def _pow_tt(x, n):
    return torch.pow(x, n)


@pytest.mark.parametrize("lo,hi", [(0.5, 0.9), (-1.0, 1.0), (1.0, 1.2)])
def test_pow_with_a_known_integer_exponent_tensor(lo, hi):
    """x ** n with n = 1..16 (Bloom's ALiBi slopes ``base ** arange``): even powers reach 0
    inside a box through 0, odd ones are monotone; against real runs."""
    check_rule(_pow_tt, [box((3, 16), lo, hi)], aten.pow.Tensor_Tensor, consts={"n": ALIBI_N}, n=12)


@pytest.mark.parametrize("c", [2.0, 0.3, 10000.0])
def test_pow_of_a_positive_scalar_base(c):
    """c ** x (pow.Scalar): monotone, L = |ln c| sup c^x; the kernel rounds c to the
    tensor's dtype (10000 is not a bf16 value: 9984), which the bound charges."""
    check_rule(lambda x: c ** x, [box((2, 8), -3.0, 3.0)], aten.pow.Scalar, n=12, require_finite=False)


@pytest.mark.parametrize(
    "op,fn,consts,b,transform,match",
    [
        (aten.pow.Tensor_Tensor, _pow_tt, {"n": ALIBI_N}, (1.0, 1.2), halve_lipschitz, "lipschitz"),
        (aten.pow.Tensor_Tensor, _pow_tt, {"n": ALIBI_N}, (1.0, 1.2), lambda r: scale_error(r, 0.05), "rounding error"),
        (aten.pow.Scalar, lambda x: 2.0**x, None, (-3.0, 3.0), halve_lipschitz, "lipschitz"),
        (aten.pow.Scalar, lambda x: 0.3**x, None, (-3.0, 3.0), lambda r: scale_error(r, 0.05), "rounding error"),
    ],
)
def test_wrong_pow_rules_are_caught(op, fn, consts, b, transform, match):
    shape = (3, 16) if consts else (2, 8)
    with wrong_rule(op, transform), pytest.raises(AssertionError, match=match):
        check_rule(fn, [box(shape, *b)], op, consts=consts, n=12)


def test_pow_scalar_of_a_nonpositive_base_fails_closed():
    _, cap, loaded = build(lambda x: (-2.0) ** x, [box((2, 3), 0.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.pow.Scalar"]


def test_pow_of_a_scalar_tensor_base_by_an_exponent_tensor():
    """Bloom's ALiBi: a 0-d base tensor raised to ``arange`` (the base's error broadcasts)."""
    check_rule(lambda x, n: torch.pow(x.sum() * 0.1 + 0.5, n), [box((3,), 0.0, 1.0)], aten.pow.Tensor_Tensor, consts={"n": ALIBI_N[0, :6]}, n=12)
