"""Exception types the library raises for problems the user can fix.

The CLI maps every :class:`CertifyError` to one clear message and exit status 2 (bad input or
usage); the library itself never prints or exits.
"""

from __future__ import annotations


class CertifyError(Exception):
    """A problem with the user's input: one message, an optional hint, exit status 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ModelFileError(CertifyError):
    """The model file is missing, does not import, or defines no model/inputs."""


class InputError(CertifyError):
    """Example inputs, domain or weights do not fit the model."""


class ExportError(CertifyError):
    """torch.export could not capture the model."""


class SpecError(CertifyError):
    """A bad option value (eps, domain, format names, ...)."""


class CertificateError(CertifyError):
    """A certificate file that is missing, corrupt, truncated or not JSON."""


class OutputError(CertifyError):
    """An output file (certificate, key, config) cannot be written."""


class SigningError(CertifyError):
    """A signing or public key that is missing, unreadable or not Ed25519, or keys that exist."""


class VerifyError(CertifyError):
    """``certify verify`` cannot evaluate its conditions (bad option, missing profile, model
    that does not load): bad input, exit 2. A *failed* condition is not an error: it is a
    result (exit 1)."""
