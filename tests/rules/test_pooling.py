"""Sampling soundness of curvature_rules.pooling: max pooling (values and indices), average
pooling (padding, ceil mode, count_include_pad) and adaptive average pooling, 1-D to 3-D."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import Suite, box

aten = torch.ops.aten
SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}

# (id, fn, op, shape, smooth, decompose)
CASES = [
    ("max_pool2d", torch.nn.MaxPool2d(2), aten.max_pool2d_with_indices.default, (1, 2, 4, 4), False, True),
    ("max_pool2d_pad_stride", torch.nn.MaxPool2d(3, stride=2, padding=1), aten.max_pool2d_with_indices.default, (2, 1, 5, 5), False, True),
    ("max_pool2d_indices", lambda x: F.max_pool2d(x, 2, return_indices=True)[1].to(x.dtype) + x[..., ::2, ::2], aten.max_pool2d_with_indices.default, (1, 1, 4, 4), False, True),
    ("max_pool2d_indices_raw", lambda x: F.max_pool2d(x, 2, return_indices=True)[1], aten.max_pool2d_with_indices.default, (2, 2, 4, 4), False, True),
    ("adaptive_max_pool2d", torch.nn.AdaptiveMaxPool2d((2, 3)), aten.adaptive_max_pool2d.default, (1, 2, 5, 7), False, True),
    ("adaptive_max_pool2d_indices", lambda x: F.adaptive_max_pool2d(x, 2, return_indices=True)[1], aten.adaptive_max_pool2d.default, (2, 2, 4, 4), False, True),
    ("adaptive_max_pool3d", torch.nn.AdaptiveMaxPool3d((1, 2, 2)), aten.adaptive_max_pool3d.default, (1, 1, 3, 3, 5), False, True),
    ("adaptive_max_pool1d", lambda x: F.adaptive_max_pool1d(x, 3), aten.adaptive_max_pool2d.default, (2, 2, 7), False, True),
    ("max_pool1d", lambda x: aten.max_pool1d_with_indices(x, [3], [2], [1])[0], aten.max_pool1d_with_indices.default, (2, 2, 7), False, False),
    ("max_pool3d", torch.nn.MaxPool3d(2, stride=(1, 2, 2)), aten.max_pool3d_with_indices.default, (1, 1, 3, 4, 4), False, True),
    ("avg_pool2d", torch.nn.AvgPool2d(2), aten.avg_pool2d.default, (1, 2, 4, 4), True, True),
    ("avg_pool2d_pad", torch.nn.AvgPool2d(3, stride=2, padding=1), aten.avg_pool2d.default, (1, 1, 5, 5), True, True),
    ("avg_pool2d_pad_excl_ceil", torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), aten.avg_pool2d.default, (1, 1, 6, 6), True, True),
    ("avg_pool1d", lambda x: aten.avg_pool1d(x, [3], [1], [1]), aten.avg_pool1d.default, (2, 2, 5), True, False),
    ("avg_pool2d_sum", lambda x: F.avg_pool2d(x, 2, divisor_override=1), aten.avg_pool2d.default, (1, 2, 4, 4), True, True),
    ("avg_pool2d_div3_pad", lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, divisor_override=3), aten.avg_pool2d.default, (1, 1, 4, 4), True, True),
    ("avg_pool3d", torch.nn.AvgPool3d(2), aten.avg_pool3d.default, (1, 1, 2, 4, 4), True, True),
    ("adaptive_avg_pool2d", torch.nn.AdaptiveAvgPool2d((2, 3)), aten._adaptive_avg_pool2d.default, (1, 2, 5, 7), True, True),
    ("adaptive_avg_pool3d", torch.nn.AdaptiveAvgPool3d((1, 2, 2)), aten._adaptive_avg_pool3d.default, (1, 1, 3, 3, 5), True, True),
    ("adaptive_avg_pool1d", lambda x: aten.adaptive_avg_pool1d(x, [3]), aten.adaptive_avg_pool1d.default, (2, 2, 7), True, False),
]
REG = {c[0]: SUITES[c[5]].case(c[1], [box(c[3], -1.0, 1.0)]) for c in CASES}
BOXES = [(-1.0, 1.0), (0.0, 50.0), (-1e-3, 1e-3), (-300.0, -200.0)]


@pytest.mark.parametrize("name,op,shape,smooth", [pytest.param(c[0], c[2], c[3], c[4], id=c[0]) for c in CASES])
@pytest.mark.parametrize("lo,hi", BOXES)
def test_pooling(name, op, shape, smooth, lo, hi):
    REG[name].check([box(shape, lo, hi)], op, n=12, smooth=smooth)


@pytest.mark.parametrize("lo,hi", [(0.0, 50.0), (-300.0, -200.0)])
def test_adaptive_avg_pool3d_low_precision_accumulation_regression(lo, hi):
    """Regression: PyTorch's CPU _adaptive_avg_pool3d sums fp16/bf16 windows in that format:
    a constant input 50 in bf16 pooled to 49.25 (error 0.75 > bound 0.39); -200 to -197
    (3.0 > 2.35). The rule assumed fp32 accumulation; it now charges the storage format."""
    rep = REG["adaptive_avg_pool3d"].check([box((1, 1, 3, 3, 5), lo, hi)], aten._adaptive_avg_pool3d.default, n=4, n_round=16, smooth=True)
    assert rep.error_ratio["bf16"] <= 1.0


def test_adaptive_avg_pool3d_window_sum_overflow_regression():
    """Regression: with fp16 accumulation, the window sums of inputs in [-6e4, 6e4] overflow
    (computed -inf, bound 1.5e3). The window sum bound is now checked against the format."""
    rep = REG["adaptive_avg_pool3d"].check([box((1, 1, 3, 3, 5), -6e4, 6e4)], aten._adaptive_avg_pool3d.default, n=4, n_round=4)
    assert rep.bounds["fp16"] == float("inf") and rep.bounds["fp32"] < float("inf")


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 0.0)])
def test_average_of_one_signed_input_keeps_its_sign(lo, hi):
    """The widening of an average pool's range does not cross 0 when its input does not
    (a relu's output averaged used to show a lower bound of -9e-302)."""
    from pathlib import Path

    from certifier.capture import capture
    from certifier.loader import InputSpec, LoadedModel
    from certifier.walker import analyze_bounds

    m = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.AvgPool2d(2))
    shape = (1, 2, 6, 6)
    lm = LoadedModel(Path("t.py"), "t", m, (torch.zeros(shape),), [InputSpec(shape, torch.float32, lo, hi)], "")
    ba = analyze_bounds(lm, capture(lm))
    pools = [i for i in ba.nodes.values() if "avg_pool" in str(i.op)]
    assert len(pools) == 2
    for i in pools:
        if lo == 0.0:
            assert float(i.primary.lo.min()) == 0.0 and float(i.primary.hi.max()) >= 1.0
        else:
            assert float(i.primary.hi.max()) == 0.0 and float(i.primary.lo.min()) <= -1.0


def test_a_negative_divisor_override_fails_closed():
    """Negative weights would turn [pool(lo), pool(hi)] around (and the error models read
    the map as monotone): the op is reported unsupported and its output is unbounded."""
    from pathlib import Path

    from certifier.capture import capture
    from certifier.loader import InputSpec, LoadedModel
    from certifier.walker import analyze_bounds

    class Neg(torch.nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 2, divisor_override=-2)

    shape = (1, 1, 4, 4)
    lm = LoadedModel(Path("t.py"), "t", Neg(), (torch.zeros(shape),), [InputSpec(shape, torch.float32, 0.0, 1.0)], "")
    ba = analyze_bounds(lm, capture(lm))
    assert any("negative divisor_override" in u["reason"] for u in ba.unsupported)
    out = [i for i in ba.nodes.values() if "avg_pool" in str(i.op)][0]
    assert math.isinf(float(out.primary.hi.max())) and math.isinf(float(out.primary.lo.min()))
