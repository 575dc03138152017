"""Lookups: embedding, gather, index (advanced indexing with known indices).

embedding(weight, ids): with a known id tensor the output is the selected rows, exactly;
with an id *range* [a, b] (token ids from the input domain) every output element lies in the
hull of the rows a..b of that column (DESIGN: "an embedding takes the hull of the rows its
ids can reach"). The lookup itself is exact; the only rounding is the cast of the table to
the node's format, ``u_c |row| + eta_c/2``. The output is not a differentiable function of
integer ids, so no Lipschitz constant w.r.t. them is reported (curvature 0).

gather/index with a known index select elements exactly; errors move with their elements.
A data-dependent index fails closed (no rule applies).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from certifier.interval import INF, Interval
from curvature_rules._common import ShapeError, fmag, pad_left
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


@dataclass(frozen=True)
class EmbeddingError:
    out: Interval
    weight_point: bool

    def propagate(self, ctx: ErrorContext):
        nd = len(self.out.shape)
        ids_err = ctx.err("indices")
        # A configuration in which an id may be off selects another row: unbounded there
        # (per configuration: the others keep their bound).
        bad = None if ids_err is None else (ids_err > 0).reshape(ctx.F, -1).any(1)
        if bad is not None and bool(bad.all()):
            return torch.full((ctx.F, *self.out.shape), float("inf"), dtype=F64)
        if not self.weight_point:
            raise NotImplementedError("embedding of a computed table")
        cp = ctx.cast_point("weight")
        e = None if cp is None else ctx.b(cp[0], nd) * fmag(self.out).unsqueeze(0) + ctx.b(cp[1], nd)
        if bad is not None and bool(bad.any()):
            e = torch.where(ctx.b(bad, nd), INF, torch.zeros((), dtype=F64) if e is None else e).expand((ctx.F, *self.out.shape))
        return e

    def propagate_rel(self, ctx: ErrorContext):
        """The rows' cast is relative: ``|fl(w) - w| <= u_c |w| + he_c`` (infinite where an
        id may be off: the forward bound is infinite there too)."""
        nd = len(self.out.shape)
        cp = ctx.cast_point("weight")
        z = torch.zeros(ctx.F, dtype=F64)
        R, A = (z, z) if cp is None else cp
        return ctx.b(R, nd), ctx.b(A, nd)


@register_rule([aten.embedding.default])
def embedding_rule(inp: RuleInput) -> RuleResult:
    """Row lookup; an id range gives the column-wise hull of the reachable rows."""
    W, ids = inp.tensor("weight"), inp.tensor("indices")
    if not W.is_point:
        raise NotImplementedError("embedding of a computed table")
    V = W.shape[0]
    if ids.is_point:
        return RuleResult(out=Interval.point(W.value[ids.value]), error=EmbeddingError(Interval.point(W.value[ids.value]), True))
    a = ids.lo.clamp(0, V - 1).to(torch.int64)
    b = ids.hi.clamp(0, V - 1).to(torch.int64)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    pairs = torch.stack([flat_a, flat_b], 1)
    uniq, inv = torch.unique(pairs, dim=0, return_inverse=True)
    Wd = W.value
    mins, maxs = [], []
    for lo_i, hi_i in uniq.tolist():
        rows = Wd[lo_i : hi_i + 1]
        mins.append(rows.amin(0))
        maxs.append(rows.amax(0))
    mn = torch.stack(mins).to(F64)[inv].reshape(*ids.shape, W.shape[1])
    mx = torch.stack(maxs).to(F64)[inv].reshape(*ids.shape, W.shape[1])
    out = Interval(mn, mx, W.dtype)
    return RuleResult(out=out, lipschitz={}, curvature=0.0, error=EmbeddingError(out, True))


@register_rule([aten.gather.default])
def gather_rule(inp: RuleInput) -> RuleResult:
    """Selection along ``dim`` by a known index."""
    x, index = inp.tensor("self"), inp.tensor("index")
    dim = int(inp.args["dim"])  # type: ignore[arg-type]
    if not index.is_point:
        return _gather_any(x, index, dim % max(len(x.shape), 1))
    idx = index.value
    fn = lambda t: torch.gather(t, dim, idx)  # noqa: E731
    out = x.map_shape(fn)
    if not x.is_float:
        return RuleResult(out=out)
    return RuleResult(out=out, lipschitz={"self": 1.0}, error=ShapeError(fn, "self", out.shape))


def _hull_along(t: torch.Tensor, dim: int, shape: tuple[int, ...], red) -> torch.Tensor:
    """``red`` (amin / amax) of ``t`` along ``dim`` over the positions gather can read for an
    index of ``shape`` (the other dims cut to the index's sizes), broadcast to ``shape``."""
    for d, n in enumerate(shape):
        if d != dim:
            t = t.narrow(d + (t.dim() - len(shape)), 0, n)
    return red(t, dim=dim + (t.dim() - len(shape)), keepdim=True).expand(*t.shape[: t.dim() - len(shape)], *shape)


@dataclass(frozen=True)
class GatherAnyError:
    """gather by an index known only as a range: each output is one of the input elements
    along ``dim``, so its error is at most their largest. Where the computed index may differ
    from the exact one (an argmax or top-k index, :mod:`curvature_rules.reduction`), the
    computed output is still one of those elements (the kernel raises rather than read past
    the dimension), so the error is at most the width of their hull plus their largest
    error: ``max hi - min lo + max e``."""

    dim: int
    shape: tuple[int, ...]
    width: torch.Tensor  # per output: max hi - min lo over the elements it can read

    def propagate(self, ctx: ErrorContext):
        ie = ctx.err("index")
        e = ctx.err("self")
        out = None if e is None else _hull_along(e, self.dim, self.shape, torch.amax)
        if ie is not None and bool((ie > 0).any()):
            z = torch.zeros((ctx.F, *self.shape), dtype=F64) if out is None else out
            moved = pad_left(ie, len(self.shape)).expand(z.shape) > 0
            out = torch.where(moved, (self.width.unsqueeze(0) + z) * (1 + 2.0**-50), z)
        return out


def _gather_any(x: Interval, index: Interval, dim: int) -> RuleResult:
    """gather with a data-dependent index (RoBERTa's token-type ids gathered at computed
    positions): every value it can read along ``dim`` bounds the result. An index that can
    leave ``[0, size)`` makes the kernel raise, so it is declined."""
    size = x.shape[dim] if x.shape else 1
    if float(index.lo.min()) < 0 or float(index.hi.max()) > size - 1:
        raise NotImplementedError("gather with an index that may leave the dimension")
    shape = tuple(index.shape)
    lo = _hull_along(x.lo, dim, shape, torch.amin)
    hi = _hull_along(x.hi, dim, shape, torch.amax)
    if not x.is_float:
        same = bool(torch.equal(lo, hi))
        return RuleResult(out=Interval.point(lo.to(x.dtype)) if same else Interval(lo, hi, x.dtype))
    out = Interval(lo.to(F64), hi.to(F64), x.dtype)
    return RuleResult(out=out, lipschitz={"self": 1.0}, error=GatherAnyError(dim, shape, (out.hi - out.lo).clamp(min=0)))


@register_rule([aten.index.Tensor])
def index_rule(inp: RuleInput) -> RuleResult:
    """Advanced indexing with known index tensors."""
    x = inp.tensor("self")
    idx = inp.args["indices"]
    assert isinstance(idx, list)
    vals = []
    for t in idx:
        if t is None:
            vals.append(None)
        elif isinstance(t, Interval) and t.is_point:
            vals.append(t.value)
        else:
            raise NotImplementedError("index with a data-dependent index")
    fn = lambda t: aten.index.Tensor(t, vals)  # noqa: E731
    out = x.map_shape(fn)
    if not x.is_float:
        return RuleResult(out=out)
    return RuleResult(out=out, lipschitz={"self": 1.0}, error=ShapeError(fn, "self", out.shape))
