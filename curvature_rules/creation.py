"""Tensor creation: constants whose value does not depend on any input.

Ops: arange, full, scalar_tensor, zeros, ones, full_like, zeros_like, ones_like, new_zeros,
new_ones, new_full. The output is a point interval (exact); ``*_like``/``new_*`` ops only read
the shape and dtype of their tensor argument, never its values, so they are exact even when
that argument is an input-dependent box. ``empty*`` returns uninitialised memory: unknown.

Rounding: a float constant is stored in the node's format, ``u |v| + eta/2`` (the value does
not depend on the errors of a ``*_like`` argument); integer constants are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from certifier.interval import Interval
from curvature_rules._common import fmag
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

aten = torch.ops.aten


@dataclass(frozen=True)
class ConstantError:
    """A float constant is held in the node's storage format: ``u |v| + eta/2`` (NB: 0.1 is
    0.0999756 in fp16 and -1e4 is -9984 in bf16; a value beyond the format's range is an
    overflow, caught by the admissibility check on the output)."""

    value: Interval

    def propagate(self, ctx: ErrorContext) -> torch.Tensor:
        nd = len(self.value.shape)
        return ctx.store(fmag(self.value).unsqueeze(0).expand((ctx.F, *self.value.shape)), nd)


@dataclass(frozen=True)
class ExactError:
    """An integer (or boolean) constant: exact, whatever the errors of a ``*_like``
    argument (a missing error model would read those as making it unbounded)."""

    def propagate(self, ctx: ErrorContext):
        return None


def _constant(v: torch.Tensor) -> RuleResult:
    out = Interval.point(v)
    return RuleResult(out=out, error=ConstantError(out) if v.dtype.is_floating_point else ExactError())


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
    """A constant: evaluated once, exactly; stored in the node's format."""
    return _constant(inp.call_with())


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
    return _constant(inp.call_with(self=dummy))


@register_rule([aten.empty_like.default, aten.empty.memory_format, aten.empty_strided.default])
def empty_rule(inp: RuleInput) -> RuleResult:
    """Uninitialised memory: nothing is known about it."""
    return RuleResult(out=Interval.unknown(inp.out_shapes[0], inp.out_dtypes[0]), curvature=float("inf"))
