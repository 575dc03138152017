"""Softmax and log-softmax along one dimension (aten._softmax, aten._log_softmax).

Range: ``y_i = sigmoid(x_i - LSE_{j != i} x_j)`` is increasing in x_i and decreasing in every
other x_j, so over a box ``y_i in [sigmoid(lo_i - LSE_{j!=i} hi_j), sigmoid(hi_i - LSE_{j!=i}
lo_j)]``; the leave-one-out LSEs are computed stably from one shifted sum per row, with the
float64 rounding of the sums and exps bounded and pushed outward.

Lipschitz (infinity norm): ``dy_i = y_i * sum_j y_j (dx_i - dx_j)`` so
``|dy_i| <= 2 y_i (1 - y_i) max|dx|``: L = 2 max y(1-y) <= 1/2.
Curvature: ``D^2 y_i[h,h] = y_i((h_i - hbar)^2 - V)`` with ``hbar = sum y h`` and
``V = sum y (h - hbar)^2``; both terms are at most ``4 (1 - y_i)`` for ``|h| <= 1``, so
kappa = 2 max y(1-y) <= 1/2 (DESIGN: bounded, independent of the logits; the danger of a
*naive* softmax is overflow of exp, a range question handled by the exp rule).

Rounding: exact propagation ``y^_i / y_i in [e^{-2d}, e^{2d}]`` for input errors up to d
in the row, so ``|dy_i| <= y_i expm1(2 d)``. The kernel subtracts the row max, exponentiates,
sums and divides in the accumulation format: relative error
``u_acc (ulps_exp + 3 + |x_i - max|) + gamma_n(u_acc)``, plus ``(n+1) eta_acc/2`` for
exponentials that underflow; then the result is stored. NB: PyTorch's fp16/bf16 CPU kernels
round intermediates to the storage format (softmax over a non-last dim stores
``exp(x - max)`` before normalising, 0.74 ulp observed; log_softmax over the last dim rounds
``x - max`` and ``log sum``, 0.81 ulp observed), so one more storage rounding of each is
charged: ``2u/(1-u)`` relative plus ``(n+1) eta/2`` for softmax, ``u (|x_i - max| + log n)``
plus ``eta`` for log-softmax.

Masked elements: an input that is exactly -inf for every input of the domain (an additive
attention mask, e.g. causal) in a row that has a finite element gives exactly 0 (softmax) or
-inf (log-softmax) in every format, with no error; the row's other elements are bounded
from its finite elements alone (exp(-inf) = 0 adds nothing to the sums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import FUNCTION_ULPS, gamma
from certifier.interval import INF, Interval, widen
from curvature_rules._common import MARKER_SLACK, finite_max, safe_mul
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64
R = 2.0**-50  # relative slack for one float64 exp/log/sum step


def _loo_lse(v: torch.Tensor, upper: bool) -> torch.Tensor:
    """Leave-one-out log-sum-exp along the last dim: an upper (or lower) bound of
    ``log sum_{j != i} exp(v_j)`` for every i."""
    n = v.shape[-1]
    M = v.amax(-1, keepdim=True)
    Mf = torch.where(torch.isfinite(M), M, torch.zeros_like(M))
    A = torch.exp(v - Mf)
    S = A.sum(-1, keepdim=True)
    if upper:
        T = S * (1 + (n + 4) * R) - A * (1 - R)
    else:
        T = S * (1 - (n + 4) * R) - A * (1 + R)
    T = T.clamp(min=0)
    with torch.no_grad():
        out = Mf + torch.log(T)
    out = torch.where(T == 0, torch.full_like(out, -INF), out)
    slack = out.abs() * R + 1e-300
    out = out + slack if upper else out - slack
    # A row that is entirely -inf (or has +inf) is unknown.
    bad = ~torch.isfinite(M)
    return torch.where(bad, torch.full_like(out, INF if upper else -INF), out)


def softmax_bounds(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of softmax over the last dim for inputs in [lo, hi]."""
    tl, tu = lo - _loo_lse(hi, upper=True), hi - _loo_lse(lo, upper=False)
    L, U = torch.sigmoid(tl), torch.sigmoid(tu)
    L = torch.where(torch.isnan(L), torch.zeros_like(L), L)
    U = torch.where(torch.isnan(U), torch.ones_like(U), U)
    L, U = widen(L, U, 2.0**-46)
    # The argument t is rounded (|dt| <= a few ulps of |t|) and sigmoid's relative slope is
    # up to 1, so the value carries a relative error of about |t| 2^-52 on top.
    fl = lambda t: torch.where(torch.isfinite(t), t.abs(), torch.zeros_like(t)) * 2.0**-49  # noqa: E731
    L, U = L - L.abs() * fl(tl), U + U.abs() * fl(tu)
    return L.clamp(0, 1), U.clamp(0, 1)


def _ymax_y1my(L: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """sup of y(1-y) over [L, U] elementwise."""
    f = lambda y: y * (1 - y)  # noqa: E731
    v = torch.maximum(f(L), f(U))
    return torch.where((L <= 0.5) & (U >= 0.5), torch.full_like(v, 0.25), v)


@dataclass(frozen=True)
class SoftmaxError:
    x: Interval
    out: Interval
    dim: int
    log: bool
    #: elements fixed at -inf in a row whose max is finite (:func:`_masked`), or None
    masked: torch.Tensor | None = None

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        err = self._propagate(ctx)
        if self.masked is None:
            return err
        # A mask marker is a finite value below -2^64 (certifier.walker._mask_markers): its
        # exact term is below exp(-2^63) and moves every output by less than that, under
        # 2^-1074: one float64 step up covers it.
        # (the row's computed max stays above -2^40 - MARKER_SLACK only while its inputs'
        # errors stay within MARKER_SLACK; beyond that the masked outputs keep the generic bound)
        e = ctx.err("self")
        calm = torch.ones((1,) * err.dim(), dtype=torch.bool) if e is None else (e.amax(self.dim + 1, keepdim=True) <= MARKER_SLACK)
        err = torch.where(self.masked.unsqueeze(0) & calm, torch.zeros_like(err), err)
        return torch.nextafter(err, torch.full_like(err, INF))

    def _propagate(self, ctx: ErrorContext) -> torch.Tensor:
        d = self.dim + 1
        nd = len(self.out.shape)
        n = self.x.shape[self.dim]
        e = ctx.err("self")
        F = ctx.F
        xlo, xhi = self.x.lo.unsqueeze(0), self.x.hi.unsqueeze(0)
        if e is None:
            delta = torch.zeros((F,) + tuple(1 if i == d else s for i, s in enumerate((F, *self.x.shape)))[1:], dtype=F64)
            e0 = torch.zeros((F, *self.x.shape), dtype=F64)
        else:
            e0 = e
        delta = e0.amax(d, keepdim=True)
        # |x^_i - max_j x^_j| <= max_j hi_j - lo_i + 2 delta
        W = (xhi.amax(d, keepdim=True) - xlo) + 2 * delta
        if self.masked is not None:  # exactly 0 terms: no part in the row's sums (zeroed in propagate)
            m = self.masked.unsqueeze(0)
            W = torch.where(m, torch.zeros_like(W), W)
            xhi = torch.where(m, torch.zeros_like(xhi), xhi)
        g = torch.tensor([gamma(n, float(u)) for u in ctx.u_acc], dtype=F64)
        u_acc = ctx.b(ctx.u_acc, nd)
        if not self.log:
            U = self.out.hi.unsqueeze(0)
            P = safe_mul(U, torch.expm1(2 * delta)).clamp(max=1.0)
            yhat = (U + P).clamp(max=1.0)
            rel = u_acc * (FUNCTION_ULPS["exp"] + 3) + safe_mul(u_acc, W) + ctx.b(g, nd)
            local = safe_mul(yhat, rel) + ctx.b(ctx.he_acc, nd) * (n + 1)
            # NB: exp(x - max) may be stored in the storage format before normalising.
            us = ctx.b(ctx.u, nd)
            local = local + safe_mul(yhat + local, 2 * us / (1 - us)) + ctx.b(ctx.he, nd) * (n + 1)
            return P + local + ctx.store(yhat + local, nd)
        P = 2 * delta.expand_as(e0)
        ymag = self.out.mag.unsqueeze(0) + P
        rel_sum = ctx.b(g, nd) + u_acc * (FUNCTION_ULPS["exp"] + 1) + safe_mul(u_acc, W.amax(d, keepdim=True))
        lse_err = rel_sum * 1.01 + u_acc * FUNCTION_ULPS["log"] * (xhi.abs().amax(d, keepdim=True) + torch.log(torch.tensor(float(n))) + 1)
        local = safe_mul(u_acc, W) + lse_err + u_acc * ymag
        # NB: x - max and log(sum) may be rounded to the storage format before the subtraction
        # (0 <= log sum_j exp(x^_j - max) <= log n).
        local = local + ctx.b(ctx.u, nd) * (W + lse_err + math.log(n) + 1e-6) + 2 * ctx.b(ctx.he, nd)
        local = torch.where(torch.isnan(local), torch.full_like(local, INF), local)
        return P + local + ctx.store(ymag + local, nd)


def _masked(lo: torch.Tensor, hi: torch.Tensor, dim: int) -> torch.Tensor | None:
    """Elements that are exactly -inf in a row with a finite upper end elsewhere (None if
    there are none): their softmax is exactly 0 whatever the other inputs."""
    fixed = torch.isneginf(lo) & torch.isneginf(hi)
    if not bool(fixed.any()):
        return None
    # the row's max is finite for every input: an element that is never -inf, none +inf;
    # and the max is at least -2^40, so that a mask marker (<= -2^64) is 2^63 below it
    ok = (lo >= -MARKER_SLACK).any(dim, keepdim=True) & (hi < INF).all(dim, keepdim=True)
    if not bool((ok | ~fixed.any(dim, keepdim=True)).all()):
        # A row of -inf is NaN; a row of markers is the softmax of what was added to them
        # (finfo.min + s is shift-invariant), which the markers no longer hold.
        raise NotImplementedError("a softmax row whose every element may be masked (-inf or finfo.min)")
    return fixed & ok


@register_rule([aten._softmax.default, aten._log_softmax.default, aten.softmax.int, aten.log_softmax.int])
def softmax_rule(inp: RuleInput) -> RuleResult:
    """Softmax / log-softmax along ``dim``."""
    x = inp.tensor("self")
    nd = len(x.shape)
    dim = int(inp.args["dim"]) % max(nd, 1)  # type: ignore[arg-type]
    log = inp.op in (aten._log_softmax.default, aten.log_softmax.int)
    lo = x.lo.movedim(dim, -1)
    hi = x.hi.movedim(dim, -1)
    L, U = softmax_bounds(lo, hi)
    masked = _masked(lo, hi, -1)
    if masked is not None:
        L, U = torch.where(masked, torch.zeros_like(L), L), torch.where(masked, torch.zeros_like(U), U)
    yy = _ymax_y1my(L, U)
    if log:
        ylo = torch.where(L > 0, torch.log(L), torch.full_like(L, -INF))
        yhi = torch.log(U)
        ylo, yhi = widen(ylo, yhi)
        if masked is not None:  # log 0 = -inf exactly (widening made the upper end NaN)
            yhi = torch.where(masked, torch.full_like(yhi, -INF), yhi)
        out = Interval(ylo.movedim(-1, dim), yhi.clamp(max=0).movedim(-1, dim), inp.out_dtypes[0])
        lip = 2.0 * finite_max(1 - L) if L.numel() else 0.0
        kappa = 0.5
    else:
        out = Interval(L.movedim(-1, dim), U.movedim(-1, dim), inp.out_dtypes[0])
        lip = 2.0 * finite_max(yy) * (1 + 2.0**-40) if yy.numel() else 0.0
        kappa = lip
    n = x.shape[dim] if nd else 1
    return RuleResult(
        out=out,
        lipschitz={"self": lip},
        curvature=kappa,
        error=SoftmaxError(x, out, dim, log, None if masked is None else masked.movedim(-1, dim)),
        accum_length=n,
        flops=5.0 * x.numel(),
    )
