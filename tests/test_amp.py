"""Mixed-precision configs (issue 5): export, apply, round trip, mismatches, exports."""

import json

import pytest
import torch
from typer.testing import CliRunner

from certifier.amp import apply_precision, autocast_exclusions, check_config, ort_block_lists
from certifier.capture import ROOT_LAYER
from certifier.formats import FORMATS
from certifier.pipeline import Options, run_certify
from certifier.validate import observe
from conftest import EXAMPLES, cli_app

runner = CliRunner()


@pytest.mark.parametrize("name,eps", [("mlp", 1.0), ("cnn", 0.5)])
def test_applied_config_error_below_bound_below_eps(name, eps):
    # NB: formats PyTorch runs (fp8 layers would need emulation; tests/test_emulate.py)
    rep = run_certify(EXAMPLES / f"{name}.py", Options(eps=eps, formats=("fp64", "fp32", "tf32", "bf16", "fp16")))
    a = rep.assignment
    assert a.certified and a.bound <= eps
    assert any(f in ("bf16", "fp16") for f in a.formats.values()), "expected a mixed assignment"
    cfg = {("" if k == ROOT_LAYER else k): v for k, v in a.formats.items()}
    model = apply_precision(rep.loaded.module, cfg)
    # the low-precision modules really run in their dtype
    for path, fmt in cfg.items():
        mod = dict(model.named_modules())[path]
        for p in mod.parameters(recurse=False):
            assert p.dtype == FORMATS["fp32" if fmt == "tf32" else fmt].torch_dtype
    ob = observe(rep.loaded, model, None, 30, 400, seed=3, align_dtype=torch.float16)
    assert 0 < ob.max_error <= a.bound <= eps


def test_round_trip_cli(tmp_path):
    cert, amp = tmp_path / "c.json", tmp_path / "amp.json"
    res = runner.invoke(cli_app(), ["run", str(EXAMPLES / "mlp.py"), "--eps", "1", "--hardware", "nvidia-a100", "--out", str(cert), "--amp-config", str(amp)])
    assert res.exit_code == 0, res.output
    cfg = json.loads(amp.read_text())
    c = json.loads(cert.read_text())
    assert cfg["schema"] == "certify-amp/1"
    assert cfg["certificate_sha256"] == c["body_sha256"]
    assert cfg["bound"] == c["assignment"]["bound"]
    assert cfg["exports"]["autocast_exclude"] == autocast_exclusions(cfg)
    res = runner.invoke(cli_app(), ["apply", str(EXAMPLES / "mlp.py"), "--config", str(amp), "--certificate", str(cert), "--validate", "10", "--adv-steps", "10"])
    assert res.exit_code == 0, res.output
    assert "reproduced" in res.output and "yes" in res.output
    assert "observed max error" in res.output


def _cfg(tmp_path):
    cert, amp = tmp_path / "c.json", tmp_path / "amp.json"
    runner.invoke(cli_app(), ["run", str(EXAMPLES / "mlp.py"), "--eps", "1", "--hardware", "nvidia-a100", "--out", str(cert), "--amp-config", str(amp)])
    return cert, amp, json.loads(amp.read_text())


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda c: c["modules"].__setitem__("no.such.module", {"dtype": "fp16"}), "unknown module path 'no.such.module'"),
        (lambda c: c["modules"]["1"].__setitem__("dtype", "fp12"), "dtype 'fp12'"),
        (lambda c: c["modules"]["1"].__setitem__("dtype", "fp8_e4m3"), "cannot be executed"),
        (lambda c: c.__setitem__("certificate_sha256", "0" * 64), "certificate hash mismatch"),
    ],
)
def test_mismatched_config_is_a_clear_error(tmp_path, mutate, pattern):
    cert, amp, cfg = _cfg(tmp_path)
    mutate(cfg)
    amp.write_text(json.dumps(cfg))
    res = runner.invoke(cli_app(), ["apply", str(EXAMPLES / "mlp.py"), "--config", str(amp), "--certificate", str(cert)])
    assert res.exit_code == 2, res.output
    assert pattern in res.output
    assert "Traceback" not in res.output


def test_config_listing_a_module_without_operations_is_rejected(tmp_path):
    """The root module owns no operation of the MLP's graph: listing it would make
    apply_precision cast where nothing was analysed (random fuzzing found such a cast
    exceeding the bound 170x)."""
    cert, amp, cfg = _cfg(tmp_path)
    cfg["modules"]["(model)"] = {"dtype": "bf16"}
    amp.write_text(json.dumps(cfg))
    res = runner.invoke(cli_app(), ["apply", str(EXAMPLES / "mlp.py"), "--config", str(amp), "--certificate", str(cert)])
    assert res.exit_code == 2, res.output
    assert "'(model)' owns no operation" in res.output and "Traceback" not in res.output


def test_config_for_other_weights_is_rejected(tmp_path):
    cert, amp, cfg = _cfg(tmp_path)
    cfg["model"]["weights_sha256"] = "f" * 64
    amp.write_text(json.dumps(cfg))
    res = runner.invoke(cli_app(), ["apply", str(EXAMPLES / "mlp.py"), "--config", str(amp)])
    assert res.exit_code == 2 and "weights_sha256 mismatch" in res.output


def test_check_config_lists_every_problem():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    probs = check_config({"modules": {"0": {"dtype": "fp16"}, "x": {"dtype": "fp16"}, "": {"dtype": "int8"}}}, model, {"body_sha256": "a"})
    assert len(probs) == 3


def test_ort_block_lists_map_nodes_to_modules():
    cfg = {"modules": {"enc.q": {"dtype": "fp16"}, "enc.ln": {"dtype": "fp32"}, "": {"dtype": "bf16"}}}
    nodes = [
        ("/enc/q/MatMul", {}),
        ("/enc/ln/ReduceMean", {}),
        ("/enc/ln/Sub", {}),
        ("node_Add_3", {"pkg.torch.onnx.name_scopes": "['', 'enc', 'enc.ln']"}),
        ("node_Mul_4", {}),
    ]
    out = ort_block_lists(cfg, nodes)
    assert out["node_block_list"] == ["/enc/ln/ReduceMean", "/enc/ln/Sub", "node_Add_3"]
    assert out["unmapped"] == ["node_Mul_4"]
    assert autocast_exclusions(cfg) == ["enc.ln"]
