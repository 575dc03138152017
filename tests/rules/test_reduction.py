"""Sampling soundness of curvature_rules.reduction: sum, mean, amax, amin, max.dim, min.dim,
cumsum, linalg_vector_norm."""

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


def test_cumprod_has_no_rule_and_fails_closed():
    """x.cumprod() (aten.cumprod) has no rule: it is reported unsupported, never bounded.
    (This test used x.var(), which has a rule now: curvature_rules.norm.var_rule.)"""
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, loaded = build(lambda x: x.cumprod(-1), [box((3, 4), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.cumprod.default"]
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
