"""Reductions: sum, mean, prod, amax, amin, max.dim, min.dim, argmax, argmin, sort, topk,
cumsum, cumprod, linalg_vector_norm.

sum over n elements: range [sum lo, sum hi] (float64 sums widened by gamma_n), Lipschitz n
(infinity norm), curvature 0. mean: the same divided by n, Lipschitz 1. amax/amin: exact,
1-Lipschitz, piecewise linear. cumsum: prefix sums, Lipschitz = the scan length.

Rounding: a sum of n terms accumulated in the accumulation format errs by at most
``gamma_{n-1}(u_acc) * sum|x^|`` in any order (Higham Lemma 3.1 / eq. 4.4); mean adds one
division; then the result is stored. Propagated input error: ``sum e`` (mean: ``mean e``);
amax/amin: ``max e`` over the reduced elements (a max moves by at most the largest change).
The indices of max.dim / min.dim and argmax / argmin are integers in ``[0, n - 1]``: exact
where the input is, or where one element alone can hold the extreme of both the exact and the
computed row; otherwise they may differ by the span of the elements that can
(:func:`argmax_spread`), a jump no Lipschitz bound covers. sort / topk / kthvalue / median: the order statistics
(exact box image, 1-Lipschitz, error the row's largest) and their indices (:func:`rank_spread`).

linalg_vector_norm (F.normalize, torch.norm(x, dim=...), torch.linalg.vector_norm), ord 2:
range ``[||mig(x)||_2, ||mag(x)||_2]`` per output (the exact image of the box), Lipschitz
``min(sqrt n, sum mag / min ||x||)`` (the gradient x/||x|| has 1-norm <= sqrt n), curvature
``n / (2 min ||x||)`` (``D^2||x||[h,h] = (||h||^2 - (x.h)^2/||x||^2)/||x||``), infinite where a
box reaches the zero vector (not C^2 there); rounding: see :class:`VectorNormError`. ord 1 is
a sum of |x_i| (the sum model on |x|), ord inf a max of |x_i| (exact, 1-Lipschitz); other
orders and an explicit ``dtype`` fail closed.

var / var_mean: curvature_rules.norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import FORMATS, FUNCTION_ULPS, gamma
from certifier.interval import INF, Interval, down, mul_bounds, up, up_scalar, widen
from curvature_rules._common import finite_max, fmag, pad_left
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


def _index_range(shape, n: int) -> Interval:
    """An int64 index along a dimension of n elements: ``[0, n - 1]``."""
    return Interval(torch.zeros(shape, dtype=F64), torch.full(shape, float(n - 1), dtype=F64), torch.int64)


def _point_pair(inp: RuleInput) -> RuleResult:
    """(values, indices) of an op on known values: evaluated."""
    v, i = inp.call_with()  # type: ignore[misc]
    return RuleResult(out=(Interval.point(v), Interval.point(i)))


def argmax_spread(x: Interval, e: torch.Tensor, dim: int | None, keepdim: bool, largest: bool) -> torch.Tensor:
    """(F, *index shape) bound on ``|argmax(x^) - argmax(x)|`` (argmin when not ``largest``)
    along ``dim`` (None: the flattened tensor), for exact values in the box ``x`` and
    computed ones within ``e`` (F, *x.shape) of them.

    Both the exact and the computed values lie in ``[lo - e, hi + e]``; an element can hold
    the maximum of either only if its upper end reaches the largest lower end of its row
    (ties included: ``>=``). Both indices are among those candidates, so they differ by at
    most the candidates' index span: 0 where there is one candidate, or where the row's
    input is exact in that configuration (the kernel then sees the exact values)."""
    F = e.shape[0]
    lo, hi = x.lo.to(F64).unsqueeze(0), x.hi.to(F64).unsqueeze(0)
    if dim is None:
        lo, hi, e = lo.reshape(1, -1), hi.reshape(1, -1), e.reshape(F, -1)
        d = 1
    else:
        d = dim % max(len(x.shape), 1) + 1
    L, H = lo - e, hi + e
    if largest:
        cand = H >= L.amax(d, keepdim=True)
    else:
        cand = L <= H.amin(d, keepdim=True)
    cand = cand | torch.isnan(L) | torch.isnan(H)
    n = cand.shape[d]
    ar = torch.arange(n, dtype=F64).reshape([n if i == d else 1 for i in range(cand.dim())])
    big = torch.where(cand, ar, torch.full_like(ar, -1.0)).amax(d, keepdim=True)
    small = torch.where(cand, ar, torch.full_like(ar, float(n))).amin(d, keepdim=True)
    moved = (e != 0).any(d, keepdim=True)
    out = torch.where(moved, (big - small).clamp(min=0), torch.zeros_like(big))
    if dim is None:
        return out.reshape((F, *([1] * len(x.shape)))) if keepdim else out.reshape(F)
    return out if keepdim else out.squeeze(d)


@dataclass(frozen=True)
class MaxDimError:
    """(values, indices) of a max / min over one dimension: the values move by at most the
    largest input error of their row; the index by :func:`argmax_spread`."""

    x: Interval
    dim: int
    keepdim: bool
    largest: bool

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return (None, None)
        vals = torch.vmap(lambda t: torch.amax(t, dim=self.dim, keepdim=self.keepdim))(e)
        return (vals, argmax_spread(self.x, e, self.dim, self.keepdim, self.largest))


@register_rule([aten.max.dim, aten.min.dim])
def max_dim_rule(inp: RuleInput) -> RuleResult:
    """(values, indices) of a max/min over one dimension."""
    x = inp.tensor("self")
    d = int(inp.args["dim"]) % max(len(x.shape), 1)  # type: ignore[arg-type]
    keep = bool(inp.get("keepdim", False))
    if x.is_point:
        return _point_pair(inp)
    largest = inp.op is aten.max.dim
    op = torch.amax if largest else torch.amin
    vals = Interval(op(x.lo, dim=d, keepdim=keep), op(x.hi, dim=d, keepdim=keep), x.dtype)
    n = x.shape[d] if x.shape else 1
    idx = _index_range(vals.shape, n)
    return RuleResult(out=(vals, idx), lipschitz={"self": 1.0}, error=MaxDimError(x, d, keep, largest))


@dataclass(frozen=True)
class ArgmaxError:
    x: Interval
    dim: int | None
    keepdim: bool
    largest: bool

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        return None if e is None else argmax_spread(self.x, e, self.dim, self.keepdim, self.largest)


@register_rule([aten.argmax.default, aten.argmin.default])
def argmax_rule(inp: RuleInput) -> RuleResult:
    """argmax / argmin (int64): an index in ``[0, n - 1]``, decided where one element alone
    can hold the extreme (:func:`argmax_spread`); no Lipschitz bound (it jumps)."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    dim = inp.args.get("dim")
    d = None if dim is None else int(dim) % max(len(x.shape), 1)  # type: ignore[arg-type]
    keep = bool(inp.get("keepdim", False))
    largest = inp.op is aten.argmax.default
    n = x.numel() if d is None else (x.shape[d] if x.shape else 1)
    shape = inp.out_shapes[0]
    return RuleResult(out=_index_range(shape, n), error=ArgmaxError(x, d, keep, largest))


def rank_spread(x: Interval, e: torch.Tensor, dim: int, k: int, descending: bool) -> torch.Tensor:
    """(F, *x.shape with ``dim`` cut to k) bound on how far the index at each of the first k
    sorted positions (descending or ascending along ``dim``) of the computed values can be
    from the exact one, for exact values in the box ``x`` and computed ones within ``e``.

    Both lie in ``[lo - e, hi + e]``. In a descending order element i has at least
    ``a_i = #{j: lo_j - e_j > hi_i + e_i}`` elements before it and at least
    ``#{j: hi_j + e_j < lo_i - e_i}`` after it, so it sits at a position in
    ``[a_i, n - 1 - that]`` in both orders (ties, unstable sorts included: tied elements are
    never counted). Position r holds one of the elements whose span covers r; the bound is
    those elements' index span (0 where one element alone can be there, or where the row is
    exact). Rows too large for the position-by-element table get the whole row's span
    wherever any element's position is undecided."""
    F = e.shape[0]
    lo, hi = x.lo.to(F64).unsqueeze(0), x.hi.to(F64).unsqueeze(0)
    d = dim + 1
    L = (lo - e).movedim(d, -1)
    H = (hi + e).movedim(d, -1)
    L = torch.where(torch.isnan(L), -INF, L)
    H = torch.where(torch.isnan(H), INF, H)
    n = L.shape[-1]
    Ls, Hs = torch.sort(L, -1).values, torch.sort(H, -1).values
    above = n - torch.searchsorted(Ls.contiguous(), H.contiguous(), right=True)  # L_j > H_i
    below = torch.searchsorted(Hs.contiguous(), L.contiguous(), right=False)  # H_j < L_i
    first, last = (above, n - 1 - below) if descending else (below, n - 1 - above)
    moved = (e != 0).movedim(d, -1).any(-1, keepdim=True)
    if first.numel() * k <= 2**24:
        r = torch.arange(k).reshape(k, 1)
        cover = (first.unsqueeze(-2) <= r) & (r <= last.unsqueeze(-2))  # (..., k, n)
        ar = torch.arange(n, dtype=F64)
        big = torch.where(cover, ar, -1.0).amax(-1)
        small = torch.where(cover, ar, float(n)).amin(-1)
        span = (big - small).clamp(min=0)
    else:
        undecided = (first != last).any(-1, keepdim=True)
        span = torch.where(undecided, float(n - 1), 0.0).to(F64).expand(*first.shape[:-1], k)
    span = torch.where(moved, span, torch.zeros_like(span))
    return span.movedim(-1, d).contiguous()


@dataclass(frozen=True)
class SortError:
    """(values, indices) of sort / topk: each sorted value moves by at most the largest
    input error of its row (order statistics are 1-Lipschitz in the max norm); the indices
    by :func:`rank_spread`."""

    x: Interval
    dim: int
    k: int
    descending: bool
    #: one order statistic (kthvalue, median) at this position instead of the first k
    at: int | None = None
    keepdim: bool = True

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return (None, None)
        d = self.dim + 1
        m = e.amax(d, keepdim=True)
        if self.at is not None:
            idx = rank_spread(self.x, e, self.dim, self.at + 1, self.descending).narrow(d, self.at, 1)
            return (m, idx) if self.keepdim else (m.squeeze(d), idx.squeeze(d))
        shape = list(e.shape)
        shape[d] = self.k
        return (m.expand(shape).contiguous(), rank_spread(self.x, e, self.dim, self.k, self.descending))


def _sorted_result(inp: RuleInput, x: Interval, d: int, k: int, descending: bool) -> RuleResult:
    def order(t: torch.Tensor) -> torch.Tensor:
        return torch.sort(t, d, descending=descending).values.narrow(d, 0, k)

    vals = Interval(order(x.lo.to(F64)), order(x.hi.to(F64)), x.dtype)
    n = x.shape[d] if x.shape else 1
    idx = _index_range(vals.shape, n)
    return RuleResult(out=(vals, idx), lipschitz={"self": 1.0}, error=SortError(x, d, k, descending))


@register_rule([aten.sort.default, aten.sort.stable])
def sort_rule(inp: RuleInput) -> RuleResult:
    """Sorted values along one dimension and their indices. The k-th order statistic is
    nondecreasing in every input, so ``[sort(lo)_k, sort(hi)_k]`` is the box's exact image;
    it is exact in every format (a permutation), 1-Lipschitz, piecewise linear."""
    x = inp.tensor("self")
    if x.is_point:
        return _point_pair(inp)
    d = int(inp.get("dim", -1)) % max(len(x.shape), 1)  # type: ignore[arg-type]
    n = x.shape[d] if x.shape else 1
    return _sorted_result(inp, x, d, n, bool(inp.get("descending", False)))


@register_rule([aten.topk.default])
def topk_rule(inp: RuleInput) -> RuleResult:
    """The k largest (or smallest) values along one dimension, sorted, and their indices:
    the first k order statistics (see :func:`sort_rule`). ``sorted=False`` is declined: the
    order of its results is the kernel's, not a function of the values."""
    x = inp.tensor("self")
    if x.is_point:
        return _point_pair(inp)
    if not bool(inp.get("sorted", True)):
        raise NotImplementedError("topk with sorted=False: the order of its results is unspecified")
    d = int(inp.get("dim", -1)) % max(len(x.shape), 1)  # type: ignore[arg-type]
    k = int(inp.args["k"])  # type: ignore[arg-type]
    return _sorted_result(inp, x, d, k, bool(inp.get("largest", True)))


def _lower_products(m: torch.Tensor, d: int) -> torch.Tensor:
    """Prefix products along ``d`` of ``m`` >= 0, rounded down at every step (a lower bound
    of the exact products; :func:`_scan_products` gives the upper one)."""
    m = m.movedim(d, 0)
    P = [m[0]]
    for k in range(1, m.shape[0]):
        P.append(down(P[-1] * m[k]).clamp(min=0))
    return torch.stack(P, 0).movedim(0, d)


def _scan_products(m: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefix products along ``d`` of magnitudes ``m`` >= 0, rounded up: (P, L, K) with P_k
    = prod_{i<=k} m_i, L_k = sum_i prod_{j<=k, j!=i} m_j (the 1-norm of the prefix
    product's gradient) and K_k = sum_{i!=j} prod_{l<=k, l!=i,j} m_l (of its Hessian):
    L_k = m_k L_{k-1} + P_{k-1}, K_k = m_k K_{k-1} + 2 L_{k-1}."""
    m = m.movedim(d, 0)
    P, L, K = [m[0]], [torch.ones_like(m[0])], [torch.zeros_like(m[0])]
    for k in range(1, m.shape[0]):
        P.append(up(P[-1] * m[k]))
        L.append(up(m[k] * L[-1] + P[-2]))
        K.append(up(m[k] * K[-1] + 2 * L[-2]))
    return tuple(torch.stack(t, 0).movedim(0, d) for t in (P, L, K))  # type: ignore[return-value]


@dataclass(frozen=True)
class ProductError:
    """Prefix products (cumprod) or a whole product (prod) along ``dim``.

    In any order of evaluation the computed product of k factors is ``prod x^_i (1 + theta)``
    with ``|theta| <= gamma_{k-1}(v)`` (Higham Lemma 3.1; v the relative error of one
    multiplication), plus the underflows, each ``eta`` at most and later multiplied by some
    of the other factors. With ``|x^_i - x_i| <= e_i``,
    ``|prod x^ - prod x| <= prod(m + e) - prod m`` (m = |x|'s bound), so

        err_k <= [prod(m + e) - prod m] + gamma_{k-1}(v) prod(m + e)
                 + (k - 1) eta prod max(1, m + e) (1 + gamma)

    and the result is stored. ``prod`` on CPU multiplies in the storage format (fp16: 92 u
    observed over 512 factors, bf16 25 u), so its ``v`` is ``u + u_acc (1 + u)`` (either
    rounding, or both); ``cumprod`` keeps its running product in the accumulation format
    (0.98 u observed, the store alone) and is charged ``u_acc``
    (``tests/test_arith_model.py``)."""

    x: Interval
    out: Interval
    dim: int
    cumulative: bool
    keepdim: bool
    flat: bool = False  # prod of every element: ``x`` is the flattened input

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        d = self.dim + 1
        m = fmag(self.x).unsqueeze(0)
        e = ctx.err("self")
        if e is not None and self.flat:
            e = e.expand((ctx.F, *e.shape[1:])).reshape(ctx.F, -1).expand(ctx.F, self.x.numel())
        me = m if e is None else m + e
        me = me.expand((ctx.F, *self.x.shape))
        n = self.x.shape[self.dim] if self.x.shape else 1
        Pe = _scan_products(me, d)[0]
        Pone = _scan_products(me.clamp(min=1.0), d)[0]
        k = torch.arange(1, n + 1, dtype=F64).reshape([n if i == d else 1 for i in range(me.dim())])
        if self.cumulative:
            v, eta = ctx.u_acc, ctx.he_acc
        else:
            v, eta = ctx.u + ctx.u_acc * (1 + ctx.u), ctx.he + ctx.he_acc
        vb = v.reshape((ctx.F,) + (1,) * len(self.x.shape))
        etab = eta.reshape((ctx.F,) + (1,) * len(self.x.shape))
        km1 = (k - 1) * vb
        g = torch.where(km1 < 1, km1 / (1 - km1).clamp(min=1e-300), INF) * (1 + 2.0**-50)
        # the exact product's magnitude from below (its upper scan, shrunk once, was not a
        # lower bound: float64 rounding gathers over the k steps)
        prop = (Pe - _lower_products(m, d) if e is not None else torch.zeros_like(Pe)).clamp(min=0)
        err = up(prop + g * Pe + (k - 1) * etab * Pone * (1 + g))
        if not self.cumulative:
            err = err.narrow(d, n - 1, 1)
            if not self.keepdim:
                err = err.squeeze(d)
        return err + ctx.store(fmag(self.out).unsqueeze(0) + err, nd)


def _order_statistic(inp: RuleInput, x: Interval, d: int, at: int, keepdim: bool) -> RuleResult:
    """The ``at``-th smallest value along ``d`` (0-based) and its index (kthvalue, median)."""
    n = x.shape[d] if x.shape else 1
    if not 0 <= at < n:
        raise NotImplementedError("order statistic out of range")

    def pick(t: torch.Tensor) -> torch.Tensor:
        v = torch.sort(t.to(F64), d).values.narrow(d, at, 1)
        return v if keepdim else v.squeeze(d)

    vals = Interval(pick(x.lo), pick(x.hi), x.dtype)
    idx = _index_range(vals.shape, n)
    return RuleResult(out=(vals, idx), lipschitz={"self": 1.0}, error=SortError(x, d, 1, False, at=at, keepdim=keepdim))


@register_rule([aten.kthvalue.default])
def kthvalue_rule(inp: RuleInput) -> RuleResult:
    """The k-th smallest value along one dimension and its index (see :func:`sort_rule`)."""
    x = inp.tensor("self")
    if x.is_point:
        return _point_pair(inp)
    d = int(inp.get("dim", -1)) % max(len(x.shape), 1)  # type: ignore[arg-type]
    return _order_statistic(inp, x, d, int(inp.args["k"]) - 1, bool(inp.get("keepdim", False)))  # type: ignore[arg-type]


@register_rule([aten.median.dim])
def median_dim_rule(inp: RuleInput) -> RuleResult:
    """The lower median along one dimension (PyTorch's: the ``(n - 1) // 2``-th smallest) and
    its index."""
    x = inp.tensor("self")
    if x.is_point:
        return _point_pair(inp)
    d = int(inp.args["dim"]) % max(len(x.shape), 1)  # type: ignore[arg-type]
    n = x.shape[d] if x.shape else 1
    return _order_statistic(inp, x, d, (n - 1) // 2, bool(inp.get("keepdim", False)))


def _product_rule(inp: RuleInput, x: Interval, d: int, cumulative: bool, keepdim: bool, flat: bool = False) -> RuleResult:
    if inp.get("dtype") is not None and inp.get("dtype") != x.dtype:
        raise NotImplementedError("a product with an explicit dtype")
    if not x.is_float:
        raise NotImplementedError("an integer product (it may wrap around)")
    n = x.shape[d] if x.shape else 1
    lo, hi = x.lo.to(F64).movedim(d, 0), x.hi.to(F64).movedim(d, 0)
    plo, phi = [lo[0]], [hi[0]]
    for i in range(1, n):
        a, b = mul_bounds(plo[-1], phi[-1], lo[i], hi[i])
        plo.append(a)
        phi.append(b)
    PL, PH = torch.stack(plo, 0).movedim(0, d), torch.stack(phi, 0).movedim(0, d)
    _, Lk, Kk = _scan_products(fmag(x), d)
    if not cumulative:
        PL, PH = PL.narrow(d, n - 1, 1), PH.narrow(d, n - 1, 1)
        Lk, Kk = Lk.narrow(d, n - 1, 1), Kk.narrow(d, n - 1, 1)
        if not keepdim:
            PL, PH = PL.squeeze(d), PH.squeeze(d)
    out = Interval(PL, PH, x.dtype)
    L = finite_max(Lk) if bool(torch.isfinite(Lk).all()) else INF
    kappa = 0.5 * finite_max(Kk) if bool(torch.isfinite(Kk).all()) else INF
    return RuleResult(out=out, lipschitz={"self": L}, curvature=up_scalar(kappa), error=ProductError(x, out, d, cumulative, keepdim, flat), accum_length=n)


@register_rule([aten.prod.dim_int, aten.prod.default])
def prod_rule(inp: RuleInput) -> RuleResult:
    """Product along one dimension (or of every element): interval products factor by
    factor; L and kappa from the gradient's and Hessian's 1-norms (:func:`_scan_products`);
    rounding :class:`ProductError`."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    if inp.op is aten.prod.default:
        x = x.map_shape(lambda t: t.reshape(-1))
        return _product_rule(inp, x, 0, False, False, flat=True)
    if not x.shape:
        raise NotImplementedError("prod over a dimension of a 0-d tensor")
    d = int(inp.args["dim"]) % max(len(x.shape), 1)  # type: ignore[arg-type]
    return _product_rule(inp, x, d, False, bool(inp.get("keepdim", False)))


@register_rule([aten.cumprod.default])
def cumprod_rule(inp: RuleInput) -> RuleResult:
    """Prefix products along one dimension (see :func:`prod_rule`)."""
    x = inp.tensor("self")
    if x.is_point:
        return RuleResult(out=Interval.point(inp.call_with()))
    if not x.shape:
        raise NotImplementedError("cumprod of a 0-d tensor")
    d = int(inp.args["dim"]) % max(len(x.shape), 1)  # type: ignore[arg-type]
    return _product_rule(inp, x, d, True, False)


@dataclass(frozen=True)
class CumsumError:
    x: Interval
    out: Interval
    dim: int
    #: the input is known integers and float64 summed them exactly (``out`` is exact):
    #: the largest magnitude of a partial sum; None otherwise
    int_smax: float | None = None

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.out.shape)
        n = self.x.shape[self.dim] if self.x.shape else 1
        e = ctx.err("self")
        if self.int_smax is not None and (e is None or not bool(e.any())):
            # Integers summed in a format that holds every partial sum (|S| <= 2^p of the
            # storage and the accumulation format) are exact in any order (OPT counts
            # positions this way: cumsum of a mask of ones).
            smax = self.int_smax
            lim = torch.minimum(1.0 / ctx.u, 1.0 / ctx.u_acc)
            if bool((lim >= smax).all()):
                return torch.zeros((ctx.F, *self.out.shape), dtype=F64)
            fits = ctx.b(lim >= smax, nd)
            return torch.where(fits, 0.0, self._bound(ctx, e, nd, n))
        return self._bound(ctx, e, nd, n)

    def _bound(self, ctx: ErrorContext, e, nd: int, n: int) -> torch.Tensor:
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
    int_smax = None
    if x.is_point:  # a float constant: its prefix sums are rounded, so not a point
        v = x.value.to(F64)
        smax = float(torch.cumsum(v.abs(), d).max()) if v.numel() else 0.0
        if bool((v == torch.round(v)).all()) and smax < 2.0**52:
            int_smax = smax
        x = Interval(v, v, x.dtype)
    n = x.shape[d] if x.shape else 1
    if int_smax is not None:  # float64 sums these integers exactly: the exact prefix sums, unwidened
        lo = hi = torch.cumsum(x.lo, d)
    else:
        pad = torch.cumsum(x.mag, d) * ((n + 2) * 2.0**-53)
        lo, hi = widen(torch.cumsum(x.lo, d) - pad, torch.cumsum(x.hi, d) + pad)
    out = Interval(lo, hi, dtype)
    if not dtype.is_floating_point:
        return RuleResult(out=out)
    return RuleResult(out=out, lipschitz={"self": float(n)}, error=CumsumError(x, out, d, int_smax), accum_length=n)


__all__ = ["INF", "finite_max"]


# ---------------------------------------------------------------------------- vector norms
#: Per-element absolute slack of the float64 sums of squares in :func:`_l2_scaled` (the
#: underflow of ``v / m`` and of its square, each at most 2^-1075, twice over).
_L2_TINY = 2.0**-1070


def _l2_scaled(v: torch.Tensor, dims: list[int], upper: bool) -> torch.Tensor:
    """A bound (``upper``: above, else below) of ``sqrt(sum v^2)`` over ``dims`` (kept as size-1
    dims) for ``v >= 0``, possibly infinite. Evaluated as ``m sqrt(sum (v/m)^2)`` with ``m``
    the largest finite element of each group, so no square overflows (and none of a
    non-negligible element underflows); every float64 rounding is covered: ``v/m``, the
    squares and the sum err by at most ``(n + 6) 2^-53`` relative (charged ``(n + 8) 2^-52``)
    plus ``2^-1072`` absolute per element (underflow), the sqrt and the product by m by one
    rounding each (charged 2^-50)."""
    n = math.prod(v.shape[d] for d in dims)
    fin = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    m = fin.amax(dim=dims, keepdim=True)
    m = torch.where(m > 0, m, torch.ones_like(m))
    q = v / m  # <= 1 for finite elements, inf for infinite ones
    S = (q * q).sum(dim=dims, keepdim=True)
    k = (n + 8) * 2.0**-52
    if upper:
        r = torch.sqrt(S * (1 + k) + n * _L2_TINY) * m * (1 + 2.0**-50)
    else:
        r = torch.sqrt((S * (1 - k) - n * _L2_TINY).clamp(min=0)) * m * (1 - 2.0**-50)
        # a finite group whose norm passes float64's range: its norm is above the largest
        # finite double, not infinite
        big = torch.finfo(F64).max
        finite = (~torch.isfinite(v)).sum(dim=dims, keepdim=True) == 0
        r = torch.where(torch.isinf(r) & finite, torch.full_like(r, big), r)
    return r


def _acc_max(u_acc: torch.Tensor) -> torch.Tensor:
    """Largest finite value of the accumulation format of each configuration, read off its
    unit roundoff (the smallest max among formats with that roundoff; 0, i.e. always
    overflowing, for an unknown one)."""
    out = []
    for u in u_acc.tolist():
        maxes = [f.max for f in FORMATS.values() if f.u == u]
        out.append(min(maxes) if maxes else 0.0)
    return torch.tensor(out, dtype=F64)


@dataclass(frozen=True)
class VectorNormError:
    """Rounding model of ``||x||_2`` over ``n`` elements per output (PyTorch's CPU kernel,
    checked: the squares are summed in the accumulation format (fp32 for fp16/bf16, in any
    order), the sqrt is taken there and the result is stored once).

    * Input error: ``| ||x^|| - ||x|| | <= ||x^ - x||_2 <= P = sqrt(sum e_i^2)``.
    * Sum of squares of the computed input (``s^ = ||x^||^2``): n products and n - 1 additions,
      ``|s~ - s^| <= gamma_n s^ + A`` with ``A = n he_acc (1 + gamma_n)`` (products that
      underflow; additions never do).
    * Its sqrt: ``|sqrt(s~) - ||x^||| <= D = min((gamma/2)(1 + gamma) r + sqrt(A),
      (gamma r^2 + A) / r_lo)`` with ``r >= ||x^||`` (``R_hi + P``) and ``r_lo <= ||x^||``
      (``R_lo - P``): from ``sqrt(1 + g) <= 1 + g/2``, ``sqrt(1 - g) >= 1 - g/2 - g^2/2``
      (g <= 1) and ``|a - b| = |a^2 - b^2| / (a + b)``.
    * The sqrt's own rounding ``ulps u_acc (r + D)``, then the store ``u (|y| + T) + he``.
    * A sum of squares that can pass the accumulation format's largest value overflows
      there (bf16 inputs above ~1.8e19 give inf in fp32): the error is infinite.
    """

    x: Interval  # the input, at least 1-d (a scalar input is viewed as shape (1,))
    out: Interval  # the node's output
    dims: tuple[int, ...]  # the reduced dims of x
    n: int  # elements per output
    x_shape: tuple[int, ...]  # the node's input shape

    @property
    def unbounded_reason(self) -> str | None:
        top = float(self.out.hi.max()) if self.out.hi.numel() else 0.0
        if top * top > torch.finfo(torch.float32).max:
            return f"the sum of squares (up to {top * top:.3g}) can overflow the fp32 accumulation"
        return None

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        F = ctx.F
        nd = len(self.x.shape)
        dims1 = [d + 1 for d in self.dims]
        e = ctx.err("self")
        # work with the reduced dims kept (size 1), so that everything broadcasts against x
        keep = tuple(1 if d in self.dims else s for d, s in enumerate(self.x.shape))
        if e is None:
            P = torch.zeros((F, *keep), dtype=F64)
        else:
            e = pad_left(e, len(self.x_shape)).expand((F, *self.x_shape)).reshape((F, *self.x.shape))
            P = _l2_scaled(e, dims1, upper=True)
        Rhi = fmag(self.out).reshape(keep).unsqueeze(0)
        Rlo = self.out.lo.clamp(min=0).reshape(keep).unsqueeze(0)
        r = (Rhi + P) * (1 + 2.0**-52)
        r_lo = (Rlo - P) * (1 - 2.0**-52)
        g = ctx.b(torch.tensor([gamma(self.n, float(u)) for u in ctx.u_acc], dtype=F64), nd)
        A = self.n * ctx.b(ctx.he_acc, nd) * (1 + g)
        sA = torch.sqrt(A) * (1 + 2.0**-50)
        D1 = torch.where(g <= 1, 0.5 * g * (1 + g) * r, (1 + g) * r) + sA
        D2 = torch.where(r_lo > 0, (g * r * r + A) / r_lo.clamp(min=2.0**-1074), torch.full_like(r, INF))
        D = torch.minimum(D1, D2) * (1 + 2.0**-50)
        Q = ctx.b(ctx.u_acc, nd) * FUNCTION_ULPS["sqrt"] * (r + D)
        T = (P + D + Q) * (1 + 2.0**-50)
        err = T + ctx.store(Rhi + T, nd)
        # overflow of the sum of squares (or of a square) in the accumulation format
        smax = r * r * (1 + g) + A
        err = torch.where(smax <= ctx.b(_acc_max(ctx.u_acc), nd), err, torch.full_like(err, INF))
        err = torch.nan_to_num(err, nan=INF, posinf=INF)
        return err.reshape((F, *self.out.shape))


def _norm_ord(inp: RuleInput) -> float:
    o = inp.args.get("ord", 2)
    if o is None:
        o = 2
    if isinstance(o, bool) or not isinstance(o, (int, float)):
        raise NotImplementedError(f"vector norm of order {o!r}")
    o = float(o)
    if o not in (1.0, 2.0, INF):
        raise NotImplementedError(f"vector norm of order {o:g} (only 1, 2 and inf have a rule)")
    return o


@register_rule([aten.linalg_vector_norm.default])
def vector_norm_rule(inp: RuleInput) -> RuleResult:
    """``||x||_ord`` over some dimensions (F.normalize, torch.norm(x, dim=...),
    torch.linalg.vector_norm) for ord 2, 1 and inf; any other order, or an explicit
    ``dtype``, is declined (fails closed)."""
    x = inp.tensor("self")
    o = _norm_ord(inp)
    if inp.get("dtype") is not None:
        raise NotImplementedError("vector norm with an explicit dtype (computes in another format)")
    if not x.is_float or x.dtype.is_complex or not inp.out_dtypes[0].is_floating_point:
        raise NotImplementedError(f"vector norm of a {x.dtype} tensor")
    dtype = inp.out_dtypes[0]
    if x.is_point:  # a constant: its norm is still rounded, so not a point
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    dims = _dims(inp, x)
    keep = bool(inp.get("keepdim", False))
    n = math.prod(x.shape[d] for d in dims) if x.shape else 1
    if n == 0 or x.numel() == 0:
        raise NotImplementedError("vector norm of an empty tensor")
    mig, mag = x.mig, x.mag
    if o == INF:
        fn = (lambda t: t) if not dims else (lambda t: torch.amax(t, dim=dims, keepdim=keep))  # noqa: E731
        out = Interval(fn(mig), fn(mag), dtype)  # exact: a max of |x_i|
        return RuleResult(out=out, lipschitz={"self": 1.0}, curvature=0.0, error=MaxError(fn), flops=float(x.numel()))
    if o == 1.0:
        # sum |x_i|: abs is exact, then a sum of non-negative terms (sum_rule's model on |x|)
        absx = Interval(mig, mag, x.dtype)

        def fn(t: torch.Tensor) -> torch.Tensor:
            return t if not dims else torch.sum(t, dim=dims, keepdim=keep)

        k = (n + 2) * 2.0**-53
        lo, hi = widen(fn(mig) * (1 - k), fn(mag) * (1 + k))
        out = Interval(lo.clamp(min=0.0), hi, dtype)
        return RuleResult(
            out=out,
            lipschitz={"self": float(n)},
            curvature=0.0,
            error=SumError(absx, out, n, False, fn),
            accum_length=n,
            flops=2.0 * x.numel(),
        )
    # ord 2, on x viewed as at least 1-d (a scalar's norm is |x|)
    x_shape = tuple(x.shape)
    xv = x if x.shape else Interval(x.lo.reshape(1), x.hi.reshape(1), x.dtype)
    if not x.shape:
        dims, mig, mag = [0], mig.reshape(1), mag.reshape(1)
    lo = _l2_scaled(mig, dims, upper=False)
    hi = _l2_scaled(mag, dims, upper=True)
    lo, hi = widen(lo, hi)
    lo = lo.clamp(min=0.0)  # (reduced dims kept, size 1)
    out_shape = tuple(inp.out_shapes[0])
    out = Interval(lo.reshape(out_shape), hi.reshape(out_shape), dtype)
    # Lipschitz (infinity norm): sup ||grad||_1 = sup ||x||_1 / ||x||_2 <= sqrt(n), and
    # <= sum mag / min ||x||_2 on a box away from 0.
    sq = math.sqrt(n) * (1 + 2.0**-50)
    r_min = float(lo.min())
    L = sq
    if r_min > 0:
        s1 = mag.sum(dim=dims, keepdim=True) * (1 + (n + 2) * 2.0**-52)
        L = min(sq, float((s1 / lo).max()) * (1 + 2.0**-50))
    # Curvature: D^2||x||[h, h] = (||h||^2 - (x.h)^2 / ||x||^2) / ||x|| <= n / ||x|| for
    # ||h||_inf <= 1; the norm is not C^2 at 0, so a box reaching the zero vector has none.
    kappa = (0.5 * n / r_min) * (1 + 2.0**-50) if r_min > 0 else INF
    return RuleResult(
        out=out,
        lipschitz={"self": L},
        curvature=kappa,
        error=VectorNormError(xv, out, tuple(dims), n, x_shape),
        accum_length=n,
        flops=2.0 * x.numel(),
    )
