"""The provably cheapest per-layer format assignment under the linear model (issue 4).

The model is the one of :mod:`certifier.allocate`: layer l in format f contributes
``C_l(f) = sum_{i in l} G_i Delta_i(f)`` to the output error, an assignment is admissible when
``sum_l C_l(f_l) <= budget`` and no chosen format is refused (overflow, HNF floor, unbounded
error), and it costs ``sum_l cost_l(f_l)``. Encoded for Z3 as a QF_LRA problem in *exact
rationals*:

* one Bool ``|f:<layer>:<format>|`` per layer and candidate format of the profile;
* ``choose:<layer>``: exactly one of them (a disjunction and pairwise exclusions);
* ``overflow:<layer>:<f>`` / ``hnf:<layer>:<f>`` / ``unbounded:<layer>:<f>``: the refused
  choices, each a named (tracked) assertion so that an unsat core names them;
* ``def:err`` / ``def:cost``: ``err = sum ite(x, C_l(f), 0)``, ``cost = sum ite(x, cost_l(f), 0)``;
* ``budget``: ``err <= budget``.

Coefficients: ``Fraction(float)`` is the exact value of the binary64 coefficient the sound
analysis computed (an upper bound already), so nothing is under-stated; a coefficient that
is infinite is replaced by ``budget + 1`` (the choice cannot fit) and its choice is refused.
The budget is the exact value of the float budget when that is at most the decimal the user
wrote (``Fraction(repr(x))``), else that decimal: never above what was asked.

The optimum comes from ``z3.Optimize`` (minimize ``cost``) and is then *proved* by two
queries that any SMT solver can replay: ``cost <= C*`` is sat (the optimum is attainable) and
``cost < C*`` is unsat (nothing cheaper exists). When even the feasibility query is unsat the
result is the unsat core: the layers and constraints in conflict.

Layers with a single candidate are still encoded (their choice appears in cores); options
dominated by another choice of the same layer (no cheaper and no more accurate) are kept too,
so the encoding is the allocation problem itself, not a reduction of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

from certifier.allocate import LayerPlan
from certifier.formats import FORMAT_ORDER
from smt.smtlib import SmtQuery, add, conj, named, sym, z3_check


def exact_budget(x: float) -> Fraction:
    """The exact rational budget for a float eps: never above the float nor the decimal."""
    a = Fraction(x)
    try:
        b = Fraction(repr(float(x)))
    except ValueError:
        b = a
    return min(a, b)


def exact_coeff(x: float) -> Fraction:
    """Exact rational of a finite float coefficient (Fraction(float) is exact, never below)."""
    return Fraction(float(x))


@dataclass(frozen=True)
class Choice:
    layer: str
    fmt: str
    var: str  # SMT symbol name (unquoted)
    coeff: Fraction  # error contribution (budget + 1 when unbounded)
    cost: Fraction
    refusal: tuple[str, str] | None  # (constraint name, reason) when refused


@dataclass
class Encoding:
    """The allocation problem as data; :meth:`script` renders it as SMT-LIB2 (QF_LIA).

    Every finite coefficient is a binary64 number, so with ``scale`` the least common
    multiple of their denominators, ``err_int = scale * err`` is an integer and
    ``err <= B  <=>  err_int <= floor(B * scale)``: the integer form is *equivalent* to the
    rational one, not an approximation. Costs are scaled the same way (``cost_scale``).
    Choice variables are 0/1 integers, which gives the solver the problem's LP relaxation
    (the integer-programming form of the multiple-choice knapsack)."""

    layers: list[str]
    choices: dict[str, list[Choice]]
    budget: Fraction
    budget_float: float
    scale: int = 1
    cost_scale: int = 1

    def __post_init__(self) -> None:
        dens = [c.coeff.denominator for cs in self.choices.values() for c in cs if c.refusal is None or c.coeff <= self.budget]
        costs = [c.cost.denominator for cs in self.choices.values() for c in cs]
        self.scale = math.lcm(*dens) if dens else 1
        self.cost_scale = math.lcm(*costs) if costs else 1
        self.budget_int = math.floor(self.budget * self.scale)

    def err_int(self, c: Choice) -> int:
        """The choice's error in units of 1/scale (an integer; budget_int + 1 if it cannot fit)."""
        v = c.coeff * self.scale
        return v.numerator if v.denominator == 1 else self.budget_int + 1

    def cost_int(self, c: Choice) -> int:
        v = c.cost * self.cost_scale
        assert v.denominator == 1
        return v.numerator

    def header(self, kind: str, claim: str) -> list[str]:
        n = sum(len(c) for c in self.choices.values())
        return [
            "; certify: per-layer floating-point format allocation (DESIGN 4.3, linear model)",
            f"; query: {kind}",
            f"; claim: {claim}",
            f"; {len(self.layers)} layers, {n} (layer, format) choices; |f:LAYER:FORMAT| = 1 when LAYER runs in FORMAT",
            f"; err = output error bound * {self.scale} (exact integer: the coefficients are binary64 numbers)",
            f"; budget {self.budget_float!r} -> err <= floor({self.budget} * {self.scale}) = {self.budget_int}",
            f"; cost = cost model * {self.cost_scale}",
            "(set-logic QF_LIA)",
            "(set-option :produce-unsat-cores true)",
        ]

    def body(self) -> list[str]:
        lines = []
        for layer in self.layers:
            for c in self.choices[layer]:
                lines.append(f"(declare-const {sym(c.var)} Int)")
        lines.append("(declare-const err Int)")
        lines.append("(declare-const cost Int)")
        err_terms, cost_terms = [], []
        for layer in self.layers:
            for c in self.choices[layer]:
                e, w = self.err_int(c), self.cost_int(c)
                if e:
                    err_terms.append(f"(* {e} {sym(c.var)})")
                if w:
                    cost_terms.append(f"(* {w} {sym(c.var)})")
        lines.append(named(f"(= err {add(err_terms, '0')})", "def:err"))
        lines.append(named(f"(= cost {add(cost_terms, '0')})", "def:cost"))
        for layer in self.layers:
            vs = [sym(c.var) for c in self.choices[layer]]
            parts = [f"(<= 0 {v})" for v in vs] + [f"(<= {v} 1)" for v in vs] + [f"(= {add(vs, '0')} 1)"]
            lines.append(named(conj(parts), f"choose:{layer}"))
        for layer in self.layers:
            for c in self.choices[layer]:
                if c.refusal is not None:
                    lines.append(named(f"(= {sym(c.var)} 0)", c.refusal[0]))
        lines.append(named(f"(<= err {self.budget_int})", "budget"))
        return lines

    def script(self, kind: str, claim: str, extra: list[str] = (), keep: set[str] | None = None) -> str:
        """The SMT-LIB2 script; ``keep`` restricts the named assertions to a core (``def:``
        assertions are always kept)."""
        body = self.body()
        if keep is not None:
            body = [ln for ln in body if not ln.startswith("(assert") or _name_of(ln) in keep or _name_of(ln).startswith("def:")]
        return "\n".join(self.header(kind, claim) + body + list(extra) + ["(check-sat)", "(exit)"]) + "\n"

    def check(self, formats: dict[str, str]) -> tuple[bool, Fraction, Fraction]:
        """Exact check of an assignment: (admissible and within budget, err, cost)."""
        err, cost = Fraction(0), Fraction(0)
        for layer in self.layers:
            f = formats.get(layer)
            c = next((c for c in self.choices[layer] if c.fmt == f), None)
            if c is None or c.refusal is not None:
                return False, err, cost
            err += c.coeff
            cost += c.cost
        return err <= self.budget, err, cost


def _name_of(line: str) -> str:
    i = line.rfind(":named |")
    return line[i + len(":named |"):].rstrip(")").rstrip("|") if i >= 0 else ""


def _refusal_tag(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head in ("overflow", "hnf", "unbounded") else "refused"


def encode(plans: dict[str, LayerPlan], budget: float) -> Encoding:
    """The allocation problem of ``plans`` under ``budget`` as exact data."""
    B = exact_budget(budget)
    layers = list(plans)
    choices: dict[str, list[Choice]] = {}
    for layer, p in plans.items():
        cs = []
        for f in sorted(p.coeff, key=FORMAT_ORDER.index):
            c = p.coeff[f]
            coeff = exact_coeff(c) if math.isfinite(c) else B + 1
            reason = p.refused.get(f)
            if reason is None and not math.isfinite(c):
                reason = "unbounded: the error contribution has no finite bound"
            refusal = (f"{_refusal_tag(reason)}:{layer}:{f}", reason) if reason is not None else None
            cs.append(Choice(layer, f, f"f:{layer}:{f}", coeff, Fraction(float(p.cost[f])), refusal))
        choices[layer] = cs
    return Encoding(layers, choices, B, float(budget))


@dataclass
class OptResult:
    """What the solver established for one budget."""

    status: str  # "optimal" | "infeasible" | "unknown"
    formats: dict[str, str] | None
    cost: Fraction | None
    err: Fraction | None
    budget: float
    core: list[str] = field(default_factory=list)  # named constraints (infeasible)
    core_layers: list[str] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)
    queries: list[SmtQuery] = field(default_factory=list)
    solve_seconds: float = 0.0  # z3 Optimize (or the feasibility check when infeasible)
    proof_seconds: float = 0.0  # the optimality (unsat) check
    encoding: Encoding | None = None

    def unsat_core_json(self) -> dict | None:
        if self.status != "infeasible":
            return None
        return {
            "constraints": list(self.core),
            "layers": list(self.core_layers),
            "budget": self.budget,
            "explanation": list(self.explanation),
        }


def _explain(enc: Encoding, core: list[str]) -> tuple[list[str], list[str]]:
    layers: list[str] = []
    for name in core:
        kind, _, rest = name.partition(":")
        if kind in ("choose", "overflow", "hnf", "unbounded", "refused"):
            layer = rest if kind == "choose" else rest.rsplit(":", 1)[0]
            if layer not in layers:
                layers.append(layer)
    lines = []
    for layer in layers:
        parts = []
        for c in enc.choices[layer]:
            if c.refusal is not None:
                parts.append(f"{c.fmt} refused ({c.refusal[1]})")
            else:
                parts.append(f"{c.fmt} adds >= {float(c.coeff):.3g}")
        lines.append(f"layer {layer}: " + "; ".join(parts))
    if "budget" in core:
        least = sum(min((c.coeff for c in enc.choices[l] if c.refusal is None), default=enc.budget + 1) for l in layers)
        lines.append(
            f"budget: the least error these {len(layers)} layer(s) can contribute, {float(least):.3g}, exceeds the budget {enc.budget_float:.3g}"
        )
    return layers, lines


def _z3_vars(enc: Encoding, model, z3) -> dict[str, str]:
    out = {}
    for layer in enc.layers:
        for c in enc.choices[layer]:
            if model.eval(z3.Int(c.var), model_completion=True).as_long() == 1:
                out[layer] = c.fmt
    return out


def optimal_assignment(plans: dict[str, LayerPlan], budget: float, timeout_ms: int = 600_000) -> OptResult:
    """The cheapest admissible assignment with ``sum C_l <= budget``, proved optimal; or the
    unsat core when there is none. Every query is kept as SMT-LIB2 in ``queries``."""
    import z3

    enc = encode(plans, budget)
    base = enc.script("feasibility", "an admissible assignment within the error budget exists")
    # 1. Optimize.
    t0 = time.perf_counter()
    opt = z3.Optimize()
    opt.set(timeout=timeout_ms)
    opt.from_string(base.replace("(check-sat)\n(exit)\n", ""))
    cost = z3.Int("cost")
    h = opt.minimize(cost)
    r = opt.check()
    solve_s = time.perf_counter() - t0
    if r == z3.unsat:
        res, core = z3_check(base, timeout_ms)
        layers, expl = _explain(enc, core)
        q = SmtQuery("infeasibility", base, res, solve_s, "no admissible assignment fits the error budget (linear model)")
        core_text = enc.script("unsat-core", "these constraints alone are already inconsistent", keep=set(core))
        qc = SmtQuery("unsat-core", core_text, z3_check(core_text, timeout_ms)[0], 0.0, "the unsat core alone is inconsistent")
        return OptResult("infeasible", None, None, None, budget, core, layers, expl, [q, qc], solve_s, 0.0, enc)
    if r != z3.sat:
        return OptResult("unknown", None, None, None, budget, queries=[], solve_seconds=solve_s, encoding=enc,
                         explanation=[f"z3 Optimize returned {r}: {opt.reason_unknown()}"])
    formats = _z3_vars(enc, opt.model(), z3)
    ok, err, c_star = enc.check(formats)
    if not ok:  # z3's model must satisfy the exact constraints; anything else is a bug
        raise RuntimeError("z3 returned an assignment that fails the exact check")
    del h
    # 2. The two queries that prove optimality (replayable in any SMT-LIB2 solver).
    t1 = time.perf_counter()
    k = c_star * enc.cost_scale
    assert k.denominator == 1
    at = enc.script("attained", f"an admissible assignment of cost <= {float(c_star):.6g} fits the budget",
                    [named(f"(<= cost {k.numerator})", "cost")])
    below = enc.script("optimality", f"no admissible assignment of cost < {float(c_star):.6g} fits the budget",
                       [named(f"(<= cost {k.numerator - 1})", "cost")])
    r_at, _ = z3_check(at, timeout_ms)
    r_below, _ = z3_check(below, timeout_ms)
    proof_s = time.perf_counter() - t1
    qs = [SmtQuery("attained", at, r_at, 0.0, f"cost <= {float(c_star):.6g} is attainable"),
          SmtQuery("optimality", below, r_below, proof_s, f"nothing cheaper than {float(c_star):.6g}")]
    status = "optimal" if (r_at == "sat" and r_below == "unsat") else "unknown"
    expl = [] if status == "optimal" else [f"optimality not proved: attained {r_at}, below {r_below}"]
    return OptResult(status, formats, c_star, err, budget, queries=qs, solve_seconds=solve_s, proof_seconds=proof_s, encoding=enc, explanation=expl)


class Z3Allocator:
    """A solver for :func:`certifier.allocate.certify_assignment` that keeps the result (and
    the SMT-LIB2 queries) of every call; ``last`` is the one the certificate rests on."""

    def __init__(self, timeout_ms: int = 600_000) -> None:
        self.timeout_ms = timeout_ms
        self.results: list[OptResult] = []

    @property
    def last(self) -> OptResult | None:
        return self.results[-1] if self.results else None

    def __call__(self, plans: dict[str, LayerPlan], budget: float) -> dict[str, str] | None:
        res = optimal_assignment(plans, budget, self.timeout_ms)
        self.results.append(res)
        return dict(res.formats) if res.formats is not None else None


def z3_assignment(plans: dict[str, LayerPlan], budget: float) -> dict[str, str] | None:
    """The optimal assignment (same signature as :func:`certifier.allocate.greedy_assignment`)."""
    return optimal_assignment(plans, budget).formats
