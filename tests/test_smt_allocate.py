"""The optimal assignment (smt.allocate): exactness of the encoding, optimality against brute
force, refusals, unsat cores, and the pipeline's --solver z3."""

import itertools
import math
import random
import time
from fractions import Fraction

import pytest

from certifier.allocate import LayerPlan, greedy_assignment, total_cost
from smt.allocate import encode, exact_budget, exact_search, optimal_assignment, _groups
from tests.smt_support import EXAMPLES

U = {"fp64": 2.0**-53, "fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-8, "fp16": 2.0**-11}
W = {"fp64": 32, "fp32": 16, "tf32": 2, "bf16": 1, "fp16": 1}


def plan(name, coeff, cost, refused=None):
    refused = refused or {}
    cands = [f for f in coeff if f not in refused and math.isfinite(coeff[f])]
    return LayerPlan(name, 0.0, dict(coeff), dict(cost), dict(refused), cands)


def random_plans(n, seed, refuse=0.15):
    rng = random.Random(seed)
    plans = {}
    for i in range(n):
        mm = rng.random() < 0.5
        fl = rng.choice([1e5, 2e6, 3e7])
        g = 10 ** rng.uniform(-1, 2)
        fm = ["fp64", "fp32"] + (["tf32"] if mm else []) + ["bf16", "fp16"]
        coeff = {f: g * U[f] * rng.uniform(50, 200) for f in fm}
        cost = {f: fl * W[f] + rng.choice([1e4, 1e5]) * (8 if f == "fp64" else 4 if f in ("fp32", "tf32") else 2) * 100 for f in fm}
        refused = {"fp16": "overflow: x > 65504 (fp16)"} if rng.random() < refuse else {}
        plans[f"l{i}"] = plan(f"l{i}", coeff, cost, refused)
    return plans


def brute_force(plans, budget):
    """Exact minimum cost by enumeration (exact rationals, via the encoding's exact integers,
    which test_integer_scaling_is_exact checks against Fraction)."""
    enc = encode(plans, budget)
    opts = [[(enc.err_int(c), enc.cost_int(c)) for c in enc.choices[n] if c.refusal is None] for n in enc.layers]
    best = None
    for combo in itertools.product(*opts):
        if sum(a for a, _ in combo) <= enc.budget_int:
            c = sum(w for _, w in combo)
            best = c if best is None or c < best else best
    return None if best is None else Fraction(best, enc.cost_scale)


def test_exact_budget_never_exceeds_what_was_asked():
    assert exact_budget(1e-3) == Fraction(1, 1000)  # the float 1e-3 is slightly above 1/1000
    assert exact_budget(0.1) == Fraction(1, 10)
    assert exact_budget(0.5) == Fraction(1, 2)
    x = 0.30000000000000004
    assert exact_budget(x) <= Fraction(x) and exact_budget(x) <= Fraction(repr(x))


def test_integer_scaling_is_exact():
    plans = random_plans(6, 1)
    enc = encode(plans, 1e-2)
    for layer in enc.layers:
        for c in enc.choices[layer]:
            if c.refusal is None:
                assert Fraction(enc.err_int(c), enc.scale) == Fraction(plans[layer].coeff[c.fmt])
                assert Fraction(enc.cost_int(c), enc.cost_scale) == Fraction(plans[layer].cost[c.fmt])
    assert Fraction(enc.budget_int, enc.scale) <= exact_budget(1e-2) < Fraction(enc.budget_int + 1, enc.scale)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [3e-3, 3e-2, 0.3])
def test_optimal_matches_brute_force(seed, budget):
    plans = random_plans(5, seed)
    ref = brute_force(plans, budget)
    r = optimal_assignment(plans, budget)
    if ref is None:
        assert r.status == "infeasible" and r.core
        return
    assert r.status == "optimal", r.explanation
    assert r.cost == ref
    ok, err, cost = r.encoding.check(r.formats)
    assert ok and cost == ref and err <= exact_budget(budget)
    assert [q.kind for q in r.queries] == ["attained", "optimality"]
    assert [q.result for q in r.queries] == ["sat", "unsat"]
    g = greedy_assignment(plans, budget)
    if g is not None:
        assert Fraction(total_cost(plans, g)) >= ref


def test_optimal_beats_greedy_where_greedy_is_myopic():
    # greedy takes the best saving per unit of error first (layer a), which blocks the two
    # savings of b and c that together save more.
    plans = {
        "a": plan("a", {"fp32": 0.0, "fp16": 0.6}, {"fp32": 100.0, "fp16": 0.0}),
        "b": plan("b", {"fp32": 0.0, "fp16": 0.5}, {"fp32": 70.0, "fp16": 0.0}),
        "c": plan("c", {"fp32": 0.0, "fp16": 0.5}, {"fp32": 70.0, "fp16": 0.0}),
    }
    g = greedy_assignment(plans, 1.0)
    assert total_cost(plans, g) == 140.0
    r = optimal_assignment(plans, 1.0)
    assert r.status == "optimal" and r.cost == 100 and r.formats == {"a": "fp32", "b": "fp16", "c": "fp16"}


def test_refused_formats_are_never_chosen():
    plans = {
        "x": plan("x", {"fp32": 1e-6, "fp16": 1e-9}, {"fp32": 10.0, "fp16": 1.0}, {"fp16": "overflow: exp output up to 1.6e+05 > 65504 (fp16)"}),
        "y": plan("y", {"fp32": 1e-6, "bf16": 1e-4}, {"fp32": 10.0, "bf16": 1.0}, {"bf16": "hnf: needs >= 12 significand bits, bf16 has 8"}),
    }
    r = optimal_assignment(plans, 1.0)
    assert r.formats == {"x": "fp32", "y": "fp32"}
    assert "overflow:x:fp16" in r.queries[0].text and "hnf:y:bf16" in r.queries[0].text


def test_budget_boundary_is_exact():
    # in binary64, 1.0 + 2**-60 == 1.0 <= 1.0; exactly, the sum exceeds the budget
    plans = {"p": plan("p", {"fp16": 1.0}, {"fp16": 1.0}), "q": plan("q", {"fp16": 2.0**-60}, {"fp16": 1.0})}
    assert 1.0 + 2.0**-60 <= 1.0
    assert optimal_assignment(plans, 1.0).status == "infeasible"
    plans["q"] = plan("q", {"fp16": 0.5}, {"fp16": 1.0})
    assert optimal_assignment(plans, 1.5).status == "optimal"  # equality is admissible
    assert optimal_assignment(plans, 1.4999999999999998).status == "infeasible"


def test_infeasible_gives_a_minimal_core_naming_layers():
    plans = {
        "small": plan("small", {"bf16": 1e-5}, {"bf16": 1.0}),
        "big": plan("big", {"bf16": 2.0}, {"bf16": 1.0}),
        "ovf": plan("ovf", {"fp16": 1e-6, "bf16": 1e-5}, {"fp16": 1.0, "bf16": 1.0}),
    }
    r = optimal_assignment(plans, 1e-2)
    assert r.status == "infeasible"
    assert sorted(r.core) == ["budget", "choose:big"]
    assert r.core_layers == ["big"]
    assert any("big" in line and "2" in line for line in r.explanation)
    assert [q.result for q in r.queries] == ["unsat", "unsat"]
    # every format of one layer refused: the core names those refusals
    plans["ovf"] = plan("ovf", {"fp16": math.inf}, {"fp16": 1.0}, {"fp16": "overflow: x > 65504 (fp16)"})
    plans["big"] = plan("big", {"bf16": 1e-4}, {"bf16": 1.0})
    r = optimal_assignment(plans, 1e-2)
    assert r.status == "infeasible" and r.core_layers == ["ovf"]
    assert "overflow:ovf:fp16" in r.core or "budget" in r.core


@pytest.mark.parametrize("seed", range(4))
def test_exact_search_matches_brute_force(seed):
    plans = random_plans(6, 100 + seed, refuse=0.0)
    for budget in (1e-2, 1e-1, 1.0):
        ref = brute_force(plans, budget)
        enc = encode(plans, budget)
        found = exact_search(_groups(enc), enc.budget_int, 10.0)
        if ref is None:
            assert found is None
            continue
        cost, pick, finished = found
        assert finished and Fraction(cost, enc.cost_scale) == ref


def test_exact_search_is_fast_at_bert_scale():
    plans = random_plans(178, 7)
    for budget in (1e-2, 1.0, 10.0):
        enc = encode(plans, budget)
        t0 = time.perf_counter()
        cost, pick, finished = exact_search(_groups(enc), enc.budget_int, 30.0)
        assert finished and time.perf_counter() - t0 < 10.0
        g = greedy_assignment(plans, budget)
        assert Fraction(cost, enc.cost_scale) <= Fraction(total_cost(plans, g))


def test_run_with_z3_is_no_dearer_than_greedy_and_verified():
    from certifier.pipeline import Options, run_certify

    fm = ["fp64", "fp32", "tf32", "bf16", "fp16"]
    z = run_certify(EXAMPLES / "mlp.py", Options(eps=1e-2, formats=fm, solver="z3"))
    g = run_certify(EXAMPLES / "mlp.py", Options(eps=1e-2, formats=fm))
    assert z.verdict == "certified" and z.assignment.bound <= 1e-2
    assert z.assignment.cost <= g.assignment.cost
    opt = z.certificate["assignment"]["optimality"]
    assert opt["status"] == "optimal" and opt["cost"] == z.assignment.cost
    assert [q.kind for r in z.smt for q in r.queries][-2:] == ["attained", "optimality"]


@pytest.mark.heavy
def test_bert_base_a100_optimal_assignment_solves_under_10s():
    """BERT-base over the a100 profile: the z3 solve itself (optimality / infeasibility
    queries, core minimization included) takes under 10 s; the result is no dearer than the
    greedy one when both exist."""
    from certifier.loader import load_model
    from certifier.pipeline import analyse
    from certifier.rounding import run_errors
    from certifier.allocate import plan_layers
    from smt.hardware import get_profile

    fm = list(get_profile("nvidia-a100").formats)
    loaded = load_model(EXAMPLES / "bert_base.py")
    _, ba, _ = analyse(loaded)
    local = run_errors(ba, [{"*": f} for f in fm], local_only=True)
    for eps in (1e-2, 1e-1):
        plans = plan_layers(ba, eps, fm, 0.125, local)
        assert len(plans) > 100
        r = optimal_assignment(plans, eps)
        assert r.solve_seconds + r.proof_seconds < 10.0, (r.solve_seconds, r.proof_seconds)
        assert r.search_seconds < 10.0
        g = greedy_assignment(plans, eps)
        if r.status == "infeasible":
            assert g is None and r.core_layers
            assert set(r.core_layers) <= set(plans)
        else:
            assert r.status == "optimal"
            assert g is None or Fraction(total_cost(plans, g)) >= r.cost
