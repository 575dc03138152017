"""The CI examples: every `certify verify` they (and README.md) show parses with the real
command, and the pre-commit hook gates on every listed certificate."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess

import click
import pytest
import typer
import yaml

import certifier.cli_gate  # noqa: F401
from certifier.cli import app
from tests.gate_support import ROOT

CI = ROOT / "examples" / "ci"
HOOK = CI / "pre-commit-hook"


def _verify_invocations(text: str) -> list[list[str]]:
    """Argument lists of the `certify verify ... --model ...` commands in a text."""
    text = re.sub(r"\\\n\s*", " ", text)  # join shell line continuations
    out = []
    for m in re.finditer(r"certify verify ([^\n`|]*)", text):
        args = shlex.split(m.group(1).split(">")[0])
        if "--model" in args:
            out.append(args)
    return out


def _parse(args: list[str]) -> click.Context:
    cmd = typer.main.get_command(app)
    return cmd.commands["verify"].make_context("verify", list(args))  # raises on a bad option


def test_workflow_is_valid_and_gates_with_verify():
    wf = yaml.safe_load((CI / "certify-gate.yml").read_text())
    steps = wf["jobs"]["gate"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "-c constraints.txt" in runs
    calls = _verify_invocations(runs)
    assert len(calls) == 2
    for args in calls:
        ctx = _parse(args)
        assert ctx.params["pubkey"]  # the gate trusts a key, not just a hash
    assert _parse(calls[0]).params["max_eps"] == 1e-2 and _parse(calls[1]).params["replay"] is True


@pytest.mark.parametrize("path", ["README.md", "examples/ci/certify-gate.yml"])
def test_documented_verify_commands_parse(path):
    calls = _verify_invocations((ROOT / path).read_text())
    assert calls, path
    for args in calls:
        _parse(args)


def test_gate_file_examples_parse():
    lines = [ln for ln in (CI / "certify-gate.example").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    lines += re.findall(r"^#\s+(\S+\.json --model .*)$", HOOK.read_text(), flags=re.M)  # the hook's own example
    assert len(lines) == 2
    for ln in lines:
        _parse(ln.split())


def test_pre_commit_config_points_at_the_hook():
    cfg = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())
    hook = cfg["repos"][0]["hooks"][0]
    assert (ROOT / hook["entry"]) == HOOK and hook["pass_filenames"] is False
    assert HOOK.stat().st_mode & stat.S_IXUSR
    assert re.search(hook["files"], "certificates/mlp.json") and re.search(hook["files"], "examples/mlp.py")


# ------------------------------------------------------------------ the hook itself
@pytest.fixture
def fake_certify(tmp_path):
    """A stand-in for `certify`: logs its arguments, eats stdin, exits 1 for certificates named
    *fail*, 2 for *broken*, else 0."""
    log = tmp_path / "calls.log"
    stub = tmp_path / "fake-certify"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        "cat > /dev/null\n"
        'case "$2" in *fail*) exit 1;; *broken*) exit 2;; esac\nexit 0\n'
    )
    stub.chmod(0o755)
    return stub, log


def _hook(tmp_path, stub, gate_text: str | None):
    gate = tmp_path / ".certify-gate"
    if gate_text is not None:
        gate.write_text(gate_text)
    env = {**os.environ, "CERTIFY": str(stub), "CERTIFY_GATE_FILE": str(gate)}
    return subprocess.run(["bash", str(HOOK)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_hook_passes_when_every_certificate_verifies(tmp_path, fake_certify):
    stub, log = fake_certify
    r = _hook(tmp_path, stub, "# gate\n\na.json --model a.py --max-eps 1e-2\n  b.json --model b.py --pubkey k.pub\n")
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == [
        "verify a.json --model a.py --max-eps 1e-2 --quiet",
        "verify b.json --model b.py --pubkey k.pub --quiet",
    ]
    assert "2 certificate(s) verified" in r.stdout


def test_hook_refuses_the_commit_and_names_each_failure(tmp_path, fake_certify):
    stub, log = fake_certify
    r = _hook(tmp_path, stub, "a.json --model a.py\nfail1.json --model b.py\nc.json --model c.py\nfail2.json --model d.py")
    assert r.returncode == 1
    assert len(log.read_text().splitlines()) == 4  # every line is checked, the last without newline too
    assert "verification failed for: fail1.json fail2.json" in r.stderr and "commit refused (2 of 4" in r.stderr
    r = _hook(tmp_path, stub, "fail.json --model a.py\nbroken.json --model b.py\n")
    assert r.returncode == 2 and "bad input): broken.json" in r.stderr


def test_hook_without_a_gate_list_fails_closed(tmp_path, fake_certify):
    stub, _ = fake_certify
    r = _hook(tmp_path, stub, None)
    assert r.returncode == 2 and "no gate file" in r.stderr
    r = _hook(tmp_path, stub, "# nothing yet\n\n")
    assert r.returncode == 2 and "lists no certificates" in r.stderr
