"""Checked witnesses that a hardware profile cannot reach eps (DESIGN 4.5), and the HNF
obstruction.

A witness defeats *every* storage format the profile offers (tf32 stores fp32). Kinds:

* ``overflow``: an input x in the domain at which a model *output* y = f(x) has
  ``|y| - max > eps`` for the largest finite value ``max`` over the profile's formats: every
  finite result is at most ``max`` in magnitude (a saturating store included), inf and NaN miss
  anyway, so any result delivered in these formats misses by more than eps, whatever the
  algorithm. An intermediate value above ``max`` is *not* a witness: its exact value says
  neither that the computed one overflows (earlier roundings move it, and values in
  ``(max, max + ulp/2)`` round to ``max``) nor that the hardware cannot reach eps (another
  algorithm need not form it). It stays a range refusal (``overflow:LAYER:FORMAT``).
* ``output-representability``: an attainable output y = f(x) whose distance to the nearest
  finite value of every format exceeds eps: any result delivered in the profile's formats
  misses by more than eps at x.
* ``input-indistinguishability``: x, x' in the domain whose every element rounds to the same
  value in every format (fl_F(x) = fl_F(x')), with ``|f(x) - f(x')| / 2 > eps``: an algorithm
  that reads its inputs in the profile's formats computes the same output for both, so it
  misses one of them by more than eps.

Search is heuristic (domain corners, random points, projected gradient ascent, a bisection
that drives an output to the midpoint between two format values) and nothing it computes is
trusted. A candidate is reported only after the check: the exact values at the witness
inputs are enclosed by sound interval arithmetic at the point (:func:`smt.evaluate.enclose`:
the analyzer's rules on the degenerate box, outward-rounded binary64) and every comparison
(against a format's max, distance to the nearest format value, equal rounding of inputs,
domain membership, the gap against 2 eps) is made in exact rationals
(:mod:`smt.exact`, :class:`fractions.Fraction`). eps is taken as the larger of the float
and the decimal the user wrote, so the checked inequality is never weaker than the claim.

HNF obstruction (DESIGN 4.2, conditional on the HNF theorem ``p >= log2(c kappa D^2 / eps)``,
whole model, infinity norms): the curvature is a *lower* bound,
``kappa_lo = 1/2 |h^T D^2 f_k(x) h|`` at sampled points x and directions h with
``||h||_inf = 1`` (any sampled value is at most the supremum), halved as a margin for the
float64 evaluation; D is the infinity-norm diameter of the float input box (exact). The
analyzer's per-layer HNF floors use *upper* bounds and cannot support such a claim; they are
not used here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from certifier.capture import Captured
from certifier.formats import FORMATS, Format
from certifier.loader import LoadedModel
from certifier.walker import BoundsAnalysis
from curvature_rules._common import fmag
from smt.evaluate import enclose, node_values
from smt.exact import distance_to_format, eps_readings, round_down, round_up, rounding_cell, same_rounding

F64 = torch.float64
KINDS = ("overflow", "output-representability", "input-indistinguishability")


def eps_upper(eps: float) -> Fraction:
    """The larger of the float eps and the decimal it was written as (witness side)."""
    return max(eps_readings(eps))


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.12g}"


def _q(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}" if x.denominator != 1 else str(x.numerator)


@dataclass
class Witness:
    kind: str
    formats: list[str]
    statement: str
    inputs: list[dict]  # [{shape, dtype, values (flat, exact binary64)}]
    node: str
    layer: str
    index: list[int]
    enclosure: list[float]  # exact value of node[index] at inputs lies in [lo, hi]
    quantities: dict = field(default_factory=dict)
    inputs_other: list[dict] | None = None
    enclosure_other: list[float] | None = None
    check: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {
            "kind": self.kind,
            "formats": list(self.formats),
            "statement": self.statement,
            "inputs": self.inputs,
            "node": self.node,
            "layer": self.layer,
            "index": list(self.index),
            "enclosure": list(self.enclosure),
            "quantities": dict(self.quantities),
            "check": dict(self.check),
        }
        if self.inputs_other is not None:
            d["inputs_other"] = self.inputs_other
            d["enclosure_other"] = list(self.enclosure_other or [])
        return d


@dataclass
class Search:
    """Everything a witness search needs (one model, one profile, one eps)."""

    loaded: LoadedModel
    captured: Captured
    ba: BoundsAnalysis
    eps: float
    formats: tuple[str, ...]  # storage formats of the profile
    seed: int = 0
    time_limit: float = 120.0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.E = eps_upper(self.eps)
        self.F: list[Format] = [FORMATS[f] for f in self.formats]
        self.t0 = time.perf_counter()
        self.rng = random.Random(self.seed)
        self.gen = torch.Generator().manual_seed(self.seed)

    def out_of_time(self) -> bool:
        return time.perf_counter() - self.t0 > self.time_limit

    # ------------------------------------------------------------------ points
    def float_inputs(self) -> list[int]:
        return [i for i, s in enumerate(self.loaded.inputs) if s.is_float]

    def base_points(self, n_random: int = 6) -> list[list[torch.Tensor]]:
        pts = []
        for t in self.loaded.sample_inputs(3 + n_random, self.gen, dtype=F64):
            pts.append([x.to(F64) if x.is_floating_point() else x for x in t])
        return pts

    def clamp(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x, s in zip(xs, self.loaded.inputs):
            out.append(x.clamp(s.lo, s.hi) if s.is_float else x)
        return out

    def values(self, xs: Sequence[torch.Tensor], grad: bool = False):
        xs2 = [x.detach().clone().requires_grad_(grad) if x.is_floating_point() else x for x in xs]
        try:
            return xs2, node_values(self.captured, xs2)
        except Exception as e:  # noqa: BLE001 - search only; a failure means no candidate
            self.log.append(f"evaluation failed: {type(e).__name__}: {e}")
            return xs2, None

    def ascend(self, xs: list[torch.Tensor], objective, steps: int = 25) -> list[torch.Tensor]:
        """Projected sign-gradient ascent of ``objective(values) -> scalar tensor``."""
        fl = self.float_inputs()
        if not fl:
            return xs
        best, best_v = xs, -math.inf
        step = [0.25 * (self.loaded.inputs[i].hi - self.loaded.inputs[i].lo) for i in range(len(xs))]
        cur = xs
        for _ in range(steps):
            if self.out_of_time():
                break
            xg, vals = self.values(cur, grad=True)
            if vals is None:
                break
            obj = objective(vals)
            v = float(obj.detach())
            if v > best_v:
                best, best_v = [x.detach() for x in xg], v
            grads = torch.autograd.grad(obj, [xg[i] for i in fl], allow_unused=True)
            nxt = list(cur)
            for i, g in zip(fl, grads):
                if g is None:
                    continue
                nxt[i] = xg[i].detach() + step[i] * torch.sign(g)
                step[i] *= 0.7
            cur = self.clamp(nxt)
        return best

    def enclosure(self, xs: Sequence[torch.Tensor]) -> BoundsAnalysis:
        return enclose(self.loaded, self.captured, [x.detach() for x in xs])

    def inputs_json(self, xs: Sequence[torch.Tensor]) -> list[dict]:
        out = []
        for x, s in zip(xs, self.loaded.inputs):
            vals = x.detach().reshape(-1).tolist()
            out.append({"shape": list(s.shape), "dtype": str(s.dtype).replace("torch.", ""), "values": vals})
        return out

    def in_domain(self, xs: Sequence[torch.Tensor]) -> bool:
        for x, s in zip(xs, self.loaded.inputs):
            t = x.detach().to(F64)
            if bool((t < s.lo).any()) or bool((t > s.hi).any()) or not bool(torch.isfinite(t).all()):
                return False
            if not s.is_float and not bool((t == t.round()).all()):
                return False
        return True

    def check_info(self, extra: dict | None = None) -> dict:
        d = {
            "enclosure": "sound interval arithmetic at the witness inputs (the analyzer's ATen rules on a point box, outward-rounded binary64)",
            "comparisons": "exact rationals (fractions.Fraction)",
            "eps_used": _q(self.E),
            "checked": True,
        }
        d.update(extra or {})
        return d


# ---------------------------------------------------------------------- enclosure helpers
def _elem(ba: BoundsAnalysis, node: str, idx: tuple[int, ...]) -> tuple[Fraction, Fraction] | None:
    iv = ba.nodes[node].primary
    if iv is None:
        return None
    lo, hi = float(iv.lo[idx]), float(iv.hi[idx])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return Fraction(lo), Fraction(hi)


def _mag_lower(lo: Fraction, hi: Fraction) -> Fraction:
    """min |v| over [lo, hi] (exact)."""
    if lo > 0:
        return lo
    if hi < 0:
        return -hi
    return Fraction(0)


def _float_nodes(ba: BoundsAnalysis) -> list[str]:
    return [n for n, info in ba.nodes.items() if info.kind == "call" and info.primary is not None and info.primary.is_float and info.primary.numel()]


# ------------------------------------------------------------------------------ overflow
def find_overflow(s: Search) -> Witness | None:
    M = max(Fraction(f.max) for f in s.F)
    outs = set(s.ba.outputs)
    cands = []
    for n in _float_nodes(s.ba):
        iv = s.ba.nodes[n].primary
        if n not in outs or iv.is_point or bool((iv.lo == iv.hi).all()):
            continue  # only outputs can witness (module docstring); a constant output is no search
        m = float(fmag(iv).max())
        if m > float(M + s.E):
            cands.append((-m, n))
    cands.sort()
    for _, node in cands[:6]:
        if s.out_of_time():
            break
        pts = s.base_points(3)
        scored = []
        for xs in pts:
            _, vals = s.values(xs)
            if vals is None or node not in vals:
                continue
            scored.append((float(vals[node].abs().max()), xs))
        if not scored:
            continue
        scored.sort(key=lambda t: -t[0])
        best = scored[0][1]
        if scored[0][0] <= float(M):
            best = s.ascend(best, lambda v: v[node].abs().max())
        w = check_overflow(s, best, node)
        if w is not None:
            return w
    return None


def check_overflow(s: Search, xs: list[torch.Tensor], node: str) -> Witness | None:
    if not s.in_domain(xs):
        return None
    M = max(Fraction(f.max) for f in s.F)
    enc = s.enclosure(xs)
    iv = enc.nodes[node].primary
    if iv is None:
        return None
    lo_t, hi_t = iv.lo.reshape(-1), iv.hi.reshape(-1)
    mig = torch.where((lo_t <= 0) & (hi_t >= 0), torch.zeros_like(lo_t), torch.minimum(lo_t.abs(), hi_t.abs()))
    k = int(torch.argmax(mig))
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), iv.shape)) if iv.shape else ()
    e = _elem(enc, node, idx)
    if e is None:
        return None
    lo, hi = e
    mag = _mag_lower(lo, hi)
    if node not in s.ba.outputs or not mag - M > s.E:
        return None  # NB: an intermediate, or an output within eps of max, proves nothing
    info = s.ba.nodes[node]
    fm = ", ".join(f"{f.name} (max {f.max:g})" for f in s.F)
    stmt = (
        f"at this input the model output {node}{list(idx)} is exactly in [{float(lo):.9g}, {float(hi):.9g}]: "
        f"its magnitude exceeds the largest finite value of every format the hardware offers ({fm}) by more than eps, "
        "so no result delivered in these formats (overflowed, NaN or saturated) is within eps of it, whatever the algorithm"
    )
    return Witness(
        "overflow", [f.name for f in s.F], stmt, s.inputs_json(xs), node, info.layer, list(idx),
        [float(lo), float(hi)],
        {"magnitude_lower": float(mag), "format_max": float(M), "scope": "output", "excess": _q(mag - M)},
        check=s.check_info({"claim": f"|output| >= {_q(mag)} > max + eps = {_q(M + s.E)}"}),
    )


# -------------------------------------------------------------- output representability
def _target(y: Fraction, fmts: list[Format], E: Fraction) -> Fraction | None:
    """A point near y whose distance to every format exceeds E (the best of the midpoints
    between consecutive values around y), or None."""
    cands = []
    for f in fmts:
        d, u = round_down(y, f), round_up(y, f)
        if d is None or u is None or d == u:
            sp = None
        else:
            sp = u - d
        if sp is None:
            continue
        m = (d + u) / 2
        cands += [m, m - sp, m + sp]
    best, best_score = None, E
    for t in cands:
        score = min(distance_to_format(t, f) for f in fmts)
        if score > best_score or (best is not None and score == best_score and abs(t - y) < abs(best - y)):
            best, best_score = t, score
    return best


def find_output(s: Search) -> Witness | None:
    outs = [o for o in s.ba.outputs if s.ba.nodes[o].primary is not None and s.ba.nodes[o].primary.is_float]
    if not outs:
        return None
    pts = s.base_points(4)
    for out in outs:
        starts = list(pts)
        if s.float_inputs():
            starts.append(s.ascend(pts[0], lambda v: v[out].abs().max(), steps=15))
        for xs in starts:
            if s.out_of_time():
                return None
            _, vals = s.values(xs)
            if vals is None or out not in vals:
                continue
            y = vals[out].detach().reshape(-1)
            order = torch.argsort(y.abs(), descending=True)[:6].tolist()
            for k in order:
                w = _drive_output(s, xs, out, k, Fraction(float(y[k])))
                if w is not None:
                    return w
    return None


def _drive_output(s: Search, xs: list[torch.Tensor], out: str, k: int, y0: Fraction) -> Witness | None:
    t = _target(y0, s.F, s.E)
    if t is None:
        return None
    if not s.float_inputs():
        return check_output(s, xs, out, k) if t == y0 else None
    xg, vals = s.values(xs, grad=True)
    if vals is None:
        return None
    fl = s.float_inputs()
    yk = vals[out].reshape(-1)[k]
    grads = torch.autograd.grad(yk, [xg[i] for i in fl], allow_unused=True)
    if all(g is None or not bool(g.abs().sum() > 0) for g in grads):
        return check_output(s, xs, out, k)
    gn = sum(float((g * g).sum()) for g in grads if g is not None)
    base = [x.detach() for x in xg]

    def at(sv: float) -> list[torch.Tensor]:
        nxt = list(base)
        for i, g in zip(fl, grads):
            if g is not None:
                nxt[i] = base[i] + sv * g
        return s.clamp(nxt)

    def f(sv: float) -> float:
        _, v = s.values(at(sv))
        return float(v[out].reshape(-1)[k]) - float(t) if v is not None else math.nan

    # Newton guess, then bracket and bisect along the gradient direction.
    s1 = (float(t) - float(y0)) / gn
    a, fa = 0.0, float(y0) - float(t)
    b = s1
    fb = f(b)
    grow = 0
    while fa * fb > 0 and grow < 30 and math.isfinite(fb):
        b *= 2.0
        fb = f(b)
        grow += 1
    if not (math.isfinite(fb) and fa * fb <= 0):
        return None
    for _ in range(80):
        m = 0.5 * (a + b)
        fm_ = f(m)
        if not math.isfinite(fm_):
            return None
        if fa * fm_ <= 0:
            b, fb = m, fm_
        else:
            a, fa = m, fm_
        if abs(fm_) < 1e-3 * float(min(distance_to_format(t, fmt) for fmt in s.F) - s.E):
            break
    return check_output(s, at(0.5 * (a + b)), out, k)


def check_output(s: Search, xs: list[torch.Tensor], out: str, k: int) -> Witness | None:
    if not s.in_domain(xs):
        return None
    enc = s.enclosure(xs)
    iv = enc.nodes[out].primary
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), iv.shape)) if iv.shape else ()
    e = _elem(enc, out, idx)
    if e is None:
        return None
    lo, hi = e
    dist = None
    near = {}
    for f in s.F:
        u = round_up(lo - s.E, f)
        if u is not None and u <= hi + s.E:
            return None  # some value of f lies within eps of a possible y
        below = round_down(lo - s.E, f)  # the nearest value of f below y - eps (or None)
        cand = ([lo - below] if below is not None else []) + ([u - hi] if u is not None else [])
        d_f = min(cand) if cand else None
        near[f.name] = {"below": float(below) if below is not None else None, "above": float(u) if u is not None else None}
        if d_f is not None:
            dist = d_f if dist is None else min(dist, d_f)
    info = s.ba.nodes[out]
    fm = ", ".join(f.name for f in s.F)
    stmt = (
        f"at this input the model output {out}{list(idx)} is exactly in [{float(lo):.12g}, {float(hi):.12g}]; "
        f"no finite value of {fm} lies within eps of that interval (nearest values below / above: "
        + "; ".join(f"{n}: {_fmt(v['below'])} / {_fmt(v['above'])}" for n, v in near.items())
        + "), so any output delivered in the hardware's formats misses the exact one by more than eps"
    )
    return Witness(
        "output-representability", [f.name for f in s.F], stmt, s.inputs_json(xs), out, info.layer, list(idx),
        [float(lo), float(hi)],
        {"distance_lower": float(dist) if dist is not None else None, "distance_lower_exact": _q(dist) if dist is not None else None, "nearest": near},
        check=s.check_info({"claim": "for every format F of the profile: no finite F value in [lo - eps, hi + eps]"}),
    )


# ----------------------------------------------------------- input indistinguishability
def _inside(v: Fraction, lo: Fraction, hi: Fraction, toward: float) -> float | None:
    """A binary64 number in [lo, hi] near v (v is an endpoint), moving toward ``toward``."""
    x = float(v)
    for _ in range(64):
        if lo <= Fraction(x) <= hi:
            return x
        x = math.nextafter(x, toward)
    return None


def find_indistinguishable(s: Search) -> Witness | None:
    fl = s.float_inputs()
    outs = [o for o in s.ba.outputs if s.ba.nodes[o].primary is not None and s.ba.nodes[o].primary.is_float]
    if not fl or not outs:
        return None
    pts = s.base_points(4)
    for out in outs:
        for xs in pts:
            if s.out_of_time():
                return None
            xg, vals = s.values(xs, grad=True)
            if vals is None:
                continue
            y = vals[out].reshape(-1)
            # the output element with the largest gradient (L1) is the most sensitive
            ks = list(range(y.numel())) if y.numel() <= 16 else torch.randperm(y.numel(), generator=s.gen)[:16].tolist()
            best = None
            for k in ks:
                gs = torch.autograd.grad(y[k], [xg[i] for i in fl], retain_graph=True, allow_unused=True)
                sc = sum(float(g.abs().sum()) for g in gs if g is not None)
                if best is None or sc > best[0]:
                    best = (sc, k, gs)
            if best is None or best[0] == 0:
                continue
            _, k, gs = best
            w = _split_cells(s, [x.detach() for x in xg], out, k, dict(zip(fl, gs)))
            if w is not None:
                return w
    return None


def _split_cells(s: Search, xs: list[torch.Tensor], out: str, k: int, grads: dict) -> Witness | None:
    """x, x': every float input element moved to the two ends of its common rounding cell,
    ordered by the sign of the gradient."""
    plus, minus = list(xs), list(xs)
    predicted = 0.0
    for i, g in grads.items():
        if g is None:
            continue
        spec = s.loaded.inputs[i]
        dlo, dhi = Fraction(spec.lo), Fraction(spec.hi)
        base = xs[i].reshape(-1).tolist()
        gv = g.reshape(-1).tolist()
        p_vals, m_vals = list(base), list(base)
        for j, (v, gj) in enumerate(zip(base, gv)):
            if gj == 0:
                continue
            lo, hi = dlo, dhi
            ok = True
            for f in s.F:
                c = rounding_cell(Fraction(v), f)
                if c is None:
                    ok = False
                    break
                lo, hi = max(lo, c[0]), min(hi, c[1])
            if not ok or lo >= hi:
                continue
            a = _inside(lo, lo, hi, math.inf)
            b = _inside(hi, lo, hi, -math.inf)
            if a is None or b is None:
                continue
            up, dn = (b, a) if gj > 0 else (a, b)
            p_vals[j], m_vals[j] = up, dn
            predicted += abs(gj) * (b - a)
        plus[i] = torch.tensor(p_vals, dtype=F64).reshape(xs[i].shape)
        minus[i] = torch.tensor(m_vals, dtype=F64).reshape(xs[i].shape)
    if predicted <= 2 * float(s.E):
        return None
    return check_indistinguishable(s, plus, minus, out, k)


def check_indistinguishable(s: Search, xa: list[torch.Tensor], xb: list[torch.Tensor], out: str, k: int) -> Witness | None:
    if not (s.in_domain(xa) and s.in_domain(xb)):
        return None
    n_moved = 0
    for i, spec in enumerate(s.loaded.inputs):
        a, b = xa[i].reshape(-1).tolist(), xb[i].reshape(-1).tolist()
        for u, v in zip(a, b):
            if u == v:
                continue
            if not spec.is_float:
                return None
            n_moved += 1
            for f in s.F:
                if not same_rounding(Fraction(u), Fraction(v), f):
                    return None
    if n_moved == 0:
        return None
    ea, eb = s.enclosure(xa), s.enclosure(xb)
    iv = ea.nodes[out].primary
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), iv.shape)) if iv.shape else ()
    A, B = _elem(ea, out, idx), _elem(eb, out, idx)
    if A is None or B is None:
        return None
    gap = max(A[0] - B[1], B[0] - A[1])
    if not gap > 2 * s.E:
        return None
    info = s.ba.nodes[out]
    fm = ", ".join(f.name for f in s.F)
    stmt = (
        f"the two inputs lie in the domain and every element of one rounds to the same value as the other's in {fm} "
        "(rounded to nearest, directly or through fp32) "
        f"({n_moved} element(s) differ), yet the exact outputs {out}{list(idx)} differ by at least {float(gap):.9g} > 2 eps: "
        "an algorithm that reads its inputs in the hardware's formats computes the same output for both and misses one by more than eps"
    )
    return Witness(
        "input-indistinguishability", [f.name for f in s.F], stmt, s.inputs_json(xa), out, info.layer, list(idx),
        [float(A[0]), float(A[1])],
        {"gap_lower": float(gap), "gap_lower_exact": _q(gap), "elements_moved": n_moved},
        inputs_other=s.inputs_json(xb), enclosure_other=[float(B[0]), float(B[1])],
        check=s.check_info({"claim": "fl_F(x) == fl_F(x') elementwise for every format F (exact), and |f(x) - f(x')| > 2 eps"}),
    )


FINDERS = {"overflow": find_overflow, "output-representability": find_output, "input-indistinguishability": find_indistinguishable}


def find_witness(s: Search, kinds: Sequence[str] = KINDS) -> Witness | None:
    """The first checked witness of the given kinds (in that order), or None."""
    for kind in kinds:
        if s.out_of_time():
            s.log.append("witness search stopped at its time limit")
            break
        try:
            w = FINDERS[kind](s)
        except Exception as e:  # noqa: BLE001 - a search failure is "no witness", never a claim
            s.log.append(f"{kind} search failed: {type(e).__name__}: {e}")
            w = None
        if w is not None:
            return w
        s.log.append(f"no checked {kind} witness found")
    return None


# ------------------------------------------------------------------------- HNF obstruction
def hnf_obstruction(s: Search, c: float, formats: Sequence[str], samples: int = 6) -> dict | None:
    """The HNF necessary condition with lower-bound quantities, if it rules out every format
    of the profile (conditional on the HNF theorem); None otherwise."""
    fl = s.float_inputs()
    if not fl or len(fl) != len(s.loaded.inputs):
        return None  # integer inputs: the theorem's smooth setting does not apply
    D = max(s.loaded.inputs[i].hi - s.loaded.inputs[i].lo for i in fl)
    if D <= 0:
        return None
    best = (0.0, None, None, None)
    outs = [o for o in s.ba.outputs if s.ba.nodes[o].primary is not None and s.ba.nodes[o].primary.is_float]
    for xs in s.base_points(samples):
        if s.out_of_time():
            break
        xg, vals = s.values(xs, grad=True)
        if vals is None:
            continue
        for out in outs:
            y = vals[out].reshape(-1)
            for k in range(min(y.numel(), 8)):
                g = torch.autograd.grad(y[k], [xg[i] for i in fl], create_graph=True, allow_unused=True)
                for mode in ("ones", "sign"):
                    hs = [torch.ones_like(xg[i]) if (mode == "ones" or gi is None) else torch.sign(gi.detach()) + (gi.detach() == 0) for i, gi in zip(fl, g)]
                    gh = sum((gi * h).sum() for gi, h in zip(g, hs) if gi is not None)
                    if not isinstance(gh, torch.Tensor) or not gh.requires_grad:
                        continue
                    hv = torch.autograd.grad(gh, [xg[i] for i in fl], retain_graph=True, allow_unused=True)
                    q = sum(float((hvi * h).sum()) for hvi, h in zip(hv, hs) if hvi is not None)
                    kap = 0.5 * abs(q)
                    if math.isfinite(kap) and kap > best[0]:
                        best = (kap, out, k, [x.detach().reshape(-1).tolist() for x in xs])
    kap = best[0] * 0.5  # NB: margin for the float64 evaluation of the second derivative
    if kap <= 0:
        return None
    v = Fraction(c) * Fraction(kap) * Fraction(D) ** 2 / eps_upper(s.eps)
    pmax = max(FORMATS[f].p for f in formats)
    if not v > Fraction(2) ** pmax:
        return None
    p_req = math.log2(float(v))
    return {
        "label": "hnf-obstruction (conditional on the HNF theorem)",
        "statement": (
            f"HNF necessary condition p >= log2(c kappa D^2 / eps) with c = {c:g}, kappa >= {kap:.6g} "
            f"(half the sampled 1/2|h^T D^2 f h|, ||h||_inf = 1, output {best[1]}[{best[2]}]), D = {D:g} (infinity-norm "
            f"diameter of the input box), eps = {s.eps:g}: p >= {p_req:.2f} bits, but the profile's most precise format has {pmax}"
        ),
        "c": c,
        "kappa_lower": kap,
        "diameter": D,
        "eps": s.eps,
        "required_bits": p_req,
        "profile_max_bits": pmax,
        "output": best[1],
        "index": best[2],
        "point": best[3],
        "conditional": "the HNF theorem (its published proof has gaps; DESIGN 4.2)",
    }


# ----------------------------------------------------------------------------- re-checking
def recheck(cert: dict, loaded: LoadedModel) -> tuple[bool, str]:
    """Re-check a ``certify prove`` certificate's witness against a model (``certify verify``).

    The recorded inputs are run through the same exact-arithmetic check that produced the
    witness (enclosures of the exact values, Fraction comparisons), for the witness's
    formats and the certificate's eps; the witness must also cover every storage format of
    the certificate's hardware. Nothing recorded in the witness besides its inputs, node and
    index is trusted: the enclosure and the claim are recomputed."""
    from certifier.capture import capture
    from certifier.walker import analyze_bounds

    w = cert.get("witness")
    if not isinstance(w, dict):
        return False, "the certificate has no witness"
    kind, node = str(w["kind"]), str(w["node"])
    fmts = [str(f) for f in w["formats"]]
    if any(f not in FORMATS for f in fmts):
        return False, f"unknown format in the witness: {fmts}"
    hw = [str(f) for f in cert["hardware"]["formats"]]
    need = sorted({FORMATS[f].storage.name for f in hw if f in FORMATS})
    if any(f not in FORMATS for f in hw) or any(f not in fmts for f in need):
        return False, f"the witness covers {', '.join(fmts)}, not every storage format of the hardware ({', '.join(need)})"
    eps = float(cert["spec"]["eps"])
    if not (math.isfinite(eps) and eps > 0):
        return False, f"bad eps {eps!r}"

    def tensors(items: list[dict]) -> list[torch.Tensor]:
        if len(items) != len(loaded.inputs):
            raise ValueError("the witness's inputs do not match the model's")
        out = []
        for it, sp in zip(items, loaded.inputs):
            t = torch.tensor([float(v) for v in it["values"]], dtype=F64)
            out.append((t if sp.is_float else t.to(torch.int64)).reshape(tuple(sp.shape)))
        return out

    cap = capture(loaded)
    ba = analyze_bounds(loaded, cap)
    if node not in ba.nodes or ba.nodes[node].primary is None:
        return False, f"the witness's node {node} is not in the model's graph"
    s = Search(loaded, cap, ba, eps, tuple(fmts))
    xs = tensors(w["inputs"])
    shape = tuple(ba.nodes[node].primary.shape)
    idx = [int(i) for i in w["index"]]
    if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
        return False, f"the witness's index {idx} is outside {node}'s shape {list(shape)}"
    k = 0
    for i, n in zip(idx, shape):
        k = k * n + i
    if kind == "overflow":
        r = check_overflow(s, xs, node)
    elif kind == "output-representability":
        r = check_output(s, xs, node, k)
    elif kind == "input-indistinguishability":
        r = check_indistinguishable(s, xs, tensors(w["inputs_other"]), node, k)
    else:
        return False, f"unknown witness kind {kind!r}"
    if r is None:
        return False, f"the {kind} witness does not hold for this model at eps {eps:g} in {', '.join(fmts)}"
    return True, f"{kind} witness re-checked in exact arithmetic ({', '.join(fmts)}, eps {eps:g})"
