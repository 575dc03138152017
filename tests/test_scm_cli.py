"""The CLI side of SCM thresholds: --rational, --scm-out, the threshold table, exit codes."""

from __future__ import annotations

import json
import textwrap

from typer.testing import CliRunner

from certifier.cli import app
from certifier.formats import FORMAT_ORDER
from tests.test_scm import UNBOUNDED_N, ZERO_D

runner = CliRunner()
EXAMPLE = "examples/rational_head.py"


def test_table_certificate_and_zeroproofml_file(tmp_path):
    scm_out, out = tmp_path / "scm.json", tmp_path / "cert.json"
    r = runner.invoke(app, ["run", EXAMPLE, "--eps", "0.05", "--scm-out", str(scm_out), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = r.output
    assert "SCM thresholds, rational head N = output 0, D = output 1 (eps = 0.05" in text
    assert "tau_infer: |D| < tau_infer decodes to bottom" in text
    assert "tau_train: |D| >= tau_train decodes N/D within eps" in text
    cert = json.loads(out.read_text())
    rh = cert["scm"]["rational_head"]
    doc = json.loads(scm_out.read_text())
    table = text[text.index("SCM thresholds"):].splitlines()
    assert [t["format"] for t in doc["thresholds"]] == list(FORMAT_ORDER)
    for t in doc["thresholds"]:
        e = rh["formats"][t["format"]]
        assert (t["tau_infer"], t["tau_train"], t["use_gap"]) == (e["tau_infer"], e["tau_train"], e["use_gap"])
        assert t["tau_infer"] > 0 and t["tau_train"] >= t["tau_infer"]
        # each threshold is printed in the table row of its format
        row = next(ln for ln in table if ln.strip().strip("|").strip().startswith(t["format"] + " "))
        assert f"{t['tau_infer']:.6g}" in row and f"{t['tau_train']:.6g}" in row
    assert doc["model"] == "rational_head" and doc["source_sha256"] == cert["model"]["source_sha256"]
    assert doc["refused"] == []


def test_scm_out_without_a_rational_head_is_a_usage_error(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text(textwrap.dedent(ZERO_D.replace("def rational_head():\n        return (0, 1)\n", "")))
    scm_out, out = tmp_path / "scm.json", tmp_path / "cert.json"
    r = runner.invoke(app, ["run", str(plain), "--eps", "0.05", "--scm-out", str(scm_out), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "--scm-out needs a rational head" in r.output
    assert not scm_out.exists() and not out.exists()  # no partial output
    r = runner.invoke(app, ["run", str(plain), "--rational", "0,0"])
    assert r.exit_code == 2 and "must be different outputs" in r.output


def test_unbounded_numerator_refusal_through_the_cli(tmp_path):
    model = tmp_path / "unbounded.py"
    model.write_text(textwrap.dedent(UNBOUNDED_N.replace("def rational_head():\n        return (0, 1)\n", "")))
    scm_out, out = tmp_path / "scm.json", tmp_path / "cert.json"
    r = runner.invoke(app, ["run", str(model), "--eps", "0.05", "--rational", "0,1", "--scm-out", str(scm_out), "--out", str(out)])
    assert r.exit_code == 1, r.output  # the model itself is not certified (N is unbounded)
    assert "rational head (--rational): refused for every format: N (output 0, node div) has no finite bound" in r.output
    assert "SCM thresholds per division (aten.div, eps = 0.05)" in r.output
    cert = json.loads(out.read_text())
    rh = cert["scm"]["rational_head"]
    assert rh["declared_by"] == "--rational"
    assert all(e["status"] == "refused" and "no finite bound" in e["reason"] for e in rh["formats"].values())
    assert len(cert["scm"]["divisions"]) == 1
    doc = json.loads(scm_out.read_text())
    assert doc["thresholds"] == [] and {x["format"] for x in doc["refused"]} == set(FORMAT_ORDER)
    assert "NaN" not in scm_out.read_text() and "Infinity" not in scm_out.read_text()
