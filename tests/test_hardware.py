"""Hardware profiles: the built-in data file, user extensions, the `certify hardware` command."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from certifier.errors import SpecError
from smt.hardware import ENV_VAR, get_profile, load_profiles
from tests.smt_support import ROOT

REQUIRED = {
    "nvidia-a100": ("fp64", "fp32", "tf32", "bf16", "fp16"),
    "nvidia-h100": ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"),
    "nvidia-t4": ("fp32", "fp16"),
    "tpu-v4": ("fp32", "bf16"),
    "cpu": ("fp64", "fp32", "bf16"),
    "fp16-only": ("fp16",),
}


def app():
    import certifier.cli_prove  # noqa: F401 - registers the commands
    from certifier.cli import app as a

    return a


def test_builtin_profiles_have_the_issue_formats(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    profs = load_profiles()
    for name, fmts in REQUIRED.items():
        assert profs[name].formats == fmts, name
        assert profs[name].source == "built-in"
    # tf32 stores fp32: the a100's storage formats do not list it
    assert get_profile("nvidia-a100").storage_formats == ("fp64", "fp32", "bf16", "fp16")


def test_user_profiles_extend_and_override(tmp_path, monkeypatch):
    f = tmp_path / "mine.toml"
    f.write_text('[npu]\ndescription = "x"\nextends = "tpu-v4"\nformats = ["fp8_e4m3"]\n\n[nvidia-t4]\nformats = ["fp16"]\n')
    monkeypatch.delenv(ENV_VAR, raising=False)
    p = get_profile("npu", [f])
    assert p.formats == ("fp32", "bf16", "fp8_e4m3") and p.source == str(f)
    assert get_profile("nvidia-t4", [f]).formats == ("fp16",)
    monkeypatch.setenv(ENV_VAR, str(f))
    assert get_profile("npu").formats == ("fp32", "bf16", "fp8_e4m3")


@pytest.mark.parametrize(
    "text, msg",
    [
        ('[x]\nformats = ["fp12"]\n', "unknown format 'fp12'"),
        ('[x]\nextends = "y"\n[y]\nextends = "x"\n', "cycle"),
        ('[x]\nformats = ["tf32"]\n', "only compute formats"),
        ('[x]\nformat = ["fp16"]\n', "unknown key"),
        ("[x\n", "cannot read"),
    ],
)
def test_bad_profiles_are_spec_errors(tmp_path, text, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(SpecError, match=msg):
        load_profiles([f])


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(SpecError) as e:
        get_profile("nvidia-z9")
    assert "fp16-only" in str(e.value)


def test_hardware_command_lists_profiles(tmp_path):
    r = CliRunner().invoke(app(), ["hardware"])
    assert r.exit_code == 0, r.output
    for name in REQUIRED:
        assert name in r.output
    f = tmp_path / "p.toml"
    f.write_text('[my-chip]\nformats = ["bf16", "fp32"]\n')
    r = CliRunner().invoke(app(), ["hardware", "--profiles", str(f), "--json"])
    assert r.exit_code == 0
    assert '"my-chip"' in r.output and '"fp32",\n      "bf16"' in r.output
    r = CliRunner().invoke(app(), ["hardware", "--profiles", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "not found" in r.output


def test_z3_is_not_imported_by_the_packages():
    code = "import sys, certifier, smt, smt.hardware, smt.allocate, smt.prove, smt.witness, certifier.cli_prove; print('z3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
