"""Sampling soundness of curvature_rules.reduction: sum, mean, amax, amin, max.dim, min.dim,
cumsum."""

from __future__ import annotations

import pytest
import torch

from tests.rules.harness import Suite, box

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


def test_var_has_no_rule_and_fails_closed():
    """x.var() (aten.var.correction) has no rule: it is reported unsupported, never bounded."""
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, loaded = build(lambda x: x.var(-1), [box((3, 4), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.var.correction"]
    assert not ba.nodes[ba.outputs[0]].primary.is_bounded()
