"""``certify apply``: run a model under a certified mixed-precision config (issue 5).

Checks that the config fits the model (module paths, dtypes, model/weights hashes, and the
certificate it came from), recomputes the certified bound of its assignment with the sound
error pass, optionally validates it by running the model under ``apply_precision`` against
float64, and can emit onnxruntime float16-converter block lists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from certifier.cli import _box, _guard, _Progress, app, fmt_num, out_console
from certifier.errors import InputError, SpecError


@app.command("apply", help="Check, re-certify and optionally validate a mixed-precision config (amp.json) on MODEL.py.")
def apply_cmd(
    model: Annotated[Path, typer.Argument(help="model file")],
    config: Annotated[Path, typer.Option("--config", help="amp.json written by certify --amp-config")],
    certificate: Annotated[Optional[Path], typer.Option(help="the certificate the config came from (its hash must match)")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="state-dict checkpoint")] = None,
    validate: Annotated[int, typer.Option(help="random inputs for validation (plus --adv-steps adversarial)")] = 0,
    adv_steps: Annotated[int, typer.Option(help="adversarial search steps; above 40, a model with float inputs spends most of them on a grid walk that lines up the roundings inside it, about 2 ms a step on the examples in PyTorch's formats, 10-25 ms emulated")] = 30,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    onnx: Annotated[Optional[Path], typer.Option(help="an ONNX export of the model: emit onnxruntime block lists")] = None,
    ort_out: Annotated[Optional[Path], typer.Option("--ort-out", help="where to write the onnxruntime block lists (JSON)")] = None,
) -> None:
    _guard(_apply, model, config, certificate, weights, validate, adv_steps, seed, onnx, ort_out)


def _apply(model, config, certificate, weights, validate, adv_steps, seed, onnx, ort_out):
    from certifier import certificate as C
    from certifier.adjoint import certified_errors
    from certifier.amp import apply_precision, check_config, load_config, onnx_nodes, ort_block_lists, run_dtype
    from certifier.capture import ROOT_LAYER
    from certifier.loader import load_model
    from certifier.pipeline import analyse, weights_sha256
    from certifier.validate import observe

    if validate < 0 or adv_steps < 0:
        raise SpecError("--validate and --adv-steps must be >= 0")
    cfg = load_config(config)
    cert = C.load_certificate(certificate) if certificate else None
    domain = None
    if cert is not None:
        domain = [tuple(i["domain"]) for i in cert["spec"]["inputs"] if i.get("kind") == "box"] or None
    loaded = load_model(model, domain=domain, weights=str(weights) if weights else None)
    problems = check_config(cfg, loaded.module, cert)
    m = cfg.get("model", {})
    if m.get("source_sha256") and m["source_sha256"] != loaded.source_sha256:
        problems.append("the model source differs from the one the config was certified for (source_sha256 mismatch)")
    if m.get("weights_sha256") and m["weights_sha256"] != weights_sha256(loaded.module):
        problems.append("the weights differ from the ones the config was certified for (weights_sha256 mismatch)")
    if problems:
        raise InputError("the config does not match this model:\n  - " + "\n  - ".join(problems))
    progress = _Progress(enabled=True)
    try:
        cap, ba, _ = analyse(loaded, progress)
        fm = {(ROOT_LAYER if p == "" else p): v["dtype"] for p, v in cfg["modules"].items()}
        # A listed module that owns no operation of the graph (a parent module, a Flatten of
        # a 2-d input) would still cast under apply_precision: a rounding nothing analysed.
        stray = [p for p in fm if p not in ba.layers]
        if stray:
            raise InputError(
                "the config does not match this model:\n  - "
                + "\n  - ".join(f"module {p!r} owns no operation of the analysed graph: apply_precision would add a cast there that was never certified" for p in stray),
                "list only the layers of the certificate (certify --amp-config writes exactly those)",
            )
        missing = [L for L in ba.layers if L not in fm]
        for L in missing:
            fm[L] = cfg.get("default", "fp32")
        res = certified_errors(ba, [fm], keep_nodes=False)
        bound = res.bound[0]
        rows = [("recomputed certified bound", fmt_num(bound)), ("bound in the config", fmt_num(cfg.get("bound"))), ("eps", fmt_num(cfg.get("eps")))]
        code = 0
        same = cfg.get("bound") is not None and math.isfinite(bound) and abs(bound - float(cfg["bound"])) <= 1e-12 * max(1.0, abs(bound))
        rows.append(("reproduced", "yes" if same else "NO"))
        if not same:
            code = 1
        if validate:
            mod = apply_precision(loaded.module, {p: v["dtype"] for p, v in cfg["modules"].items()})
            first = next((fm.get(info.layer) for info in ba.nodes.values() if info.kind == "call" and any(ba.nodes[p].kind == "input" for p in info.producers.values())), None)
            ob = observe(loaded, mod, None, validate, adv_steps, seed, on_step=lambda k, t: progress("validate", k, t), align_dtype=run_dtype(first) if first in ("bf16", "fp16", "fp32") else None)
            rows += [("observed max error", fmt_num(ob.max_error)), ("bound / observed", fmt_num(bound / ob.max_error) if ob.max_error > 0 else "-"), ("inputs run", str(ob.evaluations))]
            if ob.max_error > bound:
                rows.append(("SOUNDNESS", "VIOLATED: observed error above the certified bound"))
                code = 1
    finally:
        progress.close()
    if onnx is not None:
        lists = ort_block_lists(cfg, onnx_nodes(onnx))
        text = json.dumps(lists, indent=2, sort_keys=True) + "\n"
        if ort_out:
            C.write_atomic(ort_out, text)
        else:
            out_console.print(text, markup=False)
    t = Table(title=f"config {config.name} on {loaded.name}", box=_box(), title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for a, b in rows:
        t.add_row(a, b)
    out_console.print(t)
    raise typer.Exit(code)
