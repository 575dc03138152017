"""Tamper detection (issue 7): each change makes `certify verify` fail, naming the reason."""

from __future__ import annotations

import json
import math

import pytest
import torch

from certifier import certificate as C
from certifier import gate
from certifier.errors import CertificateError
from certifier.pipeline import weights_sha256
from certifier.signing import load_public_key
from tests.gate_support import base_certificate, build_mlp, failed_names, invoke, signing_key, workspace


def verify(ws, *extra):
    args = ["verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"]]
    if "weights" in ws:
        args += ["--weights", ws["weights"]]
    return invoke(*args, *extra)


def test_untampered_certificate_verifies(tmp_path):
    ws = workspace(tmp_path)
    r = verify(ws, "--max-eps", "1e-2")
    assert r.exit_code == 0, r.output
    assert failed_names(r) == set()
    assert "all 7 checks passed" in r.output


# ------------------------------------------------------------------ weights
def _nudge(t: torch.Tensor, index: int) -> torch.Tensor:
    """t with one element moved to the next float up (the smallest possible change)."""
    t = t.clone()
    flat = t.view(-1)
    flat[index] = torch.nextafter(flat[index], torch.tensor(math.inf, dtype=t.dtype))
    return t


@pytest.mark.parametrize("name,where", [("1.weight", 0), ("3.bias", 17), ("5.weight", -1)])
def test_changing_one_weight_value_fails_weights(tmp_path, name, where):
    ws = workspace(tmp_path, weights=True)
    sd = torch.load(ws["weights"], weights_only=True)
    sd[name] = _nudge(sd[name], where % sd[name].numel())
    torch.save(sd, ws["weights"])
    r = verify(ws)
    assert r.exit_code == 1, r.output
    assert failed_names(r) == {"weights"}  # source, body and signature are untouched
    assert "the weights changed" in r.output


def test_weights_certificate_needs_its_checkpoint(tmp_path):
    ws = workspace(tmp_path, weights=True)
    assert verify(ws).exit_code == 0
    del ws["weights"]
    r = verify(ws)
    assert r.exit_code == 0  # the checkpoint holds build_model()'s own weights: same hash
    sd = build_mlp().state_dict()
    sd["1.bias"] = sd["1.bias"] * 2
    torch.save(sd, tmp_path / "other.pt")
    ws["weights"] = tmp_path / "other.pt"
    r = verify(ws)
    assert r.exit_code == 1 and failed_names(r) == {"weights"}
    assert "made with --weights ckpt.pt" in r.output


def _state_hash(state: dict) -> str:
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in state.items():
                self.register_buffer(k.replace(".", "_"), v)

    return weights_sha256(M())


def test_weights_hash_sees_every_element_dtype_and_shape():
    sd = build_mlp().state_dict()
    ref = _state_hash(sd)
    assert _state_hash(dict(sd)) == ref
    g = torch.Generator().manual_seed(0)
    seen = {ref}
    for name, t in sd.items():
        for idx in torch.randperm(t.numel(), generator=g)[:8].tolist():
            seen.add(_state_hash({**sd, name: _nudge(t, idx)}))
    assert len(seen) == 1 + 8 * len(sd)  # every one-ulp change gives a new hash
    assert _state_hash({**sd, "1.bias": sd["1.bias"].double()}) != ref  # same values, other dtype
    assert _state_hash({**sd, "5.weight": sd["5.weight"].reshape(256, 10)}) != ref  # same bytes, other shape
    zero = torch.zeros(3)
    assert _state_hash({"b": zero}) != _state_hash({"b": torch.tensor([0.0, -0.0, 0.0])})  # bitwise


# ------------------------------------------------------------------ model source
@pytest.mark.parametrize("where", ["first", "docstring", "seed", "last"])
def test_changing_one_byte_of_the_source_fails_model_source(tmp_path, where):
    ws = workspace(tmp_path)
    src = bytearray(ws["model"].read_bytes())
    pos = {
        "first": 0,  # breaks the docstring quote: the file no longer imports
        "docstring": src.index(b"MNIST"),
        "seed": src.index(b"manual_seed(0)") + len("manual_seed("),  # other weights too
        "last": len(src) - 1,
    }[where]
    src[pos] = ord("1") if src[pos] == ord("0") else (src[pos] ^ 0x01)
    ws["model"].write_bytes(bytes(src))
    r = verify(ws)
    assert r.exit_code == 1, r.output
    failed = failed_names(r)
    assert "model-source" in failed
    assert failed <= {"model-source", "weights"}
    if where == "seed":
        assert failed == {"model-source", "weights"}
    if where == "first":  # does not import: the weights cannot be hashed, a failure, not exit 2
        assert "the model does not load" in r.output


# ------------------------------------------------------------------ eps
def _edit(ws, fn, rehash: bool = False, unsign: bool = False) -> None:
    cert = json.loads(ws["cert"].read_text())
    fn(cert)
    if rehash:  # a forger without the key can recompute the hash, not the signature
        cert["body_sha256"] = C.body_hash(cert)
    if unsign:
        cert.pop("signature")
    ws["cert"].write_text(C.dumps(cert))


def test_changing_eps_in_the_certificate_fails(tmp_path):
    ws = workspace(tmp_path)
    text = ws["cert"].read_text()
    assert '"eps": 0.005,' in text
    ws["cert"].write_text(text.replace('"eps": 0.005,', '"eps": 0.02,'))
    r = verify(ws)
    assert r.exit_code == 1
    assert failed_names(r) == {"body-hash", "signature"}


def test_changing_eps_with_a_recomputed_hash_fails_signature_and_replay(tmp_path):
    ws = workspace(tmp_path)
    _edit(ws, lambda c: c["spec"].__setitem__("eps", 0.02), rehash=True)
    r = verify(ws)
    assert r.exit_code == 1 and failed_names(r) == {"signature"}
    # Unsigned forgery: the hash and the body agree and the body is consistent (bound <= 0.02),
    # so without a trusted key only a replay can tell.
    _edit(ws, lambda c: None, unsign=True)
    assert invoke("verify", ws["cert"], "--model", ws["model"]).exit_code == 0
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--replay")
    assert r.exit_code == 1, r.output
    assert failed_names(r) == {"replay"}
    assert "spec.eps: 0.005 in the certificate" not in r.output  # replay uses the forged eps ...
    assert "layers" in r.output  # ... and the error shares no longer match it


def test_eps_tightened_below_the_bound_fails_consistency(tmp_path):
    ws = workspace(tmp_path)
    _edit(ws, lambda c: c["spec"].__setitem__("eps", 1e-3), rehash=True, unsign=True)
    r = invoke("verify", ws["cert"], "--model", ws["model"])
    assert r.exit_code == 1 and failed_names(r) == {"consistency"}
    assert "is not <= eps" in r.output


def test_max_eps_condition_names_eps(tmp_path):
    ws = workspace(tmp_path)
    r = verify(ws, "--max-eps", "2.5e-3")
    assert r.exit_code == 1 and failed_names(r) == {"eps"}
    assert "eps 0.005, more than the allowed 0.0025" in r.output


# ------------------------------------------------------------------ certificate body
@pytest.mark.parametrize("old,new", [
    ('"bound": 0.00', '"bound": 0.01'),  # a digit inside a number
    ('"module": "Linear"', '"module": "Linebr"'),  # a letter inside a string
    ('"certified": true,\n    "cost"', '"certified": false,\n    "cost"'),
])
def test_changing_the_body_fails_body_hash(tmp_path, old, new):
    ws = workspace(tmp_path)
    text = ws["cert"].read_text()
    assert old in text
    ws["cert"].write_text(text.replace(old, new, 1))
    r = verify(ws)
    assert r.exit_code == 1, r.output
    assert {"body-hash", "signature"} <= failed_names(r)
    assert "the body was changed" in r.output


def test_every_single_byte_change_is_caught():
    """Flip each byte of the certificate file in turn: the result is either a bad
    certificate (exit 2) or a verification that passes exactly when the parsed certificate is
    unchanged apart from the unhashed timestamp (e.g. '1e-05' -> '1E-05')."""
    text = base_certificate()
    ref = json.loads(text)
    ref.pop("timestamp")
    store_model = signing_key()[0].parent / "base" / "mlp.py"
    facts = gate.model_facts(ref, store_model)
    cond = gate.Conditions(trusted_keys=(load_public_key(signing_key()[1]),))
    assert gate.verify_certificate(json.loads(text), facts, cond).passed
    raw = text.encode()
    outcomes = {"bad": 0, "failed": 0, "same": 0}
    flips = [(i, 0x01) for i in range(len(raw))]  # every byte; digits 0<->1, 2<->3, letters a<->`, ...
    flips += [(i, 0x20) for i in range(len(raw)) if chr(raw[i]).isalpha()]  # case: hex, base64, 1e-05
    for i, mask in flips:
        b = bytearray(raw)
        b[i] ^= mask
        try:
            cert = C.parse_certificate(b.decode("utf-8"))
        except (CertificateError, UnicodeDecodeError):
            outcomes["bad"] += 1
            continue
        res = gate.verify_certificate(cert, facts, cond)
        cert.pop("timestamp", None)
        same = cert == ref and C.canonical(cert) == C.canonical(ref)
        assert res.passed == same, (i, mask, bytes(b[max(0, i - 30):i + 30]))
        if not same:
            assert res.failed, (i, mask)
        outcomes["same" if same else "failed"] += 1
    assert outcomes["failed"] > 1000 and outcomes["bad"] > 1000


def test_fields_of_the_wrong_type_fail_checks_instead_of_crashing():
    """A value replaced by one of another type (valid JSON, hash recomputed, so only the checks
    that read it can object): verify never raises and never passes."""
    base = json.loads(base_certificate())
    facts = gate.ModelFacts(base["model"]["source_sha256"], base["model"]["weights_sha256"])
    cond = gate.Conditions(max_eps=1.0, min_format="bf16", max_format="fp64", allow_formats=("fp16", "fp32", "fp64"),
                           hardware="hw", hardware_formats=("fp64", "fp32", "fp16"), require_signature=True)
    assert gate.verify_certificate(base, facts, cond).passed
    paths = [(k,) for k in base if k not in ("timestamp",)]
    for sect in ("spec", "model", "assignment", "signature"):
        paths += [(sect, k) for k in base[sect]]
    paths += [("layers", 0, k) for k in base["layers"][0]]
    n = 0
    for path in paths:
        for junk in (None, 7, "x", [], {}, [["fp32"]], {"a": {}}):
            cert = json.loads(json.dumps(base))
            cur = cert
            for k in path[:-1]:
                cur = cur[k]
            if cur[path[-1]] == junk:
                continue
            cur[path[-1]] = junk
            if path[0] not in ("signature", "body_sha256"):
                cert["body_sha256"] = C.body_hash(cert)
            v = gate.verify_certificate(cert, facts, cond)
            n += 1
            # layers[].refused/ops/... are results no condition reads: only the signature objects.
            assert not v.passed and v.failed, (path, junk)
    assert n > 300
