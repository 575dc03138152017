"""Reproducibility: the same model and options give the same body hash, in one process and across
processes (with different hash seeds and thread counts); `--replay` re-runs the analysis."""

from __future__ import annotations

import json
import shutil

from certifier import certificate as C
from certifier import gate
from certifier.pipeline import Options, run_certify
from tests.gate_support import EPS, ROOT, base_certificate, certify_in_subprocess, failed_names, invoke, workspace


def test_same_body_hash_across_runs_in_one_process(tmp_path):
    ws = workspace(tmp_path)
    first = json.loads(base_certificate())  # made earlier in this process, through the CLI
    again = run_certify(ws["model"], Options(eps=EPS)).certificate
    assert C.canonical(C.body_of(first)) == C.canonical(again)
    assert C.body_hash(again) == first["body_sha256"]


def test_same_body_hash_across_processes():
    base = json.loads(base_certificate())  # this process (hash seed as pytest has it)
    proc, out = certify_in_subprocess()  # another process: PYTHONHASHSEED=12345, 1 thread
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    cert = C.load_certificate(out)
    assert cert["body_sha256"] == C.body_hash(cert) == base["body_sha256"]
    assert C.canonical(C.body_of(cert)) == C.canonical(C.body_of(base))
    assert cert["timestamp"] and "signature" not in cert  # only the unhashed parts differ


def test_replay_reproduces_an_honest_certificate(tmp_path):
    ws = workspace(tmp_path)
    (tmp_path / "renamed.py").write_bytes(ws["model"].read_bytes())  # file names are labels
    r = invoke("verify", ws["cert"], "--model", tmp_path / "renamed.py", "--pubkey", ws["pub"], "--replay", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [c["name"] for c in doc["checks"]][-1] == "replay" and doc["passed"]


def test_compare_replay_names_the_differing_keys():
    cert = json.loads(base_certificate())
    other = json.loads(base_certificate())
    other["layers"][3]["format"] = "fp16"
    other["environment"]["torch"] = "9.9.9"
    other["model"]["file"] = "elsewhere.py"  # ignored: a label
    other["validation"] = {"runs": []}  # ignored: sampled, not analysed
    chk = gate.compare_replay(cert, other)
    assert not chk.passed
    assert "different body in environment, layers:" in chk.detail
    assert "layers[3].format" in chk.detail and "environment.torch" in chk.detail
    assert gate.compare_replay(cert, json.loads(base_certificate())).passed


def test_replay_reproduces_the_scm_section_of_a_rational_head(tmp_path):
    """`certify run` adds the SCM section after the analysis; a replay must add it the same way,
    re-declaring a head given by --rational (here swapped against the file's rational_head())."""
    shutil.copy(ROOT / "examples" / "rational_head.py", tmp_path / "rh.py")
    out = tmp_path / "rh.json"
    r = invoke("run", tmp_path / "rh.py", "--eps", "0.05", "--rational", "1,0", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    rh = json.loads(out.read_text())["scm"]["rational_head"]
    assert rh["declared_by"] == "--rational" and rh["numerator"]["output"] == 1
    r = invoke("verify", out, "--model", tmp_path / "rh.py", "--replay")
    assert r.exit_code == 0, r.output
