"""The provably cheapest per-layer format assignment under the linear model (issue 4).

The model is the one of :mod:`certifier.allocate`: layer l in format f contributes
``C_l(f) = sum_{i in l} G_i Delta_i(f)`` to the output error, an assignment is admissible when
``sum_l C_l(f_l) <= budget`` and no chosen format is refused (overflow, HNF floor, unbounded
error), and it costs ``sum_l cost_l(f_l)``. Encoded as an SMT problem in exact arithmetic
(QF_LIA, see :class:`Encoding`):

* one 0/1 integer ``|f:<layer>:<format>|`` per layer and candidate format of the profile;
* ``def:binary``: every choice variable is 0 or 1;
* ``choose:<layer>``: exactly one of them;
* ``overflow:<layer>:<f>`` / ``hnf:<layer>:<f>`` / ``unbounded:<layer>:<f>``: the refused
  choices, each a named (tracked) assertion so that an unsat core names them;
* ``def:err`` / ``def:cost``: ``err = sum C_l(f) x``, ``cost = sum cost_l(f) x``, scaled to
  integers exactly (binary64 coefficients have power-of-two denominators);
* ``budget``: ``err <= budget``.

Coefficients: ``Fraction(float)`` is the exact value of the binary64 coefficient the sound
analysis computed (an upper bound already), so nothing is under-stated; a coefficient that
is infinite is replaced by one above the budget (the choice cannot fit) and its choice is
refused. The budget is the smaller of the float and the decimal the user wrote
(``Fraction(repr(x))``): never above what was asked.

Solving (:func:`optimal_assignment`): an exact branch and bound proposes a start, z3 improves
it by iterated satisfiability (``cost <= C - 1``) until unsat. The optimum is then *proved*
by two queries any SMT solver can replay: ``cost <= C*`` is sat (attained) and
``cost <= C* - 1`` is unsat (nothing cheaper exists, in the scaled integer costs). When the
feasibility query is unsat the result is the unsat core: the layers and constraints in
conflict. ``z3.Optimize`` on the same encoding is kept for comparison
(:func:`optimize_assignment`).

The encoding is the allocation problem itself: dominated choices and single-candidate layers
are kept (a core can name them); only the search drops dominated choices.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

from certifier.allocate import LayerPlan
from certifier.formats import FORMAT_ORDER
from smt.exact import eps_readings
from smt.smtlib import SmtQuery, add, conj, named, sym, z3_check


def exact_budget(x: float) -> Fraction:
    """The exact rational budget for a float eps: never above the float nor the decimal."""
    return min(eps_readings(x))


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
        bounds = []
        for layer in self.layers:
            for c in self.choices[layer]:
                bounds += [f"(<= 0 {sym(c.var)})", f"(<= {sym(c.var)} 1)"]
        lines.append(named(conj(bounds), "def:binary"))
        for layer in self.layers:
            vs = [sym(c.var) for c in self.choices[layer]]
            lines.append(named(f"(= {add(vs, '0')} 1)", f"choose:{layer}"))
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

    status: str  # optimal | optimal-search | feasible | infeasible | unknown
    formats: dict[str, str] | None
    cost: Fraction | None
    err: Fraction | None
    budget: float
    core: list[str] = field(default_factory=list)  # named constraints (infeasible)
    core_layers: list[str] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)
    queries: list[SmtQuery] = field(default_factory=list)
    solve_seconds: float = 0.0  # z3: the optimization (iterated sat, ending in the unsat proof)
    proof_seconds: float = 0.0  # z3: the attained (sat) query
    encoding: Encoding | None = None
    search_seconds: float = 0.0  # the branch and bound that proposes the start
    improvements: int = 0  # cheaper assignments z3 found after the start

    def unsat_core_json(self) -> dict | None:
        if self.status != "infeasible":
            return None
        return {
            "constraints": list(self.core),
            "layers": list(self.core_layers),
            "budget": self.budget,
            "explanation": list(self.explanation),
        }


def _minimize_core(enc: Encoding, core: list[str], timeout_ms: int, seconds: float = 10.0) -> list[str]:
    """Deletion-based minimization: drop each constraint whose removal keeps the rest unsat
    (a minimal core when it finishes within ``seconds``; definitions are always kept)."""
    t_end = time.perf_counter() + seconds
    cur = list(core)
    for c in list(core):
        if time.perf_counter() > t_end:
            break
        trial = [x for x in cur if x != c]
        r, _ = _solve(_plain(enc.script("core", "", keep=set(trial))), enc, min(timeout_ms, 5_000))
        if r == "unsat":
            cur = trial
    return cur


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


# ----------------------------------------------------------------------------- search
def _groups(enc: Encoding) -> list[list[tuple[int, int, str]]]:
    """Per layer, the admissible choices as exact (err_int, cost_int, format), after the
    optimality-preserving presolve: a choice is dropped when another choice of the same
    layer has no more error and no more cost (exchanging them keeps any solution feasible
    and no dearer)."""
    out = []
    for layer in enc.layers:
        opts = sorted(((enc.err_int(c), enc.cost_int(c), c.fmt) for c in enc.choices[layer] if c.refusal is None), key=lambda t: (t[0], t[1]))
        keep: list[tuple[int, int, str]] = []
        for t in opts:
            if not keep or t[1] < keep[-1][1]:
                keep.append(t)
        out.append(keep)
    return out


def _lower_hull(g: list[tuple[int, int, str]]) -> list[int]:
    """Indices of the lower convex hull of one group's (err, cost) points (sorted by err,
    cost strictly decreasing, as :func:`_groups` leaves them), in order of err."""
    h = [0]
    for j in range(1, len(g)):
        while len(h) >= 2:
            (a1, w1, _), (a2, w2, _) = g[h[-2]], g[h[-1]]
            if (w1 - w2) * (g[j][0] - a2) <= (w2 - g[j][1]) * (a2 - a1):
                h.pop()
            else:
                break
        h.append(j)
    return h


def _hull_edges(groups: list[list[tuple[int, int, str]]], order: list[int]) -> list[tuple[float, int, int, int, int]]:
    """Edges of each group's lower convex hull in the (err, cost) plane, steepest cost
    decrease per unit of error first: the LP relaxation of the multiple-choice knapsack is
    solved by taking them greedily (Sinha & Zoltners, Oper. Res. 27(3), 1979)."""
    pos = {g: k for k, g in enumerate(order)}
    edges = []
    for i, g in enumerate(groups):
        h = [g[j] for j in _lower_hull(g)]
        for j in range(1, len(h)):
            da, dw = h[j][0] - h[j - 1][0], h[j - 1][1] - h[j][1]
            edges.append((dw / da if da else math.inf, pos[i], da, dw, j))
    edges.sort(key=lambda e: -e[0])
    return edges


def exact_search(groups: list[list[tuple[int, int, str]]], cap: int, time_limit: float = 10.0, incumbent: int | None = None) -> tuple[int, list[int], bool] | None:
    """Multiple-choice knapsack, min sum cost with sum err <= cap, one choice per group.

    Dynamic programming over Pareto frontiers (Nemhauser & Ullmann 1969): after each group
    keep the (err, cost) pairs of partial assignments that no other pair dominates (no more
    error and no more cost): identical or symmetric layers collapse into one state. A state
    is dropped when its error cannot fit (plus the least error of the remaining groups) or
    when its cost plus the LP-relaxation bound of the remaining groups exceeds the incumbent
    minus one (costs are integers; the binary64 bound is compared with a relative margin of
    1e-9, far above its rounding error, so only states that cannot improve are dropped).
    Errors and costs are exact integers. Returns (cost, choice index per group, finished);
    ``finished`` means the search was exhaustive within ``time_limit``.
    """
    if any(not g for g in groups):
        return None
    n = len(groups)
    order = sorted(range(n), key=lambda i: -(groups[i][0][1] - groups[i][-1][1]))
    edges = _hull_edges(groups, order)
    min_err = [0] * (n + 1)
    min_cost0 = [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        g = groups[order[k]]
        min_err[k] = min_err[k + 1] + g[0][0]
        min_cost0[k] = min_cost0[k + 1] + g[0][1]
    if min_err[0] > cap:
        return None

    def lp(k: int, r: int) -> float:
        r -= min_err[k]
        if r < 0:
            return math.inf
        w = float(min_cost0[k])
        for _, d, da, dw, _j in edges:
            if d < k:
                continue
            if da <= r:
                r -= da
                w -= dw
            else:
                w -= dw * (r / da)
                break
        return w

    # Incumbent: the LP solution's integral part (take whole hull edges while they fit).
    inc_pick = {i: 0 for i in range(n)}
    level = {i: 0 for i in range(n)}
    hulls = {i: _lower_hull(g) for i, g in enumerate(groups)}  # index path of each hull, for the incumbent
    r = cap - min_err[0]
    for _, d, da, dw, j in edges:
        i = order[d]
        if da <= r and level[i] == j - 1:
            r -= da
            level[i] += 1
            inc_pick[i] = hulls[i][level[i]]
    inc_cost = sum(groups[i][inc_pick[i]][1] for i in range(n))
    best = float(inc_cost if incumbent is None else min(inc_cost, incumbent))
    slack = 1e-9 * abs(best)
    t_end = time.perf_counter() + time_limit
    front: list[tuple[int, int]] = [(0, 0)]
    backs: list[list[tuple[int, int]]] = []
    finished = True
    for k in range(n):
        i = order[k]
        cand = []
        for si, (e, c) in enumerate(front):
            for j, (a, w, _) in enumerate(groups[i]):
                e2 = e + a
                if e2 + min_err[k + 1] > cap:
                    continue
                cand.append((e2, c + w, si, j))
        cand.sort(key=lambda t: (t[0], t[1]))
        nf: list[tuple[int, int]] = []
        nb: list[tuple[int, int]] = []
        last = math.inf
        for e2, c2, si, j in cand:
            if c2 >= last:
                continue
            if c2 + lp(k + 1, cap - e2) > best + slack:
                continue
            nf.append((e2, c2))
            nb.append((si, j))
            last = c2
        front = nf
        backs.append(nb)
        if not front or time.perf_counter() > t_end:
            finished = False
            break
    if not finished:
        return inc_cost, [inc_pick[i] for i in range(n)], False
    si = min(range(len(front)), key=lambda t: front[t][1])
    cost = front[si][1]
    if cost > inc_cost:  # cannot happen (the incumbent's path is never pruned)
        return inc_cost, [inc_pick[i] for i in range(n)], False
    pick = [0] * n
    for k in range(n - 1, -1, -1):
        p, j = backs[k][si]
        pick[order[k]] = j
        si = p
    return cost, pick, True


def _plain(text: str) -> str:
    """The script with each ``(! ... :named n)`` annotation turned into a comment ``; n``
    before its assertion: the same formulas, which z3 solves much faster (named assertions
    become assumptions)."""
    import re

    return re.sub(r"\(assert \(! (.*) :named \|([^|]*)\|\)\)", r"; \2\n(assert \1)", text)


def optimal_assignment(plans: dict[str, LayerPlan], budget: float, timeout_ms: int = 60_000, search_seconds: float = 10.0) -> OptResult:
    """The cheapest admissible assignment with ``sum C_l <= budget``, with z3's proof of
    optimality; or the unsat core when there is none. Every query is kept as SMT-LIB2 in
    ``queries``.

    Method: the exact Pareto search (:func:`exact_search`) proposes the optimum; z3 then
    checks ``cost <= C - 1`` on the full encoding: unsat proves the optimum, a sat answer is
    a cheaper assignment (checked exactly, and the check repeats from it). ``status``:

    * ``optimal``: z3 proved that nothing cheaper exists;
    * ``optimal-search``: z3 ran out of time, but the exact search was exhaustive;
    * ``feasible``: neither (the assignment is admissible, optimality not established);
    * ``infeasible``: no admissible assignment fits the budget (``core`` says why).

    ``z3.Optimize`` on the same encoding (:func:`optimize_assignment`) finds the same optimum
    on small models but did not finish in minutes on 20-layer knapsack-like instances
    (benchmarks/allocation.py); the proof queries are the part z3 does well.
    """
    enc = encode(plans, budget)
    base = enc.script("feasibility", "an admissible assignment within the error budget exists")
    groups = _groups(enc)
    t0 = time.perf_counter()
    found = exact_search(groups, enc.budget_int, search_seconds)
    search_s = time.perf_counter() - t0
    exhaustive = bool(found is not None and found[2])
    # z3 on the full encoding, without names; a fresh solver per query (z3's incremental
    # mode skips the preprocessing that makes these queries fast).
    t0 = time.perf_counter()
    formats: dict[str, str] | None = None
    if found is not None:
        formats = {layer: groups[i][j][2] for i, (layer, j) in enumerate(zip(enc.layers, found[1]))}
    else:
        r, model = _solve(_plain(base), enc, timeout_ms)
        if r == "sat":
            formats = model
        elif r == "unsat":
            solve_s = time.perf_counter() - t0
            res, core = z3_check(base, timeout_ms)
            core = _minimize_core(enc, [c for c in core if not c.startswith("def:")], timeout_ms)
            layers, expl = _explain(enc, core)
            q = SmtQuery("infeasibility", base, res, solve_s, "no admissible assignment fits the error budget (linear model)")
            core_text = enc.script("unsat-core", "these constraints alone are already inconsistent", keep=set(core))
            qc = SmtQuery("unsat-core", core_text, z3_check(core_text, timeout_ms)[0], 0.0, "the unsat core alone is inconsistent")
            return OptResult("infeasible", None, None, None, budget, core, layers, expl, [q, qc], solve_s, 0.0, enc,
                             search_seconds=search_s)
        else:
            return OptResult("unknown", None, None, None, budget, solve_seconds=time.perf_counter() - t0, encoding=enc,
                             explanation=[f"z3 returned {r} on the feasibility query"], search_seconds=search_s)
    ok, err, c_star = enc.check(formats)
    if not ok:  # the search and z3 models must satisfy the exact constraints; anything else is a bug
        raise RuntimeError("an assignment failed the exact check of the encoding")
    improvements = 0
    expl: list[str] = []
    while True:
        k = (c_star * enc.cost_scale).numerator
        below = _plain(enc.script("optimality", "", [named(f"(<= cost {k - 1})", "cost")]))
        r_below, cand = _solve(below, enc, timeout_ms)
        if r_below != "sat":
            break
        ok, e2, c2 = enc.check(cand)
        if not ok or not c2 < c_star:
            raise RuntimeError("z3 returned an assignment that fails the exact check")
        if exhaustive:
            expl.append("z3 found an assignment cheaper than the exhaustive search's (a search bug); z3's is used")
            exhaustive = False
        formats, err, c_star = cand, e2, c2
        improvements += 1
    solve_s = time.perf_counter() - t0
    if r_below == "unsat":
        status = "optimal"
    elif exhaustive:
        status = "optimal-search"
        expl.append(f"z3 did not prove optimality within {timeout_ms / 1000:g} s ({r_below}); the exact search was exhaustive")
    else:
        status = "feasible"
        expl.append(f"optimality not established: z3 {r_below} within {timeout_ms / 1000:g} s, exact search stopped at {search_seconds:g} s")
    k = (c_star * enc.cost_scale).numerator
    fix = [named(f"(= {sym('f:' + l + ':' + formats[l])} 1)", f"model:{l}") for l in enc.layers]
    at = _plain(enc.script("attained", f"this assignment is admissible, within the budget, and costs <= {float(c_star):.9g}",
                           fix + [named(f"(<= cost {k})", "cost")]))
    below = _plain(enc.script("optimality", f"no admissible assignment within the budget costs less than {float(c_star):.9g}",
                              [named(f"(<= cost {k - 1})", "cost")]))
    t1 = time.perf_counter()
    r_at, _ = _solve(at, enc, timeout_ms)
    proof_s = time.perf_counter() - t1
    if r_at != "sat":  # the exact check passed, so z3 must agree
        raise RuntimeError(f"z3 answered {r_at} on the attained query of an exactly checked assignment")
    qs = [SmtQuery("attained", at, r_at, proof_s, f"cost <= {float(c_star):.9g} is attained"),
          SmtQuery("optimality", below, r_below, solve_s, f"nothing cheaper than {float(c_star):.9g}")]
    return OptResult(status, formats, c_star, err, budget, queries=qs, solve_seconds=solve_s, proof_seconds=proof_s,
                     encoding=enc, explanation=expl, search_seconds=search_s, improvements=improvements)


def _solve(text: str, enc: Encoding, timeout_ms: int) -> tuple[str, dict[str, str] | None]:
    """One fresh z3 check of a script: the result and, when sat, the assignment."""
    import z3

    s = z3.Solver()
    s.set(timeout=timeout_ms)
    s.from_string(text)
    r = s.check()
    return str(r), (_z3_vars(enc, s.model(), z3) if r == z3.sat else None)


def optimize_assignment(plans: dict[str, LayerPlan], budget: float, timeout_ms: int = 60_000) -> tuple[str, dict[str, str] | None, Fraction | None, float]:
    """``z3.Optimize`` (minimize cost) on the same encoding, for comparison: (result,
    formats, cost, seconds)."""
    import z3

    enc = encode(plans, budget)
    t0 = time.perf_counter()
    opt = z3.Optimize()
    opt.set(timeout=timeout_ms)
    opt.from_string(_plain(enc.script("optimize", "minimize cost")).replace("(check-sat)\n(exit)\n", ""))
    opt.minimize(z3.Int("cost"))
    r = opt.check()
    dt = time.perf_counter() - t0
    if r != z3.sat:
        return str(r), None, None, dt
    fm = _z3_vars(enc, opt.model(), z3)
    ok, _, c = enc.check(fm)
    return ("sat" if ok else "bad"), fm, c, dt


class Z3Allocator:
    """A solver for :func:`certifier.allocate.certify_assignment` that keeps the result (and
    the SMT-LIB2 queries) of every call; ``last`` is the one the certificate rests on."""

    def __init__(self, timeout_ms: int = 60_000) -> None:
        self.timeout_ms = timeout_ms
        self.results: list[OptResult] = []

    @property
    def last(self) -> OptResult | None:
        return self.results[-1] if self.results else None

    def __call__(self, plans: dict[str, LayerPlan], budget: float) -> dict[str, str] | None:
        res = optimal_assignment(plans, budget, self.timeout_ms)
        self.results.append(res)
        return dict(res.formats) if res.formats is not None else None

