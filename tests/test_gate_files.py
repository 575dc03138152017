"""Bad certificates give exit 2 with a clear message; certificates are written atomically."""

from __future__ import annotations

import json
import os
import stat
import types

import pytest

import certifier.certificate as C
import certifier.pipeline as P
import certifier.scm as S
from certifier.errors import CertificateError, OutputError
from tests.gate_support import base_certificate, invoke, workspace


@pytest.mark.parametrize("name,content,msg", [
    ("truncated", lambda t: t[: len(t) // 2], "is truncated"),
    ("corrupted", lambda t: t.replace('"verdict": "certified"', '"verdict": certified"'), "not valid JSON"),
    ("not-json", lambda t: "certified, trust me\n", "not valid JSON"),
    ("binary", lambda t: b"\x89PNG\r\n\x1a\n\xff\xfe", "cannot read certificate"),
    ("empty", lambda t: "", "is empty"),
    ("array", lambda t: "[1, 2]", "not a JSON object"),
    ("not-a-certificate", lambda t: '{"hello": 1}', "not a certify certificate"),
    ("duplicate-key", lambda t: t.replace('"verdict": "certified"', '"verdict": "uncertifiable", "verdict": "certified"'), "duplicate key 'verdict'"),
    ("nan", lambda t: t.replace('"eps": 0.005', '"eps": NaN'), "NaN is not allowed"),
    ("overflow", lambda t: t.replace('"eps": 0.005', '"eps": 1e999'), "out of range"),
    ("lone-surrogate", lambda t: t.replace('"Linear"', '"\\ud800"', 1), "not a valid certificate"),
])
def test_bad_certificate_is_exit_2_with_a_clear_message(tmp_path, name, content, msg):
    ws = workspace(tmp_path)
    data = content(ws["cert"].read_text())
    ws["cert"].write_bytes(data if isinstance(data, bytes) else data.encode())
    r = invoke("verify", ws["cert"], "--model", ws["model"], "--pubkey", ws["pub"])
    assert r.exit_code == 2, r.output
    assert msg in r.output
    assert r.output.startswith("error: ") and "Traceback" not in r.output and "FAILED" not in r.output


def test_missing_inputs_are_exit_2(tmp_path):
    ws = workspace(tmp_path)
    for args, msg in [
        ([tmp_path / "nope.json", "--model", ws["model"]], "certificate not found"),
        ([tmp_path, "--model", ws["model"]], "not a file"),
        ([ws["cert"], "--model", tmp_path / "nope.py"], "model file not found"),
        ([ws["cert"], "--model", ws["model"], "--weights", tmp_path / "nope.pt"], "weights file not found"),
    ]:
        r = invoke("verify", *args)
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
    r = invoke("verify", ws["cert"])  # --model is required
    assert r.exit_code == 2


def test_load_certificate_rejects_damaged_files(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(base_certificate()[:-20])
    with pytest.raises(CertificateError, match="truncated"):
        C.load_certificate(p)
    p.write_text('{"schema_version": "1.0"}')
    with pytest.raises(CertificateError, match="no 'model' field"):
        C.load_certificate(p)
    p.write_text(base_certificate())
    assert C.load_certificate(p)["verdict"] == "certified"


# ------------------------------------------------------------------ atomic writes
@pytest.fixture
def fast_run(monkeypatch):
    """`certify run` without the analysis: run_certify returns the base certificate's body."""
    body = C.body_of(json.loads(base_certificate()))
    monkeypatch.setattr(P, "run_certify", lambda *a, **k: types.SimpleNamespace(certificate=json.loads(json.dumps(body)), bounds=None, uniform=None))
    monkeypatch.setattr(S, "scm_section", lambda *a, **k: None)  # mlp has no rational head
    return body


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_certificate_written_whole_with_ordinary_permissions(tmp_path, fast_run):
    out = tmp_path / "cert.json"
    r = invoke("run", tmp_path / "mlp.py", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    cert = C.load_certificate(out)
    assert cert["body_sha256"] == C.body_hash(cert) == json.loads(base_certificate())["body_sha256"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where,exc,code", [
    ("fsync", OSError(28, "No space left on device"), 2),
    ("replace", KeyboardInterrupt(), 130),
    ("dumps", ValueError("Out of range float values are not JSON compliant"), 3),
])
def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, fast_run, where, exc, code):
    out = tmp_path / "cert.json"
    for existing in (False, True):
        if existing:
            out.write_text("OLD CERTIFICATE\n")

        def boom(*a, **k):
            raise exc

        with monkeypatch.context() as m:
            # fsync: the temp file is written but not yet renamed; replace: interrupted at the rename
            m.setattr(C if where == "dumps" else os, where, boom)
            r = invoke("run", tmp_path / "mlp.py", "--out", out, "--quiet")
        assert r.exit_code == code, r.output
        assert _leftovers(tmp_path) == []
        if existing:
            assert out.read_text() == "OLD CERTIFICATE\n"
        else:
            assert not out.exists()
    if where == "fsync":
        assert "cannot write" in r.output and "No space left" in r.output


def test_failed_analysis_does_not_clobber_an_existing_certificate(tmp_path):
    (tmp_path / "broken.py").write_text("import torch\ndef build_model():\n    raise RuntimeError('no GPU')\ndef example_inputs():\n    return (torch.ones(1),)\n")
    out = tmp_path / "cert.json"
    out.write_text(base_certificate())
    r = invoke("run", tmp_path / "broken.py", "--eps", "1e-2", "--out", out, "--quiet")
    assert r.exit_code == 2 and "no GPU" in r.output
    assert out.read_text() == base_certificate()
    assert _leftovers(tmp_path) == []


def test_write_atomic_unit(tmp_path):
    p = tmp_path / "sub" / "x.json"
    C.write_atomic(p, "one\n")
    C.write_atomic(p, b"two\n", mode=0o600)
    assert p.read_text() == "two\n" and stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(OutputError, match="cannot write"):
        C.write_atomic(tmp_path / "sub", "x")  # a directory: rename fails
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == ["x.json"]
