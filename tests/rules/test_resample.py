"""Sampling soundness of curvature_rules.resample: linear, bilinear and trilinear
upsampling (align_corners either way, sizes that are not multiples of the input's, scale
factors), against real fp32 / bf16 / fp16 runs; and the integer modulo that roll's index
arithmetic uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import Suite, box, ids

aten = torch.ops.aten
SUITE = Suite()
# torch.export's decompositions keep only the 2-d forms; 1-d and 3-d become index arithmetic
# (declined), so their rules are checked on undecomposed graphs.
RAW = Suite(decompose=False)
BI = aten.upsample_bilinear2d.vec

CASES = [
    ("linear1d", lambda x: F.interpolate(x, size=9, mode="linear"), (1, 2, 5), aten.upsample_linear1d.vec),
    ("linear1d_ac", lambda x: F.interpolate(x, size=4, mode="linear", align_corners=True), (2, 1, 7), aten.upsample_linear1d.vec),
    ("bilinear_x2", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 2, 3, 4), BI),
    ("bilinear_odd", lambda x: F.interpolate(x, size=(7, 5), mode="bilinear"), (1, 2, 4, 5), BI),
    ("bilinear_ac", lambda x: F.interpolate(x, size=(13, 11), mode="bilinear", align_corners=True), (1, 1, 4, 5), BI),
    ("bilinear_down", lambda x: F.interpolate(x, size=(3, 2), mode="bilinear"), (1, 2, 7, 6), BI),
    ("bilinear_scale", lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear"), (1, 1, 5, 4), BI),
    ("trilinear", lambda x: F.interpolate(x, size=(3, 5, 4), mode="trilinear"), (1, 1, 2, 3, 3), aten.upsample_trilinear3d.vec),
]
BUILT = {c[0]: (SUITE if c[3] is BI else RAW).case(c[1], [box(c[2], -1.0, 1.0)]) for c in CASES}


@pytest.mark.parametrize("name,shape,op", [pytest.param(c[0], c[2], c[3], id=c[0]) for c in CASES])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (1000.0, 1001.0), (-1e-3, 1e-3), (0.0, 60000.0)])
def test_linear_upsampling(name, shape, op, lo, hi):
    BUILT[name].check([box(shape, lo, hi)], op, n=8)


def _scaled(x):
    return F.interpolate(x, size=(7, 5), mode="bilinear") * 3.0


SCALED = SUITE.case(_scaled, [box((1, 2, 4, 5), -1.0, 1.0)])


def test_bilinear_range_is_the_box_image():
    """Monotone with weights summing to 1: the output box is the input box (a wrong
    range, e.g. one that forgot the weights' sum, fails the harness)."""
    rep = SCALED.check([box((1, 2, 4, 5), 2.0, 3.0)], BI, n=8)
    assert rep.nodes


MOD = SUITE.case(lambda i, w: F.embedding((i + 3) % 5, w) * 1.0, [ids((1, 6), 0, 9)], consts={"w": torch.randn(5, 3, generator=torch.Generator().manual_seed(0))})


def test_integer_remainder():
    """(ids + 3) % 5 on ids in [0, 9]: the remainder's box is [0, 4], so the embedding
    lookup stays in range (a wrong range would fail the harness's range check)."""
    MOD.check(None, aten.remainder.Scalar, n=8)
