"""Sampling soundness of curvature_rules.linear: mm, addmm (nn.Linear), bmm, matmul, baddbmm."""

from __future__ import annotations

import pytest
import torch

from tests.rules.harness import Suite, box

SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}

aten = torch.ops.aten


def _linear(n_in: int, n_out: int, bias: bool, seed: int, scale: float = 1.0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        m.weight.copy_(torch.randn(n_out, n_in, generator=g) * scale)
        if bias:
            m.bias.copy_(torch.randn(n_out, generator=g))
    return m.eval()


LIN = _linear(5, 3, True, 0)
LIN_NOBIAS = _linear(5, 3, False, 1)
LIN_WIDE = _linear(64, 8, True, 2, scale=0.2)
BOXES = [(-1.0, 1.0), (0.0, 10.0), (-1e-3, 1e-3), (-100.0, -50.0)]
LIN_CASES = {id(m): SUITES[True].case(m, [box((2, m.in_features), -1.0, 1.0)]) for m in (LIN, LIN_NOBIAS, LIN_WIDE)}


@pytest.mark.parametrize("lo,hi", BOXES)
@pytest.mark.parametrize(
    "mod,op,n_in",
    [(LIN, aten.addmm.default, 5), (LIN_NOBIAS, aten.mm.default, 5), (LIN_WIDE, aten.addmm.default, 64)],
    ids=["linear", "linear_nobias", "linear_k64"],
)
def test_linear_layer(mod, op, n_in, lo, hi):
    LIN_CASES[id(mod)].check([box((2, n_in), lo, hi)], op)


def _f(fn):
    return lambda *a, **k: fn(*a, **k)


MM = _f(lambda a, b: a @ b)
BMM = _f(lambda a, b: torch.bmm(a, b))
MATMUL = _f(lambda a, b: torch.matmul(a, b))
ADDMM = _f(lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=-2.0))
BADDBMM = _f(lambda c, a, b: torch.baddbmm(c, a, b, beta=2.0, alpha=0.25))

TWO_BOXES = [((-1, 1), (-1, 1)), ((0, 2), (-3, -1)), ((-1e-2, 1e-2), (10, 20)), ((-5, 5), (0.5, 0.75))]
C_MM = SUITES[True].case(MM, [box((3, 4), -1, 1), box((4, 2), -1, 1)])
C_BMM = SUITES[True].case(BMM, [box((2, 3, 4), -1, 1), box((2, 4, 5), -1, 1)])
C_MATMUL = SUITES[False].case(MATMUL, [box((2, 3, 4), -1, 1), box((4, 2), -1, 1)])
C_MATMUL_2_3 = SUITES[False].case(MATMUL, [box((3, 4), -1, 1), box((2, 4, 5), -1, 1)])
C_ADDMM = SUITES[True].case(ADDMM, [box((3,), -1, 1), box((2, 4), -1, 1), box((4, 3), -1, 1)])
C_BADDBMM = SUITES[False].case(BADDBMM, [box((2, 3, 3), -1, 1), box((2, 3, 4), -1, 1), box((2, 4, 3), -1, 1)])


@pytest.mark.parametrize("ba,bb", TWO_BOXES)
def test_mm_two_boxes(ba, bb):
    """Both operands vary: L per operand (column / row sums) and kappa = k."""
    C_MM.check([box((3, 4), *ba), box((4, 2), *bb)], aten.mm.default)


@pytest.mark.parametrize("ba,bb", TWO_BOXES)
def test_bmm_two_boxes(ba, bb):
    C_BMM.check([box((2, 3, 4), *ba), box((2, 4, 5), *bb)], aten.bmm.default, n=16)


@pytest.mark.parametrize("ba,bb", TWO_BOXES[:2])
def test_matmul_undecomposed(ba, bb):
    """Regression: a 3-D @ 2-D matmul crashed the rounding pass (the operands' error tensors
    were not aligned for broadcasting); the errors are now padded to the output's rank."""
    C_MATMUL.check([box((2, 3, 4), *ba), box((4, 2), *bb)], aten.matmul.default, n=12)
    C_MATMUL_2_3.check([box((3, 4), *ba), box((2, 4, 5), *bb)], aten.matmul.default, n=12)


@pytest.mark.parametrize("bc", [(-1, 1), (100, 200)])
@pytest.mark.parametrize("ba,bb", TWO_BOXES[:3])
def test_addmm_alpha_beta(bc, ba, bb):
    C_ADDMM.check([box((3,), *bc), box((2, 4), *ba), box((4, 3), *bb)], aten.addmm.default, n=12)


@pytest.mark.parametrize("bc", [(-1, 1), (5, 6)])
@pytest.mark.parametrize("ba,bb", TWO_BOXES[:2])
def test_baddbmm_undecomposed(bc, ba, bb):
    C_BADDBMM.check([box((2, 3, 3), *bc), box((2, 3, 4), *ba), box((2, 4, 3), *bb)], aten.baddbmm.default, n=12)


C_ATT = SUITES[True].case(_f(lambda q, k: torch.matmul(q, k.transpose(-1, -2)) * 0.125), [box((2, 5, 8), -4.0, 4.0), box((2, 5, 8), -4.0, 4.0)])


def test_attention_scores_shape():
    """q @ k^T as in attention (bmm after decomposition), wide logits."""
    C_ATT.check(None, aten.bmm.default, n=8)


def test_matmul_with_a_vector_fails_closed():
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, loaded = build(_f(lambda a, b: torch.matmul(a, b)), [box((3, 4), -1, 1), box((4,), -1, 1)], None, False)
    ba = analyze_bounds(loaded, cap)
    assert [u["op"] for u in ba.unsupported] == ["aten.matmul.default"]


@pytest.mark.parametrize("rel", [0.0, 1e-12])
def test_large_product_at_a_point_stays_tight(rel):
    """Past FP32_CENTER_MACS a product's center is computed in float32 for speed, which adds
    gamma_k(u32) |A| |B| to the radius: 1e-4 relative here. At a point box (witness checks,
    pointwise bounds) that width compounds through the layers (BERT-base's layer-0 output
    was [-27.7, 27.7] at one token sequence), so near-points keep float64 centers. The exact
    product must stay inside and the width near float64's rounding."""
    from curvature_rules.linear import FP32_CENTER_MACS, _mm_op, bilinear_interval
    from certifier.interval import Interval

    g = torch.Generator().manual_seed(0)
    k, rows = 768, 8
    W = torch.randn(k, k, generator=g) * 0.02
    x = torch.randn(rows, k, generator=g, dtype=torch.float64)
    assert rows * k * k > FP32_CENTER_MACS
    A = Interval.point(x) if rel == 0 else Interval.box(x - rel * x.abs(), x + rel * x.abs(), torch.float64)
    out = bilinear_interval(_mm_op, A, Interval.point(W), k, torch.float32, macs=rows * k * k)
    exact = x @ W.to(torch.float64)
    assert bool((out.lo <= exact).all()) and bool((exact <= out.hi).all())
    scale = float((x.abs() @ W.abs().to(torch.float64)).max())
    assert float((out.hi - out.lo).max()) <= 1e-9 * scale
    # a box that is not near a point still takes the float32 path, soundly
    wide = Interval.box(x - 0.1, x + 0.1, torch.float64)
    out = bilinear_interval(_mm_op, wide, Interval.point(W), k, torch.float32, macs=rows * k * k)
    assert bool((out.lo <= exact).all()) and bool((exact <= out.hi).all())
