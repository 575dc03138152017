"""The rule registry: one sound rule per ATen op.

A rule receives a :class:`RuleInput` (the node, and its schema-named arguments with every
tensor replaced by its :class:`~certifier.interval.Interval`) and returns a
:class:`RuleResult`:

* ``out``: the output interval(s), sound for every input in the argument boxes;
* ``lipschitz``: per float tensor argument, a bound on the infinity-norm Lipschitz constant
  of the output with respect to that argument over the argument boxes
  (``max|f(x) - f(y)| <= L * max|x - y|``);
* ``curvature``: ``kappa = 1/2 * sup ||D^2 f||`` (infinity norms, joint in all float tensor
  arguments) over the argument boxes; 0 for affine maps, ``inf`` when unknown;
* ``error``: the rule's rounding-error model (:class:`ErrorModel`): how input errors
  propagate through the op and how much local rounding it adds in each format.

Rules are pure functions. The registry is the single source of truth for coverage: an op with
no rule is reported by name and makes everything downstream unbounded (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch._ops import OpOverload, OpOverloadPacket

from certifier.interval import Interval

aten = torch.ops.aten

INF = float("inf")


@dataclass(frozen=True)
class RuleInput:
    """What a rule sees: the node and its arguments bound to schema names."""

    node: torch.fx.Node
    op: OpOverload
    args: Mapping[str, object]
    out_shapes: tuple[tuple[int, ...], ...]
    out_dtypes: tuple[torch.dtype, ...]
    kwarg_only: frozenset[str] = frozenset()

    def call_with(inp, /, **replacements: object) -> object:  # noqa: N805 - "self" is an ATen argument name
        """Call the op on concrete values: ``replacements`` for some arguments, the bound
        values for the others (point intervals are replaced by their value)."""
        pos: list[object] = []
        kw: dict[str, object] = {}
        for name, v in inp.args.items():
            v = replacements.get(name, v)
            if isinstance(v, Interval):
                if v.value is None:
                    raise ValueError(f"argument {name!r} is not a known tensor")
                v = v.value
            if name in inp.kwarg_only:
                kw[name] = v
            else:
                pos.append(v)
        return inp.op(*pos, **kw)

    def tensor(self, name: str) -> Interval:
        v = self.args[name]
        if not isinstance(v, Interval):
            raise TypeError(f"argument {name!r} of {self.op} is not a tensor")
        return v

    def get(self, name: str, default: object = None) -> object:
        v = self.args.get(name, default)
        return default if v is None else v


@dataclass(frozen=True)
class RuleResult:
    """A rule's sound bounds for one node."""

    out: Interval | tuple[Interval | None, ...]
    lipschitz: Mapping[str, float] = field(default_factory=dict)
    curvature: float = 0.0
    error: "ErrorModel | None" = None
    #: Largest magnitude of any intermediate the kernel must hold in the storage format
    #: besides the output (e.g. the exp values of a naive softmax); used for overflow checks.
    internal_max: float = 0.0
    #: Inner length of the accumulations of this node (for reporting and gamma_n terms).
    accum_length: int = 0
    flops: float = 0.0

    @property
    def primary(self) -> Interval | None:
        return self.out[0] if isinstance(self.out, tuple) else self.out


class ErrorContext(Protocol):
    """What an error model sees during the rounding-error pass (certifier.rounding._Ctx).

    Per-configuration constants are float64 vectors of length F: ``u``/``he`` the unit
    roundoff and half the smallest subnormal of the node's storage format, ``u_acc``/``he_acc``
    those of its accumulation format, ``u_mul`` / ``eta_mul`` the relative / subnormal
    absolute error of rounding a multiplicand to a compute-only format (tf32: truncation
    allowed), 0 otherwise."""

    F: int
    u: torch.Tensor
    he: torch.Tensor
    u_acc: torch.Tensor
    he_acc: torch.Tensor
    u_mul: torch.Tensor
    eta_mul: torch.Tensor

    def err(self, name: str) -> torch.Tensor | None:
        """(F, *shape) bound on |computed - exact| of input ``name`` as this node reads it
        (its cast into the node's format included), or None when it is exact."""
        ...

    def err_or_cast(self, name: str) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """``(err(name), None)``, or ``(None, (u_c, he_c))`` when the input is exact and only
        its cast errs: ``|dx| <= u_c |x| + he_c`` (for rules that apply it in closed form)."""
        ...

    def rel(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(R, A)`` with ``|x^ - x| <= R |x| + A`` for input ``name`` as read here (its cast
        included), per configuration, where a producer gave a relative bound; else None."""
        ...

    def upstream(self, node: str) -> tuple["Interval | None", torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """(interval, error, relative bound as in :meth:`rel`) of the graph value ``node``
        (any earlier node, not only an input), read as a float input of this node would be:
        its cast into this node's format included. For models that follow one value through
        a chain of nodes of one module (curvature_rules.rmsnorm). An error no longer held is
        infinite."""
        ...

    def int_to_format(self, mag: torch.Tensor) -> torch.Tensor:
        """(F, *shape) error of converting integers of magnitude <= ``mag`` into this node's
        format (0 up to 2^p, ``u |v|`` beyond, infinite past the format's max)."""
        ...

    def cast_point(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(u_c, he_c)`` of the cast of an exactly known input (a weight), or None."""
        ...

    def point_delta(self, name: str) -> torch.Tensor | None:
        """``fl(v) - v`` exactly, ``(F, *shape)``, for a known input's cast (0 where none), or
        None (not asked for, or not known)."""
        ...

    def b(self, v: torch.Tensor, ndim: int) -> torch.Tensor: ...

    def store(self, mag: torch.Tensor, ndim: int) -> torch.Tensor:
        """``u B(mag) + he``: the rounding of storing values of magnitude up to ``mag``, with
        ``B(mag) <= mag`` the magnitude's binade (certifier.formats.binade_scale)."""
        ...


class ErrorModel(Protocol):
    """Propagates rounding errors through one node.

    ``propagate`` returns a tensor of shape ``(F, *out_shape)`` bounding, for each of the F
    format configurations, ``|computed - exact|`` of the node's output elementwise: the input
    errors carried through the op (nonlinear remainder included) plus the node's own rounding.
    """

    def propagate(self, ctx: "ErrorContext") -> torch.Tensor | tuple[torch.Tensor | None, ...]: ...


RuleFn = Callable[[RuleInput], RuleResult]

_RULES: dict[OpOverload, RuleFn] = {}
_RULE_MODULE: dict[OpOverload, str] = {}


def _expand(ops: Iterable[OpOverload | OpOverloadPacket]) -> list[OpOverload]:
    out: list[OpOverload] = []
    for op in ops:
        if isinstance(op, OpOverloadPacket):
            for name in op.overloads():
                out.append(getattr(op, name))
        else:
            out.append(op)
    return out


def register_rule(ops: Iterable[OpOverload | OpOverloadPacket]) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` for every op (a packet expands to all its overloads)."""

    def deco(fn: RuleFn) -> RuleFn:
        for op in _expand(ops):
            if op in _RULES:
                raise RuntimeError(f"duplicate rule for {op}: {_RULES[op].__name__} and {fn.__name__}")
            _RULES[op] = fn
            _RULE_MODULE[op] = fn.__module__
        return fn

    return deco


def lookup(op: object) -> RuleFn | None:
    _ensure_loaded()
    return _RULES.get(op)  # type: ignore[arg-type]


def registered_ops() -> dict[OpOverload, str]:
    """Every op with a rule, and the module that defines it."""
    _ensure_loaded()
    return dict(_RULE_MODULE)


_LOADED = False


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    # Importing the family modules registers their rules.
    from curvature_rules import (  # noqa: F401
        shape,
        creation,
        linear,
        conv,
        elementwise,
        arithmetic,
        reduction,
        softmax,
        norm,
        embedding,
        logical,
        pooling,
        resample,
    )
