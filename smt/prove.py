"""``certify prove``: can this hardware reach eps? (DESIGN 1 question 2, 4.5; issue 4)

One of four verdicts, never blurred:

* ``certified``: the optimal assignment over the profile's formats (:mod:`smt.allocate`)
  has a verified sound bound <= eps;
* ``impossible``: a witness (:mod:`smt.witness`) that passed its exact check shows that no
  computation in the profile's formats reaches eps;
* ``hnf-obstruction``: no witness, but the HNF necessary condition with lower-bound
  quantities rules the profile out; conditional on the HNF theorem;
* ``uncertifiable``: our sufficient condition fails and nothing proves impossibility; the
  unsat core names the layers and constraints in conflict when the linear model is
  infeasible.

Every SMT query is kept as SMT-LIB2 text; :func:`attach_proofs` writes the files and lists
them (sha256, z3's result) in the certificate's ``proofs``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from certifier.allocate import Assignment, certify_assignment
from certifier.loader import LoadedModel
from certifier.pipeline import Options, build_certificate, check_eps, pinned_threads, plan_model
from certifier.runtime import DEFAULT_THREADS
from certifier.walker import BoundsAnalysis
from smt.allocate import OptResult, Z3Allocator
from smt.hardware import Profile, get_profile
from smt.smtlib import SmtQuery, proof_entry, write_proofs
from smt.witness import KINDS, Search, Witness, find_witness, hnf_obstruction

VERDICTS = ("certified", "impossible", "hnf-obstruction", "uncertifiable")

Progress = Callable[[str, float, float], None]


@dataclass
class ProveOptions:
    eps: float
    hardware: str
    profiles: Sequence[str | Path] = ()  # extra profile files
    hnf_c: float = 0.125
    domain: list[tuple[float, float]] | None = None
    weights: str | None = None
    seed: int = 0
    witness_seconds: float = 120.0
    witness_kinds: Sequence[str] = KINDS
    z3_timeout_ms: int = 60_000
    threads: int = DEFAULT_THREADS  # as `certify run`: bounds are bitwise reproducible for a fixed count


@dataclass
class ProveReport:
    verdict: str
    certificate: dict
    profile: Profile
    loaded: LoadedModel
    bounds: BoundsAnalysis
    assignment: Assignment
    opt: OptResult | None
    witness: Witness | None
    hnf: dict | None
    queries: list[SmtQuery] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)


def optimality_json(a: Assignment, opt: OptResult | None) -> dict | None:
    """What is known about the assignment's cost (certificate ``assignment.optimality``)."""
    if opt is None:
        return None
    same = opt.formats is not None and dict(opt.formats) == dict(a.formats)
    d = {
        "status": opt.status if same or (opt.status == "infeasible" and not a.certified) else "not applicable (a fallback assignment)",
        "budget": opt.budget,
        "cost": float(opt.cost) if opt.cost is not None else None,
        "notes": list(opt.explanation),
    }
    return d


def run_prove(model_path: str | Path, opts: ProveOptions, progress: Progress | None = None) -> ProveReport:
    """`certify prove`: the analysis at a fixed torch thread count (see pipeline.run_certify)."""
    with pinned_threads(opts.threads):
        return _run_prove(model_path, opts, progress)


def _run_prove(model_path: str | Path, opts: ProveOptions, progress: Progress | None = None) -> ProveReport:
    check_eps(opts.eps)
    p = progress or (lambda *a: None)
    profile = get_profile(opts.hardware, opts.profiles)
    fmts = list(profile.formats)
    pl = plan_model(
        model_path, opts.eps, fmts, uniform_formats=fmts, hnf_c=opts.hnf_c, domain=opts.domain, weights=opts.weights, progress=progress
    )
    loaded, cap, ba, uniform, plans, times = pl.loaded, pl.captured, pl.bounds, pl.uniform, pl.plans, pl.times
    t0 = time.perf_counter()
    p("z3", 0, 1)
    alloc = Z3Allocator(opts.z3_timeout_ms)
    assignment = certify_assignment(ba, opts.eps, plans, solver=alloc, method="z3-optimal", uniform=uniform)
    times["assign"] = time.perf_counter() - t0
    copts = Options(eps=opts.eps, formats=fmts, hnf_c=opts.hnf_c, domain=opts.domain, weights=opts.weights, hardware=profile.name, solver="z3", threads=opts.threads)
    cert = build_certificate(loaded, ba, uniform, plans, assignment, copts, fmts)
    opt = alloc.last
    queries = [q for r in alloc.results for q in r.queries]
    core = next((r for r in reversed(alloc.results) if r.status == "infeasible"), None)
    if assignment.certified:
        core = None  # the linear model's core says nothing once the sound pass certifies
    witness: Witness | None = None
    hnf: dict | None = None
    log: list[str] = []
    if assignment.certified:
        verdict = "certified"
    else:
        t0 = time.perf_counter()
        p("witnesses", 0, 1)
        s = Search(loaded, cap, ba, opts.eps, profile.storage_formats, seed=opts.seed, time_limit=opts.witness_seconds)
        witness = find_witness(s, opts.witness_kinds)
        if witness is None:
            hnf = hnf_obstruction(s, opts.hnf_c, fmts)
        log = list(s.log)
        times["witnesses"] = time.perf_counter() - t0
        verdict = "impossible" if witness is not None else ("hnf-obstruction" if hnf is not None else "uncertifiable")
    cert["verdict"] = verdict
    cert["hardware"] = profile.to_json()
    cert["assignment"]["optimality"] = optimality_json(assignment, opt)
    cert["witness"] = witness.to_json() if witness is not None else None
    cert["hnf_obstruction"] = hnf
    cert["unsat_core"] = core.unsat_core_json() if core is not None else None
    cert["prove"] = {
        "verdicts": list(VERDICTS),
        "witness_search": log,
        "statement": _statement(verdict, profile, opts.eps, witness, hnf, core),
    }
    cert["proofs"] = [proof_entry(q, None) for q in queries]
    return ProveReport(verdict, cert, profile, loaded, ba, assignment, opt, witness, hnf, queries, log, times)


def _statement(verdict: str, profile: Profile, eps: float, w: Witness | None, hnf: dict | None, core: OptResult | None) -> str:
    fm = ", ".join(profile.formats)
    if verdict == "certified":
        return f"the assignment over {profile.name} ({fm}) has a verified sound bound <= eps = {eps:g}"
    if verdict == "impossible":
        assert w is not None
        return f"impossible on {profile.name} ({fm}) at eps = {eps:g}: checked {w.kind} witness"
    if verdict == "hnf-obstruction":
        return f"hnf-obstruction (conditional on the HNF theorem) on {profile.name} ({fm}) at eps = {eps:g}"
    tail = f"; unsat core: {', '.join(core.core)}" if core is not None else ""
    return f"uncertifiable on {profile.name} ({fm}) at eps = {eps:g}: the sufficient condition fails and no witness of impossibility was found{tail}"


def proof_paths(out: str | Path | None, proof_dir: str | Path | None, stem: str) -> tuple[Path | None, Path | None]:
    """Where the SMT-LIB2 files go: ``proof_dir``, else ``<out stem>.proofs/`` beside the
    certificate, else nowhere (the certificate still lists each query's sha256)."""
    if proof_dir is not None:
        return Path(proof_dir), Path(out).parent if out is not None else None
    if out is not None:
        o = Path(out)
        return o.parent / f"{o.stem}.proofs", o.parent
    return None, None


def attach_proofs(cert: dict, queries: Sequence[SmtQuery], out: str | Path | None, proof_dir: str | Path | None, stem: str) -> list[dict]:
    """Write every query as SMT-LIB2 and record them in ``cert['proofs']``."""
    d, rel = proof_paths(out, proof_dir, stem)
    if d is None:
        entries = [proof_entry(q, None) for q in queries]
    else:
        entries = write_proofs(queries, d, stem, relative_to=rel)
    cert["proofs"] = entries
    return entries
