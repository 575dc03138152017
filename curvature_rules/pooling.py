"""Pooling: max_pool{1,2,3}d_with_indices, adaptive_max_pool{1,2,3}d, avg_pool{1,2,3}d,
_adaptive_avg_pool{1,2,3}d.

Max pooling is monotone in every input, so ``[pool(lo), pool(hi)]`` is the exact box image;
it is exact in every format, 1-Lipschitz (a max moves by at most the largest change) and
piecewise linear (curvature 0 away from ties). The indices output (flat positions in each
input plane) is exact where the plane's input is; elsewhere it may be any position of the
plane.

Average pooling is linear with non-negative weights (the window count over the divisor,
``divisor_override`` included; a negative override is declined): the box image is
``[pool(lo), pool(hi)]`` (widened; an average of one-signed inputs keeps their sign), L is
the largest row sum of the weights, ``pool(1)`` (1 for a plain average, k for a sum
pooling with ``divisor_override=1``), curvature 0. Rounding: a window sum of k terms
(gamma_{k-1}) and one division in the accumulation format, then the store. Exception: the
CPU kernel of ``_adaptive_avg_pool3d`` accumulates fp16/bf16 in that format (1.9 ulp
observed), so its sum and division are charged in the storage format, and its window sums
must fit the format (reported as an intermediate, ``internal_max``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import gamma
from certifier.interval import Interval, widen
from curvature_rules._common import fmag
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


def _batched(fn, t: torch.Tensor, nsp: int) -> torch.Tensor:
    """Apply a pooling fn to a tensor with one extra leading (configuration) dim."""
    lead = t.shape[: t.dim() - nsp - 1]
    flat = t.reshape((math.prod(lead),) + t.shape[t.dim() - nsp - 1 :])
    r = fn(flat)
    return r.reshape(lead + r.shape[1:])


@dataclass(frozen=True)
class MaxPoolError:
    fn: object
    nsp: int

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return (None, None)
        # The indices (flat positions in each input plane) are exact only where the kernel
        # sees the exact values: a plane with any input error may pick another element of
        # a window, anywhere in the plane (a coarse bound; the values are what models use).
        plane = e.shape[e.dim() - self.nsp :]
        moved = (e != 0).flatten(e.dim() - self.nsp).any(-1)
        span = torch.where(moved, float(math.prod(plane) - 1), 0.0).to(F64)
        vals = _batched(self.fn, e, self.nsp)
        return (vals, span.reshape(span.shape + (1,) * self.nsp).expand(vals.shape).contiguous())


@register_rule([aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default, aten.max_pool1d_with_indices.default])
def max_pool_rule(inp: RuleInput) -> RuleResult:
    """Max pooling (values, indices)."""
    return _max_pool(inp, len(inp.args["kernel_size"]))  # type: ignore[arg-type]


@register_rule([aten.adaptive_max_pool2d.default, aten.adaptive_max_pool3d.default, aten.adaptive_max_pool1d.default])
def adaptive_max_pool_rule(inp: RuleInput) -> RuleResult:
    """Adaptive max pooling (values, indices): a max over each window, as max pooling."""
    return _max_pool(inp, len(inp.args["output_size"]))  # type: ignore[arg-type]


def _max_pool(inp: RuleInput, nsp: int) -> RuleResult:
    x = inp.tensor("self")
    if x.is_point:
        v, i = inp.call_with()  # type: ignore[misc]
        return RuleResult(out=(Interval.point(v), Interval.point(i)))
    fn = lambda t: inp.call_with(self=t)[0]  # noqa: E731
    out = Interval(fn(x.lo), fn(x.hi), x.dtype)
    plane = math.prod(x.shape[len(x.shape) - nsp :])
    idx = Interval(torch.zeros(inp.out_shapes[1], dtype=F64), torch.full(inp.out_shapes[1], float(plane - 1), dtype=F64), torch.int64)
    return RuleResult(out=(out, idx), lipschitz={"self": 1.0}, curvature=0.0, error=MaxPoolError(fn, nsp))


@dataclass(frozen=True)
class AvgPoolError:
    fn: object
    nsp: int
    x: Interval
    out: Interval
    k: int
    acc_storage: bool = False  # the kernel accumulates in the storage format

    def propagate(self, ctx: ErrorContext):
        nd = len(self.out.shape)
        e = ctx.err("self")
        xm = fmag(self.x).unsqueeze(0)
        absx = (xm if e is None else xm + e).expand((ctx.F, *self.x.shape)).contiguous()
        S = _batched(self.fn, absx, self.nsp) * (1 + (self.k + 2) * 2.0**-52)
        P = torch.zeros_like(S) if e is None else _batched(self.fn, e, self.nsp) * (1 + (self.k + 2) * 2.0**-52)
        u_acc = ctx.u if self.acc_storage else ctx.u_acc
        he_acc = ctx.he if self.acc_storage else ctx.he_acc
        g = torch.tensor([gamma(max(self.k - 1, 0), float(u)) for u in u_acc], dtype=F64)
        # The window sum (k terms: gamma_{k-1} plus eta/2 per addition for underflow), then
        # the division.
        local = ctx.b(g, nd) * S + ctx.b(he_acc, nd) * self.k
        local = local + ctx.b(u_acc, nd) * (fmag(self.out).unsqueeze(0) + P + local) + ctx.b(he_acc, nd)
        return P + local + ctx.store(fmag(self.out).unsqueeze(0) + P + local, nd)

    def out_slope(self, ctx: ErrorContext) -> torch.Tensor:
        """Derivative of :meth:`propagate`'s bound in ``fmag(out)`` (it is affine in it): the
        division charges ``u_acc`` of it, the store ``u`` of that plus the rest."""
        u_acc = ctx.u if self.acc_storage else ctx.u_acc
        return u_acc * (1 + ctx.u) + ctx.u


@register_rule(
    [
        aten.avg_pool2d.default,
        aten.avg_pool1d.default,
        aten.avg_pool3d.default,
        aten._adaptive_avg_pool2d.default,
        aten._adaptive_avg_pool3d.default,
        aten.adaptive_avg_pool1d.default,
    ]
)
def avg_pool_rule(inp: RuleInput) -> RuleResult:
    """Average pooling (fixed or adaptive windows)."""
    x = inp.tensor("self")
    div = inp.args.get("divisor_override")
    if div is not None and int(div) < 0:  # type: ignore[call-overload]
        # negative weights: the box image, the error models and the adjoint pass all read
        # the map as monotone
        raise NotImplementedError("avg_pool with a negative divisor_override")
    if x.is_point:  # the float64 average is rounded: widen it like any other box
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    ks = inp.args.get("kernel_size")
    if ks is not None:
        nsp = len(ks)  # type: ignore[arg-type]
        k = math.prod(ks)  # type: ignore[arg-type]
    else:
        osz = list(inp.args["output_size"])  # type: ignore[arg-type]
        nsp = len(osz)
        k = math.prod(math.ceil(x.shape[-nsp + i] / max(osz[i], 1)) + 1 for i in range(nsp))
    fn = lambda t: inp.call_with(self=t)  # noqa: E731
    lo, hi = widen(fn(x.lo), fn(x.hi), (k + 4) * 2.0**-52)
    # An average of non-negative values (relu outputs) is non-negative: the outward widening
    # would otherwise leave a lower bound like -1e-301 (and symmetrically for non-positive).
    if x.numel() and bool((x.lo >= 0).all()):
        lo = lo.clamp(min=0.0)
    if x.numel() and bool((x.hi <= 0).all()):
        hi = hi.clamp(max=0.0)
    out = Interval(lo, hi, x.dtype)
    # NB: PyTorch's CPU _adaptive_avg_pool3d accumulates fp16/bf16 windows in that format
    # (1.9 ulp observed), against the fp32-accumulation model.
    acc_storage = inp.op is aten._adaptive_avg_pool3d.default
    err = AvgPoolError(fn, nsp, x, out, k, acc_storage)
    # ... so its partial window sums (at most k * mean|x| of the window) must fit that format.
    internal = float(fn(x.mag).max()) * k * (1 + (k + 4) * 2.0**-52) if acc_storage and x.numel() else 0.0
    # L (infinity norm): the largest sum of an output's weights, pool(1) rounded up
    L = float(fn(torch.ones(x.shape, dtype=F64)).max()) * (1 + (k + 4) * 2.0**-52) if x.numel() else 0.0
    return RuleResult(out=out, lipschitz={"self": L}, curvature=0.0, error=err, internal_max=internal, accum_length=k)
