"""``certify keygen`` and ``certify verify``: signing keys and the deployment gate.

``certify verify`` exits 0 when every check passes, 1 when any fails (each failed check is
named, one line each), and 2 on bad input (a missing, corrupt, truncated or non-JSON
certificate, a missing model or key file, a bad option value).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from certifier.cli import _box, _guard, _Progress, app, err_console, out_console
from certifier.errors import VerifyError


@app.command("keygen", help="Make an Ed25519 signing key pair: NAME.pem (private, mode 0600) and NAME.pub.")
def keygen_cmd(
    name: Annotated[Path, typer.Argument(help="path prefix of the key files (writes NAME.pem and NAME.pub)", metavar="NAME")],
    force: Annotated[bool, typer.Option(help="replace existing key files")] = False,
) -> None:
    _guard(_keygen, name, force)


def _keygen(name: Path, force: bool) -> None:
    from certifier.signing import generate_keypair

    kp = generate_keypair(name, force=force)
    out_console.print(f"private key: {kp.private_path} (keep it secret; sign with: certify MODEL.py --sign {kp.private_path})", markup=False)
    out_console.print(f"public key:  {kp.public_path} (give it to verifiers: certify verify CERT --pubkey {kp.public_path})", markup=False)
    out_console.print(f"key id:      {kp.key_id}", markup=False)
    out_console.print(f"raw public key (base64, also accepted by --pubkey): {kp.public_key_b64}", markup=False)


def _split_formats(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(f.strip() for f in text.split(",") if f.strip())


@app.command("verify", help="Verify a certificate against the model, its weights, a signature and deployment conditions.")
def verify_cmd(
    certificate: Annotated[Path, typer.Argument(help="the certificate JSON", metavar="CERT.json")],
    model: Annotated[Path, typer.Option(help="the model file the certificate must speak for", metavar="MODEL.py")],
    weights: Annotated[Optional[Path], typer.Option(help="the state-dict checkpoint to deploy (as given to certify --weights)", metavar="CKPT.pt")] = None,
    pubkey: Annotated[Optional[list[Path]], typer.Option(help="trusted Ed25519 public key; repeat to trust several. Requires a signature by one of them", metavar="KEY.pub")] = None,
    require_signature: Annotated[bool, typer.Option(help="fail an unsigned certificate even without --pubkey (checks integrity, not who signed)")] = False,
    require_verdict: Annotated[str, typer.Option(help="required verdict: certified, uncertifiable, impossible, hnf-obstruction, or any", metavar="VERDICT")] = "certified",
    max_eps: Annotated[Optional[float], typer.Option(help="condition: the certificate's eps is at most E", metavar="E")] = None,
    min_format: Annotated[Optional[str], typer.Option(help="condition: no layer has fewer significand bits than FORMAT (bf16 < fp16)", metavar="FORMAT")] = None,
    max_format: Annotated[Optional[str], typer.Option(help="condition: no layer has more significand bits than FORMAT", metavar="FORMAT")] = None,
    allow_formats: Annotated[Optional[str], typer.Option(help="condition: every layer's format is in this comma-separated set", metavar="F1,F2")] = None,
    hardware: Annotated[Optional[str], typer.Option(help="condition: every layer's format is offered by hardware profile NAME", metavar="NAME")] = None,
    replay: Annotated[bool, typer.Option(help="also re-run the analysis with the certificate's spec and compare the body")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")] = False,
    quiet: Annotated[bool, typer.Option(help="print only failures and the final line")] = False,
) -> None:
    _guard(
        _verify, certificate, model, weights, pubkey or [], require_signature, require_verdict, max_eps, min_format,
        max_format, allow_formats, hardware, replay, json_out, quiet,
    )


def _verify(certificate, model, weights, pubkeys, require_signature, require_verdict, max_eps, min_format, max_format, allow_formats, hardware, replay, json_out, quiet):
    from certifier import gate
    from certifier.certificate import read_certificate
    from certifier.signing import load_public_key

    if max_eps is not None and not (math.isfinite(max_eps) and max_eps > 0):
        raise VerifyError(f"--max-eps must be a positive finite number, got {max_eps}")
    cond = gate.Conditions(
        require_verdict=None if require_verdict == "any" else require_verdict,
        max_eps=max_eps,
        min_format=min_format,
        max_format=max_format,
        allow_formats=_split_formats(allow_formats),
        hardware=hardware,
        hardware_formats=gate.resolve_hardware(hardware) if hardware else None,
        trusted_keys=tuple(load_public_key(p) for p in pubkeys),
        require_signature=require_signature,
    )
    cond.validate()
    cert = read_certificate(certificate)
    if not any(k in cert for k in ("schema_version", "body_sha256", "model", "spec", "verdict")):
        raise VerifyError(f"{certificate} is not a certify certificate (no schema_version, body_sha256, model, spec or verdict field)")
    facts = gate.model_facts(cert, model, weights)
    result = gate.verify_certificate(cert, facts, cond)
    if isinstance(cert.get("witness"), dict):
        result.checks.append(gate.check_witness(cert, facts))
    if replay:
        progress = _Progress(enabled=not quiet and not json_out)
        try:
            result.checks.append(gate.replay(cert, model, weights, progress=progress))
        finally:
            progress.close()

    if json_out:
        doc = {"certificate": str(certificate), "body_sha256": cert.get("body_sha256"), **result.to_json()}
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        for c in result.failed:  # stdout stays pure JSON; CI logs still name each failure
            err_console.print(f"FAILED {c.name}: {c.detail}", markup=False)
    else:
        _render(result, quiet)
    raise typer.Exit(0 if result.passed else 1)


def _render(result, quiet: bool) -> None:
    if not quiet:
        t = Table(box=_box(), show_header=True)
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail", overflow="fold")
        for c in result.checks:
            t.add_row(c.name, "pass" if c.passed else "FAIL", escape(c.detail))
        out_console.print(t)
    # One line per failed condition, greppable in CI logs.
    for c in result.failed:
        err_console.print(f"FAILED {c.name}: {c.detail}", markup=False)
    if result.passed:
        out_console.print(f"verified: all {len(result.checks)} checks passed", markup=False)
    else:
        names = ", ".join(c.name for c in result.failed)
        out_console.print(f"verification FAILED ({len(result.failed)} of {len(result.checks)} checks): {names}", markup=False)
