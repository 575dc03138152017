"""Internal failures fail closed (certifier.failclosed): a rule or an error model that
raises makes the node unsupported and every bound through it unbounded, with the exception
in the report; a failing adjoint refinement leaves the sound forward bound. Never a crash
halfway, never a bound that looks finite."""

import json
import math
from pathlib import Path

import pytest
import torch

from certifier import adjoint, failclosed
from certifier.adjoint import certified_errors
from certifier.capture import capture
from certifier.loader import InputSpec, LoadedModel
from certifier.rounding import run_errors
from certifier.walker import analyze_bounds
from curvature_rules._common import ElementwiseError
from test_cli import GOOD, run, write

CFG = [{"*": f} for f in ("fp32", "bf16", "fp16")]


def _boom(*a, **k):
    raise RuntimeError("boom\nsecond line")


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.setattr(failclosed, "STRICT", False)
    monkeypatch.delenv("CERTIFY_DEBUG", raising=False)


def _analysis():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).eval()
    lm = LoadedModel(Path("t.py"), "t", m, (torch.zeros(1, 4),), [InputSpec((1, 4), torch.float32, -1.0, 1.0)], "")
    return analyze_bounds(lm, capture(lm))


def test_a_failing_error_model_makes_the_bound_unbounded(monkeypatch, lenient):
    ba = _analysis()
    assert all(math.isfinite(b) for b in run_errors(ba, CFG).bound)
    monkeypatch.setattr(ElementwiseError, "propagate", _boom)
    res = run_errors(ba, CFG)
    assert all(b == math.inf for b in res.bound)
    for ov in res.overflow:
        assert ov is not None and "error model failed: RuntimeError: boom" in ov.reason()
        assert "second line" not in ov.reason()
    failed = [u for u in ba.unsupported if "error model failed" in u["reason"]]
    assert len(failed) == 1 and "tanh" in failed[0]["op"]
    run_errors(ba, CFG)  # a second pass reports the node once
    assert len([u for u in ba.unsupported if "error model failed" in u["reason"]]) == 1


def test_a_failing_adjoint_pass_keeps_the_forward_bound(monkeypatch, lenient):
    ba = _analysis()
    # the forward pass certified_errors runs (exact weight roundings: its adjoint pass fits)
    fwd = run_errors(ba, CFG, keep_nodes=False, exact_weights=True).bound
    assert certified_errors(ba, CFG, keep_nodes=False).method == ["adjoint"] * 3
    monkeypatch.setattr(adjoint._Adjoint, "run", _boom)
    res = certified_errors(ba, CFG, keep_nodes=False)
    assert res.bound == fwd
    assert all(m.startswith("forward (adjoint pass failed: RuntimeError: boom") for m in res.method)


def test_a_failing_rule_marks_the_node_unsupported(monkeypatch, lenient):
    from curvature_rules import registry

    real = registry.lookup

    def lookup(target):
        rule = real(target)
        return (lambda inp: _boom()) if "tanh" in str(target) else rule

    monkeypatch.setattr("certifier.walker.lookup", lookup)
    ba = _analysis()
    assert [u["reason"] for u in ba.unsupported] == ["rule failed: RuntimeError: boom"]
    assert all(b == math.inf for b in run_errors(ba, CFG).bound)


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setattr(failclosed, "STRICT", False)
    monkeypatch.setenv("CERTIFY_DEBUG", "1")
    ba = _analysis()
    monkeypatch.setattr(ElementwiseError, "propagate", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_errors(ba, CFG)


def test_cli_reports_the_failure_and_exits_1(tmp_path, monkeypatch, lenient):
    """Not exit 3 (a crash): the run finishes, says what failed, and is not certified."""
    monkeypatch.setattr(ElementwiseError, "propagate", _boom)
    out = tmp_path / "cert.json"
    res = run(write(tmp_path, "m.py", GOOD), "--eps", "1e-2", "--out", out)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "unsupported ops" in res.output and "tanh" in res.output
    cert = json.loads(out.read_text())
    assert cert["verdict"] == "uncertifiable"
    assert any("error model failed: RuntimeError: boom" in u["reason"] for u in cert["unsupported_ops"])
    assert not any(u["certified"] for u in cert["uniform"].values())
