"""Shared helpers for tests/test_gate_*.py: the certificates they tamper with are made once per
test session (certifying examples/mlp.py takes about a second once torch.export is warm)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from typer.testing import CliRunner

import certifier.cli_gate  # noqa: F401  (registers keygen and verify on the app)
from certifier.cli import app

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "mlp.py"
EPS = 5e-3

_runner = CliRunner()


def invoke(*args: object):
    """Run the certify CLI in-process; returns click's Result (exit_code, output, stderr)."""
    return _runner.invoke(app, [str(a) for a in args])


@functools.lru_cache(maxsize=None)
def store() -> Path:
    d = Path(tempfile.mkdtemp(prefix="certify-gate-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.lru_cache(maxsize=None)
def signing_key() -> tuple[Path, Path]:
    """(private .pem, public .pub) of a key made by `certify keygen`."""
    r = invoke("keygen", store() / "release")
    assert r.exit_code == 0, r.output
    return store() / "release.pem", store() / "release.pub"


_CLI = "import sys; from certifier.cli import main; sys.argv = ['certify', *sys.argv[1:]]; main()"


@functools.lru_cache(maxsize=None)
def certify_in_subprocess() -> tuple[subprocess.Popen, Path]:
    """Start `certify examples/mlp.py --eps 5e-3` in a second Python process, with another hash
    seed and thread count than this one. Started together with the first certificate, so that
    its cold start (importing torch, warming up torch.export) overlaps the other tests."""
    d = store() / "subprocess"
    d.mkdir()
    shutil.copy(MLP, d / "mlp.py")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _CLI, str(d / "mlp.py"), "--eps", str(EPS), "--out", str(d / "cert.json"), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    atexit.register(proc.kill)
    return proc, d / "cert.json"


@functools.lru_cache(maxsize=None)
def base_certificate() -> str:
    """examples/mlp.py at eps 5e-3, signed with signing_key(): the file's text."""
    certify_in_subprocess()
    d = store() / "base"
    d.mkdir()
    shutil.copy(MLP, d / "mlp.py")
    r = invoke("run", d / "mlp.py", "--eps", EPS, "--out", d / "cert.json", "--sign", signing_key()[0], "--quiet")
    assert r.exit_code == 0, r.output
    return (d / "cert.json").read_text()


def build_mlp() -> torch.nn.Module:
    ns: dict = {}
    exec(compile(MLP.read_text(), str(MLP), "exec"), ns)
    return ns["build_model"]()


@functools.lru_cache(maxsize=None)
def weights_certificate() -> tuple[str, bytes]:
    """examples/mlp.py certified with --weights ckpt.pt (its own state dict): (cert text, ckpt bytes)."""
    d = store() / "weights"
    d.mkdir()
    shutil.copy(MLP, d / "mlp.py")
    torch.save(build_mlp().state_dict(), d / "ckpt.pt")
    r = invoke("run", d / "mlp.py", "--eps", EPS, "--weights", d / "ckpt.pt", "--out", d / "cert.json", "--sign", signing_key()[0], "--quiet")
    assert r.exit_code == 0, r.output
    return (d / "cert.json").read_text(), (d / "ckpt.pt").read_bytes()


def workspace(tmp_path: Path, weights: bool = False) -> dict[str, Path]:
    """Copies of the model, the certificate, the public key (and checkpoint) in tmp_path."""
    shutil.copy(MLP, tmp_path / "mlp.py")
    if weights:
        text, ckpt = weights_certificate()
        (tmp_path / "ckpt.pt").write_bytes(ckpt)
    else:
        text = base_certificate()
    (tmp_path / "cert.json").write_text(text)
    shutil.copy(signing_key()[1], tmp_path / "release.pub")
    out = {"model": tmp_path / "mlp.py", "cert": tmp_path / "cert.json", "pub": tmp_path / "release.pub"}
    if weights:
        out["weights"] = tmp_path / "ckpt.pt"
    return out


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def failed_names(result) -> set[str]:
    """Names of the checks a `certify verify` run reported as FAILED (one line each)."""
    return {line.split()[1].rstrip(":") for line in result.output.splitlines() if line.startswith("FAILED ")}
