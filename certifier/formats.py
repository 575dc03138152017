"""Floating-point formats and the arithmetic model the error analysis assumes.

Every number here is a property of the IEEE-754 (or OCP FP8) encoding:

* ``p``: significand bits including the implicit bit; unit roundoff ``u = 2**-p``
  (round-to-nearest, Higham, *Accuracy and Stability of Numerical Algorithms*, §2.1).
* ``max``: largest finite value. A value whose magnitude can exceed it makes the format
  inadmissible for the node that must hold it (overflow).
* ``min_normal``; ``eta``: spacing of the subnormals (the smallest positive subnormal).
  Rounding to nearest then satisfies ``|fl(x) - x| <= u*|x| + eta/2`` for every finite ``x``
  in range, gradual underflow included.

tf32 is a *compute* format: matmul and convolution inputs are rounded to 11 significand bits
inside the kernel, products are accumulated and stored in fp32 (NVIDIA A100 whitepaper).
FP8 E4M3 is the ``fn`` variant of the OCP spec (no infinities, max 448); E5M2 keeps IEEE
semantics (max 57344).

The arithmetic model (recorded in every certificate as ``arithmetic``): a node running in a
low-precision format reads and writes tensors stored in that format and accumulates
dot products, reductions and the inner steps of composite kernels (softmax, layer norm) in
the *accumulation format* (fp32 by default, as GPU tensor cores and PyTorch's CPU kernels
do; fp64 for fp64). Elementwise transcendental functions are evaluated in the accumulation
format with at most ``FUNCTION_ULPS[name]`` units in the last place of error, then rounded
to the storage format.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch


@dataclass(frozen=True)
class Format:
    """One floating-point format."""

    name: str
    p: int  # significand bits, implicit bit included
    max: float  # largest finite value
    min_normal: float
    eta: float  # smallest positive subnormal (spacing of the subnormal range)
    bits: int  # storage width in bits
    torch_dtype: torch.dtype | None  # dtype used to run it on CPU (None: not runnable)
    compute_only: bool = False  # tf32: storage stays fp32

    @property
    def u(self) -> float:
        """Unit roundoff 2**-p (exact in binary64)."""
        return 2.0 ** (-self.p)

    @property
    def mul_u(self) -> float:
        """Relative error of rounding a multiplicand to a compute-only format (tf32): 2**(1-p),
        which covers truncation as well as rounding to nearest (Triton's tf32 dot and some
        vendors' kernels truncate, cuBLAS rounds). 0 for storage formats."""
        return 2.0 ** (1 - self.p) if self.compute_only else 0.0

    @property
    def mul_eta(self) -> float:
        """Absolute error of that rounding for a subnormal multiplicand (its spacing there)."""
        return self.eta if self.compute_only else 0.0

    @property
    def storage(self) -> "Format":
        """The format in which tensors are stored (tf32 stores fp32)."""
        return FORMATS["fp32"] if self.compute_only else self

    def max_fraction(self) -> Fraction:
        return Fraction(self.max)


def _fp(name: str, p: int, emax: int, emin: int, bits: int, dtype, max_override=None, compute_only=False) -> Format:
    mx = max_override if max_override is not None else (2.0 - 2.0 ** (1 - p)) * 2.0**emax
    return Format(
        name=name,
        p=p,
        max=mx,
        min_normal=2.0**emin,
        eta=2.0 ** (emin - p + 1),
        bits=bits,
        torch_dtype=dtype,
        compute_only=compute_only,
    )


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _fp("fp64", 53, 1023, -1022, 64, torch.float64),
        _fp("fp32", 24, 127, -126, 32, torch.float32),
        _fp("tf32", 11, 127, -126, 32, torch.float32, compute_only=True),
        _fp("bf16", 8, 127, -126, 16, torch.bfloat16),
        _fp("fp16", 11, 15, -14, 16, torch.float16),
        # E4M3 "fn": no infinities; the all-ones pattern is NaN, so the max is 1.75 * 2**8.
        _fp("fp8_e4m3", 4, 8, -6, 8, getattr(torch, "float8_e4m3fn", None), max_override=448.0),
        _fp("fp8_e5m2", 3, 15, -14, 8, getattr(torch, "float8_e5m2", None)),
    )
}

#: Formats in order of decreasing precision (the order used in tables and tie-breaks).
FORMAT_ORDER: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2")

#: Ulps of error assumed for elementwise functions evaluated in the accumulation format.
#: SLEEF's u10 routines (PyTorch CPU) guarantee 1.0 ulp and CUDA's single-precision
#: intrinsics 1-4 ulp (CUDA C Programming Guide, "Mathematical Functions"); we assume 4 for
#: every transcendental function and 1 (correct rounding) for the IEEE basic operations.
FUNCTION_ULPS: dict[str, int] = {
    "add": 1, "sub": 1, "mul": 1, "div": 1, "sqrt": 1, "rsqrt": 2,
    "exp": 4, "log": 4, "tanh": 4, "sigmoid": 4, "erf": 4, "gelu": 8, "pow": 4,
    "sin": 4, "cos": 4, "atan": 4,  # atan: 0.80 ulp measured (fp32, torch 2.13 CPU)
    # measured on fp32, torch 2.13 CPU (3e6 points): sinh 1.0, cosh 0.50, asinh 1.49, erfc
    # 0.84, asin 0.77, acos 0.80, atanh 1.0 ulp; CUDA's documented bounds are 2-4 ulp
    "sinh": 4, "cosh": 4, "asinh": 4, "erfc": 4, "asin": 4, "acos": 4, "atanh": 4,
}

#: Relative cost weights per format: (cost per FLOP, bytes per element). FLOP weights follow
#: dense tensor-core throughput ratios of current datacenter GPUs (A100/H100 datasheets:
#: fp8 2x fp16/bf16, tf32 1/2x, fp32 (CUDA cores) 1/16x, fp64 1/32x of fp16).
COST_FLOP: dict[str, float] = {
    "fp64": 32.0, "fp32": 16.0, "tf32": 2.0, "bf16": 1.0, "fp16": 1.0, "fp8_e4m3": 0.5, "fp8_e5m2": 0.5,
}
#: Cost of moving one byte, in FLOP-equivalents (machine balance of ~100 FLOP/byte at fp16).
COST_PER_BYTE = 100.0


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMAT_ORDER)}") from None


def accumulation_format(fmt: Format) -> Format:
    """The format products and partial sums are accumulated in (the arithmetic model)."""
    return FORMATS["fp64"] if fmt.name == "fp64" else FORMATS["fp32"]


def gamma(n: int | float, u: float) -> float:
    """Higham's gamma_n = n*u / (1 - n*u), rounded up; inf when n*u >= 1."""
    nu = float(n) * u
    if nu >= 1.0:
        return float("inf")
    g = nu / (1.0 - nu)
    return g * (1.0 + 2.0**-50)


#: Relative slack by which a computed (float64-rounded) magnitude bound is raised before
#: :func:`binade_scale` reads its binade (see there). A float64 sum of n nonnegative terms
#: in any order errs by less than n 2^-53 relative (Higham §4.2), so 2^-30 covers sums of up
#: to 2^23 terms (the longest dot products and reductions of the models here are ~10^5);
#: a power of two that close to a bound only costs that bound's factor 2 back.
_BINADE_SLACK = 2.0**-30


def binade_scale(mag: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """``B(M) <= M`` with ``|fl(v) - v| <= u B(M) + eta/2`` for every ``|v| <= M``, in any
    format with unit roundoff ``u = 2^-p`` and round to nearest.

    A normal value ``v`` with ``2^E <= |v| < 2^(E+1)`` rounds by at most half its spacing,
    ``u 2^E`` (Higham §2.1); over ``|v| <= M`` the largest is that of M's own binade, so
    ``B(M) = 2^floor(log2 M)``: up to 2x below the usual ``u M`` (M just under a power of
    two). When ``M = 2^k`` itself, ``v = +-M`` is held exactly and every smaller value lies
    in a lower binade: ``B = M / 2``. Subnormal results err by at most ``eta/2`` (the
    absolute term, unchanged).

    ``exact``: ``mag`` is a bound held exactly (an interval's end). Otherwise it is a float64
    sum of bounds, which may have rounded down onto a power of two from just above it; it is
    then raised by 2^-30 relative first, so that only the binade below is ever skipped for
    an exact bound. Zero, infinite and NaN entries are returned as they are (``u * mag``
    keeps its meaning there), as is all of ``mag`` unless it is float64."""
    if mag.dtype != torch.float64:
        return mag
    # On the bits of m (float64: sign, 11 exponent bits, 52 mantissa bits; positive floats
    # order as their bits do): B = 2^(ceil(log2 m) - 1), which is 2^floor(log2 m), or m / 2
    # for a power of two. Subtracting 1 from the bits gives the float just below m (in the
    # binade below for a power of two), and clearing its mantissa leaves the power of two
    # at its binade's bottom. Positive subnormals and 2^-1022 (far below every format's
    # normal range, where the error is eta/2 alone) give 0; zero gives infinity, which the
    # minimum with mag returns to 0; NaN stays NaN through minimum; where m is +inf (mag
    # infinite, or within 2^-30 of float64's largest value) mag itself is returned.
    m = mag.clone() if exact else mag * (1 + _BINADE_SLACK)
    big = m == float("inf")
    m.view(torch.int64).sub_(1).bitwise_and_(_EXPONENT)
    torch.minimum(m, mag, out=m)
    return torch.where(big, mag, m, out=m)


#: float64's exponent bit field (see :func:`binade_scale`).
_EXPONENT = 0x7FF0000000000000


#: fp32's unit roundoff and half its subnormal spacing (see :func:`cast_error`).
U32, H32 = 2.0**-24, 2.0**-150


def cast_error(mag: torch.Tensor, u, he, exact: bool = False) -> torch.Tensor:
    """Bound on ``|cast(v) - v|`` over ``|v| <= mag``, into a format with unit roundoff ``u``
    and half subnormal spacing ``he`` (floats, or tensors broadcasting against ``mag``: one
    per configuration): ``u B(mag) + he`` (:func:`binade_scale`), plus ``u32 mag + h32`` for
    a format narrower than fp32.

    The extra term is double rounding: PyTorch converts a float64 value to fp16, bf16 or
    fp8 through fp32 (c10's conversions take a float): 823.25002 becomes 823.25 in fp32, a
    tie, then 823.0 in fp16, off by more than fp16's half spacing 0.25 there. ``w = fl32(v)``
    lies between the same two neighbours in the format as v (they are fp32 values), so the
    result errs by at most the format's half spacing plus ``|w - v|``. A single rounding
    (fp32 results stored in fp16) is covered as well."""
    narrow = (torch.as_tensor(u, dtype=torch.float64) > U32).to(torch.float64)
    return u * binade_scale(mag, exact=exact) + he + narrow * (U32 * mag + H32)
