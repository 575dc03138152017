"""Deployment gating: verify that a certificate speaks for *this* model, *these* weights and the
deployment's conditions (``certify verify``).

A verification is a list of named checks; it passes when every check passes. Checks that are
always run:

``body-hash``     the recorded ``body_sha256`` equals the sha256 of the canonical body, recomputed
                  from the parsed certificate (any change to a value in the body fails it).
``consistency``   the body agrees with itself: verdict vs. ``assignment.certified`` and
                  ``bound <= eps``; per-layer formats equal ``assignment.formats`` and are among
                  the candidate formats. Catches forgeries that recompute the hash.
``signature``     a signature, if present, verifies over the body; with trusted keys
                  (``--pubkey``) or ``--require-signature`` one is required, and with trusted
                  keys it must be made by one of them.
``model-source``  sha256 of the model file equals ``model.source_sha256``, and (where recorded)
                  ``model.code`` -- the sha256 of every local module the model file imports and
                  the version of every installed package it imports -- is unchanged.
``weights``       the canonical weights hash of the model as loaded now (``--weights`` applied)
                  equals ``model.weights_sha256``.
``verdict``       the verdict is the required one (``certified`` unless told otherwise).

Checks run when asked for (the deployment conditions):

``eps``           ``spec.eps <= E`` (``--max-eps E``).
``min-format``    no layer runs in a format with fewer significand bits than F
                  (``--min-format F``; bf16 (8 bits) is *below* fp16 (11 bits)).
``max-format``    no layer runs in a format with more significand bits than F
                  (``--max-format F``; e.g. ``fp32`` forbids fp64 layers).
``allow-formats`` every layer's format is in the given set (``--allow-formats a,b``).
``hardware``      every layer's format is offered by the hardware profile (``--hardware NAME``).
``replay``        re-running the analysis with the certificate's own spec reproduces the body
                  (``certify run`` certificates; a ``certify prove`` one fails it, saying so).

Checks run on certificates that carry a witness (``certify prove``'s ``impossible``):

``witness``       the witness, re-checked against the model in exact arithmetic, holds for
                  the certificate's eps and every storage format of its hardware.

The library never prints: :func:`verify_certificate` returns a :class:`Verification`.
Problems with the *inputs* of a verification (unreadable files, bad option values, an unknown
hardware profile) raise :class:`~certifier.errors.CertifyError` subclasses (exit 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from certifier.certificate import body_hash, body_of, canonical
from certifier.errors import CertifyError, VerifyError
from certifier.formats import FORMAT_ORDER, FORMATS
from certifier.signing import check_signature

VERDICTS = ("certified", "uncertifiable", "impossible", "hnf-obstruction")

#: Body keys a replay does not compare: ``validation`` holds sampled runs (``--validate``), not
#: analysis; the model/weights *file names* are labels (their contents are bound by the hashes,
#: which are compared).
REPLAY_IGNORED = ("validation", "model.name", "model.file", "model.weights_file")

#: How many offenders or differences a check names before summarising the rest.
MAX_LISTED = 5


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "failed": [c.name for c in self.failed],
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class Conditions:
    """What a deployment requires of a certificate (beyond integrity and the model binding)."""

    require_verdict: str | None = "certified"  # None: any verdict
    max_eps: float | None = None
    min_format: str | None = None
    max_format: str | None = None
    allow_formats: tuple[str, ...] | None = None
    hardware: str | None = None
    hardware_formats: tuple[str, ...] | None = None  # the profile's formats (see resolve_hardware)
    trusted_keys: tuple[Ed25519PublicKey, ...] = ()
    require_signature: bool = False

    def validate(self) -> None:
        """Reject option values that make no sense (exit 2)."""
        if self.require_verdict is not None and self.require_verdict not in VERDICTS:
            raise VerifyError(f"--require-verdict must be one of {', '.join(VERDICTS)} or any, got {self.require_verdict!r}")
        if self.max_eps is not None and not (math.isfinite(self.max_eps) and self.max_eps > 0):
            raise VerifyError(f"--max-eps must be a positive finite number, got {self.max_eps}")
        for opt, names in (("--min-format", [self.min_format]), ("--max-format", [self.max_format]), ("--allow-formats", self.allow_formats or [])):
            for f in names:
                if f is not None and f not in FORMATS:
                    raise VerifyError(f"{opt}: unknown format {f!r}", f"known formats: {', '.join(FORMAT_ORDER)}")
        if self.allow_formats is not None and not self.allow_formats:
            raise VerifyError("--allow-formats needs at least one format")
        if self.hardware is not None and self.hardware_formats is None:
            raise VerifyError(f"hardware profile {self.hardware!r} was not resolved")


@dataclass(frozen=True)
class ModelFacts:
    """What the model on disk hashes to now. ``weights_sha256`` is None when the model could not
    be loaded; ``weights_error`` then says why."""

    source_sha256: str
    weights_sha256: str | None
    weights_error: str | None = None
    code: dict | None = None  # loader.code_digest: local modules imported, library versions
    loaded: object | None = field(default=None, repr=False, compare=False)  # the LoadedModel, reused by check_witness


# ------------------------------------------------------------------------------ inputs
def resolve_hardware(name: str) -> tuple[str, ...]:
    """The formats a hardware profile offers (``smt.hardware.get_profile(name).formats``)."""
    try:
        from smt.hardware import get_profile
    except ModuleNotFoundError as e:
        if e.name not in ("smt", "smt.hardware"):
            raise
        raise VerifyError("hardware profiles are not available: smt.hardware is missing from this installation") from None
    try:
        prof = get_profile(name)
    except CertifyError:
        raise
    except (LookupError, ValueError) as e:
        raise VerifyError(f"unknown hardware profile {name!r}: {e}") from None
    formats = tuple(prof.formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise VerifyError(f"hardware profile {name!r} lists unknown formats: {', '.join(unknown)}")
    return formats


def _cert_domains(cert: dict) -> list[tuple[float, float]] | None:
    """The input domain recorded in the certificate, one (lo, hi) per input, if well formed."""
    try:
        doms = [(float(i["domain"][0]), float(i["domain"][1])) for i in cert["spec"]["inputs"]]
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    return doms or None


def model_facts(cert: dict, model: str | Path, weights: str | Path | None = None) -> ModelFacts:
    """Hash the model source and (loading the model, which runs its code) its weights.

    A missing model or weights file is bad input (raises); a model that does not load is a
    fact (``weights_error``): the weights cannot be shown to be the certified ones.
    """
    from certifier.errors import ModelFileError
    from certifier.loader import code_digest, load_model, sha256_file
    from certifier.pipeline import weights_sha256

    model = Path(model)
    if not model.is_file():
        raise ModelFileError(f"model file not found: {model}")
    if weights is not None and not Path(weights).is_file():
        raise VerifyError(f"weights file not found: {weights}")
    source = sha256_file(model)
    code = code_digest(model)
    try:
        loaded = load_model(model, domain=_cert_domains(cert), weights=weights, check_forward=False)
    except CertifyError as e:
        return ModelFacts(source, None, e.message, code)
    return ModelFacts(source, weights_sha256(loaded.module), code=code, loaded=loaded)


# ------------------------------------------------------------------------------ checks
def _get(cert: object, path: str) -> object:
    """``cert[a][b]...`` for ``path = "a.b..."``; raises KeyError naming the path."""
    cur = cert
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _assigned_formats(cert: dict) -> dict[str, object]:
    fm = _get(cert, "assignment.formats")
    if not isinstance(fm, dict):
        raise KeyError("assignment.formats")
    return fm


def check_body_hash(cert: dict) -> Check:
    recorded = cert.get("body_sha256")
    actual = body_hash(cert)
    if recorded is None:
        return Check("body-hash", False, f"the certificate records no body_sha256 (its body hashes to {actual})")
    if recorded != actual:
        return Check("body-hash", False, f"the body was changed: it hashes to {actual}, the certificate records {recorded}")
    return Check("body-hash", True, f"body sha256 {actual}")


def check_consistency(cert: dict) -> Check:
    problems: list[str] = []
    try:
        verdict = _get(cert, "verdict")
        certified = _get(cert, "assignment.certified")
        bound = _get(cert, "assignment.bound")
        eps = _get(cert, "spec.eps")
        candidates = _get(cert, "spec.candidate_formats")
        fm = _assigned_formats(cert)
        layers = _get(cert, "layers")
        if not isinstance(layers, list) or not all(isinstance(L, dict) for L in layers):
            raise KeyError("layers")
    except KeyError as e:
        return Check("consistency", False, f"the certificate has no valid {e.args[0]} field")
    if verdict not in VERDICTS:
        problems.append(f"unknown verdict {verdict!r}")
    if verdict == "impossible" and not isinstance(cert.get("witness"), dict):
        problems.append("verdict impossible but no witness")
    if (verdict == "certified") != (certified is True):
        problems.append(f"verdict {verdict!r} but assignment.certified is {certified!r}")
    if verdict == "certified":
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if not (num(bound) and num(eps) and bound <= eps):
            problems.append(f"verdict certified but the bound {bound!r} is not <= eps {eps!r}")
        if not fm:
            problems.append("verdict certified but no layer has an assigned format")
    # a layer without an assignment is recorded with format null and is absent from the map
    layer_formats = {L.get("name"): L.get("format") for L in layers if L.get("format") is not None}
    if layer_formats != fm:
        diff = sorted(str(k) for k in set(layer_formats) | set(fm) if layer_formats.get(k) != fm.get(k))
        problems.append(f"layers[].format and assignment.formats disagree on {_listed(diff)}")
    if isinstance(candidates, list):
        outside = sorted({str(f) for f in fm.values() if f not in candidates})
        if outside:
            problems.append(f"assigned formats {', '.join(outside)} are not among the candidate formats")
    else:
        problems.append("spec.candidate_formats is not a list")
    if problems:
        return Check("consistency", False, _listed(problems))
    return Check("consistency", True, "verdict, bound, eps and formats agree")


def check_signature_condition(cert: dict, cond: Conditions) -> Check:
    st = check_signature(cert, cond.trusted_keys)
    required = cond.require_signature or bool(cond.trusted_keys)
    if not st.present:
        if required:
            why = "a trusted --pubkey was given" if cond.trusted_keys else "--require-signature"
            return Check("signature", False, f"the certificate is not signed, but a signature is required ({why})")
        return Check("signature", True, "not signed (no signature required)")
    ok = st.valid and (st.trusted or not cond.trusted_keys)
    return Check("signature", ok, st.detail)


def _code_diff(a: dict, b: dict) -> str:
    out = []
    for part in ("local", "packages"):
        x, y = a.get(part) or {}, b.get(part) or {}
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                out.append(f"{k} ({_short(x.get(k))} in the certificate, {_short(y.get(k))} now)")
    return _listed(out) if out else "the recorded digest is malformed"


def check_model(cert: dict, facts: ModelFacts) -> list[Check]:
    out = []
    try:
        recorded = _get(cert, "model.source_sha256")
    except KeyError:
        recorded = None
    code = cert.get("model", {}).get("code") if isinstance(cert.get("model"), dict) else None
    if recorded == facts.source_sha256 and code is not None and facts.code is not None and code != facts.code:
        diff = _code_diff(code, facts.code)
        out.append(Check("model-source", False, f"the model file is unchanged but the code it imports changed: {diff}"))
    elif recorded == facts.source_sha256:
        extra = "" if code is None else f" and the {len(code.get('local', {}))} local module(s) and {len(code.get('packages', {}))} package version(s) it imports"
        out.append(Check("model-source", True, f"model source sha256 {facts.source_sha256}{extra}"))
    else:
        out.append(Check("model-source", False, f"the model source changed: it hashes to {facts.source_sha256}, the certificate records {recorded}"))
    try:
        recorded_w = _get(cert, "model.weights_sha256")
    except KeyError:
        recorded_w = None
    if facts.weights_sha256 is None:
        out.append(Check("weights", False, f"cannot hash the weights: the model does not load ({facts.weights_error})"))
    elif recorded_w == facts.weights_sha256:
        out.append(Check("weights", True, f"weights sha256 {facts.weights_sha256}"))
    else:
        hint = ""
        try:
            wf = _get(cert, "model.weights_file")
        except KeyError:
            wf = None
        if wf:
            hint = f" (the certificate was made with --weights {wf})"
        out.append(Check("weights", False, f"the weights changed: they hash to {facts.weights_sha256}, the certificate records {recorded_w}{hint}"))
    return out


def check_verdict(cert: dict, required: str) -> Check:
    v = cert.get("verdict")
    if v == required:
        return Check("verdict", True, f"verdict {v}")
    return Check("verdict", False, f"verdict is {v!r}, required {required!r}")


def check_eps(cert: dict, max_eps: float) -> Check:
    try:
        eps = _get(cert, "spec.eps")
    except KeyError:
        return Check("eps", False, "the certificate has no spec.eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        return Check("eps", False, f"spec.eps is not a number: {eps!r}")
    if eps <= max_eps:
        return Check("eps", True, f"eps {eps:g} <= {max_eps:g}")
    return Check("eps", False, f"the certificate is for eps {eps:g}, more than the allowed {max_eps:g}")


def _format_check(cert: dict, name: str, ok: Callable[[str], bool], why: Callable[[str], str], passed: str) -> Check:
    try:
        fm = _assigned_formats(cert)
        layers = _get(cert, "layers")
        unassigned = [str(L.get("name")) for L in layers if isinstance(L, dict) and L.get("format") is None] if isinstance(layers, list) else []
    except KeyError:
        return Check(name, False, "the certificate has no assignment.formats")
    bad = [f"layer {lay} has no certified format" for lay in unassigned]
    for lay, f in fm.items():
        if not isinstance(f, str) or f not in FORMATS:
            bad.append(f"layer {lay} runs in unknown format {f!r}")
        elif not ok(f):
            bad.append(f"layer {lay} runs in {f}{why(f)}")
    if bad:
        return Check(name, False, _listed(bad))
    return Check(name, True, passed)


def check_min_format(cert: dict, fmt: str) -> Check:
    p = FORMATS[fmt].p
    return _format_check(
        cert, "min-format", lambda f: FORMATS[f].p >= p,
        lambda f: f" ({FORMATS[f].p} significand bits, fewer than {fmt}'s {p})",
        f"every layer has at least {fmt}'s {p} significand bits",
    )


def check_max_format(cert: dict, fmt: str) -> Check:
    p = FORMATS[fmt].p
    return _format_check(
        cert, "max-format", lambda f: FORMATS[f].p <= p,
        lambda f: f" ({FORMATS[f].p} significand bits, more than {fmt}'s {p})",
        f"no layer has more than {fmt}'s {p} significand bits",
    )


def check_allow_formats(cert: dict, allowed: Sequence[str]) -> Check:
    return _format_check(
        cert, "allow-formats", lambda f: f in allowed, lambda f: f", not in {{{', '.join(allowed)}}}",
        f"every layer's format is in {{{', '.join(allowed)}}}",
    )


def check_hardware(cert: dict, name: str, formats: Sequence[str]) -> Check:
    return _format_check(
        cert, "hardware", lambda f: f in formats, lambda f: f", which hardware profile {name} does not offer ({', '.join(formats)})",
        f"every layer's format is offered by {name}",
    )


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; a field of an unexpected type (a damaged certificate) fails the check
    instead of escaping as an internal error."""
    try:
        out = fn()
    except (TypeError, AttributeError, ValueError, KeyError) as e:
        return [Check(name, False, f"malformed certificate field ({type(e).__name__}: {e})")]
    return out if isinstance(out, list) else [out]


def verify_certificate(cert: dict, facts: ModelFacts, cond: Conditions) -> Verification:
    """Evaluate every check that needs no re-analysis (pure: no files, no model)."""
    cond.validate()
    todo: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("body-hash", lambda: check_body_hash(cert)),
        ("consistency", lambda: check_consistency(cert)),
        ("signature", lambda: check_signature_condition(cert, cond)),
        ("model-source", lambda: check_model(cert, facts)),
    ]
    if cond.require_verdict is not None:
        todo.append(("verdict", lambda: check_verdict(cert, cond.require_verdict)))  # type: ignore[arg-type]
    if cond.max_eps is not None:
        todo.append(("eps", lambda: check_eps(cert, cond.max_eps)))  # type: ignore[arg-type]
    if cond.min_format is not None:
        todo.append(("min-format", lambda: check_min_format(cert, cond.min_format)))  # type: ignore[arg-type]
    if cond.max_format is not None:
        todo.append(("max-format", lambda: check_max_format(cert, cond.max_format)))  # type: ignore[arg-type]
    if cond.allow_formats is not None:
        todo.append(("allow-formats", lambda: check_allow_formats(cert, cond.allow_formats)))  # type: ignore[arg-type]
    if cond.hardware is not None and cond.hardware_formats is not None:
        todo.append(("hardware", lambda: check_hardware(cert, cond.hardware, cond.hardware_formats)))  # type: ignore[arg-type]
    v = Verification()
    for name, fn in todo:
        v.checks.extend(_guarded(name, fn))
    return v


# ------------------------------------------------------------------------------ witness
def check_witness(cert: dict, facts: ModelFacts) -> Check:
    """Re-check an ``impossible`` certificate's witness against the model in exact arithmetic
    (:func:`smt.witness.recheck`): a signature alone vouches for who made a proof, this
    check for the proof. Uses the model :func:`model_facts` loaded."""
    from smt.witness import recheck

    if facts.loaded is None:
        return Check("witness", False, f"the model does not load: {facts.weights_error}")
    try:
        ok, detail = recheck(cert, facts.loaded)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        return Check("witness", False, f"malformed witness ({type(e).__name__}: {e})")
    return Check("witness", ok, detail)


# ------------------------------------------------------------------------------ replay
def replay_options(cert: dict, weights: str | Path | None):
    """The :class:`~certifier.pipeline.Options` that produced a certificate, read from its body."""
    from certifier.pipeline import Options

    try:
        method = str(_get(cert, "assignment.method"))
        opts = Options(
            eps=float(_get(cert, "spec.eps")),  # type: ignore[arg-type]
            formats=[str(f) for f in _get(cert, "spec.candidate_formats")],  # type: ignore[union-attr]
            hnf_c=float(_get(cert, "hnf.c")),  # type: ignore[arg-type]
            domain=_cert_domains(cert),
            weights=str(weights) if weights is not None else None,
            hardware=cert["spec"].get("hardware"),  # type: ignore[union-attr]
            solver="z3" if method.startswith("z3") else "greedy",
            threads=int(cert["spec"].get("threads", 1)),  # type: ignore[union-attr]
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KeyError(f"the certificate's spec cannot be read for a replay ({e})") from None
    return opts


def _drop(body: dict, path: str) -> None:
    parts = path.split(".")
    cur = body
    for p in parts[:-1]:
        cur = cur.get(p) if isinstance(cur, dict) else None
        if cur is None:
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def replay_view(cert: dict) -> dict:
    """The part of a body a replay must reproduce exactly (:data:`REPLAY_IGNORED` removed)."""
    import copy

    body = copy.deepcopy(body_of(cert))
    for path in REPLAY_IGNORED:
        _drop(body, path)
    return body


def diff_paths(a: object, b: object, prefix: str = "") -> list[str]:
    """Paths (``layers[3].format``) where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(f"{p}: absent in the certificate, {_short(b[k])} on replay")
            elif k not in b:
                out.append(f"{p}: {_short(a[k])} in the certificate, absent on replay")
            else:
                out.extend(diff_paths(a[k], b[k], p))
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out.extend(diff_paths(x, y, f"{prefix}[{i}]"))
        if len(a) != len(b):
            out.append(f"{prefix}: {len(a)} entries in the certificate, {len(b)} on replay")
        return out
    if canonical(a) != canonical(b):
        return [f"{prefix}: {_short(a)} in the certificate, {_short(b)} on replay"]
    return []


def _short(x: object) -> str:
    s = canonical(x).decode()
    return s if len(s) <= 60 else s[:57] + "..."


def compare_replay(cert: dict, replayed_body: dict) -> Check:
    """Compare a certificate's body with a freshly computed one."""
    a, b = replay_view(cert), replay_view(replayed_body)
    if canonical(a) == canonical(b):
        return Check("replay", True, f"re-running the analysis reproduces the body ({body_hash(replayed_body)[:16]}...)")
    paths = diff_paths(a, b)
    keys = sorted({p.split(".")[0].split("[")[0].split(":")[0] for p in paths})
    return Check("replay", False, f"re-running the analysis gives a different body in {', '.join(keys)}: {_listed(paths)}")


def replay(cert: dict, model: str | Path, weights: str | Path | None = None, progress=None) -> Check:
    """Re-run the analysis with the certificate's spec and compare the bodies."""
    from certifier.pipeline import run_certify

    if "prove" in cert:
        return Check(
            "replay", False,
            "a `certify prove` certificate is not replayed (its witness search is time-limited); "
            "its witness is re-checked by the witness check, and `certify prove` can be rerun",
        )
    try:
        opts = replay_options(cert, weights)
    except KeyError as e:
        return Check("replay", False, str(e.args[0]))
    try:
        report = run_certify(model, opts, progress=progress)
        body = report.certificate
        section = _replay_scm(cert, report, opts.eps)
        if section is not None:
            body["scm"] = section
    except CertifyError as e:
        return Check("replay", False, f"the analysis does not run on this model: {e.message}")
    return compare_replay(cert, body)


def _replay_scm(cert: dict, report, eps: float) -> dict | None:
    """The ``scm`` section as ``certify run`` adds it (NB: keep in step with cli._run). A head
    declared with ``--rational N,D`` is re-declared from the certificate; one declared by the
    model file's ``rational_head()`` is found there again."""
    from certifier import scm as S

    rational = None
    scm = cert.get("scm")
    rh = scm.get("rational_head") if isinstance(scm, dict) else None
    if isinstance(rh, dict) and rh.get("declared_by") == "--rational":
        try:
            rational = (int(rh["numerator"]["output"]), int(rh["denominator"]["output"]))
        except (KeyError, TypeError, ValueError):
            rational = None
    return S.scm_section(report.bounds, report.uniform, eps, rational)
