"""Deployment conditions of `certify verify`: verdict, eps, format floor/ceiling/set, hardware."""

from __future__ import annotations

import copy
import json
import sys
import types

import pytest

from certifier import certificate as C
from certifier import gate
from certifier.errors import VerifyError
from certifier.formats import FORMAT_ORDER
from tests.gate_support import base_certificate, failed_names, invoke, workspace

# The mlp certificate at eps 5e-3 runs layer 0 (the input's view) in fp16, layer 1 (the first
# Linear) in fp64 and the rest in fp32.
FP64_LAYERS = {"1"}
FP16_LAYERS = {"0"}


def test_base_certificate_assignment_is_what_these_tests_assume():
    fm = json.loads(base_certificate())["assignment"]["formats"]
    assert {k for k, f in fm.items() if f == "fp64"} == FP64_LAYERS
    assert {k for k, f in fm.items() if f == "fp16"} == FP16_LAYERS
    assert set(fm.values()) == {"fp16", "fp32", "fp64"}


def _synthetic(formats: dict[str, str], verdict: str = "certified") -> dict:
    """The base certificate with other per-layer formats (hash recomputed, unsigned)."""
    cert = json.loads(base_certificate())
    cert.pop("signature")
    for L in cert["layers"]:
        L["format"] = formats[L["name"]]
    cert["assignment"]["formats"] = dict(formats)
    cert["spec"]["candidate_formats"] = list(FORMAT_ORDER)
    cert["verdict"] = verdict
    cert["assignment"]["certified"] = verdict == "certified"
    return C.finalize(cert, timestamp="t")


def _pure(cert: dict, **cond) -> gate.Verification:
    facts = gate.ModelFacts(cert["model"]["source_sha256"], cert["model"]["weights_sha256"])
    return gate.verify_certificate(cert, facts, gate.Conditions(**cond))


@pytest.mark.parametrize("fmt,floor,ok", [
    ("bf16", "fp16", False),  # bf16 has 8 significand bits, fp16 11: bf16 is below fp16
    ("fp16", "bf16", True),
    ("tf32", "fp16", True),  # 11 bits each: a tie passes
    ("fp8_e4m3", "bf16", False),
    ("fp32", "fp32", True),
    ("fp16", "fp32", False),
])
def test_min_format_compares_significand_bits(fmt, floor, ok):
    formats = {str(i): "fp32" for i in range(6)}
    formats["3"] = fmt
    v = _pure(_synthetic(formats), min_format=floor)
    assert v.passed is ok, [c.to_json() for c in v.failed]
    if not ok:
        assert [c.name for c in v.failed] == ["min-format"] and "layer 3 runs in " + fmt in v.failed[0].detail


@pytest.mark.parametrize("fmt,ceiling,ok", [("fp64", "fp32", False), ("fp32", "fp32", True), ("fp16", "bf16", False), ("bf16", "fp16", True)])
def test_max_format_is_a_precision_ceiling(fmt, ceiling, ok):
    formats = {str(i): "bf16" for i in range(6)}
    formats["2"] = fmt
    v = _pure(_synthetic(formats), max_format=ceiling)
    assert v.passed is ok
    if not ok:
        assert [c.name for c in v.failed] == ["max-format"]


def test_format_conditions_on_the_real_certificate(tmp_path):
    ws = workspace(tmp_path)
    base = ["verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"]]
    assert invoke(*base, "--min-format", "fp16", "--allow-formats", "fp16,fp32,fp64", "--max-format", "fp64").exit_code == 0
    r = invoke(*base, "--min-format", "fp32")
    assert r.exit_code == 1 and failed_names(r) == {"min-format"}
    assert "layer 0 runs in fp16" in r.output and "layer 1 " not in r.output and "layer 3 " not in r.output
    r = invoke(*base, "--allow-formats", "fp16,fp32")
    assert r.exit_code == 1 and failed_names(r) == {"allow-formats"}
    assert "layer 1 runs in fp64" in r.output and "layer 0 " not in r.output and "layer 3 " not in r.output and "layer 5 " not in r.output
    r = invoke(*base, "--max-format", "fp32")
    assert r.exit_code == 1 and failed_names(r) == {"max-format"}
    r = invoke(*base, "--min-format", "fp64")
    assert r.exit_code == 1 and failed_names(r) == {"min-format"}
    assert "layer 0 runs in fp16" in r.output and "layer 2 runs in fp32" in r.output and "layer 1 " not in r.output


def test_every_failed_condition_is_named_in_text_and_json(tmp_path):
    ws = workspace(tmp_path)
    assert invoke("keygen", tmp_path / "other").exit_code == 0
    args = ["verify", ws["cert"], "--model", ws["model"], "--pubkey", tmp_path / "other.pub", "--max-eps", "1e-3",
            "--min-format", "fp64", "--allow-formats", "fp32"]
    want = {"signature", "eps", "min-format", "allow-formats"}
    r = invoke(*args)
    assert r.exit_code == 1
    assert failed_names(r) == want
    assert "verification FAILED (4 of 9 checks)" in r.output
    r = invoke(*args, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert set(doc["failed"]) == want and doc["passed"] is False
    assert {c["name"] for c in doc["checks"] if not c["passed"]} == want
    assert doc["body_sha256"] == json.loads(ws["cert"].read_text())["body_sha256"]
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["passed"] is True


def test_required_verdict(tmp_path):
    formats = {str(i): "fp32" for i in range(6)}
    cert = _synthetic(formats, verdict="uncertifiable")
    assert [c.name for c in _pure(cert).failed] == ["verdict"]
    assert _pure(cert, require_verdict=None).passed
    assert _pure(cert, require_verdict="uncertifiable").passed
    ws = workspace(tmp_path)
    ws["cert"].write_text(C.dumps(cert))
    r = invoke("verify", ws["cert"], "--model", ws["model"])
    assert r.exit_code == 1 and failed_names(r) == {"verdict"} and "verdict is 'uncertifiable'" in r.output
    assert invoke("verify", ws["cert"], "--model", ws["model"], "--require-verdict", "any").exit_code == 0
    assert invoke("verify", ws["cert"], "--model", ws["model"], "--require-verdict", "maybe").exit_code == 2


def test_forged_verdict_fails_consistency():
    cert = json.loads(base_certificate())
    cert.pop("signature")
    cert["assignment"]["certified"] = False  # verdict still "certified"
    cert = C.finalize(cert, timestamp="t")
    assert [c.name for c in _pure(cert).failed] == ["consistency"]
    cert2 = copy.deepcopy(cert)
    cert2["assignment"]["certified"] = True
    cert2["layers"][2]["format"] = "fp16"  # layers and assignment disagree
    cert2 = C.finalize(cert2, timestamp="t")
    v = _pure(cert2)
    assert [c.name for c in v.failed] == ["consistency"] and "disagree on 2" in v.failed[0].detail


def test_bad_condition_values_are_bad_input(tmp_path):
    ws = workspace(tmp_path)
    base = ["verify", ws["cert"], "--model", ws["model"]]
    for extra, msg in [(["--min-format", "fp12"], "unknown format"), (["--allow-formats", "fp32,int4"], "unknown format"),
                       (["--max-eps", "-1"], "--max-eps"), (["--max-eps", "nan"], "--max-eps"), (["--allow-formats", ","], "at least one")]:
        r = invoke(*base, *extra)
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)


# ------------------------------------------------------------------ hardware profiles
@pytest.fixture
def fake_profiles(monkeypatch):
    """A stand-in for smt.hardware with the documented interface get_profile(name).formats."""
    profiles = {"fp32-only": ("fp32", "tf32", "bf16", "fp16"), "hpc": ("fp64", "fp32", "fp16")}

    def get_profile(name):
        if name not in profiles:
            raise KeyError(f"no profile {name!r}")
        return types.SimpleNamespace(name=name, formats=profiles[name])

    mod = types.ModuleType("smt.hardware")
    mod.get_profile = get_profile
    monkeypatch.setitem(sys.modules, "smt.hardware", mod)
    return profiles


def test_hardware_condition_against_a_profile(tmp_path, fake_profiles):
    ws = workspace(tmp_path)
    base = ["verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"]]
    assert invoke(*base, "--hardware", "hpc").exit_code == 0
    r = invoke(*base, "--hardware", "fp32-only")
    assert r.exit_code == 1 and failed_names(r) == {"hardware"}
    assert "layer 1 runs in fp64, which hardware profile fp32-only does not offer" in r.output
    r = invoke(*base, "--hardware", "tpu9000")
    assert r.exit_code == 2 and "unknown hardware profile 'tpu9000'" in r.output


def test_hardware_condition_with_the_real_profiles():
    from smt.hardware import load_profiles

    names = sorted(load_profiles())
    assert {"nvidia-a100", "nvidia-h100", "fp16-only", "bf16-only"} <= set(names)
    cert = json.loads(base_certificate())
    used = set(cert["assignment"]["formats"].values())
    outcomes = set()
    for name in names:
        formats = gate.resolve_hardware(name)
        assert formats == tuple(load_profiles()[name].formats)
        v = _pure(cert, hardware=name, hardware_formats=formats)
        assert v.passed is used.issubset(formats), name
        outcomes.add(v.passed)
    assert outcomes == {True, False}, "the profiles should include ones that do and do not offer the certificate's formats"


def test_missing_hardware_module_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "smt.hardware", None)  # import raises ModuleNotFoundError
    with pytest.raises(VerifyError, match="hardware profiles are not available"):
        gate.resolve_hardware("anything")
