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
import math
import os
import tempfile
from pathlib import Path

from certifier.errors import CertificateError, OutputError

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


def _default_mode() -> int:
    """Permissions an ordinary ``open(path, "w")`` would give: 0o666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, text: str | bytes, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one.

    The data goes to a temporary file in the same directory, is flushed to disk, and is renamed
    over ``path`` (atomic on POSIX and Windows). On any failure, an interrupt included, the
    temporary file is removed and ``path`` keeps its old content (or stays absent). ``mode``
    sets the permissions (default: what the umask gives an ordinary file; keys use 0o600).
    An ``OSError`` (no such directory, no permission, disk full) becomes an :class:`OutputError`.
    """
    path = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"number {text} is out of range (not a finite binary64 value)")
    return x


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a certificate")


def parse_certificate(text: str, source: str = "certificate") -> dict:
    """Parse certificate text into a JSON object, strictly.

    Refused (:class:`CertificateError`): text that is not JSON or is truncated, a top level
    that is not an object, duplicate keys (readers would disagree on which value counts),
    NaN / infinite numbers (a certificate writes unbounded values as ``null``), and strings with
    no UTF-8 form (lone surrogates), which have no canonical bytes to hash.
    """
    if not text.strip():
        raise CertificateError(f"{source} is empty")
    try:
        cert = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_float=_finite_float, parse_constant=_no_constant
        )
    except json.JSONDecodeError as e:
        body = text.strip()
        cut = e.pos >= len(body) - 1 or (body.startswith("{") and not body.endswith("}"))
        kind = "truncated" if body and cut else "not valid JSON"
        raise CertificateError(f"{source} is {kind} (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:
        raise CertificateError(f"{source} is not a valid certificate: {e}") from None
    if not isinstance(cert, dict):
        raise CertificateError(f"{source} is not a JSON object")
    try:
        canonical(cert)
    except (ValueError, UnicodeError) as e:  # e.g. a lone surrogate escape: no canonical bytes
        raise CertificateError(f"{source} is not a valid certificate: {e}") from None
    return cert


def read_certificate(path: str | Path) -> dict:
    """Read and parse a certificate file without checking its fields (see :func:`parse_certificate`)."""
    path = Path(path)
    if not path.exists():
        raise CertificateError(f"certificate not found: {path}")
    if not path.is_file():
        raise CertificateError(f"not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CertificateError(f"cannot read certificate {path}: {e}") from None
    return parse_certificate(text, f"certificate {path}")


def load_certificate(path: str | Path) -> dict:
    """Read a certificate; a missing, corrupt, truncated or non-JSON file is a CertificateError."""
    cert = read_certificate(path)
    for key in ("schema_version", "model", "spec", "verdict", "body_sha256"):
        if key not in cert:
            raise CertificateError(f"certificate {path} has no {key!r} field: not a certify certificate, or damaged")
    return cert
