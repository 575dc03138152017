"""``--validate``: run the certified assignment (and the uniform formats with a finite bound)
against float64 and compare the observed error with the certified bound. fp64/fp32/bf16/fp16
run on PyTorch's kernels; fp8 and tf32 (and any assignment using them) are emulated op by op
(certifier.emulate), and their rows say so."""

from __future__ import annotations

import math

import torch

from certifier.amp import apply_precision, run_dtype
from certifier.capture import ROOT_LAYER
from certifier.emulate import Emulated
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
    if a.formats:
        cfg = {("" if k == ROOT_LAYER else k): v for k, v in a.formats.items()}
        fin = input_format(report)
        if all(f in ("fp64", "fp32", "bf16", "fp16") for f in a.formats.values()):
            # PyTorch's own kernels, as a user runs the config (apply_precision).
            model, align, emulated = apply_precision(loaded.module, cfg), (run_dtype(fin) if fin else None), False
        else:
            # fp8 has no general kernels and tf32 is a kernel mode: emulated op by op.
            model, align, emulated = Emulated(loaded.module, cfg), (FORMATS[fin].storage.name if fin else None), True
        ob = observe(loaded, model, None, n, adv_steps, seed, on_step=lambda k, t: p("validate", k, t), align_dtype=align)
        runs.append(_row("assignment", ob, a.bound, emulated))
    for f in FORMAT_ORDER:
        b = cert["uniform"][f]["bound"]
        if b is None or f == "fp64":
            continue
        if runnable(f):
            ob = observe(loaded, cast_model(loaded.module, f), FORMATS[f].torch_dtype, n, adv_steps, seed, on_step=lambda k, t: p(f"validate {f}", k, t))
            runs.append(_row(f"uniform {f}", ob, b))
        else:
            emu = Emulated(loaded.module, {"*": f})
            ob = observe(loaded, emu, None, n, adv_steps, seed, on_step=lambda k, t: p(f"validate {f}", k, t), align_dtype=FORMATS[f].storage.name)
            runs.append(_row(f"uniform {f}", ob, b, emulated=True))
    sound = all(r["observed"] is None or r["bound"] is None or r["observed"] <= r["bound"] for r in runs)
    return {"n_random": n, "adversarial_steps": adv_steps, "seed": seed, "runs": runs, "sound": sound}


def _row(name: str, ob, bound: float | None, emulated: bool = False) -> dict:
    b = None if bound is None or not math.isfinite(bound) else float(bound)
    ratio = (b / ob.max_error) if (b is not None and ob.max_error > 0) else None
    row = {
        "name": name,
        "observed": float(ob.max_error),
        "observed_random": float(ob.random_max),
        "bound": b,
        "ratio": ratio,
        "evaluations": ob.evaluations,
    }
    if emulated:
        row["emulated"] = True
        row["note"] = "emulated (certifier.emulate: op by op, per the arithmetic model)"
    return row


__all__ = ["validate_assignment", "torch"]
