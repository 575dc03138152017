"""Sound tensor intervals, computed in binary64 with outward widening.

An :class:`Interval` is the abstract value of one tensor: an elementwise box ``[lo, hi]`` of
float64 tensors, plus the dtype of the concrete tensor it stands for. When the value is known
exactly (parameters, buffers, constants, shape arithmetic) the concrete tensor is kept in
``value`` and ``lo``/``hi`` are derived from it lazily, so a 100M-parameter model does not
pay for float64 copies of weights that rules read directly.

Soundness conventions (NB: every rule relies on them):

* ``lo <= hi`` elementwise, never NaN; an unknown element is ``[-inf, +inf]``.
* Results computed in float64 are widened outward (``widen``) by a relative margin that
  covers the rounding of the float64 evaluation itself, so the analysis's own arithmetic
  cannot make a range too small.
* Integer and boolean tensors use the same float64 box (bools as 0/1); every integer below
  2**53 is exact in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

F64 = torch.float64
INF = float("inf")
#: An element whose interval is exactly -inf (or +inf) at both ends is either that infinity
#: or a *mask marker*: a finite value at most -2^64 (at least 2^64) in both the exact and
#: the computed run (an attention mask's finfo.min on its way into a softmax; see
#: certifier.walker._mask_markers). :func:`as_markers` reads sampled values that way.
MARKER_MIN = 2.0**64
#: Relative widening applied to float64 results of a few operations (libm error <= 4 ulp).
REL = 2.0**-48
#: Absolute widening (covers float64 underflow in the analysis itself).
ABS = 2.0**-1000


class Interval:
    """Elementwise interval over a tensor of fixed shape."""

    __slots__ = ("_lo", "_hi", "dtype", "value", "shape", "_mag", "_finite", "_cache", "_mag_src")

    def __init__(
        self,
        lo: torch.Tensor | None,
        hi: torch.Tensor | None,
        dtype: torch.dtype,
        value: torch.Tensor | None = None,
    ) -> None:
        self.dtype = dtype
        self.value = value
        self._mag = None
        self._mag_src: tuple["Interval", Callable[[torch.Tensor], torch.Tensor]] | None = None
        self._finite = None
        self._cache: dict | None = None
        if value is not None:
            self.shape = tuple(value.shape)
            self._lo = self._hi = None
            return
        assert lo is not None and hi is not None
        if lo.dtype != F64:
            lo = lo.to(F64)
        if hi.dtype != F64:
            hi = hi.to(F64)
        if lo.shape != hi.shape:
            lo, hi = torch.broadcast_tensors(lo, hi)
        # One fused check: (lo <= hi) is False for NaN bounds and for lo > hi.
        if lo.numel() and not bool((lo <= hi).all()):
            # NB: NaN bounds are replaced by infinite ones: a NaN can only come from inf - inf
            # or 0 * inf in a rule, and "unknown" is the sound reading of it.
            lo = torch.where(torch.isnan(lo), torch.full_like(lo, -INF), lo)
            hi = torch.where(torch.isnan(hi), torch.full_like(hi, INF), hi)
            if bool((lo > hi).any()):
                raise ValueError("interval with lo > hi")
        self._lo, self._hi = lo, hi
        self.shape = tuple(lo.shape)

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def point(t: torch.Tensor) -> "Interval":
        """The exact value ``t`` (kept in its own dtype)."""
        return Interval(None, None, t.dtype, value=t.detach())

    @staticmethod
    def unknown(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> "Interval":
        """The sound "know nothing" value."""
        lo = torch.full(shape, -INF, dtype=F64)
        hi = torch.full(shape, INF, dtype=F64)
        if dtype == torch.bool:
            lo, hi = torch.zeros(shape, dtype=F64), torch.ones(shape, dtype=F64)
        return Interval(lo, hi, dtype)

    @staticmethod
    def box(lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype = torch.float32) -> "Interval":
        return Interval(lo, hi, dtype)

    # ------------------------------------------------------------------ accessors
    @property
    def lo(self) -> torch.Tensor:
        if self._lo is None:
            assert self.value is not None
            self._lo = self._hi = self.value.detach().to(F64)
        return self._lo

    @property
    def hi(self) -> torch.Tensor:
        if self._hi is None:
            _ = self.lo
        return self._hi  # type: ignore[return-value]

    def cached(self, key: str, fn: Callable[["Interval"], object]) -> object:
        """``fn(self)``, computed once per interval (for derived data of constant weights)."""
        if self._cache is None:
            self._cache = {}
        if key not in self._cache:
            self._cache[key] = fn(self)
        return self._cache[key]

    @property
    def is_point(self) -> bool:
        return self.value is not None

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    @property
    def mid(self) -> torch.Tensor:
        lo, hi = self.lo, self.hi
        if self.value is not None:
            return lo
        m = lo * 0.5 + hi * 0.5
        # inf + (-inf) is NaN and inf + inf is inf: both become a midpoint of 0 (radius inf).
        if not bool(torch.isfinite(m.sum())):
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        return m

    @property
    def rad(self) -> torch.Tensor:
        """Radius about ``mid``, rounded up (covers the rounding of ``mid``)."""
        if self.value is not None:
            return torch.zeros_like(self.lo)
        lo, hi = self.lo, self.hi
        m = self.mid
        r = torch.maximum(hi - m, m - lo)
        return r * (1.0 + 2.0**-51)

    @property
    def mag(self) -> torch.Tensor:
        """Elementwise max |x| over the interval (cached)."""
        if self._mag is None and self._mag_src is not None:
            # A rearrangement of another interval: rearrange its magnitude (shares its
            # storage for views instead of holding a second copy per view).
            src, fn = self._mag_src
            self._mag, self._mag_src = fn(src.mag), None
        if self._mag is None:
            self._mag = self.lo.abs() if self.value is not None else torch.maximum(self.lo.abs(), self.hi.abs())
        return self._mag

    @property
    def mig(self) -> torch.Tensor:
        """Elementwise min |x| over the interval (0 if it contains 0)."""
        return mig(self.lo, self.hi)

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def bounds(self) -> tuple[float, float]:
        """Scalar hull ``(min lo, max hi)``; ``(0, 0)`` for an empty tensor."""
        if self.numel() == 0:
            return (0.0, 0.0)
        return (float(self.lo.min()), float(self.hi.max()))

    def max_abs(self) -> float:
        if self.numel() == 0:
            return 0.0
        return float(self.mag.max())

    def is_bounded(self) -> bool:
        """Every bound is finite (cached)."""
        if self._finite is None:
            if self.numel() == 0:
                self._finite = True
            elif self._lo is None and self.value is not None:
                # A point: check its own values (a float32 value is finite iff its float64 copy
                # is), without materializing the float64 copy of a large weight.
                v = self.value.detach()
                self._finite = bool(torch.isfinite(v).all()) if v.is_floating_point() else True
            else:
                self._finite = bool(torch.isfinite(self.lo.sum() + self.hi.sum())) or bool(
                    torch.isfinite(self.lo).all() and torch.isfinite(self.hi).all()
                )
        return self._finite

    def contains(self, t: torch.Tensor, atol: float = 0.0) -> bool:
        t = t.detach().to(F64)
        return bool(((t >= self.lo - atol) & (t <= self.hi + atol)).all())

    def hull(self, other: "Interval") -> "Interval":
        return Interval(torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi), self.dtype)

    def map_shape(self, fn: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype | None = None) -> "Interval":
        """Apply an exact, value-preserving tensor transformation (view, permute, ...)."""
        dt = dtype or self.dtype
        if self.value is not None:
            return Interval.point(fn(self.value)) if dtype is None else Interval(None, None, dt, fn(self.value))
        iv = Interval.trusted(fn(self.lo), fn(self.hi), dt)
        iv._mag_src = (self, fn)
        if self._finite:  # an exact rearrangement of finite bounds is finite
            iv._finite = True
        return iv

    @staticmethod
    def trusted(lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype) -> "Interval":
        """An interval whose bounds are already known valid (no NaN, lo <= hi, float64), e.g.
        an exact rearrangement of a valid interval's bounds. Skips the validation pass."""
        iv = Interval.__new__(Interval)
        iv.dtype, iv.value, iv._mag, iv._finite, iv._cache, iv._mag_src = dtype, None, None, None, None, None
        iv._lo, iv._hi = lo, hi
        iv.shape = tuple(lo.shape)
        return iv

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        lo, hi = self.bounds()
        kind = "point" if self.is_point else "box"
        return f"Interval({kind}, shape={self.shape}, dtype={self.dtype}, [{lo:.4g}, {hi:.4g}])"


def mig(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Elementwise min |x| over ``[lo, hi]`` (0 where it contains 0), for bounds that are not
    (yet) an Interval, e.g. boxes widened by an error per configuration."""
    return torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(lo.abs(), hi.abs()))


# ---------------------------------------------------------------------- widening helpers
def as_markers(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``x`` with the values an exactly infinite interval element stands for (beyond
    MARKER_MIN of its sign, see above) replaced by that infinity, for range checks."""
    neg = torch.isneginf(lo) & torch.isneginf(hi) & (x <= -MARKER_MIN)
    pos = torch.isposinf(lo) & torch.isposinf(hi) & (x >= MARKER_MIN)
    if not bool(neg.any() | pos.any()):
        return x
    return torch.where(neg, -INF, torch.where(pos, INF, x))


def down(x: torch.Tensor, rel: float = REL) -> torch.Tensor:
    """A value <= x that absorbs a relative rounding error ``rel`` of a float64 evaluation."""
    return x - x.abs() * rel - ABS


def up(x: torch.Tensor, rel: float = REL) -> torch.Tensor:
    """A value >= x that absorbs a relative rounding error ``rel`` of a float64 evaluation."""
    return x + x.abs() * rel + ABS


def widen(lo: torch.Tensor, hi: torch.Tensor, rel: float = REL) -> tuple[torch.Tensor, torch.Tensor]:
    return down(lo, rel), up(hi, rel)


def up_scalar(x: float, rel: float = REL) -> float:
    """Round a non-negative bound up by a relative margin (inf and nan map to inf)."""
    if x != x or x == INF:
        return INF
    return x + abs(x) * rel + ABS


# ---------------------------------------------------------------------- map combinators
def increasing_map(x: Interval, fn: Callable[[torch.Tensor], torch.Tensor], dtype=None) -> Interval:
    """Image of a nondecreasing function: ``[fn(lo), fn(hi)]`` widened outward."""
    lo, hi = widen(fn(x.lo), fn(x.hi))
    return Interval(lo, hi, dtype or x.dtype)


def decreasing_map(x: Interval, fn: Callable[[torch.Tensor], torch.Tensor], dtype=None) -> Interval:
    lo, hi = widen(fn(x.hi), fn(x.lo))
    return Interval(lo, hi, dtype or x.dtype)


def unimodal_min_map(
    x: Interval, fn: Callable[[torch.Tensor], torch.Tensor], xmin: float, fmin: float, dtype=None
) -> Interval:
    """Image of a function decreasing on (-inf, xmin] and increasing on [xmin, inf).

    ``fmin`` must be a lower bound of ``fn(xmin)`` (the global minimum).
    """
    flo, fhi = fn(x.lo), fn(x.hi)
    inside = (x.lo <= xmin) & (x.hi >= xmin)
    lo = torch.where(inside, torch.full_like(flo, fmin), torch.minimum(flo, fhi))
    hi = torch.maximum(flo, fhi)
    lo, hi = widen(lo, hi)
    return Interval(lo, hi, dtype or x.dtype)


def mul_bounds(alo: torch.Tensor, ahi: torch.Tensor, blo: torch.Tensor, bhi: torch.Tensor):
    """Elementwise interval product (all four corner products), widened outward."""
    # NB: 0 * inf is NaN in IEEE; a zero bound times an infinite one contributes 0 here.
    def prod(x, y):
        p = x * y
        return torch.where(torch.isnan(p), torch.zeros_like(p), p)

    p1, p2, p3, p4 = prod(alo, blo), prod(alo, bhi), prod(ahi, blo), prod(ahi, bhi)
    lo = torch.minimum(torch.minimum(p1, p2), torch.minimum(p3, p4))
    hi = torch.maximum(torch.maximum(p1, p2), torch.maximum(p3, p4))
    return widen(lo, hi)


def abs_matmul_upper(a: torch.Tensor, b: torch.Tensor, *, k: int) -> torch.Tensor:
    """An upper bound of ``a @ b`` for non-negative ``a``, ``b`` (inner length ``k``).

    The float64 product of non-negative data has relative error <= gamma_k(2**-53); the
    factor below covers it. Infinite inputs give infinite (never NaN) outputs.
    """
    r = a @ b
    r = torch.where(torch.isnan(r), torch.full_like(r, INF), r)
    return r * (1.0 + (k + 2) * 2.0**-52) + ABS
