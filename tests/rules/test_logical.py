"""Sampling soundness of curvature_rules.logical: comparisons (tensor and scalar forms),
boolean logic, any/all, where, masked_fill, isnan/isinf/isfinite.

Boolean outputs have no Lipschitz constant; their rule is checked for the range (the
[definitely true, possibly true] box) and, through a float consumer (``where``), for the
"may flip" flag of the rounding pass: a comparison that rounding can flip must be flagged."""

from __future__ import annotations

import pytest
import torch

from tests.rules.harness import Suite, box

aten = torch.ops.aten
SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}
S = (3, 4)
W = aten.where.self

# Comparisons feeding where(c, x, y): (id, fn, comparison op)
CMP = [
    ("gt_scalar", lambda x, y: torch.where(x > 0.3, x, y), aten.gt.Scalar),
    ("ge_scalar", lambda x, y: torch.where(x >= -0.7, x, y), aten.ge.Scalar),
    ("lt_scalar", lambda x, y: torch.where(x < 0.1, x, y), aten.lt.Scalar),
    ("le_scalar", lambda x, y: torch.where(x <= 2.0, x, y), aten.le.Scalar),
    ("eq_scalar", lambda x, y: torch.where(x == 0.5, x, y), aten.eq.Scalar),
    ("ne_scalar", lambda x, y: torch.where(x != 0.5, x, y), aten.ne.Scalar),
    ("gt_tensor", lambda x, y: torch.where(x > y, x, y), aten.gt.Tensor),
    ("lt_tensor", lambda x, y: torch.where(x < y, x - y, y), aten.lt.Tensor),
    ("le_tensor", lambda x, y: torch.where(x <= y, x, 2 * y), aten.le.Tensor),
    ("ge_tensor", lambda x, y: torch.where(x >= y, y, x), aten.ge.Tensor),
    ("eq_tensor", lambda x, y: torch.where(x == y, x, y), aten.eq.Tensor),
    ("ne_tensor", lambda x, y: torch.where(x != y, x, y), aten.ne.Tensor),
]
CMP_CASES = {c[0]: SUITES[True].case(c[1], [box(S, -1, 1), box(S, -1, 1)]) for c in CMP}
CMP_BOXES = [((-1, 1), (-1, 1)), ((0.35, 1.0), (-1, 1)), ((2.5, 3.0), (-3, -2)), ((0.5, 0.5), (0.5, 0.5)), ((-1e-3, 1e-3), (5, 6))]


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in CMP])
@pytest.mark.parametrize("bx,by", CMP_BOXES)
def test_comparison_feeding_where(name, op, bx, by):
    CMP_CASES[name].check([box(S, *bx), box(S, *by)], [op, W], n=12, smooth=False, critical=[0.3, -0.7, 0.1, 2.0, 0.5])


FLIP = SUITES[True].case(lambda x: torch.where(x > 0.3, x, 0.0), [box(S, 0.30016, 0.30017)])


def test_comparison_with_scalar_flip_regression():
    """Regression: ``x > 0.3`` on an fp16 tensor compares with fl16(0.3) = 0.300049. For x in
    [0.30016, 0.30017] the comparison is exactly true, but fl16(x) = 0.300049 is not > 0.300049:
    where(x > 0.3, x, 0) computed 0 where the exact value is 0.30016 (bound 1.5e-4). The
    rule charged the scalar only u_fp32 |0.3|, so the flip was not flagged; it now charges the
    storage format's rounding."""
    rep = FLIP.check(None, [aten.gt.Scalar, W], n=8, n_round=16, smooth=False)
    assert rep.error_ratio.get("fp16", 0.0) <= 1.0


# Boolean logic on comparisons
LOGIC = [
    ("and", lambda x, y: torch.where((x > 0) & (y < 0.5), x, y), aten.bitwise_and.Tensor, True),
    ("or", lambda x, y: torch.where((x > 0) | (y < 0.5), x, y), aten.bitwise_or.Tensor, True),
    ("xor", lambda x, y: torch.where((x > 0) ^ (y < 0.5), x, y), aten.bitwise_xor.Tensor, True),
    ("not", lambda x, y: torch.where(~(x > 0), x, y), aten.bitwise_not.default, True),
    ("logical_and", lambda x, y: torch.where(torch.logical_and(x > 0, y < 0.5), x, y), aten.logical_and.default, True),
    ("logical_or", lambda x, y: torch.where(torch.logical_or(x > 0, y < 0.5), x, y), aten.logical_or.default, True),
    ("logical_xor", lambda x, y: torch.where(torch.logical_xor(x > 0, y < 0.5), x, y), aten.logical_xor.default, True),
    ("logical_not", lambda x, y: torch.where(torch.logical_not(x > 0), x, y), aten.logical_not.default, True),
    ("any_dim", lambda x, y: torch.where((x > 0).any(-1, keepdim=True), x, y), aten.any.dim, True),
    ("all_dim", lambda x, y: torch.where((x > 0).all(0, keepdim=True), x, y), aten.any.dim, True),
    ("any_all", lambda x, y: torch.where(aten.any.default(x > 0), x, y), aten.any.default, False),
    ("all_all", lambda x, y: torch.where(aten.all.default(x > 0), x, y), aten.all.default, False),
    ("any_dims", lambda x, y: torch.where(aten.any.dims(x > 0, [0, 1], True), x, y), aten.any.dims, False),
    ("all_dims", lambda x, y: torch.where(aten.all.dims(x > 0, [1], True), x, y), aten.all.dims, False),
    ("all.dim", lambda x, y: torch.where(aten.all.dim(x > 0, 1, True), x, y), aten.all.dim, False),
]
LOGIC_CASES = {c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1), box(S, -1, 1)]) for c in LOGIC}
LOGIC_BOXES = [((-1, 1), (-1, 1)), ((0.5, 1), (-1, 0)), ((-2, -1), (1, 2)), ((-1e-3, 1e-3), (0.4, 0.6))]


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in LOGIC])
@pytest.mark.parametrize("bx,by", LOGIC_BOXES)
def test_boolean_logic(name, op, bx, by):
    LOGIC_CASES[name].check([box(S, *bx), box(S, *by)], op, n=12, smooth=False, critical=[0.0, 0.5])


# where / masked_fill forms
WHERE = [
    ("where.self", lambda c, x, y: torch.where(c > 0, x, y), aten.where.self, True),
    ("where_scalar_other", lambda c, x, y: aten.where.ScalarOther(c > 0, x, -2.5), aten.where.ScalarOther, False),
    ("where_scalar_self", lambda c, x, y: aten.where.ScalarSelf(c > 0, 1.5, y), aten.where.ScalarSelf, False),
    ("where_scalar", lambda c, x, y: aten.where.Scalar(c > 0, 1.5, -0.5) * x, aten.where.Scalar, False),
    ("masked_fill", lambda c, x, y: aten.masked_fill.Scalar(x, c > 0, -1e4), aten.masked_fill.Scalar, False),
    ("masked_fill_tensor", lambda c, x, y, v: aten.masked_fill.Tensor(x, c > 0, v), aten.masked_fill.Tensor, False),
    ("masked_fill_decomposed", lambda c, x, y: x.masked_fill(c > 0, -1e4), aten.where.self, True),
]
WHERE_CASES = {
    c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1), box(S, -1, 1), box(S, -1, 1)], consts={"v": torch.tensor(3.3)} if "tensor" in c[0] else None)
    for c in WHERE
}
WHERE_BOXES = [((-1, 1), (-1, 1), (2, 3)), ((0.5, 1), (-5, 5), (0, 1)), ((-1, -0.5), (1, 2), (-3, -2)), ((-1e-4, 1e-4), (0, 1), (100, 200))]


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in WHERE])
@pytest.mark.parametrize("bc,bx,by", WHERE_BOXES)
def test_where_forms(name, op, bc, bx, by):
    WHERE_CASES[name].check([box(S, *bc), box(S, *bx), box(S, *by)], op, n=12, smooth=False, critical=[0.0])


FINITE = [
    ("isnan", lambda x: torch.where(torch.isnan(x), 0.0, x), aten.isnan.default, True),
    ("isinf", lambda x: torch.where(aten.isinf(x), 0.0, x), aten.isinf.default, False),
    ("isfinite", lambda x: torch.where(aten.isfinite(x), x, 0.0), aten.isfinite.default, False),
]
FINITE_CASES = {c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1)]) for c in FINITE}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in FINITE])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (6e4, 6.5e4)])
def test_finiteness_tests(name, op, lo, hi):
    FINITE_CASES[name].check([box(S, lo, hi)], op, n=8, smooth=False)


MASK_FILL = SUITES[False].case(lambda c, x: aten.masked_fill.Scalar(x, c > 0, -1e4), [box(S, 0.5, 1), box(S, -1, 1)])
MASK_FILL_DEC = SUITES[True].case(lambda c, x: x.masked_fill(c > 0, -1e4), [box(S, 0.5, 1), box(S, -1, 1)])


def test_fill_value_is_rounded_regression():
    """Regression: masked_fill(x, m, -1e4) holds -9984 in bf16 (and 0.1 holds 0.0999756 in
    fp16). The where rule treated a Python-scalar branch as exact, and the decomposed form
    where(m, scalar_tensor(-1e4), x) read the creation op as exact: the bf16 error 16.0 had
    the bound 0. Scalar branches and float constants are now rounded to the storage format."""
    for case, op in ((MASK_FILL, aten.masked_fill.Scalar), (MASK_FILL_DEC, aten.where.self)):
        rep = case.check(None, op, n=4, n_round=4, smooth=False)
        assert 0.0 < rep.bounds["bf16"] < float("inf") and rep.error_ratio["bf16"] <= 1.0
