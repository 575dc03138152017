"""Elementwise functions of one tensor.

Ops: relu, leaky_relu, hardtanh, clamp, abs, neg, exp, expm1, log, log1p, sqrt, rsqrt,
reciprocal, tanh, sigmoid, erf, gelu (erf and tanh forms), silu, softplus, sin, cos, exp2,
log2, log10, elu (with alpha, scale, input_scale: F.elu and F.selu), atan, sinh, cosh, asinh,
erfc, asin, acos, atanh; the step
functions floor, ceil, round, trunc and sign (``curvature_rules._common.StepError``).

For each function f we give (all elementwise over the input box [lo, hi]):

* the image of [lo, hi] (monotone maps use the endpoints; GELU and SiLU have a single
  minimum at a known point, DESIGN's ``unimodal`` combinator);
* ``dsup(lo, hi) = sup |f'|`` on the box: the elementwise gain of an input error and, maxed
  over elements, the Lipschitz constant;
* ``kappa = 1/2 sup |f''|`` on the box.

Where f' or f'' has interior extrema (tanh, sigmoid, erf, GELU, SiLU) their values are
computed once by :func:`grid_sup`: a sweep of a fine grid plus a Lipschitz margin, which is
an upper bound by construction. Reference values (DESIGN 4.1): GELU sup|f'| = 1.1285 (not
1.1), kappa = 0.399; SiLU 1.0998 / 0.25; tanh 1 / 0.385; sigmoid 1/4 / 0.048.

Rounding model: f is evaluated in the accumulation format with ``ulps`` units of error
relative to |f(x^)| (formats.FUNCTION_ULPS), then stored. GELU's ``0.5 x (1 + erf(x/sqrt 2))``
cancels for negative x, so its evaluation error is bounded relative to |x| as well.
relu, abs and neg are exact in every format.

softplus follows PyTorch's definition, which returns x itself where ``beta x > threshold``:
the smooth branch is ``log1p(e^-threshold)/beta`` above x at the switch, so f jumps down
there. On a box that stays on one side L = 1 and kappa = beta/8; across the switch the range
includes the jump and L = kappa = inf (no Lipschitz constant exists).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from certifier.formats import FUNCTION_ULPS
from certifier.interval import INF, Interval, decreasing_map, increasing_map, mig, unimodal_min_map, up, widen
from curvature_rules import rmsnorm
from curvature_rules._common import ElementwiseError, ExpError, Log1pError, LogError, MinError, StepError, finite_max, one_input_result
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64
SQRT2 = math.sqrt(2.0)


def grid_sup(fn: Callable[[torch.Tensor], torch.Tensor], lip: float, a: float, b: float, n: int = 200001) -> tuple[float, float]:
    """(sup fn, argmax) on [a, b]: grid maximum plus ``lip * h / 2`` (``lip`` bounds |fn'|)."""
    x = torch.linspace(a, b, n, dtype=F64)
    v = fn(x)
    i = int(torch.argmax(v))
    h = (b - a) / (n - 1)
    return float(v[i]) + lip * h / 2 + 1e-12, float(x[i])


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: torch.Tensor) -> torch.Tensor:
    # erfc keeps Phi's relative accuracy for x << 0, where 1 + erf(x / sqrt 2) cancels
    # (GELU's range at x = -8 would be off by 100% relative).
    return 0.5 * torch.special.erfc(-x / SQRT2)


# ---------------------------------------------------------------------- GELU (erf form)
def _gelu_d1(x):
    return _Phi(x) + x * _phi(x)


def _gelu_d2(x):
    return _phi(x) * (2 - x * x)


# Exact identities: g'' = phi (2 - x^2) so g' peaks at +-sqrt 2; |g''| <= 2 phi(0).
GELU_D1_MAX = grid_sup(_gelu_d1, 0.8, 1.0, 2.0)[0]  # g'(sqrt 2) ~ 1.1285
GELU_D1_NEG = grid_sup(lambda x: -_gelu_d1(x), 0.8, -2.0, -1.0)[0]  # -g'(-sqrt 2) ~ 0.1289
GELU_MIN_X = -0.7517915247
GELU_MIN = -0.1700  # true minimum -0.16997...
GELU_D2_GLOBAL = 2.0 / math.sqrt(2 * math.pi) + 1e-12  # |g''| = phi (2 - x^2) peaks at 0
GELU_D2_TAIL = grid_sup(lambda x: _gelu_d2(x).abs(), 1.0, SQRT2, 12.0)[0]  # ~0.108 at x = 2


def _gelu_tanh(x):
    c = math.sqrt(2 / math.pi)
    # 0.5 (1 + tanh z) = sigmoid(2 z), without the cancellation for z << 0
    return x * torch.sigmoid(2 * c * (x + 0.044715 * x**3))


def _gelu_tanh_d1(x):
    c = math.sqrt(2 / math.pi)
    z2 = 2 * c * (x + 0.044715 * x**3)
    s, t = torch.sigmoid(z2), torch.sigmoid(-z2)  # 0.5 (1 + tanh z), 0.5 (1 - tanh z)
    return s + 2 * x * s * t * c * (1 + 3 * 0.044715 * x * x)


def _num_d(fn, x, h=1e-5):
    return (fn(x + h) - fn(x - h)) / (2 * h)


# The tanh approximation: bounds from a grid over [-12, 12] (beyond, |g'| <= 1 + 1e-12 and
# |g''| < 1e-10), with a margin that covers the finite-difference error.
_x = torch.linspace(-12, 12, 240001, dtype=F64)
_d1 = _num_d(_gelu_tanh, _x)
_d2 = _num_d(lambda t: _num_d(_gelu_tanh, t), _x, 1e-4)
GELU_T_D1_MAX = float(_d1.abs().max()) + 1e-3
GELU_T_D2_MAX = float(_d2.abs().max()) + 1e-3
GELU_T_D1_NEG = float((-_d1).max()) + 1e-3  # -min g' ~ 0.129 at -1.4185
GELU_T_D1_NEG_X = float(_x[int(torch.argmin(_d1))])
GELU_T_MIN = float(_gelu_tanh(_x).min()) - 1e-3
GELU_T_MIN_X = float(_x[int(torch.argmin(_gelu_tanh(_x)))])
del _x, _d1, _d2


# ---------------------------------------------------------------------- SiLU
def _sig(x):
    return torch.sigmoid(x)


def _silu_d1(x):
    s = _sig(x)
    return s * (1 + x * (1 - s))


SILU_D1_MAX = grid_sup(_silu_d1, 0.5, 1.5, 3.5)[0]  # ~1.0998 at 2.3994
SILU_D1_NEG = grid_sup(lambda x: -_silu_d1(x), 0.5, -3.5, -1.5)[0]  # ~0.0998
SILU_MIN_X = -1.2784645428
SILU_MIN = -0.27846454 - 1e-6

TANH_D2_MAX, TANH_D2_X = 4 / (3 * math.sqrt(3)) + 1e-12, 0.6584789485
SIG_D2_MAX, SIG_D2_X = 1 / (6 * math.sqrt(3)) + 1e-12, 1.3169578969
ERF_D2_MAX, ERF_D2_X = (4 / math.sqrt(math.pi)) * math.exp(-0.5) / SQRT2 + 1e-12, 1 / SQRT2


def _mag(lo, hi):
    return torch.maximum(lo.abs(), hi.abs())


def _peak_sup(lo, hi, g: Callable[[torch.Tensor], torch.Tensor], peak_x: float, peak: float) -> torch.Tensor:
    """sup of an even function g(|x|) increasing on [0, peak_x], decreasing after."""
    m, M = mig(lo, hi), _mag(lo, hi)
    inside = (m <= peak_x) & (M >= peak_x)
    v = torch.where(M < peak_x, g(M), g(m))
    return torch.where(inside, torch.full_like(v, peak), up(v, 2.0**-40))


def _kappa(x: Interval, fn) -> float:
    if x.numel() == 0:
        return 0.0
    return 0.5 * finite_max(fn(x.lo, x.hi))


#: Absolute slack of a derivative evaluated in float64 from O(1) quantities: 1 - tanh(x)^2
#: and Phi(x) + x phi(x) cancel (at x = 20 the float64 value of 1 - tanh^2 is 0, the true one
#: 1.7e-17), so a relative margin alone does not cover them.
D_ABS = 2.0**-50


def _up(t: torch.Tensor) -> torch.Tensor:
    t = torch.where(torch.isnan(t), torch.full_like(t, INF), t)
    return up(t, 2.0**-40) + D_ABS


def _down(t: torch.Tensor) -> torch.Tensor:
    """A value <= t covering the float64 evaluation of a derivative (NaN: -inf)."""
    t = torch.where(torch.isnan(t), torch.full_like(t, -INF), t)
    return t - t.abs() * 2.0**-40 - D_ABS


def _at_mag(d1: Callable[[torch.Tensor], torch.Tensor]):
    """inf f' on [lo, hi] for an even f' that decreases in |x| (tanh, sigmoid, erf): at the
    point farthest from 0."""
    return lambda lo, hi: _down(d1(_mag(lo, hi)))


def _dip_inf(d1: Callable[[torch.Tensor], torch.Tensor], crit: float, window: float, vmin: float):
    """inf f' on [lo, hi] for an f' that falls on (-inf, crit], rises to a maximum, then falls
    (GELU: f'' = phi (2 - x^2), crit = -sqrt 2; SiLU: crit = -2.3994): the ends, and ``vmin``
    (<= f'(crit)) where crit, known within ``window``, may lie inside."""

    def dinf(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        v = _down(torch.minimum(d1(lo), d1(hi)))
        inside = (lo <= crit + window) & (hi >= crit - window)
        return torch.where(inside, torch.minimum(v, torch.full_like(v, vmin)), v)

    return dinf


def _zero_inf(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(lo)


#: inf SiLU' on a box: its f' falls to -0.0998 at x = -2.3994 (the root of x tanh(x/2) = 2).
SILU_DINF = _dip_inf(_silu_d1, -2.39936, 0.01, -SILU_D1_NEG)


# ---------------------------------------------------------------------- rules
@dataclass(frozen=True)
class ReluError(ElementwiseError):
    """relu's error: the input's error carried with slope <= 1, or, where smaller, the
    producer's error before its final rounding plus that rounding on the positive side of
    the range only (rounding to nearest keeps the sign; ErrorContext.positive_store_bound)."""

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        e = super().propagate(ctx)
        alt = getattr(ctx, "positive_store_bound", None)
        alt = None if alt is None else alt(self.arg, self.x)
        return e if alt is None else torch.minimum(e, alt)


@register_rule([aten.relu.default])
def relu_rule(inp: RuleInput) -> RuleResult:
    """max(x, 0): exact, 1-Lipschitz, piecewise linear (kappa 0 away from the kink)."""
    x = inp.tensor("self")
    out = Interval(x.lo.clamp(min=0), x.hi.clamp(min=0), x.dtype)
    dsup = lambda lo, hi: (hi > 0).to(F64)  # noqa: E731
    return one_input_result(inp, out, dsup, 0.0, 0, exact=True, zero_below=0.0, model=ReluError)


@register_rule([aten.leaky_relu.default])
def leaky_relu_rule(inp: RuleInput) -> RuleResult:
    """x if x > 0 else s*x, for a slope 0 <= s: monotone, L = max(1, s), one rounding."""
    x = inp.tensor("self")
    s = float(inp.get("negative_slope", 0.01))  # type: ignore[arg-type]
    if s < 0:
        raise NotImplementedError("leaky_relu with a negative slope")
    out = increasing_map(x, lambda t: torch.where(t > 0, t, s * t))
    return one_input_result(inp, out, lambda lo, hi: torch.full_like(lo, max(1.0, s)), 0.0, 1)


@register_rule([aten.hardtanh.default, aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default])
def clamp_rule(inp: RuleInput) -> RuleResult:
    """Clamp to [min, max]: monotone, 1-Lipschitz; the bounds themselves are rounded."""
    x = inp.tensor("self")
    names = list(inp.args.keys())
    if inp.op in (aten.hardtanh.default,):
        mn, mx = float(inp.get("min_val", -1.0)), float(inp.get("max_val", 1.0))  # type: ignore[arg-type]
    elif inp.op is aten.clamp_min.default:
        mn, mx = float(inp.args[names[1]]), INF  # type: ignore[arg-type]
    elif inp.op is aten.clamp_max.default:
        mn, mx = -INF, float(inp.args[names[1]])  # type: ignore[arg-type]
    else:
        a, b = inp.args.get("min"), inp.args.get("max")
        mn = -INF if a is None else float(a)  # type: ignore[arg-type]
        mx = INF if b is None else float(b)  # type: ignore[arg-type]
    out = Interval(x.lo.clamp(min=mn, max=mx), x.hi.clamp(min=mn, max=mx), x.dtype)
    model = functools.partial(ClampError, mn=mn, mx=mx)
    return one_input_result(inp, out, lambda lo, hi: torch.ones_like(lo), 0.0, 0, dinf=_zero_inf, model=model)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClampError(ElementwiseError):
    """clamp's rounding: the computed result is the computed input x^ itself (already held in
    the format) or a bound rounded to the format, ``fl(c)``, so
    ``|clamp(x^, fl mn, fl mx) - clamp(x, mn, mx)| <= |x^ - x| + max |fl c - c|`` over the
    bounds the computed input can reach (``|fl c - c| <= u |c| + he``; infinite past the
    format's max). No storage rounding of the result: it is a value of the format already."""

    mn: float = -INF
    mx: float = INF

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        e = ctx.err(self.arg)
        nd = len(self.y.shape)
        lo, hi = self.x.lo.unsqueeze(0), self.x.hi.unsqueeze(0)
        if e is not None:
            lo, hi = lo - e, hi + e
        charge = torch.zeros((ctx.F, *self.y.shape), dtype=F64)
        u, he = ctx.b(ctx.u, nd), ctx.b(ctx.he, nd)
        for c, side in ((self.mn, -1.0), (self.mx, 1.0)):
            if not math.isfinite(c):
                continue
            # (a bound held in the format: rounding to nearest moves it by at most u |c| + he)
            mag = torch.full((1,) * nd, abs(c), dtype=F64)
            past = ctx.int_to_format(mag) == INF  # |c| beyond the format's max: fl(c) = inf
            rc = torch.where(past, torch.full_like(u * abs(c), INF), u * abs(c) + he)
            # fl(c) binds the computed input up to max(c, fl c) (min for the upper bound)
            reach = lo <= c + rc if side < 0 else hi >= c - rc
            charge = torch.maximum(charge, torch.where(reach, rc.expand_as(charge), torch.zeros_like(charge)))
        if e is None:
            return charge
        return e.expand_as(charge) + charge


@register_rule([aten.abs.default])
def abs_rule(inp: RuleInput) -> RuleResult:
    """|x|: exact, 1-Lipschitz."""
    x = inp.tensor("self")
    out = Interval(x.mig, x.mag, x.dtype)
    return one_input_result(inp, out, lambda lo, hi: torch.ones_like(lo), 0.0, 0, exact=True)


@register_rule([aten.neg.default])
def neg_rule(inp: RuleInput) -> RuleResult:
    """-x: exact."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(-x.value))
    out = Interval(-x.hi, -x.lo, x.dtype)
    return one_input_result(inp, out, lambda lo, hi: torch.ones_like(lo), 0.0, 0, exact=True)


@register_rule([aten.exp.default])
def exp_rule(inp: RuleInput) -> RuleResult:
    """e^x: L = e^hi, kappa = e^hi / 2."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.exp)
    dsup = lambda lo, hi: _up(torch.exp(hi))  # noqa: E731
    dinf = lambda lo, hi: _down(torch.exp(lo))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, lambda lo, hi: _up(torch.exp(hi))), FUNCTION_ULPS["exp"], dinf=dinf, model=ExpError)


@register_rule([aten.expm1.default])
def expm1_rule(inp: RuleInput) -> RuleResult:
    """e^x - 1."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.expm1)
    dsup = lambda lo, hi: _up(torch.exp(hi))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, lambda lo, hi: _up(torch.exp(hi))), FUNCTION_ULPS["exp"])


def _pos_domain(x: Interval, fn, lower_edge: float = 0.0) -> Interval:
    """fn on a box above ``lower_edge``. A box reaching below it is declined (fails closed):
    fn is NaN there, and an interval cannot say "NaN" (a comparison with it would be
    decided, isnan decided False)."""
    if bool((x.lo < lower_edge).any()):
        raise NotImplementedError(f"argument may be below {lower_edge} (the result would be NaN)")
    at_edge = (x.lo == lower_edge) & (x.hi == lower_edge)
    if not bool(at_edge.any()):
        return increasing_map(x, lambda t: fn(t.clamp(min=lower_edge)))
    # elements exactly at the edge: fn's value there, exactly (log 0 = -inf, sqrt 0 = 0);
    # widening -inf would give NaN
    v = fn(torch.tensor(lower_edge, dtype=F64))
    lo, hi = widen(fn(x.lo.clamp(min=lower_edge)), fn(torch.where(at_edge, x.hi + 1, x.hi).clamp(min=lower_edge)))
    return Interval(torch.where(at_edge, v, lo), torch.where(at_edge, v, hi), x.dtype)


@register_rule([aten.log.default])
def log_rule(inp: RuleInput) -> RuleResult:
    """log x on x > 0: L = 1/lo, kappa = 1/(2 lo^2); unknown if the box reaches 0."""
    x = inp.tensor("self")
    out = _pos_domain(x, torch.log)
    dsup = lambda lo, hi: _up(torch.where(lo > 0, 1.0 / lo, torch.full_like(lo, INF)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where(lo > 0, 1.0 / (lo * lo), torch.full_like(lo, INF)))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["log"], model=LogError)


@register_rule([aten.log1p.default])
def log1p_rule(inp: RuleInput) -> RuleResult:
    """log(1 + x) on x > -1."""
    x = inp.tensor("self")
    out = _pos_domain(x, torch.log1p, -1.0)
    dsup = lambda lo, hi: _up(torch.where(lo > -1, 1.0 / (1 + lo), torch.full_like(lo, INF)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where(lo > -1, 1.0 / ((1 + lo) ** 2), torch.full_like(lo, INF)))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["log"], model=Log1pError)


@register_rule([aten.sqrt.default])
def sqrt_rule(inp: RuleInput) -> RuleResult:
    """sqrt x on x >= 0: L = 1/(2 sqrt lo), kappa = 1/(8 lo^1.5)."""
    x = inp.tensor("self")
    out = _pos_domain(x, torch.sqrt)
    out = Interval(out.lo.clamp(min=0) if bool((x.lo >= 0).all()) else out.lo, out.hi, x.dtype)
    dsup = lambda lo, hi: _up(torch.where(lo > 0, 0.5 / torch.sqrt(lo), torch.full_like(lo, INF)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where(lo > 0, 0.25 / lo ** 1.5, torch.full_like(lo, INF)))  # noqa: E731
    # f' = x^-1/2 / 2 decreases on x > 0: at least f'(hi)
    dinf = lambda lo, hi: _down(torch.where(lo > 0, 0.5 / torch.sqrt(hi), torch.zeros_like(hi))).clamp(min=0)  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["sqrt"], dinf=dinf)


@register_rule([aten.rsqrt.default])
def rsqrt_rule(inp: RuleInput) -> RuleResult:
    """1/sqrt x on x > 0: L = lo^-1.5 / 2, kappa = 3/8 lo^-2.5."""
    x = inp.tensor("self")
    pos = x.lo > 0
    lo = torch.where(pos, torch.rsqrt(x.hi), torch.zeros_like(x.lo))
    lo = torch.where(x.hi <= 0, torch.full_like(lo, -INF), lo)
    hi = torch.where(pos, torch.rsqrt(x.lo), torch.full_like(x.lo, INF))
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)
    dsup = lambda lo, hi: _up(torch.where(lo > 0, 0.5 * lo ** -1.5, torch.full_like(lo, INF)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where(lo > 0, 0.75 * lo ** -2.5, torch.full_like(lo, INF)))  # noqa: E731
    # f' = -x^-1.5 / 2 increases on x > 0: it lies in [f'(lo), f'(hi)]
    dinf = lambda lo, hi: -dsup(lo, hi)  # noqa: E731
    dtop = lambda lo, hi: -_down(torch.where(lo > 0, 0.5 * hi ** -1.5, torch.zeros_like(hi))).clamp(min=0)  # noqa: E731
    res = one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["rsqrt"], dinf=dinf, dtop=dtop)
    ch = rmsnorm.match(inp.node)
    if ch is None or res.error is None:
        return res
    # rsqrt(mean(x^2) + c) of an RMSNorm: its error measured along the segment of x
    return replace(res, error=MinError((res.error, rmsnorm.RsqrtChainError(out, ch))))


@register_rule([aten.reciprocal.default])
def reciprocal_rule(inp: RuleInput) -> RuleResult:
    """1/x on a box excluding 0: L = 1/mig^2, kappa = 1/mig^3."""
    x = inp.tensor("self")
    has0 = (x.lo <= 0) & (x.hi >= 0)
    lo = torch.where(has0, torch.full_like(x.lo, -INF), 1.0 / x.hi)
    hi = torch.where(has0, torch.full_like(x.lo, INF), 1.0 / x.lo)
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)
    dsup = lambda lo, hi: _up(torch.where((lo <= 0) & (hi >= 0), torch.full_like(lo, INF), 1.0 / mig(lo, hi) ** 2))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where((lo <= 0) & (hi >= 0), torch.full_like(lo, INF), 2.0 / mig(lo, hi) ** 3))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["div"])


@register_rule([aten.tanh.default])
def tanh_rule(inp: RuleInput) -> RuleResult:
    """tanh: L = 1 - tanh(mig)^2, kappa <= 0.385."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.tanh)
    dsup = lambda lo, hi: _up(1 - torch.tanh(mig(lo, hi)) ** 2)  # noqa: E731
    g2 = lambda a: 2 * torch.tanh(a).abs() * (1 - torch.tanh(a) ** 2)  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, TANH_D2_X, TANH_D2_MAX)  # noqa: E731
    dinf = _at_mag(lambda a: 1 - torch.tanh(a) ** 2)
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["tanh"], d2max=TANH_D2_MAX, dinf=dinf)


#: atan'' = -2x / (1 + x^2)^2: |atan''| peaks at x = 1/sqrt 3 with 9 / (8 sqrt 3).
ATAN_D2_MAX, ATAN_D2_X = 9 / (8 * math.sqrt(3)) + 1e-12, 1 / math.sqrt(3)


@register_rule([aten.atan.default])
def atan_rule(inp: RuleInput) -> RuleResult:
    """atan: increasing, L = 1 / (1 + mig^2), kappa <= 0.325."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.atan)
    d1 = lambda a: 1 / (1 + a * a)  # noqa: E731
    dsup = lambda lo, hi: _up(d1(mig(lo, hi)))  # noqa: E731
    g2 = lambda a: 2 * a.abs() / (1 + a * a) ** 2  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, ATAN_D2_X, ATAN_D2_MAX)  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["atan"], d2max=ATAN_D2_MAX, dinf=_at_mag(d1))


#: asinh'' = -x / (1 + x^2)^1.5 peaks at x = 1/sqrt 2 with 2 / (3 sqrt 3); erfc'' =
#: 4 x exp(-x^2) / sqrt(pi) peaks there too, at 2 sqrt(2 / (pi e)).
ASINH_D2_MAX = 2 / (3 * math.sqrt(3)) + 1e-12
ERFC_D2_MAX = 2 * math.sqrt(2 / (math.pi * math.e)) + 1e-12
_SQRT1_2 = 1 / math.sqrt(2)


def _check_unit_domain(x: Interval, closed: bool) -> None:
    """Decline a box reaching past [-1, 1] (``closed``) or (-1, 1): the function is NaN
    there, or infinite at the open ends."""
    bad = (x.lo < -1) | (x.hi > 1) if closed else (x.lo <= -1) | (x.hi >= 1)
    if bool(bad.any()):
        raise NotImplementedError("argument may leave the function's domain [-1, 1] (the result would be NaN or infinite)")


@register_rule([aten.sinh.default])
def sinh_rule(inp: RuleInput) -> RuleResult:
    """sinh: increasing, f' = cosh in [cosh(mig), cosh(mag)], |f''| = |sinh| <= sinh(mag)."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.sinh)
    dsup = lambda lo, hi: _up(torch.cosh(_mag(lo, hi)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.sinh(_mag(lo, hi)))  # noqa: E731
    dinf = lambda lo, hi: _down(torch.cosh(mig(lo, hi)))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["sinh"], dinf=dinf)


@register_rule([aten.cosh.default])
def cosh_rule(inp: RuleInput) -> RuleResult:
    """cosh: minimum 1 at 0, |f'| = |sinh| <= sinh(mag), f'' = cosh <= cosh(mag)."""
    x = inp.tensor("self")
    out = unimodal_min_map(x, torch.cosh, 0.0, 1.0)
    dsup = lambda lo, hi: _up(torch.sinh(_mag(lo, hi)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.cosh(_mag(lo, hi)))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["cosh"])


@register_rule([aten.asinh.default])
def asinh_rule(inp: RuleInput) -> RuleResult:
    """asinh: increasing, f' = 1 / sqrt(1 + x^2), kappa <= 0.193."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.asinh)
    d1 = lambda a: 1 / torch.sqrt(1 + a * a)  # noqa: E731
    dsup = lambda lo, hi: _up(d1(mig(lo, hi)))  # noqa: E731
    g2 = lambda a: a.abs() / (1 + a * a) ** 1.5  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, _SQRT1_2, ASINH_D2_MAX)  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["asinh"], d2max=ASINH_D2_MAX, dinf=_at_mag(d1))


@register_rule([aten.erfc.default])
def erfc_rule(inp: RuleInput) -> RuleResult:
    """erfc = 1 - erf: decreasing, |f'| = 2 exp(-x^2) / sqrt(pi), kappa <= 0.484."""
    x = inp.tensor("self")
    out = decreasing_map(x, torch.erfc)
    out = Interval(out.lo.clamp(min=0), out.hi.clamp(max=2), x.dtype)
    d1 = lambda a: 2 / math.sqrt(math.pi) * torch.exp(-a * a)  # noqa: E731
    dsup = lambda lo, hi: _up(d1(mig(lo, hi)))  # noqa: E731
    g2 = lambda a: 4 / math.sqrt(math.pi) * a.abs() * torch.exp(-a * a)  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, _SQRT1_2, ERFC_D2_MAX)  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["erfc"], d2max=ERFC_D2_MAX)


@register_rule([aten.asin.default, aten.acos.default])
def asin_rule(inp: RuleInput) -> RuleResult:
    """asin / acos on [-1, 1]: monotone, |f'| = 1 / sqrt(1 - x^2) and |f''| = |x| / (1 -
    x^2)^1.5, both largest at mag (infinite at +-1)."""
    x = inp.tensor("self")
    is_asin = inp.op is aten.asin.default
    _check_unit_domain(x, True)
    out = increasing_map(x, torch.asin) if is_asin else decreasing_map(x, torch.acos)
    d1 = lambda a: 1 / torch.sqrt((1 - a * a).clamp(min=0))  # noqa: E731
    dsup = lambda lo, hi: _up(d1(_mag(lo, hi)))  # noqa: E731
    kap = lambda lo, hi: _up(_mag(lo, hi) / (1 - _mag(lo, hi) ** 2).clamp(min=0) ** 1.5)  # noqa: E731
    dinf = (lambda lo, hi: _down(d1(mig(lo, hi)))) if is_asin else None  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["asin" if is_asin else "acos"], dinf=dinf)


@register_rule([aten.atanh.default])
def atanh_rule(inp: RuleInput) -> RuleResult:
    """atanh on (-1, 1): increasing, f' = 1 / (1 - x^2), |f''| = 2|x| / (1 - x^2)^2."""
    x = inp.tensor("self")
    _check_unit_domain(x, False)
    out = increasing_map(x, torch.atanh)
    d1 = lambda a: 1 / (1 - a * a).clamp(min=0)  # noqa: E731
    dsup = lambda lo, hi: _up(d1(_mag(lo, hi)))  # noqa: E731
    kap = lambda lo, hi: _up(2 * _mag(lo, hi) / (1 - _mag(lo, hi) ** 2).clamp(min=0) ** 2)  # noqa: E731
    dinf = lambda lo, hi: _down(d1(mig(lo, hi)))  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["atanh"], dinf=dinf)


_STEPS = {
    aten.floor.default: torch.floor,
    aten.ceil.default: torch.ceil,
    aten.round.default: torch.round,
    aten.trunc.default: torch.trunc,
    aten.sign.default: torch.sign,
}


@register_rule(list(_STEPS))
def step_rule(inp: RuleInput) -> RuleResult:
    """floor, ceil, round (half to even), trunc, sign: nondecreasing, so ``[g(lo), g(hi)]``
    is the exact image; L and kappa are 0 where g is constant on every element's box and
    infinite where a jump lies inside (a discontinuity has no finite constant)."""
    x = inp.tensor("self")
    fn = _STEPS[inp.op]
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    lo, hi = fn(x.lo), fn(x.hi)
    out = Interval(lo, hi, inp.out_dtypes[0])
    if not x.is_float:
        return RuleResult(out=out)
    const = bool((lo == hi).all())
    return RuleResult(out=out, lipschitz={"self": 0.0 if const else INF}, curvature=0.0 if const else INF, error=StepError(x, fn))


@register_rule([aten.sigmoid.default])
def sigmoid_rule(inp: RuleInput) -> RuleResult:
    """Logistic sigmoid: L = s(mig)(1 - s(mig)) <= 1/4, kappa <= 0.048."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.sigmoid)
    ds = lambda a: torch.sigmoid(a) * torch.sigmoid(-a)  # noqa: E731
    dsup = lambda lo, hi: _up(ds(mig(lo, hi)))  # noqa: E731
    g2 = lambda a: ds(a) * (1 - 2 * torch.sigmoid(a)).abs()  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, SIG_D2_X, SIG_D2_MAX)  # noqa: E731
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["sigmoid"] + 2, d2max=SIG_D2_MAX, dinf=_at_mag(ds))


@register_rule([aten.erf.default])
def erf_rule(inp: RuleInput) -> RuleResult:
    """erf: L = 2/sqrt(pi) exp(-mig^2), kappa <= 0.484."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.erf)
    c = 2 / math.sqrt(math.pi)
    dsup = lambda lo, hi: _up(c * torch.exp(-mig(lo, hi) ** 2))  # noqa: E731
    g2 = lambda a: 2 * c * a.abs() * torch.exp(-a * a)  # noqa: E731
    kap = lambda lo, hi: _peak_sup(lo, hi, g2, ERF_D2_X, ERF_D2_MAX)  # noqa: E731
    dinf = _at_mag(lambda a: c * torch.exp(-a * a))
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["erf"], d2max=ERF_D2_MAX, dinf=dinf)


def _gelu_dsup(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    v = torch.maximum(_gelu_d1(lo).abs(), _gelu_d1(hi).abs())
    v = torch.where((lo <= SQRT2) & (hi >= SQRT2), torch.full_like(v, GELU_D1_MAX), v)
    v = torch.where((lo <= -SQRT2) & (hi >= -SQRT2), torch.maximum(v, torch.full_like(v, GELU_D1_NEG)), v)
    v = torch.where(torch.isinf(lo) | torch.isinf(hi), torch.maximum(v, torch.ones_like(v)), v)
    return _up(v)


def _gelu_kappa(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    m, M = mig(lo, hi), _mag(lo, hi)
    near = torch.where(m <= SQRT2, _gelu_d2(m.clamp(max=SQRT2)).abs(), torch.zeros_like(m))
    tail = torch.where(M > SQRT2, torch.full_like(m, GELU_D2_TAIL), torch.zeros_like(m))
    return _up(torch.maximum(near, tail))


@register_rule([aten.gelu.default])
def gelu_rule(inp: RuleInput) -> RuleResult:
    """GELU x*Phi(x) (or its tanh approximation): sup|f'| = 1.1285, kappa = 0.399."""
    x = inp.tensor("self")
    approx = str(inp.get("approximate", "none"))
    if approx == "tanh":
        out = unimodal_min_map(x, _gelu_tanh, GELU_T_MIN_X, GELU_T_MIN)
        # (_down's margin, 2^-40 relative, covers the rounding of sigmoid's argument: at
        # |x| = 12 that is about 2000 ulps of 2^-52)
        dinf = _dip_inf(_gelu_tanh_d1, GELU_T_D1_NEG_X, 0.01, -GELU_T_D1_NEG)
        res = one_input_result(inp, out, lambda lo, hi: torch.full_like(lo, GELU_T_D1_MAX), 0.5 * GELU_T_D2_MAX, FUNCTION_ULPS["gelu"], dinf=dinf)
    else:
        out = unimodal_min_map(x, lambda t: t * _Phi(t), GELU_MIN_X, GELU_MIN)
        # |g''| = phi(x) |2 - x^2| <= 2 phi(0) everywhere.
        dinf = _dip_inf(_gelu_d1, -SQRT2, 1e-9, -GELU_D1_NEG)
        res = one_input_result(inp, out, _gelu_dsup, _kappa(x, _gelu_kappa), FUNCTION_ULPS["gelu"], d2max=GELU_D2_GLOBAL, dinf=dinf)
    # The float64 range: Phi's argument is rounded, and Phi's relative slope is up to
    # |t| + 1 (erf form, t = x / sqrt 2: erfc'/erfc ~ 2t) or 2|z'| (tanh form), so the value
    # carries a relative error of a few ulps of that on top of the widening.
    a = torch.maximum(x.lo.abs(), x.hi.abs())
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    rel = (2 * a * a + 4 * a + 16) * 2.0**-52 if approx != "tanh" else (8 * a * (1 + 0.14 * a * a) + 16) * 2.0**-52
    out = res.out
    res = RuleResult(out=Interval(out.lo - out.lo.abs() * rel, out.hi + out.hi.abs() * rel, out.dtype), lipschitz=res.lipschitz, curvature=res.curvature, error=res.error)
    # The evaluation cancels in 1 + erf(x/sqrt 2) for x < 0: bound it relative to |x| too.
    err = res.error
    assert isinstance(err, ElementwiseError)
    return RuleResult(out=res.out, lipschitz=res.lipschitz, curvature=res.curvature, error=AbsXError(err))


class AbsXError:
    """ElementwiseError plus ``ulps * u_acc * |x^|`` (evaluation error relative to |x|)."""

    def __init__(self, inner: ElementwiseError, ulps_x: float = 8.0) -> None:
        self.inner, self.ulps_x = inner, ulps_x

    def propagate(self, ctx):
        e = self.inner.propagate(ctx)
        xm = self.inner.x.mag.unsqueeze(0)
        ex = ctx.err(self.inner.arg)
        if ex is not None:
            xm = xm + ex
        nd = len(self.inner.y.shape)
        extra = ctx.b(ctx.u_acc, nd) * self.ulps_x * xm
        return e + extra * (1 + ctx.b(ctx.u, nd))


@register_rule([aten.silu.default])
def silu_rule(inp: RuleInput) -> RuleResult:
    """SiLU x*sigmoid(x): sup|f'| = 1.0998, kappa = 0.25."""
    x = inp.tensor("self")
    out = unimodal_min_map(x, lambda t: t * torch.sigmoid(t), SILU_MIN_X, SILU_MIN)

    def dsup(lo, hi):
        v = torch.maximum(_silu_d1(lo).abs(), _silu_d1(hi).abs())
        v = torch.where((lo <= 2.4) & (hi >= 2.39), torch.full_like(v, SILU_D1_MAX), v)
        v = torch.where((lo <= -2.39) & (hi >= -2.4), torch.maximum(v, torch.full_like(v, SILU_D1_NEG)), v)
        v = torch.where(torch.isinf(lo) | torch.isinf(hi), torch.maximum(v, torch.ones_like(v)), v)
        return _up(v)

    return one_input_result(inp, out, dsup, 0.25, FUNCTION_ULPS["sigmoid"] + 3, d2max=0.5 + 1e-12, dinf=SILU_DINF)


@register_rule([aten.softplus.default])
def softplus_rule(inp: RuleInput) -> RuleResult:
    """log(1 + e^(beta x))/beta, or x where beta x > threshold: L = 1, kappa = beta/8 on boxes
    on one side of the threshold; the threshold is a jump (L = kappa = inf across it)."""
    x = inp.tensor("self")
    beta = float(inp.get("beta", 1.0))  # type: ignore[arg-type]
    thr = float(inp.get("threshold", 20.0))  # type: ignore[arg-type]
    if beta <= 0:
        raise NotImplementedError("softplus with beta <= 0")
    # NB: PyTorch switches to x where beta x > threshold; the smooth branch at the switch
    # point t0 = threshold/beta is t0 + log1p(e^-threshold)/beta > t0, so f jumps *down* by
    # log1p(e^-threshold)/beta there (0.0033 for beta = 2, threshold = 5): f is not monotone,
    # not continuous and has no Lipschitz constant across t0.
    t0 = thr / beta
    sp = lambda t: torch.nn.functional.softplus(t.clamp(max=t0), beta, math.inf)  # noqa: E731  smooth branch
    lo_s, hi_s = x.lo * beta <= thr, x.hi * beta > thr  # box reaches the smooth / linear side
    flo = torch.where(lo_s, sp(x.lo), x.lo)
    lo = torch.where(lo_s & hi_s, torch.minimum(flo, torch.full_like(flo, t0)), flo)
    fhi = torch.where(hi_s, x.hi, sp(x.hi))
    hi = torch.where(lo_s & hi_s, torch.maximum(fhi, sp(torch.minimum(x.hi, torch.full_like(x.hi, t0)))), fhi)
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)

    def dsup(a, b):
        jump = (a * beta <= thr) & (b * beta > thr)
        return torch.where(jump, torch.full_like(a, INF), torch.ones_like(a))

    straddles = bool((lo_s & hi_s).any()) if x.numel() else False
    kappa = INF if straddles else beta / 8 + 1e-12
    return one_input_result(inp, out, dsup, kappa, FUNCTION_ULPS["log"] + FUNCTION_ULPS["exp"] + 2)


@register_rule([aten.sin.default, aten.cos.default])
def sincos_rule(inp: RuleInput) -> RuleResult:
    """sin, cos: range within [-1, 1], L = 1, kappa = 1/2."""
    x = inp.tensor("self")
    fn = torch.sin if inp.op is aten.sin.default else torch.cos
    narrow = (x.hi - x.lo) < 1e-3  # tiny boxes: endpoint hull plus the curvature term
    flo, fhi = fn(x.lo), fn(x.hi)
    w = (x.hi - x.lo).clamp(max=2.0)
    lo = torch.where(narrow, torch.minimum(flo, fhi) - w * w, torch.full_like(flo, -1.0)).clamp(min=-1)
    hi = torch.where(narrow, torch.maximum(flo, fhi) + w * w, torch.ones_like(fhi)).clamp(max=1)
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)
    return one_input_result(inp, out, lambda lo, hi: torch.ones_like(lo), 0.5, FUNCTION_ULPS["sin"])


# ---------------------------------------------------------------------- exp2, log2, log10, ELU
LN2 = math.log(2.0)
LN10 = math.log(10.0)


@register_rule([aten.exp2.default])
def exp2_rule(inp: RuleInput) -> RuleResult:
    """2^x = e^(x ln 2): increasing; f' = ln2 2^x, f'' = (ln 2)^2 2^x, so L = ln2 2^hi,
    kappa = (ln 2)^2 2^hi / 2, inf f' = ln2 2^lo."""
    x = inp.tensor("self")
    out = increasing_map(x, torch.exp2)
    dsup = lambda lo, hi: _up(LN2 * torch.exp2(hi))  # noqa: E731
    dinf = lambda lo, hi: _down(LN2 * torch.exp2(lo))  # noqa: E731
    kap = lambda lo, hi: _up((LN2 * LN2) * torch.exp2(hi))  # noqa: E731
    # an input error e is a relative error of at most 2^e - 1 = expm1(e ln 2)
    model = functools.partial(ExpError, rate=LN2 * (1 + 2.0**-50))
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["exp"], dinf=dinf, model=model)  # type: ignore[arg-type]


def _log_base_rule(inp: RuleInput, fn, inv_ln_b: float) -> RuleResult:
    """log_b x = ln x / ln b on x > 0 (declined below 0, unbounded at 0: exactly as log):
    f' = 1 / (x ln b), f'' = -1 / (x^2 ln b), so L = 1 / (lo ln b), kappa = 1 / (2 lo^2 ln b)."""
    x = inp.tensor("self")
    out = _pos_domain(x, fn)
    dsup = lambda lo, hi: _up(torch.where(lo > 0, inv_ln_b / lo, torch.full_like(lo, INF)))  # noqa: E731
    kap = lambda lo, hi: _up(torch.where(lo > 0, inv_ln_b / (lo * lo), torch.full_like(lo, INF)))  # noqa: E731
    # LogError's relative-input bound is on |ln(x^ / x)|: scaled by 1 / ln b (rounded up)
    model = functools.partial(LogError, rel_scale=inv_ln_b * (1 + 2.0**-50))
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["log"], model=model)  # type: ignore[arg-type]


@register_rule([aten.log2.default])
def log2_rule(inp: RuleInput) -> RuleResult:
    """log2 x: L = 1 / (lo ln 2), kappa = 1 / (2 lo^2 ln 2)."""
    return _log_base_rule(inp, torch.log2, 1.0 / LN2)


@register_rule([aten.log10.default])
def log10_rule(inp: RuleInput) -> RuleResult:
    """log10 x: L = 1 / (lo ln 10), kappa = 1 / (2 lo^2 ln 10)."""
    return _log_base_rule(inp, torch.log10, 1.0 / LN10)


@dataclass(frozen=True)
class EluError(ElementwiseError):
    """ELU's evaluation, where the computed input x^ may be <= 0, adds to ElementwiseError
    ``neg_abs u_acc + neg_he he_acc`` (absolute; see :func:`elu_rule`)."""

    neg_abs: float = 0.0
    neg_he: float = 0.0

    def propagate(self, ctx):
        out = super().propagate(ctx)
        e = ctx.err(self.arg)
        nd = len(self.y.shape)
        lo = self.x.lo.unsqueeze(0)
        neg = lo <= 0 if e is None else (lo - e) <= 0
        extra = (ctx.b(ctx.u_acc, nd) * self.neg_abs + ctx.b(ctx.he_acc, nd) * self.neg_he) * (1 + ctx.b(ctx.u, nd))
        return out + torch.where(neg, extra, torch.zeros_like(extra))


def _elu_coef_ok(v: float) -> bool:
    """0, or a magnitude the accumulation formats hold as normal numbers with room to spare."""
    return v == 0 or 2.0**-100 <= abs(v) <= 2.0**100


@register_rule([aten.elu.default])
def elu_rule(inp: RuleInput) -> RuleResult:
    """PyTorch's ELU: f(x) = s x for x > 0, s a expm1(c x) for x <= 0 (a = alpha, s = scale,
    c = input_scale; F.elu and F.selu reach it, F.celu decomposes to expm1 / where).

    For c >= 0 (c < 0 grows like e^(|c| |x|) and is declined) each piece is monotone and
    f(0) = 0, so the range is the hull of f(lo), f(hi) and 0 if the box holds 0 (a < 0 makes
    f non-monotone). f' = s on x > 0 and k e^(cx) with k = s a c on x <= 0 (increasing in
    |.| with x): L = max(|s| if hi > 0, |k| e^(c min(hi, 0)) if lo <= 0); inf f' likewise
    (the one-sided derivatives bracket every secant slope: f is continuous). f'' = k c e^(cx)
    on x <= 0 and 0 on x > 0: kappa = |k c| e^(c min(hi, 0)) / 2 if lo <= 0. Where k != s
    (SELU) f' jumps at 0, and kappa holds away from the kink (as for relu).

    Rounding: the kernels compute fl(fl(a) fl(s)) * expm1(fl(x fl(c))) (CUDA, recent CPU
    kernels) or (exp(x c) - 1) * (a s) (older CPU kernels, within torch >= 2.5), in the
    accumulation format. Relative to |f(x^)|:
    3 roundings of the coefficient, 2 of the argument (|z| e^z <= |expm1 z| for z <= 0, so a
    relative argument error d is at most ~d relative in expm1), ``ulps`` of expm1, 1 of the
    product: 11 u_acc (second-order terms included); exp(z) - 1 adds at most
    (ulps + 1) u_acc |a s| absolute (the rounding of e^z <= 1 before the subtraction), and
    subnormal intermediates (expm1 of a subnormal: ulps of 2 he_acc each) 10 |a s| + 1 he_acc.
    """
    x = inp.tensor("self")
    a = float(inp.get("alpha", 1.0))  # type: ignore[arg-type]
    s = float(inp.get("scale", 1.0))  # type: ignore[arg-type]
    c = float(inp.get("input_scale", 1.0))  # type: ignore[arg-type]
    k1 = s * a  # f = k1 expm1(c x) on x <= 0
    if not all(math.isfinite(v) and _elu_coef_ok(v) for v in (a, s, c, k1)):
        raise NotImplementedError(f"elu with alpha={a}, scale={s}, input_scale={c} (out of the modelled range)")
    if c < 0:
        raise NotImplementedError("elu with input_scale < 0 (f grows like exp(|c x|) as x -> -inf)")
    k = k1 * c  # f' = k e^(c x) on x <= 0

    def f(t: torch.Tensor) -> torch.Tensor:
        v = torch.where(t > 0, s * t, k1 * torch.expm1(c * t))
        return torch.nan_to_num(v, nan=0.0, posinf=INF, neginf=-INF)  # 0 * inf: a zero factor

    flo, fhi = f(x.lo), f(x.hi)
    has0 = (x.lo <= 0) & (x.hi >= 0)
    zero = torch.zeros_like(flo)
    lo = torch.where(has0, torch.minimum(torch.minimum(flo, fhi), zero), torch.minimum(flo, fhi))
    hi = torch.where(has0, torch.maximum(torch.maximum(flo, fhi), zero), torch.maximum(flo, fhi))
    lo, hi = widen(lo, hi)
    out = Interval(lo, hi, x.dtype)

    def neg_peak(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """e^(c x) at the right end of the box's part in x <= 0 (its largest value there)."""
        return torch.exp(c * hi.clamp(max=0.0))

    def dsup(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        pos = (hi > 0).to(F64) * abs(s)
        neg = (lo <= 0).to(F64) * (abs(k) * neg_peak(lo, hi)) if k != 0 else torch.zeros_like(lo)
        return _up(torch.maximum(pos, neg))

    def dinf(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        big = torch.full_like(lo, INF)
        pos = torch.where(hi > 0, torch.full_like(lo, s), big)
        if k == 0:
            neg = torch.zeros_like(lo)
        elif k > 0:  # c > 0: k e^(cx) is least at the left end
            neg = k * torch.exp(c * lo)
        else:
            neg = k * neg_peak(lo, hi)
        neg = torch.where(lo <= 0, neg, big)
        return _down(torch.minimum(pos, neg))

    def kap(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return torch.zeros_like(lo)
        return _up((lo <= 0).to(F64) * (abs(k * c) * neg_peak(lo, hi)))

    model = functools.partial(
        EluError,
        neg_abs=(FUNCTION_ULPS["exp"] + 1) * abs(k1) * (1 + 2.0**-20),
        neg_he=(10 * abs(k1) + 1) * (1 + 2.0**-20),
    )
    return one_input_result(inp, out, dsup, _kappa(x, kap), FUNCTION_ULPS["exp"] + 7, dinf=dinf, model=model)  # type: ignore[arg-type]
