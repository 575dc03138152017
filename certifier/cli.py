"""The ``certify`` command line (typer + rich). Commands are thin: they call the library and
render its results.

Exit status (DESIGN 5.2): 0 certified / verified, 1 not certified (the gate fails, or
``--validate`` observed an error above the bound), 2 bad input or usage (one message, no
traceback, no output file), 3 internal error (a bug: rerun with CERTIFY_DEBUG=1 for details).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from certifier import runtime
from certifier.errors import CertifyError, SpecError
from certifier.runtime import DEFAULT_THREADS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Sound precision certification for PyTorch models.\n\n"
    "certify MODEL.py --eps 1e-3 --out cert.json runs the main job; the commands below do the rest.",
)

COMMANDS = {"run", "hardware", "prove", "verify", "keygen", "apply"}


@app.callback()
def _root() -> None:
    """Sound precision certification for PyTorch models."""

out_console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def _box():
    return box.SIMPLE_HEAVY if out_console.is_terminal else box.ASCII2


def fmt_num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "unbounded"
    if isinstance(x, float) and not math.isfinite(x):
        return "unbounded"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def fmt_range(r) -> str:
    lo, hi = r
    return f"[{fmt_num(lo)}, {fmt_num(hi)}]"


class _Progress:
    """Progress on stderr: a live bar in a terminal, one line per stage otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage = None
        self.t0 = time.perf_counter()
        self.live = None
        if enabled and err_console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.live = Progress(TextColumn("{task.description:<14}"), BarColumn(), TimeElapsedColumn(), console=err_console, transient=True)
            self.live.start()
            self.task = None

    def __call__(self, stage: str, k: float, n: float) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            if stage != self.stage:
                if self.task is not None:
                    self.live.update(self.task, completed=1, total=1)
                self.task = self.live.add_task(stage, total=max(n, 1))
                self.stage = stage
            self.live.update(self.task, completed=k, total=max(n, 1))
        elif stage != self.stage:
            self.stage = stage
            err_console.print(f"[certify] {stage} ({time.perf_counter() - self.t0:.1f}s)", markup=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _fail(e: CertifyError) -> None:
    err_console.print(f"error: {e.message}", markup=False)
    if e.hint:
        err_console.print(f"  hint: {e.hint}", markup=False)
    raise typer.Exit(e.exit_code)


def _guard(fn, *args, **kwargs):
    """Run a command body: user errors -> exit 2, interrupts -> 130, bugs -> 3 (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except CertifyError as e:
        _fail(e)
    except KeyboardInterrupt:
        err_console.print("interrupted: no file was written")
        raise typer.Exit(130) from None
    except Exception as e:  # noqa: BLE001
        if os.environ.get("CERTIFY_DEBUG"):
            raise
        err_console.print(f"internal error: {type(e).__name__}: {e}", markup=False)
        err_console.print("  this is a bug in certify; rerun with CERTIFY_DEBUG=1 for the traceback")
        raise typer.Exit(3) from None


# ------------------------------------------------------------------------------ rendering
def render_layers(cert: dict) -> Table:
    t = Table(title=f"{cert['model']['name']}: per-layer bounds (eps = {cert['spec']['eps']:g})", box=_box(), title_justify="left")
    for col, just in [
        ("layer", "left"), ("ops", "left"), ("range", "right"), ("L", "right"), ("kappa", "right"),
        ("hnf_bits", "right"), ("format", "left"), ("share", "right"),
    ]:
        t.add_column(col, justify=just, no_wrap=col != "ops", overflow="fold")  # type: ignore[arg-type]
    for L in cert["layers"]:
        share = L.get("error_share")
        t.add_row(
            L["name"],
            ",".join(L["ops"])[:40],
            fmt_range(L["range"]),
            fmt_num(L["lipschitz"]),
            fmt_num(L["curvature"]),
            fmt_num(L.get("hnf_bits"), 4) if L.get("hnf_bits") is not None else "unbounded",
            L.get("format") or "-",
            f"{100 * share:.2g}%" if share is not None else "-",
        )
    return t


def render_uniform(cert: dict) -> Table:
    t = Table(title="whole model in one format", box=_box(), title_justify="left")
    t.add_column("format")
    t.add_column("certified bound", justify="right")
    t.add_column("<= eps", justify="center")
    t.add_column("note", overflow="fold")
    for f, u in cert["uniform"].items():
        failed = u["pass"] if "failed" in str(u.get("pass")) else ""
        t.add_row(f, fmt_num(u["bound"]), "yes" if u["certified"] else "no", "; ".join(x for x in (u["overflow"], failed) if x))
    return t


def render_summary(cert: dict) -> None:
    a = cert["assignment"]
    counts: dict[str, int] = {}
    for f in a["formats"].values():
        counts[f] = counts.get(f, 0) + 1
    mix = ", ".join(f"{n} x {f}" for f, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    out_console.print(f"assignment ({a['method']}): {mix or 'none'}")
    out_console.print(
        f"certified bound {fmt_num(a['bound'])} (linear model {fmt_num(a['linear_bound'])}), eps {cert['spec']['eps']:g}, "
        f"cost {fmt_num(a['cost'])} vs all-fp32 {fmt_num(a['cost_all_fp32'])}"
    )
    for n in a.get("notes", []):
        out_console.print(f"  note: {n}", markup=False)
    if cert["unsupported_ops"]:
        ops = sorted({u["op"] for u in cert["unsupported_ops"]})
        out_console.print(f"unsupported ops (fail closed, bounds downstream are unbounded): {', '.join(ops)}", markup=False)
    v = cert["verdict"]
    style = {"certified": "bold green", "impossible": "bold red"}.get(v, "bold yellow")
    out_console.print(f"verdict: [{style}]{v}[/{style}]")


# ------------------------------------------------------------------------------ commands
@app.command("run", help="Certify MODEL.py: bounds, per-layer formats, certificate (the default command).")
def run_cmd(
    model: Annotated[Path, typer.Argument(help="model file (build_model()/model, example_inputs(), input_domain())")],
    eps: Annotated[float, typer.Option(help="target max-abs output error against exact arithmetic")] = 1e-3,
    out: Annotated[Optional[Path], typer.Option(help="write the certificate JSON here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the certificate JSON to stdout instead of tables")] = False,
    domain: Annotated[Optional[list[str]], typer.Option(help="LO,HI box for float inputs (repeat per input)")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="state-dict checkpoint (torch.load weights_only=True)")] = None,
    formats: Annotated[str, typer.Option(help="candidate formats, comma-separated")] = "fp64,fp32,tf32,bf16,fp16,fp8_e4m3,fp8_e5m2",
    hardware: Annotated[Optional[str], typer.Option(help="restrict formats to a hardware profile (certify hardware)")] = None,
    hnf_c: Annotated[float, typer.Option("--hnf-c", help="constant c of the HNF bound p >= log2(c kappa D^2 / eps)")] = 0.125,
    solver: Annotated[str, typer.Option(help="assignment method: greedy or z3 (optimal)")] = "greedy",
    validate: Annotated[int, typer.Option(help="run the assignment and fp64 on N random inputs plus an adversarial search")] = 0,
    adv_steps: Annotated[int, typer.Option(help="adversarial search steps for --validate; above 40, a model with float inputs spends most of them on a grid walk that lines up the roundings inside it, about 2 ms a step on the examples in PyTorch's formats, 10-25 ms emulated")] = 30,
    seed: Annotated[int, typer.Option(help="random seed for --validate")] = 0,
    amp_config: Annotated[Optional[Path], typer.Option("--amp-config", help="also write the assignment as an AMP config")] = None,
    sign: Annotated[Optional[Path], typer.Option(help="sign the certificate with this Ed25519 private key (PEM)")] = None,
    proof_dir: Annotated[Optional[Path], typer.Option(help="write SMT-LIB2 proofs here (with --solver z3)")] = None,
    quiet: Annotated[bool, typer.Option(help="no tables, no progress: just the verdict line")] = False,
    rational: Annotated[Optional[str], typer.Option(help="N,D: declare a rational head (output indices of numerator and denominator); overrides rational_head() in the model file")] = None,
    scm_out: Annotated[Optional[Path], typer.Option("--scm-out", help="write the SCM thresholds of the rational head as JSON (ZeroProofML keys tau_infer, tau_train, use_gap)")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads for the analysis; certificates are bitwise reproducible for a fixed value (recorded in spec.threads)")] = DEFAULT_THREADS,
) -> None:
    _guard(
        _run, model, eps, out, json_out, domain, weights, formats, hardware, hnf_c, solver, validate, adv_steps, seed,
        amp_config, sign, proof_dir, quiet, rational, scm_out, threads,
    )


def _run(model, eps, out, json_out, domain, weights, formats, hardware, hnf_c, solver, validate, adv_steps, seed, amp_config, sign, proof_dir, quiet, rational=None, scm_out=None, threads=DEFAULT_THREADS):
    from certifier import certificate as C
    from certifier.loader import parse_domain
    from certifier.pipeline import Options, check_eps, run_certify

    check_eps(eps)
    if not (math.isfinite(hnf_c) and hnf_c > 0):
        raise SpecError(f"--hnf-c must be positive and finite, got {hnf_c}")
    if validate < 0 or adv_steps < 0:
        raise SpecError("--validate and --adv-steps must be >= 0")
    if solver not in ("greedy", "z3"):
        raise SpecError(f"--solver must be greedy or z3, got {solver!r}")
    if proof_dir is not None and solver != "z3":
        raise SpecError("--proof-dir needs --solver z3 (the greedy method asks no SMT queries)")
    doms = [parse_domain(d) for d in domain] if domain else None
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    if hardware:
        from smt.hardware import get_profile

        prof = get_profile(hardware)
        fmts = [f for f in prof.formats]
    if sign is not None and not sign.exists():
        raise SpecError(f"signing key not found: {sign}")
    from certifier import scm as S

    rational_idx = S.parse_rational(rational) if rational is not None else None
    if threads < 1:
        raise SpecError(f"--threads must be >= 1, got {threads}")
    opts = Options(eps=eps, formats=fmts, hnf_c=hnf_c, domain=doms, weights=str(weights) if weights else None, hardware=hardware, solver=solver, threads=threads)
    progress = _Progress(enabled=not quiet and not json_out)
    try:
        report = run_certify(model, opts, progress=progress)
        cert = report.certificate
        if validate:
            from certifier.checks import validate_assignment

            cert["validation"] = validate_assignment(report, validate, adv_steps, seed, progress=progress)
        section = S.scm_section(report.bounds, report.uniform, eps, rational_idx)
        if section is not None:
            cert["scm"] = section
        scm_doc = S.zeroproofml_export(cert) if scm_out is not None else None
    finally:
        progress.close()
    if getattr(report, "smt", None):
        from smt.prove import attach_proofs

        attach_proofs(cert, [q for r in report.smt for q in r.queries], out, proof_dir, Path(model).stem)
    cert = C.finalize(cert)
    if sign is not None:
        from certifier.signing import sign_certificate

        cert = sign_certificate(cert, sign)
    text = C.dumps(cert)
    if out is not None:
        C.write_atomic(out, text)
    if scm_doc is not None:
        C.write_atomic(scm_out, C.dumps(scm_doc))
    if amp_config is not None:
        from certifier.amp import export_config

        shares = {L["name"]: L.get("error_share") for L in cert["layers"]}
        C.write_atomic(amp_config, C.dumps(export_config(cert, cert["assignment"]["formats"], shares)))
    if json_out:
        sys.stdout.write(text)
    elif quiet:
        out_console.print(f"{cert['verdict']}: bound {fmt_num(cert['assignment']['bound'])} (eps {eps:g})")
    else:
        out_console.print(render_layers(cert))
        out_console.print(render_uniform(cert))
        if "validation" in cert:
            render_validation(cert["validation"])
        if "scm" in cert:
            render_scm(cert["scm"])
        render_summary(cert)
        if out is not None:
            out_console.print(f"certificate written to {out}")
    code = 0 if cert["verdict"] == "certified" else 1
    if "validation" in cert and not cert["validation"]["sound"]:
        err_console.print("VALIDATION FAILED: the observed error exceeds the certified bound (a soundness bug; please report)")
        code = 1
    raise typer.Exit(code)


def render_validation(v: dict) -> None:
    t = Table(title="validation: observed vs certified", box=_box(), title_justify="left")
    for c in ("run", "observed max error", "certified bound", "bound / observed", "inputs"):
        t.add_column(c, justify="right" if c != "run" else "left")
    for r in v["runs"]:
        ratio = r.get("ratio")
        name = r["name"] + (" (emulated)" if r.get("emulated") else "")
        t.add_row(name, fmt_num(r["observed"]), fmt_num(r["bound"]), fmt_num(ratio) if ratio is not None else "-", str(r["evaluations"]))
    out_console.print(t)


def render_scm(scm: dict) -> None:
    """SCM thresholds per format (rational head), then per division; one sentence per threshold."""
    rh = scm.get("rational_head")
    if rh and rh.get("refused"):
        out_console.print(f"SCM thresholds, rational head ({rh['declared_by']}): refused for every format: {rh['refused']}", markup=False)
    elif rh:
        n, d = rh["numerator"], rh["denominator"]
        t = Table(
            title=f"SCM thresholds, rational head N = output {n['output']}, D = output {d['output']} (eps = {scm['eps']:g}; {rh['declared_by']})",
            box=_box(), title_justify="left",
        )
        for c in ("format", "delta_N", "delta_D", "M_N", "tau_infer", "tau_train", "use_gap", "note"):
            t.add_column(c, justify="left" if c in ("format", "note", "use_gap") else "right", overflow="fold")
        for f, e in rh["formats"].items():
            if e["status"] != "certified":
                t.add_row(f, *(["-"] * 6), "refused: " + e["reason"])
                continue
            t.add_row(
                f, fmt_num(e["delta_N"]), fmt_num(e["delta_D"]), fmt_num(e["M_N"]), f"{e['tau_infer']:.6g}", f"{e['tau_train']:.6g}",
                "yes" if e["use_gap"] else "no", "; ".join(e["notes"]),
            )
        out_console.print(t)
    divs = scm.get("divisions") or []
    if divs:
        t = Table(title=f"SCM thresholds per division (aten.div, eps = {scm['eps']:g})", box=_box(), title_justify="left")
        for c in ("division", "format", "delta_N", "delta_D", "tau_infer", "tau_train", "note"):
            t.add_column(c, justify="left" if c in ("division", "format", "note") else "right", overflow="fold")
        for dv in divs[:10]:
            name = f"{dv['node']} ({dv['layer']})"
            for f, e in dv["formats"].items():
                if e["status"] != "certified":
                    t.add_row(name, f, "-", "-", "-", "-", "refused: " + e["reason"])
                else:
                    t.add_row(name, f, fmt_num(e["delta_N"]), fmt_num(e["delta_D"]), f"{e['tau_infer']:.6g}", f"{e['tau_train']:.6g}", "; ".join(e["notes"]))
                name = ""
        out_console.print(t)
        if len(divs) > 10:
            out_console.print(f"  ... {len(divs) - 10} more divisions in the certificate (scm.divisions)", markup=False)
    for k in ("tau_infer", "tau_train"):
        out_console.print(f"  {k}: {scm['meaning'][k]}.", markup=False)


def _load_plugins() -> None:
    """Commands defined in sibling modules register themselves on ``app`` when imported."""
    import importlib
    import importlib.util

    for name in ("certifier.cli_prove", "certifier.cli_gate", "certifier.cli_amp"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    runtime.tune_allocator()
    _load_plugins()
    argv = sys.argv[1:]
    if argv and argv[0] not in COMMANDS and argv[0] not in ("--help", "-h"):
        argv = ["run", *argv]
    try:
        app(args=argv, prog_name="certify", standalone_mode=True)
    except SystemExit as e:
        raise SystemExit(e.code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
