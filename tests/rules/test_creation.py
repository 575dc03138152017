"""Sampling soundness of curvature_rules.creation: constants (arange, full, scalar_tensor,
zeros, ones) and *_like / new_* ops, whose value never depends on their argument's values;
empty* is unknown. Each constant feeds an arithmetic node so that the rounding check sees
it (a float constant is held in the node's format: 0.1 is 0.0999756 in fp16)."""

from __future__ import annotations

import pytest
import torch

from tests.rules.harness import Suite, box

aten = torch.ops.aten
SUITES = {True: Suite(decompose=True), False: Suite(decompose=False)}
S = (3, 4)

# (id, fn, op, decompose)
CASES = [
    ("full", lambda x: x + torch.full(S, 0.1), aten.full.default, True),
    ("full_like", lambda x: x * torch.full_like(x, -0.3), aten.full_like.default, True),
    ("zeros_like", lambda x: x + torch.zeros_like(x), aten.full_like.default, True),
    ("arange", lambda x: x * torch.arange(4), aten.arange.start_step, True),
    ("arange_float", lambda x: x + torch.arange(0.0, 0.4, 0.1), aten.arange.start_step, True),
    ("arange.start", lambda x: x + aten.arange.start(1, 5), aten.arange.start, False),
    ("arange.default", lambda x: x + aten.arange.default(4, dtype=torch.float32), aten.arange.default, False),
    ("scalar_tensor", lambda x: torch.where(x > 0, x, aten.scalar_tensor(0.7)), aten.scalar_tensor.default, False),
    ("zeros", lambda x: x + aten.zeros.default([3, 4]), aten.zeros.default, False),
    ("ones", lambda x: x * aten.ones.default([4]), aten.ones.default, False),
    ("ones_like", lambda x: x * torch.ones_like(x), aten.ones_like.default, False),
    ("zeros_like_undec", lambda x: x - torch.zeros_like(x), aten.zeros_like.default, False),
    ("full_like_undec", lambda x: x - torch.full_like(x, 1e-3), aten.full_like.default, False),
    ("new_zeros", lambda x: x + x.new_zeros(S), aten.new_zeros.default, False),
    ("new_ones", lambda x: x * x.new_ones(S), aten.new_ones.default, False),
    ("new_full", lambda x: x + x.new_full(S, 2.5), aten.new_full.default, False),
]
REG = {c[0]: SUITES[c[3]].case(c[1], [box(S, -1, 1)]) for c in CASES}


@pytest.mark.parametrize("name,op", [pytest.param(c[0], c[1 + 1], id=c[0]) for c in CASES])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (-0.1, -0.0999), (100.0, 200.0)])
def test_constant(name, op, lo, hi):
    REG[name].check([box(S, lo, hi)], op, n=6, n_round=6)


EMPTY = SUITES[False].case(lambda x: torch.empty_like(x), [box(S, -1, 1)])


def test_empty_like_is_unknown():
    """Uninitialised memory: the range is [-inf, inf] and kappa inf (nothing to sample)."""
    from certifier.walker import analyze_bounds

    su = EMPTY.suite
    cap, _ = su._build()
    from certifier.loader import InputSpec, LoadedModel
    from pathlib import Path

    specs = [InputSpec(b.shape, b.dtype, float(b.lo), float(b.hi)) for t in su.templates for b in t]
    ba = analyze_bounds(LoadedModel(Path("x.py"), "x", su._model, (), specs, ""), cap)
    (node,) = [i for i in ba.nodes.values() if i.kind == "call" and i.node.target is aten.empty_like.default]
    assert node.result.curvature == float("inf") and not node.primary.is_bounded()
