"""``--validate``: run the certified assignment (and the uniform formats with a finite bound)
against float64 and compare the observed error with the certified bound."""

from __future__ import annotations

import math

import torch

from certifier.amp import apply_precision, run_dtype
from certifier.capture import ROOT_LAYER
from certifier.formats import FORMAT_ORDER, FORMATS
from certifier.validate import cast_model, observe, runnable


def input_format(report) -> str | None:
    """The format the first consumer of the model's first float input runs in."""
    ba = report.bounds
    fm = report.assignment.formats
    for name, info in ba.nodes.items():
        if info.kind != "call":
            continue
        for prod in info.producers.values():
            if ba.nodes[prod].kind == "input" and ba.nodes[prod].is_float:
                return fm.get(info.layer)
    return None


def validate_assignment(report, n: int, adv_steps: int, seed: int, progress=None) -> dict:
    loaded = report.loaded
    cert = report.certificate
    runs = []
    p = progress or (lambda *a: None)
    a = report.assignment
    if a.formats and all(f in ("fp64", "fp32", "tf32", "bf16", "fp16") for f in a.formats.values()):
        cfg = {("" if k == ROOT_LAYER else k): v for k, v in a.formats.items()}
        model = apply_precision(loaded.module, cfg)
        fin = input_format(report)
        ob = observe(
            loaded, model, None, n, adv_steps, seed,
            on_step=lambda k, t: p("validate", k, t),
            align_dtype=run_dtype(fin) if fin else None,
        )
        runs.append(_row("assignment", ob, a.bound))
    elif a.formats:
        runs.append({"name": "assignment", "observed": None, "bound": a.bound, "ratio": None, "evaluations": 0, "note": "uses fp8: not executable on CPU"})
    for f in FORMAT_ORDER:
        b = cert["uniform"][f]["bound"]
        if b is None or not runnable(f) or f == "fp64":
            continue
        ob = observe(loaded, cast_model(loaded.module, f), FORMATS[f].torch_dtype, n, adv_steps, seed, on_step=lambda k, t: p(f"validate {f}", k, t))
        runs.append(_row(f"uniform {f}", ob, b))
    sound = all(r["observed"] is None or r["bound"] is None or r["observed"] <= r["bound"] for r in runs)
    return {"n_random": n, "adversarial_steps": adv_steps, "seed": seed, "runs": runs, "sound": sound}


def _row(name: str, ob, bound: float | None) -> dict:
    b = None if bound is None or not math.isfinite(bound) else float(bound)
    ratio = (b / ob.max_error) if (b is not None and ob.max_error > 0) else None
    return {
        "name": name,
        "observed": float(ob.max_error),
        "observed_random": float(ob.random_max),
        "bound": b,
        "ratio": ratio,
        "evaluations": ob.evaluations,
    }


__all__ = ["validate_assignment", "torch"]
