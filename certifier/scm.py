"""SCM thresholds for rational heads (DESIGN 1, question 3; DESIGN 4.6).

A model with a *rational head* returns a projective pair ``<N, D>`` that is decoded strictly,
in the style of ZeroProofML's Signed-Common-Meadow (SCM) inference
(``zeroproof.inference.mode.strict_inference``): ``|D| < tau_infer`` decodes to bottom (its
payload is NaN and ``bottom_mask`` flags it, as is a NaN in N or D), ``tau_infer <= |D| <
tau_train`` is the *gap* (decoded, finite, flagged in ``gap_mask``), otherwise ``N/D``.
ZeroProofML's ``InferenceConfig`` takes ``tau_infer`` and ``tau_train``; its wrapper sets
``use_gap = tau_train > tau_infer``; these three names are the keys of the export
(:func:`zeroproofml_export`). This module derives both thresholds per format from certified
error bounds instead of a sweep over held-out data, and reports the same thresholds for every
true division (``aten.div.Tensor`` with a non-constant divisor) inside any graph.

Declaring a rational head: a model file defines ``rational_head() -> (n, d)``, the indices of N
and D among the model's flattened tensor outputs, or the CLI is given ``--rational n,d``
(which takes precedence).

The derivation (checked here; it corrects DESIGN 4.6 in four places, marked *fix*)
-------------------------------------------------------------------------------
Let ``N, D`` be the exact values (real arithmetic on the model's parameters), ``N^, D^`` the
values computed in the format, with the certified bounds ``|N^ - N| <= dN``, ``|D^ - D| <=
dD`` (max over elements of ``ErrorResult.output_err``) and ``|N| <= M_N`` over the domain
(the interval analysis). For ``|D^| >= tau > dD``:

* ``|D| >= |D^| - dD > 0`` and ``D`` has the sign of ``D^``: the sign is certain and no
  exact zero hides behind ``D^``. Hence ``tau_infer`` = the smallest value of the format
  *strictly* above ``dD`` (it is positive even when ``dD = 0``: the smallest subnormal).
* ``N^/D^ - N/D = (eN D - N eD) / (D^ D) = eN/D^ - N eD/(D^ D)``, so
  ``|N^/D^ - N/D| <= dN/|D^| + M_N dD / (|D^| (|D^| - dD))``; both terms decrease in ``|D^|``.
* The decode division itself is rounded. *Fix 1:* the arithmetic model of this tool (see
  ``curvature_rules.arithmetic``) runs a binary op in the accumulation format and then
  stores the result, so ``|fl(q) - q| <= u_div |q| + h`` with ``u_div = u + u_acc + u u_acc``
  and ``h = eta/2 + (1 + u) eta_acc/2`` (``u_div = u``, ``h = eta/2`` when the accumulation
  format is the storage format). DESIGN's ``u(M_N + dN)/tau`` keeps only the relative part:
  a quotient in the subnormal range violates the relative model (*fix 2*: the absolute term
  ``h`` is added). With ``|q| = |N^/D^| <= (M_N + dN)/|D^|``:

  ``|fl(N^/D^) - N/D| <= a/tau + M_N dD / (tau (tau - dD)) + h``,
  ``a = dN + u_div (M_N + dN)``,

  which is DESIGN's ``a`` with ``u -> u_div`` and ``eps -> eps - h``. Its closed form
  ``tau = [(eps dD + a) + sqrt((eps dD + a)^2 + 4 eps dD (M_N - a))] / (2 eps)`` is the larger
  root of ``eps tau^2 - (eps dD + a) tau - dD (M_N - a) = 0``, which is ``>= dD`` (the
  quadratic is ``-dD M_N <= 0`` at ``tau = dD``), so DESIGN's algebra is right.
* *Fix 3:* the quotient must not overflow: a large ``eps`` can admit ``tau`` small enough that
  ``(M_N + dN)/tau`` exceeds the format's largest value (fp16 with eps >= ~32), where the
  decoded value is ``inf``. ``tau_train`` also requires ``(1 + u_acc)(M_N + dN)/tau +
  eta_acc/2 <= max``.
* *Fix 4:* the closed form evaluated in float64 and then "rounded up" can land one format
  value below the true root. Here every condition is checked in exact rational arithmetic
  (:class:`fractions.Fraction` on the float64 bounds) and ``tau_train`` is found by bisection
  over the format's values: it is the *smallest* value of the format, at least
  ``tau_infer``, at which the bound is ``<= eps``. Thresholds are therefore values of the
  format, rounded up, never down.

Refusals (a reason, never a NaN or infinite threshold): an unbounded ``M_N`` (no finite
threshold bounds ``|N/D|`` error), an infinite ``dN`` or ``dD`` (overflow, unsupported op),
``dD`` beyond the format's range, or an ``eps`` no value of the format can reach.

The thresholds are stated for the storage format of each configuration (tf32 stores fp32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from certifier.errors import ModelFileError, SpecError
from certifier.formats import FORMATS, Format, accumulation_format
from certifier.rounding import ErrorResult, contains, dtype_format, run_errors
from certifier.walker import BoundsAnalysis, NodeInfo

F64 = torch.float64
INF = float("inf")
aten = torch.ops.aten

#: What each threshold means, in one sentence (shown by the CLI, stored in the certificate).
MEANING = {
    "tau_infer": "|D| < tau_infer decodes to bottom; at or above it the sign of D is certified and no exact zero hides behind it",
    "tau_train": "|D| >= tau_train decodes N/D within eps of the exact quotient; tau_infer <= |D| < tau_train is the gap (finite, not certified to eps)",
    "use_gap": "true when tau_train > tau_infer, i.e. the gap region is not empty",
}


class ThresholdRefusal(Exception):
    """No sound threshold exists for this format; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- format values
class FormatGrid:
    """The non-negative values of a format, indexed in increasing order (exact arithmetic).

    Index ``k < 2**(p-1)``: the subnormal ``k * eta``; above, binade ``e`` (from ``emin``)
    holds ``2**e (1 + j / 2**(p-1))`` for ``j < 2**(p-1)``.
    """

    def __init__(self, fmt: Format) -> None:
        st = fmt.storage
        self.fmt = st
        self.p = st.p
        self.half = 1 << (st.p - 1)
        m, e = math.frexp(st.min_normal)  # min_normal = 0.5 * 2**e
        self.emin = e - 1
        self.max = Fraction(st.max)
        self.kmax = self.ceil_index(self.max)

    def value(self, k: int) -> Fraction:
        if k < self.half:
            return Fraction(k) * Fraction(2) ** (self.emin - self.p + 1)
        e = self.emin + k // self.half - 1
        j = k % self.half
        return Fraction(2) ** e * (1 + Fraction(j, self.half))

    def ceil_index(self, x: Fraction) -> int:
        """The index of the smallest format value >= x (x >= 0)."""
        if x <= 0:
            return 0
        eta = Fraction(2) ** (self.emin - self.p + 1)
        if x < Fraction(2) ** self.emin:
            return math.ceil(x / eta)
        e = x.numerator.bit_length() - x.denominator.bit_length()
        if Fraction(2) ** e > x:
            e -= 1
        elif Fraction(2) ** (e + 1) <= x:
            e += 1
        j = math.ceil((x / Fraction(2) ** e - 1) * self.half)
        if j == self.half:
            e, j = e + 1, 0
        return self.half * (e - self.emin + 1) + j

    def above_index(self, x: Fraction) -> int:
        """The index of the smallest format value strictly above x."""
        k = self.ceil_index(x)
        return k + 1 if self.value(k) == x else k


def round_up(x: float, fmt: Format) -> float:
    """The smallest value of ``fmt`` (storage) that is >= x >= 0; inf beyond the largest."""
    g = FormatGrid(fmt)
    k = g.ceil_index(Fraction(x))
    return float(g.value(k)) if k <= g.kmax else INF


def next_above(x: float, fmt: Format) -> float:
    """The smallest value of ``fmt`` (storage) strictly above x >= 0; inf beyond the largest."""
    g = FormatGrid(fmt)
    k = g.above_index(Fraction(x))
    return float(g.value(k)) if k <= g.kmax else INF


# --------------------------------------------------------------------------- the bound
@dataclass(frozen=True)
class DecodeRounding:
    """``|fl(q) - q| <= u |q| + h`` for the decode division, and the accumulation step."""

    u: Fraction
    h: Fraction
    u_acc: Fraction
    h_acc: Fraction
    max: Fraction


def decode_rounding(fmt: Format) -> DecodeRounding:
    """The rounding of ``N^ / D^`` in ``fmt``: one division in the accumulation format, then
    the store (a single rounding when the two formats agree). Fix 1 and 2 of the module doc."""
    st = fmt.storage
    acc = accumulation_format(fmt)
    u, h = Fraction(st.u), Fraction(st.eta) / 2
    if acc.name == st.name:
        return DecodeRounding(u, h, Fraction(0), Fraction(0), Fraction(st.max))
    ua, ha = Fraction(acc.u), Fraction(acc.eta) / 2
    return DecodeRounding(u + ua + u * ua, h + (1 + u) * ha, ua, ha, Fraction(st.max))


def quotient_error_bound(tau: float | Fraction, dN: float, dD: float, M: float, r: DecodeRounding) -> Fraction | None:
    """Exact bound on ``|fl(N^/D^) - N/D|`` over ``|D^| >= tau``; None when ``tau <= dD`` or the
    quotient can overflow (no bound)."""
    t, dn, dd, m = Fraction(tau), Fraction(dN), Fraction(dD), Fraction(M)
    if t <= dd:
        return None
    if (1 + r.u_acc) * (m + dn) / t + r.h_acc > r.max:
        return None
    a = dn + r.u * (m + dn)
    return a / t + m * dd / (t * (t - dd)) + r.h


def design_tau_train(dN: float, dD: float, M: float, eps: float, u: float) -> float:
    """DESIGN 4.6's closed form in float64 (storage ``u``, no underflow term): for comparison
    only; :func:`thresholds` is the sound one."""
    a = dN + u * (M + dN)
    b = eps * dD + a
    return (b + math.sqrt(b * b + 4 * eps * dD * (M - a))) / (2 * eps)


@dataclass(frozen=True)
class Thresholds:
    format: str
    eps: float
    delta_N: float
    delta_D: float
    M_N: float
    tau_infer: float
    tau_train: float
    quotient_bound: float  # certified |fl(N^/D^) - N/D| at |D^| = tau_train (rounded up)

    @property
    def use_gap(self) -> bool:
        return self.tau_train > self.tau_infer

    def zeroproofml(self) -> dict:
        """ZeroProofML inference-bundle keys, wrapped with the format name."""
        return {"format": self.format, "tau_infer": self.tau_infer, "tau_train": self.tau_train, "use_gap": self.use_gap}


def _up(x: Fraction) -> float:
    """A float64 >= x."""
    f = float(x)
    return f if Fraction(f) >= x else math.nextafter(f, INF)


def thresholds(fmt: Format | str, delta_N: float, delta_D: float, M_N: float, eps: float) -> Thresholds:
    """``tau_infer`` and ``tau_train`` for one format (module doc); raises ThresholdRefusal."""
    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    name = fmt.name
    if not (math.isfinite(eps) and eps > 0):
        raise ThresholdRefusal(f"eps must be positive and finite, got {eps}")
    for label, v in (("delta_N", delta_N), ("delta_D", delta_D), ("M_N", M_N)):
        if not (v >= 0 and math.isfinite(v)):
            raise ThresholdRefusal(f"{label} is {'unbounded' if v == INF else v}: no finite threshold is sound")
    g = FormatGrid(fmt)
    st = g.fmt
    k_inf = g.above_index(Fraction(delta_D))
    if k_inf > g.kmax:
        raise ThresholdRefusal(f"delta_D = {delta_D:.3g} is not below the largest {st.name} value ({st.max:.6g}): the sign of D is never certain")
    tau_infer = g.value(k_inf)
    r = decode_rounding(fmt)
    e = Fraction(eps)
    if r.h >= e:
        raise ThresholdRefusal(f"eps = {eps:g} is not above the underflow error of the {st.name} division ({float(r.h):.3g})")

    def ok(k: int) -> bool:
        b = quotient_error_bound(g.value(k), delta_N, delta_D, M_N, r)
        return b is not None and b <= e

    if ok(k_inf):
        k = k_inf
    else:
        if not ok(g.kmax):
            b = quotient_error_bound(g.value(g.kmax), delta_N, delta_D, M_N, r)
            at_max = "the quotient can overflow" if b is None else f"the certified error is still {float(b):.3g} > eps"
            raise ThresholdRefusal(f"no {st.name} value of |D| reaches eps = {eps:g}: even at |D| = {st.max:.6g} {at_max}")
        lo, hi = k_inf, g.kmax  # not ok(lo), ok(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        k = hi
    tau_train = g.value(k)
    qb = quotient_error_bound(tau_train, delta_N, delta_D, M_N, r)
    assert qb is not None and qb <= e  # NB: guaranteed by ok(k); kept as an internal check
    return Thresholds(name, float(eps), float(delta_N), float(delta_D), float(M_N), float(tau_infer), float(tau_train), _up(qb))


# --------------------------------------------------------------------------- runtime helper
def strict_decode(N: torch.Tensor, D: torch.Tensor, tau_infer: float, tau_train: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strict SCM decoding of ``<N, D>``: ``(value, bottom_mask, gap_mask)``.

    ``bottom_mask``: ``|D| < tau_infer`` (or N or D is NaN, as in ZeroProofML's
    ``strict_inference``); ``value`` is NaN there. ``gap_mask``: ``tau_infer <= |D| <
    tau_train`` (empty when ``tau_train == tau_infer``); ``value`` is ``N/D`` there and
    everywhere else. The division runs in the promoted dtype of N and D (the format the
    thresholds were derived for); the comparisons are exact (in float64), so a threshold that
    is not a value of D's format is never rounded down. N and D broadcast together.
    """
    ti, tt = float(tau_infer), float(tau_train)
    if not (math.isfinite(ti) and ti >= 0 and math.isfinite(tt)):
        raise ValueError(f"thresholds must be finite and >= 0, got tau_infer={tau_infer}, tau_train={tau_train}")
    if tt < ti:
        raise ValueError(f"tau_train ({tau_train}) must be >= tau_infer ({tau_infer})")
    N, D = torch.broadcast_tensors(torch.as_tensor(N), torch.as_tensor(D))
    ad = D.abs().to(F64)
    bottom = (ad < ti) | torch.isnan(D) | torch.isnan(N)
    gap = ~bottom & (ad < tt)
    safe = torch.where(bottom, torch.ones_like(D), D)
    value = N / safe
    value = torch.where(bottom, torch.full_like(value, float("nan")), value)
    return value, bottom, gap


# --------------------------------------------------------------------------- declaration
def parse_rational(text: str) -> tuple[int, int]:
    """Parse ``--rational N,D`` (two distinct non-negative output indices)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        n, d = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (None, None)
    except ValueError:
        n = d = None
    if n is None or d is None or n < 0 or d < 0:
        raise SpecError(f"--rational must be N,D: the output indices of the numerator and denominator, got {text!r}", "for a model returning (N, D): --rational 0,1")
    if n == d:
        raise SpecError(f"--rational {text}: the numerator and denominator must be different outputs")
    return n, d


def declared_head(loaded, rational: tuple[int, int] | None) -> tuple[int, int, str] | None:
    """(numerator index, denominator index, how it was declared), or None."""
    if rational is not None:
        return rational[0], rational[1], "--rational"
    mod = getattr(loaded, "python_module", None)
    hook = getattr(mod, "rational_head", None) if mod is not None else None
    if hook is None:
        return None
    where = f"rational_head() in {loaded.path.name}"
    try:
        val = hook() if callable(hook) else hook
    except Exception as e:  # noqa: BLE001 - user code
        raise ModelFileError(f"{where} raised {type(e).__name__}: {e}") from None
    ok = isinstance(val, (tuple, list)) and len(val) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in val)
    if not ok or val[0] == val[1]:
        raise ModelFileError(f"{where} must return (numerator_index, denominator_index), two different output indices; got {val!r}")
    return int(val[0]), int(val[1]), where


# --------------------------------------------------------------------------- the section
def _fnum(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _range(iv) -> list[float | None]:
    lo, hi = iv.bounds()
    return [_fnum(lo), _fnum(hi)]


def _read_delta(ba: BoundsAnalysis, res: ErrorResult, prod: str, c: int, fmt: Format) -> float:
    """Max error of ``prod``'s value as a consumer running in ``fmt`` reads it (config c)."""
    info = ba.nodes[prod]
    iv = info.primary
    st = fmt.storage
    if info.kind in ("param", "buffer", "constant", "input"):
        src = dtype_format(iv.dtype) if (iv is not None and info.kind != "input") else None
        if contains(st, src):
            return 0.0
        m = iv.max_abs() if iv is not None else INF
        return (st.u * m + st.eta / 2) * (1 + 2.0**-50)
    if prod in res.output_err:
        e = res.output_err[prod]
        return float(e[c].max()) if e.numel() else 0.0
    if prod in res.node_max:
        return res.node_max[prod][c]
    return 0.0  # exact: no error model was needed (integer or constant computation)


def _refusal_reason(res: ErrorResult, c: int, what: str) -> str:
    ov = res.overflow[c] if c < len(res.overflow) else None
    if ov is not None:
        return f"the error bound of {what} is unbounded: {ov.reason()}"
    return f"the error bound of {what} is unbounded (an unsupported op or an unbounded range upstream)"


def _format_entries(ba, res, eps, fmts, num: str | None, den: str, M: float, m_reason: str | None, mig_D: float, mag_D: float) -> dict:
    out = {}
    for c, f in enumerate(fmts):
        fmt = FORMATS[f]
        if m_reason is not None:
            out[f] = {"status": "refused", "reason": m_reason}
            continue
        dN = _read_delta(ba, res, num, c, fmt) if num is not None else 0.0
        dD = _read_delta(ba, res, den, c, fmt)
        if not math.isfinite(dN) or not math.isfinite(dD):
            which = "N" if not math.isfinite(dN) else "D"
            out[f] = {"status": "refused", "reason": _refusal_reason(res, c, which)}
            continue
        try:
            t = thresholds(fmt, dN, dD, M, eps)
        except ThresholdRefusal as e:
            out[f] = {"status": "refused", "reason": e.reason, "delta_N": dN, "delta_D": dD, "M_N": M}
            continue
        notes = []
        if mig_D - dD >= t.tau_infer:
            notes.append("no input in the domain decodes to bottom (|D^| >= tau_infer everywhere)")
        if t.tau_train > mag_D + dD:
            notes.append("no input in the domain reaches tau_train: every non-bottom output is in the gap")
        out[f] = {
            "status": "certified",
            "delta_N": dN,
            "delta_D": dD,
            "M_N": M,
            "tau_infer": t.tau_infer,
            "tau_train": t.tau_train,
            "use_gap": t.use_gap,
            "quotient_bound": t.quotient_bound,
            "storage": fmt.storage.name,
            "notes": notes,
        }
    return out


def _m_refusal(iv, what: str) -> str | None:
    if iv is None or not iv.is_float:
        return f"{what} is not a floating-point tensor"
    if not iv.is_bounded():
        return (
            f"{what} has no finite bound over the input domain (range [{iv.bounds()[0]:.3g}, {iv.bounds()[1]:.3g}]): "
            "no finite tau_train bounds the error of N/D; "
            "bound N (a smaller domain, ops the analysis supports, or clamp it in the model)"
        )
    return None


def division_nodes(ba: BoundsAnalysis) -> list[NodeInfo]:
    """True divisions ``aten.div.Tensor`` whose divisor is a non-constant float tensor."""
    out = []
    for info in ba.nodes.values():
        if info.node.op != "call_function" or info.node.target is not aten.div.Tensor:
            continue
        den = info.producers.get("other")
        if den is None:
            continue
        d = ba.nodes[den]
        if d.is_float and not d.is_point:
            out.append(info)
    return out


def scm_section(
    ba: BoundsAnalysis,
    uniform: ErrorResult,
    eps: float,
    rational: tuple[int, int] | None = None,
) -> dict | None:
    """The certificate's ``scm`` section, or None when the model has neither a declared
    rational head nor a true division.

    ``uniform`` is the whole-model error analysis, one configuration per format (its
    ``configs`` are format names); ``rational`` overrides the model file's
    ``rational_head()`` hook.
    """
    head = declared_head(ba.loaded, rational)
    divs = division_nodes(ba)
    if head is None and not divs:
        return None
    fmts = list(uniform.configs)
    for f in fmts:
        if f not in FORMATS:
            raise ValueError(f"scm_section needs one uniform configuration per format, got {f!r}")
    section: dict = {
        "eps": float(eps),
        "meaning": dict(MEANING),
        "derivation": (
            "tau_infer: the smallest format value > delta_D. tau_train: the smallest format value >= tau_infer with "
            "a/tau + M_N*delta_D/(tau*(tau - delta_D)) + h <= eps, a = delta_N + u_div*(M_N + delta_N), and "
            "(1 + u_acc)(M_N + delta_N)/tau + eta_acc/2 <= max (no overflow), checked in exact rational arithmetic; "
            "u_div, h: the decode division in the accumulation format, then stored (DESIGN 4.6 with fixes: see certifier/scm.py)"
        ),
        "rational_head": None,
        "zeroproofml": [],
        "divisions": [],
    }
    if head is not None:
        section["rational_head"] = _head_entry(ba, uniform, eps, fmts, head)
        rh = section["rational_head"]
        section["zeroproofml"] = [
            {"format": f, "tau_infer": e["tau_infer"], "tau_train": e["tau_train"], "use_gap": e["use_gap"]}
            for f, e in rh["formats"].items()
            if e["status"] == "certified"
        ]
    if divs:
        res = uniform
        if not uniform.node_max:
            res = run_errors(ba, [{"*": f} for f in fmts], keep_nodes=True)
        for info in divs:
            num = info.producers.get("self")
            den = info.producers["other"]
            niv = ba.nodes[num].primary if num is not None else None
            if num is None:  # a Python scalar numerator
                M, mr = abs(float(info.node.args[0])), None
            else:
                mr = _m_refusal(niv, f"the numerator ({num})")
                M = niv.max_abs() if mr is None else INF
            div = ba.nodes[den].primary
            section["divisions"].append(
                {
                    "node": info.name,
                    "layer": info.layer,
                    "numerator": num,
                    "denominator": den,
                    "denominator_range": _range(div),
                    "denominator_crosses_zero": bool(div.bounds()[0] <= 0 <= div.bounds()[1]),
                    "M_N": _fnum(M),
                    "formats": _format_entries(ba, res, eps, fmts, num, den, M, mr, float(div.mig.min()), div.max_abs()),
                }
            )
    return section


def _head_entry(ba: BoundsAnalysis, uniform: ErrorResult, eps: float, fmts: Sequence[str], head: tuple[int, int, str]) -> dict:
    n_i, d_i, how = head
    outs = ba.outputs
    for label, i in (("numerator", n_i), ("denominator", d_i)):
        if i >= len(outs):
            raise SpecError(
                f"rational head ({how}): {label} index {i} is out of range: the model has {len(outs)} tensor output(s)",
                "indices count the model's flattened tensor outputs from 0",
            )
    num, den = outs[n_i], outs[d_i]
    niv, div = ba.nodes[num].primary, ba.nodes[den].primary
    for label, name, iv in (("numerator", num, niv), ("denominator", den, div)):
        if iv is None or not iv.is_float:
            raise SpecError(f"rational head ({how}): the {label} (output {n_i if label == 'numerator' else d_i}, node {name}) is not a floating-point tensor")
    try:
        torch.broadcast_shapes(niv.shape, div.shape)
    except RuntimeError:
        raise SpecError(f"rational head ({how}): N {tuple(niv.shape)} and D {tuple(div.shape)} do not broadcast") from None
    mr = _m_refusal(niv, f"N (output {n_i}, node {num})")
    M = niv.max_abs() if mr is None else INF
    return {
        "declared_by": how,
        "numerator": {"output": n_i, "node": num, "shape": list(niv.shape), "range": _range(niv), "M_N": _fnum(M)},
        "denominator": {
            "output": d_i,
            "node": den,
            "shape": list(div.shape),
            "range": _range(div),
            "crosses_zero": bool(div.bounds()[0] <= 0 <= div.bounds()[1]),
        },
        "refused": mr,
        "formats": _format_entries(ba, uniform, eps, fmts, num, den, M, mr, float(div.mig.min()), div.max_abs()),
    }


def zeroproofml_export(cert: dict) -> dict:
    """The ``--scm-out`` document: per format, ZeroProofML's bundle-metadata keys
    (``tau_infer``, ``tau_train``, ``use_gap``) wrapped with the format name; refusals with
    their reason. Raises SpecError when the certificate declares no rational head."""
    scm = cert.get("scm") or {}
    rh = scm.get("rational_head")
    if not rh:
        raise SpecError(
            "--scm-out needs a rational head",
            "define rational_head() -> (numerator_index, denominator_index) in the model file, or pass --rational N,D",
        )
    return {
        "schema": "certify.scm/1",
        "model": cert["model"]["name"],
        "source_sha256": cert["model"]["source_sha256"],
        "weights_sha256": cert["model"]["weights_sha256"],
        "eps": scm["eps"],
        "numerator_output": rh["numerator"]["output"],
        "denominator_output": rh["denominator"]["output"],
        "thresholds": list(scm["zeroproofml"]),
        "refused": [{"format": f, "reason": e["reason"]} for f, e in rh["formats"].items() if e["status"] != "certified"],
        "meaning": dict(MEANING),
    }
