"""RMS normalisation, ``y = x * rsqrt(mean(x^2, dims, keepdim=True) + c)``, as one unit.

This is RMSNorm as Llama, Mistral, T5 and ``torch.nn.RMSNorm`` export it: ``pow`` (or ``x *
x``), ``mean``, ``add`` of a constant ``c > 0``, ``rsqrt``, ``mul``. Bounded op by op, the
chain loses the relation between x and its mean square, which every RMSNorm relies on:

* Range. ``|x_i| / sqrt(mean(x^2) + c) <= sqrt(n)`` whatever x is (``x_i^2 <= n mean(x^2)``),
  where the box product gives ``max|x| / sqrt(c)`` (88 for Llama's embeddings against 11.3).
* Rounding. The mean square's absolute error, at the box's largest magnitudes, is compared
  with its smallest value c: the rsqrt's error is unbounded as soon as ``2 max|x| e > c``.
  Measured along the segment from the exact to the computed input instead, the error of
  ``mean(x^2) + c`` is relative (the terms are non-negative) and its input part is an l2
  quantity: ``|grad rsqrt(V)| . e <= rms(x) rms(e) / V^(3/2) <= rms(e) / V``.

So the ``rsqrt`` and ``mul`` rules recognise the chain (:func:`match`) and add these bounds
to their own (the smaller is kept, :class:`curvature_rules._common.MinError`). Every node of
the chain must belong to one module, so that it runs in one format under every assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import FUNCTION_ULPS, gamma
from certifier.interval import INF, Interval, mig
from curvature_rules._common import safe_mul
from curvature_rules.registry import ErrorContext

aten = torch.ops.aten
F64 = torch.float64


def _layer_key(n: torch.fx.Node) -> object:
    """The module a node belongs to (the last ``nn_module_stack`` entry)."""
    stack = n.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


@dataclass(frozen=True)
class RmsChain:
    """A matched ``rsqrt(mean(sq(x), dims, keepdim=True) + c)``."""

    x: torch.fx.Node  # the normalised value
    dims: tuple[int, ...]  # the reduced dimensions of x (non-negative)
    n: int  # elements per group
    c: float  # the constant (> 0)


def match(rsqrt: object, shape: tuple[int, ...] | None = None) -> RmsChain | None:
    """The chain ending at the graph node ``rsqrt`` when it is ``rsqrt(mean(x ** 2 | x * x,
    dims, keepdim=True) + c)`` with a constant ``c > 0``, every node in one module, and
    ``shape`` the shape of x (None: the export's recorded shape); else None."""
    if not isinstance(rsqrt, torch.fx.Node) or rsqrt.target is not aten.rsqrt.default or not rsqrt.args:
        return None
    add = rsqrt.args[0]
    if not isinstance(add, torch.fx.Node) or add.target not in (aten.add.Tensor, aten.add.Scalar):
        return None
    if len(add.args) != 2 or float(add.kwargs.get("alpha", 1)) != 1.0:
        return None
    mean, c = add.args
    if not isinstance(mean, torch.fx.Node) or mean.target is not aten.mean.dim:
        return None
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(float(c)) and float(c) > 0):
        return None
    margs = list(mean.args) + [None, None]
    sq, dims = margs[0], margs[1]
    keep = margs[2] if margs[2] is not None else mean.kwargs.get("keepdim", False)
    if not keep or mean.kwargs.get("dtype") is not None or not isinstance(sq, torch.fx.Node) or not dims:
        return None
    if sq.target is aten.pow.Tensor_Scalar and len(sq.args) == 2 and not isinstance(sq.args[1], bool) and float(sq.args[1]) == 2.0:  # type: ignore[arg-type]
        x = sq.args[0]
    elif sq.target is aten.mul.Tensor and len(sq.args) == 2 and sq.args[0] is sq.args[1]:
        x = sq.args[0]
    else:
        return None
    if not isinstance(x, torch.fx.Node):
        return None
    key = _layer_key(rsqrt)
    if any(_layer_key(m) != key for m in (add, mean, sq)):
        return None
    if shape is None:
        val = x.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return None
        shape = tuple(val.shape)
    nd = len(shape)
    if nd == 0:
        return None
    try:
        ds = tuple(sorted({int(d) % nd for d in dims}))  # type: ignore[union-attr]
    except TypeError:
        return None
    n = math.prod(shape[d] for d in ds)
    if n < 1:
        return None
    return RmsChain(x, ds, n, float(c))


def image(lo: torch.Tensor, hi: torch.Tensor, dims: tuple[int, ...], n: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of ``x_i / sqrt(mean(x^2) + c)`` over the box ``[lo, hi]`` (groups along
    ``dims``): ``mean(x^2) >= (x_i^2 + S_i) / n`` with ``S_i`` the other elements' smallest
    squares, and ``m / sqrt((m^2 + S) / n + c)`` increases with m, so the largest positive
    (negative) value is that of ``max(hi, 0)`` (``max(-lo, 0)``). Rounded outward."""
    sq = mig(lo, hi) ** 2 * (1 - 2.0**-50)
    S = (torch.sum(sq, dim=dims, keepdim=True) - sq * (1 + 2.0**-50)).clamp(min=0.0) * (1 - 2.0**-45)

    def g(m: torch.Tensor) -> torch.Tensor:
        den = torch.sqrt((m * m + S) / n + c) * (1 - 2.0**-50)
        return (m / den * (1 + 2.0**-48)).nan_to_num(nan=INF)

    return -g((-lo).clamp(min=0.0)), g(hi.clamp(min=0.0))


def _compose(*rel: torch.Tensor) -> torch.Tensor:
    """``prod(1 + r_i) - 1`` for non-negative relative errors, rounded up (log1p / expm1
    keep the tiny terms that ``1 + u`` loses in float64)."""
    s = sum(torch.log1p(r) for r in rel)
    return torch.expm1(s) * (1 + 2.0**-44)  # type: ignore[arg-type]


@dataclass
class _Segment:
    """The chain's input error and the inflated box holding the exact and computed x,
    shaped ``(F, *x.shape)``; group statistics keep their reduced dims (size 1)."""

    e: torch.Tensor
    rms_e: torch.Tensor  # rms of e per group
    s_min: torch.Tensor  # sqrt(c + mean mig^2): the smallest sqrt(V) on the box
    v_max: torch.Tensor  # the largest V = mean(x^2) + c on the box
    lo: torch.Tensor
    hi: torch.Tensor
    dims: tuple[int, ...]


def _segment(ctx: ErrorContext, ch: RmsChain, x: Interval, e: torch.Tensor | None) -> _Segment:
    F = ctx.F
    shape = tuple(x.shape)
    e = torch.zeros((F, *shape), dtype=F64) if e is None else e.expand((F, *shape))
    lo, hi = x.lo.unsqueeze(0) - e, x.hi.unsqueeze(0) + e
    dims = tuple(d + 1 for d in ch.dims)
    m = mig(lo, hi)
    s_min = torch.sqrt(torch.sum(m * m, dim=dims, keepdim=True) / ch.n * (1 - 2.0**-48) + ch.c) * (1 - 2.0**-50)
    mag = torch.maximum(lo.abs(), hi.abs())
    v_max = (torch.sum(mag * mag, dim=dims, keepdim=True) / ch.n + ch.c) * (1 + 2.0**-48)
    rms_e = torch.sqrt(torch.sum(e * e, dim=dims, keepdim=True) / ch.n) * (1 + 2.0**-48)
    return _Segment(e, rms_e, s_min, v_max, lo, hi, dims)


def _rel_parts(ctx: ErrorContext, rel, seg: _Segment, n: int):
    """From a relative input bound ``|x^_i - x_i| <= R_i |x_i| + A_i``: x^ = x' + a with
    ``x'_i = x_i (1 + d_i)``, ``|d_i| <= R_i``, and ``|a_i| <= A_i`` (clamp x^ - x to
    ``R |x|``; x' lies between x and x^, so both ends of the segment from x' to x^ are in the
    inflated box). Returns ``(R_i, R_max, A_i, rms(A))`` per configuration, None without a
    bound or where ``R_max >= 1``."""
    if rel is None:
        return None
    F = ctx.F
    R, A = rel
    shape = seg.e.shape
    Rm = R.reshape(F, -1).amax(1) * (1 + 2.0**-50)
    if not bool((Rm < 1).all()):
        return None
    Af = A.expand(shape)
    rms_a = torch.sqrt(torch.sum(Af * Af, dim=seg.dims, keepdim=True) / n) * (1 + 2.0**-48)
    return R.expand(shape), ctx.b(Rm, len(shape) - 1), Af, rms_a


def _rsqrt_rel(ctx: ErrorContext, ch: RmsChain, seg: _Segment) -> torch.Tensor:
    """rho with ``r^ = rsqrt(V(x^)) (1 + d)``, ``|d| <= rho``, ``V = mean(x^2) + c``: the
    chain's rounding on the computed input x^ (shaped like ``seg.v_max``).

    * squares: ``(1 + u_acc)(1 + u)`` relative, ``he_acc (1 + u) + he`` absolute (subnormal);
    * mean of non-negative terms: ``gamma_{n-1}`` (any order), the division by n (a subnormal
      quotient: ``he_acc``), the store;
    * ``fl(c) = c (1 + d) + h``, ``|d| <= u``, ``|h| <= he``; the add and its store;
    * so ``|v^ - V| <= t V`` with ``t = (1 + max(theta, u) + B / c)(1 + a3) - 1 + he / c``,
      B the absolute parts; ``rsqrt(v^) = rsqrt(V) (1 + t')^(-1/2)``, off by at most ``(1 -
      t)^(-1/2) - 1``; the rsqrt's ``ulps u_acc`` and store, its subnormal part relative to
      ``rsqrt(V) >= 1 / sqrt(V_max)``."""
    nd = seg.v_max.dim() - 1
    u, ua, he, hea = ctx.u, ctx.u_acc, ctx.he, ctx.he_acc
    g = torch.tensor([gamma(max(ch.n - 1, 0), float(v)) for v in ua], dtype=F64)
    a1 = _compose(ua, u)
    b1 = hea * (1 + u) + he
    a2 = _compose(g, ua, u)
    b2 = hea * (1 + u) + he
    theta = torch.maximum(_compose(a1, a2), u)
    B = b1 * (1 + a2) + b2 + he
    a3 = _compose(ua, u)
    t = (_compose(theta, a3) + B * (1 + a3) / ch.c + he / ch.c) * (1 + 2.0**-48)
    d_r = torch.where(t < 1, torch.rsqrt((1 - t).clamp(min=2.0**-1000)) - 1, torch.full_like(t, INF))
    d_r = (d_r * (1 + 2.0**-44)).clamp(min=0.0)
    ulps = FUNCTION_ULPS["rsqrt"]
    a4 = _compose(ua * ulps, u)
    b4 = ctx.b(hea * 2 * ulps * (1 + u) + he, nd) * torch.sqrt(seg.v_max) * (1 + 2.0**-48)
    return _compose(ctx.b(_compose(d_r, a4), nd), b4)


@dataclass(frozen=True)
class RsqrtChainError:
    """The rsqrt node of a chain: ``r = rsqrt(V(x))``. Along the segment from x to the
    computed x^, ``|d rsqrt(V) / dx_j| = |x_j| / (n V^(3/2))``, so ``|rsqrt(V(x^)) -
    rsqrt(V(x))| <= rms(x) rms(e) / V^(3/2) <= rms(e) / s_min^2`` (``rms(x) <= sqrt(V)``);
    the chain's rounding adds ``rho rsqrt(V(x^)) <= rho / s_min`` (:func:`_rsqrt_rel`)."""

    out: Interval
    chain: RmsChain

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        ch = self.chain
        x, e, rel = ctx.upstream(ch.x.name)
        if x is None or tuple(x.shape) != tuple(ch.x.meta["val"].shape):
            return torch.full((ctx.F, *self.out.shape), INF, dtype=F64)
        seg = _segment(ctx, ch, x, e)
        inv2 = 1.0 / (seg.s_min * seg.s_min)
        d_in = seg.rms_e * inv2
        parts = _rel_parts(ctx, rel, seg, ch.n)
        if parts is not None:
            # rsqrt(V(x')) / rsqrt(V(x)) = s(x) / s(x') in [1 / (1 + R), 1 / (1 - R)]
            _, Rm, _, rms_a = parts
            s0 = torch.sqrt(torch.sum(mig(x.lo, x.hi) ** 2, dim=ch.dims, keepdim=True) / ch.n * (1 - 2.0**-48) + ch.c) * (1 - 2.0**-50)
            d_rel = Rm / (1 - Rm) / s0.unsqueeze(0) * (1 + 2.0**-46) + rms_a * inv2
            d_in = torch.minimum(d_in, d_rel)
        err = (d_in + safe_mul(_rsqrt_rel(ctx, ch, seg), 1.0 / seg.s_min)) * (1 + 2.0**-46)
        return err.expand((ctx.F, *self.out.shape)).contiguous()


@dataclass(frozen=True)
class RmsNormError:
    """The mul ``y = x * rsqrt(V(x))`` closing a chain, with ``phi(x) = x / s(x)``, ``s =
    sqrt(V)``:

    * input errors by the mean value theorem along the segment: ``J = (I - y y^T / n) / s``
      with ``y = phi(x)`` and ``mean(y^2) < 1``, so ``|phi(x^)_i - phi(x)_i| <= (e_i + Y_i
      rms(e)) / s_min``, ``Y_i`` the bound of ``|phi_i|`` on the inflated box (:func:`image`);
    * the rsqrt's rounding on x^ (:func:`_rsqrt_rel`) and the product's ``(1 + u_acc)(1 +
      u)`` relative, ``he_acc (1 + u) + he`` absolute.

    So ``|y^_i - y_i| <= (e_i + Y_i rms(e)) / s_min + Y_i rho' + he_acc (1 + u) + he``."""

    x: Interval
    out: Interval
    chain: RmsChain
    xname: str  # the mul's argument bound to x

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        ch = self.chain
        seg = _segment(ctx, ch, self.x, ctx.err(self.xname))
        nlo, nhi = image(seg.lo, seg.hi, seg.dims, ch.n, ch.c)
        Y = torch.maximum(-nlo, nhi)
        nd = len(self.out.shape)
        dphi = safe_mul(Y, seg.rms_e).add_(seg.e).div_(seg.s_min) * (1 + 2.0**-48)
        parts = _rel_parts(ctx, ctx.rel(self.xname), seg, ch.n)
        if parts is not None:
            # |phi(x')_i - phi(x)_i| = |y_i| |(1 + d_i) / (1 + eta) - 1|, |eta| <= R_max
            # (s(x') / s(x)), then the mean value theorem from x' to x^ for the A part
            R, Rm, Af, rms_a = parts
            y0lo, y0hi = image(self.x.lo, self.x.hi, ch.dims, ch.n, ch.c)
            Y0 = torch.maximum(-y0lo, y0hi).unsqueeze(0)
            d_rel = safe_mul(Y0, (R + Rm) / (1 - Rm)) * (1 + 2.0**-46) + (safe_mul(Y, rms_a) + Af) / seg.s_min * (1 + 2.0**-48)
            dphi = torch.minimum(dphi, d_rel)
        rho = _compose(_rsqrt_rel(ctx, ch, seg), ctx.b(_compose(ctx.u_acc, ctx.u), nd))
        err = dphi + safe_mul(Y, rho) + ctx.b(ctx.he_acc * (1 + ctx.u) + ctx.he, nd)
        return err.expand((ctx.F, *self.out.shape)).contiguous()
