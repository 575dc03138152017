"""Certificate serialization: canonical JSON, the body hash, atomic writes.

The *body* of a certificate is every top-level key except :data:`OUTSIDE_BODY` (the timestamp,
the body hash and the signature). ``body_sha256`` is the sha256 of the body's canonical JSON
(sorted keys, no whitespace, floats in Python's shortest round-trip form, no NaN/inf: an
unbounded value is ``null``), so the same model, weights and options give the same bytes and
the same hash; the timestamp is kept outside it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from certifier.errors import CertificateError

OUTSIDE_BODY = ("timestamp", "body_sha256", "signature")


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def body_of(cert: dict) -> dict:
    return {k: v for k, v in cert.items() if k not in OUTSIDE_BODY}


def body_hash(cert: dict) -> str:
    return hashlib.sha256(canonical(body_of(cert))).hexdigest()


def finalize(cert: dict, timestamp: str | None = None) -> dict:
    """Add the body hash and a timestamp (outside the hashed body)."""
    out = body_of(cert)
    out["body_sha256"] = body_hash(out)
    out["timestamp"] = timestamp or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    if "signature" in cert:
        out["signature"] = cert["signature"]
    return out


def dumps(cert: dict) -> str:
    return json.dumps(cert, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_certificate(path: str | Path) -> dict:
    """Read a certificate; a missing, corrupt, truncated or non-JSON file is a CertificateError."""
    path = Path(path)
    if not path.exists():
        raise CertificateError(f"certificate not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CertificateError(f"cannot read certificate {path}: {e}") from None
    try:
        cert = json.loads(text)
    except json.JSONDecodeError as e:
        kind = "truncated" if e.pos >= len(text.rstrip()) - 1 else "not valid JSON"
        raise CertificateError(f"certificate {path} is {kind} (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(cert, dict):
        raise CertificateError(f"certificate {path} is not a JSON object")
    for key in ("schema_version", "model", "spec", "verdict", "body_sha256"):
        if key not in cert:
            raise CertificateError(f"certificate {path} has no {key!r} field: not a certify certificate, or damaged")
    return cert
