"""`certify prove`: the four verdicts, checked witnesses, exact rounding, the CLI."""

import hashlib
import json
import math
from fractions import Fraction

import mpmath
import pytest
import torch
from typer.testing import CliRunner

from certifier.formats import FORMATS
from smt.exact import distance_to_format, round_down, round_nearest, round_up, rounding_cell, same_rounding
from tests.smt_support import EXAMPLES, SCALE_MODEL, model_file, proved

FP16 = FORMATS["fp16"]


def app():
    import certifier.cli_prove  # noqa: F401 - registers the commands
    from certifier.cli import app as a

    return a


# ------------------------------------------------------------------------------ exact.py
@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e5m2", "fp8_e4m3"])
def test_round_nearest_matches_torch_on_float32_values(name):
    f = FORMATS[name]
    g = torch.Generator().manual_seed(1)
    xs = torch.cat([
        torch.randn(3000, generator=g) * 10.0 ** torch.randint(-6, 5, (3000,), generator=g),
        torch.tensor([0.0, 65504.0, 65519.0, -65520.0, 5.96e-8, 1.0 + 2**-11, 448.0, 463.0, 464.0, -465.0, 2**-9]),
    ])
    xs = xs.float()
    ref = xs.to(f.torch_dtype).double()
    for x, r in zip(xs.double().tolist(), ref.tolist()):
        mine = round_nearest(Fraction(x), f)
        if mine is None:
            # overflow: inf for formats with infinities; float8_e4m3fn casts saturate at max
            assert math.isinf(r) or abs(r) == f.max, (x, r)
        elif math.isinf(r):
            assert mine is None, x
        else:
            assert mine == Fraction(r), (x, r, mine)


def test_exact_rounding_facts():
    assert round_nearest(Fraction(1) + Fraction(1, 2**11), FP16) == 1  # tie to even
    assert round_nearest(Fraction(1) + Fraction(3, 2**11), FP16) == Fraction(1) + Fraction(2, 2**10)
    assert round_down(Fraction(1000.3), FP16) == 1000  # spacing 0.5 in [512, 1024)
    assert round_up(Fraction(1000.3), FP16) == Fraction(1000.5)
    assert distance_to_format(Fraction(302.125), FP16) == Fraction(1, 8)
    assert round_up(Fraction(70000), FP16) is None and round_down(Fraction(70000), FP16) == 65504
    lo, hi = rounding_cell(Fraction(1.0), FP16)
    assert lo == 1 - Fraction(1, 2**12) and hi == 1 + Fraction(1, 2**11)  # 1 is even: ties included
    assert same_rounding(lo, hi, FP16) and not same_rounding(lo - Fraction(1, 2**40), hi, FP16)


# ----------------------------------------------------------------------------- verdicts
def test_exp_on_fp16_only_is_impossible_with_a_checked_overflow_witness():
    rep, cert, _ = proved("exp_range.py", "fp16-only", 1e-3)
    assert rep.verdict == cert["verdict"] == "impossible"
    w = cert["witness"]
    assert w["kind"] == "overflow" and w["formats"] == ["fp16"] and w["check"]["checked"] is True
    assert w["quantities"]["scope"] == "output"
    x = w["inputs"][0]["values"][w["index"][-1]]
    assert 0.0 <= x <= 12.0
    # independent re-check: exp(x) > 65504 (mpmath at 60 digits, x is an exact binary64 number)
    mpmath.mp.dps = 60
    assert mpmath.exp(mpmath.mpf(x)) > 65504
    assert w["enclosure"][0] > 65504 and w["enclosure"][0] <= float(mpmath.exp(mpmath.mpf(x))) <= w["enclosure"][1]
    # the SMT side names the overflow in its core
    assert "overflow:(model):fp16" in cert["unsat_core"]["constraints"]


def test_kelvin_on_fp16_only_is_impossible_with_output_representability():
    rep, cert, _ = proved("kelvin_head.py", "fp16-only", 0.1)
    assert cert["verdict"] == "impossible"
    w = cert["witness"]
    assert w["kind"] == "output-representability"
    lo, hi = (Fraction(v) for v in w["enclosure"])
    eps = Fraction("0.1")
    # exact re-check from the JSON alone: every fp16 value is more than eps from [lo, hi]
    assert round_up(lo - eps, FP16) > hi + eps and round_down(hi + eps, FP16) < lo - eps
    assert 256 <= lo <= hi < 512
    # the recorded input reproduces the enclosed output (float64 evaluation of the model)
    from tests.smt_support import EXAMPLES as E  # noqa: F401
    m = rep.loaded.module.double()
    x = torch.tensor(w["inputs"][0]["values"], dtype=torch.float64).reshape(w["inputs"][0]["shape"])
    assert bool(((x >= 0) & (x <= 1)).all())
    y = float(m(x).reshape(-1)[0])
    rep.loaded.module.float()
    assert float(lo) - 1e-9 <= y <= float(hi) + 1e-9


def test_kelvin_on_t4_is_certified_and_no_witness_is_searched():
    rep, cert, _ = proved("kelvin_head.py", "nvidia-t4", 0.1)
    assert cert["verdict"] == "certified" and cert["witness"] is None
    assert cert["assignment"]["bound"] <= 0.1
    assert cert["assignment"]["formats"]["(model)"] == "fp32"  # the output must leave fp16
    assert cert["assignment"]["optimality"]["status"] == "optimal"


def test_mlp_on_bf16_only_is_uncertifiable_with_a_core_naming_layers():
    rep, cert, _ = proved("mlp.py", "bf16-only", 0.1)
    assert cert["verdict"] == "uncertifiable"
    assert cert["witness"] is None and cert["hnf_obstruction"] is None
    core = cert["unsat_core"]
    assert core["layers"] and set(core["layers"]) <= set(rep.bounds.layers)
    assert "budget" in core["constraints"] and any(c.startswith("choose:") for c in core["constraints"])
    assert any(line.startswith("layer ") for line in core["explanation"])
    assert "no witness" in cert["prove"]["statement"]


def test_no_impossible_without_a_checked_witness(monkeypatch):
    import smt.witness as W

    # every checker refuses: the search may propose candidates, but nothing is reported
    for name in ("check_overflow", "check_output", "check_indistinguishable"):
        monkeypatch.setattr(W, name, lambda *a, **k: None)
    from smt.prove import ProveOptions, run_prove

    rep = run_prove(EXAMPLES / "exp_range.py", ProveOptions(eps=1e-3, hardware="fp16-only", witness_seconds=20))
    assert rep.verdict != "impossible" and rep.certificate["witness"] is None
    # exp on [0, 12]: kappa >= e^12/2 at x = 12, D = 12: the HNF condition needs ~29 bits
    assert rep.verdict == "hnf-obstruction"
    h = rep.certificate["hnf_obstruction"]
    assert h["label"] == "hnf-obstruction (conditional on the HNF theorem)"
    assert h["required_bits"] > 11 and h["kappa_lower"] <= math.exp(12) / 2


def test_input_indistinguishability_witness():
    path = model_file("scale1000.py", SCALE_MODEL)
    rep, cert, _ = proved(str(path), "fp16-only", 0.1, ("input-indistinguishability",))
    assert cert["verdict"] == "impossible"
    w = cert["witness"]
    assert w["kind"] == "input-indistinguishability"
    xa, xb = w["inputs"][0]["values"], w["inputs_other"][0]["values"]
    assert xa != xb
    for a, b in zip(xa, xb):
        assert 1.0 <= a <= 2.0 and 1.0 <= b <= 2.0
        assert round_nearest(Fraction(a), FP16) == round_nearest(Fraction(b), FP16)
    k = w["index"][-1]
    gap = abs(Fraction(1000) * (Fraction(xa[k]) - Fraction(xb[k])))  # the exact outputs
    assert gap > 2 * Fraction("0.1")
    assert Fraction(w["quantities"]["gap_lower_exact"]) <= gap


def test_certified_models_have_no_witness():
    """Soundness cross-check: where the analysis certifies, the witness search finds nothing."""
    from smt.witness import Search, find_witness

    rep, cert, _ = proved("kelvin_head.py", "nvidia-t4", 0.1)
    s = Search(rep.loaded, rep.bounds.captured, rep.bounds, 0.1, rep.profile.storage_formats, time_limit=30)
    assert find_witness(s) is None


# ---------------------------------------------------------------------------------- CLI
def test_prove_cli_writes_certificate_and_proofs(tmp_path):
    out = tmp_path / "c.json"
    r = CliRunner().invoke(app(), ["prove", str(EXAMPLES / "exp_range.py"), "--hardware", "fp16-only", "--eps", "1e-3", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "verdict: impossible" in r.output and "overflow" in r.output
    cert = json.loads(out.read_text())
    assert cert["verdict"] == "impossible" and cert["hardware"]["name"] == "fp16-only"
    assert cert["proofs"]
    for p in cert["proofs"]:
        f = tmp_path / p["file"]
        assert f.parent.name == "c.proofs"
        assert hashlib.sha256(f.read_bytes()).hexdigest() == p["sha256"]
        assert p["result"] in ("sat", "unsat")


def test_prove_cli_certified_exit_0_and_bad_input_exit_2(tmp_path):
    pd = tmp_path / "proofs"
    r = CliRunner().invoke(app(), ["prove", str(EXAMPLES / "kelvin_head.py"), "--hardware", "nvidia-t4", "--eps", "0.1", "--proof-dir", str(pd), "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("certified")
    assert sorted(p.name.split(".")[-2] for p in pd.iterdir()) == ["attained", "optimality"]
    out = tmp_path / "x.json"
    for args in (["--hardware", "nope"], ["--hardware", "cpu", "--eps", "-1"], ["--hardware", "cpu", "--eps", "nan"]):
        r = CliRunner().invoke(app(), ["prove", str(EXAMPLES / "mlp.py"), "--out", str(out), *args])
        assert r.exit_code == 2, (args, r.output)
        assert not out.exists()


INTERMEDIATE_OVERFLOW = '''
import torch
from torch import nn


class UpDown(nn.Module):
    def forward(self, x):
        return (x * 1000.0) * 0.001  # the intermediate reaches 1e5 > 65504; the output is x


def build_model():
    return UpDown()


def example_inputs():
    return (torch.ones(1, 4),)


def input_domain():
    return [(0.0, 100.0)]
'''


def test_an_overflowing_intermediate_is_not_a_witness_of_impossibility():
    """The exact value of an intermediate above fp16's max proves neither that the computed one
    overflows (earlier roundings move it; values in (max, max + ulp/2) round to max) nor that
    the hardware cannot reach eps (another algorithm need not form that value): only an
    output's own magnitude counts. Here the output is x in [0, 100]: fp16 holds it within
    1/32 < eps, and fp16-rounded inputs change it by at most 1/32 < 2 eps."""
    rep, cert, _ = proved(str(model_file("up_down.py", INTERMEDIATE_OVERFLOW)), "fp16-only", 0.05)
    assert cert["witness"] is None and cert["verdict"] != "impossible"
    # the range refusal itself is still reported: the graph as written overflows fp16
    assert any(c.startswith("overflow:") for c in cert["unsat_core"]["constraints"])


# ------------------------------------------------------------------ audit (2026-12-02)
def test_odd_rounding_cells_survive_double_rounding_through_fp32():
    """PyTorch's float64 -> float16 cast rounds through float32. A cell around an odd fp16
    value shrunk by only 2**-30 of a spacing held points that fp32 rounds onto the tie, which
    then goes to the even neighbour: the indistinguishability witness was false for them."""
    r = 1 + Fraction(1, 2**10)  # odd in fp16
    lo, hi = rounding_cell(r, FP16)
    for x in (math.nextafter(float(lo), math.inf), math.nextafter(float(hi), -math.inf)):
        assert float(torch.tensor([x], dtype=torch.float64).half()[0]) == float(r)
    # the audit's pair: single rounding agrees, PyTorch's cast does not
    a, b = 0.6862792968745453, 0.6857910156254547
    assert torch.tensor([a, b], dtype=torch.float64).half().tolist()[0] != torch.tensor([a, b], dtype=torch.float64).half().tolist()[1]
    assert not same_rounding(Fraction(a), Fraction(b), FP16)


def test_input_indistinguishability_witness_holds_under_torch_casts():
    path = model_file("scale1000.py", SCALE_MODEL)
    _, cert, _ = proved(str(path), "fp16-only", 0.1, ("input-indistinguishability",))
    w = cert["witness"]
    xa = torch.tensor(w["inputs"][0]["values"], dtype=torch.float64)
    xb = torch.tensor(w["inputs_other"][0]["values"], dtype=torch.float64)
    assert not torch.equal(xa, xb)
    assert torch.equal(xa.half(), xb.half())  # PyTorch's own cast (through fp32) agrees


def test_verify_rechecks_the_witness_and_rejects_a_false_one(tmp_path):
    """certify verify re-checks an impossible certificate's witness in exact arithmetic; a
    witness moved to an input where the output is representable (hash recomputed, unsigned)
    fails, and so does one whose formats do not cover the hardware."""
    import copy

    from certifier.certificate import body_hash
    from certifier.gate import check_consistency, check_witness, model_facts

    _, cert, _ = proved("kelvin_head.py", "fp16-only", 0.1)
    model = EXAMPLES / "kelvin_head.py"
    assert cert["verdict"] == "impossible"
    facts = model_facts(cert, model)
    ok = check_witness(cert, facts)
    assert ok.passed, ok.detail
    bad = copy.deepcopy(cert)
    vals = bad["witness"]["inputs"][0]["values"]
    bad["witness"]["inputs"][0]["values"] = [0.0 for _ in vals]  # the output there is exactly representable
    bad["body_sha256"] = body_hash(bad)
    assert not check_witness(bad, facts).passed
    bad2 = copy.deepcopy(cert)
    bad2["witness"]["formats"] = ["bf16"]
    assert not check_witness(bad2, facts).passed
    none = copy.deepcopy(cert)
    none["witness"] = None
    none["body_sha256"] = body_hash(none)
    assert not check_consistency(none).passed


def test_an_hnf_obstruction_certificate_is_consistent(monkeypatch):
    """certify verify used to refuse the verdict as unknown: such a certificate never passed."""
    import smt.witness as W
    from certifier.gate import VERDICTS, check_consistency
    from smt.prove import ProveOptions, run_prove

    for name in ("check_overflow", "check_output", "check_indistinguishable"):
        monkeypatch.setattr(W, name, lambda *a, **k: None)
    assert "hnf-obstruction" in VERDICTS
    rep = run_prove(EXAMPLES / "exp_range.py", ProveOptions(eps=1e-3, hardware="fp16-only", witness_seconds=5))
    assert rep.verdict == "hnf-obstruction"
    assert check_consistency(rep.certificate).passed
