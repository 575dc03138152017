"""Every SMT-LIB2 file the tool writes replays in cvc5 (a second solver) to the result z3
gave, and its sha256 is the one the certificate records."""

import hashlib
import json

import pytest
from typer.testing import CliRunner

from smt.smtlib import cvc5_check, z3_check
from tests.smt_support import EXAMPLES, proved

CASES = [
    ("exp_range.py", "fp16-only", 1e-3),  # infeasible: overflow in the core
    ("kelvin_head.py", "fp16-only", 0.1),  # infeasible: budget
    ("kelvin_head.py", "nvidia-t4", 0.1),  # optimal: attained sat, cheaper unsat
    ("mlp.py", "bf16-only", 0.1),  # infeasible, several layers
    ("mlp.py", "nvidia-a100", 1e-3),  # optimal over 6 layers x 5 formats
]


@pytest.mark.parametrize("example, hw, eps", CASES)
def test_proof_files_replay_in_cvc5(example, hw, eps):
    _, cert, d = proved(example, hw, eps)
    files = sorted(d.iterdir())
    assert len(files) == len(cert["proofs"]) >= 2
    kinds = set()
    for p in cert["proofs"]:
        f = d / p["file"] if not p["file"].startswith("/") else p["file"]
        text = open(f).read()
        assert hashlib.sha256(text.encode()).hexdigest() == p["sha256"]
        assert p["result"] in ("sat", "unsat")
        assert cvc5_check(text) == p["result"], (p["file"], p["kind"])
        kinds.add(p["kind"])
    if cert["verdict"] == "certified":
        assert {"attained", "optimality"} <= kinds
    else:
        assert {"infeasibility", "unsat-core"} <= kinds


def test_a_tampered_optimality_file_changes_result():
    """The replay is not vacuous: raising the cost bound of the optimality query to the
    optimum itself makes it satisfiable in both solvers."""
    _, cert, d = proved("mlp.py", "nvidia-a100", 1e-3)
    p = next(p for p in cert["proofs"] if p["kind"] == "optimality")
    text = open(d / p["file"]).read()
    att = next(p for p in cert["proofs"] if p["kind"] == "attained")
    import re

    k_at = int(re.search(r"\(assert \(<= cost (\d+)\)\)", open(d / att["file"]).read()).group(1))
    tampered = re.sub(r"\(assert \(<= cost \d+\)\)", f"(assert (<= cost {k_at}))", text)
    assert tampered != text
    assert cvc5_check(tampered) == "sat" and z3_check(tampered)[0] == "sat"


def test_run_with_z3_writes_replayable_proofs(tmp_path):
    import certifier.cli_prove  # noqa: F401
    from certifier.cli import app

    out = tmp_path / "cert.json"
    r = CliRunner().invoke(app, ["run", str(EXAMPLES / "cnn.py"), "--eps", "1e-2", "--solver", "z3", "--formats", "fp32,tf32,bf16,fp16", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    cert = json.loads(out.read_text())
    assert cert["assignment"]["optimality"]["status"] == "optimal"
    assert cert["proofs"]
    for p in cert["proofs"]:
        text = (tmp_path / p["file"]).read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == p["sha256"]
        assert cvc5_check(text) == p["result"]
    r = CliRunner().invoke(app, ["run", str(EXAMPLES / "cnn.py"), "--proof-dir", str(tmp_path / "p")])
    assert r.exit_code == 2 and "needs --solver z3" in r.output
