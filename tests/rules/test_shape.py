"""Sampling soundness of curvature_rules.shape: views, permutes, slicing, concatenation,
splitting, repeats, casts. Every output element is an input element: L = 1, kappa = 0,
errors move with their elements (casts round)."""

from __future__ import annotations

import pytest
import torch

from tests.rules.harness import Suite, box

aten = torch.ops.aten
SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}
S = (2, 3, 4)

# One-input ops: (id, fn, op, decompose). Each result is scaled by 1.5 (or summed) so that
# the rounding check sees a float computation after the rearrangement.
ONE = [
    ("view", lambda x: x.view(6, 4) * 1.5, aten.view.default, True),
    ("reshape", lambda x: aten.reshape(x, [4, 6]) * 1.5, aten.reshape.default, False),
    ("_unsafe_view", lambda x: aten._unsafe_view(x, [24]) * 1.5, aten._unsafe_view.default, False),
    ("permute", lambda x: x.permute(2, 0, 1) * 1.5, aten.permute.default, True),
    ("expand", lambda x: x[:, :1].expand(2, 5, 4) * 1.5, aten.expand.default, True),
    ("clone", lambda x: x.clone() * 1.5, aten.clone.default, True),
    ("alias", lambda x: aten.alias(x) * 1.5, aten.alias.default, False),
    ("detach", lambda x: aten.detach(x) * 1.5, aten.detach.default, False),
    ("unsqueeze", lambda x: x.unsqueeze(1) * 1.5, aten.unsqueeze.default, True),
    ("squeeze_dims", lambda x: x[:, :1].squeeze(1) * 1.5, aten.squeeze.dims, True),
    ("squeeze.default", lambda x: aten.squeeze.default(x[:1]) * 1.5, aten.squeeze.default, False),
    ("squeeze.dim", lambda x: aten.squeeze.dim(x[:1], 0) * 1.5, aten.squeeze.dim, False),
    ("slice", lambda x: x[:, 1:3, ::2] * 1.5, aten.slice.Tensor, True),
    ("select", lambda x: x[1, :, 2] * 1.5, aten.select.int, True),
    ("t", lambda x: aten.t(x[0]) * 1.5, aten.t.default, False),
    ("transpose", lambda x: aten.transpose.int(x, 0, 2) * 1.5, aten.transpose.int, False),
    ("flatten", lambda x: aten.flatten.using_ints(x, 1, 2) * 1.5, aten.flatten.using_ints, False),
    ("repeat", lambda x: x.repeat(2, 1, 3) * 1.5, aten.repeat.default, True),
    ("contiguous", lambda x: aten.contiguous(x.permute(2, 1, 0)) * 1.5, aten.contiguous.default, False),
    ("unfold", lambda x: x.unfold(2, 2, 1) * 1.5, aten.unfold.default, True),
    ("index_select", lambda x, i: x.index_select(2, i) * 1.5, aten.index_select.default, True),
    ("split", lambda x: x.split(2, -1)[1] * 1.5, aten.split_with_sizes.default, True),
    ("split.Tensor", lambda x: aten.split.Tensor(x, 3, -1)[0] * 1.5, aten.split.Tensor, False),
    ("split_with_sizes_copy", lambda x: aten.split_with_sizes_copy(x, [1, 3], -1)[1] * 1.5, aten.split_with_sizes_copy.default, False),
    ("unbind", lambda x: x.unbind(1)[2] * 1.5, aten.unbind.int, False),
    ("to_fp64", lambda x: x.to(torch.float64) * 1.5, aten._to_copy.default, True),
    ("to.dtype", lambda x: aten.to.dtype(x, torch.float64) * 1.5, aten.to.dtype, False),
    ("flip", lambda x: x.flip(0, 2) * 1.5, aten.flip.default, True),
    ("roll", lambda x: x.roll(3, -1) * 1.5, aten.roll.default, False),
    ("roll_decomposed", lambda x: x.roll((1, -2), (1, 2)) * 1.5, aten.index_select.default, True),
    ("nearest1d", lambda x: torch.nn.functional.interpolate(x, size=7) * 1.5, aten.upsample_nearest1d.vec, False),
    ("nearest2d", lambda x: torch.nn.functional.interpolate(x[None], size=(5, 11)) * 1.5, aten.upsample_nearest2d.vec, True),
    ("nearest_exact2d", lambda x: torch.nn.functional.interpolate(x[None], scale_factor=1.7, mode="nearest-exact") * 1.5, aten._upsample_nearest_exact2d.vec, False),
    ("nearest2d_scale", lambda x: torch.nn.functional.interpolate(x[None], scale_factor=2.5) * 1.5, aten.upsample_nearest2d.vec, True),
]
ONE_CASES = {
    c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1)], consts={"i": torch.tensor([3, 0, 0])} if c[0] == "index_select" else None)
    for c in ONE
}
BOXES = [(-1.0, 1.0), (1000.0, 1001.0), (-1e-3, 1e-3)]


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in ONE])
@pytest.mark.parametrize("lo,hi", BOXES)
def test_shape_op(name, op, lo, hi):
    ONE_CASES[name].check([box(S, lo, hi)], op, n=6, n_round=6)


TWO = [
    ("cat", lambda x, y: torch.cat([x, y], 1) * 1.5, aten.cat.default, True),
    ("cat_neg_dim", lambda x, y: torch.cat([x, y, x], -1) * 1.5, aten.cat.default, True),
    ("stack", lambda x, y: aten.stack([x, y], 1) * 1.5, aten.stack.default, False),
]
TWO_CASES = {c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1), box(S, -1, 1)]) for c in TWO}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[2], id=c[0]) for c in TWO])
@pytest.mark.parametrize("bx,by", [((-1, 1), (5, 6)), ((-1e-3, 0), (-100, 100))])
def test_concat(name, op, bx, by):
    TWO_CASES[name].check([box(S, *bx), box(S, *by)], op, n=6, n_round=6)


CASTS = [
    ("to_fp16", lambda x: x.to(torch.float16), True),
    ("to_fp16_big", lambda x: x.to(torch.float16) * 0.5, True),
    ("to_bf16", lambda x: x.to(torch.bfloat16).to(torch.float32) * 1.5, True),
    ("to_int", lambda x: x.to(torch.int64).to(x.dtype) + x, True),
]
CAST_CASES = {c[0]: SUITES[c[2]].case(c[1], [box(S, -1, 1)]) for c in CASTS}


@pytest.mark.parametrize("name", [c[0] for c in CASTS if c[0] != "to_fp16_big"])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.3, 0.30001), (-3.7, 2.2)])
def test_casts(name, lo, hi):
    """Explicit casts inside the model: the exact value is the model's own (the fp64 run
    keeps the cast); the rule's interval is the uncast value and its error model rounds."""
    CAST_CASES[name].check([box(S, lo, hi)], aten._to_copy.default, n=6, n_round=8, smooth=False)


LIFT = SUITES[False].case(lambda x: (x + torch.tensor(0.5)) * 1.5, [box(S, -1, 1)])


def test_lift_fresh_copy():
    """torch.tensor() in forward: lift_fresh_copy (+ detach_, which has no rule: fail closed
    downstream, so only the lifted constant's own range is checked here)."""
    LIFT.check(None, aten.lift_fresh_copy.default, n=2, allow_unsupported=True, formats=None)


@pytest.mark.parametrize("name", ["to_bf16", "to_fp16"])
def test_cast_rounds_to_its_target_dtype_regression(name):
    """Regression: x.to(torch.bfloat16) was charged the rounding of the run's format (u_fp16
    in an fp16 run, u_fp32 in an fp32 run) instead of the cast's own dtype: in fp16, error
    0.0234 > bound 0.0136 on [-3.7, 2.2]. The cast now rounds to the coarser of both, plus the
    fp64 reference's own rounding to the target."""
    rep = CAST_CASES[name].check([box(S, -3.7, 2.2)], aten._to_copy.default, n=4, n_round=24, smooth=False)
    assert max(rep.error_ratio.values()) <= 1.0


def test_cast_beyond_target_range_regression():
    """Regression: x.to(torch.float16) of x in [7e4, 8e4] is inf in every run (and in the fp64
    reference); the bound was finite. The cast's error is now infinite beyond its target."""
    rep = CAST_CASES["to_fp16_big"].check([box(S, 7e4, 8e4)], aten._to_copy.default, n=4, smooth=False)
    assert all(b == float("inf") for b in rep.bounds.values())


def test_rearranged_interval_derives_its_magnitude_from_the_source():
    """map_shape's |x| is the same rearrangement of the source's |x| (shared storage for a
    view) and equals |x| computed from the rearranged bounds; finiteness carries over."""
    from certifier.interval import Interval

    g = torch.Generator().manual_seed(3)
    lo = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    hi = lo + torch.rand(4, 6, 5, generator=g, dtype=torch.float64)
    src = Interval(lo, hi, torch.float32)
    assert src.is_bounded()
    idx = torch.tensor([[2, 0, 1]])
    for fn in (
        lambda t: t.permute(2, 0, 1),
        lambda t: t[:, 1:4],
        lambda t: t.transpose(0, 1).clone(memory_format=torch.contiguous_format),
        lambda t: t.reshape(24, 5),
        lambda t: torch.index_select(t, 1, idx[0]),
    ):
        out = src.map_shape(fn)
        want = torch.maximum(fn(lo).abs(), fn(hi).abs())
        assert torch.equal(out.mag, want)
        assert out._finite is True
    v = src.map_shape(lambda t: t.permute(2, 0, 1))
    assert v.mag.untyped_storage().data_ptr() == src.mag.untyped_storage().data_ptr()


PAD_CASES = {
    "zero": lambda x: torch.nn.functional.pad(x, (1, 2, 0, 1)),
    "inexact": lambda x: torch.nn.functional.pad(x, (2, 0), value=0.1),
    "crop": lambda x: torch.nn.functional.pad(x, (-1, 1, 1, -1), value=-2.0),
    "neg_inf": lambda x: torch.softmax(torch.nn.functional.pad(x, (0, 2), value=float("-inf")), -1),
}
PAD_SUITE = Suite()
PADS = {k: PAD_SUITE.case(f, [box((2, 3), -1, 1)]) for k, f in PAD_CASES.items()}


@pytest.mark.parametrize("name", sorted(PAD_CASES))
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (3.0, 50.0)])
def test_constant_pad(name, lo, hi):
    """F.pad with a constant: the constant's rounding (0.1 is inexact in every low format) is
    charged at the new positions; -inf padding stays exact into a softmax."""
    # (-inf padding has an infinite range by design: the softmax after it is what is checked)
    PADS[name].check([box((2, 3), lo, hi)], torch.ops.aten.constant_pad_nd.default, n=12, require_finite=name != "neg_inf")
