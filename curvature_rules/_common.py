"""Helpers shared by the rule families: binding, broadcasting, error-model building blocks."""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from certifier.interval import INF, Interval
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult

F64 = torch.float64


def finite_max(t: torch.Tensor) -> float:
    """max of a tensor as a float (0 for an empty tensor)."""
    if t.numel() == 0:
        return 0.0
    v = float(t.max())
    return INF if v != v else v


def safe_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a*b for non-negative bounds where 0*inf counts as 0 (a zero factor is exact)."""
    p = a * b  # a fresh tensor: cleaned in place (only 0 * inf is NaN here)
    return p.nan_to_num_(nan=0.0, posinf=INF, neginf=-INF)


def pad_left(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a per-configuration error tensor ``(F, *s)`` as ``(F, 1, ..., *s)`` of ``1+ndim`` dims."""
    missing = ndim - (t.dim() - 1)
    if missing <= 0:
        return t
    return t.reshape(t.shape[:1] + (1,) * missing + t.shape[1:])


def zeros_err(ctx: ErrorContext, shape: Sequence[int]) -> torch.Tensor:
    return torch.zeros((ctx.F, *shape), dtype=F64)


def held_in_every_format(v: float) -> bool:
    """v is a value of every format: 0, or 3 significant bits (fp8_e5m2's precision) within
    fp8_e4m3's normal range [2^-6, 448] (the narrowest)."""
    if v == 0:
        return True
    m, _ = math.frexp(abs(v))
    return (m * 8).is_integer() and 2.0**-6 <= abs(v) <= 448.0


#: An exactly infinite element stands for a value beyond 2^64 in magnitude (an attention
#: mask's finfo.min becomes one, certifier.walker._mask_markers); a finite value next to it
#: (an added score, its error) must stay within this for it to remain one.
MARKER_SLACK = 2.0**40


def exact_infinite(iv: Interval) -> torch.Tensor | None:
    """Elements whose value is the same infinity for every input (e.g. a -inf attention mask);
    None when the interval is bounded (the common case, checked once and cached)."""
    if iv.is_bounded():
        return None
    lo, hi = iv.lo, iv.hi
    return (lo == hi) & torch.isinf(lo)


def fmag(iv: Interval) -> torch.Tensor:
    """|x| bound where exactly-infinite elements count as 0 (their rounding error is 0)."""
    m = iv.mag
    ex = exact_infinite(iv)
    if ex is not None and bool(ex.any()):
        m = torch.where(ex, torch.zeros_like(m), m)
    return m


def shape_only(fn: Callable[[torch.Tensor], object]) -> Callable[[torch.Tensor], object]:
    """Batch a per-tensor shape function over the leading configuration dimension (a loop
    where the op has no batching rule, e.g. a clone to channels_last)."""
    return lambda t: map_configs(fn, t)


def map_configs(fn: Callable[[torch.Tensor], object], t: torch.Tensor) -> object:
    try:
        return torch.vmap(fn)(t)
    except RuntimeError:
        outs = [fn(t[i]) for i in range(t.shape[0])]
        if isinstance(outs[0], torch.Tensor):
            return torch.stack(outs)  # type: ignore[arg-type]
        return type(outs[0])(torch.stack([o[j] for o in outs]) for j in range(len(outs[0])))  # type: ignore[index,arg-type]


@dataclass(frozen=True)
class ShapeError:
    """Exact element selection/rearrangement: errors move with their elements."""

    fn: Callable[[torch.Tensor], object]
    arg: str
    out_shape: tuple[int, ...] | tuple[tuple[int, ...], ...]
    multi: bool = False

    def propagate(self, ctx: ErrorContext):
        e = ctx.err(self.arg)
        if e is None:
            return None
        return map_configs(self.fn, e)

    def propagate_rel(self, ctx: ErrorContext):
        """Elements move with their relative bounds; bounds constant per configuration (a
        cast, an embedding's rows) stay constant without being materialised."""
        if self.multi:
            return None
        r = ctx.rel(self.arg)
        e = ctx.err(self.arg)
        if r is None or e is None:
            return None
        nd = len(self.out_shape)
        R, A = r
        if R[0].numel() == 1 and A[0].numel() == 1:
            return R.reshape((ctx.F,) + (1,) * nd), A.reshape((ctx.F,) + (1,) * nd)
        R, A = (map_configs(self.fn, t.expand_as(e).contiguous()) for t in (R, A))
        return R, A


@dataclass(frozen=True)
class StepError:
    """A nondecreasing step function g of a float (floor, ceil, round, trunc, sign, and the
    truncation of a cast to an integer type): the computed input lies in ``[lo - e, hi +
    e]``, so the computed and exact outputs differ by at most ``g(hi + e) - g(lo - e)`` (0
    where that box holds no jump: a constant bucket index computed through log in bf16 stays
    exact). g of a value of a format is a value of that format (an integer no wider than
    its input, or +-1, 0): no rounding of its own. ``limits``: the integer type's range,
    beyond which a cast is undefined (unbounded there)."""

    x: Interval
    fn: Callable[[torch.Tensor], torch.Tensor]
    limits: tuple[float, float] | None = None

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return None
        a, b = self.x.lo.unsqueeze(0) - e, self.x.hi.unsqueeze(0) + e
        d = (self.fn(b) - self.fn(a)).nan_to_num(nan=INF)
        if self.limits is None:
            return d
        ok = (a > self.limits[0]) & (b < self.limits[1])
        return torch.where(ok, d, torch.full_like(d, INF))


@dataclass(frozen=True)
class MinError:
    """The smaller of several sound error models of one node."""

    models: tuple

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        out = None
        for m in self.models:
            e = m.propagate(ctx)
            out = e if out is None else torch.minimum(out, e)
        return out


@dataclass(frozen=True)
class ElementwiseError:
    """Error model of ``y = f(x)`` applied elementwise (see curvature_rules.elementwise).

    Propagation uses the mean value theorem on the *inflated* box ``[lo - e, hi + e]`` that
    contains both the exact and the computed input, so it is not first-order only:
    ``|f(x^) - f(x)| <= sup_{[lo-e, hi+e]} |f'| * e``. The evaluation in the accumulation
    format adds ``ulps * u_acc * |f(x^)|`` and storing adds ``u * |y^| + eta/2`` (ctx.store:
    ``u`` times the binade of ``|y^|``).
    ``exact``: the op is exact in any format (relu, neg, abs): no rounding at all.
    """

    x: Interval
    y: Interval
    dsup: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # sup|f'| on [lo, hi], elementwise
    ulps: float
    exact: bool = False
    arg: str = "self"
    zero_below: float | None = None  # relu-like: f is constant 0 where hi + e <= zero_below
    #: A global bound on |f''|, when one exists: then sup|f'| on [lo - e, hi + e] is at most
    #: sup|f'| on [lo, hi] plus d2max * e (mean value theorem applied to f'), which avoids
    #: re-evaluating dsup on every configuration's inflated box.
    d2max: float | None = None
    #: inf f' on [lo, hi], elementwise (signed), where the rule knows it: with ``dsup`` it
    #: brackets the mean-value slope (f(x^) - f(x)) / (x^ - x), which the adjoint pass
    #: (certifier.adjoint) carries with its sign. None: only |slope| <= dsup is known.
    dinf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: sup f' on [lo, hi] (signed), where it is below ``dsup`` (a decreasing f: rsqrt);
    #: None: ``dsup`` is the upper slope the adjoint pass takes.
    dtop: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def carried(self, ctx: ErrorContext, e: torch.Tensor | None) -> torch.Tensor | None:
        """A bound of ``|f(x^) - f(x)|`` for an input error bounded by ``e`` (None: exact)."""
        if e is None:
            return None  # exact input: nothing to carry
        if self.d2max is not None:
            d0 = self.dsup(self.x.lo, self.x.hi).unsqueeze(0)
            prop = (e * self.d2max).add_(d0).mul_(e)  # (d0 + d2max e) e, fresh tensor
            return prop.nan_to_num_(nan=0.0, posinf=INF, neginf=-INF)  # 0 * inf counts as 0
        lo = self.x.lo.unsqueeze(0) - e
        hi = self.x.hi.unsqueeze(0) + e
        prop = safe_mul(self.dsup(lo, hi), e)
        if self.zero_below is not None:
            prop = torch.where(hi <= self.zero_below, torch.zeros_like(prop), prop)
        return prop

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        e = ctx.err(self.arg)
        ymag = fmag(self.y)
        prop = self.carried(ctx, e)
        if self.exact:
            return torch.zeros((ctx.F, *self.y.shape), dtype=F64) if prop is None else prop
        nd = len(self.y.shape)
        # NB: in place on fresh tensors only; same operations and order as
        # prop + fn_err + store(vmag + fn_err) with vmag = |y| + prop.
        if prop is None:
            vmag = ymag.unsqueeze(0).expand((ctx.F, *self.y.shape)).clone()
        else:
            vmag = ymag.unsqueeze(0) + prop
        fn_err = vmag * (ctx.b(ctx.u_acc, nd) * self.ulps)
        # ``ulps`` units in the last place of a subnormal result are ulps * eta = 2 ulps he
        fn_err.add_(ctx.b(ctx.he_acc, nd) * max(1.0, 2.0 * self.ulps))
        stored = ctx.store(vmag.add_(fn_err), nd)
        if prop is not None:
            fn_err.add_(prop)
        return fn_err.add_(stored)


@dataclass(frozen=True)
class ExpError(ElementwiseError):
    """exp's error model, which also gives a *relative* bound (see ``propagate_rel``).
    ``rate`` >= c for ``e^(c x)`` (exp2: ln 2, rounded up)."""

    rate: float = 1.0

    def propagate_rel(self, ctx: ErrorContext):
        """exp(x^) = exp(x) exp(x^ - x), so an input error |x^ - x| <= e is a relative
        error of at most expm1(rate e) (either sign); the evaluation (``ulps u_acc`` relative,
        ``2 ulps he_acc`` absolute where it underflows) and the storage (``u``, ``he``) follow:
        R = (1 + expm1(rate e))(1 + ulps u_acc)(1 + u) - 1, A = 2 ulps he_acc (1 + u) + he."""
        nd = len(self.y.shape)
        e = ctx.err(self.arg)
        r0 = torch.zeros((ctx.F,) + (1,) * nd, dtype=F64) if e is None else torch.expm1(e * self.rate) * (1 + 2.0**-50)
        ua = ctx.b(ctx.u_acc, nd) * self.ulps
        u = ctx.b(ctx.u, nd)
        # (1 + r0)(1 + ua)(1 + u) - 1 expanded into non-negative terms: in float64, 1 + u
        # rounds to 1 for fp64's u = 2^-53
        R = (r0 + ua + u + r0 * ua + (r0 + ua + r0 * ua) * u) * (1 + 2.0**-48)
        A = ctx.b(ctx.he_acc, nd) * max(1.0, 2.0 * self.ulps) * (1 + u) + ctx.b(ctx.he, nd)
        return R, A


def _log_ratio_bound(t: torch.Tensor) -> torch.Tensor:
    """``|log q| <= -log(1 - t)`` for ``|q - 1| <= t < 1`` (``-log(1 - t) >= log(1 + t)``);
    inf where ``t >= 1`` (q may reach 0), rounded up for its float64 evaluation."""
    t = t * (1 + 2.0**-50)
    out = -torch.log1p(-t.clamp(max=1.0)) * (1 + 2.0**-50)
    return torch.where(t < 1, out, torch.full_like(out, INF))


@dataclass(frozen=True)
class LogError(ElementwiseError):
    """log's error model, which also reads a *relative* input bound when one is known.

    With ``|x^ - x| <= R |x| + A`` and ``x >= lo > 0`` on the box, ``x^ / x = 1 + d`` with
    ``|d| <= R + A / lo =: t``, so ``|log x^ - log x| = |log(1 + d)| <= -log(1 - t)`` for
    t < 1. This is what makes ``log(sum(exp(z)))`` (logsumexp, softplus) bounded where the
    sum's absolute error is large next to its smallest value. The smaller of this and the
    mean-value bound is carried. ``rel_scale`` >= 1 / ln b for log_b (log2, log10)."""

    rel_scale: float = 1.0

    def _rel_t(self, R: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        lo = self.x.lo.unsqueeze(0)
        q = torch.where(lo > 0, A / lo, torch.full_like(lo, INF)) if bool((A > 0).any()) else torch.zeros_like(lo)
        return R + q.nan_to_num(nan=INF)

    def carried(self, ctx: ErrorContext, e: torch.Tensor | None) -> torch.Tensor | None:
        prop = super().carried(ctx, e)
        if prop is None:
            return None
        rel = ctx.rel(self.arg)
        if rel is None:
            return prop
        alt = _log_ratio_bound(self._rel_t(*rel)) * self.rel_scale
        return torch.minimum(prop, alt.expand_as(prop))


@dataclass(frozen=True)
class Log1pError(LogError):
    """log1p's: ``(1 + x^) / (1 + x) = 1 + (x^ - x) / (1 + x)`` with
    ``|x^ - x| / (1 + x) <= R |x| / (1 + x) + A / (1 + lo) =: t``; ``|x| / (1 + x)`` is at
    most ``max(-lo / (1 + lo), hi / (1 + hi))`` on the box (lo > -1), then as for log."""

    def _rel_t(self, R: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        lo, hi = self.x.lo.unsqueeze(0), self.x.hi.unsqueeze(0)
        ok = lo > -1
        one_lo = torch.where(ok, 1 + lo, torch.ones_like(lo))
        s = torch.maximum((-lo).clamp(min=0) / one_lo, hi.clamp(min=0) / (1 + hi.clamp(min=0)))
        s = torch.where(ok, s * (1 + 2.0**-50), torch.full_like(s, INF))
        q = torch.where(ok, A / one_lo * (1 + 2.0**-50), torch.full_like(lo, INF))
        return (safe_mul(R, s) + q).nan_to_num(nan=INF)


def one_input_result(
    inp: RuleInput,
    out: Interval,
    dsup: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    curvature: float,
    ulps: float,
    *,
    exact: bool = False,
    arg: str = "self",
    zero_below: float | None = None,
    d2max: float | None = None,
    dinf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    model: type = ElementwiseError,
    dtop: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> RuleResult:
    """Result of an elementwise one-input op, with its Lipschitz bound from ``dsup``."""
    x = inp.tensor(arg)
    if not x.is_float:
        return RuleResult(out=out, lipschitz={}, curvature=0.0, error=None)
    L = finite_max(dsup(x.lo, x.hi)) if x.numel() else 0.0
    return RuleResult(
        out=out,
        lipschitz={arg: L},
        curvature=curvature,
        error=model(x, out, dsup, ulps, exact=exact, arg=arg, zero_below=zero_below, d2max=d2max, dinf=dinf, dtop=dtop),
    )
