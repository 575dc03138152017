"""Sampling soundness of curvature_rules.reduction: sum, mean, amax, amin, max.dim, min.dim,
argmax, argmin, sort, topk, cumsum, linalg_vector_norm. The harness checks integer outputs (indices)
against their error bounds too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import (
    Suite,
    box,
    check_rule,
    halve_curvature,
    halve_lipschitz,
    scale_error,
    shrink_range,
    wrong_rule,
)

aten = torch.ops.aten
SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}

# (id, fn, op, shape, smooth, decompose)
CASES = [
    ("sum_all", lambda x: x.sum(), aten.sum.dim_IntList, (3, 4), True, True),
    ("sum_dim", lambda x: x.sum(-1), aten.sum.dim_IntList, (3, 4), True, True),
    ("sum_dims_keep", lambda x: x.sum((0, 2), keepdim=True), aten.sum.dim_IntList, (2, 3, 4), True, True),
    ("sum.default", lambda x: aten.sum.default(x), aten.sum.default, (3, 4), True, False),
    ("sum_long", lambda x: x.sum(-1), aten.sum.dim_IntList, (2, 256), True, True),
    ("mean_dim", lambda x: x.mean(-1), aten.mean.dim, (3, 4), True, True),
    ("mean_keep", lambda x: x.mean((1, 2), keepdim=True), aten.mean.dim, (2, 3, 4), True, True),
    ("mean.default", lambda x: aten.mean.default(x), aten.mean.default, (3, 4), True, False),
    ("amax", lambda x: x.amax(-1), aten.amax.default, (3, 4), False, True),
    ("amin_keep", lambda x: x.amin(0, keepdim=True), aten.amin.default, (3, 4), False, True),
    ("max_dim", lambda x: x.max(-1), aten.max.dim, (3, 4), False, True),
    ("min_dim", lambda x: x.min(0, keepdim=True), aten.min.dim, (3, 4), False, True),
    ("argmax", lambda x: x.argmax(-1), aten.argmax.default, (3, 4), False, True),
    ("argmin_keep", lambda x: x.argmin(0, keepdim=True), aten.argmin.default, (3, 4), False, True),
    ("argmax_flat", lambda x: x.argmax(), aten.argmax.default, (3, 4), False, True),
    ("argmax_index_used", lambda x: x.argmax(-1).to(x.dtype) * 0.5 + x.amax(-1), aten.argmax.default, (3, 4), False, True),
    ("sort", lambda x: x.sort(-1), aten.sort.default, (3, 5), False, True),
    ("sort_desc_dim0", lambda x: torch.sort(x, 0, descending=True), aten.sort.default, (4, 3), False, True),
    ("sort_stable", lambda x: torch.sort(x, dim=-1, stable=True), aten.sort.stable, (3, 5), False, True),
    ("topk", lambda x: x.topk(2, -1), aten.topk.default, (3, 5), False, True),
    ("topk_smallest_dim0", lambda x: torch.topk(x, 3, 0, largest=False), aten.topk.default, (5, 2), False, True),
    ("topk_gate", lambda x: x.topk(2, -1).values.softmax(-1) * x.topk(2, -1).indices.to(x.dtype), aten.topk.default, (4, 8), False, True),
    ("kthvalue", lambda x: x.kthvalue(2, -1), aten.kthvalue.default, (3, 5), False, True),
    ("kthvalue_keep_dim0", lambda x: x.kthvalue(3, 0, keepdim=True), aten.kthvalue.default, (4, 3), False, True),
    ("median_dim", lambda x: x.median(-1), aten.median.dim, (3, 6), False, True),
    ("one_hot_argmax", lambda x: F.one_hot(x.argmax(-1), 4).to(x.dtype) * x, aten.argmax.default, (3, 4), False, True),
    ("prod_dim", lambda x: x.prod(-1), aten.prod.dim_int, (3, 5), True, True),
    ("prod_keep_dim0", lambda x: x.prod(0, keepdim=True), aten.prod.dim_int, (4, 3), True, True),
    ("prod_all", lambda x: x.prod(), aten.prod.default, (2, 3), True, True),
    ("prod_long", lambda x: x.prod(-1), aten.prod.dim_int, (2, 64), True, True),
    ("cumprod", lambda x: x.cumprod(-1), aten.cumprod.default, (3, 6), True, True),
    ("cumprod_dim0", lambda x: x.cumprod(0), aten.cumprod.default, (5, 2), True, True),
    ("cumsum", lambda x: x.cumsum(-1), aten.cumsum.default, (3, 6), True, True),
    ("cumsum_dim0", lambda x: x.cumsum(0), aten.cumsum.default, (5, 2), True, True),
]
REG = {c[0]: SUITES[c[5]].case(c[1], [box(c[3], -1.0, 1.0)]) for c in CASES}
BOXES = [(-1.0, 1.0), (0.0, 100.0), (-1e-3, 1e-3), (1000.0, 1001.0), (-5.0, -4.0)]


@pytest.mark.parametrize("name,op,shape,smooth", [pytest.param(c[0], c[2], c[3], c[4], id=c[0]) for c in CASES])
@pytest.mark.parametrize("lo,hi", BOXES)
def test_reduction(name, op, shape, smooth, lo, hi):
    REG[name].check([box(shape, lo, hi)], op, n=16, smooth=smooth)


MEAN_SUB = SUITES[True].case(lambda x: x - x.mean(-1, keepdim=True), [box((3, 8), -1, 1)])


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (100.0, 100.5)])
def test_centering(lo, hi):
    """x - mean(x): the reduction feeding a subtraction (cancellation for a large mean)."""
    MEAN_SUB.check([box((3, 8), lo, hi)], [aten.mean.dim, aten.sub.Tensor], n=12)


def test_an_op_without_a_rule_fails_closed():
    """torch.atan2 (aten.atan2) has no rule: it is reported unsupported, never bounded.
    (This test used x.var() and then x.cumprod(), which have rules now.)"""
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, loaded = build(lambda x: torch.atan2(x, x + 2.0), [box((3, 4), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.atan2.default"]
    assert not ba.nodes[ba.outputs[0]].primary.is_bounded()


# ---------------------------------------------------------------------------- vector norms
NORM = aten.linalg_vector_norm.default
INF = float("inf")
# (id, fn, shape, smooth): ord 2 is C^2 away from 0; ord 1 and inf are piecewise linear.
NORM_CASES = [
    ("l2_last", lambda x: torch.linalg.vector_norm(x, dim=-1), (3, 8), True),
    ("l2_dims_keep", lambda x: x.norm(dim=(0, 2), keepdim=True), (2, 3, 4), True),
    ("l2_dims", lambda x: torch.linalg.vector_norm(x, dim=[0, 2]), (2, 3, 4), True),
    ("l2_all", lambda x: torch.linalg.vector_norm(x), (3, 4), True),
    ("l2_long", lambda x: torch.norm(x, dim=-1), (2, 256), True),
    ("l2_size1", lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True), (4, 1), True),
    ("normalize", lambda x: F.normalize(x, dim=-1), (2, 16), True),
    ("l1_last", lambda x: torch.linalg.vector_norm(x, ord=1, dim=-1), (3, 8), False),
    ("l1_dims_keep", lambda x: torch.linalg.vector_norm(x, ord=1, dim=(0, 1), keepdim=True), (2, 3, 4), False),
    ("linf_dim0", lambda x: torch.linalg.vector_norm(x, ord=INF, dim=0), (3, 8), False),
    ("linf_all", lambda x: torch.linalg.vector_norm(x, ord=INF), (2, 3, 4), False),
]
NORM_REG = {c[0]: SUITES[True].case(c[1], [box(c[2], -1.0, 1.0)]) for c in NORM_CASES}
# strictly positive, mixed sign around 0, narrow far from 0, negative, wide, tiny around 0
NORM_BOXES = [(0.5, 2.0), (-1.0, 1.0), (1000.0, 1001.0), (-5.0, -4.0), (-100.0, 100.0), (-1e-3, 1e-3)]


@pytest.mark.parametrize("name,shape,smooth", [pytest.param(c[0], c[2], c[3], id=c[0]) for c in NORM_CASES])
@pytest.mark.parametrize("lo,hi", NORM_BOXES)
def test_vector_norm(name, shape, smooth, lo, hi):
    if name == "normalize" and lo <= 0 <= hi:
        pytest.skip("x / max(||x||, eps) near 0: the division's error is unbounded, nothing to compare")
    NORM_REG[name].check([box(shape, lo, hi)], NORM, n=12, n_round=8, smooth=smooth)


@pytest.mark.parametrize("lo,hi", [(1e-30, 3e-30), (-3e-30, 3e-30), (1e17, 1e18)])
def test_vector_norm_extreme_magnitudes(lo, hi):
    """Squares that underflow in fp32 (bf16 inputs near 1e-30: the kernel returns 0) and
    that come close to fp32's range (bf16 inputs near 1e18)."""
    NORM_REG["l2_last"].check([box((3, 8), lo, hi)], NORM, n=8, n_round=8, formats=("bf16", "fp32"))


def test_vector_norm_claims():
    """ord 2 on (3, 8): L = sqrt(8) (attained at equal |x_i|), kappa = n / (2 min ||x||) =
    8 / (2 * 0.5 sqrt 8) on [0.5, 2], which the sign vector h = (+-1 alternating) attains at
    the lower corner; a box that reaches the zero vector has no finite curvature."""
    rep = NORM_REG["l2_last"].check([box((3, 8), 0.5, 2.0)], NORM, n=12, formats=None)
    L = rep.lipschitz["linalg_vector_norm:self"]
    k = rep.curvature["linalg_vector_norm"]
    assert abs(L - 8**0.5) < 1e-9 and abs(k - 8**0.5) < 1e-9
    rep = NORM_REG["l2_last"].check([box((3, 8), -1.0, 1.0)], NORM, n=12, formats=None)
    assert rep.curvature["linalg_vector_norm"] == INF
    assert abs(rep.lipschitz["linalg_vector_norm:self"] - 8**0.5) < 1e-9


def _norm_rows(x):
    return torch.linalg.vector_norm(x, dim=-1)


def test_vector_norm_per_element_box():
    """Rows that stay away from 0 although some of their elements contain 0 (finite
    curvature), next to a row whose box is 0 in every element."""
    lo = torch.tensor([[0.5] * 8, [-1.0] * 4 + [1.0] * 4, [-1.0] * 8], dtype=torch.float64)
    hi = torch.tensor([[2.0] * 8, [1.0] * 4 + [3.0] * 4, [1.0] * 8], dtype=torch.float64)
    rep = check_rule(_norm_rows, [box((3, 8), lo, hi)], NORM, n=12, n_round=8)
    assert rep.curvature["linalg_vector_norm"] == INF  # the last row
    rep = check_rule(_norm_rows, [box((2, 8), lo[:2], hi[:2])], NORM, n=12, n_round=8)
    # min ||x||: 0.5 sqrt(8) in the first row, sqrt(4 * 1^2) = 2 in the second
    assert rep.curvature["linalg_vector_norm"] == pytest.approx(8 / (2 * 0.5 * 8**0.5), rel=1e-9)


@pytest.mark.parametrize(
    "transform,match",
    [(shrink_range, "range"), (lambda r: scale_error(r, 0.01), "rounding error"), (halve_lipschitz, "lipschitz"), (halve_curvature, "curvature")],
    ids=["range", "error", "lipschitz", "curvature"],
)
def test_wrong_vector_norm_rule_is_detected(transform, match):
    with wrong_rule(NORM, transform):
        with pytest.raises(AssertionError, match=match):
            NORM_REG["l2_last"].check([box((3, 8), 0.5, 2.0)], NORM, n=12, n_round=8)


def test_unsupported_vector_norms_fail_closed():
    """Orders other than 1, 2, inf and an explicit dtype are declined: reported, unbounded."""
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    def fn(x):
        v = torch.linalg.vector_norm
        return v(x, ord=3, dim=-1), v(x, ord=0, dim=-1), v(x, ord=-INF, dim=-1), v(x, ord=0.5, dim=-1), v(x, dim=-1, dtype=torch.float64)

    _, cap, loaded = build(fn, [box((3, 4), 0.5, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.linalg_vector_norm.default"] * 5
    assert all("rule declines" in u["reason"] for u in ba.unsupported)
    assert not any(ba.nodes[o].primary.is_bounded() for o in ba.outputs)


def test_vector_norm_sum_of_squares_overflow_is_unbounded():
    """bf16 (and fp32) inputs near 1e20 have a norm well inside bf16's range, but the kernel
    sums the squares in fp32, which overflows: the error must be infinite there."""
    from certifier.rounding import run_errors
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    x = torch.full((1, 4), 1e20)
    assert torch.isinf(torch.linalg.vector_norm(x.bfloat16(), dim=-1)).all()
    _, cap, loaded = build(_norm_rows, [box((1, 4), 1e19, 1e20)], None, True)
    ba = analyze_bounds(loaded, cap)
    er = run_errors(ba, [{"*": f} for f in ("fp64", "fp32", "bf16")])
    assert er.bound[0] < 1e6 and er.bound[1] == INF and er.bound[2] == INF
    assert "fp32 accumulation" in er.overflow[2].reason()


def test_index_spreads_decide_separated_rows():
    """The index bounds are 0 where the boxes (widened by the errors) decide the order, the
    span of the overlapping elements where they do not, and 0 where the row is exact."""
    from certifier.interval import Interval
    from curvature_rules.reduction import argmax_spread, rank_spread

    lo = torch.tensor([[0.0, 10.0, 20.0, 30.0], [0.0, 10.0, 10.5, 30.0]], dtype=torch.float64)
    x = Interval(lo, lo + 1.0, torch.float32)
    e = torch.full((2, 2, 4), 0.1, dtype=torch.float64)
    e[1] = 0.0  # a second configuration in which the input is exact
    am = argmax_spread(x, e, -1, False, True)
    assert am.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    amin = argmax_spread(x, e, -1, True, False)
    assert amin.tolist() == [[[0.0], [0.0]], [[0.0], [0.0]]]
    rs = rank_spread(x, e, 1, 4, True)  # descending: positions 0..3
    assert rs[0].tolist() == [[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]  # elements 1 and 2 overlap
    assert rs[1].abs().sum() == 0
    asc = rank_spread(x, e, 1, 2, False)
    assert asc[0].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    # A row where every element reaches the maximum: the index may be anywhere.
    flat = Interval(torch.zeros(1, 6, dtype=torch.float64), torch.ones(1, 6, dtype=torch.float64), torch.float32)
    e1 = torch.full((1, 1, 6), 1e-3, dtype=torch.float64)
    assert argmax_spread(flat, e1, -1, False, True).tolist() == [[5.0]]
    assert rank_spread(flat, e1, 1, 6, False).tolist() == [[[5.0] * 6]]


def test_rank_spread_large_rows_fall_back_to_the_row_span():
    """Rows too long for the position-by-element table: the whole row's span where any
    position is undecided, 0 in a row whose order is decided."""
    from certifier.interval import Interval
    from curvature_rules.reduction import rank_spread

    n = 5000
    base = torch.arange(n, dtype=torch.float64) * 10.0
    lo = torch.stack([base, base])
    lo[1, 7] = lo[1, 8]  # two equal boxes in the second row
    x = Interval(lo, lo + 1.0, torch.float32)
    e = torch.full((1, 2, n), 0.1, dtype=torch.float64)
    rs = rank_spread(x, e, 1, n, True)
    assert rs.shape == (1, 2, n)
    assert float(rs[0, 0].max()) == 0.0 and float(rs[0, 1].min()) == n - 1


@pytest.mark.parametrize(
    "transform,match",
    [(shrink_range, "range"), (lambda r: scale_error(r, 0.01), "rounding error"), (halve_lipschitz, "lipschitz"), (halve_curvature, "curvature")],
    ids=["range", "error", "lipschitz", "curvature"],
)
@pytest.mark.parametrize("name,op", [("prod_dim", aten.prod.dim_int), ("cumprod", aten.cumprod.default)])
def test_wrong_product_rule_is_detected(name, op, transform, match):
    """prod / cumprod on [0.5, 2]: the Lipschitz bound sum_i prod_{j != i} |x_j| and the
    curvature are attained at the upper corner, the error near it."""
    shape = next(c[3] for c in CASES if c[0] == name)
    with wrong_rule(op, transform):
        with pytest.raises(AssertionError, match=match):
            REG[name].check([box(shape, 0.5, 2.0)], op, n=16, n_round=12)


def test_lower_prefix_products_bound_the_exact_products_from_below():
    """ProductError needs prod m from below: the upper scan shrunk once is not a lower bound
    (float64 rounding, charged upward at each of the k steps, gathers), the downward scan is.
    Checked against exact rational products."""
    from fractions import Fraction

    from curvature_rules.reduction import _lower_products, _scan_products
    from certifier.interval import down

    g = torch.Generator().manual_seed(3)
    m = torch.rand(2, 64, generator=g, dtype=torch.float64) + 0.5
    low = _lower_products(m, 1)
    old = down(_scan_products(m, 1)[0])
    above = 0
    for r in range(2):
        p = Fraction(1)
        for k in range(64):
            p *= Fraction(float(m[r, k]))
            assert Fraction(float(low[r, k])) <= p
            above += Fraction(float(old[r, k])) > p
    assert above > 0  # the old lower end was above the exact product somewhere
