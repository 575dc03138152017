"""Comparisons, boolean logic and selection: eq, ne, lt, le, gt, ge, logical_not/and/or,
bitwise_and/or/not, any, all, where, masked_fill, isnan, isinf; integer fmod / remainder.

A boolean box is ``[definitely true, possibly true]`` as 0/1. A comparison of two boxes is
decided when the boxes do not overlap in the relevant way; otherwise both outcomes are
possible. Attention masks built from constants (arange, ones) are decided exactly, so a
causal or padding mask costs nothing.

Rounding: a comparison of computed values can *flip* when rounding moves an operand across
the threshold. The error of a boolean is a 0/1 "may flip" flag: 0 exactly when the
comparison is decided on the inflated boxes ``[lo - e, hi + e]`` (or when neither operand
carries error). ``where(c, a, b)``: without a possible flip the error is that of the branch
taken; with one it is ``max(e_a, e_b) + max|a - b|``, which is infinite when a branch is an
infinite mask constant (fail closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.interval import INF, Interval
from curvature_rules._common import fmag, pad_left
from curvature_rules.masks import MASK_MIN, mask_safe
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64
B = torch.bool


def _iv(v: object) -> tuple[Interval, bool]:
    if isinstance(v, Interval):
        return v, False
    return Interval.point(torch.tensor(float(v), dtype=F64)), True  # type: ignore[arg-type]


def _decide(kind: str, xlo, xhi, ylo, yhi) -> tuple[torch.Tensor, torch.Tensor]:
    """(definitely true, possibly true) for ``x <kind> y`` over boxes."""
    if kind == "lt":
        return xhi < ylo, xlo < yhi
    if kind == "le":
        return xhi <= ylo, xlo <= yhi
    if kind == "gt":
        return xlo > yhi, xhi > ylo
    if kind == "ge":
        return xlo >= yhi, xhi >= ylo
    eq_sure = (xlo == xhi) & (ylo == yhi) & (xlo == ylo)
    eq_pos = (xlo <= yhi) & (ylo <= xhi)
    if kind == "eq":
        return eq_sure, eq_pos
    return ~eq_pos, ~eq_sure  # ne


def _bool_iv(sure: torch.Tensor, pos: torch.Tensor) -> Interval:
    if bool((sure == pos).all()):
        return Interval.point(sure.to(B))
    return Interval(sure.to(F64), pos.to(F64), B)


@dataclass(frozen=True)
class CompareError:
    kind: str
    x: Interval
    y: Interval
    xname: str | None
    yname: str | None
    out_shape: tuple[int, ...]
    y_scalar: bool

    def propagate(self, ctx: ErrorContext):
        nd = len(self.out_shape)
        ex = ctx.err(self.xname) if self.xname else None
        ey = ctx.err(self.yname) if self.yname else None
        if ex is None and ey is None and not self.y_scalar:
            return None
        if self.y_scalar and ex is None:
            return None
        z = torch.zeros((ctx.F,) + (1,) * nd, dtype=F64)
        ex = z if ex is None else pad_left(ex, nd)
        ey = z if ey is None else pad_left(ey, nd)
        if self.y_scalar:  # NB: rounded to the storage format by type promotion
            ey = ey + ctx.b(ctx.u, nd) * fmag(self.y) + ctx.b(ctx.he, nd)
        if self.x.dtype.is_floating_point is False:
            ex = torch.where(ex > 0, torch.full_like(ex, INF), ex)
        sure, pos = _decide(self.kind, self.x.lo - ex, self.x.hi + ex, self.y.lo - ey, self.y.hi + ey)
        decided = sure == pos
        return (~decided).to(F64).expand((ctx.F, *self.out_shape)).clone()


def _compare(inp: RuleInput, kind: str) -> RuleResult:
    names = list(inp.args.keys())
    x, _ = _iv(inp.args[names[0]])
    y, ys = _iv(inp.args[names[1]])
    sure, pos = _decide(kind, x.lo, x.hi, y.lo, y.hi)
    out = _bool_iv(sure.expand(inp.out_shapes[0]), pos.expand(inp.out_shapes[0]))
    err = CompareError(kind, x, y, names[0], None if ys else names[1], inp.out_shapes[0], ys)
    return RuleResult(out=out, error=err)


def _make_cmp(kind: str):
    def rule(inp: RuleInput) -> RuleResult:
        return _compare(inp, kind)

    rule.__name__ = f"{kind}_rule"
    rule.__doc__ = f"Comparison x {kind} y over boxes."
    return rule


for _k, _ops in {
    "eq": [aten.eq.Scalar, aten.eq.Tensor],
    "ne": [aten.ne.Scalar, aten.ne.Tensor],
    "lt": [aten.lt.Scalar, aten.lt.Tensor],
    "le": [aten.le.Scalar, aten.le.Tensor],
    "gt": [aten.gt.Scalar, aten.gt.Tensor],
    "ge": [aten.ge.Scalar, aten.ge.Tensor],
}.items():
    register_rule(_ops)(_make_cmp(_k))


@dataclass(frozen=True)
class FlagError:
    """Boolean/integer results: a possible flip in any input may flip the output."""

    names: tuple[str, ...]
    out_shape: tuple[int, ...]
    reduce: object = None
    #: an integer result (bitwise ops on ints): a flip moves it by an unknown amount
    unknown_size: bool = False

    def propagate(self, ctx: ErrorContext):
        out = self._flags(ctx)
        if out is None or not self.unknown_size:
            return out
        return torch.where(out > 0, INF, torch.zeros_like(out))

    def _flags(self, ctx: ErrorContext):
        flags = [ctx.err(n) for n in self.names]
        flags = [f for f in flags if f is not None]
        if not flags:
            return None
        nd = len(self.out_shape) if self.reduce is None else None
        if self.reduce is not None:
            f = torch.vmap(self.reduce)(flags[0])  # type: ignore[arg-type]
            return (f > 0).to(F64)
        acc = torch.zeros((ctx.F, *self.out_shape), dtype=F64)
        for f in flags:
            acc = torch.maximum(acc, pad_left((f > 0).to(F64), nd))  # type: ignore[arg-type]
        return acc


def _logic(inp: RuleInput, fn) -> RuleResult:
    names = [n for n, v in inp.args.items() if isinstance(v, Interval)]
    ivs = [inp.args[n] for n in names]
    if all(v.is_point for v in ivs):  # type: ignore[union-attr]
        return RuleResult(out=Interval.point(inp.call_with()))
    # Evaluate on every corner of the 0/1 boxes (booleans have at most two values each).
    import itertools

    outs = []
    for combo in itertools.product(*[(v.lo, v.hi) for v in ivs]):  # type: ignore[union-attr]
        outs.append(fn(*[c.to(B) for c in combo]).to(F64))
    st = torch.stack(torch.broadcast_tensors(*outs))
    lo, hi = st.amin(0), st.amax(0)
    out = Interval(lo, hi, inp.out_dtypes[0]) if not bool((lo == hi).all()) else Interval.point(lo.to(B))
    return RuleResult(out=out, error=FlagError(tuple(names), inp.out_shapes[0], unknown_size=inp.out_dtypes[0] != B))


@register_rule([aten.logical_not.default, aten.bitwise_not.default])
def logical_not_rule(inp: RuleInput) -> RuleResult:
    """Boolean negation."""
    x = inp.tensor("self")
    if x.dtype != B:
        if x.is_point:
            return RuleResult(out=Interval.point(inp.call_with()))
        raise NotImplementedError("bitwise_not on integers")
    return _logic(inp, torch.logical_not)


@register_rule([aten.logical_and.default, aten.bitwise_and.Tensor, aten.logical_or.default, aten.bitwise_or.Tensor, aten.logical_xor.default, aten.bitwise_xor.Tensor])
def logical_binary_rule(inp: RuleInput) -> RuleResult:
    """Boolean and/or/xor (bitwise forms on bool tensors; integer forms only when known)."""
    names = list(inp.args.keys())
    a, b = inp.args[names[0]], inp.args[names[1]]
    if isinstance(a, Interval) and isinstance(b, Interval) and a.is_point and b.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    if not all(isinstance(v, Interval) and v.dtype == B for v in (a, b)):
        raise NotImplementedError("bitwise op on integer boxes")
    fn = {
        "logical_and": torch.logical_and, "bitwise_and": torch.logical_and,
        "logical_or": torch.logical_or, "bitwise_or": torch.logical_or,
        "logical_xor": torch.logical_xor, "bitwise_xor": torch.logical_xor,
    }[inp.op._opname]
    return _logic(inp, fn)


@register_rule([aten.any.dim, aten.any.default, aten.any.dims, aten.all.dim, aten.all.default, aten.all.dims])
def any_rule(inp: RuleInput) -> RuleResult:
    """any/all over dimensions of a boolean box."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    is_any = inp.op._opname == "any"
    d = inp.args.get("dim")
    keep = bool(inp.get("keepdim", False))
    dims = list(range(len(x.shape))) if d is None else ([d] if isinstance(d, int) else list(d))  # type: ignore[arg-type]

    def red(t):
        r = t
        for i in sorted([k % len(x.shape) for k in dims], reverse=True):
            r = (r.amax(i, keepdim=keep) if is_any else r.amin(i, keepdim=keep))
        return r

    xl = (x.lo != 0).to(F64)
    xh = (x.hi != 0).to(F64)
    lo, hi = red(xl), red(xh)
    out = Interval(lo, hi, B) if not bool((lo == hi).all()) else Interval.point(lo.to(B))
    return RuleResult(out=out, error=FlagError(("self",), inp.out_shapes[0], reduce=lambda t: red(t)))


@dataclass(frozen=True)
class WhereError:
    cond: Interval
    a: Interval
    b: Interval
    names: tuple[str | None, str | None, str | None]
    out_shape: tuple[int, ...]
    integer: bool = False  # an integer result (its scalar branches are exact)

    def propagate(self, ctx: ErrorContext):
        nd = len(self.out_shape)
        F = ctx.F
        cn, an, bn = self.names

        def get(n):
            if n is None:
                return torch.zeros((F,) + (1,) * nd, dtype=F64)
            e = ctx.err(n)
            return torch.zeros((F,) + (1,) * nd, dtype=F64) if e is None else pad_left(e, nd)

        ec, ea, eb = get(cn), get(an), get(bn)
        # NB: a Python scalar branch is rounded to the storage format (masked_fill(-1e4) holds
        # -9984 in bf16); an integer result holds it exactly.
        if an is None and self.a.is_point and not self.integer:
            ea = ea + ctx.b(ctx.u, nd) * fmag(self.a) + ctx.b(ctx.he, nd)
        if bn is None and self.b.is_point and not self.integer:
            eb = eb + ctx.b(ctx.u, nd) * fmag(self.b) + ctx.b(ctx.he, nd)
        sure_t = self.cond.lo != 0
        sure_f = self.cond.hi == 0
        base = torch.where(sure_t, ea, torch.where(sure_f, eb, torch.maximum(ea, eb)))
        gap = torch.maximum((self.a.hi - self.b.lo).abs(), (self.b.hi - self.a.lo).abs())
        same = (self.a.lo == self.a.hi) & (self.b.lo == self.b.hi) & (self.a.lo == self.b.lo)
        gap = torch.where(same, torch.zeros_like(gap), gap)
        gap = torch.where(torch.isnan(gap), torch.full_like(gap, INF), gap)
        flip = pad_left(ec, nd) > 0
        out = torch.where(flip, torch.maximum(ea, eb) + gap, base)
        return out.expand((F, *self.out_shape)).clone()


def _marker(inp: RuleInput, v: Interval, scalar: bool) -> Interval:
    """A scalar branch of finfo.min's size becomes a mask marker (curvature_rules.masks)
    when every use of the result leads only into a softmax."""
    if not scalar or v.value is None or not v.is_float:
        return v
    x = float(v.value)
    if not (math.isfinite(x) and abs(x) >= MASK_MIN) or not mask_safe(inp.node, {}):
        return v
    return Interval.point(torch.tensor(math.copysign(INF, x), dtype=F64))


def _where(inp: RuleInput, cname: str, aname: str, bname: str) -> RuleResult:
    c = inp.tensor(cname)
    a, a_s = _iv(inp.args[aname])
    b, b_s = _iv(inp.args[bname])
    a, b = _marker(inp, a, a_s), _marker(inp, b, b_s)
    shape = inp.out_shapes[0]
    dtype = inp.out_dtypes[0]
    if c.is_point and a.is_point and b.is_point:
        return RuleResult(out=Interval.point(torch.where(c.value, a.value.to(dtype), b.value.to(dtype))))
    sure_t, sure_f = c.lo != 0, c.hi == 0
    lo = torch.where(sure_t, a.lo, torch.where(sure_f, b.lo, torch.minimum(a.lo, b.lo))).expand(shape)
    hi = torch.where(sure_t, a.hi, torch.where(sure_f, b.hi, torch.maximum(a.hi, b.hi))).expand(shape)
    out = Interval(lo, hi, dtype)
    L = {}
    if not a.is_point and not a_s:
        L[aname] = 1.0
    if not b.is_point and not b_s:
        L[bname] = 1.0
    err = WhereError(c, a, b, (cname, None if a_s else aname, None if b_s else bname), shape, integer=not dtype.is_floating_point)
    # NB: integer branches too: a flipped condition moves the result by the branches' gap,
    # not by a flag's 1 (where(x > 0, 100, 0) was bounded by 1 where a flip costs 100)
    return RuleResult(out=out, lipschitz=L, curvature=0.0, error=err if dtype != B else FlagError((cname, aname, bname), shape))


@register_rule([aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar])
def where_rule(inp: RuleInput) -> RuleResult:
    """where(condition, a, b): the branch taken, or the hull of both when undecided."""
    return _where(inp, "condition", "self", "other")


@register_rule([aten.masked_fill.Scalar, aten.masked_fill.Tensor])
def masked_fill_rule(inp: RuleInput) -> RuleResult:
    """masked_fill(x, mask, v) = where(mask, v, x)."""
    return _where(inp, "mask", "value", "self")


@register_rule([aten.isnan.default, aten.isinf.default, aten.isfinite.default])
def isnan_rule(inp: RuleInput) -> RuleResult:
    """Tests of finiteness: decided by the exact value (a sound analysis has finite boxes)."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    if inp.op is aten.isnan.default:
        # An infinite end is how the analysis says "unknown" (an op without a rule, a
        # division by a box containing 0, ...), where NaN cannot be ruled out.
        if not bool((torch.isfinite(x.lo) & torch.isfinite(x.hi)).all()):
            raise NotImplementedError("isnan on an unbounded box")
        v = torch.zeros(x.shape, dtype=B)
    else:
        fin = torch.isfinite(x.lo) & torch.isfinite(x.hi)
        inf = torch.isinf(x.lo) & (x.lo == x.hi)
        if not bool((fin | inf).all()):
            raise NotImplementedError("isinf/isfinite on an unbounded box")
        v = inf if inp.op is aten.isinf.default else fin
    return RuleResult(out=Interval.point(v), error=NoFlip())


class NoFlip:
    """isnan/isinf/isfinite of a computed value agree with the exact one: formats in which
    a value can overflow are rejected by the admissibility check, so computed values are
    finite exactly where exact ones are."""

    def propagate(self, ctx: ErrorContext):
        return None


@register_rule([aten.fmod.Scalar, aten.fmod.Tensor, aten.remainder.Scalar, aten.remainder.Tensor])
def modulo_rule(inp: RuleInput) -> RuleResult:
    """Integer fmod / remainder (roll's index arithmetic; known operands are folded before
    this rule runs). A float modulo is discontinuous: declined. On an integer box with a
    known divisor c != 0: remainder lies in [0, |c| - 1] (c > 0) or [-(|c| - 1), 0] (c < 0);
    fmod takes the dividend's sign, |fmod| <= |c| - 1. A possible flip of the dividend
    (FlagError) moves the result by an unknown amount."""
    names = list(inp.args.keys())
    x, c = inp.args[names[0]], inp.args[names[1]]
    if not isinstance(x, Interval) or x.is_float:
        raise NotImplementedError("modulo of a float tensor (discontinuous)")
    if isinstance(c, Interval):
        if not (c.is_point and c.numel() == 1):
            raise NotImplementedError("modulo by a tensor that is not one known value")
        c = c.value.item()
    if isinstance(c, float) or int(c) == 0:
        raise NotImplementedError("modulo by zero or by a float")
    c = int(c)
    m = abs(c) - 1
    if inp.op._opname == "remainder":
        lo, hi = (torch.zeros_like(x.lo), torch.full_like(x.hi, m)) if c > 0 else (torch.full_like(x.lo, -m), torch.zeros_like(x.hi))
    else:
        lo = torch.where(x.lo >= 0, torch.zeros_like(x.lo), torch.full_like(x.lo, -m))
        hi = torch.where(x.hi <= 0, torch.zeros_like(x.hi), torch.full_like(x.hi, m))
    # Dividends already inside the result's range are unchanged.
    inside = (x.lo >= lo) & (x.hi <= hi)
    lo, hi = torch.where(inside, x.lo, lo), torch.where(inside, x.hi, hi)
    out = Interval(lo.to(F64), hi.to(F64), inp.out_dtypes[0])
    return RuleResult(out=out, error=FlagError((names[0],), inp.out_shapes[0], unknown_size=True))
