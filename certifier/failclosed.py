"""Internal failures fail closed.

A rule or error model that raises (a bug in certify, or an op's corner case it does not
handle) must never crash a run halfway, and must never make a bound look finite: the
walker marks the node unsupported (its range unknown) and the rounding pass makes its
error unbounded, with the exception in the report. The adjoint refinement, which only
ever tightens a sound forward bound, falls back to that bound.

``STRICT`` (the test suite sets it) or ``CERTIFY_DEBUG=1`` (a user chasing a bug)
re-raises instead, so a failure shows its traceback rather than a silently worse bound.
"""

from __future__ import annotations

import os

STRICT = False


def reraise() -> bool:
    return STRICT or bool(os.environ.get("CERTIFY_DEBUG"))


def describe(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__
