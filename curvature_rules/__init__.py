"""Sound per-op rules (range, Lipschitz, curvature, rounding error), keyed on ATen ops.

One module per op family; each module's docstring lists its ops, derivations, assumptions and
references. See :mod:`curvature_rules.registry` for the rule contract.
"""

from curvature_rules.registry import (
    ErrorContext,
    ErrorModel,
    RuleInput,
    RuleResult,
    lookup,
    register_rule,
    registered_ops,
)

__all__ = [
    "ErrorContext",
    "ErrorModel",
    "RuleInput",
    "RuleResult",
    "lookup",
    "register_rule",
    "registered_ops",
]
