"""``certify hardware`` and ``certify prove`` (issue 4). Registered on :data:`certifier.cli.app`
when imported (``cli.main`` imports this module).

Exit status of ``prove``: 0 certified; 1 impossible, hnf-obstruction or uncertifiable; 2 bad
input (one message, no output file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from certifier.cli import _box, _guard, _Progress, app, err_console, fmt_num, out_console
from certifier.errors import SpecError


@app.command("hardware", help="List the hardware profiles (the formats each device offers).")
def hardware_cmd(
    profiles: Annotated[Optional[list[Path]], typer.Option("--profiles", help="extra profiles file (TOML), repeatable")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the profiles as JSON")] = False,
) -> None:
    _guard(_hardware, profiles or [], json_out)


def _hardware(profiles: list[Path], json_out: bool) -> None:
    import json

    from smt.hardware import ENV_VAR, load_profiles

    profs = load_profiles(profiles)
    if json_out:
        sys.stdout.write(json.dumps([p.to_json() for p in profs.values()], indent=2) + "\n")
        raise typer.Exit(0)
    t = Table(title="hardware profiles", box=_box(), title_justify="left")
    t.add_column("name", no_wrap=True)
    t.add_column("formats", no_wrap=True)
    t.add_column("description", overflow="fold")
    t.add_column("source", overflow="fold")
    for p in profs.values():
        t.add_row(p.name, ", ".join(p.formats), p.description, p.source)
    out_console.print(t)
    out_console.print(f"add profiles in a TOML file: --profiles FILE, or {ENV_VAR}=FILE[:FILE...]", markup=False)
    raise typer.Exit(0)


@app.command("prove", help="Can HARDWARE reach eps on MODEL.py? certified / impossible (checked witness) / hnf-obstruction / uncertifiable (unsat core).")
def prove_cmd(
    model: Annotated[Path, typer.Argument(help="model file (build_model()/model, example_inputs(), input_domain())")],
    hardware: Annotated[str, typer.Option(help="hardware profile name (certify hardware lists them)")],
    eps: Annotated[float, typer.Option(help="target max-abs output error against exact arithmetic")] = 1e-3,
    out: Annotated[Optional[Path], typer.Option(help="write the certificate JSON here (proofs go to <out>.proofs/ unless --proof-dir)")] = None,
    proof_dir: Annotated[Optional[Path], typer.Option(help="write the SMT-LIB2 queries here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the certificate JSON to stdout")] = False,
    domain: Annotated[Optional[list[str]], typer.Option(help="LO,HI box for float inputs (repeat per input)")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="state-dict checkpoint (torch.load weights_only=True)")] = None,
    profiles: Annotated[Optional[list[Path]], typer.Option("--profiles", help="extra profiles file (TOML), repeatable")] = None,
    hnf_c: Annotated[float, typer.Option("--hnf-c", help="constant c of the HNF bound")] = 0.125,
    seed: Annotated[int, typer.Option(help="random seed of the witness search")] = 0,
    witness_seconds: Annotated[float, typer.Option(help="time limit of the witness search")] = 120.0,
    z3_timeout: Annotated[float, typer.Option(help="time limit of each z3 query, seconds")] = 60.0,
    quiet: Annotated[bool, typer.Option(help="just the verdict line")] = False,
) -> None:
    _guard(_prove, model, hardware, eps, out, proof_dir, json_out, domain, weights, profiles or [], hnf_c, seed, witness_seconds, z3_timeout, quiet)


def _prove(model, hardware, eps, out, proof_dir, json_out, domain, weights, profiles, hnf_c, seed, witness_seconds, z3_timeout, quiet):
    import math

    from certifier import certificate as C
    from certifier.loader import parse_domain
    from certifier.pipeline import check_eps
    from smt.hardware import get_profile
    from smt.prove import ProveOptions, attach_proofs, run_prove

    check_eps(eps)
    if not (math.isfinite(hnf_c) and hnf_c > 0):
        raise SpecError(f"--hnf-c must be positive and finite, got {hnf_c}")
    if not (witness_seconds >= 0 and z3_timeout > 0):
        raise SpecError("--witness-seconds must be >= 0 and --z3-timeout > 0")
    get_profile(hardware, profiles)  # a bad name fails before the analysis
    doms = [parse_domain(d) for d in domain] if domain else None
    opts = ProveOptions(
        eps=eps, hardware=hardware, profiles=profiles, hnf_c=hnf_c, domain=doms, weights=str(weights) if weights else None,
        seed=seed, witness_seconds=witness_seconds, z3_timeout_ms=int(z3_timeout * 1000),
    )
    progress = _Progress(enabled=not quiet and not json_out)
    try:
        rep = run_prove(model, opts, progress=progress)
    finally:
        progress.close()
    cert = rep.certificate
    attach_proofs(cert, rep.queries, out, proof_dir, Path(model).stem)
    cert = C.finalize(cert)
    text = C.dumps(cert)
    if out is not None:
        C.write_atomic(out, text)
    if json_out:
        sys.stdout.write(text)
    elif quiet:
        out_console.print(f"{cert['verdict']}: {cert['prove']['statement']}", markup=False)
    else:
        render_prove(cert, rep)
        if out is not None:
            out_console.print(f"certificate written to {out}", markup=False)
    raise typer.Exit(0 if cert["verdict"] == "certified" else 1)


def render_prove(cert: dict, rep) -> None:
    hw = cert["hardware"]
    a = cert["assignment"]
    out_console.print(f"hardware {hw['name']}: {', '.join(hw['formats'])}; eps {cert['spec']['eps']:g}", markup=False)
    if a["formats"]:
        counts: dict[str, int] = {}
        for f in a["formats"].values():
            counts[f] = counts.get(f, 0) + 1
        mix = ", ".join(f"{n} x {f}" for f, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        opt = a.get("optimality") or {}
        out_console.print(
            f"assignment ({a['method']}, {opt.get('status', '-')}): {mix}; certified bound {fmt_num(a['bound'])}, cost {fmt_num(a['cost'])}",
            markup=False,
        )
    if rep.opt is not None:
        out_console.print(
            f"  search {rep.opt.search_seconds:.2f}s, z3 {rep.opt.solve_seconds + rep.opt.proof_seconds:.2f}s", markup=False
        )
    w = cert.get("witness")
    if w:
        out_console.print(f"witness ({w['kind']}, checked in exact arithmetic): {w['statement']}", markup=False)
        xs = w["inputs"][0]["values"]
        out_console.print(f"  input: {xs[:8]}{' ...' if len(xs) > 8 else ''}", markup=False)
    core = cert.get("unsat_core")
    if core:
        out_console.print(f"unsat core (budget {core['budget']:g}): {', '.join(core['constraints'])}", markup=False)
        for line in core["explanation"]:
            out_console.print(f"  {line}", markup=False)
    h = cert.get("hnf_obstruction")
    if h:
        out_console.print(f"{h['label']}: {h['statement']}", markup=False)
    of_linear = cert["verdict"] == "certified" and "fallback" in a.get("method", "")
    for p in cert.get("proofs", []):
        tag = " of the linear model" if of_linear and p["kind"] != "optimality" else ""
        out_console.print(f"proof {p['kind']}{tag}: {p['result']} ({p['file'] or 'not written'}, sha256 {p['sha256'][:12]})", markup=False)
    v = cert["verdict"]
    style = {"certified": "bold green", "impossible": "bold red"}.get(v, "bold yellow")
    out_console.print(f"verdict: [{style}]{v}[/{style}]")
    if v == "hnf-obstruction":
        err_console.print("note: hnf-obstruction is conditional on the HNF theorem (DESIGN 4.2)", markup=False)
