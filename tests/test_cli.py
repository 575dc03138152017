"""The command line: exit statuses, messages, output files (issue 2 and 3 acceptance)."""

import json
import math
import re

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, cli_app

runner = CliRunner()


def run(*args):
    return runner.invoke(cli_app(), ["run", *map(str, args)])


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
import torch
from torch import nn
def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh())
def example_inputs():
    return (torch.zeros(1, 4),)
def input_domain():
    return [(-1.0, 1.0)]
"""


def assert_bad(res, out, pattern):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert re.search(pattern, res.output, re.I), res.output
    assert not out.exists()


def test_certifies_a_small_model(tmp_path):
    model = write(tmp_path, "m.py", GOOD)
    out = tmp_path / "cert.json"
    res = run(model, "--eps", "1e-2", "--out", out)
    assert res.exit_code == 0, res.output
    cert = json.loads(out.read_text())
    for key in ("schema_version", "tool", "environment", "model", "spec", "arithmetic", "layers", "uniform", "assignment", "unsupported_ops", "verdict", "body_sha256"):
        assert key in cert
    assert cert["verdict"] == "certified"
    assert cert["assignment"]["bound"] <= 1e-2
    assert {L["name"] for L in cert["layers"]} == {"0", "1"}
    assert "layer" in res.output and "verdict" in res.output


def test_missing_file(tmp_path):
    out = tmp_path / "c.json"
    assert_bad(run(tmp_path / "nope.py", "--out", out), out, "not found")


def test_syntax_error(tmp_path):
    out = tmp_path / "c.json"
    m = write(tmp_path, "m.py", "def build_model(:\n")
    assert_bad(run(m, "--out", out), out, "syntax error.*line 1")


def test_no_model(tmp_path):
    out = tmp_path / "c.json"
    m = write(tmp_path, "m.py", "import torch\ndef example_inputs():\n    return (torch.zeros(1),)\n")
    assert_bad(run(m, "--out", out), out, "defines no model")


def test_inputs_do_not_fit(tmp_path):
    out = tmp_path / "c.json"
    m = write(tmp_path, "m.py", GOOD.replace("torch.zeros(1, 4)", "torch.zeros(1, 7)"))
    assert_bad(run(m, "--out", out), out, "example inputs do not fit")


def test_not_exportable(tmp_path):
    out = tmp_path / "c.json"
    src = GOOD.replace(
        "return nn.Sequential(nn.Linear(4, 3), nn.Tanh())",
        "return M()",
    ) + """
class M(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x
"""
    m = write(tmp_path, "m.py", src)
    res = run(m, "--out", out)
    assert_bad(res, out, "torch.export could not capture")
    assert "hint" in res.output and re.search("control flow|torch.cond", res.output)


def test_domain_lo_above_hi(tmp_path):
    out = tmp_path / "c.json"
    m = write(tmp_path, "m.py", GOOD)
    assert_bad(run(m, "--domain", "1,-1", "--out", out), out, "lo > hi")
    m2 = write(tmp_path, "m2.py", GOOD.replace("(-1.0, 1.0)", "(2.0, 1.0)"))
    assert_bad(run(m2, "--out", out), out, "lo > hi")


IDS = """
import torch
from torch import nn
def build_model():
    torch.manual_seed(0)
    return nn.Embedding(10, 3)
def example_inputs():
    return (torch.zeros(1, 4, dtype=torch.long),)
def input_domain():
    return [(0, 9)]
"""


def test_domain_flag_on_a_model_without_float_inputs(tmp_path):
    """--domain overrides float inputs only; on a token-id model it would be silently ignored,
    so it is refused with the way to declare an id range."""
    out = tmp_path / "c.json"
    m = write(tmp_path, "ids.py", IDS)
    assert_bad(run(m, "--domain", "0,3", "--out", out), out, "--domain applies to float inputs.*input 0: int64")
    res = run(m, "--eps", "1e-2", "--out", out)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("eps", ["0", "-1e-3", "nan", "inf"])
def test_bad_eps(tmp_path, eps):
    out = tmp_path / "c.json"
    m = write(tmp_path, "m.py", GOOD)
    assert_bad(run(m, "--eps", eps, "--out", out), out, "eps must be a positive finite")


@pytest.mark.parametrize("bad", ["float('nan')", "float('inf')"])
def test_nonfinite_weights(tmp_path, bad):
    out = tmp_path / "c.json"
    src = GOOD.replace(
        "return nn.Sequential(nn.Linear(4, 3), nn.Tanh())",
        f"m = nn.Sequential(nn.Linear(4, 3), nn.Tanh())\n    m[0].weight.data[0, 0] = {bad}\n    return m",
    )
    m = write(tmp_path, "m.py", src)
    assert_bad(run(m, "--out", out), out, "contains (NaN|inf)")


def test_weights_checkpoint(tmp_path):
    import torch

    m = write(tmp_path, "m.py", GOOD)
    ns = {}
    exec(GOOD, ns)
    model = ns["build_model"]()
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    ckpt = tmp_path / "w.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "c.json"
    res = run(m, "--weights", ckpt, "--out", out, "--eps", "1e-2")
    assert res.exit_code == 0, res.output
    c1 = json.loads(out.read_text())
    res = run(m, "--out", tmp_path / "c2.json", "--eps", "1e-2")
    c2 = json.loads((tmp_path / "c2.json").read_text())
    assert c1["model"]["weights_sha256"] != c2["model"]["weights_sha256"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_bad(run(m, "--weights", bad, "--out", tmp_path / "c3.json"), tmp_path / "c3.json", "cannot load weights")


def test_deterministic_certificates(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run(EXAMPLES / "mlp.py", "--eps", "1e-2", "--out", a).exit_code == 0
    assert run(EXAMPLES / "mlp.py", "--eps", "1e-2", "--out", b).exit_code == 0
    ta, tb = a.read_text(), b.read_text()
    strip = lambda t: re.sub(r'"timestamp": "[^"]*"', "", t)  # noqa: E731
    assert strip(ta) == strip(tb)
    assert json.loads(ta)["body_sha256"] == json.loads(tb)["body_sha256"]


def test_exp_refused_fp16_allowed_bf16(tmp_path):
    out = tmp_path / "c.json"
    # bf16's certified bound is ~8.7e3 here: exp(12) = 1.6e5 times the bf16 rounding of x ~ 12.
    res = run(EXAMPLES / "exp_range.py", "--eps", "1e4", "--out", out)
    cert = json.loads(out.read_text())
    fp16 = cert["uniform"]["fp16"]
    assert fp16["bound"] is None and not fp16["certified"]
    assert re.search(r"overflow: exp output up to 1\.6\d*e\+05 > 65504", fp16["overflow"])
    assert cert["uniform"]["bf16"]["bound"] is not None and cert["uniform"]["bf16"]["overflow"] is None
    layer = next(L for L in cert["layers"] if "exp" in L["ops"])
    assert "exp" in layer["refused"]["fp16"] and "bf16" not in layer["refused"]
    assert layer["format"] == "bf16"  # the cheapest admissible format that certifies
    assert res.exit_code == 0
    # At a tighter eps the HNF floor refuses bf16 too, and says why.
    run(EXAMPLES / "exp_range.py", "--eps", "1e3", "--out", out)
    layer = next(L for L in json.loads(out.read_text())["layers"] if "exp" in L["ops"])
    assert layer["refused"]["bf16"].startswith("hnf: needs >= 11 significand bits")


def test_naive_softmax_refused_fp16(tmp_path):
    out = tmp_path / "c.json"
    run(EXAMPLES / "naive_softmax.py", "--eps", "1e-2", "--out", out)
    cert = json.loads(out.read_text())
    # the reported value is exp's range plus its error bound: at least exp(20) = 4.85e8,
    # and not much more (the input [-20, 20] is held exactly)
    hit = re.search(r"overflow: exp output up to ([0-9.e+]+) > 65504", cert["uniform"]["fp16"]["overflow"])
    assert hit and math.exp(20) <= float(hit.group(1)) * (1 + 5e-3) and float(hit.group(1)) <= 1.02 * math.exp(20)
    # bf16 holds exp(20) = 4.9e8 without overflow; its bound is refused for another reason
    # (the interval quotient e / sum(e) cannot bound the error) - never an overflow.
    assert not (cert["uniform"]["bf16"]["overflow"] or "").startswith("overflow")
    layer = next(L for L in cert["layers"] if "exp" in L["ops"])
    assert layer["refused"]["fp16"].startswith("overflow: exp output")
    assert not layer["refused"].get("bf16", "").startswith("overflow")


def test_not_certified_exit_1(tmp_path):
    out = tmp_path / "c.json"
    res = run(EXAMPLES / "mlp.py", "--eps", "1e-30", "--out", out)
    assert res.exit_code == 1
    assert json.loads(out.read_text())["verdict"] == "uncertifiable"


def test_json_to_stdout(tmp_path):
    m = write(tmp_path, "m.py", GOOD)
    res = run(m, "--json", "--eps", "1e-2")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["verdict"] == "certified"


ARGMAX = """
import torch
from torch import nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l = nn.Linear(8, 4)
    def forward(self, x):
        v, i = self.l(x).max(dim=-1)
        return i.to(torch.float32) + v
def build_model():
    return M().eval()
def example_inputs():
    return (torch.rand(2, 8),)
def input_domain():
    return [(0.0, 1.0)]
"""


def test_argmax_index_error_and_uniform_fallback(tmp_path):
    """An output that adds an argmax index: the index may move by up to 3 (4 classes) where
    the logits can tie, so no format's bound is below 3; and the per-layer linear model has
    no finite gain through the jump, so only the uniform route can certify. At eps 10 the
    cheapest uniform format with a certified bound is assigned (verified again), and its
    validation finds the observed error below the bound; at eps 1 nothing is certified."""
    m = write(tmp_path, "m.py", ARGMAX)
    out = tmp_path / "c.json"
    res = run(m, "--eps", "10", "--out", out, "--validate", "30")
    assert res.exit_code == 0, res.output
    cert = json.loads(out.read_text())
    assert cert["verdict"] == "certified"
    a = cert["assignment"]
    assert "uniform fallback" in a["method"]
    assert set(a["formats"].values()) == {"fp8_e4m3"}  # the cheapest format certified uniformly
    assert a["bound"] <= 10
    for f, u in cert["uniform"].items():
        assert u["bound"] >= 3.0, (f, u)  # the index span, in every format
    assert "VALIDATION FAILED" not in res.output
    out1 = tmp_path / "c1.json"
    res = run(m, "--eps", "1", "--out", out1)
    assert res.exit_code == 1
    assert json.loads(out1.read_text())["verdict"] == "uncertifiable"
