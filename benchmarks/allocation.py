"""Greedy vs optimal (smt.allocate) per example: cost, verified bound, solve times.

    python benchmarks/allocation.py [--heavy] [--profile nvidia-a100] [--eps 1e-3,1e-2,1e-1]

For each example and eps: the greedy method (certifier.allocate) and the optimal one
(exact Pareto search + z3 proof), both verified by the full sound pass; the z3 time is the
solver's own (optimality and attained queries), and z3.Optimize on the same encoding is
timed for comparison (time limit 30 s). A synthetic 178-layer instance shows BERT-scale
solve times. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certifier.allocate import LayerPlan, certify_assignment, greedy_assignment, plan_layers, total_cost  # noqa: E402
from certifier.loader import load_model  # noqa: E402
from certifier.pipeline import analyse  # noqa: E402
from certifier.rounding import run_errors  # noqa: E402
from smt.allocate import Z3Allocator, optimal_assignment, optimize_assignment  # noqa: E402
from smt.hardware import get_profile  # noqa: E402

LIGHT = ["mlp.py", "cnn.py", "exp_range.py", "naive_softmax.py", "kelvin_head.py", "rational_head.py"]
HEAVY = ["resnet50.py", "bert_base.py", "gpt2_small.py"]


def row(name, eps, plans, ba):
    g = certify_assignment(ba, eps, plans)
    alloc = Z3Allocator()
    z = certify_assignment(ba, eps, plans, solver=alloc, method="z3-optimal")
    last = alloc.last
    o_res, _, o_cost, o_s = optimize_assignment(plans, eps, timeout_ms=30_000) if len(plans) <= 40 else ("skipped", None, None, 0.0)
    return (
        f"| {name} | {len(plans)} | {eps:g} | {_c(g)} | {_c(z)} | {last.status if last else '-'} | "
        f"{last.search_seconds if last else 0:.3f} | {(last.solve_seconds + last.proof_seconds) if last else 0:.3f} | "
        f"{o_res} {o_s:.2f}s{'' if o_cost is None else f' ({float(o_cost):.4g})'} |"
    )


def _c(a):
    if not a.formats or not a.certified:
        return f"not certified ({a.bound:.3g})" if a.formats else "none"
    return f"{a.cost:.4g} (bound {a.bound:.2g})"


def synthetic(n, seed):
    U = {"fp64": 2.0**-53, "fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-8, "fp16": 2.0**-11}
    W = {"fp64": 32, "fp32": 16, "tf32": 2, "bf16": 1, "fp16": 1}
    rng = random.Random(seed)
    plans = {}
    for i in range(n):
        mm = rng.random() < 0.45
        fl = rng.choice([1.2e8, 4.7e8, 2e5, 1e6]) if mm else rng.choice([1e5, 4e5, 2e6])
        el = rng.choice([1e5, 4e5, 1e6])
        g = 10 ** rng.uniform(-1, 2)
        fm = ["fp64", "fp32"] + (["tf32"] if mm else []) + ["bf16", "fp16"]
        coeff = {f: g * U[f] * rng.uniform(50, 200) for f in fm}
        cost = {f: fl * W[f] + el * (8 if f == "fp64" else 4 if f in ("fp32", "tf32") else 2) * 100 for f in fm}
        refused = {"fp16": "overflow: synthetic"} if rng.random() < 0.1 else {}
        plans[f"layer{i}"] = LayerPlan(f"layer{i}", 0.0, coeff, cost, refused, [f for f in fm if f not in refused])
    return plans


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heavy", action="store_true")
    ap.add_argument("--profile", default="nvidia-a100")
    ap.add_argument("--eps", default="1e-3,1e-2,1e-1")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    fmts = list(get_profile(args.profile).formats)
    epss = [float(e) for e in args.eps.split(",")]
    names = [n for n in LIGHT + (HEAVY if args.heavy else []) if (ROOT / "examples" / n).exists()]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print(f"profile {args.profile}: {', '.join(fmts)}\n")
    print("| example | layers | eps | greedy cost | optimal cost | status | search s | z3 s | z3.Optimize |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        t0 = time.perf_counter()
        loaded = load_model(ROOT / "examples" / n)
        _, ba, _ = analyse(loaded)
        for eps in epss:
            local = run_errors(ba, [{"*": f} for f in fmts], local_only=True)
            plans = plan_layers(ba, eps, fmts, 0.125, local)
            print(row(n, eps, plans, ba), flush=True)
        print(f"<!-- {n}: {time.perf_counter() - t0:.1f}s -->", flush=True)
    for seed in (0, 1):
        plans = synthetic(178, seed)
        for eps in (1e-2, 1.0, 10.0):
            t0 = time.perf_counter()
            r = optimal_assignment(plans, eps, timeout_ms=30_000)
            g = greedy_assignment(plans, eps)
            print(
                f"| synthetic-178 (seed {seed}) | 178 | {eps:g} | {total_cost(plans, g):.4g} | {float(r.cost):.4g} | {r.status} | "
                f"{r.search_seconds:.3f} | {r.solve_seconds + r.proof_seconds:.3f} | - |",
                flush=True,
            )


if __name__ == "__main__":
    main()
