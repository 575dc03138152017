"""Binary arithmetic: add, sub, rsub, mul, div (tensor and scalar forms), pow with a scalar
exponent, maximum, minimum, clamp with tensor bounds.

Ranges are interval arithmetic (all corner products for mul/div), widened outward.
Lipschitz (infinity norm) per argument: add/sub 1 (|alpha| for the scaled one); mul: the
other factor's magnitude; div x/y: 1/mig(y) for x and mag(x)/mig(y)^2 for y.
Curvature (joint, infinity norm): 0 for add/sub and for mul/div by a constant; x*y: 1
(D^2 = 2 h_x h_y); x/y: 1/mig(y)^2 + mag(x)/mig(y)^3 (Hessian of x/y); x^n: n(n-1)/2 mag^(n-2).

Rounding: the operation runs in the accumulation format (one rounding, ``u_acc``), then the
result is stored (``u``, ``eta/2``). A Python scalar operand is rounded to the *storage*
format first, ``u |s| + eta/2`` (NB: PyTorch's type promotion makes ``x + 0.1`` on an fp16
tensor add fl16(0.1); some kernels keep the scalar in fp32, which this bound also covers).
A scalar beyond the format's largest finite value overflows (reported as an intermediate
through ``internal_max``). A non-unit ``alpha`` is rounded to the accumulation format and multiplied there:
``(2 u_acc + u_acc^2) |alpha| |y^|``. Error propagation is exact in the input
errors (no first-order truncation): ``|x^y^ - xy| <= |x| e_y + e_x |y| + e_x e_y`` and
``|x^/y^ - x/y| <= (e_x + |x/y| e_y) / (mig(y) - e_y)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.interval import INF, Interval, mig, mul_bounds, widen
from curvature_rules import rmsnorm
from curvature_rules._common import MARKER_SLACK, MinError, exact_infinite, finite_max, fmag, held_in_every_format, pad_left, safe_mul
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


def _as_iv(v: object, dtype: torch.dtype) -> tuple[Interval, bool]:
    """(interval, is_python_scalar)."""
    if isinstance(v, Interval):
        return v, False
    return Interval.point(torch.tensor(float(v), dtype=F64)), True  # type: ignore[arg-type]


@dataclass(frozen=True)
class BinaryError:
    kind: str  # add | mul | div | max
    x: Interval
    y: Interval
    out: Interval
    xname: str | None  # None: python scalar
    yname: str | None
    alpha: float = 1.0
    y_scalar: bool = False
    x_scalar: bool = False
    #: integer arithmetic: exact (no rounding, scalars exact); only input errors propagate
    integer: bool = False
    #: (mask, value) of :func:`_integral_operands`, computed once by the rule
    ints: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def final_store(self) -> bool:
        """A sum's bound is (error before the final rounding) + ctx.store(...), with one
        store call (certifier.rounding records the first part for a relu that reads it)."""
        return self.kind == "add" and not self.integer

    def _e(self, ctx: ErrorContext, name: str | None, iv: Interval, scalar: bool, nd: int):
        if self.integer and (name is None or scalar):
            return None
        if name is None or scalar:
            if scalar:  # NB: the scalar is rounded to the storage format (type promotion)
                return pad_left(ctx.b(ctx.u, 0) * fmag(iv).unsqueeze(0) + ctx.b(ctx.he, 0), nd)
            return None
        e = ctx.err(name)
        return None if e is None else pad_left(e, nd)

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        F = ctx.F
        ex = self._e(ctx, self.xname, self.x, self.x_scalar, nd)
        ey = self._e(ctx, self.yname, self.y, self.y_scalar, nd)
        z = torch.zeros((F,) + (1,) * nd, dtype=F64)
        ex = z if ex is None else ex
        ey = z if ey is None else ey
        xm, ym = fmag(self.x).unsqueeze(0), fmag(self.y).unsqueeze(0)
        if self.kind == "add":
            P = ex + abs(self.alpha) * ey
            exact = False
        elif self.kind == "mul":
            P = safe_mul(xm, ey) + safe_mul(ex, ym) + safe_mul(ex, ey)
            exact = False
        elif self.kind == "div":
            my = mig(self.y.lo, self.y.hi).unsqueeze(0)
            den = my - ey
            q = fmag(self.out).unsqueeze(0)
            num = ex + safe_mul(q, ey)
            P = torch.where(den > 0, num / den, torch.full_like(num, INF))
            P = torch.where(num == 0, torch.zeros_like(P), P)
            P = self._div_relative(ctx, P, my, q, ex, nd)
            exact = False
        else:  # max / min: exact, 1-Lipschitz in the max norm
            return torch.maximum(ex, ey).expand((F, *self.out.shape)).clone()
        P = P.expand((F, *self.out.shape))
        if self.integer:
            # exact, unless the computed value may leave int64's range (it wraps)
            big = (self.out.lo.abs() + P > 2.0**62) | (self.out.hi.abs() + P > 2.0**62)
            return torch.where(big, torch.full_like(P, INF), P)
        ymag = fmag(self.out).unsqueeze(0) + P
        extra = 0.0
        if self.alpha != 1.0 and self.kind == "add":
            ua = ctx.b(ctx.u_acc, nd)
            extra = (2 * ua + ua * ua) * abs(self.alpha) * (ym + ey)
            if abs(self.alpha) != 1.0:
                # PyTorch's CPU kernel for fp16 / bf16 rounds alpha itself to the storage
                # format (on both its paths: fp16 0 + 0.3 y equals fp16(fp16(0.3) y) on
                # 20000 of 20000 samples), and on its scalar path also rounds alpha * y
                # there (c10::Half arithmetic): fp16 x + 3 * 0.1 errs by 2.145e-3 at
                # x = 2.27636, where one rounding of the fp32 result would allow 2.10e-3.
                # |fl(fl(a) y) - a y| <= (2 us + us^2) |a| |y| + hs (1 + us) |y| + hs.
                us, hs = ctx.b(ctx.u, nd), ctx.b(ctx.he, nd)
                extra = extra + (2 * us + us * us) * abs(self.alpha) * (ym + ey) + hs * (1 + us) * (ym + ey) + hs
        local = ctx.b(ctx.u_acc, nd) * ymag + extra
        if exact:
            return P
        out = P + local + ctx.store(ymag + local, nd)
        if self.kind in ("mul", "div"):
            out = self._exact_zeros(out, ex, ey)
            out = self._fixed_infinities(out, ex, ey)
        return self._exact_integers(ctx, out, ex, ey)

    def _exact_integers(self, ctx: ErrorContext, out: torch.Tensor, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        """Integer-valued operands, each read exactly (error 0; a Python scalar exact in the
        format), whose exact result is an integer that the storage and the accumulation
        format both hold (|r| <= 2^p): IEEE arithmetic returns it exactly, in every order
        and format. (OPT's positions ``cumsum(mask) * mask - 1`` before the cast to int64.)"""
        if self.ints is None:
            return out
        ok, v = self.ints
        nd = len(self.out.shape)
        # 2^p of each configuration: integers up to it are exact in the format
        lim = torch.minimum(1.0 / ctx.u, 1.0 / ctx.u_acc)
        lim = ctx.b(lim, nd)
        fits = ok.unsqueeze(0) & (v.abs().unsqueeze(0) <= lim)
        for iv, e, scalar in ((self.x, ex, self.x_scalar or self.xname is None), (self.y, ey, self.y_scalar or self.yname is None)):
            if scalar:
                fits = fits & (iv.lo.abs().unsqueeze(0) <= lim)
            else:
                fits = fits & (e == 0)
        if abs(self.alpha) != 1.0:  # alpha * y is formed first: it must be held too
            fits = fits & (abs(self.alpha) <= lim) & ((self.alpha * self.y.lo).abs().unsqueeze(0) <= lim)
        return torch.where(fits.expand_as(out), torch.zeros_like(out), out)

    def _fixed_infinities(self, out: torch.Tensor, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        """An exactly infinite factor (its error 0 there: the computed value is that
        infinity) times a value whose *computed* sign is decided is that infinity; where the
        computed other factor can reach 0 (inf * 0 = NaN) or flip its sign, unbounded. (The
        magnitudes above count infinities as 0, so this is checked here.)"""
        pairs = ((self.x, ex, self.y, ey),) if self.kind == "div" else ((self.x, ex, self.y, ey), (self.y, ey, self.x, ex))
        for a, ea, b, eb in pairs:
            ia = exact_infinite(a)
            if ia is None or not bool(ia.any()):
                continue
            sure = ((b.lo - eb > 0) | (b.hi + eb < 0)) & torch.isfinite(b.lo) & torch.isfinite(b.hi) & (ea == 0)
            bad = (ia & ~sure).expand_as(out)
            out = torch.where(bad, torch.full_like(out, INF), out)
        return out

    def _exact_zeros(self, out: torch.Tensor, ex: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        """A computed 0 times a finite value, or over a divisor that cannot reach 0, is
        exactly 0 in every format (no rounding): where the exact factor is 0 and computed
        without error, so is the result (a constant position index 0 / 8 before a log)."""
        zx = (self.x.lo == 0) & (self.x.hi == 0) & (ex == 0)
        if not bool(zx.any()):
            return out
        if self.kind == "mul":
            ok = torch.isfinite(self.y.lo + (-ey)) & torch.isfinite(self.y.hi + ey)
        else:
            ok = (self.y.lo - ey > 0) | (self.y.hi + ey < 0)
        z = (zx & ok).expand_as(out)
        return torch.where(z, torch.zeros_like(out), out)


    def _div_relative(self, ctx: ErrorContext, P: torch.Tensor, my: torch.Tensor, q: torch.Tensor, ex: torch.Tensor, nd: int) -> torch.Tensor:
        """A second bound for x / y when y's relative error is known (|y^ - y| <= Ry |y| + Ay,
        y of one sign): |y^| >= |y| D with D = 1 - Ry - Ay / mig(y), and

            |x^/y^ - x/y| <= |x^ - x| / |y^| + |q| (Ry + Ay / |y|) / D,

        with |x^ - x| <= Rx |x| + Ax when x has a relative bound too (else the absolute one):
        [|q| (Rx + Ry + Ay/mig) + Ax/mig] / D. A sum of exponentials (naive softmax) comes
        close to 0 over the domain, but its error shrinks with it. The smaller bound is kept."""
        if self.yname is None or self.y_scalar:
            return P
        ry = ctx.rel(self.yname)
        if ry is None or not (bool((self.y.lo > 0).all()) or bool((self.y.hi < 0).all())):
            return P
        Ry, Ay = ry
        inv = torch.where(my > 0, 1.0 / my, torch.full_like(my, INF)) * (1 + 2.0**-50)
        D = (1 - Ry) - Ay * inv
        rx = ctx.rel(self.xname) if (self.xname is not None and not self.x_scalar) else None
        if rx is not None:
            Rx, Ax = rx
            num = safe_mul(q, Rx + Ry + Ay * inv) + Ax * inv
        else:
            num = safe_mul(q, Ry + Ay * inv) + safe_mul(ex, inv)
        P2 = torch.where(D > 0, num / D * (1 + 2.0**-48), torch.full_like(num, INF))
        return torch.minimum(P, P2)


def _arg_nodes(inp: RuleInput, xname: str, yname: str) -> tuple[object, object]:
    """The graph arguments bound to ``xname`` and ``yname`` (None where not positional)."""
    names = list(inp.args)
    try:
        return inp.node.args[names.index(xname)], inp.node.args[names.index(yname)]
    except (ValueError, IndexError):
        return None, None


def _normalizes(inp: RuleInput, xname: str, yname: str, x: Interval, y: Interval) -> bool:
    """x / sum(x, dims, keepdim=True) with x >= 0 over the domain: each quotient is one
    non-negative term over a sum that contains it, so it lies in [0, 1] (a relation between
    numerator and denominator that boxes lose: exp(z) / sum exp(z) would get [0, 3e16] on
    logits in [-20, 20])."""
    xn, yn = _arg_nodes(inp, xname, yname)
    if not (isinstance(xn, torch.fx.Node) and isinstance(yn, torch.fx.Node)):
        return False
    if yn.target not in (aten.sum.dim_IntList,) or not yn.args or yn.args[0] is not xn:
        return False
    keep = yn.args[2] if len(yn.args) > 2 else yn.kwargs.get("keepdim", False)
    if not keep or len(x.shape) != len(y.shape):
        return False
    return bool((x.lo >= 0).all()) and bool((y.lo > 0).all())


def _squares(inp: RuleInput, xname: str, yname: str) -> bool:
    """Both factors are the same graph value (``x * x``)."""
    xn, yn = _arg_nodes(inp, xname, yname)
    return isinstance(xn, torch.fx.Node) and xn is yn


def _rms_chain(inp: RuleInput, xname: str, yname: str, shape: tuple[int, ...]) -> tuple[rmsnorm.RmsChain, str] | None:
    """``x * rsqrt(mean(x^2) + c)`` in either order, in one module (curvature_rules.rmsnorm):
    the chain and the argument bound to x."""
    xn, yn = _arg_nodes(inp, xname, yname)
    for a, b, name in ((xn, yn, xname), (yn, xn, yname)):
        if not isinstance(a, torch.fx.Node) or inp.tensor(name).shape != tuple(shape):
            continue
        ch = rmsnorm.match(b, shape)
        if ch is not None and ch.x is a and rmsnorm._layer_key(inp.node) == rmsnorm._layer_key(b):  # noqa: SLF001
            return ch, name
    return None


#: integers up to this magnitude are exact in float64, and sums / products of two of them too
_INT_EXACT = 2.0**52


def _integral_operands(kind: str, x: Interval, y: Interval, alpha: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mask, value): where both operands are known exactly (lo == hi) as integers and
    ``x + alpha y`` (add) or ``x y`` (mul) is an integer of magnitude below 2^52, so that
    float64 computes it exactly; None when there is no such element."""
    if kind not in ("add", "mul") or not x.is_float or not y.is_float or alpha != round(alpha):
        return None
    xl, xh, yl, yh = x.lo, x.hi, y.lo, y.hi
    ok = (xl == xh) & (yl == yh) & (xl == torch.round(xl)) & (yl == torch.round(yl))
    if not bool(ok.any()):
        return None
    v = xl + alpha * yl if kind == "add" else xl * yl
    ok = ok & (xl.abs() < _INT_EXACT) & (yl.abs() < _INT_EXACT) & (v.abs() < _INT_EXACT)
    if not bool(ok.any()):
        return None
    return ok, torch.where(ok, v, torch.zeros_like(v))


def _binary(inp: RuleInput, kind: str, xname: str, yname: str, alpha: float = 1.0, swap: bool = False) -> RuleResult:
    dtype = inp.out_dtypes[0]
    x, xs = _as_iv(inp.args[xname], dtype)
    y, ys = _as_iv(inp.args[yname], dtype)
    if swap:  # rsub: other - alpha * self
        x, y, xs, ys, xname, yname = y, x, ys, xs, yname, xname
    if x.is_point and y.is_point and dtype in (torch.int64, torch.int32, torch.bool, torch.int8, torch.uint8, torch.int16):
        if kind == "add":
            v = x.value + alpha * y.value
        elif kind == "mul":
            v = x.value * y.value
        elif kind == "max":
            v = torch.maximum(x.value, y.value)
        elif kind == "min":
            v = torch.minimum(x.value, y.value)
        else:
            v = x.value / y.value
        return RuleResult(out=Interval.point(v.to(dtype)))
    L: dict[str, float] = {}
    kappa = 0.0
    rms: tuple[rmsnorm.RmsChain, str] | None = None
    if kind == "add":
        alo, ahi = (y.lo * alpha, y.hi * alpha) if alpha >= 0 else (y.hi * alpha, y.lo * alpha)
        lo, hi = widen(x.lo + alo, x.hi + ahi)
        # A fixed infinity plus a finite value is that infinity, exactly (an additive -inf
        # attention mask): widening would make it [-inf, inf] (up(-inf) is NaN). The term
        # is x or alpha * y: its sign follows alpha's (x - mask is +inf). The other value
        # stays within +-2^40, so that a mask marker (certifier.walker._mask_markers: at
        # most -2^64) stays one; its error is checked in the same way (rounding._post).
        for term, scale, other in ((x, 1.0, y), (y, alpha, x)):
            ex = exact_infinite(term) if scale != 0 else None
            if ex is not None and bool(ex.any()):
                fin = ex & (other.lo.abs() <= MARKER_SLACK) & (other.hi.abs() <= MARKER_SLACK)
                v = term.lo * scale
                lo, hi = torch.where(fin, v, lo), torch.where(fin, v, hi)
        L = {xname: 1.0, yname: abs(alpha)}
    elif kind == "mul":
        lo, hi = mul_bounds(x.lo, x.hi, y.lo, y.hi)
        if _squares(inp, xname, yname):
            # x * x: the box product forgets that both factors are the same value
            # ([-1, 1] * [-1, 1] = [-1, 1]); the square's image is [mig^2, mag^2].
            lo_abs, mag = mig(x.lo, x.hi), fmag(x)
            slo, shi = widen(lo_abs * lo_abs, mag * mag)
            lo, hi = torch.maximum(lo, slo.clamp(min=0.0)), torch.minimum(hi, shi)
        rms = None if (xs or ys) else _rms_chain(inp, xname, yname, tuple(inp.out_shapes[0]))
        if rms is not None:
            # RMS normalisation: |x_i| / sqrt(mean(x^2) + c) <= sqrt(n) whatever the box
            ch, xarg = rms
            xi = x if xarg == xname else y
            rlo, rhi = rmsnorm.image(xi.lo, xi.hi, ch.dims, ch.n, ch.c)
            lo, hi = torch.maximum(lo, rlo), torch.minimum(hi, rhi)
        L = {xname: finite_max(fmag(y)), yname: finite_max(fmag(x))}
        kappa = 1.0 if not (x.is_point or y.is_point) else 0.0
    elif kind == "div":
        has0 = (y.lo <= 0) & (y.hi >= 0)
        rlo = torch.where(has0, torch.full_like(y.lo, -INF), 1.0 / y.hi)
        rhi = torch.where(has0, torch.full_like(y.lo, INF), 1.0 / y.lo)
        rlo, rhi = widen(rlo, rhi)
        lo, hi = mul_bounds(x.lo, x.hi, rlo, rhi)
        if _normalizes(inp, xname, yname, x, y):
            lo, hi = lo.clamp(min=0.0), hi.clamp(max=1.0)
        my = mig(y.lo, y.hi)
        L = {xname: finite_max(torch.where(my > 0, 1.0 / my, torch.full_like(my, INF)))}
        yl = torch.where(my > 0, fmag(x) / (my * my), torch.full_like(my, INF))
        L[yname] = finite_max(yl)
        # 1/m and |x|/m^2 are rounded in float64: a few ulps up covers them
        L = {n: v * (1 + 2.0**-48) for n, v in L.items()}
        if not y.is_point:
            k = torch.where(my > 0, fmag(x) / my**3, torch.full_like(my, INF))
            if not x.is_point:
                k = k + torch.where(my > 0, 1.0 / my**2, torch.full_like(my, INF))
            kappa = finite_max(k) * (1 + 2.0**-40)
    else:
        op = torch.maximum if kind == "max" else torch.minimum
        lo, hi = op(x.lo, y.lo), op(x.hi, y.hi)
        L = {xname: 1.0, yname: 1.0}
    if kind in ("mul", "div"):
        # A fixed infinity times (over) a finite value of known sign is that infinity, signed
        # (log 0 = -inf scaled before a bucketing); widening made it [-inf, inf]. (Mask
        # markers never reach a mul or div: curvature_rules.masks.)
        pairs = ((x, y),) if kind == "div" else ((x, y), (y, x))
        for a, b in pairs:
            ia = exact_infinite(a)
            if ia is None or not bool(ia.any()):
                continue
            pos, neg = (b.lo > 0) & torch.isfinite(b.hi), (b.hi < 0) & torch.isfinite(b.lo)
            sgn = torch.where(pos, 1.0, torch.where(neg, -1.0, 0.0)) * torch.sign(a.lo)
            fix = (ia & (pos | neg)).expand(lo.shape)
            v = (sgn * INF).expand(lo.shape)
            lo, hi = torch.where(fix, v, lo), torch.where(fix, v, hi)
        # 0 * finite and 0 / (a divisor away from 0) are exactly 0 (widening made them
        # [-tiny, tiny], which a log or sqrt after them would decline)
        zx = (x.lo == 0) & (x.hi == 0)
        if kind == "mul":
            zy = (y.lo == 0) & (y.hi == 0)
            zero = (zx & torch.isfinite(y.lo) & torch.isfinite(y.hi)) | (zy & torch.isfinite(x.lo) & torch.isfinite(x.hi))
        else:
            zero = zx & ((y.lo > 0) | (y.hi < 0))
        if bool(zero.any()):
            zero = zero.expand(lo.shape)
            lo, hi = torch.where(zero, torch.zeros_like(lo), lo), torch.where(zero, torch.zeros_like(hi), hi)
    if not dtype.is_floating_point and dtype != torch.bool and kind != "div":
        # an integer result: its widened float64 bounds round inward to integers
        lo, hi = torch.ceil(lo), torch.floor(hi)
    ints = _integral_operands(kind, x, y, alpha)
    if ints is not None:
        # integer-valued floats known exactly (a position index counted by cumsum): the
        # float64 result is exact, so no widening (see BinaryError._exact_integers)
        lo, hi = torch.where(ints[0], ints[1], lo), torch.where(ints[0], ints[1], hi)
    out = Interval(lo, hi, dtype)
    L = {n: v for n, v in L.items() if not ((n == xname and (xs or x.is_point)) or (n == yname and (ys or y.is_point)))}
    if not dtype.is_floating_point:
        if dtype == torch.bool or kind == "div":
            return RuleResult(out=out, lipschitz={}, curvature=0.0)
        ierr = BinaryError(kind if kind in ("add", "mul") else "max", x, y, out, None if xs else xname, None if ys else yname, alpha, ys, xs, integer=True)
        return RuleResult(out=out, lipschitz={}, curvature=0.0, error=ierr)
    err = BinaryError(
        kind=kind if kind in ("add", "mul", "div") else "max",
        x=x,
        y=y,
        out=out,
        xname=None if xs else xname,
        yname=None if ys else yname,
        alpha=alpha,
        x_scalar=xs,
        y_scalar=ys,
        ints=ints,
    )
    if kind == "mul" and rms is not None:
        ch, xarg = rms
        err = MinError((err, rmsnorm.RmsNormError(x if xarg == xname else y, out, ch, xarg)))  # type: ignore[assignment]
    # NB: the scalar itself is held in the storage format (``x + 1e5`` is inf in fp16 even
    # when the result fits): report it to the overflow check as an intermediate.
    internal = max([float(v.max_abs()) for v, s in ((x, xs), (y, ys)) if s] or [0.0])
    return RuleResult(out=out, lipschitz=L, curvature=kappa, error=err, internal_max=internal, flops=float(out.numel()))


@register_rule([aten.add.Tensor, aten.add.Scalar])
def add_rule(inp: RuleInput) -> RuleResult:
    """self + alpha * other."""
    return _binary(inp, "add", "self", "other", float(inp.get("alpha", 1)))  # type: ignore[arg-type]


@register_rule([aten.sub.Tensor, aten.sub.Scalar])
def sub_rule(inp: RuleInput) -> RuleResult:
    """self - alpha * other."""
    return _binary(inp, "add", "self", "other", -float(inp.get("alpha", 1)))  # type: ignore[arg-type]


@register_rule([aten.rsub.Scalar, aten.rsub.Tensor])
def rsub_rule(inp: RuleInput) -> RuleResult:
    """other - alpha * self."""
    return _binary(inp, "add", "self", "other", -float(inp.get("alpha", 1)), swap=True)  # type: ignore[arg-type]


@register_rule([aten.mul.Tensor, aten.mul.Scalar])
def mul_rule(inp: RuleInput) -> RuleResult:
    """self * other."""
    return _binary(inp, "mul", "self", "other")


@register_rule([aten.div.Tensor, aten.div.Scalar])
def div_rule(inp: RuleInput) -> RuleResult:
    """self / other (true division; unknown where the divisor's box contains 0)."""
    return _binary(inp, "div", "self", "other")


@register_rule([aten.maximum.default, aten.minimum.default])
def maximum_rule(inp: RuleInput) -> RuleResult:
    """Elementwise max/min: exact, 1-Lipschitz."""
    return _binary(inp, "max" if inp.op is aten.maximum.default else "min", "self", "other")


@dataclass(frozen=True)
class ClampTensorError:
    """``min(max(x, a), b)``: exact in any format, 1-Lipschitz in the max norm jointly in
    (x, a, b), so its error is at most the largest of the three inputs' errors."""

    names: tuple[str, ...]
    out_shape: tuple[int, ...]

    def propagate(self, ctx: ErrorContext):
        nd = len(self.out_shape)
        es = [ctx.err(n) for n in self.names]
        es = [pad_left(e, nd) for e in es if e is not None]
        if not es:
            return None
        acc = torch.zeros((ctx.F, *self.out_shape), dtype=F64)
        for e in es:
            acc = torch.maximum(acc, e)
        return acc


@register_rule([aten.clamp.Tensor])
def clamp_tensor_rule(inp: RuleInput) -> RuleResult:
    """clamp(x, min=a, max=b) with tensor bounds: ``min(max(x, a), b)`` (PyTorch's order, so
    a > b gives b), nondecreasing in every argument: ``[g(lo), g(hi)]`` is the exact image;
    L = 1 for each argument, curvature 0 away from the kinks (as clamp's)."""
    x = inp.tensor("self")
    a, b = inp.args.get("min"), inp.args.get("max")
    if not x.is_float or any(isinstance(t, Interval) and not t.is_float for t in (a, b)):
        raise NotImplementedError("clamp of integer tensors")
    lo, hi = x.lo, x.hi
    if isinstance(a, Interval):
        lo, hi = torch.maximum(lo, a.lo), torch.maximum(hi, a.hi)
    if isinstance(b, Interval):
        lo, hi = torch.minimum(lo, b.lo), torch.minimum(hi, b.hi)
    shape = tuple(inp.out_shapes[0])
    lo, hi = lo.expand(shape).contiguous(), hi.expand(shape).contiguous()
    names = tuple(n for n, v in (("self", x), ("min", a), ("max", b)) if isinstance(v, Interval))
    return RuleResult(out=Interval(lo, hi, inp.out_dtypes[0]), lipschitz={n: 1.0 for n in names}, curvature=0.0, error=ClampTensorError(names, shape))


def _evaluated(ctx: ErrorContext, out: Interval, P: torch.Tensor, ulps: float, nd: int) -> torch.Tensor:
    """The propagated error ``P`` plus a function's evaluation in the accumulation format
    (``ulps`` of the computed value) and the store."""
    ymag = fmag(out).unsqueeze(0) + P
    local = ctx.b(ctx.u_acc, nd) * ulps * ymag
    return P + local + ctx.store(ymag + local, nd)


@dataclass(frozen=True)
class PowError:
    x: Interval
    out: Interval
    n: float
    ulps: float

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        e = ctx.err("self")
        xm = fmag(self.x).unsqueeze(0)
        if e is None:
            P = torch.zeros((ctx.F, *self.out.shape), dtype=F64)
        else:
            # Mean value theorem on the inflated box: |x^n - y^n| <= |n| sup|t|^(n-1) e.
            n = self.n
            if n >= 1:
                P = safe_mul(abs(n) * (xm + e) ** (n - 1), e)
            else:
                lo = (self.x.lo.unsqueeze(0) - e)
                P = torch.where(lo > 0, safe_mul(abs(n) * lo ** (n - 1), e), torch.full_like(e, INF))
                P = torch.where(e == 0, torch.zeros_like(P), P)
        if not held_in_every_format(self.n):
            # PyTorch's kernels cast a Python-scalar exponent to the tensor's dtype (bf16:
            # 2.2 -> 2.203125), so the computed power is x^n' with |n' - n| <= u |n|:
            # |x^n' - x^n| <= |x^n| expm1(|ln x| u |n|) on the (inflated, positive) box.
            e0 = e if e is not None else torch.zeros_like(xm)
            lo = self.x.lo.unsqueeze(0) - e0
            ln = torch.maximum(torch.log(lo).abs(), torch.log(xm + e0).abs())
            ym = fmag(self.out).unsqueeze(0) + P
            T = ym * torch.expm1(ln * ctx.b(ctx.u, nd) * abs(self.n)) * (1 + 2.0**-40)
            P = P + torch.where(lo > 0, T, torch.full_like(T, INF))
        return _evaluated(ctx, self.out, P, self.ulps, nd)


@register_rule([aten.pow.Tensor_Scalar])
def pow_rule(inp: RuleInput) -> RuleResult:
    """x ** n for a constant n: integers n >= 1 on any box; real n on a positive box."""
    x = inp.tensor("self")
    n = float(inp.args["exponent"])  # type: ignore[arg-type]
    if x.is_point and n in (0.0, 1.0):
        return RuleResult(out=Interval.point(torch.pow(x.value.to(F64), n)))
    if x.is_point:  # float64's power is rounded: widen it like any other box
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    m, M = x.mig, x.mag
    if n == int(n) and n >= 1:
        k = int(n)
        if k % 2 == 0:
            lo, hi = m**k, M**k
        else:
            lo, hi = x.lo**k, x.hi**k
        L = finite_max(k * M ** (k - 1))
        kappa = 0.5 * k * (k - 1) * finite_max(M ** (k - 2)) if k >= 2 else 0.0
        if finite_max(M) > 0:  # powers of tiny magnitudes underflow to 0: not a bound
            L, kappa = max(L, 2.0**-1074), max(kappa, 2.0**-1074) if k >= 2 else kappa
        ulps = max(k - 1, 1)
    elif n == 0:
        return RuleResult(out=Interval.point(torch.ones(x.shape, dtype=F64)))
    else:
        if not bool((x.lo > 0).all()):
            raise NotImplementedError(f"pow with exponent {n} on a box that reaches 0 or below")
        a, b = x.lo**n, x.hi**n
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        d = torch.maximum(x.lo ** (n - 1), x.hi ** (n - 1))
        L = finite_max(abs(n) * d)
        d2 = torch.maximum(x.lo ** (n - 2), x.hi ** (n - 2))
        kappa = 0.5 * abs(n * (n - 1)) * finite_max(d2)
        ulps = 4
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)
    return RuleResult(
        out=out, lipschitz={"self": L * (1 + 2.0**-40)}, curvature=kappa * (1 + 2.0**-40), error=PowError(x, out, n, ulps)
    )


@dataclass(frozen=True)
class PowScalarError:
    """``c ** x`` for a constant c > 0 (``pow.Scalar``): ``exp(x ln c)``. The input's error
    costs ``|ln c| sup c^t e`` over the inflated box; the kernel rounds c to the tensor's
    dtype (as it does a scalar exponent, see :class:`PowError`), so the computed power is
    ``c'^t`` with ``|c' - c| <= u c``: ``|c'^t - c^t| <= c^t expm1(|t| u / (1 - u))``; then
    the evaluation (``ulps``) and the store."""

    x: Interval
    out: Interval
    c: float
    ulps: float

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        e = ctx.err("exponent")
        e0 = torch.zeros((1,) * (nd + 1), dtype=F64) if e is None else e
        lo, hi = self.x.lo.unsqueeze(0) - e0, self.x.hi.unsqueeze(0) + e0
        lnc = abs(math.log(self.c))
        top = torch.maximum(torch.pow(self.c, lo), torch.pow(self.c, hi)) * (1 + 2.0**-40)
        P = torch.zeros_like(top) if e is None else safe_mul(lnc * top, e0)
        if not held_in_every_format(self.c):
            u = ctx.b(ctx.u, nd)
            tmax = torch.maximum(lo.abs(), hi.abs())
            P = P + top * torch.expm1(tmax * u / (1 - u)) * (1 + 2.0**-40)
        P = P.expand((ctx.F, *self.out.shape))
        return _evaluated(ctx, self.out, P, self.ulps, nd)


@register_rule([aten.pow.Scalar])
def pow_scalar_rule(inp: RuleInput) -> RuleResult:
    """``c ** x`` for a constant c > 0: monotone (increasing for c > 1), L = |ln c| sup c^x,
    kappa = (ln c)^2 sup c^x / 2. c <= 0 is declined (NaN or sign changes)."""
    c = inp.args["self"]
    x = inp.tensor("exponent")
    if isinstance(c, Interval) or not isinstance(c, (int, float)) or not x.is_float:
        raise NotImplementedError("pow with a tensor base and a scalar exponent is pow.Tensor_Scalar")
    c = float(c)
    if not c > 0 or not math.isfinite(c):
        raise NotImplementedError(f"pow of the base {c} (not positive): NaN or alternating signs")
    if c == 1.0:
        return RuleResult(out=Interval.point(torch.ones(x.shape, dtype=F64)))
    if x.is_point:  # float64's power is rounded: a box
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    a, b = torch.pow(c, x.lo), torch.pow(c, x.hi)
    lo, hi = widen(torch.minimum(a, b), torch.maximum(a, b))
    out = Interval(lo.clamp(min=0), hi, x.dtype)
    top = finite_max(torch.maximum(a, b)) if bool(torch.isfinite(torch.maximum(a, b)).all()) else INF
    lnc = abs(math.log(c))
    return RuleResult(
        out=out, lipschitz={"exponent": lnc * top * (1 + 2.0**-40)}, curvature=0.5 * lnc * lnc * top * (1 + 2.0**-40),
        error=PowScalarError(x, out, c, FUNCTION_ULPS_POW),
    )


#: the pow kernels' evaluation error (certifier.formats.FUNCTION_ULPS["pow"])
FUNCTION_ULPS_POW = 4.0


@dataclass(frozen=True)
class PowTensorError:
    """``x ** n`` with a known exponent tensor n (``pow.Tensor_Tensor``: ALiBi slopes
    ``base ** arange``): per element, as :class:`PowError` for an exactly held exponent."""

    x: Interval
    out: Interval
    n: torch.Tensor

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        e = ctx.err("self")
        n = self.n.expand(self.out.shape)
        en = ctx.err("exponent")  # the exponent as the kernel reads it (cast to the format)
        frac = n != torch.round(n)
        if e is None:
            P = torch.zeros((ctx.F, *self.out.shape), dtype=F64)
        else:
            e = pad_left(e, nd).expand((ctx.F, *self.out.shape))
            xm = fmag(self.x).expand(self.out.shape).unsqueeze(0)
            lo = self.x.lo.expand(self.out.shape).unsqueeze(0) - e
            up_ = safe_mul(n.abs() * (xm + e) ** (n - 1), e)
            low = torch.where(lo > 0, safe_mul(n.abs() * lo ** (n - 1), e), torch.full_like(e, INF))
            # n >= 1: |t|^(n-1) is largest at the inflated box's magnitude; n < 1: at its
            # lower end, which must stay positive
            # n >= 1 on a box through 0 is fine for integers; a fractional n needs x^ > 0
            P = torch.where((n >= 1) & ~(frac & (lo <= 0)), up_, low)
            P = torch.where((e == 0) | (n == 0), torch.zeros_like(P), P)
        if en is not None and bool(en.any()):
            # an exponent the format does not hold exactly (integers up to 2^p are held):
            # not modelled, so unbounded there
            P = torch.where(pad_left(en, nd).expand_as(P) > 0, torch.full_like(P, INF), P)
        return _evaluated(ctx, self.out, P, FUNCTION_ULPS_POW, nd)


@register_rule([aten.pow.Tensor_Tensor])
def pow_tensor_rule(inp: RuleInput) -> RuleResult:
    """``x ** n`` with a known exponent tensor: integers on any box, any n on a positive box
    (monotone pieces; even powers reach their minimum 0 inside a box through 0); a computed
    exponent is declined."""
    x, n_iv = inp.tensor("self"), inp.tensor("exponent")
    if not n_iv.is_point:
        raise NotImplementedError("pow with a computed exponent tensor")
    if not x.is_float:
        raise NotImplementedError("pow of an integer tensor")
    n = n_iv.value.to(F64)
    if not bool(torch.isfinite(n).all()):
        raise NotImplementedError("pow with an infinite exponent")
    if x.is_point:
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    shape = tuple(inp.out_shapes[0])
    lo_, hi_ = x.lo.expand(shape), x.hi.expand(shape)
    nn_ = n.expand(shape)
    pos = lo_ > 0
    integral = nn_ == torch.round(nn_)
    if not bool((pos | (integral & (nn_ >= 0))).all()):
        raise NotImplementedError("pow with a negative or fractional exponent on a box that reaches 0 or below")
    a, b = torch.pow(lo_, nn_), torch.pow(hi_, nn_)
    # integer n on a box through 0: even powers reach 0 (the minimum), odd ones are monotone
    even = (nn_ % 2 == 0) & ~pos & (hi_ > 0)
    lo = torch.where(even, torch.zeros_like(a), torch.minimum(a, b))
    hi = torch.maximum(a, b)
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)
    M = torch.maximum(lo_.abs(), hi_.abs())
    mn = torch.where(pos, lo_, torch.zeros_like(lo_))
    d1 = torch.where(nn_ >= 1, nn_.abs() * M ** (nn_ - 1), nn_.abs() * torch.where(pos, mn, torch.full_like(mn, INF)) ** (nn_ - 1))
    d2 = torch.where(nn_ >= 2, (nn_ * (nn_ - 1)).abs() * M ** (nn_ - 2), (nn_ * (nn_ - 1)).abs() * torch.where(pos, mn, torch.full_like(mn, INF)) ** (nn_ - 2))
    d1 = torch.where(nn_ == 0, torch.zeros_like(d1), d1)
    d2 = torch.where((nn_ == 0) | (nn_ == 1), torch.zeros_like(d2), d2)
    L = finite_max(d1) if bool(torch.isfinite(d1).all()) else INF
    k = 0.5 * finite_max(d2) if bool(torch.isfinite(d2).all()) else INF
    return RuleResult(out=out, lipschitz={"self": L * (1 + 2.0**-40)}, curvature=k * (1 + 2.0**-40), error=PowTensorError(x, out, n))
