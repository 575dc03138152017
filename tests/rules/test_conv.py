"""Sampling soundness of curvature_rules.conv (aten.convolution): 1-D/2-D/3-D, padding,
stride, dilation, groups, transposed, bias or not, and a convolution of two boxes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import Suite, box

aten = torch.ops.aten
CONV = aten.convolution.default
SUITE = Suite()


def _init(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m.eval()


# (id, module, input shape)
LAYERS = [
    ("conv2d", _init(torch.nn.Conv2d(2, 3, 3), 0), (1, 2, 5, 5)),
    ("conv2d_pad_stride", _init(torch.nn.Conv2d(2, 4, 3, stride=2, padding=1), 1), (2, 2, 6, 6)),
    ("conv2d_groups_dilation", _init(torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), 2), (1, 4, 5, 5)),
    ("conv2d_depthwise_nobias", _init(torch.nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False), 3), (1, 3, 4, 4)),
    ("conv1d", _init(torch.nn.Conv1d(3, 2, 4, padding=2), 4), (2, 3, 7)),
    ("conv3d", _init(torch.nn.Conv3d(1, 2, 2, stride=(1, 2, 1)), 5), (1, 1, 3, 4, 3)),
    ("conv_transpose2d", _init(torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), 6), (1, 2, 3, 3)),
    ("conv_transpose1d_groups", _init(torch.nn.ConvTranspose1d(4, 2, 3, stride=2, groups=2), 7), (1, 4, 4)),
]
CASES = {c[0]: SUITE.case(c[1], [box(c[2], -1.0, 1.0)]) for c in LAYERS}
BOXES = [(-1.0, 1.0), (0.0, 6.0), (-1e-3, 1e-3), (-50.0, -20.0)]


@pytest.mark.parametrize("name,shape", [pytest.param(c[0], c[2], id=c[0]) for c in LAYERS])
@pytest.mark.parametrize("lo,hi", BOXES)
def test_conv_layer(name, shape, lo, hi):
    CASES[name].check([box(shape, lo, hi)], CONV, n=16)


TWO = SUITE.case(lambda x, w: F.conv2d(x, w, padding=1), [box((1, 2, 4, 4), -1, 1), box((3, 2, 3, 3), -1, 1)])
TWO_T = SUITE.case(lambda x, w: F.conv_transpose2d(x, w, stride=2), [box((1, 2, 3, 3), -1, 1), box((2, 3, 2, 2), -1, 1)])


@pytest.mark.parametrize("bx,bw", [((-1, 1), (-1, 1)), ((0, 2), (-0.5, 0.25)), ((-3, -2), (5, 6))])
def test_conv_two_boxes(bx, bw):
    """Input and weight both vary: L per operand and kappa = k (bilinear).

    Regression: with errors on both operands the rounding pass crashed (the convolution
    helper could not take a configuration dimension on the input and the weight at once)."""
    TWO.check([box((1, 2, 4, 4), *bx), box((3, 2, 3, 3), *bw)], CONV, n=12)
    TWO_T.check([box((1, 2, 3, 3), *bx), box((2, 3, 2, 2), *bw)], CONV, n=12)
