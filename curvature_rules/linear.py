"""Matrix products: mm, addmm, bmm (and the shared bilinear machinery that conv uses).

Ranges (midpoint-radius interval products, Rump 1999): for A in [Ac +- Ar], B in [Bc +- Br],
``AB in Ac Bc +- (|Ac| (Br + gamma_k |Bc|) + Ar (|Bc| + Br))``, where the gamma_k term covers
the float64 rounding of ``Ac Bc`` (Higham Thm 3.5) and each non-negative product is rounded up.

Lipschitz (infinity norms): w.r.t. A, the largest column sum of |B|; w.r.t. B, the largest
row sum of |A| (exact for a point operand). Curvature: 0 when one operand is a constant (the
map is affine); otherwise ``D^2(AB)[h, h] = 2 h_A h_B`` gives kappa = k (the inner length).

Rounding error (the arithmetic model of certifier.formats), with computed operands
``A^ = A + dA``, ``B^ = B + dB``:

* propagated: ``|dA| |B| + |A| |dB| + |dA| |dB|`` (exact, not first-order);
* accumulation in the accumulation format: ``gamma_k(u_acc) |A^| |B^|`` (Higham Thm 3.5;
  any summation order, FMA or not), plus ``k * eta_acc / 2`` for products that underflow;
* tf32: inputs rounded to 11 bits inside the kernel, by rounding or by truncation
  (``u_mul = 2^-10``; ``eta_mul = 2^-136`` for a subnormal operand):
  ``(2 u_mul + u_mul^2) |A^| |B^| + k eta_mul (1 + u_mul)(max|A^| + max|B^|) + k eta_mul^2``;
* addmm: ``beta * C + alpha * A B`` is formed in the accumulator and rounded once (cpublas and
  oneDNN on CPU, cuBLAS/cuBLASLt on GPU; checked on CPU by tests/test_arith_model.py), so the
  bias joins the accumulation (gamma_{k+1});
* storing the output: ``u |C^| + eta/2``.
Weights cast to a lower format carry ``u_c |W| + eta_c/2``; that term is applied in closed
form (no per-format copy of the weight is made).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from certifier.formats import gamma
from certifier.interval import INF, Interval, abs_matmul_upper, widen
from curvature_rules._common import finite_max, fmag, pad_left, safe_mul
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64
U64 = 2.0**-53

Bilinear = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _clean(t: torch.Tensor, fill: float = INF) -> torch.Tensor:
    return torch.where(torch.isnan(t), torch.full_like(t, fill), t)


def upper(op: Bilinear, a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Upper bound of the bilinear ``op(a, b)`` for non-negative ``a``, ``b`` (float64)."""
    r = op(a, b).nan_to_num_(nan=INF, posinf=INF, neginf=-INF)  # fresh: cleaned in place
    return r.mul_(1.0 + (k + 2) * 2.0**-52).add_(2.0**-1000)


U32 = 2.0**-24


def upper32(op: Bilinear, a: torch.Tensor, b: torch.Tensor, k: int, b32: torch.Tensor | None = None, bmax: float | None = None) -> torch.Tensor:
    """Upper bound of ``op(a, b)`` for non-negative ``a``, ``b``, computed in float32.

    NB: rounding each operand to float32 errs by at most u32 relative, or by flushing values
    below 2**-149 to 0; the float32 accumulation errs by at most gamma_k(u32) relative for
    non-negative data (Higham Thm 3.5). So ``op32 * (1 + u32)^2 (1 + gamma_k) + k 2**-149 (max a
    + max b + 1)`` bounds the exact value; anything beyond the float32 range becomes inf (an
    upper bound). Used by the error pass, where bounds need not be tight to the last bit.
    """
    a32 = a.to(torch.float32)
    if b32 is None:
        b32 = b.to(torch.float32)
    if b is None:
        b = b32
    r = op(a32, b32).to(torch.float64)
    r = torch.nan_to_num(r, nan=INF, posinf=INF)
    g = k * U32 / (1 - k * U32) if k * U32 < 0.5 else INF
    amax, a_inf = _largest_finite(a)
    if bmax is None:
        bmax, b_inf = _largest_finite(b)
    else:
        b_inf = False
    if a_inf:  # an inf entry times a positive partner: inf, whatever the kernel does with 0
        r = _reached(op(torch.isinf(a).to(torch.float32), (b > 0).to(torch.float32)), r)
    if b_inf:
        r = _reached(op((a > 0).to(torch.float32), torch.isinf(b).to(torch.float32)), r)
    tiny = k * 2.0**-149 * (amax + bmax + 1.0) if a.numel() and b.numel() else 0.0
    return r * ((1 + U32) ** 2 * (1 + g) * (1 + 2.0**-50)) + tiny


def _reached(hits: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.where(hits.to(torch.float64) > 0, torch.full_like(r, INF), r)


def _largest_finite(t: torch.Tensor) -> tuple[float, bool]:
    """(largest finite entry of a non-negative tensor, or 0 if none; whether any is inf), for
    :func:`upper32`'s underflow term.

    NB: only finite entries need the underflow term. Outputs that an inf entry reaches with a
    positive partner are set to inf explicitly (a kernel may skip a product whose float32
    partner flushed to 0, or yield NaN for it). Taking the max over every entry instead made
    the term inf for a whole batch of configurations as soon as one of them had an unbounded
    error (a bf16 error that is unbounded made the fp64 bound unbounded too). A NaN entry
    (never produced: errors are cleaned) gives inf everywhere."""
    if t.numel() == 0:
        return 0.0, False
    v = float(t.max())
    if math.isfinite(v):
        return v, False
    if v != v or bool(torch.isnan(t).any()):
        return INF, False
    return float(t.masked_fill(torch.isinf(t), 0).max()), True


#: Products larger than this many multiply-adds compute their center in float32 (with its
#: rounding error added to the radius); smaller ones stay in float64.
FP32_CENTER_MACS = 2_000_000


def point_scalars32(B: Interval, absB: torch.Tensor | None = None) -> tuple[float, float]:
    """(max |W|, largest column sum of |W| rounded up) of constant float32 weights, cached."""

    def stats(iv: Interval) -> tuple[float, float]:
        m = iv.value.abs() if absB is None else absB
        k = m.shape[-2] if m.dim() >= 2 else 1
        cs = float(m.sum(-2).max()) * (1 + (k + 2) * U32) if m.numel() else 0.0
        return (float(m.max()) if m.numel() else 0.0, cs)

    return B.cached("scalars32", stats)  # type: ignore[return-value]


def point_stats32(B: Interval) -> tuple[torch.Tensor, float, float]:
    """(|W| in float32, max |W|, largest column sum of |W| rounded up) for constant weights.

    NB: only the two scalars are cached on the interval; |W| is recomputed on each call and
    dropped after use. Keeping it for every weight held a float32 copy of all parameters for
    the whole analysis (BERT-base: 440 MB, whose first touch cost ~110k page faults, about
    1.5 s of kernel time per run on this machine); the extra abs passes cost far less."""
    m = B.value.abs().to(torch.float32)
    mx, cs = point_scalars32(B, m)
    return m, mx, cs


def _near_points(A: Interval, B: Interval, k: int) -> bool:
    """Whether float32 centers would dominate the product's radius: each operand's radius is
    below the float32 product's relative rounding (about ``k u32``) of its magnitude. At a
    point box (witness checks, pointwise bounds) a float32 center widens every large product
    by ``gamma_k(u32) |A| |B|`` (1e-3 on BERT-base's first projection) and that width compounds
    through the layers; float64 keeps it at ``gamma_k(u64)``."""
    rel = 4 * k * U32

    def small(iv: Interval) -> bool:
        if iv.is_point:
            return True
        m = float(iv.mag.max()) if iv.lo.numel() else 0.0
        return float(iv.rad.max()) <= rel * m if iv.lo.numel() else True

    return small(A) and small(B)


def bilinear_interval(op: Bilinear, A: Interval, B: Interval, k: int, dtype: torch.dtype, macs: int = 0) -> Interval:
    """Sound interval of ``op(A, B)`` for a bilinear ``op`` with non-negative monotonicity.

    With a float32 center (large products): rounding Ac and Bc to float32 errs by at most
    u32 relative each, and the float32 product by gamma_k(u32) relative to |Ac32||Bc32| (Higham
    Thm 3.5), so ``|fl32(Ac Bc) - Ac Bc| <= (2 u32 + gamma_k(u32)(1 + u32)^2) |Ac| |Bc|``; that
    term joins the radius, whose non-negative products are bounded by :func:`upper32`.
    """
    if A.is_point and B.is_point and not dtype.is_floating_point:
        return Interval.point(op(A.value, B.value))
    big = macs > FP32_CENTER_MACS and k * U32 < 0.01 and A.is_bounded() and B.is_bounded()
    near = big and _near_points(A, B, k)
    if near and B.is_point and B.value.dtype == torch.float32:
        # A near-point times constant float32 weights: a float64 center (the product of
        # float64 values errs by gamma_k(u64) |Ac| |W|, Higham Thm 3.5), the radius from the
        # float32 |W| (no float64 copy of the weights is held).
        Ac = A.mid
        st = point_stats32(B)
        cc = op(Ac, B.value.to(torch.float64))
        rad = upper32(op, A.rad + gamma(k, U64) * Ac.abs(), None, k, b32=st[0], bmax=st[1])  # type: ignore[arg-type]
        lo, hi = widen(cc - rad, cc + rad)
        return Interval(lo, hi, dtype)
    big = big and not near
    if big and B.is_point and not A.is_point and B.value.dtype == torch.float32:
        # Constant float32 weights: everything comes from the float32 value (|W| is exact).
        Ac = A.mid
        aAc = Ac.abs()
        g = 2 * U32 + (k * U32 / (1 - k * U32)) * (1 + U32) ** 2
        st = point_stats32(B)
        cc = op(Ac.to(torch.float32), B.value).to(torch.float64)
        rad = upper32(op, A.rad + g * aAc, None, k, b32=st[0], bmax=st[1])  # type: ignore[arg-type]
        lo, hi = widen(cc - rad, cc + rad)
        return Interval(lo, hi, dtype)
    Ac, Bc = A.mid, B.mid
    aAc = A.mag if A.is_point else Ac.abs()
    aBc = B.mag if B.is_point else Bc.abs()
    if big:
        g = 2 * U32 + (k * U32 / (1 - k * U32)) * (1 + U32) ** 2
        cc = op(Ac.to(torch.float32), Bc.to(torch.float32)).to(torch.float64)
        up_ = upper32
    else:
        g = gamma(k, U64)
        cc = op(Ac, Bc)
        up_ = upper
    if B.is_point:
        rad = up_(op, A.rad + g * aAc, aBc, k)
    elif A.is_point:
        rad = up_(op, aAc, B.rad + g * aBc, k)
    else:
        Ar, Br = A.rad, B.rad
        rad = up_(op, aAc, Br + g * aBc, k) + up_(op, Ar, aBc + Br, k)
    lo, hi = widen(cc - rad, cc + rad)
    return Interval(lo, hi, dtype)


@dataclass(frozen=True)
class BilinearError:
    """Rounding-error model of ``C = op(A, B) [+ bias]`` (see the module docstring)."""

    #: the bound is (error before the final rounding) + ctx.store(...), with one store call
    #: (certifier.rounding records the first part for a relu that reads the output)
    final_store = True

    op: Bilinear  # handles a leading configuration dim on either operand
    rowsum: Callable[[torch.Tensor], torch.Tensor]  # op(t, ones_like(B)) for t shaped like A
    colsum: Callable[[torch.Tensor], torch.Tensor]  # op(ones_like(A), t) for t shaped like B
    a_name: str
    b_name: str
    A: Interval
    B: Interval
    out: Interval
    k: int
    bias_name: str | None = None
    bias: Interval | None = None
    alpha: float = 1.0
    beta: float = 1.0

    def _operand(self, ctx: ErrorContext, name: str, iv: Interval, other: Interval):
        """(materialised error or None, structured cast (u_c, he_c) or None).

        A point operand (a weight), and an exact input, only carry the error of their cast to
        the node's format, which is applied in closed form (see propagate)."""
        if iv.is_point and not other.is_point:
            return None, ctx.cast_point(name)
        # An exact input that is only rounded on entry (a domain input, or any input in the
        # local-only pass) has its cast applied in closed form too.
        e, c = ctx.err_or_cast(name)
        # NB: align the batch dims of an operand of lower rank (matmul broadcasting).
        return (None if e is None else pad_left(e, len(self.out.shape))), c

    def _signed_cast(self, ctx: ErrorContext, name: str, point: Interval, other: Interval, on_b: bool) -> torch.Tensor | None:
        """``|op(x, dW)|`` bounded over the exact other operand's box (center c, radius r),
        with ``dW = fl(W) - W`` the known operand's exact rounding (ctx.point_delta):
        ``|op(c, dW)| + op(r, |dW|)``, the float64 products' own errors included
        (``gamma_k(u64) op(|c|, |dW|)``, Higham Thm 3.5). None: not asked for or not known,
        and the model's ``u |W| |x| + eta/2`` applies."""
        pd = getattr(ctx, "point_delta", None)
        if pd is None or not point.is_point:
            return None
        d = pd(name)
        if d is None:
            return None
        lo, hi = other.lo.to(F64), other.hi.to(F64)
        if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
            return None
        c = (lo + hi) * 0.5
        r = torch.maximum(hi - c, c - lo) * (1 + 2.0**-52)
        g = gamma(self.k, U64)
        if on_b:
            sc, mg = self.op(c, d), upper(self.op, r + g * c.abs(), d.abs(), self.k)
        else:
            sc, mg = self.op(d, c), upper(self.op, d.abs(), r + g * c.abs(), self.k)
        out = (sc.abs() * (1 + 2.0**-50)).add_(mg)
        return torch.nan_to_num(out, nan=INF, posinf=INF)

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        F, nd = ctx.F, len(self.out.shape)
        b = lambda v: ctx.b(v, nd)  # noqa: E731
        absA = fmag(self.A)
        if self.B.is_point and self.B.value.dtype == torch.float32 and not self.A.is_point:
            b32, bmax, _ = point_stats32(self.B)
            absB = b32
            AB = upper32(self.op, absA, None, self.k, b32=b32, bmax=bmax)  # type: ignore[arg-type]
        else:
            absB = fmag(self.B)
            AB = upper32(self.op, absA, absB, self.k)  # (out shape), shared by all configurations
        eA, cA = self._operand(ctx, self.a_name, self.A, self.B)
        eB, cB = self._operand(ctx, self.b_name, self.B, self.A)
        P = torch.zeros((F, *self.out.shape), dtype=F64)
        if eA is None and eB is None and cA is not None and cB is not None:
            # Both operands exact up to their casts: |dA| <= uA|A| + hA, |dB| <= uB|B| + hB and
            # |A^B^ - AB| <= |dA||B^| + |A||dB| <= (uA(1 + uB) + uB)|A||B|
            #   + (1 + uA) hB rowsum|A| + hA (1 + uB) colsum|B| + k hA hB.
            (uA, hA), (uB, hB) = cA, cB
            P = (
                b(uA * (1 + uB) + uB) * AB
                + b((1 + uA) * hB) * _clean(self.rowsum(absA)).unsqueeze(0)
                + b(hA * (1 + uB)) * _clean(self.colsum(absB.to(F64))).unsqueeze(0)
                + b(hA * hB) * self.k
            )
            cA = cB = None
        # |dA| |B^| where |B^| <= |B| + dB
        if eA is not None:
            t = upper32(self.op, eA, absB, self.k, b32=absB if absB.dtype == torch.float32 else None)
            if cB is not None:
                uB, hB = cB
                t = t * (1 + b(uB)) + b(hB) * _clean(self.rowsum(eA))
            elif eB is not None:
                t = t + upper32(self.op, eA, eB, self.k)
            P.add_(t)  # NB: P is a fresh tensor of shape (F, *out) here
        # |A| |dB| (+ |dA||dB| when A is a cast point)
        if eB is not None:
            t = upper32(self.op, absA, eB, self.k)
            if cA is not None:
                uA, hA = cA
                t = t * (1 + b(uA)) + b(hA) * _clean(self.colsum(eB))
            P.add_(t)
        # A known operand's cast: ``lin`` bounds op(|A|, |dB|) (what |A^| |B^| needs, for
        # the accumulation); the error's own term |op(A, dB)| may be the signed one.
        lin = ex = None
        if cB is not None and eB is None:
            uB, hB = cB
            lin = b(uB) * AB + b(hB) * _clean(self.rowsum(absA)).unsqueeze(0)
            ex = self._signed_cast(ctx, self.b_name, self.B, self.A, True)
        elif cA is not None and eA is None:
            uA, hA = cA
            lin = b(uA) * AB + b(hA) * _clean(self.colsum(absB.to(F64))).unsqueeze(0)
            ex = self._signed_cast(ctx, self.a_name, self.A, self.B, False)
        # NB: the in-place steps below work on fresh tensors and keep the order of the
        # operations of rnd = c S + he k, total = |alpha| (P + rnd).
        if lin is not None:
            S = P + lin + AB  # bound on |A^| |B^|
            P = P + (lin if ex is None else torch.minimum(ex, lin))
        else:
            S = P + AB  # bound on |A^| |B^|
        kk = self.k + (1 if self.bias is not None else 0)
        u_acc, u_mul = ctx.u_acc, ctx.u_mul
        gk = torch.tensor([gamma(kk, float(x)) for x in u_acc], dtype=F64)
        rnd = S.mul_(b(gk * (1 + u_mul) ** 2 + 2 * u_mul + u_mul**2)).add_(b(ctx.he_acc) * self.k)
        eta_mul = getattr(ctx, "eta_mul", None)
        if eta_mul is not None and bool((eta_mul > 0).any()):
            # A subnormal multiplicand rounded to tf32 errs by up to its spacing there,
            # absolutely: sum_k eta (|a^| + |b^|)(1 + u) + eta^2, the maxima taken over the
            # computed operands (ranges plus this configuration's errors).
            def amax(mag: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
                m = torch.full((F,), finite_max(mag), dtype=F64)
                if e is not None:
                    m = m + _clean(e.reshape(F, -1)).max(1).values
                return m

            # NB: operands cast into the node's storage format (fp32 for tf32):
            # |a^| <= |a| (1 + 2^-24) + 2^-150, covered generously.
            mx = (amax(absA, eA) + amax(absB, eB)) * (1 + 2.0**-20) + 2.0**-140
            rnd.add_(b(eta_mul * self.k * ((1 + u_mul) * mx + eta_mul) * (1 + gk)))
        ymag = fmag(self.out).unsqueeze(0)
        total = rnd.add_(P)
        if self.alpha != 1.0:
            total.mul_(abs(self.alpha))
        if self.bias is not None:
            bmag = fmag(self.bias)
            if self.bias.is_point:
                cp = ctx.cast_point(self.bias_name)  # type: ignore[arg-type]
                eb = None if cp is None else (b(cp[0]) * bmag + b(cp[1]))
            else:
                eb = ctx.err(self.bias_name)  # type: ignore[arg-type]
                if eb is not None:
                    eb = pad_left(eb.reshape((F, *self.bias.shape)), nd)
            if eb is not None:
                total.add_(abs(self.beta) * eb)
            # The bias joins the accumulation (gamma_{k+1}); the result is rounded once.
            total.add_(b(gk) * abs(self.beta) * bmag)
            if self.alpha != 1.0 or self.beta != 1.0:
                total = total + b(u_acc) * 2 * (ymag + total)
        elif self.alpha != 1.0:
            total = total + b(u_acc) * (ymag + total)
        return ctx.store(ymag + total, nd).add_(total)

    def out_slope(self, ctx: ErrorContext) -> torch.Tensor:
        """Per configuration, the derivative of :meth:`propagate`'s bound with respect to the
        output magnitude ``ymag = fmag(out)``: the bound is ``rest + slope * ymag`` elementwise,
        with ``rest`` free of ymag (the certifier.adjoint pass bounds the sum of slope * |y|
        jointly over the domain). Mirrors propagate's last lines: the store charges
        ``u (ymag + total)``, and a scaled product or bias adds ``u_acc (ymag + total)``
        (twice with a bias) to total first."""
        u, u_acc = ctx.u, ctx.u_acc
        if self.bias is not None and (self.alpha != 1.0 or self.beta != 1.0):
            return u * (1 + 2 * u_acc) + 2 * u_acc
        if self.bias is None and self.alpha != 1.0:
            return u * (1 + u_acc) + u_acc
        return u.clone()

    def in_slope(self, ctx: ErrorContext) -> torch.Tensor:
        """Per configuration, the derivative of :meth:`propagate`'s bound with respect to
        ``AB`` (the bound on ``|A^| |B^|``) when neither operand carries an error or a cast
        (``P = 0``: the adjoint pass's local bound with the weight passed already rounded):
        ``total = c AB + ...`` with ``c = gamma_k (1 + u_mul)^2 + 2 u_mul + u_mul^2``, scaled
        by |alpha| and the branch factors below, and the result is ``u ymag + (1 + u) total``."""
        u, u_acc, u_mul = ctx.u, ctx.u_acc, ctx.u_mul
        kk = self.k + (1 if self.bias is not None else 0)
        gk = torch.tensor([gamma(kk, float(x)) for x in u_acc], dtype=F64)
        c = (gk * (1 + u_mul) ** 2 + 2 * u_mul + u_mul**2) * abs(self.alpha)
        if self.bias is not None and (self.alpha != 1.0 or self.beta != 1.0):
            c = c * (1 + 2 * u_acc)
        elif self.bias is None and self.alpha != 1.0:
            c = c * (1 + u_acc)
        return c * (1 + u)


def _mm_op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b)


def _lipschitz(A: Interval, B: Interval, a_name: str, b_name: str) -> dict[str, float]:
    L: dict[str, float] = {}
    if A.is_float and not A.is_point:
        # max column sum of |B|
        if B.is_point and B.value.dtype == torch.float32:
            L[a_name] = point_scalars32(B)[1]
        else:
            L[a_name] = finite_max(fmag(B).sum(-2)) if B.numel() else 0.0
    if B.is_float and not B.is_point:
        L[b_name] = finite_max(fmag(A).sum(-1)) if A.numel() else 0.0  # max row sum of |A|
    return L


def _matmul_result(inp: RuleInput, a_name: str, b_name: str, bias_name: str | None) -> RuleResult:
    A, B = inp.tensor(a_name), inp.tensor(b_name)
    if len(A.shape) < 2 or len(B.shape) < 2:
        raise NotImplementedError("matmul with a 1-D operand")
    k = A.shape[-1]
    dtype = inp.out_dtypes[0]
    m_ = A.numel() // max(k, 1)
    out = bilinear_interval(_mm_op, A, B, k, dtype, macs=m_ * k * B.shape[-1])
    alpha = float(inp.get("alpha", 1.0))  # type: ignore[arg-type]
    beta = float(inp.get("beta", 1.0))  # type: ignore[arg-type]
    bias = inp.tensor(bias_name) if bias_name else None
    if bias is not None:
        lo, hi = out.lo * alpha, out.hi * alpha
        lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
        blo, bhi = bias.lo * beta, bias.hi * beta
        blo, bhi = torch.minimum(blo, bhi), torch.maximum(blo, bhi)
        lo, hi = widen(lo + blo, hi + bhi)
        out = Interval(lo, hi, dtype)
    L = {n: v * abs(alpha) for n, v in _lipschitz(A, B, a_name, b_name).items()}
    if bias is not None and not bias.is_point:
        L[bias_name] = abs(beta)  # type: ignore[index]
    kappa = float(k) * abs(alpha) if (not A.is_point and not B.is_point) else 0.0
    m = A.numel() // max(k, 1)
    n = B.shape[-1]
    err = BilinearError(
        op=_mm_op,
        rowsum=lambda t: t.sum(-1, keepdim=True),
        colsum=lambda t: t.sum(-2, keepdim=True),
        a_name=a_name,
        b_name=b_name,
        A=A,
        B=B,
        out=out,
        k=k,
        bias_name=bias_name,
        bias=bias,
        alpha=alpha,
        beta=beta,
    )
    return RuleResult(
        out=out,
        lipschitz=L,
        curvature=kappa,
        error=err if dtype.is_floating_point else None,
        accum_length=k,
        flops=2.0 * m * k * n,
    )


@register_rule([aten.mm.default, aten.bmm.default, aten.matmul.default])
def mm_rule(inp: RuleInput) -> RuleResult:
    """Matrix product (batched or not)."""
    names = list(inp.args.keys())
    return _matmul_result(inp, names[0], names[1], None)


@register_rule([aten.addmm.default, aten.baddbmm.default])
def addmm_rule(inp: RuleInput) -> RuleResult:
    """``beta * bias + alpha * (mat1 @ mat2)``."""
    names = list(inp.args.keys())  # self, mat1|batch1, mat2|batch2, beta, alpha
    return _matmul_result(inp, names[1], names[2], names[0])


def lipschitz_bound(W: torch.Tensor) -> float:
    """The infinity-norm operator norm of ``x -> x @ W``: the largest column sum of |W|."""
    return float(W.abs().to(F64).sum(-2).max()) * (1 + W.shape[-2] * 2.0**-52)


__all__ = ["BilinearError", "bilinear_interval", "lipschitz_bound", "upper", "safe_mul"]
