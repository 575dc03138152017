"""A relu pays its input's final rounding only on the positive side of the range
(certifier.rounding._Ctx.positive_store_bound): rounding to nearest keeps the sign, so
relu(fl(z)) - relu(z) is 0 wherever z <= 0."""

from pathlib import Path

import pytest
import torch

from certifier.amp import apply_precision
from certifier.capture import capture
from certifier.loader import InputSpec, LoadedModel
from certifier.rounding import run_errors
from certifier.validate import cast_model
from certifier.walker import analyze_bounds

F64 = torch.float64
U16 = 2.0**-11


def _model() -> torch.nn.Sequential:
    """x in [0, 1] -> 101 x - 100 + j / 8 (j = 0..7; fp16 holds the bias), ranges
    [-100 + j/8, 1 + j/8], -> relu."""
    m = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU())
    with torch.no_grad():
        m[0].weight.fill_(101.0)
        m[0].bias.copy_(-100.0 + torch.arange(8, dtype=torch.float32) / 8)
    return m.eval()


def _bound(m, assignment) -> tuple[float, float]:
    """(the relu's bound, the linear layer's)."""
    lm = LoadedModel(Path("t.py"), "t", m, (torch.zeros(1, 1),), [InputSpec((1, 1), torch.float32, 0.0, 1.0)], "")
    ba = analyze_bounds(lm, capture(lm))
    r = run_errors(ba, [assignment], keep_errs=True)
    lin = next(n for n in ba.nodes if ba.nodes[n].op == "addmm")
    return r.bound[0], float(r.node_err[lin][0].max())


def _observed(low, m) -> float:
    """Max error over a dense grid of [0, 1] and of [0.98, 1], where the outputs are positive."""
    x = torch.cat([torch.linspace(0, 1, 4001, dtype=F64), torch.linspace(0.98, 1, 20001, dtype=F64)]).reshape(-1, 1)
    ref = m.double()(x)
    with torch.no_grad():
        out = low(x)
    return float((out.double() - ref).abs().max())


@pytest.mark.parametrize("assignment", [{"*": "fp16"}, {"0": "fp16", "1": "fp32"}], ids=["fp16", "relu-in-fp32"])
def test_relu_pays_its_inputs_rounding_on_the_positive_side_only(assignment):
    """fp16: the pre-activation's box reaches 100, whose rounding (u B(100) = 64 u = 0.031)
    the linear layer's own bound pays; after the relu only values below 2 (plus the error)
    are stored, so the relu's bound is the error before that rounding plus at most
    u B(2 + X) = 2u. A relu that carried its input's whole bound would not be 62 u below
    it; the observed error (a dense grid near the top of the range, where the input's own
    rounding times 101 shows) stays below the new bound. Also with the relu in fp32 (no cast
    on that edge: fp32 holds every fp16 value), where the rounding is still the producer's,
    fp16's u."""
    m = _model()
    b, b_lin = _bound(m, assignment)
    if "*" in assignment:
        half = cast_model(m, "fp16")
        obs = _observed(lambda x: half(x.half()), m)
    else:
        obs = _observed(apply_precision(m, assignment), m)
    assert obs <= b
    assert obs > 0.8 * 101 * 2.0**-12  # the input's rounding, near x = 1, times 101
    assert b <= b_lin - 62 * U16


def test_a_cast_on_the_edge_keeps_the_whole_bound():
    """The linear layer in fp32, the relu in fp16: the relu's input is cast to fp16 on the
    edge (a second rounding, of magnitude up to 100), so the positive-side bound does not
    apply: the relu's bound is the linear layer's plus that cast (64 u = 0.031)."""
    m = _model()
    a = {"0": "fp32", "1": "fp16"}
    b, b_lin = _bound(m, a)
    low = apply_precision(m, a)
    obs = _observed(lambda x: low(x), m)
    assert obs <= b
    assert b >= b_lin + 64 * U16
