"""The certified per-layer format choice (DESIGN 4.2, 4.3; issue 3).

Linear model. With G_i the scalar gain from node i to the output (walker.compute_gains) and
Delta_i(f) its local rounding error when its layer runs in format f (rounding.run_errors with
``local_only``: exact inputs, casts charged at every layer boundary), the output error of an
assignment a is bounded to first order by ``sum_layers C_l(a_l)`` with
``C_l(f) = sum_{i in l} G_i Delta_i(f)``: a linear constraint over discrete choices.

Constraints per layer l and format f:

* range admissibility: no value of the layer overflows f (from the local pass);
* the HNF floor: ``p(f) >= hnf_bits(l) = ceil(log2(c kappa_l D_l^2 G_l / eps))`` (DESIGN 4.2:
  c = 1/8 by default, D the infinity-norm diameter of the layer's input box, eps/G_l the
  layer's share of the budget). It can only make a choice more conservative;
* tf32 is a candidate only for layers that contain a matmul or convolution.

Cost model (documented in the README): ``cost_l(f) = flops_l * COST_FLOP[f] +
elements_l * bytes(f) * COST_PER_BYTE`` where elements counts the layer's inputs, outputs and
parameters; FLOP weights follow tensor-core throughput ratios (formats.COST_FLOP).

Method (this module): a greedy descent from the most precise admissible assignment, lowering
the layer with the best cost saved per unit of error added while the linear bound stays
within the budget. The choice is then *verified* by a full sound pass (rounding.run_errors)
that includes every nonlinear remainder; if that bound exceeds eps the budget is shrunk and
the search repeated. The certified bound reported is always the verified one.
smt.allocate gives the optimal assignment under the same linear model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from certifier.formats import COST_FLOP, COST_PER_BYTE, FORMAT_ORDER, FORMATS
from certifier.interval import INF
from certifier.rounding import ErrorResult, run_errors
from certifier.walker import BoundsAnalysis, LayerSummary


@dataclass
class LayerPlan:
    name: str
    hnf_bits: float  # may be inf; 0 when the layer is affine
    coeff: dict[str, float]  # C_l(f): the layer's contribution in format f
    cost: dict[str, float]
    refused: dict[str, str]  # format -> reason it is inadmissible
    candidates: list[str]  # admissible formats, most precise first

    def admissible(self, f: str) -> bool:
        return f in self.candidates


@dataclass
class Assignment:
    formats: dict[str, str]
    linear_bound: float
    bound: float  # verified sound bound
    certified: bool
    method: str
    cost: float
    budget: float
    notes: list[str] = field(default_factory=list)
    verification: ErrorResult | None = None


def hnf_bits(layer: LayerSummary, eps: float, c: float) -> float:
    """HNF necessary bits p >= log2(c kappa D^2 / eps_share), eps_share = eps / G (DESIGN 4.2)."""
    k, D, G = layer.curvature, layer.diameter, layer.gain
    if k == 0 or D == 0 or G == 0:
        return 0.0
    if not (math.isfinite(k) and math.isfinite(D) and math.isfinite(G)):
        return INF
    v = c * k * D * D * G / eps
    if not math.isfinite(v):
        return INF
    return max(0.0, math.ceil(math.log2(v))) if v > 0 else 0.0


def layer_cost(layer: LayerSummary, f: str) -> float:
    return layer.flops * COST_FLOP[f] + layer.elements * (FORMATS[f].storage.bits / 8) * COST_PER_BYTE


def plan_layers(
    ba: BoundsAnalysis,
    eps: float,
    formats: Sequence[str],
    hnf_c: float,
    local: ErrorResult,
    shares: dict[str, dict[str, float]] | None = None,
) -> dict[str, LayerPlan]:
    """Per-layer coefficients, costs and admissibility from one local-only error pass.

    ``shares`` (format -> layer -> share): where the uniform run of a format was bounded by
    the adjoint pass (certifier.adjoint), each layer's share of that bound is its coefficient
    instead of ``sum G_i Delta_i`` (signed propagation instead of scalar gains; casts at
    boundaries between formats are then left to the verification pass)."""
    idx = {f: i for i, f in enumerate(local.configs)}
    plans: dict[str, LayerPlan] = {}
    over: dict[tuple[str, str], str] = {}
    for f, lst in zip(local.configs, local.overflows):
        for ov in lst:
            over.setdefault((ov.layer, f), ov.reason())
    for name, L in ba.layers.items():
        hb = hnf_bits(L, eps, hnf_c)
        coeff, cost, refused, cands = {}, {}, {}, []
        for f in formats:
            if f == "tf32" and not L.has_matmul:
                continue
            c = 0.0
            for n in L.nodes:
                d = local.node_max.get(n)
                if d is None:
                    continue
                g = ba.gains.get(n, 0.0)
                dv = d[idx[f]]
                if g == 0.0 or dv == 0.0:
                    continue
                c = c + g * dv if math.isfinite(g * dv) else INF
            sh = (shares or {}).get(f)
            if sh is not None and math.isfinite(c):
                c = min(c, sh.get(name, 0.0))
            coeff[f] = c
            cost[f] = layer_cost(L, f)
            if (name, f) in over:
                refused[f] = over[(name, f)]
            elif FORMATS[f].p < hb:
                refused[f] = f"hnf: needs >= {hb:g} significand bits, {f} has {FORMATS[f].p}"
            elif not math.isfinite(c):
                refused[f] = "unbounded: the error contribution has no finite bound"
            else:
                cands.append(f)
        cands.sort(key=lambda f: FORMAT_ORDER.index(f))
        plans[name] = LayerPlan(name, hb, coeff, cost, refused, cands)
    return plans


def greedy_assignment(plans: dict[str, LayerPlan], budget: float) -> dict[str, str] | None:
    """Cheapest-first greedy descent under the linear model; None if even the most precise
    admissible choice exceeds the budget."""
    cur: dict[str, str] = {}
    total = 0.0
    for name, p in plans.items():
        if not p.candidates:
            return None
        best = min(p.candidates, key=lambda f: (p.coeff[f], FORMAT_ORDER.index(f)))
        cur[name] = best
        total += p.coeff[best]
    if total > budget:
        return None
    while True:
        best_move = None
        best_score = 0.0
        for name, p in plans.items():
            f0 = cur[name]
            for f in p.candidates:
                saved = p.cost[f0] - p.cost[f]
                if saved <= 0:
                    continue
                added = p.coeff[f] - p.coeff[f0]
                if total + added > budget:
                    continue
                score = saved / max(added, 1e-300)
                if best_move is None or score > best_score:
                    best_move, best_score = (name, f, added), score
        if best_move is None:
            return cur
        name, f, added = best_move
        cur[name] = f
        total += added


def linear_bound(plans: dict[str, LayerPlan], formats: dict[str, str]) -> float:
    return sum(plans[n].coeff[f] for n, f in formats.items())


def total_cost(plans: dict[str, LayerPlan], formats: dict[str, str]) -> float:
    return sum(plans[n].cost[f] for n, f in formats.items())


def verify(ba: BoundsAnalysis, formats: dict[str, str]) -> ErrorResult:
    from certifier.adjoint import certified_errors

    return certified_errors(ba, [dict(formats)], keep_nodes=True)


def certify_assignment(
    ba: BoundsAnalysis,
    eps: float,
    plans: dict[str, LayerPlan],
    solver=greedy_assignment,
    method: str = "greedy",
    tries: int = 6,
    uniform: ErrorResult | None = None,
) -> Assignment:
    """Choose formats under the linear model and verify them with the sound pass.

    When that certifies nothing, ``uniform`` (the certified bounds of whole-model runs, one
    configuration ``{"*": f}`` each) gives a second route: the cheapest format whose uniform
    bound is within eps and that no layer refuses for a reason of its own (overflow, HNF
    bits), assigned to every layer and verified again. The linear model cannot represent a
    layer whose error reaches the outputs only through a jump (an argmax index, a
    comparison), nor one whose scalar gains are unbounded while the signed pass is not;
    the sound pass can. Last, the most precise admissible choice per layer."""
    budget = eps
    notes: list[str] = []
    last: Assignment | None = None
    for _ in range(tries):
        fm = solver(plans, budget)
        if fm is None:
            break
        res = verify(ba, fm)
        b = res.bound[0]
        a = Assignment(fm, linear_bound(plans, fm), b, b <= eps, method, total_cost(plans, fm), budget, list(notes), res)
        if b <= eps:
            return a
        last = a
        if not math.isfinite(b):
            ov = res.overflow[0]
            notes.append(f"verification failed at budget {budget:.3g}: {ov.reason() if ov else 'unbounded'}")
            budget *= 0.25
        else:
            notes.append(f"verified bound {b:.3g} > eps at linear budget {budget:.3g}; shrinking the budget")
            budget *= min(0.9, 0.9 * eps / b)
    uni = _uniform_fallback(ba, eps, plans, uniform, method, notes)
    if uni is not None:
        return uni
    # Fall back to the most precise admissible assignment.
    fm = {}
    for name, p in plans.items():
        if not p.candidates:
            fm = None
            break
        fm[name] = min(p.candidates, key=lambda f: (p.coeff[f], FORMAT_ORDER.index(f)))
    if fm is None:
        missing = [n for n, p in plans.items() if not p.candidates]
        notes.append(f"no admissible format for {len(missing)} layer(s), e.g. {missing[0]}: " + "; ".join(f"{f}: {r}" for f, r in list(plans[missing[0]].refused.items())[:3]))
        return last or Assignment({}, INF, INF, False, method, INF, budget, notes, None)
    res = verify(ba, fm)
    b = res.bound[0]
    a = Assignment(fm, linear_bound(plans, fm), b, b <= eps, method + " (most precise admissible)", total_cost(plans, fm), budget, notes, res)
    if not a.certified:
        notes.append(f"the most precise admissible assignment has verified bound {b:.3g} > eps {eps:.3g}")
    return a


def _uniform_fallback(ba: BoundsAnalysis, eps: float, plans: dict[str, LayerPlan], uniform: ErrorResult | None, method: str, notes: list[str]) -> Assignment | None:
    """The cheapest whole-model format that is certified within eps (see
    :func:`certify_assignment`), verified as a per-layer assignment; None if there is none."""
    if uniform is None or not plans:
        return None
    tried: list[tuple[float, str, dict[str, str]]] = []
    for f, b in zip(uniform.configs, uniform.bound):
        if not (math.isfinite(b) and b <= eps) or f not in FORMATS:
            continue
        fm: dict[str, str] = {}
        for name, p in plans.items():
            g = f if f in p.coeff else "fp32"  # tf32 only where a layer multiplies matrices
            if FORMATS[g].p < p.hnf_bits:
                break  # the HNF bits are a requirement of their own; overflow is verify's
            fm[name] = g
        else:
            tried.append((total_cost(plans, fm), f, fm))
    for cost, f, fm in sorted(tried, key=lambda t: (t[0], FORMAT_ORDER.index(t[1]))):
        res = verify(ba, fm)
        b = res.bound[0]
        if b <= eps:
            notes.append(f"the linear model certified no assignment; the whole model in {f} is certified by the sound pass ({b:.3g} <= eps)")
            return Assignment(fm, linear_bound(plans, fm), b, True, method + " (uniform fallback)", cost, eps, list(notes), res)
        notes.append(f"uniform {f} verified as a per-layer assignment: {b:.3g} > eps")
    return None
