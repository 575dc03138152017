"""Keys and signatures: keygen, run --sign, and the signature check of `certify verify`."""

from __future__ import annotations

import base64
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from certifier import certificate as C
from certifier.signing import check_signature, key_id, load_private_key, load_public_key, raw_public_bytes, sign_certificate
from tests.gate_support import failed_names, invoke, workspace


def test_keygen_writes_private_0600_and_public_pem(tmp_path):
    r = invoke("keygen", tmp_path / "k")
    assert r.exit_code == 0, r.output
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    raw = raw_public_bytes(load_public_key(pub))
    assert raw_public_bytes(load_private_key(priv).public_key()) == raw
    assert key_id(raw) in r.output and base64.b64encode(raw).decode() in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem", "k.pub"]  # no temp files left


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path):
    assert invoke("keygen", tmp_path / "k").exit_code == 0
    before = (tmp_path / "k.pem").read_bytes(), (tmp_path / "k.pub").read_bytes()
    r = invoke("keygen", tmp_path / "k.pem")  # NAME.pem names the same pair
    assert r.exit_code == 2 and "key file exists" in r.output and "--force" in r.output
    assert ((tmp_path / "k.pem").read_bytes(), (tmp_path / "k.pub").read_bytes()) == before
    (tmp_path / "k.pub").unlink()  # one existing half is enough to refuse
    assert invoke("keygen", tmp_path / "k").exit_code == 2
    assert not (tmp_path / "k.pub").exists()
    r = invoke("keygen", tmp_path / "k", "--force")
    assert r.exit_code == 0
    assert (tmp_path / "k.pem").read_bytes() != before[0]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_signature_block_covers_the_canonical_body(tmp_path):
    ws = workspace(tmp_path)
    cert = json.loads(ws["cert"].read_text())
    sig = cert["signature"]
    assert set(sig) == {"algorithm", "public_key", "key_id", "signed_sha256", "value"}
    assert sig["algorithm"] == "ed25519" and sig["signed_sha256"] == cert["body_sha256"] == C.body_hash(cert)
    raw = raw_public_bytes(load_public_key(ws["pub"]))
    assert base64.b64decode(sig["public_key"]) == raw and sig["key_id"] == key_id(raw)
    load_public_key(ws["pub"]).verify(base64.b64decode(sig["value"]), C.canonical(C.body_of(cert)))  # raises if not
    st = check_signature(cert, (load_public_key(ws["pub"]),))
    assert st.valid and st.trusted


def test_signature_from_a_different_key_fails(tmp_path):
    ws = workspace(tmp_path)
    assert invoke("keygen", tmp_path / "other").exit_code == 0
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", tmp_path / "other.pub")
    assert r.exit_code == 1 and failed_names(r) == {"signature"}
    assert "not a trusted key" in r.output
    # Re-signing the same body with the other key: valid, but only trusted under that key.
    cert = sign_certificate(json.loads(ws["cert"].read_text()), tmp_path / "other.pem")
    ws["cert"].write_text(C.dumps(cert))
    assert invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", tmp_path / "other.pub").exit_code == 0
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"])
    assert r.exit_code == 1 and failed_names(r) == {"signature"}
    # Several trusted keys (rotation): one of them suffices.
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"], "--pubkey", tmp_path / "other.pub")
    assert r.exit_code == 0, r.output


def test_unsigned_certificate_fails_when_a_signature_is_required(tmp_path):
    ws = workspace(tmp_path)
    cert = json.loads(ws["cert"].read_text())
    cert.pop("signature")
    ws["cert"].write_text(C.dumps(cert))
    assert invoke("verify", ws["cert"], "--model", ws["model"]).exit_code == 0  # nothing required
    for extra in (["--pubkey", ws["pub"]], ["--require-signature"]):
        r = invoke("verify", ws["cert"], "--model", ws["model"], *extra)
        assert r.exit_code == 1, r.output
        assert failed_names(r) == {"signature"} and "not signed" in r.output


@pytest.mark.parametrize("field,value", [
    ("value", None),  # one base64 character of the signature changed
    ("signed_sha256", "0" * 64),
    ("key_id", "0123456789abcdef"),
    ("algorithm", "rsa"),
    ("public_key", "not base64!"),
    ("value", "padding"),  # same bytes, other encoding: unused low bits of the last character set
])
def test_a_damaged_signature_fails_even_without_a_pubkey(tmp_path, field, value):
    ws = workspace(tmp_path)
    cert = json.loads(ws["cert"].read_text())
    sig = cert["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    v = sig["value"]
    if value is None:
        value = ("B" if v[0] == "A" else "A") + v[1:]
    elif value == "padding":  # 64 bytes -> 86 characters + '==': the last one has 4 unused bits
        assert v.endswith("==") and alphabet.index(v[-3]) % 16 == 0
        value = v[:-3] + alphabet[alphabet.index(v[-3]) + 1] + "=="
        assert base64.b64decode(value) == base64.b64decode(v)
    sig[field] = value
    ws["cert"].write_text(C.dumps(cert))
    r = invoke("verify", ws["cert"], "--model", ws["model"])
    assert r.exit_code == 1 and failed_names(r) == {"signature"}, r.output


def test_timestamp_is_outside_the_signed_body(tmp_path):
    ws = workspace(tmp_path)
    cert = json.loads(ws["cert"].read_text())
    cert["timestamp"] = "1999-01-01T00:00:00+00:00"
    ws["cert"].write_text(C.dumps(cert))
    assert invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"]).exit_code == 0


def test_public_key_as_base64_raw_and_bad_key_files(tmp_path):
    ws = workspace(tmp_path)
    raw = raw_public_bytes(load_public_key(ws["pub"]))
    (tmp_path / "raw.pub").write_text(base64.b64encode(raw).decode() + "\n")
    assert invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", tmp_path / "raw.pub").exit_code == 0
    (tmp_path / "junk.pub").write_text("hello\n")
    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ec.pub").write_bytes(ec_pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for bad, msg in [("junk.pub", "neither a PEM public key"), ("ec.pub", "not an Ed25519 key"), ("missing.pub", "not found")]:
        r = invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", tmp_path / bad)
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
        assert "Traceback" not in r.output


def test_sign_with_bad_keys_writes_nothing(tmp_path, monkeypatch):
    ws = workspace(tmp_path)
    body = C.body_of(json.loads(ws["cert"].read_text()))
    import types

    import certifier.pipeline as P
    import certifier.scm as S

    monkeypatch.setattr(P, "run_certify", lambda *a, **k: types.SimpleNamespace(certificate=json.loads(json.dumps(body)), bounds=None, uniform=None))
    monkeypatch.setattr(S, "scm_section", lambda *a, **k: None)  # mlp has no rational head
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "junk.pem").write_text("not a key")
    for key, msg in [("ec.pem", "not an Ed25519 key"), ("junk.pem", "cannot read signing key"), ("missing.pem", "not found")]:
        out = tmp_path / f"out-{key}.json"
        r = invoke("run", ws["model"], "--eps", "1e-2", "--out", out, "--sign", tmp_path / key, "--quiet")
        assert r.exit_code == 2 and msg in r.output, (key, r.output)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


def test_encrypted_signing_key_uses_the_passphrase_variable(tmp_path, monkeypatch):
    key = Ed25519PrivateKey.generate()
    (tmp_path / "enc.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"s3cret")))
    cert = C.finalize({"schema_version": "1.0", "spec": {"eps": 0.1}}, timestamp="t")
    monkeypatch.delenv("CERTIFY_KEY_PASSPHRASE", raising=False)
    from certifier.errors import SigningError

    with pytest.raises(SigningError, match="encrypted"):
        sign_certificate(cert, tmp_path / "enc.pem")
    monkeypatch.setenv("CERTIFY_KEY_PASSPHRASE", "wrong")
    with pytest.raises(SigningError):
        sign_certificate(cert, tmp_path / "enc.pem")
    monkeypatch.setenv("CERTIFY_KEY_PASSPHRASE", "s3cret")
    signed = sign_certificate(cert, tmp_path / "enc.pem")
    assert check_signature(signed, (key.public_key(),)).trusted
    # A certificate whose hash does not describe its body is not signed.
    with pytest.raises(SigningError, match="does not match"):
        sign_certificate({**cert, "spec": {"eps": 0.2}}, tmp_path / "enc.pem")
