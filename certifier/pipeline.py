"""The main job as a library call: load, capture, bound, analyse errors, assign, certify.

:func:`run_certify` never prints; it reports progress through a callback and returns a
:class:`Report` whose ``certificate`` is the JSON body of DESIGN 5.3.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from certifier import __version__
from certifier.adjoint import certified_errors
from certifier.allocate import Assignment, LayerPlan, certify_assignment, plan_layers
from certifier.capture import Captured, capture
from certifier.errors import SpecError
from certifier.formats import FORMAT_ORDER, FORMATS, FUNCTION_ULPS
from certifier.loader import LoadedModel, code_digest, load_model
from certifier.rounding import ErrorResult, run_errors
from certifier.runtime import DEFAULT_THREADS
from certifier.walker import BoundsAnalysis, analyze_bounds

SCHEMA_VERSION = "1.0"

Progress = Callable[[str, float, float], None]


@dataclass
class Options:
    eps: float = 1e-3
    formats: Sequence[str] = FORMAT_ORDER
    hnf_c: float = 0.125
    domain: list[tuple[float, float]] | None = None
    weights: str | None = None
    hardware: str | None = None
    solver: str = "greedy"  # greedy | z3
    #: torch CPU threads used by the analysis. Fixed (not the machine's core count) so that
    #: certificates are bitwise reproducible: BLAS results and parallel reductions depend on
    #: the thread count (the last bits of a bound may differ between 1 and 2 threads).
    #: 2 by default: the analysis is 1.5-2.5x faster than on one thread on the 2-core
    #: reference machine (benchmarks/speed.py --threads 1 / 2).
    threads: int = DEFAULT_THREADS


@dataclass
class Planned:
    """Everything up to the per-layer plans: what `certify run` and `certify prove` share."""

    loaded: LoadedModel
    captured: Captured
    bounds: BoundsAnalysis
    uniform: ErrorResult
    local: ErrorResult
    plans: dict[str, LayerPlan]
    times: dict[str, float]


@dataclass
class Report(Planned):
    """The main job's result: the plans, the certified assignment and the certificate."""

    assignment: Assignment = field(kw_only=True)
    certificate: dict = field(kw_only=True)
    options: Options = field(default_factory=Options)
    smt: list = field(default_factory=list)  # smt.allocate.OptResult per solver call (--solver z3)

    @property
    def verdict(self) -> str:
        return self.certificate["verdict"]


def check_eps(eps: float) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise SpecError(f"--eps must be a positive finite number, got {eps}")


def check_formats(formats: Sequence[str]) -> list[str]:
    out = []
    for f in formats:
        if f not in FORMATS:
            raise SpecError(f"unknown format {f!r}", f"known formats: {', '.join(FORMAT_ORDER)}")
        out.append(f)
    if not out:
        raise SpecError("no candidate formats")
    return sorted(set(out), key=FORMAT_ORDER.index)


def analyse(loaded: LoadedModel, progress: Progress | None = None) -> tuple[Captured, BoundsAnalysis, dict[str, float]]:
    """Capture and bound a loaded model."""
    times: dict[str, float] = {}
    p = progress or (lambda *a: None)
    p("export", 0, 1)
    cap = capture(loaded)
    times.update(cap.times)
    t0 = time.perf_counter()
    ba = analyze_bounds(loaded, cap, progress=lambda k, n: p("bounds", k, n))
    times["bounds"] = time.perf_counter() - t0
    return cap, ba, times


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run the analysis on exactly ``n`` torch threads (see Options.threads), then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def plan_model(
    model_path: str | Path,
    eps: float,
    formats: Sequence[str],
    *,
    uniform_formats: Sequence[str],
    hnf_c: float,
    domain: list[tuple[float, float]] | None,
    weights: str | None,
    progress: Progress | None = None,
) -> Planned:
    """Load, capture and bound the model, bound its rounding errors (``uniform_formats`` run
    uniformly, and every format of ``formats`` locally) and plan each layer (DESIGN 4.2-4.4)."""
    check_eps(eps)
    p = progress or (lambda *a: None)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    p("load", 0, 1)
    # NB: no separate forward pass: capture() runs one only when export fails, to tell
    # inputs that do not fit the model from a model that cannot be exported.
    loaded = load_model(model_path, domain=domain, weights=weights, check_forward=False)
    times["load"] = time.perf_counter() - t0
    cap, ba, t = analyse(loaded, progress)
    times.update(t)
    t0 = time.perf_counter()
    uniform = certified_errors(ba, [{"*": f} for f in uniform_formats], keep_nodes=False, progress=lambda k, n: p("errors", k, n))
    times["uniform_errors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = run_errors(ba, [{"*": f} for f in formats], local_only=True, progress=lambda k, n: p("local errors", k, n))
    shares = {f: sh for f, sh in zip(uniform.configs, uniform.layer_share) if sh is not None}
    plans = plan_layers(ba, eps, list(formats), hnf_c, local, shares)
    times["local_errors"] = time.perf_counter() - t0
    return Planned(loaded, cap, ba, uniform, local, plans, times)


def run_certify(model_path: str | Path, opts: Options, progress: Progress | None = None) -> Report:
    with pinned_threads(opts.threads):
        return _run_certify(model_path, opts, progress)


def _run_certify(model_path: str | Path, opts: Options, progress: Progress | None = None) -> Report:
    check_eps(opts.eps)
    formats = check_formats(opts.formats)
    p = progress or (lambda *a: None)
    pl = plan_model(
        model_path, opts.eps, formats, uniform_formats=FORMAT_ORDER, hnf_c=opts.hnf_c, domain=opts.domain, weights=opts.weights, progress=progress
    )
    loaded, ba, plans, times = pl.loaded, pl.bounds, pl.plans, pl.times
    t0 = time.perf_counter()
    p("assign", 0, 1)
    smt_results: list = []
    if opts.solver == "z3":
        from smt.allocate import Z3Allocator
        from smt.prove import optimality_json

        allocator = Z3Allocator()
        assignment = certify_assignment(ba, opts.eps, plans, solver=allocator, method="z3-optimal", uniform=pl.uniform)
        smt_results = allocator.results
    else:
        assignment = certify_assignment(ba, opts.eps, plans, uniform=pl.uniform)
    times["assign"] = time.perf_counter() - t0
    cert = build_certificate(loaded, ba, pl.uniform, plans, assignment, opts, formats)
    if smt_results:
        cert["assignment"]["optimality"] = optimality_json(assignment, smt_results[-1])
    return Report(**vars(pl), assignment=assignment, certificate=cert, options=opts, smt=smt_results)


# ---------------------------------------------------------------------------- certificate
def fnum(x: float | None) -> float | None:
    """JSON number: infinities and NaN become null (unbounded)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def weights_sha256(module: torch.nn.Module) -> str:
    """Canonical hash of the state dict: tensors in sorted name order, dtype and shape included."""
    import hashlib

    h = hashlib.sha256()
    sd = module.state_dict()
    for name in sorted(sd):
        t = sd[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(b"\0" + str(t.dtype).encode() + b"\0" + ",".join(map(str, t.shape)).encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def arithmetic_model() -> dict:
    return {
        "rounding": "round-to-nearest-even",
        "storage": "each node stores its output in its layer's format; tensors entering a layer in a format it does not contain are rounded on entry",
        "accumulation": {
            "fp64": "fp64",
            "fp32": "fp32",
            "tf32": "fp32 (matmul/conv multiplicands rounded or truncated to 11 significand bits: relative error 2^-10)",
            "bf16": "fp32",
            "fp16": "fp32",
            "fp8_e4m3": "fp32",
            "fp8_e5m2": "fp32",
        },
        "dot_products": "gamma_n(u_acc) |A||B| for any summation order (Higham Thm 3.5), products that underflow n*eta_acc/2",
        "function_ulps": dict(sorted(FUNCTION_ULPS.items())),
        "function_evaluation": "elementwise functions evaluated in the accumulation format, then rounded to the storage format",
        "underflow": "gradual: every rounding adds eta/2 (half the subnormal spacing)",
        "assumptions": [
            "GPU runs must keep low-precision reductions in fp32: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False and allow_bf16_reduced_precision_reduction = False",
            "addmm/baddbmm form beta*C + alpha*A@B in the accumulator and round once (cpublas/oneDNN on CPU, cuBLAS on GPU)",
            "weights and biases are cast to a layer's format by round-to-nearest-even (as Tensor.to does); where a bound's pass is 'adjoint', the exactly rounded weights are used (certifier.adjoint)",
        ],
        "bound_passes": "forward: error magnitudes through |W| (certifier.rounding); adjoint: signed linear maps and relu/max-pool slopes from the outputs back (certifier.adjoint); each bound is the smaller of the two",
    }


def build_certificate(
    loaded: LoadedModel,
    ba: BoundsAnalysis,
    uniform: ErrorResult,
    plans: dict[str, LayerPlan],
    a: Assignment,
    opts: Options,
    formats: Sequence[str],
) -> dict:
    eps = float(opts.eps)
    layers = []
    contrib = {}
    for name, L in ba.layers.items():
        f = a.formats.get(name)
        pl = plans.get(name)
        c = pl.coeff.get(f, None) if (pl and f) else None
        contrib[name] = c
        layers.append(
            {
                "name": name,
                "module": L.module_type,
                "ops": L.ops or ["view"],
                "range": [fnum(L.range[0]), fnum(L.range[1])],
                "lipschitz": fnum(L.lipschitz),
                "curvature": fnum(L.curvature),
                "diameter": fnum(L.diameter),
                "gain": fnum(L.gain),
                "hnf_bits": fnum(pl.hnf_bits) if pl else None,
                "format": f,
                "error_share": fnum(c / eps) if c is not None else None,
                "refused": dict(sorted(pl.refused.items())) if pl else {},
            }
        )
    uni = {}
    for f, b, ov, m in zip(uniform.configs, uniform.bound, uniform.overflow, uniform.method):
        uni[f] = {
            "bound": fnum(b),
            "overflow": ov.reason() if ov else None,
            "certified": bool(math.isfinite(b) and b <= eps),
            "pass": m,
        }
    unsupported = [
        {"op": u["op"], "node": u["node"], "module": u["module"], "reason": u["reason"]} for u in ba.unsupported
    ]
    verdict = "certified" if a.certified else "uncertifiable"
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "certify", "version": __version__},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__.split("+")[0],
        },
        "model": {
            "name": loaded.name,
            "file": loaded.path.name,
            "source_sha256": loaded.source_sha256,
            "code": code_digest(loaded.path),
            "weights_sha256": weights_sha256(loaded.module),
            "weights_file": loaded.weights_path.name if loaded.weights_path else None,
        },
        "spec": {
            "eps": eps,
            "error_metric": "max_abs",
            "reference": "exact real arithmetic on the model's parameters",
            "inputs": [s.to_json() for s in loaded.inputs],
            "candidate_formats": list(formats),
            "hardware": opts.hardware,
            "threads": int(opts.threads),
        },
        "arithmetic": arithmetic_model(),
        "hnf": {
            "c": opts.hnf_c,
            "statement": "p >= log2(c * kappa * D^2 * G / eps) per layer, used only as a floor on the format (DESIGN 4.2)",
        },
        "layers": layers,
        "uniform": uni,
        "assignment": {
            "formats": dict(a.formats),
            "bound": fnum(a.bound),
            "bound_pass": a.verification.method[0] if a.verification is not None and a.verification.method else None,
            "linear_bound": fnum(a.linear_bound),
            "certified": bool(a.certified),
            "method": a.method,
            "cost": fnum(a.cost),
            "cost_all_fp32": fnum(sum(p.cost.get("fp32", 0.0) for p in plans.values())),
            "notes": a.notes,
        },
        "output_range": [fnum(ba.output_range()[0]), fnum(ba.output_range()[1])],
        "unsupported_ops": unsupported,
        "verdict": verdict,
    }
