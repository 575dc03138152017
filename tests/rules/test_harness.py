"""The harness can fail: a deliberately wrong rule (L halved, range shrunk, kappa halved,
error bound scaled down, a Lipschitz entry dropped) is detected (DESIGN 7; acceptance
criterion "show once that a wrong rule makes the harness fail")."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import (
    Suite,
    box,
    check_rule,
    halve_curvature,
    halve_lipschitz,
    scale_error,
    shrink_range,
    wrong_rule,
)

aten = torch.ops.aten
GELU_CRIT = [0.0, 2**0.5, -(2**0.5), -0.7517915247]


def _gelu(x):
    return F.gelu(x)


def _exp(x):
    return torch.exp(x)


def _mul(x, y):
    return x * y


def test_correct_rules_pass():
    rep = check_rule(_gelu, [box((3, 4), -3.0, 3.0)], aten.gelu.default, critical=GELU_CRIT)
    # The sampled sup of |g'| reaches the claimed 1.1285 (the bound is tight, and halving it
    # must therefore break the check below).
    assert rep.lipschitz_ratio["gelu:self"] > 0.99
    check_rule(_exp, [box((2, 3), 0.0, 12.0)], aten.exp.default)


def test_halved_lipschitz_is_detected():
    with wrong_rule(aten.gelu.default, halve_lipschitz):
        with pytest.raises(AssertionError, match="lipschitz"):
            check_rule(_gelu, [box((3, 4), -3.0, 3.0)], aten.gelu.default, critical=GELU_CRIT, formats=None)


def test_shrunk_range_is_detected():
    with wrong_rule(aten.exp.default, shrink_range):
        with pytest.raises(AssertionError, match="range"):
            check_rule(_exp, [box((2, 3), 0.0, 12.0)], aten.exp.default, formats=None)


def test_halved_curvature_is_detected():
    with wrong_rule(aten.mul.Tensor, halve_curvature):
        with pytest.raises(AssertionError, match="curvature"):
            check_rule(_mul, [box((2, 3), -1.0, 2.0), box((2, 3), -1.0, 2.0)], aten.mul.Tensor, formats=None)


def test_underestimated_rounding_error_is_detected():
    with wrong_rule(aten.exp.default, lambda r: scale_error(r, 1e-3)):
        with pytest.raises(AssertionError, match="rounding error"):
            check_rule(_exp, [box((2, 3), -2.0, 3.0)], aten.exp.default)


def test_missing_lipschitz_entry_reads_as_zero():
    """A rule that forgets an argument claims L = 0 for it (that is how the walker reads it)."""

    def drop_other(res):
        return dataclasses.replace(res, lipschitz={k: v for k, v in res.lipschitz.items() if k != "other"})

    with wrong_rule(aten.mul.Tensor, drop_other):
        with pytest.raises(AssertionError, match="'other'"):
            check_rule(_mul, [box((2, 3), -1.0, 2.0), box((2, 3), -1.0, 2.0)], aten.mul.Tensor, formats=None)


def test_per_element_boxes_reach_the_node():
    """lo + (hi - lo) * t feeds an elementwise box to the target node."""
    lo = torch.tensor([[0.0, 1.0, 2.0]])
    rep = check_rule(_exp, [box((1, 3), lo, lo + 0.5)], aten.exp.default)
    assert rep.range_checked > 0


SUITE = Suite()
SUITE_TANH = SUITE.case(lambda x: torch.tanh(x), [box((2, 3), -3.0, 3.0)])
SUITE_SOFTMAX = SUITE.case(lambda x: x.softmax(-1), [box((2, 3), -3.0, 3.0)])


def test_wrong_rules_are_detected_in_suites():
    """The same through a Suite (one export for many cases)."""
    SUITE_TANH.check(None, aten.tanh.default, critical=[0.658])
    with wrong_rule(aten.tanh.default, halve_curvature):
        with pytest.raises(AssertionError, match="curvature"):
            SUITE_TANH.check(None, aten.tanh.default, critical=[0.658], formats=None)
    with wrong_rule(aten._softmax.default, lambda r: scale_error(r, 0.05)):
        with pytest.raises(AssertionError, match="rounding error"):
            SUITE_SOFTMAX.check(None, aten._softmax.default)
