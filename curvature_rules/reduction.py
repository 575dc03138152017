"""Reductions: sum, mean, amax, amin, max.dim, min.dim, cumsum.

sum over n elements: range [sum lo, sum hi] (float64 sums widened by gamma_n), Lipschitz n
(infinity norm), curvature 0. mean: the same divided by n, Lipschitz 1. amax/amin: exact,
1-Lipschitz, piecewise linear. cumsum: prefix sums, Lipschitz = the scan length.

Rounding: a sum of n terms accumulated in the accumulation format errs by at most
``gamma_{n-1}(u_acc) * sum|x^|`` in any order (Higham Lemma 3.1 / eq. 4.4); mean adds one
division; then the result is stored. Propagated input error: ``sum e`` (mean: ``mean e``);
amax/amin: ``max e`` over the reduced elements (a max moves by at most the largest change).

var / var_mean have no rule: ``x.var()`` exports to ``aten.var.correction``, which fails closed
(unsupported, unbounded downstream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import gamma
from certifier.interval import INF, Interval, widen
from curvature_rules._common import finite_max, fmag
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


def _dims(inp: RuleInput, x: Interval) -> list[int]:
    d = inp.args.get("dim")
    if d is None or (isinstance(d, (list, tuple)) and len(d) == 0):
        return list(range(len(x.shape)))
    if isinstance(d, int):
        d = [d]
    return [int(i) % max(len(x.shape), 1) for i in d]  # type: ignore[union-attr]


@dataclass(frozen=True)
class SumError:
    x: Interval
    out: Interval
    n: int
    mean: bool
    fn: object  # reduction applied to a tensor shaped like x (sum, keepdim as the node)

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        e = ctx.err("self")
        red = torch.vmap(self.fn)  # type: ignore[arg-type]
        xm = fmag(self.x).unsqueeze(0)
        absx = xm if e is None else xm + e
        S = red(absx.expand((ctx.F, *self.x.shape)).contiguous()) * (1 + (self.n + 2) * 2.0**-52)
        P = torch.zeros_like(S) if e is None else red(e) * (1 + (self.n + 2) * 2.0**-52)
        g = torch.tensor([gamma(max(self.n - 1, 0), float(u)) for u in ctx.u_acc], dtype=F64)
        local = ctx.b(g, nd) * S
        if self.mean:
            P = P / self.n
            local = local / self.n
            local = local + ctx.b(ctx.u_acc, nd) * (fmag(self.out).unsqueeze(0) + P + local)
        ymag = fmag(self.out).unsqueeze(0) + P + local
        return P + local + ctx.store(ymag, nd)

    def propagate_rel(self, ctx: ErrorContext):
        """A sum of non-negative terms whose input has a relative bound |x^ - x| <= R x + A:
        |sum x^ - s| <= R s + sum A, the accumulation adds gamma_{n-1} sum|x^| <= gamma ((1 + R) s
        + sum A) (additions never underflow) and the storage u and he. So R' = (R + gamma (1 +
        R))(1 + u) + u with R the largest over the terms, A' = (1 + gamma) sum A (1 + u) + he."""
        if self.mean or not bool((self.x.lo >= 0).all()):
            return None
        r = ctx.rel("self")
        if r is None:
            return None
        R, A = r
        F, nd = ctx.F, len(self.out.shape)
        Rm = R.reshape(F, -1).amax(1)
        red = torch.vmap(self.fn)  # type: ignore[arg-type]
        SA = red(A.expand((F, *self.x.shape)).contiguous()) * (1 + (self.n + 2) * 2.0**-52)
        g = torch.tensor([gamma(max(self.n - 1, 0), float(u)) for u in ctx.u_acc], dtype=F64)
        u = ctx.u
        R2 = ((Rm + g * (1 + Rm)) * (1 + u) + u) * (1 + 2.0**-50)
        A2 = SA * ctx.b((1 + g) * (1 + u), nd) + ctx.b(ctx.he, nd)
        return ctx.b(R2, nd), A2


@register_rule([aten.sum.dim_IntList, aten.sum.default, aten.mean.dim, aten.mean.default])
def sum_rule(inp: RuleInput) -> RuleResult:
    """Sum or mean over some dimensions."""
    x = inp.tensor("self")
    dims = _dims(inp, x)
    keep = bool(inp.get("keepdim", False))
    n = math.prod(x.shape[d] for d in dims) if x.shape else 1
    mean = inp.op in (aten.mean.dim, aten.mean.default)
    dtype = inp.out_dtypes[0]

    def fn(t: torch.Tensor) -> torch.Tensor:
        if not dims:
            return t
        return torch.sum(t, dim=dims, keepdim=keep)

    if x.is_point and not dtype.is_floating_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    slo, shi = fn(x.lo), fn(x.hi)
    # NB: the float64 sum of the lower (upper) ends errs by gamma_{n-1} times the sum of
    # their own magnitudes (not of |x|'s: a sum of small positive terms stays positive).
    k = (n + 2) * 2.0**-53
    lo, hi = widen(slo - fn(x.lo.abs()) * k, shi + fn(x.hi.abs()) * k)
    if bool((x.lo >= 0).all()):
        lo = lo.clamp(min=0.0)  # a sum of non-negative terms
    if mean and n > 0:
        lo, hi = widen(lo / n, hi / n)
    out = Interval(lo, hi, dtype)
    if not dtype.is_floating_point:
        return RuleResult(out=out)
    L = 1.0 if mean else float(n)
    return RuleResult(
        out=out,
        lipschitz={"self": L},
        curvature=0.0,
        error=SumError(x, out, n, mean, fn),
        accum_length=n,
        flops=float(x.numel()),
    )


@dataclass(frozen=True)
class MaxError:
    fn: object

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return None
        return torch.vmap(self.fn)(e)  # type: ignore[arg-type]


@register_rule([aten.amax.default, aten.amin.default])
def amax_rule(inp: RuleInput) -> RuleResult:
    """Max/min over dimensions: exact and 1-Lipschitz."""
    x = inp.tensor("self")
    dims = _dims(inp, x)
    keep = bool(inp.get("keepdim", False))
    op = torch.amax if inp.op is aten.amax.default else torch.amin
    fn = lambda t: op(t, dim=dims, keepdim=keep)  # noqa: E731
    if x.is_point:
        return RuleResult(out=Interval.point(fn(x.value)))
    out = Interval(fn(x.lo), fn(x.hi), x.dtype)
    if not x.is_float:
        return RuleResult(out=out)
    return RuleResult(out=out, lipschitz={"self": 1.0}, error=MaxError(lambda t: torch.amax(t, dim=dims, keepdim=keep)))


@register_rule([aten.max.dim, aten.min.dim])
def max_dim_rule(inp: RuleInput) -> RuleResult:
    """(values, indices) of a max/min over one dimension; the indices are unknown unless exact."""
    x = inp.tensor("self")
    d = int(inp.args["dim"])  # type: ignore[arg-type]
    keep = bool(inp.get("keepdim", False))
    if x.is_point:
        v, i = inp.call_with()  # type: ignore[misc]
        return RuleResult(out=(Interval.point(v), Interval.point(i)))
    op = torch.amax if inp.op is aten.max.dim else torch.amin
    vals = Interval(op(x.lo, dim=d, keepdim=keep), op(x.hi, dim=d, keepdim=keep), x.dtype)
    n = x.shape[d]
    idx = Interval(torch.zeros(vals.shape, dtype=F64), torch.full(vals.shape, float(n - 1), dtype=F64), torch.int64)
    err = MaxError(lambda t: torch.amax(t, dim=d, keepdim=keep))
    return RuleResult(out=(vals, idx), lipschitz={"self": 1.0}, error=_FirstOnly(err))


@dataclass(frozen=True)
class _FirstOnly:
    inner: MaxError

    def propagate(self, ctx: ErrorContext):
        return (self.inner.propagate(ctx), None)


@dataclass(frozen=True)
class CumsumError:
    x: Interval
    out: Interval
    dim: int

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        n = self.x.shape[self.dim] if self.x.shape else 1
        e = ctx.err("self")
        xm = fmag(self.x).unsqueeze(0)
        absx = xm if e is None else xm + e
        S = torch.cumsum(absx.expand((ctx.F, *self.x.shape)), self.dim + 1) * (1 + (n + 2) * 2.0**-52)
        P = torch.zeros_like(S) if e is None else torch.cumsum(e, self.dim + 1) * (1 + (n + 2) * 2.0**-52)
        g = torch.tensor([gamma(max(n - 1, 0), float(u)) for u in ctx.u_acc], dtype=F64)
        local = ctx.b(g, nd) * S
        return P + local + ctx.store(fmag(self.out).unsqueeze(0) + P + local, nd)


@register_rule([aten.cumsum.default])
def cumsum_rule(inp: RuleInput) -> RuleResult:
    """Prefix sums along one dimension."""
    x = inp.tensor("self")
    d = int(inp.args["dim"]) % max(len(x.shape), 1)  # type: ignore[arg-type]
    dtype = inp.out_dtypes[0]
    if x.is_point and not dtype.is_floating_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    if x.is_point:  # a float constant: its prefix sums are rounded, so not a point
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    n = x.shape[d] if x.shape else 1
    pad = torch.cumsum(x.mag, d) * ((n + 2) * 2.0**-53)
    lo, hi = widen(torch.cumsum(x.lo, d) - pad, torch.cumsum(x.hi, d) + pad)
    out = Interval(lo, hi, dtype)
    if not dtype.is_floating_point:
        return RuleResult(out=out)
    return RuleResult(out=out, lipschitz={"self": float(n)}, error=CumsumError(x, out, d), accum_length=n)


__all__ = ["INF", "finite_max"]
