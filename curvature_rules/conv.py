"""Convolution (aten.convolution: 1-D/2-D/3-D, strided, padded, dilated, grouped, transposed).

A convolution is bilinear in (input, weight) and monotone on non-negative data, so ranges
and rounding errors use the midpoint-radius machinery of :mod:`curvature_rules.linear` with
inner length ``k = C_in/groups * prod(kernel)`` (the dot-product length of one output).

Lipschitz (infinity norm) w.r.t. the input is ``max(|T| 1)``, the largest absolute row sum
of the convolution operator T: for a plain convolution that is the largest per-output-channel
sum of |W| (zero padding only drops terms), computed exactly; for a transposed convolution it
is evaluated as ``conv_transpose(1, |W|)``. NB: the spectral norm of the reshaped weight
matrix is *not* an upper bound of the operator norm (DESIGN 4.1) and is never used.
Curvature is 0 (affine in the input for a constant weight).
"""

from __future__ import annotations

import math

import torch

from certifier.interval import Interval, widen
from curvature_rules._common import fmag
from curvature_rules.linear import BilinearError, bilinear_interval, upper
from curvature_rules.registry import RuleInput, RuleResult, register_rule

aten = torch.ops.aten
F64 = torch.float64


@register_rule([aten.convolution.default])
def convolution_rule(inp: RuleInput) -> RuleResult:
    """Sound interval, Lipschitz bound and rounding-error model of a convolution."""
    x, w = inp.tensor("input"), inp.tensor("weight")
    bias = inp.args.get("bias")
    stride, padding, dilation = inp.args["stride"], inp.args["padding"], inp.args["dilation"]
    transposed = bool(inp.args["transposed"])
    output_padding, groups = inp.args["output_padding"], int(inp.args["groups"])  # type: ignore[arg-type]
    nsp = len(w.shape) - 2

    def conv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Accept a leading configuration dimension on the input, the weight, or both.
        if b.dim() > nsp + 2:  # error on the weight: one convolution per configuration
            if a.dim() > nsp + 2:  # ... and on the input (NB: paired by configuration)
                a = a.expand((b.shape[0],) + a.shape[1:]) if a.shape[0] == 1 else a
                return torch.stack([conv(ai, bi) for ai, bi in zip(a, b)])
            return torch.stack([conv(a, bi) for bi in b])
        extra = a.dim() - (nsp + 2)
        if extra > 0:
            lead = a.shape[:extra]
            flat = a.reshape((math.prod(lead) * a.shape[extra],) + a.shape[extra + 1 :])
            r = aten.convolution(flat, b, None, stride, padding, dilation, transposed, output_padding, groups)
            return r.reshape(lead + (a.shape[extra],) + r.shape[1:])
        return aten.convolution(a, b, None, stride, padding, dilation, transposed, output_padding, groups)

    if transposed:
        k = math.prod(w.shape[2:]) * w.shape[0]  # upper bound on the terms reaching one output
    else:
        k = math.prod(w.shape[1:])
    dtype = inp.out_dtypes[0]
    out = bilinear_interval(conv, x, w, k, dtype, macs=k * math.prod(inp.out_shapes[0]))
    bias_iv = bias if isinstance(bias, Interval) else None
    if bias_iv is not None:
        shape = (1, -1) + (1,) * nsp
        lo, hi = widen(out.lo + bias_iv.lo.reshape(shape), out.hi + bias_iv.hi.reshape(shape))
        out = Interval(lo, hi, dtype)
    absw = fmag(w)
    if transposed:
        ones = torch.ones((1,) + x.shape[1:], dtype=F64)
        Lx = float(upper(conv, ones, absw, k).max())
    else:
        Lx = float(absw.reshape(absw.shape[0], -1).sum(1).max()) * (1 + (k + 2) * 2.0**-52)
    L = {}
    if not x.is_point:
        L["input"] = Lx
    if not w.is_point:
        L["weight"] = float(fmag(x).sum().item())  # crude but sound: |dy| <= sum|x| * max|dW|
    if bias_iv is not None and not bias_iv.is_point:
        L["bias"] = 1.0
    ones_w = torch.ones_like(absw)
    ones_x = torch.ones(x.shape, dtype=F64)
    err = BilinearError(
        op=conv,
        rowsum=lambda t: conv(t, ones_w),
        colsum=lambda t: conv(ones_x, t),
        a_name="input",
        b_name="weight",
        A=x,
        B=w,
        out=out,
        k=k,
        bias_name="bias" if bias_iv is not None else None,
        bias=_bias_broadcast(bias_iv, nsp),
    )
    n_out = out.numel()
    return RuleResult(
        out=out,
        lipschitz=L,
        curvature=0.0 if (x.is_point or w.is_point) else float(k),
        error=err,
        accum_length=k,
        flops=2.0 * n_out * k,
    )


def _bias_broadcast(bias: Interval | None, nsp: int) -> Interval | None:
    """The bias viewed as (C, 1, ..., 1) so it broadcasts against (N, C, *spatial)."""
    if bias is None:
        return None
    shape = (-1,) + (1,) * nsp
    return bias.map_shape(lambda t: t.reshape(shape))
