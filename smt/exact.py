"""Exact arithmetic on floating-point formats with :class:`fractions.Fraction`.

The witnesses of :mod:`smt.witness` are checked here, with no binary64 rounding anywhere:

* the finite values of a format F with p significand bits, minimum normal exponent emin and
  largest finite value ``max`` are 0 and ``+-m * 2**(e - p + 1)`` for integers m, with
  ``e = max(floor(log2 |v|), emin)`` (IEEE 754-2019 §3.3; the subnormals share the spacing
  ``2**(emin - p + 1)`` of the lowest binade), restricted to ``|v| <= max`` (this also covers
  FP8 E4M3 "fn", whose largest finite value 448 is below the binade's last pattern);
* rounding to nearest, ties to even (IEEE 754-2019 §4.3.1); a value whose rounding would
  exceed ``max`` has no finite image (overflow) and is reported as ``None``. NB: PyTorch's
  casts to float8_e4m3fn saturate at +-448 instead (measured, torch 2.13 CPU), and the tie at
  464 rounds to 448 there; ``None`` is only ever used to *withhold* a claim (no rounding cell,
  no equal rounding), so reporting it for those values errs on the safe side.
"""

from __future__ import annotations

from fractions import Fraction

from certifier.formats import FORMATS, Format


def eps_readings(eps: float) -> tuple[Fraction, Fraction]:
    """The two exact rationals a user's eps can mean: the binary64 float, and the decimal it
    was written as (``repr``). Claims that need a small budget take the smaller (smt.allocate),
    claims that need a large gap take the larger (smt.witness), so neither is weaker than asked."""
    a = Fraction(eps)
    try:
        b = Fraction(repr(float(eps)))
    except ValueError:
        b = a
    return a, b


def floor_log2(q: Fraction) -> int:
    """The integer e with 2**e <= q < 2**(e+1), for q > 0 (exact)."""
    if q <= 0:
        raise ValueError("floor_log2 of a non-positive number")
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if pow2(e) > q:
        e -= 1
    return e


def pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def emin(fmt: Format) -> int:
    return floor_log2(Fraction(fmt.min_normal))


def spacing(v: Fraction, fmt: Format) -> Fraction:
    """The distance between consecutive values of ``fmt`` in the binade that holds ``|v|``
    (for ``|v|`` exactly a power of two this is the spacing *above* it)."""
    a = abs(v)
    e = emin(fmt) if a == 0 else max(floor_log2(a), emin(fmt))
    return pow2(e - fmt.p + 1)


def _down_nonneg(a: Fraction, fmt: Format) -> Fraction:
    """Largest value of ``fmt`` <= a, for 0 <= a <= max."""
    s = spacing(a, fmt)
    return (a // s) * s


def round_down(v: Fraction, fmt: Format) -> Fraction | None:
    """Largest finite value of ``fmt`` <= v (None if v < -max)."""
    mx = Fraction(fmt.max)
    if v > mx:
        return mx
    if v < -mx:
        return None
    if v >= 0:
        return _down_nonneg(v, fmt)
    u = round_up(-v, fmt)
    return None if u is None else -u


def round_up(v: Fraction, fmt: Format) -> Fraction | None:
    """Smallest finite value of ``fmt`` >= v (None if v > max)."""
    mx = Fraction(fmt.max)
    if v > mx:
        return None
    if v < -mx:
        return -mx
    if v < 0:
        d = _down_nonneg(-v, fmt)
        return -d
    d = _down_nonneg(v, fmt)
    if d == v:
        return d
    return d + spacing(d if d > 0 else v, fmt) if d > 0 else d + spacing(v, fmt)


def distance_to_format(v: Fraction, fmt: Format) -> Fraction:
    """Distance from v to the nearest finite value of ``fmt`` (exact)."""
    lo, hi = round_down(v, fmt), round_up(v, fmt)
    ds = [v - lo] if lo is not None else []
    ds += [hi - v] if hi is not None else []
    return min(ds)


def nearest_in_interval_gap(lo: Fraction, hi: Fraction, fmt: Format) -> Fraction | None:
    """A finite value of ``fmt`` inside [lo, hi], or None if there is none (exact)."""
    u = round_up(lo, fmt)
    if u is not None and u <= hi:
        return u
    return None


def _is_even(q: Fraction, fmt: Format) -> bool:
    """True when the finite value q of ``fmt`` has an even last significand digit."""
    if q == 0:
        return True
    s = spacing(q, fmt)
    m = q / s
    return m.denominator == 1 and m.numerator % 2 == 0


def round_nearest(v: Fraction, fmt: Format) -> Fraction | None:
    """fl(v): round to nearest, ties to even; None when the result is not finite (overflow)."""
    mx = Fraction(fmt.max)
    lo, hi = round_down(v, fmt), round_up(v, fmt)
    if lo is not None and lo == v:
        return v
    if hi is None:  # v > max: finite only if v is below the midpoint to the next binade value
        top = mx + spacing(mx, fmt) / 2
        return mx if v < top else None
    if lo is None:
        top = mx + spacing(mx, fmt) / 2
        return -mx if -v < top else None
    dl, dh = v - lo, hi - v
    if dl < dh:
        return lo
    if dh < dl:
        return hi
    return lo if _is_even(lo, fmt) else hi


def same_rounding(a: Fraction, b: Fraction, fmt: Format) -> bool:
    """fl(a) == fl(b) in ``fmt``, both finite (exact), whether a value is rounded to the
    format directly or first to fp32 (double rounding, as PyTorch's float64 -> float16 and
    -> bfloat16 casts do)."""
    ra, rb = round_nearest(a, fmt), round_nearest(b, fmt)
    if ra is None or rb is None or ra != rb:
        return False
    if fmt.name in ("fp32", "fp64", "tf32"):
        return True
    fp32 = FORMATS["fp32"]
    a32, b32 = round_nearest(a, fp32), round_nearest(b, fp32)
    if a32 is None or b32 is None:
        return False
    da, db = round_nearest(a32, fmt), round_nearest(b32, fmt)
    return da is not None and da == ra and db == ra


def next_up(r: Fraction, fmt: Format) -> Fraction:
    """The next value of ``fmt`` above the value r (may exceed ``max``: then it is the
    first value of the next binade, which the format does not hold)."""
    if r >= 0:
        return r + spacing(r, fmt)
    return -next_down(-r, fmt)


def next_down(r: Fraction, fmt: Format) -> Fraction:
    """The next value of ``fmt`` below the value r."""
    if r <= 0:
        return -next_up(-r, fmt)
    e = floor_log2(r)
    if r == pow2(e) and e > emin(fmt):  # NB: below a power of two the spacing halves
        return r - spacing(r, fmt) / 2
    return r - spacing(r, fmt)


def rounding_cell(v: Fraction, fmt: Format) -> tuple[Fraction, Fraction] | None:
    """A closed interval [lo, hi] containing v whose every point rounds to fl(v), whether it
    is rounded to the format directly or first to fp32 (PyTorch's float64 -> float16 and
    -> bfloat16 casts go through float32: double rounding). The whole rounding cell when
    fl(v) is even (a point of it rounds into the closed cell in fp32, whose ends are fp32
    values, then to fl(v), ties to even); otherwise the cell shrunk at each tie endpoint by
    2**-12 of a spacing, at least two fp32 spacings for every format here (fp16 has 11
    significand bits against fp32's 24), so that no point of it rounds to a tie in fp32;
    None on overflow."""
    r = round_nearest(v, fmt)
    if r is None:
        return None
    lo, hi = (next_down(r, fmt) + r) / 2, (r + next_up(r, fmt)) / 2
    if not _is_even(r, fmt) or r == Fraction(fmt.max) or -r == Fraction(fmt.max):
        shrink = (hi - lo) / 2**12
        lo, hi = lo + shrink, hi - shrink
    return lo, hi
