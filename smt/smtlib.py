"""SMT-LIB2 text of every query, its sha256, and replay in z3 and cvc5 (DESIGN 4.5).

Every query the tool asks a solver is written as a self-contained SMT-LIB2 script (QF_LIA:
0/1 integer choice variables, exact integer coefficients) so that a third party can re-check it with another
solver: ``cvc5 file.smt2`` (cvc5 is on PyPI) must print the recorded result. The certificate
lists each file with its sha256, the kind of query and the result z3 gave.

Coefficients are exact integers (smt.allocate scales the binary64 ones by a common
denominator). Symbols are quoted (``|layer:encoder.layer.0:fp16|``), with ``|`` and ``\\`` replaced by ``_``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def sym(name: str) -> str:
    """A quoted SMT-LIB2 symbol for ``name``."""
    return "|" + name.replace("|", "_").replace("\\", "_") + "|"


def add(terms: Sequence[str], zero: str = "0.0") -> str:
    if not terms:
        return zero
    if len(terms) == 1:
        return terms[0]
    return "(+ " + " ".join(terms) + ")"


def conj(terms: Sequence[str]) -> str:
    if not terms:
        return "true"
    if len(terms) == 1:
        return terms[0]
    return "(and " + " ".join(terms) + ")"


def named(expr: str, name: str) -> str:
    return f"(assert (! {expr} :named {sym(name)}))"


@dataclass
class SmtQuery:
    """One SMT-LIB2 query: its text (ending in ``(check-sat)``), what it proves, and the
    result z3 gave (``sat`` / ``unsat`` / ``unknown``)."""

    kind: str
    text: str
    result: str
    seconds: float = 0.0
    claim: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def z3_check(text: str, timeout_ms: int | None = None) -> tuple[str, list[str]]:
    """Run a script's assertions in z3; the result and, when unsat, the names in the core."""
    import z3

    s = z3.Solver()
    s.set(unsat_core=True)
    s.set("core.minimize", True)
    if timeout_ms:
        s.set(timeout=timeout_ms)
    s.from_string(text)
    r = s.check()
    core = [str(c) for c in s.unsat_core()] if r == z3.unsat else []
    return str(r), core


def cvc5_check(text: str) -> str:
    """Run a whole script in cvc5 (its Python API parses SMT-LIB2); the last check-sat result."""
    import cvc5

    slv = cvc5.Solver()
    slv.setOption("produce-unsat-cores", "true")
    sm = cvc5.SymbolManager(slv.getTermManager() if hasattr(slv, "getTermManager") else slv)
    parser = cvc5.InputParser(slv, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "query")
    last = "unknown"
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out = cmd.invoke(slv, sm).strip()
        if out in ("sat", "unsat", "unknown"):
            last = out
    return last


def write_proofs(queries: Sequence[SmtQuery], directory: str | Path, prefix: str, relative_to: str | Path | None = None) -> list[dict]:
    """Write each query as ``<prefix>.<n>.<kind>.smt2`` in ``directory``; the certificate's
    ``proofs`` list (file path relative to ``relative_to`` when it is inside it)."""
    from certifier.certificate import write_atomic

    d = Path(directory)
    out = []
    for i, q in enumerate(queries):
        path = d / f"{prefix}.{i + 1}.{q.kind}.smt2"
        write_atomic(path, q.text)
        name = str(path)
        if relative_to is not None:
            try:
                name = str(path.resolve().relative_to(Path(relative_to).resolve()))
            except ValueError:
                name = str(path)
        out.append(proof_entry(q, name))
    return out


def proof_entry(q: SmtQuery, file: str | None) -> dict:
    """The certificate's record of one query."""
    return {"file": file, "sha256": q.sha256, "result": q.result, "kind": q.kind, "logic": q.meta.get("logic", "QF_LIA"), "claim": q.claim, "solver": "z3"}
