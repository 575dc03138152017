"""Normalization: native_layer_norm, native_group_norm, _native_batch_norm_legit.no_stats
(InstanceNorm; BatchNorm without running statistics, batch of one),
_native_batch_norm_legit_no_training (eval BatchNorm); and the variance (var, var_mean;
``std`` is sqrt of var), which shares LayerNorm's variance bounds (:class:`VarError`).

LayerNorm, per row of n elements: ``z = (x - mu) / s``, ``s = sqrt(var + eps)``, ``y = gamma z +
beta``.

* Range. ``x_i - mu`` is linear in x, so its box image is exact:
  ``[(1-1/n) lo_i - (S_hi - hi_i)/n, (1-1/n) hi_i - (S_lo - lo_i)/n]``. The variance's minimum
  over the box is a 1-D convex problem, ``min_c 1/n sum dist(c, [lo_j, hi_j])^2``, solved by
  bisection with a certified lower bound (:func:`variance_lower_bound`); its maximum is bounded
  by ``1/n sum max((lo-c)^2, (hi-c)^2)``. Samuelson's inequality gives ``|z_i| <= sqrt(n-1)``.
* Lipschitz (infinity norm). ``dz_i = (h_i - mean h)/s - z_i (z.h)/(n s)``, and
  ``|z.h|/n <= rms(z) rms(h) <= max|h|`` because ``mean z^2 <= 1``, so
  ``|dz_i| <= (2 + |z_i|) max|h| / s``: ``L = max |gamma| (2 + Z) / s_min`` (DESIGN: grows like
  ``1/sqrt(var_min + eps)``; the source's ``1/eps`` with no variance term is wrong), the
  maximum over rows of each row's ``Z`` and ``s_min``. A gamma (beta) computed by the model
  has L = Z (1).
* Curvature. Differentiating dz again gives ``D^2 z[h,h] = -2 q b + 3 z b^2 - z (q.h)/(n s)``
  with ``q = (h - mean h)/s``, ``b = (z.h)/(n s)``; with ``|h| <= 1``: ``|q_i| <= 2/s``,
  ``|b| <= 1/s``, ``|q.h|/(n s) <= 2/s^2``, so ``kappa = |gamma| (4 + 5 Z) / (2 s_min^2)``.
  A computed gamma adds the cross term ``2 h_gamma Dz[h]``: ``+ (2 + Z) / s_min``.
* The mean and rstd outputs get sound ranges but no Lipschitz/curvature claim (L and kappa
  are those of y) and an infinite rounding error (fail closed); inference graphs only
  consume y.
* Rounding. Input errors e propagate by the mean value theorem over the inflated box
  ``[lo - e, hi + e]`` (its own variance bound): ``|dz_i| <= (e_i + mean e + Z' rms e)/s'``.
  The kernel (accumulation format) computes the mean with ``gamma_n`` error, the variance
  with at most ``4 gamma_{n+2} mean(x^2)`` (covers two-pass, Welford and one-pass
  algorithms), rsqrt with ``ulps_rsqrt + 1`` ulps, and ``(x - mu) * rstd`` either directly or
  as ``x * rstd - mu * rstd`` (PyTorch's CPU kernel): ``3 u_acc (|x| + |mu|) rstd`` covers both.
  Then ``gamma z + beta`` (two operations) and the store. The product of the mean's and
  rstd's errors is charged too (``|x - mu^| <= |x - mu| + e_mu``).

GroupNorm and InstanceNorm are the same normalization over contiguous rows: a group of C/G
channels and all their positions (InstanceNorm: one channel; ``_native_batch_norm_legit``
views (N, C, ...) as (1, N*C, ...)), with one gamma and beta per channel. Their CPU kernels
fuse the affine map: ``s = rstd gamma``, ``t = beta - s mean``, ``y = x s + t`` in the
accumulation format, which costs ``|gamma| rstd (gamma_3 |x| + gamma_4 |mean|) + gamma_2
|beta|`` (Higham Thm 3.1; an fma only drops roundings) in place of the two-step form's. Batch
statistics across several samples are declined.

BatchNorm in eval mode is the per-channel affine map ``(x - m) * w / sqrt(v + eps) + b``:
L = max |w / sqrt(v + eps)|, curvature 0; the cast of its four parameter vectors to the
node's format is propagated through the rsqrt exactly (mean value theorem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import FUNCTION_ULPS, gamma
from certifier.interval import INF, Interval, mul_bounds, widen
from curvature_rules._common import finite_max, fmag, pad_left, safe_mul
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


def variance_lower_bound(lo: torch.Tensor, hi: torch.Tensor, iters: int = 64) -> torch.Tensor:
    """Certified lower bound of ``min var(x)`` over the box ``[lo, hi]`` along the last dim.

    ``var(x) = min_c mean((x - c)^2)``, so the box minimum is ``min_c f(c)`` with the convex
    ``f(c) = mean(dist(c, [lo, hi])^2)``. Bisection on f' brackets the minimiser in [a, b];
    convexity gives ``f(c*) >= f(a) + f'(a) (b - a)`` because ``f'(a) <= 0``.
    """
    n = lo.shape[-1]
    # Rows whose intervals share a common point can be constant: the minimum is 0.
    overlap = lo.amax(-1) <= hi.amin(-1)
    if bool(overlap.all()):
        return torch.zeros(lo.shape[:-1], dtype=lo.dtype)
    finite = torch.isfinite(lo).all(-1) & torch.isfinite(hi).all(-1) & ~overlap
    lo_ = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    hi_ = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))

    def fprime(c):
        c = c.unsqueeze(-1)
        return (2.0 / n) * ((c - hi_).clamp(min=0) - (lo_ - c).clamp(min=0)).sum(-1)

    def f(c):
        c = c.unsqueeze(-1)
        d = (c - hi_).clamp(min=0) + (lo_ - c).clamp(min=0)
        return (d * d).sum(-1) / n

    a = lo_.amin(-1)
    b = hi_.amax(-1)
    for _ in range(iters):
        m = 0.5 * (a + b)
        pos = fprime(m) >= 0
        b = torch.where(pos, m, b)
        a = torch.where(pos, a, m)
    fa, dfa = f(a), fprime(a).clamp(max=0)
    lb = fa + dfa * (b - a)
    lb = lb * (1 - 2.0**-40) - 2.0**-1000
    lb = lb.clamp(min=0)
    return torch.where(finite, lb, torch.zeros_like(lb))


def variance_upper_bound(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Upper bound of var(x) over the box: ``mean(max((lo - c)^2, (hi - c)^2))`` at c = mean mid."""
    n = lo.shape[-1]
    c = (0.5 * (lo + hi)).mean(-1, keepdim=True)
    v = torch.maximum((lo - c) ** 2, (hi - c) ** 2).sum(-1) / n
    v = v * (1 + (n + 4) * 2.0**-52)
    return torch.where(torch.isnan(v), torch.full_like(v, INF), v)


def _centered_bounds(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact box image of ``x_i - mean(x)`` along the last dim (widened)."""
    n = lo.shape[-1]
    Slo, Shi = lo.sum(-1, keepdim=True), hi.sum(-1, keepdim=True)
    dlo = (1 - 1 / n) * lo - (Shi - hi) / n
    dhi = (1 - 1 / n) * hi - (Slo - lo) / n
    pad = (hi.abs() + lo.abs()).sum(-1, keepdim=True) * ((n + 4) * 2.0**-52)
    return widen(dlo - pad, dhi + pad)


@dataclass(frozen=True)
class _RowStats:
    dlo: torch.Tensor  # bounds on x_i - mu (rows flattened to the last dim)
    dhi: torch.Tensor
    smin: torch.Tensor  # (rows, 1)
    smax: torch.Tensor
    zabs: torch.Tensor  # bound on |z_i|


def _row_stats(lo: torch.Tensor, hi: torch.Tensor, eps: float) -> _RowStats:
    n = lo.shape[-1]
    dlo, dhi = _centered_bounds(lo, hi)
    vmin = variance_lower_bound(lo, hi).unsqueeze(-1)
    vmax = variance_upper_bound(lo, hi).unsqueeze(-1)
    smin = torch.sqrt(vmin + eps) * (1 - 2.0**-50)
    smax = torch.sqrt(vmax + eps) * (1 + 2.0**-50)
    zb = torch.maximum(dlo.abs(), dhi.abs()) / smin * (1 + 2.0**-50)
    zabs = torch.minimum(zb, torch.full_like(zb, math.sqrt(max(n - 1, 0)) * (1 + 2.0**-50)))
    zabs = torch.where(torch.isnan(zabs), torch.full_like(zabs, math.sqrt(max(n - 1, 0))), zabs)
    return _RowStats(dlo, dhi, smin, smax, zabs)


@dataclass(frozen=True)
class LayerNormError:
    x: Interval
    out: Interval
    n: int
    eps: float
    w: Interval | None
    b: Interval | None
    stats: _RowStats
    stat_shape: tuple[int, ...] = ()
    #: The node's output shape where x / out are held in a view of it (group / instance
    #: norm: (N, G, C/G, HxW)); the weight and bias then have the view's broadcast shape.
    out_shape: tuple[int, ...] | None = None
    #: The kernel applies the affine map fused, ``y = x * (rstd gamma) + (beta - mean rstd
    #: gamma)`` (PyTorch's group norm and batch-statistics batch norm), instead of
    #: ``gamma ((x - mean) rstd) + beta`` (its layer norm).
    fused: bool = False

    @property
    def unbounded_reason(self) -> str | None:
        vmin = float((self.stats.smin**2).min()) - self.eps
        if vmin <= self.eps:
            return (
                f"the row variance is not bounded away from 0 over the domain (lower bound {max(vmin, 0):.3g}, "
                f"LayerNorm eps {self.eps:g}): 1/sqrt(var + eps) reaches {1 / math.sqrt(max(vmin, 0) + self.eps):.3g}, "
                "and the input's error or the variance's rounding is not small next to var + eps"
            )
        return None

    def propagate(self, ctx: ErrorContext):
        F, nd = ctx.F, len(self.out.shape)
        n = self.n
        rows = self.x.lo.reshape(-1, n)
        rows_hi = self.x.hi.reshape(-1, n)
        e = ctx.err("input")
        if e is None:
            e = torch.zeros((F, *rows.shape), dtype=F64)
        else:
            e = e.reshape(F, -1, n)
        # Statistics over the inflated box (mean value theorem along the segment x -> x^).
        ilo, ihi = rows.unsqueeze(0) - e, rows_hi.unsqueeze(0) + e
        st = _row_stats(ilo, ihi, self.eps)
        mean_e = e.mean(-1, keepdim=True) * (1 + (n + 2) * 2.0**-52)
        rms_e = torch.sqrt((e * e).mean(-1, keepdim=True)) * (1 + (n + 4) * 2.0**-52)
        dz = (e + mean_e + safe_mul(st.zabs, rms_e)) / st.smin
        dz = torch.where(e.amax(-1, keepdim=True) == 0, torch.zeros_like(dz), dz)
        # Kernel rounding in the accumulation format, on the computed input.
        u_acc = ctx.u_acc.reshape(F, 1, 1)
        g = torch.tensor([gamma(n + 2, float(u)) for u in ctx.u_acc], dtype=F64).reshape(F, 1, 1)
        xm = torch.maximum(ilo.abs(), ihi.abs())
        mean_abs = xm.mean(-1, keepdim=True)
        e_mu = g * mean_abs + u_acc * mean_abs
        ms = (xm * xm).mean(-1, keepdim=True)
        e_var = 4 * g * ms + 4 * ctx.he_acc.reshape(F, 1, 1)
        a = st.smin**2  # >= var(x^) + eps
        a_low = (a - e_var).clamp(min=0)
        d_r = torch.where(a_low > 0, 0.5 * e_var / a_low ** 1.5, torch.full_like(a_low, INF))
        rmax = 1.0 / st.smin
        d_r = d_r + (FUNCTION_ULPS["rsqrt"] + 2) * u_acc * (rmax + d_r)
        dmag = torch.maximum(st.dlo.abs(), st.dhi.abs())
        # (x - mu^) r^ - (x - mu) r = (x - mu^)(r^ - r) + (mu - mu^) r, |x - mu^| <= dmag + e_mu.
        local_z = e_mu * rmax + safe_mul(dmag + e_mu, d_r)
        if not self.fused:
            local_z = local_z + 3 * u_acc * (xm + mean_abs + e_mu) * (rmax + d_r)
        local_z = torch.where(torch.isnan(local_z), torch.full_like(local_z, INF), local_z)
        zhat = (st.zabs + local_z)
        dz_total = dz + local_z
        dz_total = dz_total.reshape(F, *self.x.shape)
        zhat = zhat.reshape(F, *self.x.shape)
        if self.fused:
            # s^ = fl(r^ g), t^ = fl(b - fl(s^ mu^)), y^ = fl(fl(x s^) + t^) (an fma only drops
            # roundings): y^ - [(x - mu^) r^ g + b] is at most
            # |g| r^ (gamma_3 |x| + gamma_4 |mu^|) + gamma_2 |b| (Higham 3.1 on each product).
            g2, g3, g4 = (torch.tensor([gamma(k, float(u)) for u in ctx.u_acc], dtype=F64).reshape(F, 1, 1) for k in (2, 3, 4))
            fz = ((g3 * xm + g4 * (mean_abs + e_mu)) * (rmax + d_r)).reshape(F, *self.x.shape)
            fz = torch.where(torch.isnan(fz), torch.full_like(fz, INF), fz)
        # y = gamma * z + beta with gamma, beta possibly cast to the node's format.
        if self.w is not None:
            gm = fmag(self.w)
            cw = ctx.cast_point("weight") if self.w.is_point else None
            gd = gm.dim()  # NB: gamma has the normalized shape (one or more trailing dims)
            ew = (ctx.b(cw[0], gd) * gm + ctx.b(cw[1], gd)) if cw is not None else torch.zeros((F,) + (1,) * gd, dtype=F64)
            if not self.w.is_point:
                ew = ctx.err("weight")
                if ew is None:
                    ew = torch.zeros((F,) + (1,) * gd, dtype=F64)
                elif self.out_shape is not None:
                    ew = ew.reshape(F, *self.w.shape)
            ew = pad_left(ew, nd)
            P = safe_mul(gm, dz_total) + safe_mul(ew, zhat)
            yz = safe_mul(gm + ew, zhat)
            gz = safe_mul(gm + ew, fz) if self.fused else None
        else:
            P = dz_total
            yz = zhat
            gz = fz if self.fused else None
        bm = 0.0
        if self.b is not None:
            bm = fmag(self.b)
            cb = ctx.cast_point("bias") if self.b.is_point else None
            if cb is not None:
                P = P + ctx.b(cb[0], nd) * bm + ctx.b(cb[1], nd)
            elif not self.b.is_point:
                eb = ctx.err("bias")
                if eb is not None:
                    if self.out_shape is not None:
                        eb = eb.reshape(F, *self.b.shape)
                    eb = pad_left(eb, nd)
                    P = P + eb
                    bm = bm + eb
        if gz is not None:
            local_y = gz + ctx.b(g2.reshape(F), nd) * bm
        else:
            local_y = 2 * ctx.b(ctx.u_acc, nd) * (yz + bm)
        ymag = fmag(self.out).unsqueeze(0) + P + local_y
        err = P + local_y + ctx.store(ymag, nd)
        if self.out_shape is not None:
            err = err.reshape(F, *self.out_shape)
        # NB: the mean and rstd outputs have no error model: fail closed (None would read
        # as "exact" downstream). Inference graphs never consume them.
        stat = tuple(torch.full((F, *self.stat_shape), INF, dtype=F64) for _ in range(2))
        return (err, *stat)


def _normalize(x: Interval, n: int, eps: float, w: Interval | None, b: Interval | None, dtype: torch.dtype):
    """Range, L and kappa of ``gamma (x - mu) / sqrt(var + eps) + beta`` over rows of the n
    trailing elements of x (gamma, beta broadcast against x)."""
    rows_lo = x.lo.reshape(-1, n)
    rows_hi = x.hi.reshape(-1, n)
    st = _row_stats(rows_lo, rows_hi, eps)
    smin, smax = st.smin, st.smax
    # z = d / s with s in [smin, smax]
    cands = torch.stack([st.dlo / smin, st.dlo / smax, st.dhi / smin, st.dhi / smax])
    zlo = cands.amin(0)
    zhi = cands.amax(0)
    zlo = torch.maximum(zlo, -st.zabs)
    zhi = torch.minimum(zhi, st.zabs)
    zlo, zhi = widen(zlo, zhi)
    zlo, zhi = zlo.reshape(x.shape), zhi.reshape(x.shape)
    if w is not None:
        ylo, yhi = mul_bounds(zlo, zhi, w.lo, w.hi)
    else:
        ylo, yhi = zlo, zhi
    if b is not None:
        ylo, yhi = widen(ylo + b.lo, yhi + b.hi)
    out = Interval(ylo, yhi, dtype)
    gmax = finite_max(fmag(w)) if w is not None else 1.0
    # NB: per row, the largest |z| bound and s_min (zabs is per element, smin per row).
    Zs = st.zabs.amax(-1) if st.zabs.numel() else st.zabs.reshape(-1)
    s_row = smin.reshape(-1)
    L = gmax * finite_max((2 + Zs) / s_row) * (1 + 2.0**-40) if Zs.numel() else 0.0
    kappa = gmax * finite_max((4 + 5 * Zs) / (2 * s_row * s_row)) * (1 + 2.0**-40) if Zs.numel() else 0.0
    lip = {"input": L}
    if w is not None and not w.is_point:  # gamma computed by the model: y is bilinear in (z, gamma)
        lip["weight"] = finite_max(Zs) * (1 + 2.0**-40) if Zs.numel() else 0.0
        kappa += finite_max((2 + Zs) / s_row) * (1 + 2.0**-40) if Zs.numel() else 0.0
    if b is not None and not b.is_point:
        lip["bias"] = 1.0
    stat_lo = rows_lo.mean(-1)
    stat_hi = rows_hi.mean(-1)
    return out, st, lip, kappa, (stat_lo, stat_hi), (1 / smax, 1 / smin)


def _stats_out(inp: RuleInput, mean, rstd) -> tuple[Interval, Interval]:
    shape = inp.out_shapes[1]
    mlo, mhi = widen(mean[0].reshape(shape), mean[1].reshape(shape), 2.0**-40)
    rlo, rhi = widen(rstd[0].reshape(shape), rstd[1].reshape(shape))
    return Interval(mlo, mhi, inp.out_dtypes[1]), Interval(rlo, rhi, inp.out_dtypes[2])


def _affine(inp: RuleInput, name: str, shape: tuple[int, ...] | None) -> Interval | None:
    """The weight or bias argument (None if absent), viewed as ``shape`` if given."""
    v = inp.args.get(name)
    if not isinstance(v, Interval):
        return None
    if shape is None:
        return v
    if v.numel() != math.prod(shape):
        raise NotImplementedError(f"{name} is not one value per channel")
    return Interval(v.lo.reshape(shape), v.hi.reshape(shape), v.dtype)


@register_rule([aten.native_layer_norm.default])
def layer_norm_rule(inp: RuleInput) -> RuleResult:
    """LayerNorm over the trailing ``normalized_shape`` dims; outputs (y, mean, rstd)."""
    x = inp.tensor("input")
    ns = list(inp.args["normalized_shape"])  # type: ignore[arg-type]
    n = math.prod(ns)
    eps = float(inp.args["eps"])  # type: ignore[arg-type]
    w, b = _affine(inp, "weight", None), _affine(inp, "bias", None)
    out, st, lip, kappa, mean, rstd = _normalize(x, n, eps, w, b, inp.out_dtypes[0])
    return RuleResult(
        out=(out, *_stats_out(inp, mean, rstd)),
        lipschitz=lip,
        curvature=kappa,
        error=LayerNormError(x, out, n, eps, w, b, st, tuple(inp.out_shapes[1])),
        accum_length=n,
        flops=8.0 * x.numel(),
    )


def _grouped(inp: RuleInput, x: Interval, view: tuple[int, ...], n: int, eps: float, pshape: tuple[int, ...]) -> RuleResult:
    """A normalization over contiguous rows of n elements of x (held as ``view``), with a
    per-channel affine map (weight / bias, one per channel, viewed as ``pshape`` to
    broadcast against ``view``)."""
    w, b = _affine(inp, "weight", pshape), _affine(inp, "bias", pshape)
    xv = Interval(x.lo.reshape(view), x.hi.reshape(view), x.dtype)
    out, st, lip, kappa, mean, rstd = _normalize(xv, n, eps, w, b, inp.out_dtypes[0])
    shape = tuple(x.shape)
    real = Interval(out.lo.reshape(shape), out.hi.reshape(shape), out.dtype)
    err = LayerNormError(xv, out, n, eps, w, b, st, tuple(inp.out_shapes[1]), out_shape=shape, fused=True)
    return RuleResult(out=(real, *_stats_out(inp, mean, rstd)), lipschitz=lip, curvature=kappa, error=err, accum_length=n, flops=8.0 * x.numel())


@register_rule([aten.native_group_norm.default])
def group_norm_rule(inp: RuleInput) -> RuleResult:
    """GroupNorm: LayerNorm over each group of C/G channels (and all their positions), then a
    per-channel affine map; outputs (y, mean, rstd) with mean/rstd of shape (N, G). The CPU
    kernel applies the affine map fused with the normalization (``LayerNormError.fused``)."""
    x = inp.tensor("input")
    N, C, HxW, G = (int(inp.args[k]) for k in ("N", "C", "HxW", "group"))  # type: ignore[arg-type]
    if G <= 0 or C % G or N * C * HxW != x.numel():
        raise NotImplementedError("group norm with an inconsistent shape")
    return _grouped(inp, x, (N, G, C // G, HxW), (C // G) * HxW, float(inp.args["eps"]), (G, C // G, 1))  # type: ignore[arg-type]


@register_rule([aten._native_batch_norm_legit.no_stats])
def batch_stats_norm_rule(inp: RuleInput) -> RuleResult:
    """Batch norm with statistics of the input itself (``track_running_stats=False``, and
    InstanceNorm, which views (N, C, ...) as (1, N*C, ...)): each channel is normalized over
    its own positions. Only a batch of one is covered (statistics across samples couple them:
    declined); outputs (y, save_mean, save_invstd) with the biased variance, as the kernel
    normalizes with."""
    x = inp.tensor("input")
    if len(x.shape) < 2 or x.shape[0] != 1:
        raise NotImplementedError("batch statistics over more than one sample")
    C = x.shape[1]
    n = math.prod(x.shape[2:])
    if n == 0:
        raise NotImplementedError("empty channels")
    return _grouped(inp, x, (C, n), n, float(inp.args["eps"]), (C, 1))  # type: ignore[arg-type]


@dataclass(frozen=True)
class BatchNormError:
    #: the bound is (error before the final rounding) + ctx.store(...), with one store call
    #: (certifier.rounding records the first part for a relu that reads the output)
    final_store = True
    x: Interval
    out: Interval
    w: torch.Tensor | None
    b: torch.Tensor | None
    rm: torch.Tensor
    rv: torch.Tensor
    eps: float
    scale: torch.Tensor  # w / sqrt(rv + eps), float64, per channel

    def propagate(self, ctx: ErrorContext):
        F, nd = ctx.F, len(self.out.shape)
        C = self.scale.shape[0]
        shape = (F, 1, C) + (1,) * (nd - 2)

        def cast(name, v):
            if v is None:
                return torch.zeros((F, C), dtype=F64)
            cp = ctx.cast_point(name)
            if cp is None:
                return torch.zeros((F, C), dtype=F64)
            pd = getattr(ctx, "point_delta", None)
            d = None if pd is None else pd(name)
            if d is not None:  # the parameter's exact rounding, where the run asks for it
                return d.abs().reshape(F, C)
            return cp[0].reshape(F, 1) * v.abs().unsqueeze(0) + cp[1].reshape(F, 1)

        e_w, e_b = cast("weight", self.w), cast("bias", self.b)
        e_rm, e_rv = cast("running_mean", self.rm), cast("running_var", self.rv)
        u_acc = ctx.u_acc.reshape(F, 1)
        z = (self.rv + self.eps).unsqueeze(0)
        zl = (z - e_rv).clamp(min=0)
        r = torch.rsqrt(z)
        dr = torch.where(zl > 0, 0.5 * e_rv / zl ** 1.5, torch.full_like(zl, INF))
        wabs = (self.w.abs() if self.w is not None else torch.ones(C, dtype=F64)).unsqueeze(0)
        sabs = self.scale.abs().unsqueeze(0)
        e_s = e_w * (r + dr) + wabs * dr
        e_s = e_s + (FUNCTION_ULPS["rsqrt"] + 3) * u_acc * (sabs + e_s)
        ex = ctx.err("input")
        ex = torch.zeros((F,) + (1,) * nd, dtype=F64) if ex is None else ex
        xm = fmag(self.x).unsqueeze(0)
        rm = self.rm.abs().reshape((1, C) + (1,) * (nd - 2))
        babs = (self.b.abs() if self.b is not None else torch.zeros(C, dtype=F64)).reshape((1, C) + (1,) * (nd - 2))
        e_s, e_rm, e_b = e_s.reshape(shape), e_rm.reshape(shape), e_b.reshape(shape)
        sab = sabs.reshape((1, C) + (1,) * (nd - 2))
        # P = (ex + e_rm)(|s| + e_s) + (|x| + |rm|) e_s + e_b
        # local = 3 u_acc ((|x| + ex + |rm| + e_rm)(|s| + e_s) + |b| + e_b)
        # NB: written with in-place updates of fresh temporaries (activation-sized tensors
        # for every configuration); the arithmetic is the formula's, term by term.
        a = ex + e_rm
        s = sab + e_s
        m = xm + rm
        P = safe_mul(m, e_s).add_(a * s).add_(e_b)
        local = (m + a).mul_(s).add_(babs).add_(e_b).mul_(3 * ctx.b(ctx.u_acc, nd))
        tot = P.add_(local)
        ymag = tot + fmag(self.out).unsqueeze(0)
        return (tot.add_(ctx.store(ymag, nd)), None, None)


@register_rule([aten._native_batch_norm_legit_no_training.default])
def batch_norm_rule(inp: RuleInput) -> RuleResult:
    """Eval-mode BatchNorm: per-channel affine map; outputs (y, save_mean, save_rstd)."""
    x = inp.tensor("input")
    w, b = inp.args.get("weight"), inp.args.get("bias")
    rm, rv = inp.tensor("running_mean"), inp.tensor("running_var")
    eps = float(inp.args["eps"])  # type: ignore[arg-type]
    for t in (w, b, rm, rv):
        if isinstance(t, Interval) and not t.is_point:
            raise NotImplementedError("batch_norm with input-dependent parameters")
    wv = w.value.to(F64) if isinstance(w, Interval) else None
    bv = b.value.to(F64) if isinstance(b, Interval) else None
    rmv, rvv = rm.value.to(F64), rv.value.to(F64)
    r = torch.rsqrt(rvv + eps)
    scale = r * wv if wv is not None else r
    nd = len(x.shape)
    bshape = (1, -1) + (1,) * (nd - 2)
    s = scale.reshape(bshape)
    dlo, dhi = widen(x.lo - rmv.reshape(bshape), x.hi - rmv.reshape(bshape))
    s_lo, s_hi = widen(s, s, 2.0**-48)
    ylo, yhi = mul_bounds(dlo, dhi, s_lo, s_hi)
    if bv is not None:
        ylo, yhi = widen(ylo + bv.reshape(bshape), yhi + bv.reshape(bshape))
    out = Interval(ylo, yhi, inp.out_dtypes[0])
    empties = tuple(Interval.point(torch.zeros(sh, dtype=dt)) for sh, dt in zip(inp.out_shapes[1:], inp.out_dtypes[1:]))
    L = float(scale.abs().max()) * (1 + 2.0**-40) if scale.numel() else 0.0
    return RuleResult(
        out=(out, *empties),
        lipschitz={"input": L},
        curvature=0.0,
        error=BatchNormError(x, out, wv, bv, rmv, rvv, eps, scale),
        flops=2.0 * x.numel(),
    )


def _to_rows(t: torch.Tensor, kept: list[int], red: list[int], lead: int = 0) -> torch.Tensor:
    """View t (with ``lead`` leading dims kept as they are) as rows of the reduced dims."""
    perm = list(range(lead)) + [lead + d for d in kept] + [lead + d for d in red]
    n = math.prod(t.shape[lead + d] for d in red)
    return t.permute(perm).reshape(*t.shape[:lead], -1, n)


@dataclass(frozen=True)
class VarError:
    """``var = sum (x - mu)^2 / (n - c)`` (and the mean, for var_mean).

    Input errors: var is quadratic, so exactly ``var(x + e) - var(x) = (2 sum d_i e_i +
    sum (e_i - mean e)^2) / (n - c)`` with ``d = x - mu(x)`` (``sum d_i = 0`` drops the
    centring of e in the cross term), at most ``(2 sum |d_i| e_i + sum e_i^2) / (n - c)``.
    The kernel's variance (Welford or two passes; the CPU kernel accumulates float32 in
    double, measured; the model charges the accumulation format) errs by ``4 gamma_{n+2} mean(x^2)`` of the
    population variance (LayerNorm's model), times ``n / (n - c)``; then the division and
    the store. The mean: ``mean e + (gamma_n + u) mean|x|`` and the store."""

    x: Interval
    outs: tuple[Interval, ...]
    kept: list[int]
    red: list[int]
    n: int
    c: float
    dmag: torch.Tensor  # rows: bound on |x_i - mu| over the box

    def propagate(self, ctx: ErrorContext):
        F, n, k = ctx.F, self.n, self.n - self.c
        rl = _to_rows(self.x.lo, self.kept, self.red)
        rh = _to_rows(self.x.hi, self.kept, self.red)
        e = ctx.err("self")
        e = torch.zeros((F, *rl.shape), dtype=F64) if e is None else _to_rows(e, self.kept, self.red, 1)
        slack = 1 + (n + 8) * 2.0**-52
        prop = (2 * safe_mul(self.dmag.unsqueeze(0), e).sum(-1) + (e * e).sum(-1)) / k * slack
        xm = torch.maximum((rl.unsqueeze(0) - e).abs(), (rh.unsqueeze(0) + e).abs())
        u_acc = ctx.u_acc.reshape(F, 1)
        he = ctx.he_acc.reshape(F, 1)
        g = torch.tensor([gamma(n + 2, float(u)) for u in ctx.u_acc], dtype=F64).reshape(F, 1)
        e_var = (4 * g * (xm * xm).mean(-1) + 4 * he) * (n / k) * slack
        vmag = fmag(self.outs[0]).reshape(1, -1)
        local = e_var + u_acc * (vmag + prop + e_var) + he
        nd0 = len(self.outs[0].shape)
        tot = (prop + local).reshape(F, *self.outs[0].shape)
        var_err = tot + ctx.store(fmag(self.outs[0]).unsqueeze(0) + tot, nd0)
        if len(self.outs) == 1:
            return var_err
        gm = torch.tensor([gamma(n, float(u)) for u in ctx.u_acc], dtype=F64).reshape(F, 1)
        mabs = xm.mean(-1)
        m_tot = (e.mean(-1) * slack + (gm + u_acc) * mabs + 2 * he).reshape(F, *self.outs[1].shape)
        mean_err = m_tot + ctx.store(fmag(self.outs[1]).unsqueeze(0) + m_tot, len(self.outs[1].shape))
        return (var_err, mean_err)


@register_rule([aten.var.correction, aten.var.dim, aten.var.default, aten.var_mean.correction, aten.var_mean.dim, aten.var_mean.default])
def var_rule(inp: RuleInput) -> RuleResult:
    """Variance (``torch.var`` / ``std``'s inner op; var_mean also gives the mean) over some
    dims with a correction c (``unbiased`` = 1): range from LayerNorm's variance bounds
    (times ``n / (n - c)``); L = ``2 n sqrt(var_pop_max) / (n - c)`` (the gradient is
    ``2 d / (n - c)`` and ``sum |d_i| <= n sqrt(var_pop)``); kappa = ``n / (n - c)``
    (``D^2 var [h, h] = 2 sum (h - mean h)^2 / (n - c)``)."""
    x = inp.tensor("self")
    if not x.is_float:
        raise NotImplementedError("variance of a non-float tensor")
    nd = len(x.shape)
    d = inp.args.get("dim")
    red = list(range(nd)) if d is None or (isinstance(d, (list, tuple)) and len(d) == 0) else sorted({int(i) % max(nd, 1) for i in ([d] if isinstance(d, int) else d)})  # type: ignore[union-attr]
    kept = [i for i in range(nd) if i not in red]
    n = math.prod(x.shape[i] for i in red)
    corr = inp.args.get("correction")
    if corr is None:
        c = 1.0 if inp.args.get("unbiased", True) else 0.0
    else:
        c = float(corr)  # type: ignore[arg-type]
    k = n - c
    if n == 0 or k <= 0:
        raise NotImplementedError("variance with n - correction <= 0 (inf / nan)")
    rl, rh = _to_rows(x.lo, kept, red), _to_rows(x.hi, kept, red)
    vlo = variance_lower_bound(rl, rh) * (n / k) * (1 - 2.0**-50)
    vhi_pop = variance_upper_bound(rl, rh)
    vhi = vhi_pop * (n / k) * (1 + 2.0**-50)
    vshape = inp.out_shapes[0]
    vlo, vhi = widen(vlo.reshape(vshape), vhi.reshape(vshape))
    out = Interval(vlo.clamp(min=0.0), vhi, inp.out_dtypes[0])  # a sum of squares
    dlo, dhi = _centered_bounds(rl, rh)
    dmag = torch.maximum(dlo.abs(), dhi.abs())
    outs: tuple[Interval, ...] = (out,)
    L = 2 * n * finite_max(torch.sqrt(vhi_pop)) / k * (1 + 2.0**-40) if vhi_pop.numel() else 0.0
    if inp.op._opname == "var_mean":
        mlo, mhi = widen(rl.mean(-1).reshape(inp.out_shapes[1]), rh.mean(-1).reshape(inp.out_shapes[1]), (n + 4) * 2.0**-52)
        outs = (out, Interval(mlo, mhi, inp.out_dtypes[1]))
        L = max(L, 1.0)
    return RuleResult(
        out=outs if len(outs) > 1 else out,
        lipschitz={"self": L},
        curvature=n / k * (1 + 2.0**-40),
        error=VarError(x, outs, kept, red, n, c, dmag),
        accum_length=n,
        flops=3.0 * x.numel(),
    )
