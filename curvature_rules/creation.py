"""Tensor creation: constants whose value does not depend on any input.

Ops: arange, full, scalar_tensor, zeros, ones, full_like, zeros_like, ones_like, new_zeros,
new_ones, new_full. The output is a point interval (exact); ``*_like``/``new_*`` ops only read
the shape and dtype of their tensor argument, never its values, so they are exact even when
that argument is an input-dependent box. ``empty*`` returns uninitialised memory: unknown.
"""

from __future__ import annotations

import torch

from certifier.interval import Interval
from curvature_rules.registry import RuleInput, RuleResult, register_rule

aten = torch.ops.aten


@register_rule(
    [
        aten.arange.default,
        aten.arange.start,
        aten.arange.start_step,
        aten.full.default,
        aten.scalar_tensor.default,
        aten.zeros.default,
        aten.ones.default,
    ]
)
def constant_rule(inp: RuleInput) -> RuleResult:
    """A constant: evaluated once, exactly."""
    return RuleResult(out=Interval.point(inp.call_with()))


@register_rule(
    [
        aten.full_like.default,
        aten.zeros_like.default,
        aten.ones_like.default,
        aten.new_zeros.default,
        aten.new_ones.default,
        aten.new_full.default,
    ]
)
def like_rule(inp: RuleInput) -> RuleResult:
    """A constant shaped like its argument (the argument's values are not read)."""
    x = inp.tensor("self")
    dummy = torch.zeros(x.shape, dtype=x.dtype)
    return RuleResult(out=Interval.point(inp.call_with(self=dummy)))


@register_rule([aten.empty_like.default, aten.empty.memory_format, aten.empty_strided.default])
def empty_rule(inp: RuleInput) -> RuleResult:
    """Uninitialised memory: nothing is known about it."""
    return RuleResult(out=Interval.unknown(inp.out_shapes[0], inp.out_dtypes[0]), curvature=float("inf"))
