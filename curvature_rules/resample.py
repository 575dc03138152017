"""Resampling: upsample_nearest{1,2,3}d, _upsample_nearest_exact{1,2,3}d (in shape.py's
selection family, see below) and upsample_linear1d / upsample_bilinear2d /
upsample_trilinear3d (align_corners either way).

Nearest: every output is one input element, picked by an index that PyTorch computes in
float32 for every dtype (``nearest_idx``: ``floor(dst * scale)``), so the pick is the same in
the fp64 reference and in every format: an exact selection (range, L = 1, errors move
with their elements), registered with the view ops.

Linear: per spatial dim d the source coordinate is ``src = scale_d (dst + 1/2) - 1/2``
(clamped at 0), or ``scale_d dst`` with ``align_corners``, and the output is the tensor
product of the 1-D hat weights ``(1 - t, t)``, ``t = src - floor(src)``, on the 2^D
neighbours. The weights are non-negative and sum to 1, so

* range: the map is monotone in every input: ``[f(lo), f(hi)]`` is the exact box image
  (widened for our own float64 evaluation);
* L = 1 (infinity norm), curvature 0; input errors propagate as ``f(e)``;
* rounding: the kernel computes the weights in the accumulation format (float for
  float / bf16 / fp16 inputs, ``opmath``): the scale is rounded once (``(in - 1)/(out - 1)``,
  ``in/out`` or ``1/scale_factor``), its product with ``dst + 1/2`` once and the shift by 1/2
  once, so ``|src^ - src| <= delta_d = 4 u (in_d + 1)`` (one ulp of a value below ``in_d``
  three times, plus the scale's relative ulp times ``dst + 1/2 <= out_d``, which
  ``scale_d (dst + 1/2) <= in_d + 1/2`` bounds). The output is a continuous, piecewise
  linear function of src whose slope is a difference of two neighbours (at most ``2 M``,
  M the largest input magnitude of the plane), so a wrong src costs ``2 M delta_d``, even
  where floor(src) differs; ``1 - t`` is rounded once (``u M``); the weighted sum of 2^D
  products, nested (``h0 (w0 a + w1 b) + h1 (...)``), costs ``gamma_{2D+1} M``; each of the
  ``3 D + 2^(D+1)`` operations may underflow (``eta/2``). Then the store.

  Measured (torch 2.13 CPU, inputs in [-1, 1], 4x5 to 7x5, 13x11, 8x8): fp32 errors up to
  8.2 u (the weights' rounding), bf16 / fp16 0.5 u of the format (one rounding).

Antialiased (``_upsample_bilinear2d_aa``) and bicubic resampling (negative weights) have no
rule (fail closed). torch.export's decompositions keep upsample_nearest2d and
upsample_bilinear2d; the 1-d, 3-d and nearest-exact forms become index arithmetic in float,
whose computed indices the gather rule declines (fail closed); their rules here serve
undecomposed graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.formats import gamma
from certifier.interval import Interval, widen
from curvature_rules._common import fmag, map_configs
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


def _plane_max(t: torch.Tensor, nsp: int) -> torch.Tensor:
    """Max over the spatial dims (the trailing nsp), kept as size-1 dims."""
    return t.amax(dim=tuple(range(t.dim() - nsp, t.dim())), keepdim=True) if t.numel() else t


@dataclass(frozen=True)
class InterpError:
    fn: object
    arg: str
    x: Interval
    out: Interval
    sizes: tuple[int, ...]  # input spatial sizes

    def propagate(self, ctx: ErrorContext):
        F, nd, nsp = ctx.F, len(self.out.shape), len(self.sizes)
        e = ctx.err(self.arg)
        xm = fmag(self.x).unsqueeze(0)
        if e is None:
            P = torch.zeros((F, *self.out.shape), dtype=F64)
            M = _plane_max(xm, nsp)
        else:
            # f has non-negative weights summing to 1: |f(e^)| <= f(|e|); our float64
            # evaluation of f is inflated for its own rounding.
            P = map_configs(self.fn, e) * (1 + 2.0**-40)
            M = _plane_max(xm + e, nsp)
            P = P + _plane_max(e, nsp) * 2.0**-40
        u, he = ctx.b(ctx.u_acc, nd), ctx.b(ctx.he_acc, nd)
        us, hs = ctx.b(ctx.u, nd), ctx.b(ctx.he, nd)
        D = nsp
        # NB: PyTorch's CPU kernels for fp16 / bf16 interpolate in the storage format, not
        # in fp32: fp16 upsample_linear1d of values in [1000, 1001] errs by 0.688, where
        # one rounding of the fp32 result would give 0.468. The weights (computed in fp32
        # from the source index, delta below) are rounded to the storage format, and the
        # 2^D products and their sum are rounded there (gamma_{2D+1} in the storage u).
        g = ctx.b(torch.tensor([gamma(2 * D + 1, float(v)) for v in ctx.u], dtype=F64), nd)
        delta = sum(4 * (s + 1) for s in self.sizes)  # sum_d delta_d / u
        n_ops = 3 * D + 2 ** (D + 1)
        local = M * (g * (1 + us) + us + u * (2 * delta + D)) + (he + hs) * n_ops
        ymag = fmag(self.out).unsqueeze(0) + P + local
        return P + local + ctx.store(ymag, nd)


@register_rule(
    [
        aten.upsample_linear1d.vec,
        aten.upsample_linear1d.default,
        aten.upsample_bilinear2d.vec,
        aten.upsample_bilinear2d.default,
        aten.upsample_trilinear3d.vec,
        aten.upsample_trilinear3d.default,
    ]
)
def upsample_linear_rule(inp: RuleInput) -> RuleResult:
    """Linear / bilinear / trilinear interpolation: non-negative weights summing to 1."""
    name = next(iter(inp.args.keys()))
    x = inp.tensor(name)
    nsp = len(inp.out_shapes[0]) - 2
    if not x.is_float or nsp < 1:
        raise NotImplementedError("interpolation of a non-float tensor")
    sizes = tuple(int(s) for s in x.shape[2:])
    fn = lambda t: inp.call_with(**{name: t})  # noqa: E731
    lo, hi = fn(x.lo.to(F64)), fn(x.hi.to(F64))
    # an infinite end times a zero weight is NaN: that end is unknown
    lo, hi = lo.nan_to_num(nan=-math.inf), hi.nan_to_num(nan=math.inf)
    # Our float64 evaluation: weights off by 4 * 2^-53 (in + 1) per dim (as the kernel's, in
    # float64) and 2D + 1 roundings of the sum, each against the plane's largest magnitude.
    M = _plane_max(torch.maximum(x.lo.abs(), x.hi.abs()).to(F64), nsp)
    pad = M * (sum(8 * (s + 1) + 1 for s in sizes) + 2 * nsp + 4) * 2.0**-52
    lo, hi = widen(lo - pad, hi + pad)
    if x.numel() and bool((x.lo >= 0).all()):  # a convex combination keeps the sign
        lo = lo.clamp(min=0.0)
    if x.numel() and bool((x.hi <= 0).all()):
        hi = hi.clamp(max=0.0)
    out = Interval(lo, hi, x.dtype)
    return RuleResult(
        out=out,
        lipschitz={name: 1.0 + 2.0**-40},
        curvature=0.0,
        error=InterpError(fn, name, x, out, sizes),
        accum_length=2**nsp,
        flops=float(2 ** (nsp + 1) * math.prod(inp.out_shapes[0])),
    )
