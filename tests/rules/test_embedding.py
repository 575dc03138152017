"""Sampling soundness of curvature_rules.embedding: embedding with id ranges, gather and
index with constant indices."""

from __future__ import annotations

import math

import pytest
import torch

from tests.rules.harness import Suite, box, ids

aten = torch.ops.aten
SUITE = Suite()


def _emb(v: int, d: int, seed: int, padding_idx: int | None = None, scale: float = 1.0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Embedding(v, d, padding_idx=padding_idx)
    with torch.no_grad():
        m.weight.copy_(torch.randn(v, d, generator=g) * scale)
        if padding_idx is not None:
            m.weight[padding_idx] = 0
    return m.eval()


EMB = SUITE.case(_emb(10, 4, 0), [ids((2, 3), 0, 9)])
EMB_PAD = SUITE.case(_emb(7, 3, 1, padding_idx=0, scale=100.0), [ids((5,), 0, 6)])
EMB_POS = SUITE.case(
    lambda t, x, w: torch.nn.functional.embedding(t, w) + x,
    [ids((1, 4), 0, 5), box((1, 4, 3), -1, 1)],
    consts={"w": torch.randn(6, 3, generator=torch.Generator().manual_seed(2))},
)


@pytest.mark.parametrize("a,b", [(0, 9), (3, 5), (7, 7), (0, 0)])
def test_embedding_id_ranges(a, b):
    EMB.check([ids((2, 3), a, b)], aten.embedding.default, n=16)


@pytest.mark.parametrize("a,b", [(0, 6), (1, 2)])
def test_embedding_padding_idx_large_rows(a, b):
    EMB_PAD.check([ids((5,), a, b)], aten.embedding.default, n=16)


@pytest.mark.parametrize("a,b,lo,hi", [(0, 5, -1.0, 1.0), (2, 3, 10.0, 20.0)])
def test_embedding_plus_box(a, b, lo, hi):
    """A token embedding added to a float input: the lookup feeds an arithmetic node."""
    EMB_POS.check([ids((1, 4), a, b), box((1, 4, 3), lo, hi)], [aten.embedding.default, aten.add.Tensor], n=12)


IDX = torch.tensor([[0, 2, 1], [3, 3, 0]])
GATHER = SUITE.case(lambda x, i: torch.gather(x, 1, i), [box((2, 4), -1, 1)], consts={"i": IDX})
INDEX = SUITE.case(lambda x, i: x[i], [box((4, 3), -1, 1)], consts={"i": torch.tensor([3, 0, 0, 2])})
INDEX2 = SUITE.case(lambda x, i, j: x[:, i, j], [box((2, 3, 4), -1, 1)], consts={"i": torch.tensor([0, 2]), "j": torch.tensor([3, 1])})


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (5.0, 7.0), (-1e4, 1e4)])
def test_gather_index_constant(lo, hi):
    GATHER.check([box((2, 4), lo, hi)], aten.gather.default, n=12)
    INDEX.check([box((4, 3), lo, hi)], aten.index.Tensor, n=12)
    INDEX2.check([box((2, 3, 4), lo, hi)], aten.index.Tensor, n=12)


class _Ctx:
    """A minimal ErrorContext: two configurations, an error on the ids in the second only."""

    F = 2

    def __init__(self, ids_err, cast):
        self._ids_err, self._cast = ids_err, cast

    def err(self, name):
        return self._ids_err if name == "indices" else None

    def cast_point(self, name):
        return self._cast

    def b(self, v, ndim):
        return v.reshape((self.F,) + (1,) * ndim)


@pytest.mark.parametrize("cast", [None, (torch.tensor([2.0**-8, 2.0**-11], dtype=torch.float64), torch.zeros(2, dtype=torch.float64))])
def test_embedding_id_error_is_unbounded_only_in_its_configuration(cast):
    from certifier.interval import Interval
    from curvature_rules.embedding import EmbeddingError

    out = Interval.point(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    ids_err = torch.zeros(2, 3, dtype=torch.float64)
    ids_err[1, 2] = 1.0
    e = EmbeddingError(out, True).propagate(_Ctx(ids_err, cast))
    assert bool(torch.isinf(e[1]).all()) and e.dtype == torch.float64 and e.shape == (2, 3, 4)
    if cast is None:
        assert bool((e[0] == 0).all())
    else:
        assert torch.allclose(e[0], 2.0**-8 * out.value.abs().double())
    both = EmbeddingError(out, True).propagate(_Ctx(torch.ones(2, 3, dtype=torch.float64), cast))
    assert bool(torch.isinf(both).all())
    none = EmbeddingError(out, True).propagate(_Ctx(None, cast))
    assert none is None if cast is None else bool(torch.isfinite(none).all())


GATHER_IDS = SUITE.case(lambda x, i: torch.gather(x, 1, i) * 2.0, [box((2, 5), -1, 1), ids((2, 3), 1, 3)])
GATHER_TABLE = SUITE.case(
    lambda i, t: torch.gather(t, 1, i).float() + torch.gather(t.float() * 0.5, 1, i),
    [ids((2, 3), 0, 4)],
    consts={"t": torch.tensor([[3, 3, 3, 3, 3], [0, 1, 2, 3, 4]])},
)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (2.0, 9.0)])
def test_gather_data_dependent_index(lo, hi):
    """An index known only as a range (RoBERTa's token types at computed positions): the
    result is one of the readable elements along dim (ranges, errors against real runs)."""
    GATHER_IDS.check([box((2, 5), lo, hi), ids((2, 3), 1, 3)], aten.gather.default, n=16)
    GATHER_TABLE.check([ids((2, 3), 0, 4)], aten.gather.default, n=16)


def test_gather_of_a_constant_row_is_a_point_and_an_index_out_of_range_is_declined():
    from certifier.interval import Interval
    from curvature_rules.embedding import _gather_any

    t = Interval.point(torch.tensor([[3, 3, 3], [0, 1, 2]]))
    i = Interval(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[2, 2], [1, 2]]), torch.int64)
    out = _gather_any(t, i, 1).out
    assert out.lo.tolist() == [[3, 3], [0, 0]] and out.hi.tolist() == [[3, 3], [2, 2]]
    one = _gather_any(Interval.point(torch.tensor([[5, 5, 5]])), Interval(torch.zeros(1, 2, dtype=torch.int64), torch.full((1, 2), 2), torch.int64), 1).out
    assert one.is_point and one.value.tolist() == [[5, 5]]
    with pytest.raises(NotImplementedError):
        _gather_any(t, Interval(torch.zeros(2, 2, dtype=torch.int64), torch.full((2, 2), 3), torch.int64), 1)


# An index the computation makes (argmax along the last dim), gathering from a second input.
GATHER_ARGMAX = SUITE.case(
    lambda x, t: torch.gather(t, 1, x.argmax(-1, keepdim=True)) + x.amax(-1, keepdim=True),
    [box((3, 4), -1, 1), box((3, 4), -1, 1)],
)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (1000.0, 1001.0)])
def test_gather_by_a_computed_index(lo, hi):
    """Where the argmax may flip, the gathered value may be any element of its row: the
    error is bounded by the row's hull width plus its error (at [1000, 1001] bf16 ties the
    logits, and the bound without the width term fails)."""
    GATHER_ARGMAX.check([box((3, 4), lo, hi), box((3, 4), -1, 1)], aten.gather.default, n=16)


def _opt_positions(x, m, w):
    """OPT's learned positions: counted by a float cumsum of the attention mask (ones),
    shifted, truncated to int64 and looked up."""
    pos = (torch.cumsum(m, -1) * m - 1).long()
    return x + torch.nn.functional.embedding(pos, w)


def _position_case(n: int):
    g = torch.Generator().manual_seed(0)
    return SUITE.case(_opt_positions, [box((1, n, 4), -1, 1)], consts={"m": torch.ones(1, n), "w": torch.randn(n + 2, 4, generator=g)})


POS8, POS300 = _position_case(8), _position_case(300)


def test_positions_counted_in_floats_are_exact_where_the_format_holds_them():
    """Integer-valued floats known exactly (a mask of ones, its running count, the count
    times the mask minus 1) are computed exactly in every format that holds every value
    (|v| <= 2^p): the position ids carry no error and the lookup is bounded like a
    constant index (it was unbounded: the count's rounding charge let the truncation move
    by one, and an erring id makes a lookup unbounded). Past 2^p (300 positions in bf16:
    299 - 1 is stored as 300, one past the last position; the table has two spare rows
    so that the real run does not raise) the ids may be off, and bf16 is unbounded; fp16 (2^11)
    still holds them. Both against real runs."""
    from certifier.rounding import run_errors
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    for case, n in ((POS8, 8), (POS300, 300)):
        fmts = ("fp32", "bf16", "fp16")
        rep = case.check([box((1, n, 4), -1, 1)], aten.embedding.default, n=6, n_round=6, formats=fmts, require_finite=False)
        _, cap, loaded = build(_opt_positions, [box((1, n, 4), -1, 1)], {"m": torch.ones(1, n), "w": torch.randn(n + 2, 4)}, True)
        ba = analyze_bounds(loaded, cap)
        er = run_errors(ba, [{"*": f} for f in fmts], keep_errs=True)
        ids_node = next(k for k, v in ba.nodes.items() if v.op == "_to_copy" and v.primary.dtype == torch.int64)
        ids_err = er.node_err[ids_node]
        for c, f in enumerate(fmts):
            exact = not (n == 300 and f == "bf16")
            assert (float(ids_err[c].max()) == 0.0) == exact, (n, f, float(ids_err[c].max()))
            assert math.isfinite(rep.bounds[f]) == exact, (n, f, rep.bounds[f])
