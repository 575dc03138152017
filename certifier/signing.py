"""Ed25519 signatures on certificates (``certify keygen``, ``certify run --sign``).

A signature covers the certificate *body*: the exact canonical bytes whose sha256 is
``body_sha256`` (see :mod:`certifier.certificate`). It is stored outside the body, so signing
does not change the body hash::

    "signature": {
      "algorithm": "ed25519",
      "public_key": <base64 of the raw 32-byte public key>,
      "key_id": <first 16 hex digits of sha256(raw public key)>,
      "signed_sha256": <the body_sha256 that was signed>,
      "value": <base64 of the 64-byte signature over the canonical body bytes>
    }

The embedded public key only says *which* key signed; trust comes from the verifier's own copy
of the public key (``certify verify --pubkey``). Key files: ``NAME.pem`` holds the private key
(PKCS#8 PEM, unencrypted, mode 0600; an encrypted PKCS#8 key is read with the passphrase in
``$CERTIFY_KEY_PASSPHRASE``), ``NAME.pub`` the public key (SubjectPublicKeyInfo PEM). A public
key file may also hold the base64 raw key, as printed by ``certify keygen``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from certifier.certificate import body_hash, body_of, canonical, write_atomic
from certifier.errors import SigningError

ALGORITHM = "ed25519"
PASSPHRASE_ENV = "CERTIFY_KEY_PASSPHRASE"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str
    public_key_b64: str


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    """A short fingerprint: the first 16 hex digits of sha256(raw public key)."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def key_paths(name: str | Path) -> tuple[Path, Path]:
    """``NAME`` -> (``NAME.pem``, ``NAME.pub``); a trailing .pem or .pub on NAME is dropped."""
    p = Path(name)
    if p.suffix in (".pem", ".pub"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".pem"), p.with_name(p.name + ".pub")


def generate_keypair(name: str | Path, force: bool = False) -> KeyPair:
    """Write a new Ed25519 key pair to ``NAME.pem`` (0600) and ``NAME.pub``; never overwrite
    existing key files unless ``force``. Each file is written atomically."""
    priv_path, pub_path = key_paths(name)
    if not force:
        existing = [str(p) for p in (priv_path, pub_path) if p.exists() or p.is_symlink()]
        if existing:
            raise SigningError(f"key file exists: {', '.join(existing)}", "choose another name, or pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key()
    pub_pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_existed = pub_path.exists()
    write_atomic(pub_path, pub_pem)
    try:
        write_atomic(priv_path, priv_pem, mode=0o600)
    except BaseException:
        if not pub_existed:
            pub_path.unlink(missing_ok=True)
        raise
    raw = raw_public_bytes(pub)
    return KeyPair(priv_path, pub_path, key_id(raw), base64.b64encode(raw).decode())


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise SigningError(f"{what} not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise SigningError(f"cannot read {what} {path}: {e.strerror or e}") from None


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    data = _read(path, "signing key")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:
        raise SigningError(f"signing key {path} is encrypted", f"put its passphrase in ${PASSPHRASE_ENV}") from None
    except ValueError as e:
        raise SigningError(f"cannot read signing key {path}: {e}", "use a PKCS#8 PEM key made by `certify keygen`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"signing key {path} is a {type(key).__name__}, not an Ed25519 key", "make one with `certify keygen NAME`")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read a public key file: SubjectPublicKeyInfo PEM, or the base64 of the raw 32 bytes."""
    path = Path(path)
    data = _read(path, "public key")
    if data.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in data:
            raise SigningError(f"{path} holds a private key", "pass the .pub file to --pubkey; keep the .pem secret")
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise SigningError(f"cannot read public key {path}: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningError(f"public key {path} is a {type(key).__name__}, not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SigningError(
            f"cannot read public key {path}: neither a PEM public key nor the base64 of a raw 32-byte Ed25519 key"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_certificate(cert: dict, key_path: str | Path) -> dict:
    """Return a copy of a finalized certificate with a ``signature`` over its canonical body.

    Refuses a certificate whose recorded ``body_sha256`` does not match its body (signing it
    would vouch for a hash that does not describe the content)."""
    key = load_private_key(key_path)
    h = body_hash(cert)
    if cert.get("body_sha256") != h:
        raise SigningError("the certificate's body_sha256 does not match its body; finalize it before signing")
    raw = raw_public_bytes(key.public_key())
    out = dict(cert)
    out["signature"] = {
        "algorithm": ALGORITHM,
        "public_key": base64.b64encode(raw).decode(),
        "key_id": key_id(raw),
        "signed_sha256": h,
        "value": base64.b64encode(key.sign(canonical(body_of(cert)))).decode(),
    }
    return out


def _b64_canonical(text: object) -> bytes:
    """Decode base64, accepting only the one encoding ``b64encode`` gives.

    NB: a decoder ignores the unused low bits of the last character, so 'AB==' and 'AC=='
    decode alike; without this check the signature block could be edited without effect."""
    if not isinstance(text, str):
        raise TypeError("not a string")
    data = base64.b64decode(text, validate=True)
    if base64.b64encode(data).decode() != text:
        raise ValueError("non-canonical base64")
    return data


@dataclass(frozen=True)
class SignatureStatus:
    """The outcome of checking a certificate's signature (never raises for a bad one)."""

    present: bool
    valid: bool  # the signature verifies over this body under the key it names
    trusted: bool  # ... and that key is one of the trusted keys
    key_id: str | None
    detail: str


def check_signature(cert: dict, trusted: Sequence[Ed25519PublicKey] = ()) -> SignatureStatus:
    """Check the signature block against the certificate's body.

    With ``trusted`` keys, the signature must verify under one of them (the embedded key is
    only used to name the signer). Without, it is checked against the embedded key: that
    proves the body is unchanged since signing, not who signed it.
    """
    sig = cert.get("signature")
    if sig is None:
        return SignatureStatus(False, False, False, None, "the certificate is not signed")
    if not isinstance(sig, dict):
        return SignatureStatus(True, False, False, None, "the signature block is not an object")
    if sig.get("algorithm") != ALGORITHM:
        return SignatureStatus(True, False, False, None, f"unsupported signature algorithm {sig.get('algorithm')!r} (expected {ALGORITHM})")
    try:
        raw = _b64_canonical(sig.get("public_key"))
        value = _b64_canonical(sig.get("value"))
        embedded = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError):
        return SignatureStatus(True, False, False, None, "the signature block is malformed (public_key or value is not canonical base64 of the right length)")
    kid = key_id(raw)
    if sig.get("key_id") != kid:
        return SignatureStatus(True, False, False, kid, f"the signature's key_id {sig.get('key_id')!r} does not match its public key ({kid})")
    body = canonical(body_of(cert))
    h = hashlib.sha256(body).hexdigest()
    if sig.get("signed_sha256") != h:
        return SignatureStatus(True, False, False, kid, f"the signature was made over body {str(sig.get('signed_sha256'))[:16]}..., not this body ({h[:16]}...)")
    try:
        embedded.verify(value, body)
    except InvalidSignature:
        return SignatureStatus(True, False, False, kid, f"the signature by key {kid} does not verify over this body")
    if not trusted:
        return SignatureStatus(True, True, False, kid, f"valid signature by key {kid} (embedded key; pass --pubkey to check who signed)")
    trusted_raw = [raw_public_bytes(k) for k in trusted]
    if raw not in trusted_raw:
        ids = ", ".join(key_id(r) for r in trusted_raw)
        return SignatureStatus(True, True, False, kid, f"signed by key {kid}, which is not a trusted key ({ids})")
    # NB: verify again under the trusted key object itself, so trust never rests on the
    # embedded copy alone.
    try:
        trusted[trusted_raw.index(raw)].verify(value, body)
    except InvalidSignature:  # pragma: no cover - same bytes as the embedded key
        return SignatureStatus(True, False, False, kid, f"the signature does not verify under trusted key {kid}")
    return SignatureStatus(True, True, True, kid, f"valid signature by trusted key {kid}")
