"""End-to-end range soundness: the fp64 activations of random domain inputs lie inside the
certified interval of every node (issue 2 acceptance), on every example model."""

import pytest
import torch

from certifier.capture import capture
from certifier.interval import as_markers
from certifier.loader import load_model
from certifier.trace import node_values
from certifier.walker import analyze_bounds
from conftest import EXAMPLES

SMALL = ["mlp", "cnn", "exp_range", "naive_softmax", "rational_head"]
HEAVY = ["resnet50", "bert_base", "gpt2_small"]


def _check(name: str, n: int) -> int:
    lm = load_model(EXAMPLES / f"{name}.py")
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    assert not ba.unsupported, ba.unsupported
    gen = torch.Generator().manual_seed(1)
    checked = 0

    def visit(node, v):
        nonlocal checked
        info = ba.nodes.get(node)
        if info is None:
            return
        outs = info.out if isinstance(info.out, tuple) else (info.out,)
        vs = v if isinstance(v, (tuple, list)) else (v,)
        for iv, t in zip(outs, vs):
            if iv is None or not isinstance(t, torch.Tensor) or t.numel() == 0 or not iv.is_float:
                continue
            if not t.dtype.is_floating_point:
                continue
            tt = as_markers(t.detach().to(torch.float64), iv.lo, iv.hi)
            tol = 1e-9 * tt.abs() + 1e-12
            bad = (tt < iv.lo - tol) | (tt > iv.hi + tol)
            assert not bool(bad.any()), (
                f"{name}: node {node} ({info.op}) value outside its certified range: "
                f"{tt[bad][:3].tolist()} not in [{iv.lo[bad][:3].tolist()}, {iv.hi[bad][:3].tolist()}]"
            )
            checked += 1

    for xs in lm.sample_inputs(n, gen):
        node_values(cap, xs, visit=visit)
    return checked


@pytest.mark.parametrize("name", SMALL)
def test_fp64_activations_inside_ranges(name):
    assert _check(name, 100) > 0


@pytest.mark.heavy
@pytest.mark.parametrize("name", HEAVY)
def test_fp64_activations_inside_ranges_large(name):
    assert _check(name, 100) > 0


def test_range_check_detects_a_shrunk_range(monkeypatch):
    """The check above can fail: shrink the relu rule's range and it must notice."""
    import curvature_rules.elementwise as E
    from certifier.interval import Interval

    orig = E.relu_rule

    def shrunk(inp):
        r = orig(inp)
        lo, hi = r.out.lo, r.out.hi
        return type(r)(out=Interval(lo, lo + 0.01 * (hi - lo), r.out.dtype), lipschitz=r.lipschitz, curvature=r.curvature, error=r.error)

    import curvature_rules.registry as R

    R._ensure_loaded()
    for op, fn in list(R._RULES.items()):
        if fn is orig:
            monkeypatch.setitem(R._RULES, op, shrunk)
    with pytest.raises(AssertionError, match="outside its certified range"):
        _check("mlp", 20)
