"""A position bias bucketed through log (T5's relative attention buckets): the bucket ids are
integers computed from constants through float operations (0 / 8 = 0, log 0 = -inf, a
truncation to int64) and then selected by a decided where. The analysis keeps the exact
zeros and infinities exact, bounds each truncation by the integers its computed input can
reach (0 where the box holds one integer) and gives integer arithmetic, where and *_like
constants elementwise errors, so the ids reach the embedding with no error in fp32, bf16
and fp16 -- each claim checked against real runs."""

from __future__ import annotations

import math

import pytest
import torch

from certifier.adjoint import certified_errors
from certifier.formats import FORMATS
from certifier.validate import cast_model, observe
from certifier.walker import analyze_bounds
from tests.rules.harness import box, build

T = 10


class Bucketed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.bias = torch.nn.Embedding(16, 1)
        with torch.no_grad():
            self.bias.weight.copy_(torch.randn(16, 1, generator=g))

    def forward(self, x):
        pos = torch.arange(T)
        rel = (pos[None, :] - pos[:, None]).abs()
        small = rel < 4
        # 3 log(k / 4) / log 4 for k = 4..9: 0 (exactly), 0.48, 0.88, 1.21, 1.5, 1.75: no
        # bucket boundary within the formats' reach (an exact integer would be fragile)
        large = 4 + (torch.log(rel.float() / 4) / math.log(16 / 4) * 3).to(torch.long)
        large = torch.minimum(large, torch.full_like(large, 15))
        buckets = torch.where(small, rel, large)
        return x + self.bias(buckets).squeeze(-1)


FMTS = ["fp32", "bf16", "fp16"]


def test_bucket_ids_are_exact_and_the_bound_holds():
    m = Bucketed().eval()
    _, cap, loaded = build(m, [box((T, T), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert not ba.unsupported, ba.unsupported
    emb = next(i for i in ba.nodes.values() if i.op == "embedding")
    ids = ba.nodes[emb.producers["indices"]].primary
    with torch.no_grad():
        pos = torch.arange(T)
        rel = (pos[None, :] - pos[:, None]).abs()
        want = torch.where(rel < 4, rel, torch.minimum(4 + (torch.log(rel.double() / 4) / math.log(4) * 3).long(), torch.tensor(15)))
    assert ids.is_point or bool((ids.lo == ids.hi).all())
    assert torch.equal(ids.lo.to(torch.long), want)
    bounds = certified_errors(ba, [{"*": f} for f in FMTS], keep_nodes=False).bound
    for f, b in zip(FMTS, bounds):
        assert math.isfinite(b) and b < 0.05, (f, b)
        ob = observe(loaded, cast_model(m, f), FORMATS[f].torch_dtype, 30, 100, seed=1)
        assert 0 < ob.max_error <= b, (f, ob.max_error, b)


@pytest.mark.parametrize(
    "fn,value",
    [
        (lambda x: torch.log(torch.zeros(3)) * 2.0 + x * 0.0, -math.inf),
        (lambda x: (torch.zeros(3) / 8.0) * x, 0.0),
    ],
)
def test_exact_zeros_and_infinities_stay_exact(fn, value):
    """log 0 = -inf times a positive constant, 0 / 8 and 0 * x are exact (no widening to
    [-inf, inf] or [-tiny, tiny])."""
    _, cap, loaded = build(fn, [box((3,), 0.5, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    out = ba.nodes[ba.outputs[0]].primary
    assert bool((out.lo == value).all()) and bool((out.hi == value).all()), out


def test_an_infinity_times_a_value_that_can_reach_0_is_unbounded():
    """log(0) * y with y in [1e-3, 1]: in fp16 the computed y can be 0 (y = 1e-8 is not in
    the box, but its rounding is), so the product can be NaN: not exactly -inf. With y
    bounded away from 0 by more than its error, it stays exact."""
    f_small = lambda x: torch.log(torch.zeros(2)) * x + 0.0  # noqa: E731
    _, cap, loaded = build(f_small, [box((2,), 1e-9, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    b16, b32 = certified_errors(ba, [{"*": "fp16"}, {"*": "fp32"}], keep_nodes=False).bound
    assert b16 == math.inf  # 1e-9 rounds to 0 in fp16: -inf * 0 = NaN
    _, cap, loaded = build(f_small, [box((2,), 0.5, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert certified_errors(ba, [{"*": "fp16"}], keep_nodes=False).bound[0] == 0.0
    x = torch.tensor([1e-9, 0.7], dtype=torch.float64)
    assert torch.isnan(f_small(x.half())).any() and not torch.isnan(f_small(x)).any()


def test_an_integer_narrowing_that_can_wrap_covers_the_whole_type():
    """int64 ids up to 2^33 cast to int32 wrap: the range is int32's, not [0, 2^33]."""
    from tests.rules.harness import ids

    _, cap, loaded = build(lambda t: t.to(torch.int32) + 0, [ids((3,), 0, 2**33)], None, True)
    ba = analyze_bounds(loaded, cap)
    cast = next(i for i in ba.nodes.values() if i.op == "_to_copy")
    assert float(cast.primary.lo.min()) == -(2.0**31) and float(cast.primary.hi.max()) == 2.0**31 - 1
    small = torch.tensor([2**33 - 1, 5, 2**31])
    assert small.to(torch.int32).tolist() == [-1, 5, -(2**31)]  # what the kernel does


class ScalarWhereIds(torch.nn.Module):
    """t.masked_fill(t < 100, 3) as embedding ids: an integer scalar branch is exact, so the
    decided condition leaves the ids exact (a float scalar's rounding, charged to it, made
    the embedding unbounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 2)

    def forward(self, t):
        return self.emb(t.masked_fill(t < 100, 3)) + self.emb(t)


def test_integer_where_scalars_are_exact():
    from tests.rules.harness import ids

    m = ScalarWhereIds().eval()
    _, cap, loaded = build(m, [ids((4,), 0, 9)], None, False)  # masked_fill.Scalar kept
    ba = analyze_bounds(loaded, cap)
    assert any(type(i.result.error).__name__ == "WhereError" for i in ba.nodes.values() if i.result is not None)
    bounds = certified_errors(ba, [{"*": f} for f in FMTS], keep_nodes=False).bound
    assert all(math.isfinite(b) for b in bounds), bounds
    for f, b in zip(FMTS, bounds):
        ob = observe(loaded, cast_model(m, f), FORMATS[f].torch_dtype, 20, 50, seed=2)
        assert ob.max_error <= b, (f, ob.max_error, b)
