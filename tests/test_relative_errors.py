"""Relative error bounds for exp and sums of non-negative terms, the normalization range
x / sum(x) in [0, 1], and the naive softmax they make certifiable (certifier.rounding's
``rels``, curvature_rules: ExpError, SumError.propagate_rel, BinaryError._div_relative)."""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from certifier.adjoint import certified_errors
from certifier.amp import apply_precision
from certifier.capture import capture
from certifier.formats import FORMATS
from certifier.loader import InputSpec, LoadedModel, load_model
from certifier.validate import cast_model, observe
from certifier.walker import analyze_bounds
from conftest import EXAMPLES

F64 = torch.float64


def _lm(model, shape, lo, hi):
    return LoadedModel(Path("t.py"), "t", model.eval(), (torch.zeros(shape),), [InputSpec(shape, torch.float32, lo, hi)], "")


def test_naive_softmax_is_certified_and_holds():
    """exp(z) / sum(exp(z)) on [-20, 20]: the sum ranges over [3e-8, 8e9], so its absolute
    error (~500 in fp32) dwarfs its smallest value; relative errors keep the quotient's
    bound finite (fp32 ~4e-6, bf16 ~0.2), and the runs stay within it."""
    lm = load_model(EXAMPLES / "naive_softmax.py")
    ba = analyze_bounds(lm, capture(lm))
    fmts = ["fp64", "fp32", "bf16", "fp16"]
    res = certified_errors(ba, [{"*": f} for f in fmts], keep_nodes=False)
    b = dict(zip(fmts, res.bound))
    assert b["fp64"] < 1e-13 and b["fp32"] < 1e-5 and b["bf16"] < 0.5
    assert b["fp16"] == math.inf  # exp(20) > 65504: still refused by range
    for f in ("fp32", "bf16"):
        ob = observe(lm, cast_model(lm.module, f), FORMATS[f].torch_dtype, 40, 40, seed=3)
        assert 0 < ob.max_error <= b[f]


class Norm(nn.Module):
    """x / x.sum(-1, keepdim=True) for a non-negative x (probabilities from counts)."""

    def __init__(self, keepdim=True, other=False):
        super().__init__()
        self.keepdim, self.other = keepdim, other

    def forward(self, z):
        e = torch.exp(z)
        s = (e * 2 if self.other else e).sum(-1, keepdim=self.keepdim)
        return e / (s if self.keepdim else s.unsqueeze(-1))


def test_normalization_range_needs_the_exact_pattern():
    """[0, 1] only for x / sum(x, keepdim=True) of the same x >= 0; a sum of something else
    (2x: the quotient is at most 1/2 but the rule does not know) or without keepdim keeps the
    box quotient."""
    def hi_of(model):
        lm = _lm(model, (1, 8), -5.0, 5.0)
        ba = analyze_bounds(lm, capture(lm))
        div = next(i for i in ba.nodes.values() if i.op == "div")
        return float(div.primary.hi.max()), float(div.primary.lo.min())

    hi, lo = hi_of(Norm())
    assert hi <= 1.0 and lo >= 0.0
    assert hi_of(Norm(other=True))[0] > 1.0
    assert hi_of(Norm(keepdim=False))[0] > 1.0


def test_sum_of_positive_terms_stays_positive():
    """16 terms in [e^-20, e^20]: the float64 widening is relative to each end's own
    magnitude, so the lower end stays near 16 e^-20 (it used to reach -1.5e-5)."""
    lm = _lm(Norm(), (1, 16), -20.0, 20.0)
    ba = analyze_bounds(lm, capture(lm))
    s = next(i for i in ba.nodes.values() if i.op == "sum")
    assert 0.99 * 16 * math.exp(-20) <= float(s.primary.lo.min()) <= 16 * math.exp(-20)


def test_relative_bound_with_casts_between_layers():
    """exp in one layer, the sum in another format, the division in a third: each edge's
    cast joins the relative bound; the mixed run (apply_precision) stays within it, and
    without the relative channel the bound would be infinite."""

    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.ex = _Exp()
            self.sm = _Sum()

        def forward(self, z):
            e = self.ex(z)
            return e / self.sm(e)

    lm = _lm(Split(), (1, 12), -15.0, 15.0)
    ba = analyze_bounds(lm, capture(lm))
    for fm in ({"ex": "fp32", "sm": "bf16", "(model)": "fp32"}, {"ex": "bf16", "sm": "fp32", "(model)": "bf16"}):
        res = certified_errors(ba, [fm], keep_nodes=False)
        b = res.bound[0]
        assert math.isfinite(b) and b < 1.0
        mod = apply_precision(lm.module, {("" if k == "(model)" else k): v for k, v in fm.items()})
        ob = observe(lm, mod, None, 30, 30, seed=5, align_dtype=torch.bfloat16)
        assert 0 < ob.max_error <= b, (fm, ob.max_error, b)


class _Exp(nn.Module):
    def forward(self, z):
        return torch.exp(z)


class _Sum(nn.Module):
    def forward(self, e):
        return e.sum(-1, keepdim=True)


def test_relative_channel_is_what_bounds_it(monkeypatch):
    """Teeth: with the relative channel switched off the naive softmax is unbounded again."""
    from curvature_rules.arithmetic import BinaryError

    monkeypatch.setattr(BinaryError, "_div_relative", lambda self, ctx, P, *a: P)
    lm = load_model(EXAMPLES / "naive_softmax.py")
    res = certified_errors(analyze_bounds(lm, capture(lm)), [{"*": "fp32"}], keep_nodes=False)
    assert res.bound[0] == math.inf
