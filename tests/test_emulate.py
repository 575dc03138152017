"""Op-by-op emulation of formats PyTorch cannot run (certifier.emulate), and the bounds of
those formats checked against it: fp8 (e4m3, e5m2), and tf32 with truncated multiplicands."""

import copy
import math
from pathlib import Path

import pytest
import torch

from certifier.adjoint import certified_errors
from certifier.capture import capture
from certifier.emulate import Emulated, neighbours, round_to
from certifier.formats import FORMATS
from certifier.loader import InputSpec, LoadedModel, load_model
from certifier.rounding import run_errors
from certifier.validate import observe
from certifier.walker import analyze_bounds
from conftest import EXAMPLES

F64 = torch.float64


@pytest.mark.parametrize("fmt", ["bf16", "fp16", "fp8_e4m3", "fp8_e5m2"])
def test_round_to_matches_torch_casts_from_float32(fmt):
    """From float32 (one rounding in both), round_to equals PyTorch's cast: normal and
    subnormal values, ties, overflow (e4m3 saturates at 448, the others give inf)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20000, generator=g) * s for s in (1e-9, 1e-6, 1e-3, 1.0, 300.0, 3e4, 1e5)])
    ties = torch.tensor([1.0625, 1.1875, 2**-7 * 1.5, 2**-10 * 3, 500.0, 70000.0, -1.0625])
    x = torch.cat([x, ties, -x]).float()
    dt = FORMATS[fmt].torch_dtype
    a, b = x.to(dt).to(F64), round_to(x.double(), fmt)
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    assert bool(same.all()), x[~same][:5]


def test_round_to_rounds_once_from_float64():
    """1.0625 + 2^-30 lies above the midpoint of 1 and 1.125 (e4m3): one rounding gives 1.125.
    PyTorch's float64 -> float8 cast goes through float32, which first lands on the midpoint,
    and then gives 1.0; the emulation must not."""
    x = torch.tensor([1.0625 + 2.0**-30], dtype=F64)
    assert float(round_to(x, "fp8_e4m3")) == 1.125
    assert float(round_to(x, "tf32", truncate=True)) == 1.0625  # 1.0625 has 4 significand bits
    a, b = neighbours(x, "fp8_e4m3")
    assert (float(a), float(b)) == (1.0, 1.125)
    # subnormal spacing of e5m2 is 2^-16
    a, b = neighbours(torch.tensor([3.3 * 2.0**-16], dtype=F64), "fp8_e5m2")
    assert (float(a), float(b)) == (3 * 2.0**-16, 4 * 2.0**-16)


def _linear_point(v: float, n: int = 1000):
    m = torch.nn.Linear(n, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(v)
    lm = LoadedModel(Path("t.py"), "t", m.eval(), (torch.zeros(1, n),), [InputSpec((1, n), torch.float32, v, v)], "")
    return m, lm


def test_tf32_truncation_is_covered():
    """x = w = 1 + 2^-10 - 2^-23 (float32): truncating both to tf32 gives 1, so each product
    loses 2^-9; over 1000 products the error is 1.95. A model that assumed round-to-nearest
    (relative 2^-11 per multiplicand) bounded this by about 1.04."""
    v = 1 + 2.0**-10 - 2.0**-23
    m, lm = _linear_point(v)
    bound = run_errors(analyze_bounds(lm, capture(lm)), [{"*": "tf32"}]).bound[0]
    x = torch.full((1, 1000), v, dtype=F64)
    with torch.no_grad():
        err = float((Emulated(m, {"*": "tf32"})(x) - m.double()(x)).abs().max())
    assert err > 1.9  # the truncation really happened
    assert err <= bound
    assert bound < 2.1  # and the model charges it at 2^-10 per multiplicand, not more


def test_emulated_fp8_errs():
    """The emulation rounds: e4m3 on the MLP at one input errs by more than 1e-3 (a model run
    in float64 would show ~1e-16)."""
    lm = load_model(EXAMPLES / "mlp.py")
    x = torch.rand((1, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        err = float((Emulated(lm.module, {"*": "fp8_e4m3"})(x) - copy.deepcopy(lm.module).double()(x)).abs().max())
    assert err > 1e-3


@pytest.mark.parametrize("name", ["mlp", "cnn", "rational_head", "kelvin_head"])
def test_emulated_formats_hold_their_bounds(name):
    """Uniform tf32 / fp8_e4m3 / fp8_e5m2 (where the bound is finite) and a mixed assignment
    with fp8 layers, run op by op, random plus adversarial inputs: observed <= certified."""
    lm = load_model(EXAMPLES / f"{name}.py")
    ba = analyze_bounds(lm, capture(lm))
    layers = sorted({i.layer for i in ba.nodes.values() if i.kind == "call"})
    cycle = ["fp8_e5m2", "fp16", "fp8_e4m3", "fp32", "bf16"]
    mixed = {L: cycle[k % len(cycle)] for k, L in enumerate(layers)}
    cfgs = [{"*": "tf32"}, {"*": "fp8_e4m3"}, {"*": "fp8_e5m2"}, mixed]
    res = certified_errors(ba, cfgs, keep_nodes=False)
    checked = 0
    for cfg, b in zip(cfgs, res.bound):
        if not math.isfinite(b):
            continue
        align = FORMATS[cfg["*"]].storage.name if "*" in cfg else None
        ob = observe(lm, Emulated(lm.module, cfg), None, 15, 15, seed=4, align_dtype=align)
        assert 0 < ob.max_error <= b, f"{name} {cfg}: observed {ob.max_error:.3g} > bound {b:.3g}"
        checked += 1
    assert checked >= 2


def test_each_layer_runs_in_its_own_format():
    """Only the named layer is rounded: e5m2 in the first Linear errs at the 1e-2 level, in
    no layer at all (everything fp32) at the 1e-6 level."""
    lm = load_model(EXAMPLES / "mlp.py")
    x = torch.rand((1, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=F64)
    ref = copy.deepcopy(lm.module).double()
    with torch.no_grad():
        exact = ref(x)
        e1 = float((Emulated(lm.module, {"1": "fp8_e5m2"})(x) - exact).abs().max())
        e5 = float((Emulated(lm.module, {"5": "fp8_e5m2"})(x) - exact).abs().max())
        e0 = float((Emulated(lm.module, {"1": "fp32"})(x) - exact).abs().max())
    assert e0 < 1e-5 < min(e1, e5)
    assert e1 != e5


def test_validate_runs_fp8_and_tf32_emulated(tmp_path):
    """certify --validate: the fp8 and tf32 uniform rows are run (emulated, and labelled so),
    each observed error is within its bound, and the table says which rows are emulated."""
    from typer.testing import CliRunner

    from conftest import cli_app

    out = tmp_path / "c.json"
    res = CliRunner().invoke(cli_app(), ["run", str(EXAMPLES / "mlp.py"), "--eps", "1", "--validate", "5", "--adv-steps", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import json

    v = json.loads(out.read_text())["validation"]
    rows = {r["name"]: r for r in v["runs"]}
    assert v["sound"]
    for name in ("uniform tf32", "uniform fp8_e5m2"):
        assert rows[name]["emulated"] and rows[name]["note"].startswith("emulated")
        assert 0 < rows[name]["observed"] <= rows[name]["bound"]
    assert "emulated" not in rows["uniform fp16"]  # PyTorch's own kernels
    assert "uniform fp8_e5m2 (emulated)" in res.output


def test_in_place_ops_round_only_what_they_write():
    """z.add_(y) rounds z (written) to bf16 but leaves the caller's y (only read) alone."""

    class M(torch.nn.Module):
        def forward(self, x, y):
            z = x * 1.0
            z.add_(y)
            return z

    y = torch.full((3,), 1.0 + 2.0**-20, dtype=F64)
    out = Emulated(M(), {"*": "bf16"})(torch.full((3,), 0.1, dtype=F64), y)
    assert float(y[0]) == 1.0 + 2.0**-20
    assert bool((round_to(out, "bf16") == out).all())


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_emulated_formats_hold_their_bounds_under_a_long_search(name):
    """Uniform tf32 / fp8 under 700 adversarial steps, most of them the grid walk in the
    format's own spacing."""
    lm = load_model(EXAMPLES / f"{name}.py")
    ba = analyze_bounds(lm, capture(lm))
    fmts = ["tf32", "fp8_e4m3", "fp8_e5m2"]
    res = certified_errors(ba, [{"*": f} for f in fmts], keep_nodes=False)
    for f, b in zip(fmts, res.bound):
        assert math.isfinite(b)
        ob = observe(lm, Emulated(lm.module, {"*": f}), None, 20, 700, seed=9, align_dtype=FORMATS[f].storage.name)
        assert 0 < ob.max_error <= b, f"{name} {f}: observed {ob.max_error:.3g} > bound {b:.3g}"
